"""Stage 08: fine-tune the PSF estimation on a simulation of the patch.

A measured PSF never equals the PSF that made the image. The simulation of stage
06 knows its PSF (stage 05's model of the data), so measuring the PSF of the
simulation exactly as stage 05 measured the data shows the estimator's bias:

1. :func:`measure_simulation_psf` runs stage 05's estimation (same estimator,
   same settings) on a simulated image and its SExtractor catalogue;
2. :func:`fit_adjustments` fits, per PSF parameter, ``input = intercept + slope
   * measured`` over the stars of the model (robust, see
   :func:`fit_linear_adjustment`);
3. :func:`estimate_improved_psf` measures the data again with that adjustment
   applied to every star's measurement, writing ``psf/psf_model_improved.h5``
   and ``psf/psf_catalog_improved.cat``;
4. :func:`simulate_with_improved_psf` simulates the patch with the improved
   model (``sim/psf_tuned``), whose PSF is then measured with the adjustment.

Column names in ufig's PSF catalogues: ``psf_fwhm`` (no suffix) is the PSF a
simulation put in at the object (SExtractor catalogue matched to the input;
-200 where unmatched), ``psf_fwhm_cnn`` the measurement of one star (CNN or
direct fit), ``psf_fwhm_ipt`` the fitted PSF model at the object. "Measured"
below is the model at the star (``_ipt``): the stage compares and fits the
model, which is what the simulation uses. The adjustment is applied to the
per-star measurements (``_cnn``) before the interpolation, which is linear in
them, so the model moves by (nearly) the same linear relation.

ufig 1.2.1 applies ``psf_measurement_adjustment`` to the column ``psf_fwhm``
when the catalogue has one (a simulated catalogue has: the input), not to the
measurement ``psf_fwhm_cnn`` (defect 4 of :mod:`hscsim_utils.compat.ufig_psf`).
The tutorial's "after" numbers compare the adjusted input with an unadjusted
measurement. Here stage 05's mended pipeline adjusts only the ``_cnn`` columns.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import TMP_PREFIX, write_json
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import update_metrics
from hscsim_utils.numerics.psf_model import PARAM_NAMES
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import psf, simulate

TUNED_SIM = "psf_tuned"
NO_INPUT = -200.0  # value of the input columns of an unmatched object
N_SIGMA_CLIP = 3.0
MIN_FIT_STARS = 5
SLOPE_Z = 2.0  # a slope within SLOPE_Z standard errors of 1 is taken as 1
MIN_R2 = 0.8  # below this squared correlation a fitted slope is mostly dilution
#: Slopes beyond [1 / MAX_SLOPE, MAX_SLOPE] are not an estimator's response but
#: the interpolation's smoothing (a model flatter or steeper than its stars).
MAX_SLOPE = 2.0
SPREAD_TOL = 1e-7  # relative spread below which a parameter "does not vary"
MAD_TO_STD = 1.4826
#: Scratch folder (image and catalogue in stage 05's formats) inside the run
#: folder; the prefix lets the chain runner sweep it after a crash.
SCRATCH_PREFIX = f"{TMP_PREFIX}psf-of-sim-"


# --- paths -----------------------------------------------------------------------


def improved_model_path(run: RunFolder) -> Path:
    """``psf/psf_model_improved.h5`` of the run folder."""
    return run.path("psf", "psf_model_improved.h5")


def improved_catalog_path(run: RunFolder) -> Path:
    """``psf/psf_catalog_improved.cat`` of the run folder."""
    return run.path("psf", "psf_catalog_improved.cat")


def adjustment_path(run: RunFolder) -> Path:
    """``psf/psf_adjustment.json``: the fitted adjustment and its diagnostics."""
    return run.path("psf", "psf_adjustment.json")


def redirected_run(run: RunFolder, **paths: str | os.PathLike) -> RunFolder:
    """A view of ``run`` whose named paths (e.g. ``psf_model``) point elsewhere."""
    unknown = [name for name in paths if not hasattr(RunFolder, name)]
    if unknown:
        raise InputError("paths", f"RunFolder has no paths {unknown}")
    props = {name: property(lambda self, p=Path(p): p) for name, p in paths.items()}
    return type("RedirectedRunFolder", (RunFolder,), props)(run.root)


# --- measuring the PSF of a simulation --------------------------------------------


def write_image_as_calexp(sim: simulate.Simulation, out: Path) -> Path:
    """The simulated image (float32) in HDU 1 with its header, like a calexp.

    Stage 05 reads the image and WCS from HDU 1 (``fits.getdata`` takes the
    first HDU with data); ufig writes its image to the primary HDU.
    """
    from astropy.io import fits

    with fits.open(sim.image_path, memmap=False) as hdul:
        image, header = np.asarray(hdul[0].data, np.float32), hdul[0].header
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, header=header)]).writeto(out)
    return out


def write_catalog_as_columns(sim: simulate.Simulation, out: Path) -> Path:
    """The simulation's SExtractor catalogue (one ``data`` table) as column HDF5."""
    from cosmic_toolbox import arraytools as at

    try:
        with h5py.File(sim.catalog_path, "r") as fh5:
            cat = fh5["data"][()] if "data" in fh5 else None
    except OSError as err:
        raise InputError(sim.catalog_path, f"not readable ({err})") from None
    if cat is None:  # already one dataset per column
        cat = at.load_hdf_cols(str(sim.catalog_path))
    at.save_hdf_cols(str(out), cat)
    return out


