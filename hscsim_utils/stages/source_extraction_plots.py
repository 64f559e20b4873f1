"""Figures of stage 03 (notebook ``03_source_extraction``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import ImageNormalize, PercentileInterval
from matplotlib.figure import Figure

from hscsim_utils.thumbnail import thumbnail

#: Catalogue columns shown in the triangle plot, with their plot ranges.
TRIANGLE_RANGES = {"MAG_AUTO": (17, 30), "FLUX_RADIUS": (0, 10), "ELLIPTICITY": (0, 1)}


def plot_checkimages(
    image: np.ndarray, segmentation: np.ndarray, background: np.ndarray, label: str
) -> Figure:
    """Image, segmentation map and background side by side."""
    img, bkg = thumbnail(image), thumbnail(background)
    seg = thumbnail((segmentation != 0).astype(np.uint8), block=np.maximum)
    finite = img.data[np.isfinite(img.data)]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    fig, axs = plt.subplots(1, 3, figsize=(15, 5), constrained_layout=True)
    axs[0].imshow(img.data, extent=img.extent, origin="lower", cmap="gray",
                  norm=ImageNormalize(vmin=vmin, vmax=vmax))  # fmt: skip
    axs[0].set_title("Image")
    axs[1].imshow(seg.data, extent=seg.extent, origin="lower", cmap="Blues",
                  interpolation="nearest")  # fmt: skip
    axs[1].set_title("Segmentation (detected pixels)")
    im = axs[2].imshow(bkg.data, extent=bkg.extent, origin="lower", cmap="viridis")
    fig.colorbar(im, ax=axs[2], label="background [ADU]")
    axs[2].set_title("Background")
    for ax in axs:
        ax.set_xlabel("x [px]")
    fig.suptitle(f"{label}: SExtractor check-images")
    return fig


def plot_catalog_triangle(cat: np.ndarray, label: str) -> Figure:
    """Triangle plot of MAG_AUTO, FLUX_RADIUS and ELLIPTICITY (as the tutorial)."""
    from trianglechain import TriangleChain

    params = list(TRIANGLE_RANGES)
    sel = np.ones(len(cat), bool)
    for name, (lo, hi) in TRIANGLE_RANGES.items():
        sel &= np.isfinite(cat[name]) & (cat[name] >= lo) & (cat[name] <= hi)
    data = {p: np.asarray(cat[p][sel], float) for p in params}
    tri = TriangleChain(fill=True, params=params, ranges=TRIANGLE_RANGES)
    tri.contour_cl(data)
    tri.fig.suptitle(
        f"{label}: SExtractor catalogue ({sel.sum()} of {len(cat)} sources in range)"
    )
    return tri.fig
