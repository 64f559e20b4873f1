"""Figures of stage 01 (notebook ``01_sky_and_sysmaps``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from hscsim_utils.thumbnail import thumbnail


def coadd_outline(shape: tuple[int, int]) -> tuple[list[float], list[float]]:
    """Closed outline of the patch: the outer pixel edges, x then y."""
    ny, nx = shape
    x0, x1, y0, y1 = -0.5, nx - 0.5, -0.5, ny - 0.5
    return [x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0]


def plot_frames(corners: np.ndarray, shape: tuple[int, int], label: str) -> Figure:
    """Frame quadrilaterals over the outline of the coadd patch."""
    fig, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    finite = np.isfinite(corners).all(axis=(1, 2))
    closed = np.concatenate([corners[finite], corners[finite, :1]], axis=1)
    ax.add_collection(LineCollection(closed, lw=0.5, alpha=0.4, color="tab:blue"))
    ax.plot(*coadd_outline(shape), color="black", lw=2, label="coadd patch")
    ax.autoscale_view()
    ax.set_aspect("equal")
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.legend(loc="upper right")
    ax.set_title(f"{label}\n{int(finite.sum())} CCD frames and the coadd patch")
    return fig


def plot_map(data: np.ndarray, label: str, what: str, unit: str) -> Figure:
    """One per-pixel map (e.g. exposure time) with a colour bar."""
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    shown = thumbnail(data)
    im = ax.imshow(shown.data, extent=shown.extent, origin="lower", cmap="viridis",
                   interpolation="nearest")  # fmt: skip
    fig.colorbar(im, ax=ax, label=unit)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.set_title(f"{label}\n{what}")
    return fig
