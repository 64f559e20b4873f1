"""Closure of the pipeline on a DEMO tile: each stage's product against the truth
the demo builder wrote beside the tile (stage 07's ``quality.closure`` block).

Entry point: :func:`compute_closure` (the metrics and their definitions are in
its docstring; :data:`hscsim_utils.metrics.CLOSURE_KEYS` names them and
:data:`hscsim_utils.metrics.CLOSURE_TARGETS` gives their targets). A REAL tile
has no truth and no closure.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import CLOSURE_KEYS
from hscsim_utils.runfolder import RunFolder, read_dataset

__all__ = [
    "compute_closure", "detected_fraction", "max_abs_diff", "median_rel_err",
    "mismatch_pixels", "psf_closure", "rms_rel_err",
]  # fmt: skip


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


STAR_MAG_LIMIT = 24.0  # true stars this bright are all detectable in a deep coadd
STAR_MATCH_RADIUS_PX = 1.5
EDGE_PX = 3


def max_abs_diff(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Largest absolute difference of two maps of the same shape."""
    estimate, truth = _same_shape(estimate, truth)
    return float(np.max(np.abs(estimate.astype(np.float64) - truth)))


def mismatch_pixels(estimate: np.ndarray, truth: np.ndarray) -> int:
    """Pixels where two maps differ; structured maps (visit words) in any field."""
    estimate, truth = _same_shape(estimate, truth)
    if truth.dtype.names:
        names = [n for n in truth.dtype.names if n in (estimate.dtype.names or ())]
        if not names:
            raise InputError("closure", "the maps share no field")
        differ = np.zeros(truth.shape, bool)
        for name in names:
            differ |= estimate[name] != truth[name]
        return int(np.count_nonzero(differ))
    return int(np.count_nonzero(estimate != truth))


def dataset_mismatch_pixels(estimate: Path, truth: Path, name: str) -> int:
    """:func:`mismatch_pixels` of the HDF5 dataset ``name`` of two files.

    Stored with the same chunks and filters, equal chunks have equal stored
    bytes: only the chunks whose bytes differ are decompressed and compared.
    The visit-bit map of a full patch is 700 MB in memory; when it closes, this
    reads 2 x 35 MB of compressed chunks instead (seconds less in stage 07).
    """
    import h5py

    with h5py.File(estimate, "r") as fe, h5py.File(truth, "r") as ft:
        for path, fh in ((estimate, fe), (truth, ft)):
            if name not in fh:
                raise InputError(path, f"has no dataset {name!r}")
        a, b = fe[name], ft[name]
        filters = ("compression", "compression_opts", "shuffle", "fletcher32",
                   "scaleoffset")  # fmt: skip
        same_layout = (
            a.chunks is not None and a.shape == b.shape and a.chunks == b.chunks
            and a.dtype == b.dtype
            and all(getattr(a, f) == getattr(b, f) for f in filters)
        )  # fmt: skip
        if not same_layout:
            return mismatch_pixels(a[()], b[()])
        n = 0
        for chunk in a.iter_chunks():
            offset = tuple(s.start for s in chunk)
            if a.id.read_direct_chunk(offset) != b.id.read_direct_chunk(offset):
                n += mismatch_pixels(a[chunk], b[chunk])
        return n


