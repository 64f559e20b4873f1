"""Stage 09: fine-tune the background noise of the simulation.

1. :func:`background_rms_from_background_pixels`: the background RMS of the
   data measured as in stage 01 (Background2D, SExtractor estimator, 3-sigma
   clipping, 128-pixel boxes, 3 x 3 filter, plus stage 01's own source mask)
   with the data's SExtractor segmentation (``segmentation != 0``) and NO_DATA
   masked, written as ``sysmaps_improved.h5`` (:func:`write_improved_sysmaps`).
2. A simulation with it shows the noise ufig actually makes: ufig resamples its
   noise with a Lanczos-3 kernel (the coadd's correlated noise), which lowers
   the pixel RMS below ``map_bsig``, and undetected galaxies add their photon
   noise. :func:`std_correction` is the ratio of the robust standard
   deviations of the background pixels (segmentation 0, not masked: stage 07's
   selection) of data and simulation; :func:`scale_bsig` multiplies
   ``map_bsig`` by it. The shot noise of the undetected galaxies' light does
   not scale with ``map_bsig``; leaving it out of the scaling
   (:func:`photon_variance`) brought the demo tile's width ratio from 0.9955
   (the tutorial's plain ratio) to 0.9989 with the same number of simulations.
   A correction per region (blocks of 128 pixels) was tried as well: emulated
   on the demo tile it changed the background KS statistic by 0.0003, so one
   global factor is kept.
3. A last simulation with the scaled map (``sim/bkg_tuned``).

Both simulations use stage 08's improved PSF model when it exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import update_metrics
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import quality, simulate
from hscsim_utils.stages.psf_finetune import improved_psf_overrides
from hscsim_utils.stages.sky_and_sysmaps import background_maps

MASKED_SIM = "bkg_masked"
TUNED_SIM = "bkg_tuned"


# --- step 1: RMS from background pixels ---------------------------------------------


def background_rms_from_background_pixels(
    image: np.ndarray,
    no_data: np.ndarray,
    segmentation: np.ndarray,
    source: str | os.PathLike = "image",
) -> np.ndarray:
    """Background RMS map (float32) with sources and NO_DATA pixels masked.

    Stage 01's :func:`hscsim_utils.stages.sky_and_sysmaps.background_maps` with the
    segmentation added to its mask: pixels of detected objects do not enter
    the boxes' sigma-clipped RMS.
    """
    image = np.asarray(image)
    for name, arr in (("no_data", no_data), ("segmentation", segmentation)):
        if np.shape(arr) != image.shape:
            raise InputError(name, f"shape {np.shape(arr)} is not the image's "
                             f"{image.shape}")  # fmt: skip
    mask = np.asarray(no_data, bool) | (np.asarray(segmentation) != 0)
    if mask.all():
        raise InputError(source, "every pixel is masked or part of a source")
    return background_maps(image, mask, source).rms


def data_background_rms(tile: TileSpec, run: RunFolder) -> np.ndarray:
    """:func:`background_rms_from_background_pixels` of the tile's calexp."""
    from hscsim_utils.hsc.files import read_calexp

    calexp = read_calexp(tile.calexp, tile.band)
    no_data = ((calexp.mask >> calexp.mask_bit("NO_DATA")) & 1) == 1
    seg = quality.read_segmentation(run.sextractor_seg, calexp.shape)
    return background_rms_from_background_pixels(
        calexp.image, no_data, seg, tile.calexp
    )


def read_bsig(path: str | os.PathLike) -> np.ndarray:
    """``map_bsig`` of a sysmaps file."""
    return read_dataset(path, "map_bsig", "sysmaps not found; run stage 01 first")


def write_improved_sysmaps(
    source: str | os.PathLike, target: str | os.PathLike, bsig: np.ndarray
) -> Path:
    """Copy of the sysmaps file ``source`` with ``map_bsig`` replaced, atomically."""
    source, target = Path(source), Path(target)
    old = read_bsig(source)
    bsig = np.asarray(bsig, np.float32)
    if bsig.shape != old.shape:
        raise InputError(
            "map_bsig", f"shape {bsig.shape} is not {old.shape} of {source}"
        )
    if not np.all(np.isfinite(bsig)) or np.any(bsig < 0):
        raise InputError("map_bsig", "must be finite and non-negative")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "a") as fh5:
            del fh5["map_bsig"]
            fh5.create_dataset("map_bsig", data=bsig, compression="lzf")
    return target


