"""Figures of stage 07 (notebook ``07_quality``): background pixels, detected
objects and number counts of the simulation and the data."""

from __future__ import annotations

import numpy as np

from hscsim_utils.stages.quality import TRIANGLE_RANGES, number_counts, robust_std

MAX_SHOWN_PIXELS = 1500  # per axis; larger images are shown every n-th pixel


def plot_images(sim_image: np.ndarray, data_image: np.ndarray, label: str):
    """Simulation and data side by side, on the grey scale of the data (its 90%
    interval)."""
    import matplotlib.pyplot as plt
    from astropy.visualization import ImageNormalize, PercentileInterval

    step = max(1, max(data_image.shape) // MAX_SHOWN_PIXELS)
    shown = [img[::step, ::step] for img in (sim_image, data_image)]
    finite = shown[1][np.isfinite(shown[1])]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), constrained_layout=True)
    titles = ("Simulation (GalSBI + UFig)", "Data")
    for ax, img, title in zip(axes, shown, titles, strict=True):
        ax.imshow(img, origin="lower", cmap="gray", norm=norm)
        ax.set_title(title)
        ax.set_xlabel(f"x [{step} px]" if step > 1 else "x [px]")
    fig.suptitle(f"{label}: simulated versus data image")
    return fig


def plot_background_histograms(sim_bkg: np.ndarray, data_bkg: np.ndarray, label: str):
    """Histograms of the background pixel values of simulation and data."""
    import matplotlib.pyplot as plt

    sigma = robust_std(data_bkg) or robust_std(sim_bkg) or 1.0
    centre = float(np.median(data_bkg)) if len(data_bkg) else 0.0
    bins = np.linspace(centre - 6 * sigma, centre + 6 * sigma, 241)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for values, name in ((data_bkg, "data"), (sim_bkg, "simulation")):
        ax.hist(values, bins=bins, histtype="step", density=True,
                label=f"{name} (robust std {robust_std(values) or 0:.4g})")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("pixel value [ADU]")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(f"{label}\nbackground pixels (segmentation 0, not masked)")
    return fig


def plot_triangles(sim_objects: np.ndarray, data_objects: np.ndarray, label: str):
    """Triangle plot of MAG_AUTO, FLUX_RADIUS, ELLIPTICITY for both catalogues."""
    from trianglechain import TriangleChain

    params = list(TRIANGLE_RANGES)
    tri = TriangleChain(params=params, ranges=TRIANGLE_RANGES, show_legend=True)
    for cat, name, color in ((data_objects, "data", "k"),
                             (sim_objects, "simulation", "C1")):  # fmt: skip
        sel = np.ones(len(cat), bool)
        for col, (lo, hi) in TRIANGLE_RANGES.items():
            sel &= (cat[col] >= lo) & (cat[col] <= hi)
        data = {p: np.asarray(cat[p][sel], float) for p in params}
        tri.contour_cl(data, color=color, label=f"{name} ({sel.sum()} objects)")
    tri.fig.suptitle(f"{label}\ndetected objects, simulation versus data")
    return tri.fig


def plot_number_counts(
    sim_mags: np.ndarray, data_mags: np.ndarray, area: float, label: str
):
    """MAG_AUTO number counts per deg^2 per magnitude."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for mags, name in ((data_mags, "data"), (sim_mags, "simulation")):
        centres, density = number_counts(mags, area)
        ax.step(centres, density, where="mid", label=f"{name} ({len(mags)} objects)")
    ax.set_yscale("log")
    ax.set_xlabel("MAG_AUTO")
    ax.set_ylabel(r"$N$ per deg$^2$ per mag")
    ax.legend()
    ax.set_title(f"{label}\nnumber counts ({area * 3600:.1f} arcmin$^2$ unmasked)")
    return fig
