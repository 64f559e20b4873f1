"""GalSBI/ufig configuration that renders the DEMO tile (simulated).

Modelled on the tutorial's ``galsbi_HSC_config.py`` without SExtractor and PSF
estimation: galaxies from the GalSBI posterior, Besancon stars spliced with Gaia,
background noise from a map, Lanczos-3 resampling (correlated coadd noise), a
coadd PSF read from a grid file, photon rendering, ADU conversion, saturation.
Paths, sizes, WCS, gain, saturation and seed are passed as keyword arguments by
``hscsim_utils.demo.render``.
"""

import galsbi.ucat.config.common
import numpy as np
import ufig.config.common
from cosmo_torrent import data_path

from hscsim_utils import ufig_plugins
from hscsim_utils.hsc import skymap
from hscsim_utils.numerics import psf_model


def _update_globals(module, globals_):
    globals_.update(
        {k: v for k, v in module.__dict__.items() if not k.startswith("__")}
    )


_update_globals(galsbi.ucat.config.common, globals())
_update_globals(ufig.config.common, globals())

sampling_mode = "wcs"
pixscale = skymap.PIXEL_SCALE_ARCSEC
filters = ["i"]
filters_full_names = {"B": "SuprimeCam_B", "i": "HSC_i2"}
reference_band = "i"
lum_fct_filter_band = "B"
magzero_dict = {"i": 27.0}

plugins = [*ufig_plugins.SAMPLE, ufig_plugins.band_loop(ufig_plugins.RENDER_BAND)]

# Background: rms map in ADU, drawn in photons (x gain) before the ADU conversion
background_type = "map"
bkg_noise_multiply_gain = True
bkg_noise_amp_dict = {"i": 0.0}
sysmaps_type = "sysmaps_hdf_combined"
lanczos_kernel_type = "read_from_file"

# PSF: the true coadd PSF on ufig's grid
psf_type = "coadd_moffat_cnn_read"
psf_kurtosis = 0.0
psf_beta = list(psf_model.PSF_BETAS)
psfmodel_corr_brighter_fatter = {
    "c1r": 0.0, "c1e1": 0.0, "c1e2": 0.0, "mag_ref": 22, "apply_to_galaxies": False,
}  # fmt: skip

# Photometry: exposure-time map of 270 s visits, effective gain (gain x n_exp)
exp_time_type = "variable"
exposure_time = 270.0

# Stars: Besancon model spliced with Gaia DR3
star_catalogue_type = "besancon_gaia_splice"
stars_mag_max = 26
stars_mag_min = 8
gals_mag_max = 28
gals_mag_min = 14
mag_pixel_rendering_stars = 15

# Galaxy population (Moser+24 parametrisation, as galsbi's own HSC configs)
lum_fct_z_res = 0.001
lum_fct_m_max = -4
lum_fct_z_max = 6
nside_sampling = 1024
position_model = "uniform"
lum_fct_parametrization = "logpower"
ellipticity_sampling_method = "beta_mode_red_blue"
sersic_sampling_method = "blue_red_betaprime"
logr50_sampling_method = "red_blue"
template_coeff_sampler = "dirichlet_alpha_mode"
template_coeff_weight_blue = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
template_coeff_weight_red = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
template_coeff_z1_blue = 3
template_coeff_z1_red = 3

filters_file_name = data_path("HSC_tables") + "/HSC_filters_collection_yfix.h5"
n_templates = 5
templates_file_name = (
    data_path("template_BlantonRoweis07") + "/template_spectra_BlantonRoweis07.h5"
)
extinction_map_file_name = data_path("lambda_sfd_ebv") + "/lambda_sfd_ebv.fits"
magnitude_calculation = "table"
templates_int_tables_file_name = (
    data_path("HSC_tables") + "/HSC_template_integrals_yfix.h5"
)

catalog_precision = np.float32
n_threads_photon_rendering = 1
overwrite = True
sextractor_forced_photo_detection_bands = ["i"]
