"""Figures of a tile's bands side by side (tiles of several bands).

``hscsim run`` runs the per-band stages of every band other than the detection
band in band runs (``RUN/bands/<band>/``) beside the detection band's own, and
stage 06 starts when all have finished. Its notebook shows what it simulates
from: :func:`band_maps` reads one product of every band (the detection band's
own and the band runs') with one of the readers here, :func:`plot_bands` shows
them on one colour scale, so that the bands' depth, coverage, masks and seeing
compare at a glance. On a tile of one band there is nothing to show.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.numerics.psf_model import grid_image
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.thumbnail import thumbnail

__all__ = [
    "Reader", "background_rms_map", "band_maps", "masked_map", "plot_bands",
    "psf_fwhm_map",
]  # fmt: skip


def background_rms_map(path: Path) -> tuple[np.ndarray, None]:
    """Stage 01's background RMS map (``map_bsig`` of the sysmaps file)."""
    with h5py.File(path, "r") as fh5:
        return np.asarray(fh5["map_bsig"][()], float), None


def masked_map(path: Path) -> tuple[np.ndarray, None]:
    """Stage 02's masked pixels (any ufig flag bit) as 0 or 1."""
    with h5py.File(path, "r") as fh5:
        return (fh5["mask"][()] != 0).astype(np.float32), None


def psf_fwhm_map(path: Path) -> tuple[np.ndarray, list[float]]:
    """Stage 05's PSF model FWHM (arcsec) on its grid, with the grid's extent."""
    with h5py.File(path, "r") as fh5:
        grid = fh5["grid_psf"][()]
    image, extent = grid_image(grid, "psf_fwhm_ipt")
    return image * PIXEL_SCALE_ARCSEC, extent


#: Reads one band's product: the image to show and its extent (None: the pixels).
Reader = Callable[[Path], tuple[np.ndarray, "list[float] | None"]]


def band_maps(
    tile: TileSpec, run: RunFolder, product: str, read: Reader
) -> dict[str, tuple[np.ndarray, list[float] | None]]:
    """``read`` of the run-folder ``product`` (e.g. ``"sysmaps"``) of every band
    that has it, in the order g r i z y; empty unless ``run`` is the detection
    band's run of a tile of several bands."""
    if len(tile.bands) < 2 or tile.band != tile.detection_band:
        return {}
    runs = run.band_runs(tile.bands, tile.band)
    paths = {b: getattr(r, product) for b, r in runs.items()}
    return {b: read(p) for b, p in paths.items() if p.is_file()}


def plot_bands(
    maps: dict[str, tuple[np.ndarray, list[float] | None]],
    label: str,
    what: str,
    unit: str,
) -> Figure:
    """One panel per band on a common colour scale (the 2-98 percentiles of all
    bands); large images are block-averaged for display."""
    shown = {}
    for band, (data, extent) in maps.items():
        if extent is None:
            small = thumbnail(data)
            shown[band] = (small.data, small.extent)
        else:
            shown[band] = (data, extent)
    values = np.concatenate([d[np.isfinite(d)].ravel() for d, _ in shown.values()])
    vmin, vmax = np.percentile(values, [2, 98]) if values.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown) + 1.0, 3.8),
                             squeeze=False, constrained_layout=True)  # fmt: skip
    for ax, (band, (data, extent)) in zip(axes[0], shown.items(), strict=True):
        im = ax.imshow(data, origin="lower", extent=extent, vmin=vmin, vmax=vmax,
                       cmap="viridis", interpolation="nearest")  # fmt: skip
        finite = data[np.isfinite(data)]
        median = f"median {np.median(finite):.3g}" if finite.size else "no data"
        ax.set_title(f"{band} band ({median})")
        ax.set_xlabel("x [px]")
    fig.colorbar(im, ax=axes[0], shrink=0.85, label=f"{what} [{unit}]")
    fig.suptitle(f"{label}: {what}, every band")
    return fig
