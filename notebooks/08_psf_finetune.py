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
# A measured PSF is never exactly the PSF that made the image. The simulation of
# stage 06 knows its PSF (the model stage 05 measured on the data), so measuring
# the PSF of the simulation in exactly the same way shows how the measurement
# deviates from the truth. A linear relation per PSF parameter,
# `input = intercept + slope * measured`, fitted on the simulation's stars,
# then corrects the measurement of the data. The improved model is checked with
# a new simulation whose PSF is measured again (with the correction).
#
# In ufig's PSF catalogues `psf_fwhm` (no suffix) is the PSF a simulation put
# in at the object, `psf_fwhm_cnn` the measurement of one star and
# `psf_fwhm_ipt` the fitted PSF model at the object. ufig 1.2.1 applies the
# correction to `psf_fwhm` whenever the catalogue has it, i.e. to the *input*
# of a simulation; here only the measurements (`_cnn`) are corrected (see
# `hscsim_utils/ufig_psf_fixes.py`).

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
simulation = ""  # simulation under RUN/sim/; empty means the stage 06 baseline
estimator = "auto"  # as stage 05: auto, cnn or direct
cnn_path = ""  # CNN checkpoint prefix; empty means the cosmo_torrent cache
min_stars = 10  # fewer usable stars than this is an error
ridge_alpha = "cv"  # as stage 05: cv or ufig
seeing_prior = True  # as stage 05: per-visit FWHM prior from the frame metadata
slope_z = 2.0  # slopes within this many standard errors of 1 become 1
min_r2 = 0.8  # slopes of looser relations than this squared correlation become 1

# %%
import matplotlib.pyplot as plt

from hscsim_utils.hsc.tile import resolve_run, resolve_tile
from hscsim_utils.stages import psf, simulate
from hscsim_utils.stages import psf_finetune as finetune_psf

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)
settings = dict(
    estimator=estimator, cnn_path=cnn_path, min_stars=min_stars,
    ridge_alpha=ridge_alpha, seeing_prior=seeing_prior,
)  # fmt: skip

# %% [markdown]
# ## 1. The PSF of the simulation, measured as on the data
#
# Stage 05's estimation (same estimator and settings) on the simulated image and
# its SExtractor catalogue, with the run folder's visit maps and Gaia stars. The
# catalogue is written beside the simulation (`psf_catalog_sim.cat`).

# %%
baseline = simulate.load_simulation(run, simulation or simulate.SIM_NAME)
measured = finetune_psf.measure_simulation_psf(tile, run, baseline, **settings)
cat_before = finetune_psf.read_psf_catalog(measured.catalog)
n_stars = int(finetune_psf.comparison_stars(cat_before).sum())
print(f"{measured.estimator} estimator, {n_stars} stars with measured and input PSF")

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
# and gets only the mean offset.

# %%
fits = finetune_psf.fit_adjustments(cat_before, slope_z=slope_z, min_r2=min_r2)
for name, fit in fits.items():
    err = f"{fit.slope_err:.3f}" if fit.slope_err is not None else "-"
    print(f"{name:15s} input = {fit.intercept:+.5f} + {fit.slope:.4f} x measured "
          f"({fit.kind}, slope error {err}, {fit.n_stars} stars, "
          f"{fit.n_clipped} clipped)")  # fmt: skip
fig = finetune_psf.plot_adjustment_fits(cat_before, fits, tile.label)
fig.savefig(run.plot("08_psf_adjustment_fit.png"), dpi=100)
plt.show()

# %% [markdown]
# ## 3. The data's PSF again, with the adjustment
#
# Writes `psf/psf_model_improved.h5` and `psf/psf_catalog_improved.cat`; the
# adjustment goes to `psf/psf_adjustment.json`. A simulated tile knows its true
# PSF: both models are compared with it.

# %%
adjustment = finetune_psf.pipeline_adjustment(fits)
improved = finetune_psf.estimate_improved_psf(tile, run, adjustment, **settings)
finetune_psf.write_adjustment(run, fits, {"n_stars": n_stars})
truth = psf.load_truth_grid(tile)
truth_comparison = {}
if truth is None:
    print("no true PSF for this tile")
else:
    for key, path in (("stage 05", run.psf_model), ("improved", improved.model)):
        truth_comparison[key] = psf.compare_to_truth(psf.read_grid(path), truth)
    print(f"{'model vs truth':15s} {'stage 05 rms':>13s} {'improved rms':>13s}")
    for name in truth_comparison["stage 05"]:
        a, b = (truth_comparison[k][name]["rms"] for k in ("stage 05", "improved"))
        print(f"{name:15s} {a:13.5f} {b:13.5f}")

# %% [markdown]
# ## 4. Simulation with the improved model, measured again
#
# The patch is simulated with the improved PSF model (`sim/psf_tuned`), and its
# PSF measured as in step 1 but with the adjustment. The tables and figure show
# the largest and the mean difference between measured and input PSF over the
# stars, before (baseline simulation, no adjustment) and after.

# %%
tuned = finetune_psf.simulate_with_improved_psf(tile, run)
measured_after = finetune_psf.measure_simulation_psf(
    tile, run, tuned, adjustment, **settings
)
cat_after = finetune_psf.read_psf_catalog(measured_after.catalog)
before = finetune_psf.max_abs_diffs(cat_before)
after = finetune_psf.max_abs_diffs(cat_after)
print("Maximum difference between measured and input PSF parameters:")
print(finetune_psf.max_diff_table(before, after))
bias = {
    k: finetune_psf.mean_diffs(c)
    for k, c in (("before", cat_before), ("after", cat_after))
}
print("Mean difference (bias):")
print(finetune_psf.max_diff_table(bias["before"], bias["after"], digits=5))

# %% [markdown]
# How much of the largest FWHM difference is noise: each star's measurement
# carries photon noise (`star rms`), the model fitted through the stars keeps part
# of it (`model rms`), and the largest of `n` such differences is expected near
# `noise max` even for an unbiased estimator. The bias the adjustment removes is
# the mean, with its standard error.

# %%
budget = {
    k: finetune_psf.fwhm_error_budget(c)
    for k, c in (("before", cat_before), ("after", cat_after))
}
print(finetune_psf.budget_table(budget))

# %%
fig = finetune_psf.plot_diffs(cat_before, cat_after, tile.label)
fig.savefig(run.plot("08_psf_max_diff.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Metrics
#
# `realism.psf_fwhm_max_abs_diff` gets the value after fine-tuning; section
# `finetune_psf` keeps both and the adjustment.

# %%
truth_rms = {
    k: {n: v["rms"] for n, v in c.items()} for k, c in truth_comparison.items()
}
extra = {
    "n_stars": n_stars, "truth_rms": truth_rms, "mean_diff": bias,
    "fwhm_error_budget": budget,
}  # fmt: skip
metrics = finetune_psf.record_metrics(run, before, after, fits, extra)
for key, value in metrics["finetune_psf"].items():
    if key.startswith("psf_fwhm"):
        print(f"{key:>30s} = {value:.4f}")
