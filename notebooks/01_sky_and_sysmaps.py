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
# # 01 Sky information and systematic maps
#
# *Runtime on 2 cores: about 23 s on the full 4200 x 4200 DEMO (each band).*
#
# Much of what the simulation needs comes straight from the real patch: the FITS
# header gives the pixel grid and WCS, the coadd metadata (one row of the HSC
# archive's `mosaic` table) gives seeing, zero point and centre, and the frame
# metadata (one row per CCD frame that went into the coadd) gives per-pixel maps of
# exposure time, number of exposures, gain and which visits cover each pixel.
# The background RMS map is measured on the image itself.
#
# Outputs in the run folder: `sysmaps.h5` (ufig's `sysmaps_hdf_combined` layout),
# `skymapinfo.json` (for people) and `skymapinfo.npy` (the record array ufig
# configs load).

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty: the demo tile
run_dir = ""  # run folder; empty: the demo run folder
band = ""  # empty: the band of the tile file
mask_sources = True  # False: background RMS with sigma clipping only (tutorial)

# %%
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import sky_and_sysmaps as sysmaps
from hscsim_utils.stages import sky_and_sysmaps_plots as plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)

# %% [markdown]
# ## Header, coadd metadata and exposure maps
#
# Frame corners (RA/Dec of ll, ul, ur, lr) are projected with the patch WCS to
# 0-based pixel coordinates (pixel `[j, i]` has its centre at `x = i, y = j`); a
# pixel belongs to a frame when its centre lies in the frame's quadrilateral.
# Each visit gets an index (the rank of its visit number) and sets one bit of the
# five 64-bit visit words (`bit1` holds visits 0-63, `bit2` 64-127, ...).
# The background RMS comes from `Background2D` (box 128, 3x3 filter,
# SExtractor estimator, 3-sigma clipping) with NO_DATA pixels masked. Sigma
# clipping alone leaves the light of galaxies in the boxes (about +10 % RMS in a
# deep field), so a second pass also masks detected sources (3x3-smoothed image
# above 3 sigma, grown by 3 pixels); `mask_sources = False` gives the tutorial's
# estimate.
#
# The effective gain (electrons per coadd ADU) is recorded twice: the tutorial's
# `gain_eff_tutorial` (mean gain of one exposure x mean number of exposures, a
# few hundred) and `gain_eff`, measured from the VARIANCE plane, whose excess over
# the sky's on bright pixels is image / gain (of order 10^5 on an ultra-deep
# coadd: each coadd ADU is the light of ~200 visits).

# %%
params = sysmaps.Params(band=band, mask_sources=mask_sources)
result = sysmaps.run(tile, run, params)
for key, value in result.info.items():
    print(f"{key:>19s} = {value}")
print(f"visits: {result.maps.n_visits}, frames: {len(result.maps.corners)}")

# %% [markdown]
# ## Frames over the coadd patch
#
# The black outline is the patch (outer pixel edges); each thin quadrilateral is
# one CCD frame of one visit.

# %%
fig = plots.plot_frames(result.maps.corners, result.shape, tile.label)
save_and_show(fig, run.plot("01_frames.png"), dpi=120)

# %% [markdown]
# ## Exposure time and background RMS

# %%
fig = plots.plot_map(result.maps.expt, tile.label, "exposure time map", "s")
save_and_show(fig, run.plot("01_exposure_time.png"), dpi=120)

# %%
fig = plots.plot_map(
    result.background.rms, tile.label, "background RMS (Background2D)", "image units"
)
save_and_show(fig, run.plot("01_background_rms.png"), dpi=120)
