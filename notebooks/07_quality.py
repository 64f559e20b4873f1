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
# *Runtime on 2 cores: about 30 s on the full 4200 x 4200 DEMO in the i band,
# 115 s in five bands.*
#
# The simulation of stage 06 is compared with the data: first by eye (both images
# with the same normalisation), then quantitatively with the same cuts on both:
# background pixels (segmentation 0, not masked) and detected objects (SExtractor
# `FLAGS == 0`, not on a masked pixel).
#
# The patch is split into two halves by a checkerboard of 256-pixel blocks.
# Stages 08 and 09 tune the simulation on the *tuning* half; every realism number
# here is computed on the *scoring* half only. Each statistic comes with its
# noise floor: the same statistic between two halves of the data (sampling noise
# and the field's own variance at the same sample size). A difference between
# simulation and data is significant when it exceeds twice the floor (for a
# chi-square, when chi2/dof exceeds its 99% point).
#
# Both the simulation and the DEMO tile know their true objects: detections are
# matched to them for completeness, purity and photometry.
#
# The numbers go to the section `quality` of `metrics.json`: `realism` (which
# simulation, DEMO or REAL data, the half, every statistic with its floor),
# `truth` (the matched detections) and for the DEMO tile `closure`, every
# stage's product against the truth the demo was built from.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty means the demo tile
run_dir = ""  # run folder; empty means the demo run folder
simulation = ""  # folder relative to the run folder; empty means sim/baseline

# %%
from hscsim_utils.figure_output import save_and_show
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
save_and_show(fig, run.plot("07_images.png"), dpi=100)

# %% [markdown]
# ## Background noise
#
# Pixels of the scoring half outside every detection and outside the masks. The
# simulation's noise comes from the background RMS map of stage 01 smoothed by
# UFig's Lanczos-3 resampling kernel, plus the photon noise of undetected
# galaxies.

# %%
sim_bkg, data_bkg = inputs.background("scoring")
fig = quality_plots.plot_background_histograms(sim_bkg, data_bkg, tile.label)
save_and_show(fig, run.plot("07_background.png"), dpi=100)

# %% [markdown]
# ## Detected objects
#
# Magnitude, size and ellipticity of the objects SExtractor detects in the
# scoring half of both images, and the number counts per square degree and
# magnitude over its unmasked area.

# %%
sim_obj, data_obj = inputs.objects("scoring")
fig = quality_plots.plot_triangles(sim_obj, data_obj, tile.label)
save_and_show(fig, run.plot("07_triangle.png"), dpi=100)

# %%
fig = quality_plots.plot_number_counts(
    sim_obj["MAG_AUTO"], data_obj["MAG_AUTO"], result.area_deg2, tile.label
)
save_and_show(fig, run.plot("07_number_counts.png"), dpi=100)

# %% [markdown]
# ## Realism statistics and their noise floors
#
# One line per statistic, simulation against data on the scoring half. `floor`
# is the same statistic between two halves of the data: the rms over the
# tuning/scoring checkerboard and its copies moved by quarter blocks (for a
# chi-square the mean chi2/dof). For a ratio the floor and threshold are
# distances from 1. KS statistics and the autocorrelation difference are
# distances (0 is perfect); `number_counts_chi2` (counts per 0.5 mag, Poisson)
# and `size_mag_chi2` (median FLUX_RADIUS per 0.5 mag) are chi2 per degree of
# freedom.

# %%
print(result.statistics_table())

# %% [markdown]
# ## Every other band (tiles of several bands)
#
# The same statistics in each band but the detection band: that band's image
# against the simulation of that band, background pixels outside the detection
# band's segments, objects measured in forced photometry (detected in the
# detection band, flags and magnitudes of this band), floors from the band's own
# data halves.

# %%
for band, table in result.band_tables().items():
    print(f"{band} band:\n{table}\n")
if not result.bands:
    print("one band")

# %% [markdown]
# ## Detections against the true objects
#
# Detections matched one-to-one to the true galaxies and stars within 3 pixels
# (nearest pairs first). Completeness: true objects (on unmasked pixels) with a
# detection, per true magnitude; purity: detections with a true object, per
# MAG_AUTO; both for `FLAGS == 0` and for all detections. The simulation's truth
# is ufig's intrinsic catalogue; a REAL tile has no truth for the data.

# %%
if result.truth is None:
    print("no true catalogue for the simulation or the data")
else:
    print(result.truth_table())
    fig = quality_plots.plot_completeness_purity(result.truth, tile.label)
    save_and_show(fig, run.plot("07_completeness_purity.png"), dpi=100)
    fig = quality_plots.plot_mag_offsets(result.truth, tile.label)
    save_and_show(fig, run.plot("07_mag_offsets.png"), dpi=100)

# %% [markdown]
# ## Redshifts of the detected galaxies
#
# GalSBI knows every simulated galaxy's redshift; UFig matches each detection to
# the galaxy that dominates its segment. The n(z) of the detected galaxies below
# MAG_AUTO 23, 24 and 25 is what a magnitude-limited selection in the data
# corresponds to in redshift. The data have no redshifts, so this describes the
# simulation only; the errors are bootstrap errors over the patch's galaxies
# (cosmic variance not included).

# %%
if result.redshifts is None:
    print("the simulation's catalogue has no matched redshifts")
else:
    fig = quality_plots.plot_redshift_distribution(result.redshifts, tile.label)
    save_and_show(fig, run.plot("07_redshifts.png"), dpi=100)

# %% [markdown]
# ## Colours (tile of several bands)
#
# Every band but the detection band is measured in forced photometry, in the
# data (stage 03 of each band) as in the simulation (UFig's dual-image
# SExtractor): the same objects in the same apertures, so `MAG_AUTO` differences
# are colours. An object counts when it counts in every band (`FLAGS == 0`, off
# each band's masks). Per colour of neighbouring bands: its distribution in both
# (top) and the colour-magnitude diagram with the median colour per 0.5 mag
# (bottom), on the scoring half; the KS distance and median shift come with their
# floors from the data's halves, as the statistics above.

# %%
if result.colours is None:
    print("one band: no colours")
else:
    print(result.colour_table())
    fig = quality_plots.plot_colours(result.colours, tile.label)
    save_and_show(fig, run.plot("07_colours.png"), dpi=100)

# %% [markdown]
# ## Metrics
#
# Section `quality` of `metrics.json`. `realism`: simulation against data on the
# scoring half (ratios near 1 and KS statistics near 0 are good, the table above
# says which differences exceed the noise); `psf_fwhm_max_abs_diff` is null unless
# stage 06 measured the PSF of the simulation (with the PSF CNN). `closure` (DEMO
# tile only): every estimate of the pipeline against the demo's truth; a missing
# product gives null and a warning. `redshifts`: the n(z) above; `colours` and
# `bands` (several bands): the colour statistics and every other band's realism
# above. Stages 08 and 09
# write sections of their own.

# %%
print("\n".join(result.metric_lines()))
