"""GalSBI + UFig settings for simulating one HSC deep coadd patch in one band.

This file holds what is the same for every patch: the plugin chain, the noise,
PSF, star and SExtractor models, the magnitude limits and the galaxy-population
parametrisations. Everything that belongs to one patch (WCS, zero point, gain,
exposure time, saturation, noise-dependent rendering accuracy, the input files
of its run folder, the output names, seed, galaxy model) is passed by
``hscsim_utils.stages.simulate`` as keyword arguments to GalSBI, which ivy lays over
the values below. Nothing here reads a patch's files, so one imported config
serves any number of patches.

ivy collects every module attribute whose name does not start with ``__`` as a
parameter; helpers are therefore deleted at the end.
"""

import os

import galsbi.ucat.config.common
import numpy as np
import ufig.config.common
from cosmo_torrent import data_path

from hscsim_utils import ufig_plugins
from hscsim_utils.hsc import skymap
from hscsim_utils.numerics import psf_model


def _take_defaults(module):
    globals().update({k: v for k, v in vars(module).items() if not k.startswith("__")})


# galsbi's defaults first, ufig's on top (ufig's plugins read the shared names).
_take_defaults(galsbi.ucat.config.common)
_take_defaults(ufig.config.common)


def _cached_file(dataset, filename):
    """File of a cosmo_torrent data set (cache first, download when online)."""
    try:
        folder = data_path(dataset)
    except Exception as err:  # offline and not provisioned: name what to run
        raise FileNotFoundError(
            f"cosmo_torrent data set {dataset!r} is not cached and cannot be "
            f"downloaded ({type(err).__name__}); run `hscsim data`"
        ) from None
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} missing; run `hscsim data --force`")
    return path


def _cnn_weights():
    """Checkpoint prefix of the PSF CNN, or None when its weights are absent."""
    try:
        from hscsim_utils.data.provision import cnn_weights_path
    except ImportError:  # package without provisioning: no CNN
        return None
    path = cnn_weights_path()
    return None if path is None else str(path)


# ---------------------------------------------------------------- patch geometry
# Placeholders only: the per-patch values come from skymapinfo (kwargs).
sampling_mode = "wcs"
pixscale = skymap.PIXEL_SCALE_ARCSEC
size_x = size_y = 4200
ra0 = dec0 = 0.0
crpix_ra = crpix_dec = 2100.5

# ---------------------------------------------------------------- bands
filters = ["i"]
filters_full_names = {
    "B": "SuprimeCam_B",  # band of the luminosity function
    "g": "HSC_g",
    "r": "HSC_r2",
    "i": "HSC_i2",
    "z": "HSC_z",
    "y": "HSC_y",
}
reference_band = "i"
lum_fct_filter_band = "B"
magzero_dict = {"i": 27.0}  # HSC PDR3 coadds; skymapinfo's value is passed

# ---------------------------------------------------------------- plugins
# Folder where the galaxy population sampled by a run's first simulation is kept
# for the next ones (hscsim_utils.population_cache); None: always sample.
# hscsim_utils.stages.simulate sets it to the run folder's sim/population/.
population_cache_dir = None
# ufig's common config lacks filepath_cnn, which estimate_psf reads.
filepath_cnn = _cnn_weights()


def _chain(measure_psf):
    """Plugin chain; ``measure_psf`` adds the PSF estimation on the simulation."""
    extract = [
        "ufig.plugins.single_band_setup",
        "ufig.plugins.run_sextractor_forced_photometry",
    ]
    measure = ["ufig.plugins.add_generic_stamp_flags"]
    if measure_psf:
        measure.append("ufig.plugins.estimate_psf")
    return [
        *ufig_plugins.SAMPLE,
        ufig_plugins.band_loop(ufig_plugins.RENDER_BAND),
        ufig_plugins.band_loop(extract),
        "ufig.plugins.match_sextractor_seg_catalog_multiband_read",
        ufig_plugins.band_loop(measure),
        "ufig.plugins.cleanup_catalogs",
        "ivy.plugin.show_stats",
    ]


# The PSF of the simulation is measured by default only when the CNN exists;
# hscsim_utils.stages.simulate can ask for the other chain (e.g. with the direct
# estimator standing in for the CNN).
PLUGINS_MEASURING_PSF = _chain(measure_psf=True)
PLUGINS_NOT_MEASURING_PSF = _chain(measure_psf=False)
plugins = PLUGINS_MEASURING_PSF if filepath_cnn else PLUGINS_NOT_MEASURING_PSF

# ---------------------------------------------------------------- noise, exposure
background_type = "map"  # map_bsig of the run folder's sysmaps.h5
sysmaps_type = "sysmaps_hdf_combined"
bkg_noise_multiply_gain = True  # noise is drawn in electrons, before ADU conversion
lanczos_kernel_type = "read_from_file"  # ufig's Lanczos-3 kernel: correlated noise
exp_time_type = "variable"  # photons scale with map_expt at each object
# Per patch (kwargs): gain_dict = effective coadd gain (gain per exposure times
# mean number of exposures, as SExtractor is given), exposure_time_dict = time of
# one exposure, saturation_level_dict; bkg_noise_amp_dict = 0 (see simulate.py).
flag_gain_times_nexp = False  # the gain passed is already the coadd's

