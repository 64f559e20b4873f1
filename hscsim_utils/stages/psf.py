"""Stage 05: estimate the PSF of the patch with ufig's PSF estimation pipeline.

ufig's ``PSFEstimationPipeline`` selects Gaia stars in the SExtractor catalogue,
cuts 19 x 19 stamps, measures the PSF parameters of each star, interpolates
them with Chebyshev polynomials over the visit pattern and writes the PSF model
(``grid_psf`` is what the simulation reads) and the star catalogue. The
measurement is the pretrained CNN when its weights are present, else the direct
fit of ufig's own PSF model (:mod:`hscsim_utils.numerics.psf_direct`). Either way
the run goes through the mends of :mod:`hscsim_utils.compat.ufig_psf`.

Two additions to ufig's interpolation (:func:`stage_polynomial_model`), both
optional: ridge strengths by cross-validation instead of ufig's fixed values,
and a per-visit FWHM prior from the seeing column of the frame metadata.

Also here: the comparison with a true PSF (simulated tiles).

Reads the tile's ``calexp``, ``frame_metadata`` (seeing prior) and
``truth_dir`` (true PSF of a simulated tile) and the products
``sextractor_cat``, ``sysmaps`` and ``gaia``; writes the products
``psf_model``, ``psf_catalog`` and ``psf_summary`` (estimator, star counts,
timing, truth comparison and the parameters it ran with, which
:func:`load_params` reads back). Entry point: :func:`run`; the figures are in
:mod:`hscsim_utils.stages.psf_plots`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path, write_json
from hscsim_utils.calltimes import floor_call
from hscsim_utils.compat.ufig_psf import (
    ERR_VAL,
    SelectionRecord,
    import_psf_estimation,
    mended_psf_estimation,
)
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.logs import quiet_loggers
from hscsim_utils.numerics import psf_direct
from hscsim_utils.numerics.psf_model import PARAM_NAMES
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import registry

STAGE = registry.spec("psf")

#: Pipeline settings of the tutorial (Gaia match within 1.5 pixels, no coadd
#: boundary flag); everything else is ufig's default.
TUTORIAL_SETTINGS = {
    "max_dist_gaia_arcsec": 1.5 * PIXEL_SCALE_ARCSEC,
    "flag_coadd_boundaries": False,
}
#: With the direct fit, which masks other sources in a stamp, stars that
#: SExtractor flags for neighbours (1) or deblending (2) are kept; saturated,
#: truncated and other flags still reject a star.
DIRECT_SETTINGS = {"sextractor_flags": [0, 1, 2, 3, 16, 17, 18, 19]}
CNN_ID = "psf_cnn"
CNN_NAME = "pretrained"
MIN_STARS = 10
IPT_NAMES = tuple(f"{p}_ipt" for p in PARAM_NAMES)
SEXCAT_COLUMNS = (
    "NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "XPEAK_IMAGE",
    "YPEAK_IMAGE", "ALPHAWIN_J2000", "DELTAWIN_J2000", "MAG_AUTO", "FLAGS",
    "FLUX_RADIUS", "X2WIN_IMAGE", "Y2WIN_IMAGE", "XYWIN_IMAGE",
)  # fmt: skip
GAIA_FIELDS = ("ra", "dec", "phot_g_mean_mag", "id")
ESTIMATORS = ("auto", "cnn", "direct")
RIDGE_ALPHAS = ("cv", "ufig")


@dataclass(frozen=True)
class Params:
    """Settings of stage 05: the parameters of its notebook."""

    estimator: str = "auto"  # auto (CNN if its weights exist, else direct), cnn, direct
    cnn_path: str = ""  # prefix of the CNN checkpoint; empty: cosmo_torrent cache
    min_stars: int = MIN_STARS  # fewer usable stars than this is an error
    ridge_alpha: str = "cv"  # cv (cross-validated) or ufig (ufig's fixed values)
    seeing_prior: bool = True  # per-visit FWHM prior from the frame metadata

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> InputError:
            value = getattr(self, name)
            return InputError(f"{STAGE.name}.{name}", f"{allowed}, got {value!r}")

        if self.estimator not in ESTIMATORS:
            raise bad("estimator", f"must be one of {', '.join(ESTIMATORS)}")
        if not isinstance(self.cnn_path, str):
            raise bad("cnn_path", "must be a path prefix or empty")
        if isinstance(self.min_stars, bool) or not isinstance(self.min_stars, int):
            raise bad("min_stars", "must be an integer")
        if self.min_stars < 1:
            raise bad("min_stars", "must be at least 1")
        if self.ridge_alpha not in RIDGE_ALPHAS:
            raise bad("ridge_alpha", f"must be one of {', '.join(RIDGE_ALPHAS)}")
        if not isinstance(self.seeing_prior, bool):
            raise bad("seeing_prior", "must be True or False")


# --- which estimator -------------------------------------------------------------


def find_cnn_weights(cnn_path: str | os.PathLike = "") -> Path | None:
    """Checkpoint prefix of the pretrained PSF CNN, or None when absent.

    An explicit ``cnn_path`` (the prefix of ``.index``/``.h5`` files) must
    exist; otherwise the cosmo_torrent cache ``psf_cnn`` is used when marked
    valid. Nothing is downloaded.
    """
    if cnn_path:
        prefix = Path(cnn_path)
        missing = [s for s in (".index", ".h5") if not Path(f"{prefix}{s}").is_file()]
        if missing:
            raise InputError(prefix, f"CNN checkpoint incomplete, missing {missing}")
        return prefix
    from cosmo_torrent import cosmo_torrent

    folder = Path(cosmo_torrent.local_cache_folder(CNN_ID))
    prefix = folder / CNN_NAME
    if cosmo_torrent.is_valid(str(folder)) and Path(f"{prefix}.index").is_file():
        return prefix
    return None


def choose_estimator(
    estimator: str = "auto", cnn_path: str | os.PathLike = ""
) -> tuple[str, Path | None]:
    """("cnn", weights) or ("direct", None) for ``estimator`` auto/cnn/direct."""
    if estimator not in ("auto", "cnn", "direct"):
        raise InputError("estimator", f"must be auto, cnn or direct, not {estimator!r}")
    if estimator == "direct":
        return "direct", None
    weights = find_cnn_weights(cnn_path)
    if weights is None and estimator == "cnn":
        raise InputError(
            "estimator",
            f"cnn requested but no weights: give cnn_path or fill the "
            f"cosmo_torrent cache {CNN_ID!r}",
        )
    return ("cnn", weights) if weights is not None else ("direct", None)


# --- inputs ----------------------------------------------------------------------


def check_inputs(tile: TileSpec, run: RunFolder) -> None:
    """Raise InputError unless the calexp, catalogue, sysmaps and Gaia file fit."""
    if not Path(tile.calexp).is_file():
        raise InputError(tile.calexp, "calexp not found")
    _check_h5_columns(run.sextractor_cat, SEXCAT_COLUMNS, "run stage 03 first")
    sysmaps = Path(run.sysmaps)
    if not sysmaps.is_file():
        raise InputError(sysmaps, "sysmaps not found; run stage 01 first")
    with h5py.File(sysmaps, "r") as fh5:
        if "map_pointings" not in fh5:
            raise InputError(sysmaps, "has no dataset map_pointings")
        if "n_pointings" not in fh5["map_pointings"].attrs:
            raise InputError(sysmaps, "map_pointings lacks attribute n_pointings")
    gaia = Path(run.gaia)
    if not gaia.is_file():
        raise InputError(gaia, "Gaia catalogue not found; run stage 04 first")
    with h5py.File(gaia, "r") as fh5:
        data = fh5.get("data")
        names = data.dtype.names or () if data is not None else ()
        missing = [f for f in GAIA_FIELDS if f not in names]
        if missing:
            raise InputError(gaia, f"dataset 'data' lacks fields {missing}")
        if data.shape[0] == 0:
            raise InputError(gaia, "has no Gaia star")


def _check_h5_columns(path: Path, columns: tuple[str, ...], hint: str) -> None:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"not found; {hint}")
    try:
        with h5py.File(path, "r") as fh5:
            missing = [c for c in columns if c not in fh5]
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file ({err})") from None
    if missing:
        raise InputError(path, f"lacks columns {missing}")


# --- regularisation of the interpolation -----------------------------------------

#: Ridge strengths tried by cross-validation (targets are standardised).
RIDGE_ALPHA_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)


def cross_validated_ridge_alpha(
    cat: np.ndarray,
    columns: list[str],
    position_weights: np.ndarray,
    settings: dict,
    n_folds: int = 5,
    n_repeats: int = 4,
    grid: tuple[float, ...] = RIDGE_ALPHA_GRID,
    seed: int = 0,
) -> list[float]:
    """Ridge strength per column of ufig's PSF interpolation, by k-fold CV.

    ufig's interpolation (Chebyshev polynomials per visit, ridge-regularised)
    ships fixed strengths suited to the CNN's scatter. Here each column gets the
    strength from ``grid`` with the smallest error on held-out stars: the mean
    squared error without its largest 10% (robust to the outliers clipped
    later), averaged over ``n_repeats`` random splits into ``n_folds`` folds.
    The ridge solutions of all strengths come from one eigendecomposition of the
    stars' Gram matrix per fold (kernel form of ridge regression).
    """
    from ufig.psf_estimation import psf_utils
    from ufig.psf_estimation.tiled_regressor import get_poly_weight_basis

    if len(cat) < 2 * n_folds:
        return list(np.broadcast_to(settings["ridge_alpha"], len(columns)))
    xy = np.stack((cat["X_IMAGE"] - 0.5, cat["Y_IMAGE"] - 0.5), axis=-1)
    basis = get_poly_weight_basis(
        psf_utils.transform_forward(xy, settings["scale_pos"]),
        position_weights,
        settings["poly_order"],
        settings["polynomial_type"],
    )
    y = psf_utils.transform_forward(
        np.stack([cat[c] for c in columns], axis=-1), settings["scale_par"]
    )
    gram = basis @ basis.T  # fewer stars than coefficients: solve in star space
    rng = np.random.default_rng(seed)
    loss = np.zeros((len(grid), len(columns)))
    for _ in range(n_repeats):
        folds = rng.permutation(len(cat)) % n_folds
        err2 = np.empty((len(grid), len(cat), len(columns)))
        for k in range(n_folds):
            test = folds == k
            eigval, eigvec = np.linalg.eigh(gram[np.ix_(~test, ~test)])
            proj = gram[np.ix_(test, ~test)] @ eigvec
            vty = eigvec.T @ y[~test]
            for ia, alpha in enumerate(grid):
                shrink = 1.0 / (np.maximum(eigval, 0.0) + alpha)
                err2[ia, test] = (proj @ (shrink[:, None] * vty) - y[test]) ** 2
        keep = int(np.ceil(0.9 * len(cat)))
        loss += np.sort(err2, axis=1)[:, :keep].mean(axis=1)
    return [float(grid[i]) for i in np.argmin(loss, axis=0)]


# --- a seeing prior from the frame metadata ----------------------------------------


def visit_seeing(tile: TileSpec, n_pointings: int) -> np.ndarray | None:
    """FWHM (pixels) of each visit over the patch from the frame metadata.

    The archive's frame table has one ``seeing`` per CCD frame; a visit's value
    is the rms over its frames weighted by their pixels inside the patch.
    Visits are indexed as in ``map_pointings`` (rank of the visit id). Returns
    None when the table has no usable seeing.

    The frames' pixels inside the patch take 0.7-1 s on a full patch, and stage
    08 asks again for the data and for two simulations on the same WCS: the
    result is kept per version of the frame table (path, size, modification
    time) and patch geometry (shape, WCS header) in this process.
    """
    path = Path(tile.frame_metadata)
    stat = path.stat() if path.is_file() else None
    shape, wcs = _calexp_geometry(tile.calexp)
    key = (
        str(path.resolve()), stat and (stat.st_size, stat.st_mtime_ns),
        shape, wcs.to_header_string(relax=True), int(n_pointings),
    )  # fmt: skip
    if key not in _SEEING:
        while len(_SEEING) >= _SEEING_KEPT:
            del _SEEING[next(iter(_SEEING))]  # the oldest
        _SEEING[key] = _visit_seeing(path, shape, wcs, int(n_pointings))
    out = _SEEING[key]
    return None if out is None else out.copy()


_SEEING: dict[tuple, np.ndarray | None] = {}  # visit_seeing's results by key
_SEEING_KEPT = 4


def _visit_seeing(path: Path, shape: tuple[int, int], wcs, n_pointings: int):
    """:func:`visit_seeing` of one frame table and patch geometry."""
    from hscsim_utils.hsc.files import read_frame_metadata
    from hscsim_utils.stages.sky_and_sysmaps import (
        frame_corners_pixels,
        polygon_row_spans,
        visit_indices,
    )

    frames = read_frame_metadata(path)
    visit, n_visits = visit_indices(frames["visit"].to_numpy(), path)
    if n_visits != n_pointings:
        raise InputError(
            path, f"{n_visits} visits, but the sysmaps' map_pointings has {n_pointings}"
        )
    spans = polygon_row_spans(frame_corners_pixels(frames, wcs), shape)
    pixels = np.bincount(spans.frame, spans.stop - spans.start, len(frames))
    seeing = frames["seeing"].to_numpy(float)
    ok = np.isfinite(seeing) & (seeing > 0) & (pixels > 0)
    if not ok.any():
        return None
    w = np.where(ok, pixels, 0.0)
    num = np.bincount(visit, w * np.where(ok, seeing, 0.0) ** 2, n_visits)
    den = np.bincount(visit, w, n_visits)
    out = np.full(64 * -(-n_visits // 64), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:n_visits] = np.sqrt(num / den) / PIXEL_SCALE_ARCSEC
    return out


def _calexp_geometry(path: Path):
    """(NAXIS2, NAXIS1) and WCS of the calexp's IMAGE HDU, without the pixels."""
    from astropy.io import fits
    from astropy.wcs import WCS

    header = fits.getheader(path, ext=1)
    return (int(header["NAXIS2"]), int(header["NAXIS1"])), WCS(header)


