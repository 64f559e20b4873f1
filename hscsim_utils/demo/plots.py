"""Figures of the DEMO tile (simulated): image, exposure and frames, mask, true PSF.

Every function takes the title ``label`` (e.g. ``TileSpec.label``, which says
"DEMO tile (simulated)") and returns the matplotlib figure.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.runfolder import read_dataset
from hscsim_utils.thumbnail import thumbnail


def plot_image(calexp: hsc_io.Calexp, label: str) -> Figure:
    """The IMAGE plane with an asinh stretch (NO_DATA pixels blank)."""
    shown = thumbnail(calexp.image)
    finite = shown.data[np.isfinite(shown.data)]
    vmin, vmax = PercentileInterval(99.5).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax, stretch=AsinhStretch(0.05))
    fig, ax = plt.subplots(figsize=(7, 6.5))
    im = ax.imshow(shown.data, extent=shown.extent, origin="lower", cmap="gray",
                   norm=norm)  # fmt: skip
    fig.colorbar(im, ax=ax, label="ADU (zero point 27)")
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.set_title(f"{label}\ni-band coadd image")
    return fig


def plot_exposure_with_frames(
    sysmaps: Path, frames, wcs, label: str, max_frames: int = 400
) -> Figure:
    """True exposure-time map with the CCD frames of the archive CSV on top."""
    expt = read_dataset(sysmaps, "map_expt")
    shown = thumbnail(expt / 3600.0)
    fig, ax = plt.subplots(figsize=(7, 6.5))
    im = ax.imshow(shown.data, extent=shown.extent, origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax, label="exposure time [h]")
    for k in range(min(len(frames), max_frames)):
        corners = ("ll", "ul", "ur", "lr", "ll")
        ra = [frames[f"{c}cra"].iloc[k] for c in corners]
        dec = [frames[f"{c}cdec"].iloc[k] for c in corners]
        x, y = wcs.all_world2pix(ra, dec, 1)
        ax.plot(x - 1, y - 1, color="white", lw=0.3, alpha=0.5)
    ny, nx = expt.shape
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(-0.5, ny - 0.5)
    ax.set_title(f"{label}\ntrue exposure time and CCD frames ({len(frames)})")
    return fig


def plot_mask(calexp: hsc_io.Calexp, label: str) -> Figure:
    """NO_DATA, BRIGHT_OBJECT and SAT planes of the MASK HDU."""
    planes = ("BRIGHT_OBJECT", "NO_DATA", "SAT")
    code = np.zeros(calexp.shape, np.int8)
    for value, name in enumerate(planes, start=1):
        code[calexp.plane(name)] = value
    shown = thumbnail(code, block=np.maximum)
    cmap = ListedColormap(["#202020", "#e6a23c", "#4a90d9", "#e8473f"])
    fig, ax = plt.subplots(figsize=(7, 6.5))
    im = ax.imshow(shown.data, extent=shown.extent, origin="lower", cmap=cmap,
                   vmin=-0.5, vmax=3.5, interpolation="nearest")  # fmt: skip
    bar = fig.colorbar(im, ax=ax, ticks=range(4))
    bar.ax.set_yticklabels(["none", *planes])
    ax.set_title(f"{label}\nMASK planes")
    return fig


def plot_psf_fwhm(psf_model: Path, label: str) -> Figure:
    """True coadd PSF FWHM on ufig's 100-pixel grid."""
    with h5py.File(psf_model, "r") as fh:
        fwhm = fh["grid/fwhm"][()]
        x, y = fh["grid/x_fits"][()], fh["grid/y_fits"][()]
    fig, ax = plt.subplots(figsize=(7, 6.5))
    step = x[1] - x[0] if len(x) > 1 else 100.0
    extent = (x[0] - 0.5, x[-1] - 0.5 + step, y[0] - 0.5, y[-1] - 0.5 + step)
    im = ax.imshow(fwhm, origin="lower", extent=extent, cmap="magma")
    fig.colorbar(im, ax=ax, label="PSF FWHM [arcsec]")
    ax.set_title(f"{label}\ntrue coadd PSF FWHM")
    return fig
