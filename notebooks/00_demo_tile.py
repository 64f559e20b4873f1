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
# # 00 The demo tile (simulated)
#
# *Runtime on 2 cores: the full 4200 x 4200 DEMO takes about 3 min in the i band
# and 13-14 min in five bands.*
#
# No real HSC patch can be downloaded here, so the pipeline is exercised on a
# **simulated** patch that imitates an HSC-SSP UltraDeep i-band coadd: tract 8523,
# patch 4,2 in the XMM-LSS / SXDS field, built from 150 dithered 270 s visits of
# the 104-CCD HSC focal plane, galaxies from the GalSBI Moser+24 posterior, real
# Besançon model stars spliced with real Gaia DR3 stars, a spatially varying
# two-Moffat PSF, Lanczos-correlated noise, saturation and the HSC bright-star
# masks. Everything is written in the real formats (calexp FITS, archive CSV,
# Besançon header + FITS, VizieR VOTable) plus a `truth/` folder with what
# went in.

# %% tags=["parameters"]
out_dir = ""  # output folder; empty: the default demo folder
size = [4200, 4200]  # patch size in pixels (NX, NY), cut around the patch centre
seed = 20240611  # draws galaxies, stars and noise
generator = (
    "galsim"  # galsim: independent forward model; ufig: the simulation's renderer
)
preset = "ud"  # galsim tiles: ud (UltraDeep) or deep

# %%
from pathlib import Path

from hscsim_utils.demo import files as demo_files
from hscsim_utils.demo import plots as demo_plots
from hscsim_utils.demo.generate import build_tile
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import default_demo_dir, load_tile

out = Path(out_dir) if out_dir else default_demo_dir()

# %% [markdown]
# ## Build
#
# The observation (visits, CCD gains, per-visit PSF fields) is fixed; the truth
# maps come from each visit's focal-plane position of every pixel centre; GalSBI
# and ufig render the image; the MASK and VARIANCE planes are added last.

# %%
size = demo_files.parse_size(size)  # papermill may pass the list as text
tile = load_tile(build_tile(out, size, int(seed), generator, preset))
calexp = hsc_io.read_calexp(tile.calexp, band=tile.band)
frames = hsc_io.read_frame_metadata(tile.frame_metadata)
plots = out / "plots"
plots.mkdir(exist_ok=True)
print(tile.label, calexp.shape, f"{len(frames)} CCD frames")

# %% [markdown]
# ## Image
#
# Zero point 27 (AB); NO_DATA pixels are NaN, as in real coadds.

# %%
fig = demo_plots.plot_image(calexp, tile.label)
save_and_show(fig, plots / "00_image.png", dpi=100)

# %% [markdown]
# ## Exposure time and CCD frames
#
# The true exposure map with the frame outlines of the archive CSV: CCD gaps
# leave stripes, and the patch lies at the edge of the simulated UD footprint.

# %%
fig = demo_plots.plot_exposure_with_frames(
    tile.truth_dir / "sysmaps.h5", frames, calexp.wcs, tile.label
)
save_and_show(fig, plots / "00_exposure_frames.png", dpi=100)

# %% [markdown]
# ## Mask
#
# BRIGHT_OBJECT discs around Gaia stars brighter than G = 17.5 (HSC-SSP radius
# law), NO_DATA where no frame covers the patch, SAT on saturated stars.

# %%
fig = demo_plots.plot_mask(calexp, tile.label)
save_and_show(fig, plots / "00_mask.png", dpi=100)

# %% [markdown]
# ## True PSF
#
# The coadd PSF FWHM on ufig's 100-pixel grid: each visit's focal-plane PSF
# field, combined with the coadd weights of the visits covering each point.

# %%
fig = demo_plots.plot_psf_fwhm(tile.truth_dir / "psf_model.h5", tile.label)
save_and_show(fig, plots / "00_psf_fwhm.png", dpi=100)