def stage_polynomial_model(choose_alpha: bool, priors: dict[str, np.ndarray]):
    """ufig's interpolation (mended) with the stage's two additions.

    - ``choose_alpha``: ridge strengths by :func:`cross_validated_ridge_alpha`;
    - ``priors`` {column: value per visit}: a per-visit prior enters each visit's
      constant term, scaled by the median ratio star value / prior, and the
      polynomials fit what the prior leaves. ufig's model of a point is the mean
      of the polynomials of the visits covering it, so the prior gives the model
      the visit pattern (e.g. seeing changing at CCD edges) that the few stars
      cannot. The result is an ordinary ufig PSF model file.
    """
    from hscsim_utils.compat.ufig_psf import mended_components

    base = mended_components().MendedPolynomialPSFModel

    class StagePolynomialModel(base):
        def __init__(self, config, record=None):
            super().__init__(config, record)
            self.offsets: dict[int, np.ndarray] = {}

        def _fit_with_outlier_removal(self, cat_fit, columns, weights, settings):
            self.offsets = self._prior_offsets(cat_fit, columns, weights, settings)
            if choose_alpha:
                residual = self._minus_prior(cat_fit, columns, weights, settings)
                alpha = cross_validated_ridge_alpha(
                    residual, columns, weights, settings
                )
                settings["ridge_alpha"] = alpha
                self.record.extras["ridge_alpha"] = dict(
                    zip(columns, alpha, strict=True)
                )
            return super()._fit_with_outlier_removal(
                cat_fit, columns, weights, settings
            )

        def _fit_single_model(self, cat, columns, weights, settings):
            residual = self._minus_prior(cat, columns, weights, settings)
            reg = super()._fit_single_model(residual, columns, weights, settings)
            if self.offsets:
                n_basis = reg.arr_pointings_polycoeffs.shape[1] // weights.shape[1]
                for j, offset in self.offsets.items():
                    reg.arr_pointings_polycoeffs[j, ::n_basis] += offset
                reg.unseen_pointings = np.array([], dtype=int)  # priors cover all
            return reg

        def _prior_offsets(self, cat, columns, weights, settings):
            offsets = {}
            for col, values in priors.items():
                if col not in columns:
                    continue
                j = columns.index(col)
                mean, std = settings["scale_par"][j]
                prior = weights @ np.nan_to_num(values)
                ok = prior > 0
                scale = float(np.median(cat[col][ok] / prior[ok])) if ok.any() else 0
                if not scale > 0:
                    continue
                offset = (scale * values - mean) / std
                offsets[j] = np.where(np.isfinite(offset), offset, 0.0)
                self.record.extras[f"prior_scale_{col}"] = scale
            return offsets

        def _minus_prior(self, cat, columns, weights, settings):
            if not self.offsets:
                return cat
            out = cat.copy()
            for j, offset in self.offsets.items():
                out[columns[j]] = cat[columns[j]] - settings["scale_par"][j][1] * (
                    weights @ offset
                )
            return out

    return StagePolynomialModel


