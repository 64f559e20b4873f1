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
# # 05 PSF estimation
#
# *Runtime on 2 cores: about 20 s on the full 4200 x 4200 DEMO (each band; about
# 40 s more the first time on a machine, while numba fills its cache).*
#
# The point spread function (PSF) is estimated from the image itself with
# ufig's PSF estimation pipeline (Herbel et al. 2018, Kacprzak et al. 2020):
#
# 1. **Data preparation**: SExtractor objects matched to Gaia stars within
#    1.5 pixels, magnitudes 18 to 22, clean SExtractor and stamp flags; a 19 x 19
#    stamp is cut around each star.
# 2. **Measurement** of the PSF parameters of each star: FWHM, flux ratio of the
#    two Moffat profiles (beta 2 and 5), ellipticity e1, e2 and flexion f1, f2,
#    g1, g2. The pretrained CNN of the tutorial is used when its weights are
#    present; otherwise (always offline) each stamp is fitted directly with
#    ufig's own PSF model, exactly as ufig renders it.
# 3. **Interpolation** of the measurements over the patch with Chebyshev
#    polynomials (order 4) per visit, weighted by the visit coverage
#    (`map_pointings`).
# 4. **Storage**: the PSF model with `grid_psf` (the 100-pixel grid the
#    simulation reads) and the star catalogue.
#
# The run goes through mends of ufig 1.2.1's PSF code (see
# `hscsim_utils/compat/ufig_psf.py`): exact visit bitmaps, measurements written
# to the right catalogue rows, `FLAGS_STARS` filled and only stars passing
# every cut in the fit. Two additions to the interpolation: its regularisation
# is chosen by cross-validation, and the FWHM gets a per-visit prior from the
# seeing column of the frame metadata (the coadd PSF is an average of the visit
# PSFs, so where few visits overlap it follows their seeing, which a few dozen
# stars cannot tell).

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty: the demo tile
run_dir = ""  # run folder; empty: the demo run folder
estimator = "auto"  # auto (CNN if its weights exist, else direct), cnn or direct
cnn_path = ""  # prefix of the CNN checkpoint; empty: cosmo_torrent cache psf_cnn
min_stars = 10  # fewer usable stars than this is an error
ridge_alpha = "cv"  # cv (cross-validated) or ufig (ufig's fixed values)
seeing_prior = True  # per-visit FWHM prior from the frame metadata

# %%
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import psf, psf_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)

# %% [markdown]
# ## Which estimator
#
# The CNN weights come from the cosmo_torrent data set `psf_cnn`; they cannot be
# downloaded offline. Without them the direct fit is used: Levenberg-Marquardt
# on each stamp with the analytic Jacobian of ufig's PSF profile (two Moffats
# sharing the FWHM, ufig's ellipticity matrix and flexion displacement,
# integrated over pixels), plus position, two amplitudes and background.

# %%
params = psf.Params(
    estimator=estimator, cnn_path=cnn_path, min_stars=min_stars,
    ridge_alpha=ridge_alpha, seeing_prior=seeing_prior,
)  # fmt: skip
kind, weights = psf.choose_estimator(params.estimator, params.cnn_path)
print(f"estimator: {kind}" + (f" (weights {weights})" if weights else ""))

# %% [markdown]
# ## Running the pipeline
#
# The table lists how many stars are left after each selection cut, after the
# estimator's quality cuts (FWHM, ellipticity, flexion) and after the sigma
# clipping of the polynomial fit. The stage also writes `psf/psf_summary.json`:
# these counts, the comparison with the true PSF (simulated tiles) and the
# parameters it ran with, which stage 08 reuses.

# %%
result = psf.run(tile, run, params)
for step, n in result.counts:
    print(f"{step:28s} {n:6d}")
print(f"{result.estimator} estimation took {result.seconds:.1f} s")
print("ridge alpha per column:", result.record.extras.get("ridge_alpha", "ufig's"))
scale = result.record.extras.get("prior_scale_psf_fwhm_cnn")
print("seeing prior:", f"FWHM = {scale:.3f} x visit seeing" if scale else "not used")

# %% [markdown]
# ## The PSF over the patch
#
# The model (`grid_psf`) against the measurements of the stars used in the fit.

# %%
grid = psf.read_grid(run.psf_model)
cat = psf.read_star_catalog(run.psf_catalog)
fig = psf_plots.plot_psf_maps(grid, cat, tile.label)
save_and_show(fig, run.plot("05_psf_fwhm_e1_e2.png"), dpi=100)

# %%
fig = psf_plots.plot_psf_maps(
    grid, cat, tile.label,
    params=("psf_flux_ratio", "psf_f1", "psf_f2", "psf_g1", "psf_g2"),
)  # fmt: skip
save_and_show(fig, run.plot("05_psf_ratio_flexion.png"), dpi=100)

# %%
fig = psf_plots.plot_whiskers(grid, cat, tile.label)
save_and_show(fig, run.plot("05_psf_whiskers.png"), dpi=100)

# %% [markdown]
# ## Stamps of typical stars
#
# Data, model and residual for stars spread in magnitude; the residual colour
# scale is 5% of the peak.

# %%
fig = psf_plots.plot_star_stamps(result, tile.label)
save_and_show(fig, run.plot("05_psf_stamps.png"), dpi=100)

# %% [markdown]
# ## Against the truth (simulated tiles only)
#
# A simulated tile knows its true PSF; the model is compared with it on the grid
# (FWHM relative, the other parameters absolute).

# %%
truth = psf.load_truth_grid(tile)
if truth is None:
    print("no true PSF for this tile")
else:
    for name, stats in result.summary["truth"].items():
        print(f"{name:15s} bias {stats['bias']:+.4f}  rms {stats['rms']:.4f}")
    fig = psf_plots.plot_truth_comparison(grid, truth, tile.label)
    save_and_show(fig, run.plot("05_psf_vs_truth.png"), dpi=100)

# %%
print(f"written: {run.psf_model}, {run.psf_catalog}, {run.psf_summary}")
