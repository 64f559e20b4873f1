"""Figures of stage 05 (notebook ``05_psf``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import AsinhNorm, Normalize

from hscsim_utils.compat.ufig_psf import ERR_VAL
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.numerics import psf_direct
from hscsim_utils.numerics.psf_model import StampRenderer, grid_image
from hscsim_utils.stages.psf import PSFStageResult, match_grids, used_stars

_LABELS = {
    "psf_fwhm": "FWHM [arcsec]",
    "psf_flux_ratio": "flux ratio (beta=2 part)",
    "psf_e1": "e1",
    "psf_e2": "e2",
    "psf_f1": "f1",
    "psf_f2": "f2",
    "psf_g1": "g1",
    "psf_g2": "g2",
}


def _scale(name: str) -> float:
    return PIXEL_SCALE_ARCSEC if name == "psf_fwhm" else 1.0


def plot_psf_maps(
    grid: np.ndarray,
    cat: np.ndarray,
    label: str,
    params: tuple[str, ...] = ("psf_fwhm", "psf_e1", "psf_e2"),
):
    """Model maps of ``params`` over the patch; dots: the stars' measurements."""
    used = used_stars(cat)
    fig, axes = plt.subplots(
        1, len(params), figsize=(4.6 * len(params), 4.4), constrained_layout=True
    )
    for ax, name in zip(np.atleast_1d(axes), params, strict=True):
        img, extent = grid_image(grid, f"{name}_ipt")
        img = img * _scale(name)
        stars = cat[f"{name}_cnn"][used] * _scale(name)
        vmin, vmax = np.nanpercentile(np.r_[img.ravel(), stars], [2, 98])
        style = dict(vmin=vmin, vmax=vmax, cmap="viridis")
        im = ax.imshow(img, origin="lower", extent=extent, **style)
        ax.scatter(
            cat["X_IMAGE"][used], cat["Y_IMAGE"][used], c=stars, s=14,
            edgecolors="k", linewidths=0.4, **style,
        )  # fmt: skip
        fig.colorbar(im, ax=ax, shrink=0.8, label=_LABELS[name])
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
        ax.set_title(_LABELS[name])
    fig.suptitle(f"{label}: PSF model (map) and star measurements (dots)")
    return fig


def _sticks(e1: np.ndarray, e2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.hypot(e1, e2)
    phi = 0.5 * np.arctan2(e2, e1)
    return e * np.cos(phi), e * np.sin(phi)


def plot_whiskers(grid: np.ndarray, cat: np.ndarray, label: str, step: int = 3):
    """Ellipticity whiskers: model on every ``step``-th grid point, and stars."""
    xs, ys = np.unique(grid["X_IMAGE"]), np.unique(grid["Y_IMAGE"])
    keep = (grid["psf_e1_ipt"] != ERR_VAL) & np.isin(grid["X_IMAGE"], xs[::step])
    keep &= np.isin(grid["Y_IMAGE"], ys[::step])
    used = used_stars(cat)
    e_ref = 0.05
    spacing = step * (xs[1] - xs[0] if len(xs) > 1 else 100.0)
    style = dict(angles="xy", scale_units="xy", scale=e_ref / (0.9 * spacing))
    style.update(pivot="middle", headwidth=0, headlength=0, headaxislength=0)
    fig, ax = plt.subplots(figsize=(7.5, 7.5), constrained_layout=True)
    u, v = _sticks(grid["psf_e1_ipt"][keep], grid["psf_e2_ipt"][keep])
    q = ax.quiver(
        grid["X_IMAGE"][keep], grid["Y_IMAGE"][keep], u, v, width=0.004, **style
    )
    u, v = _sticks(cat["psf_e1_cnn"][used], cat["psf_e2_cnn"][used])
    ax.quiver(
        cat["X_IMAGE"][used], cat["Y_IMAGE"][used], u, v, color="tab:red",
        width=0.003, **style,
    )  # fmt: skip
    ax.quiverkey(q, 0.12, -0.08, e_ref, f"|e| = {e_ref}", labelpos="E")
    ax.set_aspect("equal")
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.set_title(f"{label}:\nPSF ellipticity, model (black) and stars (red)")
    return fig


def typical_stars(result: PSFStageResult, n: int = 4) -> np.ndarray:
    """Indices (into the estimator's stars) of used stars spread in magnitude."""
    cat = result.record.extras["cat_cnn"]
    ok = np.flatnonzero(cat["FLAGS_STARS"] == 0)
    order = ok[np.argsort(cat["MAG_AUTO"][ok])]
    if len(order) == 0:
        return order
    picks = np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int)
    return order[picks]