# --- the stage -------------------------------------------------------------------


@dataclass
class PSFStageResult:
    """Outputs and bookkeeping of one PSF estimation."""

    estimator: str
    model: Path
    catalog: Path
    record: SelectionRecord = field(repr=False)
    seconds: float
    settings: dict = field(default_factory=dict, repr=False)
    summary: dict = field(default_factory=dict, repr=False)  # as in psf_summary

    @property
    def counts(self) -> list[tuple[str, int]]:
        return self.record.counts()


def estimate_psf(
    tile: TileSpec,
    run: RunFolder,
    estimator: str = "auto",
    cnn_path: str | os.PathLike = "",
    min_stars: int = MIN_STARS,
    ridge_alpha: str = "cv",
    seeing_prior: bool = True,
    **settings,
) -> PSFStageResult:
    """Stage 05: write ``run.psf_model`` and ``run.psf_catalog``.

    ``settings`` override the tutorial's pipeline settings (any keyword of
    ``PSFEstimationPipeline``). ``ridge_alpha="cv"`` chooses the interpolation's
    regularisation by cross-validation, ``"ufig"`` keeps ufig's (or
    ``psfmodel_ridge_alpha`` in ``settings``). ``seeing_prior`` gives the FWHM
    interpolation the per-visit seeing of the frame metadata
    (:func:`visit_seeing`, :func:`stage_polynomial_model`). Raises InputError
    for bad inputs and
    :class:`~hscsim_utils.compat.ufig_psf.TooFewStarsError` (with the count after
    every cut) when too few stars remain. Outputs appear only when complete.
    """
    check_inputs(tile, run)
    if int(min_stars) < 1:
        raise InputError("min_stars", f"must be at least 1, got {min_stars}")
    if ridge_alpha not in ("cv", "ufig"):
        raise InputError("ridge_alpha", f"must be cv or ufig, not {ridge_alpha!r}")
    kind, weights = choose_estimator(estimator, cnn_path)
    priors = {}
    if seeing_prior:
        with h5py.File(run.sysmaps, "r") as fh5:
            n_pointings = int(fh5["map_pointings"].attrs["n_pointings"])
        seeing = visit_seeing(tile, n_pointings)
        if seeing is not None:
            priors["psf_fwhm_cnn"] = seeing
    defaults = {**TUTORIAL_SETTINGS, **(DIRECT_SETTINGS if kind == "direct" else {})}
    config = {**defaults, **settings}
    predictor = None
    if kind == "direct":
        _set_numba_threads()
        shape = tuple(config.get("star_stamp_shape", (19, 19)))
        predictor = psf_direct.DirectPSFPredictor(stamp_shape=shape)
    start = time.perf_counter()
    with (
        quiet_ufig_logs(),
        atomic_path(run.psf_model) as tmp_model,
        atomic_path(run.psf_catalog) as tmp_cat,
        mended_psf_estimation(
            predictor,
            min_stars,
            run.sextractor_cat,
            stage_polynomial_model(ridge_alpha == "cv", priors),
        ) as record,
        floor_call("psf estimation"),
    ):
        from ufig.psf_estimation import PSFEstimationPipeline

        PSFEstimationPipeline(**config).create_psf_model(
            filepath_image=str(tile.calexp),
            filepath_sexcat=str(run.sextractor_cat),
            filepath_sysmaps=str(run.sysmaps),
            filepath_gaia=str(run.gaia),
            filepath_cnn=str(weights) if weights else None,
            filepath_out_model=str(tmp_model),
            filepath_out_cat=str(tmp_cat),
        )
    return PSFStageResult(
        kind, run.psf_model, run.psf_catalog, record, time.perf_counter() - start,
        config,
    )  # fmt: skip


