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
# # 09 Fine-tuning the background noise
#
# *Runtime on 2 cores: about 1.5 min on the full 4200 x 4200 DEMO in the i band,
# 7 min in five bands (`masked_simulation = True`: one simulation more).*
#
# Two steps, as in the tutorial. First the background RMS of the data is
# measured again on background pixels only: the data's SExtractor
# segmentation map masks every detected object. Then the simulation's noise is
# compared with the data's: ufig resamples its noise with a Lanczos-3 kernel
# (the correlated noise of a coadd), which makes the simulated pixels quieter
# than `map_bsig` says, so `map_bsig` is scaled by the ratio of the measured
# widths. The simulations use stage 08's improved PSF model when it exists.
#
# The tutorial simulates the patch with the first step's map to measure the
# simulated width. ufig draws its noise as a unit Gaussian times `map_bsig`, so
# with the same seed that simulation differs from stage 08's only by its noise,
# scaled pixel by pixel by the ratio of the two maps: the stage applies that
# ratio to stage 08's background pixels instead and saves one simulation of
# every band. `masked_simulation = True` runs the tutorial's simulation and
# prints both corrections.
#
# The correction is measured on the background pixels of the *tuning* half of
# the patch (a checkerboard of 256-pixel blocks); the realism of every
# simulation is computed on the *scoring* half, so the tuned simulation's
# width ratio tests the correction instead of restating it.
#
# Everything this stage writes goes to `background_finetune/` in the run folder
# (every other band's sysmaps to `bands/<band>/background_finetune/`); the
# section `background_finetune` of `metrics.json` holds the realism of every
# simulation side by side, each block naming its simulation.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
account_photon_noise = True  # keep shot noise of undetected galaxies out of the scaling
masked_simulation = False  # simulate with the first step's map, as the tutorial

# %%
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import background_finetune, background_finetune_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)
params = background_finetune.Params(
    account_photon_noise=account_photon_noise, masked_simulation=masked_simulation
)
result = background_finetune.run(tile, run, params)
print("PSF model:", "improved (stage 08)" if result.improved_psf else "stage 05")

# %% [markdown]
# ## 1. Background RMS from background pixels only
#
# Background2D as in stage 01 (SExtractor estimator, 3-sigma clipping, boxes of
# 128 pixels, 3 x 3 filter) with the segmentation and NO_DATA pixels masked;
# written into `background_finetune/sysmaps_masked.h5` (and simulated, into
# `background_finetune/sim_masked/`, with `masked_simulation`).

# %%
median = result.median_bsig
print(f"median map_bsig: stage 01 {median['stage_01']:.5f}, "
      f"background pixels only {median['background_pixels']:.5f} ADU")  # fmt: skip

# %% [markdown]
# ## 2. Correction of the standard deviation
#
# The factor makes the robust width of the simulated background pixels of the
# tuning half equal to the data's. The light and photon noise of undetected
# galaxies in the simulation do not change when `map_bsig` is scaled; with
# `account_photon_noise` the shot noise of that light (its mean level divided
# by the gain) is left out of the scaling. The scaled map is the improved
# sysmaps file `background_finetune/sysmaps.h5`, simulated last
# (`background_finetune/sim_tuned/`).

# %%
print(f"std correction {result.std_correction:.4f} (plain ratio "
      f"{result.plain_std_correction:.4f}; shot noise of undetected light "
      f"{result.photon_variance:.3g} ADU^2), from "
      f"{result.section['n_correction_pixels']} background pixels of the "
      f"{result.section['correction_half']} half")  # fmt: skip
section = result.section
how = "emulated on" if section["correction_emulated"] else "measured on"
print(f"correction {how} the simulation {section['correction_simulation']}")
if "emulated_std_correction" in section:
    print(f"emulated on {section['emulated_from']}: "
          f"{section['emulated_std_correction']:.4f}")  # fmt: skip

# %% [markdown]
# ## Background pixels before and after
#
# Background pixels of the scoring half.

# %%
fig = background_finetune_plots.plot_background_steps(
    result.data_bkg, result.backgrounds, tile.label
)
save_and_show(fig, run.plot("09_background_histograms.png"), dpi=100)

# %% [markdown]
# ## Metrics
#
# The realism of every simulation against the data on the scoring half, as
# written to the section `background_finetune` of `metrics.json` (stage 07's
# section `quality` keeps the baseline's). The second table gives every
# statistic's noise floor (the same statistic between two halves of the data)
# and threshold; `*` marks a simulation whose difference from the data exceeds
# it.

# %%
for name, block in result.realism.items():
    print(f"{name:>10s}: {block['simulation']} against the {block['data']} data "
          f"({block['half']} half)")  # fmt: skip
print(result.realism_table())
print()
print(result.significance_table())

# %% [markdown]
# ## Every band
#
# On a tile of several bands each band gets its own map from its background
# pixels and its own correction (from its own tuning half); the simulations
# above are each one GalSBI/UFig run of all bands. Per band: the correction and
# the background width ratio (simulation over data, scoring half) of every
# simulation, with the noise floor stage 07 computed for that band. The numbers
# are in `bands.<band>` of the section; the band's sysmaps in
# `bands/<band>/background_finetune/`.

# %%
print(result.bands_table())