def measure_simulation_psf(
    tile: TileSpec,
    run: RunFolder,
    sim: simulate.Simulation,
    adjustment: Mapping[str, tuple[float, float]] | None = None,
    out_dir: str | os.PathLike | None = None,
    **psf_settings,
) -> psf.PSFStageResult:
    """Stage 05's PSF estimation on the simulation ``sim``.

    Same estimator and settings as on the data (``psf_settings`` are
    :func:`hscsim_utils.stages.psf.estimate_psf` keywords), the run folder's sysmaps
    and Gaia stars. ``adjustment`` ({name: (intercept, slope)}) is applied to
    the per-star measurements. Writes ``psf_model_sim.h5`` and
    ``psf_catalog_sim.cat`` into ``out_dir`` (default: the simulation's folder,
    where stage 07 finds them), each atomically.
    """
    out_dir = Path(out_dir) if out_dir is not None else sim.directory
    for path in (sim.image_path, sim.catalog_path):
        if not path.is_file():
            raise InputError(path, "simulation output missing; simulate again")
    settings = dict(psf_settings)
    if adjustment:
        settings["psf_measurement_adjustment"] = {
            k: tuple(map(float, v)) for k, v in adjustment.items()
        }
    with tempfile.TemporaryDirectory(dir=run.root, prefix=SCRATCH_PREFIX) as tmp:
        image = write_image_as_calexp(sim, Path(tmp) / "image.fits")
        cat = write_catalog_as_columns(sim, Path(tmp) / "se.cat")
        view = redirected_run(
            run,
            sextractor_cat=cat,
            psf_model=out_dir / simulate.PSF_MODEL,
            psf_catalog=out_dir / simulate.PSF_CATALOG,
        )
        return psf.estimate_psf(
            dataclasses.replace(tile, calexp=image), view, **settings
        )


def read_psf_catalog(path: str | os.PathLike) -> np.ndarray:
    """A PSF catalogue measured on a simulation (needs the input columns)."""
    cat = psf.read_star_catalog(path)
    names = cat.dtype.names or ()
    need = [c for p in PARAM_NAMES for c in (p, f"{p}_ipt", f"{p}_cnn")]
    missing = [c for c in (*need, "FLAGS_STARS") if c not in names]
    if missing:
        raise InputError(path, f"lacks columns {missing}; measure a simulation")
    return cat


# --- measured against input -------------------------------------------------------


def comparison_stars(cat: np.ndarray) -> np.ndarray:
    """Stars of the model (``FLAGS_STARS == 0``) with an input and a model value."""
    keep = psf.used_stars(cat)
    for name in PARAM_NAMES:
        keep &= np.isfinite(cat[name]) & (cat[name] != NO_INPUT)
        keep &= np.isfinite(cat[f"{name}_ipt"]) & (cat[f"{name}_ipt"] != psf.ERR_VAL)
    return keep & (cat["psf_fwhm"] > 0)


