"""Figures of a tile's bands side by side (tiles of several bands).

``hscsim run`` runs the per-band stages of every band other than the detection
band first, each in its band run (``RUN/bands/<band>/``), so when a stage
notebook runs in the detection band's run folder the other bands' products of
that stage are there too. :func:`band_maps` reads one product of every band
that has it (the detection band's own and the band runs', read by the stage's
plot module); the notebooks of stages 01, 02 and 05 show them with
:func:`plot_bands` on one colour scale, so
that the bands' depth, coverage, masks and seeing compare at a glance. A notebook
run inside a band run, or on a tile of one band, shows none (one band only).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.thumbnail import thumbnail

__all__ = ["Reader", "band_maps", "plot_bands"]


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