# --- step 2: the standard-deviation correction --------------------------------------


def std_correction(
    data_bkg: np.ndarray, sim_bkg: np.ndarray, fixed_variance: float = 0.0
) -> float:
    """Factor for ``map_bsig`` that makes the simulation's background pixels
    as wide as the data's (robust standard deviations, 1.4826 MAD).

    ``fixed_variance`` is the part of the simulation's variance that does not
    scale with ``map_bsig``: the factor k solves ``k^2 (s^2 - f) + f = d^2``
    for simulated and data widths s, d. With 0 it is the tutorial's ``d / s``.
    """
    d, s = quality.robust_std(data_bkg), quality.robust_std(sim_bkg)
    if d is None or s is None or s <= 0 or d <= 0:
        raise InputError("background pixels", "no background pixels to compare")
    scaled = s**2 - float(fixed_variance)
    if fixed_variance < 0 or scaled <= 0:
        raise InputError("fixed_variance", f"must be in [0, {s**2:.4g}), got "
                         f"{fixed_variance}")  # fmt: skip
    wanted = d**2 - float(fixed_variance)
    if wanted <= 0:
        raise InputError("fixed_variance", "exceeds the data's background variance")
    return float(np.sqrt(wanted / scaled))


def photon_variance(sim_bkg: np.ndarray, gain: float) -> float:
    """Poisson variance (ADU^2) of the light in the simulated background pixels.

    Background pixels of a simulation hold the light of undetected galaxies
    (their mean level, in ADU); ufig draws its photons in electrons (``gain``
    electrons per ADU), so their shot noise has variance ``level / gain``. It
    does not change when ``map_bsig`` is scaled.
    """
    if not np.isfinite(gain) or gain <= 0:
        raise InputError("gain", f"must be positive, got {gain}")
    values = np.asarray(sim_bkg, np.float64)
    if values.size == 0:
        raise InputError("background pixels", "no simulated background pixels")
    return max(0.0, float(np.mean(values))) / float(gain)


def scale_bsig(path: str | os.PathLike, factor: float | np.ndarray) -> Path:
    """Multiply ``map_bsig`` of a sysmaps file by ``factor``, atomically."""
    factor = np.asarray(factor, np.float64)
    if not np.all(np.isfinite(factor)) or np.any(factor <= 0):
        raise InputError("std_correction", f"must be finite and positive, got {factor}")
    return write_improved_sysmaps(path, path, read_bsig(Path(path)) * factor)


# --- simulations and metrics ------------------------------------------------------


def simulate_with_sysmaps(
    tile: TileSpec, run: RunFolder, name: str, **sim_kwargs
) -> simulate.Simulation:
    """Simulate with ``sysmaps_improved.h5`` (and stage 08's PSF model, if any)."""
    if not run.sysmaps_improved.is_file():
        raise InputError(run.sysmaps_improved, "not found; write it first")
    overrides = improved_psf_overrides(run, tile.band)
    overrides["filepath_sysmaps_dict"] = {tile.band: str(run.sysmaps_improved)}
    overrides.update(sim_kwargs.pop("overrides", None) or {})
    return simulate.run_simulation(
        tile, run, name=name, overrides=overrides, measure_psf="none", **sim_kwargs
    )


def record_metrics(
    run: RunFolder,
    steps: Mapping[str, Mapping[str, float | None]],
    final: Mapping[str, float | None],
    extra: dict | None = None,
) -> dict:
    """``finetune_background`` section (metrics of every step) and the realism
    section updated with the final simulation (nulls keep earlier values)."""
    update_metrics(
        run.metrics,
        "finetune_background",
        {"steps": {k: dict(v) for k, v in steps.items()}, **(extra or {})},
    )
    values = {k: v for k, v in final.items() if v is not None}
    return update_metrics(run.metrics, "realism", values)


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
    fig.suptitle(f"{label}\nbackground pixels (segmentation 0, not masked), "
                 "before and after fine-tuning")  # fmt: skip
    return fig