def measured_and_input(cat: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(model at the star, input at the star) of parameter ``name``."""
    keep = comparison_stars(cat)
    return (
        np.asarray(cat[f"{name}_ipt"][keep], np.float64),
        np.asarray(cat[name][keep], np.float64),
    )


def _diff_stat(cat: np.ndarray, stat) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in PARAM_NAMES:
        measured, target = measured_and_input(cat, name)
        out[name] = float(stat(measured - target)) if len(target) else None
    return out


def max_abs_diffs(cat: np.ndarray) -> dict[str, float | None]:
    """Largest ``|measured - input|`` per parameter (None without stars)."""
    return _diff_stat(cat, lambda d: np.max(np.abs(d)))


def mean_diffs(cat: np.ndarray) -> dict[str, float | None]:
    """Mean ``measured - input`` per parameter: the bias (None without stars)."""
    return _diff_stat(cat, np.mean)


def expected_max_abs(sigma: float, n: int) -> float:
    """Median of the largest ``|x|`` of ``n`` draws of ``x ~ N(0, sigma)``."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(0.5 * (1.0 + 0.5 ** (1.0 / n)))) if n else 0.0


def fwhm_error_budget(cat: np.ndarray) -> dict[str, float | int | None]:
    """How much of ``max |measured - input|`` of the FWHM is noise.

    Over the comparison stars: the mean difference of the model (the bias the
    adjustment removes) and its standard error, the rms difference of the model
    and of the single-star measurements (``_cnn``), and the largest difference
    expected from noise alone (:func:`expected_max_abs` of the model's rms).
    A maximum near that value and a mean within a few standard errors of zero
    mean the comparison is limited by the stars' photon noise, not by a bias.
    """
    keep = comparison_stars(cat) & (cat["psf_fwhm_cnn"] != psf.ERR_VAL)
    n = int(keep.sum())
    if n < 2:
        return dict.fromkeys(
            ("n_stars", "mean", "mean_err", "rms", "star_rms", "max", "noise_max")
        ) | {"n_stars": n}
    target = np.asarray(cat["psf_fwhm"][keep], np.float64)
    model = np.asarray(cat["psf_fwhm_ipt"][keep], np.float64) - target
    star = np.asarray(cat["psf_fwhm_cnn"][keep], np.float64) - target
    rms = float(np.sqrt(np.mean(model**2)))
    return {
        "n_stars": n,
        "mean": float(model.mean()),
        "mean_err": float(model.std(ddof=1) / np.sqrt(n)),
        "rms": rms,
        "star_rms": float(np.sqrt(np.mean(star**2))),
        "max": float(np.max(np.abs(model))),
        "noise_max": expected_max_abs(rms, n),
    }


# --- the linear adjustment ---------------------------------------------------------


@dataclass(frozen=True)
class LinearAdjustment:
    """``input = intercept + slope * measured`` and how it was obtained.

    ``kind``: ``"fit"`` (robust least squares), ``"offset"`` (slope 1: the
    stars do not resolve a slope other than 1) or ``"degenerate"`` (slope 1:
    too few stars, or a parameter without spread); see
    :func:`fit_linear_adjustment`.
    """

    intercept: float
    slope: float
    kind: str
    n_stars: int
    n_clipped: int
    slope_err: float | None
    residual_std: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(values, np.float64)

    @property
    def coefficients(self) -> tuple[float, float]:
        """``(intercept, slope)``, the form ufig's pipeline takes."""
        return (self.intercept, self.slope)


def _robust_std(values: np.ndarray) -> float:
    return float(MAD_TO_STD * np.median(np.abs(values - np.median(values))))


def _no_spread(values: np.ndarray) -> bool:
    scale = max(1.0, float(np.max(np.abs(values))))
    return float(np.ptp(values)) <= SPREAD_TOL * scale


def _clip(residual: np.ndarray, keep: np.ndarray, n_sigma: float) -> np.ndarray:
    sigma = _robust_std(residual[keep])
    if sigma == 0:
        return keep
    return np.abs(residual - np.median(residual[keep])) <= n_sigma * sigma


def _offset_only(
    measured: np.ndarray, target: np.ndarray, keep: np.ndarray, n_sigma: float
) -> tuple[float, np.ndarray]:
    offset = target - measured
    for _ in range(10):
        new = _clip(offset, keep, n_sigma) & keep
        if np.array_equal(new, keep) or new.sum() < 1:
            break
        keep = new
    return float(np.mean(offset[keep])), keep


def fit_linear_adjustment(
    measured: np.ndarray,
    target: np.ndarray,
    n_sigma: float = N_SIGMA_CLIP,
    min_stars: int = MIN_FIT_STARS,
    slope_z: float = SLOPE_Z,
    min_r2: float = MIN_R2,
    max_slope: float = MAX_SLOPE,
    max_iter: int = 10,
) -> LinearAdjustment:
    """Robust fit of ``target = intercept + slope * measured``.

    Least squares with iterative ``n_sigma`` clipping of the residuals (scale:
    1.4826 MAD). The adjustment is meant to remove biases of the estimator, so
    a fitted slope is kept only where the stars resolve it; otherwise the slope
    is 1 and the intercept the (clipped) mean offset:

    - ``"degenerate"``: fewer than ``min_stars`` finite pairs, or measured or
      target values that do not vary (the slope is undefined);
    - ``"offset"``: the measured values follow the input too loosely (squared
      correlation below ``min_r2``, or a slope that is not positive), or the
      slope is within ``slope_z`` standard errors of 1. When the scatter of the
      measurement is comparable to the input's variation, least squares
      returns a slope well below 1 (regression dilution): applying it would
      flatten the model towards its mean, whatever the estimator's bias;
    - ``"offset"`` too when the slope lies outside ``[1 / max_slope, max_slope]``.
      The relation is fitted on the model at the stars but applied to each
      star's measurement: a model much flatter than its input (strong smoothing
      of few stars) gives a large slope that would multiply the measurement
      noise (seen: slope 25 for e1 from 9 stars, which elongated every star).

    ``slope_z=0``, ``min_r2=0`` and ``max_slope=inf`` keep every positive fitted
    slope (``"fit"``).
    """
    measured = np.asarray(measured, np.float64).ravel()
    target = np.asarray(target, np.float64).ravel()
    if measured.shape != target.shape:
        raise InputError(
            "measured", f"{measured.shape} values but {target.shape} inputs"
        )
    keep = np.isfinite(measured) & np.isfinite(target)
    n = int(keep.sum())
    if n == 0:
        raise InputError("measured", "no finite pair of measured and input values")
    if n < max(min_stars, 3) or _no_spread(measured[keep]) or _no_spread(target[keep]):
        return _offset_fit(measured, target, keep, n_sigma, "degenerate", None)
    finite = keep.copy()
    for _ in range(max_iter):
        slope, intercept = np.polyfit(measured[keep], target[keep], 1)
        new = _clip(target - intercept - slope * measured, keep, n_sigma) & finite
        if np.array_equal(new, keep) or new.sum() < max(min_stars, 3):
            break
        keep = new
    slope_err = _slope_error(measured[keep], target[keep], slope, intercept)
    r2 = float(np.corrcoef(measured[keep], target[keep])[0, 1] ** 2)
    unresolved = slope <= 0 or r2 < min_r2 or not 1 / max_slope <= slope <= max_slope
    if unresolved or (slope_z > 0 and abs(slope - 1.0) < slope_z * slope_err):
        return _offset_fit(measured, target, finite, n_sigma, "offset", slope_err)
    residual = target[keep] - intercept - slope * measured[keep]
    return LinearAdjustment(
        float(intercept), float(slope), "fit", int(keep.sum()),
        int(finite.sum() - keep.sum()), slope_err, float(np.std(residual)),
    )  # fmt: skip


def _offset_fit(measured, target, keep, n_sigma, kind, slope_err) -> LinearAdjustment:
    finite = keep.copy()
    offset, keep = _offset_only(measured, target, keep, n_sigma)
    residual = target[keep] - measured[keep] - offset
    return LinearAdjustment(
        offset, 1.0, kind, int(keep.sum()), int(finite.sum() - keep.sum()),
        slope_err, float(np.std(residual)),
    )  # fmt: skip


def _slope_error(x: np.ndarray, y: np.ndarray, slope: float, intercept: float) -> float:
    """Standard error of the least-squares slope."""
    n = len(x)
    sxx = float(np.sum((x - x.mean()) ** 2))
    if n < 3 or sxx == 0:
        return float("inf")
    s2 = float(np.sum((y - intercept - slope * x) ** 2)) / (n - 2)
    return float(np.sqrt(s2 / sxx))


def fit_adjustments(cat: np.ndarray, **kwargs) -> dict[str, LinearAdjustment]:
    """:func:`fit_linear_adjustment` of every PSF parameter over the catalogue's
    comparison stars (model at the star against the input)."""
    n = int(comparison_stars(cat).sum())
    if n == 0:
        raise InputError("PSF catalogue", "no star with a measured and an input PSF")
    return {
        name: fit_linear_adjustment(*measured_and_input(cat, name), **kwargs)
        for name in PARAM_NAMES
    }


def pipeline_adjustment(
    fits: Mapping[str, LinearAdjustment],
) -> dict[str, tuple[float, float]]:
    """``{name: (intercept, slope)}``, ufig's ``psf_measurement_adjustment``."""
    return {name: fit.coefficients for name, fit in fits.items()}


def write_adjustment(
    run: RunFolder, fits: Mapping[str, LinearAdjustment], extra: dict | None = None
) -> Path:
    """The adjustment and its diagnostics as ``psf/psf_adjustment.json``."""
    path = adjustment_path(run)
    write_json(
        path,
        {
            "adjustment": {k: list(v) for k, v in pipeline_adjustment(fits).items()},
            "fits": {k: dataclasses.asdict(v) for k, v in fits.items()},
            **(extra or {}),
        },
    )
    return path


def read_adjustment(run: RunFolder) -> dict[str, tuple[float, float]] | None:
    """The adjustment stage 08 wrote (None when stage 08 has not run)."""
    import json

    path = adjustment_path(run)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())["adjustment"]
        return {k: (float(v[0]), float(v[1])) for k, v in data.items()}
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise InputError(path, f"not an adjustment file ({err})") from None


