"""Figures of stage 02 (notebook ``02_masks``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import ImageNormalize, PercentileInterval
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from hscsim_utils.stages.masks import FLAGBIT_STAR
from hscsim_utils.thumbnail import thumbnail


def plot_mask(image: np.ndarray, mask: np.ndarray, label: str) -> Figure:
    """The image beside the ufig mask (star, survey, both)."""
    fig, axs = plt.subplots(
        1, 2, figsize=(12, 5.5), sharex=True, sharey=True, layout="constrained"
    )
    shown = thumbnail(image)
    finite = shown.data[np.isfinite(shown.data)]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax)
    axs[0].imshow(shown.data, extent=shown.extent, origin="lower", cmap="gray",
                  norm=norm)  # fmt: skip
    axs[0].set_title("image")
    cmap = ListedColormap(["white", "tab:orange", "tab:blue", "tab:purple"])
    flags = thumbnail(mask >> FLAGBIT_STAR, block=np.bitwise_or)
    im = axs[1].imshow(flags.data, extent=flags.extent, origin="lower", cmap=cmap,
                       vmin=-0.5, vmax=3.5, interpolation="nearest")  # fmt: skip
    cbar = fig.colorbar(im, ax=axs[1], ticks=[0, 1, 2, 3], shrink=0.8)
    cbar.ax.set_yticklabels(["none", "star (2)", "survey (4)", "both (6)"])
    axs[1].set_title("ufig mask flags")
    fig.suptitle(label)
    return fig