@contextlib.contextmanager
def quiet_ufig_logs(level: int = logging.WARNING) -> Iterator[None]:
    """Raise the level of ufig's PSF-estimation loggers (INFO lines by the dozen)."""
    import_psf_estimation()
    import ufig.psf_estimation.psf_predictions  # noqa: F401 (imported late by ufig)

    loggers = [logging.getLogger("arraytools")]
    for name, module in list(sys.modules.items()):
        if name.startswith("ufig.psf_estimation") and "LOGGER" in vars(module):
            loggers.append(vars(module)["LOGGER"])
    with quiet_loggers(loggers, level):
        yield


def _set_numba_threads() -> None:
    import numba

    from hscsim_utils.threads import n_threads

    numba.set_num_threads(max(1, min(n_threads(), numba.config.NUMBA_NUM_THREADS)))


# --- reading results -------------------------------------------------------------


def read_grid(model_path: str | os.PathLike) -> np.ndarray:
    """``grid_psf`` of a PSF model file (X_IMAGE, Y_IMAGE, psf_*_ipt)."""
    return read_dataset(model_path, "grid_psf", "PSF model not found")


def read_star_catalog(path: str | os.PathLike) -> np.ndarray:
    """Star catalogue of stage 05 (ufig's column HDF5)."""
    from cosmic_toolbox import arraytools as at

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "PSF star catalogue not found")
    return at.load_hdf_cols(str(path))


