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
# # 07 First quality assessment
#
# The simulation of stage 06 is compared with the data: first by eye (both images
# with the same normalisation), then quantitatively with the same cuts on both:
# background pixels (segmentation 0, not masked) and detected objects (SExtractor
# `FLAGS == 0`, not on a masked pixel). Small differences are expected from cosmic
# variance alone. The numbers go to the section `quality` of `metrics.json`:
# `realism`, which says which simulation it describes and whether the data are
# DEMO or REAL, and for the DEMO tile `closure`, every stage's product against the
# truth the demo was built from.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
simulation = ""  # folder relative to the run folder; empty means sim/baseline

# %%
import matplotlib.pyplot as plt

from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import quality, quality_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)
result = quality.run(tile, run, quality.Params(simulation=simulation))
inputs = result.inputs
print(f"simulation {result.simulation} against the {result.realism['data']} data")

# %% [markdown]
# ## Simulated and data image
#
# Same grey scale for both: the 90% interval of the data.

# %%
fig = quality_plots.plot_images(inputs.sim_image, inputs.data_image, tile.label)
fig.savefig(run.plot("07_images.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Background noise
#
# Pixels outside every detection and outside the masks. The simulation's noise
# comes from the background RMS map of stage 01 smoothed by UFig's Lanczos-3
# resampling kernel, plus the photon noise of undetected galaxies.

# %%
sim_bkg, data_bkg = inputs.background()
fig = quality_plots.plot_background_histograms(sim_bkg, data_bkg, tile.label)
fig.savefig(run.plot("07_background.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Detected objects
#
# Magnitude, size and ellipticity of the objects SExtractor detects in both
# images, and the number counts per square degree and magnitude over the
# unmasked area.

# %%
sim_obj, data_obj = inputs.objects()
fig = quality_plots.plot_triangles(sim_obj, data_obj, tile.label)
fig.savefig(run.plot("07_triangle.png"), dpi=100)
plt.show()

# %%
fig = quality_plots.plot_number_counts(
    sim_obj["MAG_AUTO"], data_obj["MAG_AUTO"], result.area_deg2, tile.label
)
fig.savefig(run.plot("07_number_counts.png"), dpi=100)
plt.show()

# %% [markdown]
# ## Metrics
#
# Section `quality` of `metrics.json`. `realism`: simulation against data (ratios
# near 1 and KS statistics near 0 are good); `psf_fwhm_max_abs_diff` is null unless
# stage 06 measured the PSF of the simulation (with the PSF CNN). `closure` (DEMO
# tile only): every estimate of the pipeline against the demo's truth; a missing
# product gives null and a warning. Stages 08 and 09 write sections of their own.

# %%
print("\n".join(result.metric_lines()))