def plot_star_stamps(result: PSFStageResult, label: str, n: int = 4):
    """Data, model and residual stamps of typical stars (model: the direct fit)."""
    extras = result.record.extras
    index = typical_stars(result, n)
    cube = np.asarray(extras["cube"], float)[index]
    fit = extras.get("fit")
    theta = fit["theta"][index] if fit else psf_direct.fit_stamps(cube)["theta"]
    models = psf_direct.model_stamps(theta, StampRenderer(shape=cube.shape[1:]))
    fig, axes = plt.subplots(
        3, len(index), figsize=(2.6 * len(index), 7.8), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    for k, (stamp, model, th) in enumerate(zip(cube, models, theta, strict=True)):
        peak = np.nanmax(model - th[11])
        star = AsinhNorm(linear_width=0.02 * peak, vmin=-0.01 * peak, vmax=peak)
        panels = (
            (stamp - th[11], "data", star, "magma"),
            (model - th[11], "model", star, "magma"),
            (stamp - model, "residual", Normalize(-0.05 * peak, 0.05 * peak), "RdBu_r"),
        )
        for row, (img, name, norm, cmap) in enumerate(panels):
            ax = axes[row, k]
            ax.imshow(img, origin="lower", norm=norm, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            mag = extras["cat_cnn"]["MAG_AUTO"][index[k]]
            ax.set_title(f"{name}, i={mag:.1f}" if row == 0 else name, fontsize=9)
    fig.suptitle(
        f"{label}: star stamps, {result.estimator} estimator\n"
        "(asinh stretch; residual scale: 5% of the peak)"
    )
    return fig


def plot_truth_comparison(grid: np.ndarray, truth: np.ndarray, label: str):
    """Maps of model minus truth for FWHM (relative), e1 and e2."""
    g, t = match_grids(grid, truth)
    names = ("fwhm", "e1", "e2")
    diff = np.zeros(len(g), [("X_IMAGE", "f8"), ("Y_IMAGE", "f8")] +
                    [(n, "f8") for n in names])  # fmt: skip
    diff["X_IMAGE"], diff["Y_IMAGE"] = g["X_IMAGE"], g["Y_IMAGE"]
    bad = g["psf_fwhm_ipt"] == ERR_VAL
    diff["fwhm"] = np.where(bad, ERR_VAL, g["psf_fwhm_ipt"] / t["psf_fwhm_ipt"] - 1)
    for e in ("e1", "e2"):
        diff[e] = np.where(bad, ERR_VAL, g[f"psf_{e}_ipt"] - t[f"psf_{e}_ipt"])
    texts = ("FWHM model/truth - 1", "e1 model - truth", "e2 model - truth")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), constrained_layout=True)
    for ax, name, lim, text in zip(axes, names, (0.02, 0.01, 0.01), texts, strict=True):
        img, extent = grid_image(diff, name)
        im = ax.imshow(
            img, origin="lower", extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim
        )
        fig.colorbar(im, ax=ax, shrink=0.8, label=text)
        ax.set_title(text)
        ax.set_xlabel("x [pixel]")
        ax.set_ylabel("y [pixel]")
    fig.suptitle(f"{label}: PSF model against the true PSF")
    return fig
