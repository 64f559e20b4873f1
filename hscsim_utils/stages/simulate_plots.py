"""Figures of stage 06 (notebook ``06_simulate``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import ImageNormalize, PercentileInterval
from matplotlib.figure import Figure

from hscsim_utils.thumbnail import thumbnail


def plot_sim_vs_data(
    sim_image: np.ndarray, data_image: np.ndarray, label: str
) -> Figure:
    """Simulated and data image side by side with one normalisation (the data's)."""
    shown = [thumbnail(img) for img in (sim_image, data_image)]
    finite = shown[1].data[np.isfinite(shown[1].data)]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax)
    fig, axs = plt.subplots(1, 2, figsize=(12, 6), constrained_layout=True)
    for ax, img, title in zip(
        axs, shown, ("Simulation (GalSBI + UFig)", "Data"), strict=True
    ):
        ax.imshow(img.data, extent=img.extent, origin="lower", cmap="gray", norm=norm)
        ax.set_title(title)
        ax.set_xlabel("x [px]")
    fig.suptitle(f"{label}: simulated versus data image")
    return fig
