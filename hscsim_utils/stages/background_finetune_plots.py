"""Figure of stage 09 (notebook ``09_background_finetune``): background pixels of
the data and of every simulation."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hscsim_utils.stages import quality


def plot_background_steps(
    data_bkg: np.ndarray, sims: Mapping[str, np.ndarray], label: str
):
    """Histograms of the background pixels of the data and of each simulation."""
    import matplotlib.pyplot as plt

    sigma = quality.robust_std(data_bkg) or 1.0
    centre = float(np.median(data_bkg))
    bins = np.linspace(centre - 6 * sigma, centre + 6 * sigma, 241)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True)
    ref, _ = np.histogram(data_bkg, bins=bins, density=True)
    mid = 0.5 * (bins[1:] + bins[:-1])
    axes[0].stairs(ref, bins, color="k", lw=1.5,
                   label=f"data (robust std {sigma:.4g})")  # fmt: skip
    for i, (name, values) in enumerate(sims.items()):
        hist, _ = np.histogram(values, bins=bins, density=True)
        std = quality.robust_std(values) or 0.0
        axes[0].stairs(
            hist, bins, color=f"C{i}", label=f"{name} (robust std {std:.4g})"
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            axes[1].plot(mid, hist / ref, color=f"C{i}", label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("pixel value [ADU]")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    axes[1].axhline(1, color="k", lw=0.8)
    axes[1].set_ylim(0, 2)
    axes[1].set_xlabel("pixel value [ADU]")
    axes[1].set_ylabel("simulation / data")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{label}\nbackground pixels (segmentation 0, not masked, "
                 "scoring half), before and after fine-tuning")  # fmt: skip
    return fig