def median_rel_err(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Median of ``(estimate - truth) / truth`` where the truth is positive."""
    estimate, truth = _same_shape(estimate, truth)
    ok = (truth > 0) & np.isfinite(truth) & np.isfinite(estimate)
    if not ok.any():
        raise InputError("closure", "no pixel with a positive true value")
    return float(np.median(estimate[ok] / truth[ok].astype(np.float64) - 1.0))


def rms_rel_err(
    estimate: np.ndarray, truth: np.ndarray, keep: np.ndarray | None = None
) -> float:
    """Root mean square of ``estimate / truth - 1`` over the pixels with a positive
    truth (and ``keep``): a per-pixel error, not only its median."""
    estimate, truth = _same_shape(estimate, truth)
    ok = (truth > 0) & np.isfinite(truth) & np.isfinite(estimate)
    if keep is not None:
        ok &= _same_shape(keep, truth)[0].astype(bool)
    if not ok.any():
        raise InputError("closure", "no pixel with a positive true value")
    rel = estimate[ok] / truth[ok].astype(np.float64) - 1.0
    return float(np.sqrt(np.mean(rel**2)))


def detected_fraction(
    true_xy: np.ndarray, detected_xy: np.ndarray, radius: float = STAR_MATCH_RADIUS_PX
) -> float:
    """Fraction of true positions with a detection within ``radius`` pixels."""
    from scipy.spatial import cKDTree

    if len(true_xy) == 0:
        raise InputError("closure", "no true object to detect")
    if len(detected_xy) == 0:
        return 0.0
    dist, _ = cKDTree(detected_xy).query(true_xy, distance_upper_bound=radius)
    return float(np.mean(np.isfinite(dist)))


def psf_closure(model_grid: np.ndarray, truth_grid: np.ndarray) -> dict[str, float]:
    """PSF model against the true PSF on the shared grid points (stage 05's
    comparison: FWHM relative, the rest absolute)."""
    from hscsim_utils.stages.psf import compare_to_truth

    ok = np.ones(len(truth_grid), bool)
    for name in ("psf_fwhm_ipt", "psf_e1_ipt", "psf_e2_ipt", "psf_flux_ratio_ipt"):
        ok &= np.isfinite(truth_grid[name])
    ok &= truth_grid["psf_fwhm_ipt"] > 0
    cmp = compare_to_truth(model_grid, truth_grid[ok])
    return {
        "psf_fwhm_bias_frac": cmp["psf_fwhm"]["bias"],
        "psf_fwhm_rms_frac": cmp["psf_fwhm"]["rms"],
        "psf_e1_rms": cmp["psf_e1"]["rms"],
        "psf_e2_rms": cmp["psf_e2"]["rms"],
        "psf_flux_ratio_rms": cmp["psf_flux_ratio"]["rms"],
    }


def _same_shape(estimate, truth) -> tuple[np.ndarray, np.ndarray]:
    estimate, truth = np.asarray(estimate), np.asarray(truth)
    if estimate.shape != truth.shape:
        raise InputError("closure", f"shapes differ: {estimate.shape} vs {truth.shape}")
    return estimate, truth


class _Reader:
    """``read_dataset`` that keeps the last ``KEPT`` arrays it read: consecutive
    steps share maps (the sysmaps' ``map_bsig`` and the truth's
    ``map_rms_realised``, then the truth's ``mask``; 70, 70 and 18 MB on a full
    patch), and holding every map of the closure at once raised its peak from
    582 to 721 MB (full DEMO patch, ``tracemalloc``)."""

    KEPT = 3

    def __init__(self) -> None:
        self._arrays: OrderedDict[tuple[Path, str], np.ndarray] = OrderedDict()

    def __call__(self, path: Path, dataset: str) -> np.ndarray:
        key = (Path(path), dataset)
        if key in self._arrays:
            self._arrays.move_to_end(key)
            return self._arrays[key]
        array = read_dataset(path, dataset)
        array.flags.writeable = False  # shared between the steps
        self._arrays[key] = array
        while len(self._arrays) > self.KEPT:
            self._arrays.popitem(last=False)
        return array


def _sysmaps_closure(truth: Path, run: RunFolder, read: _Reader) -> dict:
    est, true = run.sysmaps, truth / "sysmaps.h5"
    return {
        "expt_map_max_abs_diff": max_abs_diff(
            read(est, "map_expt"), read(true, "map_expt")
        ),
        "pointings_mismatch_pixels": dataset_mismatch_pixels(
            est, true, "map_pointings"
        ),
        # Stage 01 measures the noise of the image, i.e. after ufig's Lanczos
        # resampling: compare with the realised rms, not the rms put into ufig.
        "bsig_median_rel_err": median_rel_err(
            read(est, "map_bsig"), read(true, "map_rms_realised")
        ),
    }


def _bsig_closure(truth: Path, run: RunFolder, read: _Reader) -> dict:
    # per pixel, where the simulation measures: off the true masks (bright
    # stars' light and the survey edge are masked there too)
    return {
        "bsig_rms_rel_err": rms_rel_err(
            read(run.sysmaps, "map_bsig"),
            read(truth / "sysmaps.h5", "map_rms_realised"),
            read(truth / "mask.h5", "mask") == 0,
        )
    }


def _mask_closure(truth: Path, run: RunFolder, read: _Reader) -> dict:
    est, true = read(run.mask, "mask"), read(truth / "mask.h5", "mask")
    return {"mask_mismatch_pixels": mismatch_pixels(est, true)}


def _star_closure(truth: Path, run: RunFolder, read: _Reader) -> dict:
    from hscsim_utils.stages.source_extraction import read_catalog

    stars = read(truth / "stars.h5", "data")
    true_mask = read(truth / "mask.h5", "mask")
    ny, nx = true_mask.shape
    x, y = stars["X_IMAGE"], stars["Y_IMAGE"]
    keep = (stars["mag"] < STAR_MAG_LIMIT) & (x > EDGE_PX) & (y > EDGE_PX)
    keep &= (x < nx - EDGE_PX) & (y < ny - EDGE_PX)
    ix = np.clip(np.floor(x - 0.5).astype(np.int64), 0, nx - 1)
    iy = np.clip(np.floor(y - 0.5).astype(np.int64), 0, ny - 1)
    keep &= true_mask[iy, ix] == 0
    cat = read_catalog(run.sextractor_cat, ["XWIN_IMAGE", "YWIN_IMAGE"])
    detected = np.c_[cat["XWIN_IMAGE"], cat["YWIN_IMAGE"]]
    return {"star_detect_frac": detected_fraction(np.c_[x[keep], y[keep]], detected)}


def _psf_closure(truth: Path, run: RunFolder, read: _Reader) -> dict:
    return psf_closure(
        read(run.psf_model, "grid_psf"), read(truth / "psf_model.h5", "grid_psf")
    )


_CLOSURE_STEPS = (
    (("expt_map_max_abs_diff", "pointings_mismatch_pixels", "bsig_median_rel_err"),
     _sysmaps_closure),
    (("bsig_rms_rel_err",), _bsig_closure),
    (("mask_mismatch_pixels",), _mask_closure),
    (("star_detect_frac",), _star_closure),
    (("psf_fwhm_bias_frac", "psf_fwhm_rms_frac", "psf_e1_rms", "psf_e2_rms",
      "psf_flux_ratio_rms"), _psf_closure),
)  # fmt: skip


def compute_closure(tile: TileSpec, run: RunFolder) -> dict[str, float | None]:
    """The ``closure`` metrics of a DEMO tile: run-folder products against truth.

    Truth files (written by the demo builder into ``tile.truth_dir``):
    ``sysmaps.h5`` (``map_expt``, ``map_pointings``, ``map_rms_realised``: the
    noise rms of the image, after ufig's resampling), ``mask.h5`` (``mask`` in ufig flag
    bits), ``stars.h5`` (true stars, ``X_IMAGE``/``Y_IMAGE`` 1-based, ``mag``),
    ``psf_model.h5`` (``grid_psf``). Metrics:

    - ``expt_map_max_abs_diff`` (s), ``pointings_mismatch_pixels`` (pixels whose
      visit bits differ), ``mask_mismatch_pixels`` (pixels whose flags differ);
    - ``bsig_median_rel_err``: median of ``map_bsig / map_rms_realised - 1``;
      ``bsig_rms_rel_err``: its root mean square over the pixels off the true
      masks (``mask.h5`` flags 0);
    - ``star_detect_frac``: fraction of true stars brighter than i = 24, off the
      true masks, with a stage 03 detection within 1.5 pixels;
    - ``psf_fwhm_bias_frac``/``_rms_frac``: mean/rms of ``fwhm / true - 1`` over
      the PSF grid points; ``psf_e1_rms``, ``psf_e2_rms``, ``psf_flux_ratio_rms``:
      rms of the differences.

    A missing product or truth file gives null for its metrics and a warning.
    """
    out: dict[str, float | None] = dict.fromkeys(CLOSURE_KEYS)
    if tile.truth_dir is None:
        _warn("closure metrics are null: the tile has no truth_dir")
        return out
    truth = Path(tile.truth_dir)
    read = _Reader()
    for keys, step in _CLOSURE_STEPS:
        try:
            out.update(step(truth, run, read))
        except (OSError, KeyError, ValueError) as err:
            _warn(f"closure metrics {list(keys)} are null: {err}")
    return out
