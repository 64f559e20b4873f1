"""Figures of stage 04 (notebook ``04_stars``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import ImageNormalize, PercentileInterval
from astropy.wcs import WCS
from matplotlib.figure import Figure

from hscsim_utils.thumbnail import thumbnail


def besancon_gaia_g(cat: np.ndarray) -> np.ndarray:
    """Gaia G of Besançon stars, with the colour transformation ufig uses."""
    from ufig.plugins.draw_stars_besancon_map import transform_from_sdss_to_gaia_colours

    return transform_from_sdss_to_gaia_colours(cat)


def plot_star_counts(
    besancon: dict, gaia: np.ndarray, patch_area: float, pixel: int, label: str
) -> Figure:
    """Star counts per deg^2 and magnitude: Besançon (G and i) against Gaia (G)."""
    cat = besancon["catalogs"][pixel]
    area = besancon["simulation_area"]
    bins = np.arange(10, 30.01, 0.5)
    width = np.diff(bins)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for values, name, scale in (
        (besancon_gaia_g(cat), f"Besançon G (pixel {pixel})", area),
        (cat["i"], f"Besançon i (pixel {pixel})", area),
        (gaia["phot_g_mean_mag"], "Gaia DR3 G (patch)", patch_area),
    ):
        counts, _ = np.histogram(values, bins)
        ax.stairs(counts / scale / width, bins, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("magnitude")
    ax.set_ylabel("stars per deg$^2$ per mag")
    ax.legend()
    ax.set_title(f"{label}: star counts")
    return fig


def plot_gaia_on_image(
    image: np.ndarray, wcs: WCS, gaia: np.ndarray, label: str
) -> Figure:
    """Gaia positions over the image, marker size by G magnitude."""
    shown = thumbnail(image)
    vmin, vmax = PercentileInterval(90).get_limits(shown.data[np.isfinite(shown.data)])
    x, y = wcs.all_world2pix(gaia["ra"], gaia["dec"], 0)
    size = np.clip(2.0 ** (21 - gaia["phot_g_mean_mag"]), 4, 300)
    fig, ax = plt.subplots(figsize=(7, 7), constrained_layout=True)
    ax.imshow(shown.data, extent=shown.extent, origin="lower", cmap="gray",
              norm=ImageNormalize(vmin=vmin, vmax=vmax))  # fmt: skip
    ax.scatter(x, y, s=size, facecolors="none", edgecolors="tab:red", lw=0.8)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    ax.set_xlabel("x [px]")
    ax.set_title(f"{label}: {len(gaia)} Gaia DR3 stars")
    return fig