# --- the data again, and a simulation with the improved model ------------------------


def estimate_improved_psf(
    tile: TileSpec,
    run: RunFolder,
    adjustment: Mapping[str, tuple[float, float]],
    **psf_settings,
) -> psf.PSFStageResult:
    """Stage 05 on the data with ``adjustment``: the improved model and catalogue."""
    view = redirected_run(
        run, psf_model=improved_model_path(run), psf_catalog=improved_catalog_path(run)
    )
    adjustment = {k: tuple(map(float, v)) for k, v in adjustment.items()}
    return psf.estimate_psf(
        tile, view, psf_measurement_adjustment=adjustment, **psf_settings
    )


def improved_psf_overrides(run: RunFolder, band: str) -> dict:
    """Simulation overrides that make it use the improved PSF model (if any)."""
    path = improved_model_path(run)
    return {"filepath_psfmodel_input_dict": {band: str(path)}} if path.is_file() else {}


def simulate_with_improved_psf(
    tile: TileSpec, run: RunFolder, name: str = TUNED_SIM, **sim_kwargs
) -> simulate.Simulation:
    """Simulate the patch with ``psf/psf_model_improved.h5`` into ``sim/<name>``."""
    overrides = improved_psf_overrides(run, tile.band)
    if not overrides:
        raise InputError(improved_model_path(run), "not found; fine-tune the PSF first")
    overrides.update(sim_kwargs.pop("overrides", None) or {})
    return simulate.run_simulation(
        tile, run, name=name, overrides=overrides, measure_psf="none", **sim_kwargs
    )