def used_stars(cat: np.ndarray) -> np.ndarray:
    """Boolean mask of the stars that entered the PSF model (FLAGS_STARS == 0)."""
    return (cat["FLAGS_STARS"] == 0) & (cat["psf_fwhm_cnn"] != ERR_VAL)


# --- truth -----------------------------------------------------------------------


def load_truth_grid(tile: TileSpec) -> np.ndarray | None:
    """True PSF on ufig's grid for a simulated tile, or None.

    Any HDF5 file in ``tile.truth_dir`` with a ``grid_psf`` dataset counts; grid
    points the truth marks as not covered by any visit (``grid/covered``) are
    dropped.
    """
    if tile.truth_dir is None or not Path(tile.truth_dir).is_dir():
        return None
    for path in sorted(Path(tile.truth_dir).glob("*.h5")):
        with h5py.File(path, "r") as fh5:
            if "grid_psf" not in fh5:
                continue
            grid = fh5["grid_psf"][()]
            if "grid/covered" in fh5:
                grid = grid[np.ravel(fh5["grid/covered"][()]).astype(bool)]
            return grid
    return None


def match_grids(grid: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows of two grids at the same (X_IMAGE, Y_IMAGE), in matching order."""

    def key(g):  # positions to 0.01 pixel, as integers (grids may be float32)
        x = np.rint(np.asarray(g["X_IMAGE"], np.float64) * 100).astype(np.int64)
        y = np.rint(np.asarray(g["Y_IMAGE"], np.float64) * 100).astype(np.int64)
        return x * 10**8 + y

    _, i_grid, i_truth = np.intersect1d(key(grid), key(truth), return_indices=True)
    return grid[i_grid], truth[i_truth]


def compare_to_truth(
    grid: np.ndarray, truth: np.ndarray, margin: float = 0.0
) -> dict[str, dict[str, float]]:
    """Bias and rms of the model grid against the true grid, per parameter.

    Points are matched by position; the FWHM is compared relatively
    (model / truth - 1). ``margin`` (pixels) drops grid points near the edge.
    """
    g, t = match_grids(grid, truth)
    if len(g) == 0:
        raise InputError("truth", "true PSF grid shares no point with the model grid")
    covered = g["psf_fwhm_ipt"] != ERR_VAL
    g, t = g[covered], t[covered]
    if margin > 0:
        x, y = t["X_IMAGE"], t["Y_IMAGE"]
        inner = (x > margin) & (y > margin)
        inner &= (x < x.max() - margin) & (y < y.max() - margin)
        g, t = g[inner], t[inner]
    out = {}
    for name in IPT_NAMES:
        if name not in g.dtype.names or name not in t.dtype.names:
            continue
        diff = g[name].astype(float) - t[name].astype(float)
        if name == "psf_fwhm_ipt":
            diff = diff / t[name]
        out[name.removesuffix("_ipt")] = {
            "bias": float(np.mean(diff)),
            "rms": float(np.sqrt(np.mean(diff**2))),
            "std": float(np.std(diff)),
            "truth_std": float(np.std(t[name])),
            "n": int(len(diff)),
        }
    return out


def write_summary(path: str | os.PathLike, result: PSFStageResult, extra: dict) -> dict:
    """Write the stage summary (estimator, star counts, timing and ``extra``) as
    JSON; return it."""
    summary = {
        "estimator": result.estimator,
        "seconds": result.seconds,
        "stars_after_each_cut": dict(result.counts),
        **extra,
    }
    write_json(path, summary)
    return summary


def run(tile: TileSpec, run: RunFolder, params: Params) -> PSFStageResult:
    """Stage 05: PSF model and star catalogue of the tile, and the summary.

    The summary (product ``psf_summary``) records the comparison with the true
    PSF of a simulated tile and, under ``"params"``, the parameters with the
    estimator actually used (``auto`` resolved to ``cnn`` or ``direct``).
    """
    result = estimate_psf(
        tile,
        run,
        estimator=params.estimator,
        cnn_path=params.cnn_path,
        min_stars=params.min_stars,
        ridge_alpha=params.ridge_alpha,
        seeing_prior=params.seeing_prior,
    )
    truth = load_truth_grid(tile)
    comparison = (
        {} if truth is None else compare_to_truth(read_grid(run.psf_model), truth)
    )
    used = dataclasses.replace(params, estimator=result.estimator)
    extra = {"truth": comparison, "params": asdict(used)}
    result.summary = write_summary(run.psf_summary, result, extra)
    return result


def load_params(run: RunFolder) -> Params:
    """The parameters stage 05 ran with in ``run`` (from its ``psf_summary``)."""
    path = run.psf_summary
    if not path.is_file():
        raise InputError(path, "not found; run stage 05 (psf) first")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    values = summary.get("params") if isinstance(summary, dict) else None
    if not isinstance(values, dict):
        raise InputError(path, "records no parameters; run stage 05 (psf) again")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Params)})
    if unknown:
        raise InputError(
            path, f"unknown parameters {unknown}; run stage 05 (psf) again"
        )
    try:
        return Params(**values)
    except InputError as err:
        raise InputError(path, f"recorded parameters: {err}") from None