# ---------------------------------------------------------------- PSF
psf_type = "coadd_moffat_cnn_read"  # grid_psf of the run folder's PSF model
psf_beta = list(psf_model.PSF_BETAS)  # the two Moffat components of the PSF model
psf_kurtosis = 0.0
psfmodel_corr_brighter_fatter = {
    "c1r": 0.0,
    "c1e1": 0.0,
    "c1e2": 0.0,
    "mag_ref": 22,
    "apply_to_galaxies": False,
}
# PSF measurement of the simulation (when asked for), as for the data in stage 05.
psfmodel_max_dist_gaia_arcsec = 1.5 * skymap.PIXEL_SCALE_ARCSEC
psfmodel_flag_coadd_boundaries = False

# ---------------------------------------------------------------- stars
star_catalogue_type = "besancon_gaia_splice"  # Gaia positions, Besancon colours
stars_mag_min, stars_mag_max = 12, 26
# Stars brighter than this are integrated on pixels instead of photon by photon
# (the tutorial's 5 shoots every photon: ~1e8 for a 12th-magnitude star, minutes
# per patch). They are saturated and inside the bright-star mask, where the
# pixel integration's neglect of flexion and kurtosis does not matter. Their
# profiles are integrated out to render_stars_accuracy (ADU), which
# hscsim_utils.stages.simulate sets to a tenth of the patch's background noise (ufig's
# default of 0.3 ADU would cut the wings at ~15 sigma of an HSC coadd).
# This is a floor: per band, simulate.pixel_rendering_magnitude raises it to the
# magnitude brighter than which every star saturates anywhere in the patch (DEMO:
# i 17.9, g 17.5, r 17.7, z 16.7, y 16.3); a third of an i-band simulation's time.
mag_pixel_rendering_stars = 15

# ---------------------------------------------------------------- SExtractor
sextractor_binary = "source-extractor"  # Debian's name; ufig's default is "sex"
sextractor_use_forced_photo = True
# The configuration stage 03 runs on the data (extraction.DEFAULT_CONFIG), so that
# simulation and data are detected alike. The tutorial's hsc_deblend_aper.config
# differs only in DEBLEND_MINCONT (1e-5 instead of 0.005): it would split the
# simulated objects far more than the data's.
sextractor_config = "hsc.config"
sextractor_params = "newdefault.param"
sextractor_checkimages = ["SEGMENTATION", "BACKGROUND"]
sextractor_checkimages_suffixes = ["_seg.fits", "_bkg.fits"]
sextractor_forced_photo_detection_bands = ["i"]
sextractor_catalog_off_mask_radius = 1

# Matching detections to the input catalogues
matching_cells = 20
matching_mag = "MAG_AUTO"
matching_x = "XWIN_IMAGE"
matching_y = "YWIN_IMAGE"

# ---------------------------------------------------------------- galaxies
gals_mag_min, gals_mag_max = 14, 28
lum_fct_z_res = 0.001
lum_fct_m_max = -4
lum_fct_z_max = 6
position_model = "uniform"
nside_sampling = 1024
max_mem_hard_limit_mb = np.inf
n_templates = 5
magnitude_calculation = "table"
catalog_precision = np.float32

filters_file_name = _cached_file("HSC_tables", "HSC_filters_collection_yfix.h5")
templates_int_tables_file_name = _cached_file(
    "HSC_tables", "HSC_template_integrals_yfix.h5"
)
templates_file_name = _cached_file(
    "template_BlantonRoweis07", "template_spectra_BlantonRoweis07.h5"
)
extinction_map_file_name = _cached_file("lambda_sfd_ebv", "lambda_sfd_ebv.fits")

# Each posterior only means something with the parametrisation it was inferred
# with (galsbi/configs/config_<model>_image.py); simulate.py passes the chosen one.
_SAMPLERS = {  # the same in both models
    "ellipticity_sampling_method": "beta_mode_red_blue",
    "sersic_sampling_method": "blue_red_betaprime",
    "template_coeff_sampler": "dirichlet_alpha_mode",
    "template_coeff_weight_blue": np.ones(5),
    "template_coeff_weight_red": np.ones(5),
    "template_coeff_z1_blue": 3,
    "template_coeff_z1_red": 3,
}
GALAXY_MODELS = {
    "Moser+24": {
        "lum_fct_parametrization": "logpower",
        "logr50_sampling_method": "red_blue",
        **_SAMPLERS,
    },
    "Fischbacher+24": {
        "lum_fct_parametrization": "truncated_logexp",
        "logr50_sampling_method": "sdss_fit",
        **_SAMPLERS,
    },
}
DEFAULT_GALAXY_MODEL = "Moser+24"
globals().update(GALAXY_MODELS[DEFAULT_GALAXY_MODEL])

# ---------------------------------------------------------------- run
seed = 42  # replaced by the tile's seed
# Photon rendering in 2 work chunks (each its own random stream and image, summed
# in order): the image depends on this number, not on how many cores run the
# chunks ($HSCSIM_THREADS or all; hscsim_utils.compat.ufig_render).
n_threads_photon_rendering = 2

del _take_defaults, _cached_file, _cnn_weights, _chain, _SAMPLERS
