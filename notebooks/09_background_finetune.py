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
# Two steps, as in the tutorial. First the background RMS of the data is
# measured again on background pixels only: the data's SExtractor
# segmentation map masks every detected object. Then the simulation's noise is
# compared with the data's: ufig resamples its noise with a Lanczos-3 kernel
# (the correlated noise of a coadd), which makes the simulated pixels quieter
# than `map_bsig` says, so `map_bsig` is scaled by the ratio of the measured
# widths. Both simulations use stage 08's improved PSF model when it exists.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
account_photon_noise = True  # keep shot noise of undetected galaxies out of the scaling

# %%
import matplotlib.pyplot as plt
import numpy as np

from hscsim_utils.hsc.tile import resolve_run, resolve_tile
from hscsim_utils.stages import background_finetune as ftb
from hscsim_utils.stages import psf_finetune as finetune_psf
from hscsim_utils.stages import quality, simulate

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)
with_psf = finetune_psf.improved_model_path(run).is_file()
print("PSF model:", "improved (stage 08)" if with_psf else "stage 05")

# %% [markdown]
# ## Before: the simulations so far
#
# Background pixels (segmentation 0, not masked) and the realism metrics of the
# stage 06 baseline and, when stage 08 ran, of its simulation with the improved
# PSF model.

# %%
steps, backgrounds = {}, {}
for name in (simulate.SIM_NAME, finetune_psf.TUNED_SIM if with_psf else None):
    if name is None:
        continue
    inputs = quality.load_inputs(tile, run, name)
    steps[name] = inputs.realism()
    backgrounds[name], data_bkg = inputs.background()
del inputs

# %% [markdown]
# ## 1. Background RMS from background pixels only
#
# Background2D as in stage 01 (SExtractor estimator, 3-sigma clipping, boxes of
# 128 pixels, 3 x 3 filter) with the segmentation and NO_DATA pixels masked;
# written as `sysmaps_improved.h5`.

# %%
bsig = ftb.data_background_rms(tile, run)
ftb.write_improved_sysmaps(run.sysmaps, run.sysmaps_improved, bsig)
old = ftb.read_bsig(run.sysmaps)
good = old > 0
print(f"median map_bsig: stage 01 {np.median(old[good]):.5f}, "
      f"background pixels only {np.median(bsig[good]):.5f} ADU")  # fmt: skip
del old, good

# %%
masked_sim = ftb.simulate_with_sysmaps(tile, run, ftb.MASKED_SIM)
inputs = quality.load_inputs(tile, run, ftb.MASKED_SIM)
steps[ftb.MASKED_SIM] = inputs.realism()
sim_bkg, data_bkg = inputs.background()
backgrounds[ftb.MASKED_SIM] = sim_bkg

# %% [markdown]
# ## 2. Correction of the standard deviation
#
# The factor makes the robust width of the simulated background pixels equal to
# the data's. The light and photon noise of undetected galaxies in the
# simulation do not change when `map_bsig` is scaled; with
# `account_photon_noise` the shot noise of that light (its mean level divided
# by the gain) is left out of the scaling.

# %%
gain = masked_sim.parameters["gain_dict"][tile.band]
fixed = ftb.photon_variance(sim_bkg, gain) if account_photon_noise else 0.0
correction = ftb.std_correction(data_bkg, sim_bkg, fixed)
plain = ftb.std_correction(data_bkg, sim_bkg)
print(f"std correction {correction:.4f} (plain ratio {plain:.4f}; shot noise "
      f"of undetected light {fixed:.3g} ADU^2)")  # fmt: skip
ftb.scale_bsig(run.sysmaps_improved, correction)
del inputs, sim_bkg

# %%
tuned_sim = ftb.simulate_with_sysmaps(tile, run, ftb.TUNED_SIM)
inputs = quality.load_inputs(tile, run, ftb.TUNED_SIM)
steps[ftb.TUNED_SIM] = inputs.realism()
backgrounds[ftb.TUNED_SIM], data_bkg = inputs.background()
del inputs

# %% [markdown]
# ## Background pixels before and after

# %%
fig = ftb.plot_background_steps(data_bkg, backgrounds, tile.label)
fig.savefig(run.plot("09_background_histograms.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Metrics
#
# The realism section of `metrics.json` now describes the final simulation
# (`sim/bkg_tuned`); section `finetune_background` keeps every step.

# %%
keys = ("bkg_std_ratio", "bkg_ks", "mag_auto_ks", "flux_radius_ks",
        "ellipticity_ks", "n_detect_ratio")  # fmt: skip
print(f"{'metric':>16s}" + "".join(f"{name:>14s}" for name in steps))
for key in keys:
    row = "".join(
        f"{v:14.4f}" if (v := s.get(key)) is not None else f"{'-':>14s}"
        for s in steps.values()
    )
    print(f"{key:>16s}{row}")
metrics = ftb.record_metrics(
    run, steps, steps[ftb.TUNED_SIM],
    {"std_correction": correction, "plain_std_correction": plain,
     "photon_variance": fixed, "improved_psf": with_psf},
)  # fmt: skip
