"""Figures of stage 08 (notebook ``08_psf_finetune``): the adjustment fit and the
PSF measured on the simulations minus their input."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hscsim_utils.numerics.psf_model import PARAM_NAMES
from hscsim_utils.stages.psf_finetune import (
    LinearAdjustment,
    max_abs_diffs,
    mean_diffs,
    measured_and_input,
)


def plot_adjustment_fits(
    cat: np.ndarray, fits: Mapping[str, LinearAdjustment], label: str
):
    """Input against measured model at the stars, with the fitted relation."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(15, 7.5), constrained_layout=True)
    for ax, name in zip(axes.ravel(), PARAM_NAMES, strict=True):
        measured, target = measured_and_input(cat, name)
        ax.scatter(measured, target, s=12, color="k", label="stars")
        lo = min(measured.min(), target.min()) if len(target) else 0.0
        hi = max(measured.max(), target.max()) if len(target) else 1.0
        line = np.linspace(lo, hi, 2)
        ax.plot(line, line, ":", color="grey", label="input = measured")
        fit = fits[name]
        text = f"{fit.intercept:+.4g} + {fit.slope:.3f} x ({fit.kind})"
        ax.plot(line, fit.apply(line), color="C3", label=text)
        ax.set_xlabel(f"{name} measured (model at star)")
        ax.set_ylabel(f"{name} input")
        ax.legend(fontsize=7)
    fig.suptitle(f"{label}: PSF measured on the simulation against its input")
    return fig


def plot_diffs(cat_before: np.ndarray, cat_after: np.ndarray, label: str):
    """Largest ``|measured - input|`` (log scale) and mean ``measured - input``
    (in units of the parameter's input spread) per parameter, before and after."""
    import matplotlib.pyplot as plt

    x = np.arange(len(PARAM_NAMES))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), constrained_layout=True)
    cases = ((-0.2, cat_before, "not adjusted (baseline simulation)"),
             (0.2, cat_after, "adjusted (improved-PSF simulation)"))  # fmt: skip
    for shift, cat, name in cases:
        spread = {p: np.std(measured_and_input(cat, p)[1]) for p in PARAM_NAMES}
        worst, bias = max_abs_diffs(cat), mean_diffs(cat)
        heights = [np.nan if worst[p] is None else worst[p] for p in PARAM_NAMES]
        axes[0].bar(x + shift, heights, width=0.4, label=name)
        heights = [np.nan if bias[p] is None or spread[p] == 0 else
                   bias[p] / spread[p] for p in PARAM_NAMES]  # fmt: skip
        axes[1].bar(x + shift, heights, width=0.4, label=name)
    for ax in axes:
        ax.set_xticks(x, [p.removeprefix("psf_") for p in PARAM_NAMES])
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("max |measured - input| over the stars\n(FWHM in pixels)")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_ylabel("mean (measured - input) / std(input)")
    fig.suptitle(f"{label}: PSF measured on the simulation minus its input")
    return fig
