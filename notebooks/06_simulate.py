# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (hscsim)
#     language: python
#     name: hscsim
# ---

# %% [markdown]
# # 06 Simulating the image
#
# *Runtime on 2 cores: about 62 s on the full 4200 x 4200 DEMO in the i band,
# 300 s in five bands.*
#
# With every ingredient of the patch in the run folder (sky information and
# systematic maps, masks, stars, PSF model), GalSBI samples a galaxy population
# from the ABC posterior of a galaxy model and UFig renders it together with the
# Besançon + Gaia stars, adds the background noise of the patch, runs SExtractor
# in the same configuration as on the data and matches its detections to the input
# catalogues.
#
# The static settings are in `params/galsbi_hsc_config.py`; everything that
# belongs to this patch (WCS, zero point, effective gain, saturation, background
# level, input files, seed, galaxy model) is passed to GalSBI as keyword arguments.
# Outputs go to `sim/baseline/` in the run folder: image, segmentation and
# background maps, the SExtractor catalogue and the intrinsic galaxy and star
# catalogues.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
galaxy_model = ""  # empty means the model of the tile file (Moser+24 or Fischbacher+24)
posterior_index = -1  # posterior sample; -1 means the tile file's
seed = -1  # random seed; -1 means the tile file's
measure_psf = "auto"  # PSF of the simulation: auto (CNN if cached), direct, none
counts = "variable"  # magnitudes to photons: constant, variable (tutorial), gain_map
photon_noise = "tutorial"  # tutorial; measured: stars at stage 01's measured gain

# %%
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.files import read_calexp
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import bands_plots, simulate, simulate_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)

# %% [markdown]
# ## Run GalSBI + UFig
#
# The stage checks the inputs of the run folder, resolves the galaxy model,
# posterior sample and seed, and runs the simulation into a temporary folder that
# replaces `sim/baseline/` only once everything is written. With the PSF CNN in the
# cache (or `measure_psf = "direct"`) the PSF of the simulation is measured as in
# stage 05, for the comparison of stage 07.
#
# `counts` chooses how a magnitude becomes photons: `constant` (mean gain and
# number of exposures), `variable` (the exposure time at the object, the
# tutorial's choice) or `gain_map` (the summed gain at the object; ufig's own
# version of this one gives objects the flux times local over mean gain, mended
# here so that only the photon noise follows the local gain).
#
# `photon_noise = "measured"` gives stars the photon noise of the effective gain
# stage 01 measured from the VARIANCE plane (tens of thousands of electrons per
# ADU on a deep coadd) instead of the tutorial's few hundred: every star is then
# integrated over its pixels, and each pixel drawn with the finer statistics.
# Galaxies keep the tutorial's photon noise (ufig renders them photon by photon).

# %%
params = simulate.Params(
    galaxy_model=galaxy_model,
    posterior_index=posterior_index,
    seed=seed,
    measure_psf=measure_psf,
    counts=counts,
    photon_noise=photon_noise,
)
result = simulate.run(tile, run, params)
p = result.parameters
print(result.settings)
print(f"counts: {p['exp_time_type']}, photon noise: {p['photon_noise']}")
print(f"simulation wall time: {result.wall_s} s, outputs in {result.directory}")

# %% [markdown]
# ## Load the outputs with GalSBI's loaders
#
# `load_images` gives the image, the segmentation and the background map;
# `load_catalogs` the SExtractor catalogue (with the matched input columns) and
# the intrinsic galaxy and star catalogues.

# %%
images = result.load_images()
catalogs = result.load_catalogs()
for key, value in {**images, **catalogs}.items():
    print(f"{key:>15s}: {value.shape}")

# %% [markdown]
# ## Simulated versus data image
#
# Both images are shown with the same normalisation (90% interval of the data).

# %%
data = read_calexp(tile.calexp, tile.band)
fig = simulate_plots.plot_sim_vs_data(images["image"], data.image, tile.label)
save_and_show(fig, run.plot("06_sim_vs_data.png"), dpi=100)

# %% [markdown]
# ## What every band is simulated from (tiles of several bands)
#
# Stages 01, 02 and 05 ran for every band (the others in `bands/<band>/`); the
# simulation takes each band's background RMS, masks and PSF model from there.
# Side by side on one colour scale: the bands' depth, coverage and seeing.

# %%
figures = {
    "background_rms": ("sysmaps", bands_plots.background_rms_map,
                       "background RMS (stage 01)", "ADU"),
    "masked": ("mask", bands_plots.masked_map, "masked fraction (stage 02)",
               "per block"),
    "psf_fwhm": ("psf_model", bands_plots.psf_fwhm_map,
                 "PSF model FWHM (stage 05)", "arcsec"),
}  # fmt: skip
for name, (product, reader, what, unit) in figures.items():
    maps = bands_plots.band_maps(tile, run, product, reader)
    if len(maps) < 2:
        print("one band: nothing to compare")
        break
    fig = bands_plots.plot_bands(maps, tile.label, what, unit)
    save_and_show(fig, run.plot(f"06_bands_{name}.png"), dpi=100)
