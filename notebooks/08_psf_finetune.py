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
# # 08 Fine-tuning the PSF estimation
#
# *Runtime on 2 cores: about 1.5 min on the full 4200 x 4200 DEMO in the i band,
# 7 min in five bands.*
#
# A measured PSF is never exactly the PSF that made the image. The simulation of
# stage 06 knows its PSF (the model stage 05 measured on the data), so measuring
# the PSF of the simulation in exactly the same way shows how the measurement
# deviates from the truth. A linear relation per PSF parameter,
# `input = intercept + slope * measured`, fitted on the simulation's stars,
# then corrects the measurement of the data. The improved model is checked with
# a new simulation whose PSF is measured again (with the correction).
#
# The patch is split into two halves by a checkerboard of 256-pixel blocks: the
# relation is fitted on the stars of the *tuning* half, and every before/after
# comparison uses the stars of the *scoring* half, which the fit never saw.
#
# In ufig's PSF catalogues `psf_fwhm` (no suffix) is the PSF a simulation put
# in at the object, `psf_fwhm_cnn` the measurement of one star and
# `psf_fwhm_ipt` the fitted PSF model at the object. ufig 1.2.1 applies the
# correction to `psf_fwhm` whenever the catalogue has it, i.e. to the *input*
# of a simulation; here only the measurements (`_cnn`) are corrected (see
# `hscsim_utils/compat/ufig_psf.py`).
#
# The PSF is estimated with the settings stage 05 used (estimator, minimum number
# of stars, regularisation, seeing prior), read from stage 05's summary.
# Everything this stage writes goes to `psf_finetune/` in the run folder (every
# other band's model and adjustment to `bands/<band>/psf_finetune/`), its numbers
# to the section `psf_finetune` of `metrics.json`.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
simulation = ""  # folder relative to the run folder; empty means sim/baseline
slope_z = 2.0  # slopes within this many standard errors of 1 become 1
min_r2 = 0.8  # slopes of looser relations than this squared correlation become 1

# %%
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import psf_finetune, psf_finetune_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)
params = psf_finetune.Params(simulation=simulation, slope_z=slope_z, min_r2=min_r2)
result = psf_finetune.run(tile, run, params)
print(f"stage 05's PSF settings: {result.settings}")

# %% [markdown]
# ## 1. The PSF of the simulation, measured as on the data
#
# Stage 05's estimation on the simulated image and its SExtractor catalogue, with
# the run folder's visit maps and Gaia stars (catalogue in
# `psf_finetune/baseline_psf/`).

# %%
before = result.before
tuning = before.stars("tuning")
print(f"{before.estimator} estimator; stars with measured and input PSF: "
      f"{result.section['n_fit_stars']} in the tuning half (fit), "
      f"{before.n_stars} in the scoring half (comparison)")  # fmt: skip

# %% [markdown]
# ## 2. The linear adjustment
#
# Per parameter, the input PSF at each star against the measured model there,
# fitted by least squares with 3-sigma clipping. The adjustment is to remove
# biases of the estimator, so a slope is kept only where the stars resolve it:
# a parameter without spread, a loose relation (squared correlation below
# `min_r2`: the slope would mostly be regression dilution, flattening the model
# towards its mean), a slope within `slope_z` standard errors of 1 or one outside
# [1/2, 2] (the smoothing of the interpolation, not the estimator) keeps slope 1
# and gets only the mean offset. Only the stars of the tuning half enter the fit.

# %%
print(psf_finetune.fits_table(result.fits))
fig = psf_finetune_plots.plot_adjustment_fits(tuning, result.fits, tile.label)
save_and_show(fig, run.plot("08_psf_adjustment_fit.png"), dpi=100)

# %% [markdown]
# ## 3. The data's PSF again, with the adjustment
#
# The improved model and its stars are `psf_finetune/psf_model.h5` and
# `psf_finetune/psf_catalog.cat`; the adjustment is in
# `psf_finetune/adjustment.json`. A simulated tile knows its true PSF: both models
# are compared with it.

# %%
print(psf_finetune.truth_table(result.truth_comparison))

# %% [markdown]
# ## 4. Simulation with the improved model, measured again
#
# The patch is simulated with the improved PSF model (`psf_finetune/sim/`), and its
# PSF measured as in step 1 but with the adjustment. The tables and figure show
# the largest and the mean difference between measured and input PSF over the
# stars of the scoring half, before (baseline simulation, no adjustment) and
# after.

# %%
print(result.diff_tables())

# %% [markdown]
# How much of the largest FWHM difference is noise: each star's measurement
# carries photon noise (`star rms`), the model fitted through the stars keeps part
# of it (`model rms`), and the largest of `n` such differences is expected near
# `noise max` even for an unbiased estimator. The bias the adjustment removes is
# the mean, with its standard error (`+-`): a mean within about two standard
# errors of zero is no detected bias, a maximum near `noise max` no outlier.

# %%
print(result.budget_table())

# %%
fig = psf_finetune_plots.plot_diffs(before.stars(), result.after.stars(), tile.label)
save_and_show(fig, run.plot("08_psf_max_diff.png"), dpi=100)

# %% [markdown]
# ## Metrics
#
# Section `psf_finetune` of `metrics.json`: the adjustment (fitted on the
# `n_fit_stars` stars of the `fit_half`), and the blocks `before` and `after`,
# each naming the simulation it describes and the half its stars lie in, with
# `psf_fwhm_max_abs_diff`, the per-parameter differences and the FWHM error
# budget.

# %%
for key in ("before", "after"):
    block = result.section[key]
    budget = block["fwhm_error_budget"]
    if budget["mean"] is None:
        print(f"{key:>6s} {block['simulation']:>18s}: fewer than 2 stars in the "
              f"{block['half']} half")  # fmt: skip
        continue
    print(
        f"{key:>6s} {block['simulation']:>18s} ({block['n_stars']} stars, "
        f"{block['half']} half): FWHM mean {budget['mean']:+.4f} +- "
        f"{budget['mean_err']:.4f}, rms {budget['rms']:.4f}, max {budget['max']:.4f} "
        f"(noise alone: {budget['noise_max']:.4f}) pixels"
    )

# %% [markdown]
# ## Every band
#
# On a tile of several bands each band's PSF is fine-tuned on its own image of
# the baseline simulation (its adjustment and improved model in
# `bands/<band>/psf_finetune/`, its numbers in `bands.<band>` of the section);
# the simulation with the improved models is one GalSBI/UFig run of all bands.
# The mean FWHM difference (measured minus input, pixels, stars of the scoring
# half) before and after, per band.

# %%
print(result.bands_table())
