"""Figures of stage 06 (notebook ``06_simulate``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import ImageNormalize, PercentileInterval
from matplotlib.figure import Figure


def plot_sim_vs_data(
    sim_image: np.ndarray, data_image: np.ndarray, label: str
) -> Figure:
    """Simulated and data image side by side with one normalisation (the data's)."""
    step = max(1, max(data_image.shape) // 1500)
    view = (slice(None, None, step), slice(None, None, step))
    finite = data_image[view][np.isfinite(data_image[view])]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax)
    fig, axs = plt.subplots(1, 2, figsize=(12, 6), constrained_layout=True)
    for ax, img, title in zip(
        axs, (sim_image, data_image), ("Simulation (GalSBI + UFig)", "Data"),
        strict=True,
    ):  # fmt: skip
        ax.imshow(img[view], origin="lower", cmap="gray", norm=norm)
        ax.set_title(title)
        ax.set_xlabel(f"x [{step} px]" if step > 1 else "x [px]")
    fig.suptitle(f"{label}: simulated versus data image")
    return fig