# --- reporting --------------------------------------------------------------------


def max_diff_table(
    before: Mapping[str, float | None],
    after: Mapping[str, float | None],
    digits: int = 4,
) -> str:
    """The tutorial's before/after listing per parameter, as a table."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lines = [f"{'parameter':16s} {'not adjusted':>13s} {'adjusted':>10s}"]
    lines += [f"{k:16s} {fmt(before.get(k)):>13s} {fmt(after.get(k)):>10s}"
              for k in PARAM_NAMES]  # fmt: skip
    return "\n".join(lines)


def budget_table(budget: Mapping[str, Mapping]) -> str:
    """:func:`fwhm_error_budget` results ({label: budget}) as a table (pixels)."""
    lines = [
        f"{'FWHM (pixels)':12s} {'n':>4s} {'mean':>9s} {'+-':>7s} "
        f"{'model rms':>9s} {'star rms':>9s} {'max':>7s} {'noise max':>9s}"
    ]
    lines += [f"{key:12s} {b['n_stars']:4d} {b['mean']:+9.5f} {b['mean_err']:7.5f} "
              f"{b['rms']:9.5f} {b['star_rms']:9.5f} {b['max']:7.4f} "
              f"{b['noise_max']:9.4f}"
              for key, b in budget.items() if b["mean"] is not None]  # fmt: skip
    return "\n".join(lines)


def record_metrics(
    run: RunFolder,
    before: Mapping[str, float | None],
    after: Mapping[str, float | None],
    fits: Mapping[str, LinearAdjustment],
    extra: dict | None = None,
) -> dict:
    """``finetune_psf`` section (before/after per parameter) and the realism
    metric ``psf_fwhm_max_abs_diff`` (after) of ``metrics.json``."""
    update_metrics(
        run.metrics,
        "finetune_psf",
        {
            "psf_fwhm_max_abs_diff_before": before["psf_fwhm"],
            "psf_fwhm_max_abs_diff_after": after["psf_fwhm"],
            "max_abs_diff_before": dict(before),
            "max_abs_diff_after": dict(after),
            "adjustment": {k: list(v) for k, v in pipeline_adjustment(fits).items()},
            "adjustment_kind": {k: f.kind for k, f in fits.items()},
            **(extra or {}),
        },
    )
    return update_metrics(
        run.metrics, "realism", {"psf_fwhm_max_abs_diff": after["psf_fwhm"]}
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
             (0.2, cat_after, "adjusted (psf_tuned simulation)"))  # fmt: skip
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
