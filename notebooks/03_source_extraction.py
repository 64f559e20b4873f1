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
# # 03 Source extraction
#
# *Runtime on 2 cores: about 22 s on the full 4200 x 4200 DEMO (each band;
# forced photometry in the bands other than the detection band).*
#
# We run SExtractor on the patch to get a catalogue of the sources of the real
# image and its segmentation map. It uses ufig's HSC configuration (the same files
# ufig uses on the simulated image) with the tile's mean seeing, saturation level,
# zero point, pixel scale and the effective gain of the coadd, all from stage 01's
# `skymapinfo.json`. The gain is the tutorial's (gain of one exposure times the
# number of exposures) or, with `gain = "measured"`, the one stage 01 measured
# from the VARIANCE plane (electrons per coadd ADU; much larger on a deep coadd).
#
# Outputs in the run folder: `sextractor/data_se.cat` (ufig's HDF5 catalogue
# layout, one dataset per column), `sextractor/data_se_seg.fits` (segmentation)
# and `sextractor/data_se_bkg.fits` (background).

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty: the demo tile
run_dir = ""  # run folder; empty: the demo run folder
sextractor_binary = ""  # empty: source-extractor or sex, whichever is on PATH
sextractor_config = "hsc.config"  # file in ufig/res/sextractor, or a path
weighting = "none"  # none: as in the simulation; variance: inverse-variance weights
off_mask_radius = 1.0  # stamp flags: radius in units of FLUX_RADIUS
blank_planes = "NO_DATA"  # comma-separated MASK planes treated as no data
gain = "tutorial"  # tutorial: mean gain x mean n_exp; measured: from VARIANCE

# %%
from astropy.io import fits

from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import source_extraction as extraction
from hscsim_utils.stages import source_extraction_plots as plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)

# %% [markdown]
# ## Running SExtractor
#
# The image goes to SExtractor through a temporary FITS file. It runs exactly as
# ufig runs it on the simulated image (no weight map, one global detection
# threshold), so that data and simulation are measured alike. Pixels without data
# (`NO_DATA`, or non-finite) are set to 0, the sky level of the background-subtracted
# coadd: they are never detected and do not change the threshold.
# `blank_planes` names further MASK planes to treat so (the tutorial's default is
# `NO_DATA` alone; the simulation is measured without masks).
# `weighting = "variance"` uses the inverse VARIANCE plane as weight map instead
# (cleaner at the noisy coverage border, but detects fewer faint objects; see
# `hscsim_utils/stages/source_extraction.py`). Detection and measurement run on
# the same image (dual-image mode, as ufig); on a tile of several bands every band
# but the detection band is measured in forced photometry: detected on the
# detection band's calexp, measured on this band's, row for row (as ufig measures
# the simulation), so that colours can be formed. The catalogue and the check-images
# appear only if SExtractor succeeds; a missing binary or a failed run stops here
# with SExtractor's own error message.
#
# Then ufig adds `FLAGS_STAMP` from the mask and overlap files of stage 02:
# bit 1 overlap with a neighbouring tile, bit 5 near a bright star,
# bit 6 in the survey mask.

# %%
params = extraction.Params(
    sextractor_binary=sextractor_binary,
    sextractor_config=sextractor_config,
    weighting=weighting,
    off_mask_radius=off_mask_radius,
    blank_planes=blank_planes,
    gain=gain,
)
result = extraction.run(tile, run, params)
print(result.settings)
if result.detected_in:
    print(f"forced photometry: detected in the {result.detected_in} band")
print(f"{result.summary['n_sources']} sources in {result.summary['seconds']:.1f} s")
for line in result.summary["warnings"]:
    print(line)
flags = result.catalog["FLAGS_STAMP"]
for bit, name in [(1, "overlap"), (5, "bright star"), (6, "survey mask")]:
    print(f"{name:>12s}: {((flags >> bit) & 1).sum()} sources flagged")

# %% [markdown]
# ## Image, segmentation and background

# %%
fig = plots.plot_checkimages(
    result.calexp.image,
    fits.getdata(run.sextractor_seg),
    fits.getdata(run.sextractor_bkg),
    tile.label,
)
save_and_show(fig, run.plot("03_checkimages.png"), dpi=120)

# %% [markdown]
# ## Catalogue
#
# Magnitude, size and ellipticity of the detected sources. Stars form the narrow
# sequence at small `FLUX_RADIUS`.

# %%
fig = plots.plot_catalog_triangle(result.catalog, tile.label)
save_and_show(fig, run.plot("03_catalog_triangle.png"), dpi=120)
