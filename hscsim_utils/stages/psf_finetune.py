"""Stage 08: fine-tune the PSF estimation on a simulation of the patch.

A measured PSF never equals the PSF that made the image. The simulation of stage
06 knows its PSF (stage 05's model of the data), so measuring the PSF of the
simulation exactly as stage 05 measured the data shows the estimator's bias:

1. :func:`measure_simulation_psf` runs stage 05's estimation (the settings
   stage 05 used, :func:`stage05_settings`) on a simulated image and its
   SExtractor catalogue;
2. :func:`fit_adjustments` fits, per PSF parameter, ``input = intercept + slope
   * measured`` over the stars of the model in the tuning half of the patch
   (robust, see :func:`fit_linear_adjustment`; halves:
   :mod:`hscsim_utils.numerics.halves`);
3. :func:`estimate_improved_psf` measures the data again with that adjustment
   applied to every star's measurement: the improved model and catalogue;
4. :func:`simulate_with_improved_psf` simulates the patch with the improved
   model, whose PSF is then measured with the adjustment.

On a tile of several bands every band the baseline simulated is tuned this way
(:func:`tune_band`): steps 1-3 on that band's image of the baseline (its PSF
stars measured as its data were: forced photometry on the detection band's
detections), its adjustment and improved model in its own run folder
(``RUN/bands/<band>/psf_finetune/``), and step 4 is one simulation of all bands,
each with its improved model, so the tuned simulation keeps one galaxy
population; each band's PSF there is measured with its own adjustment
(``psf_catalog_sim_<band>.cat``). Its numbers are in ``bands.<band>`` of the
section. On a 2000 x 2000 g r i DEMO (``tests/test_multiband_chain.py``) stages 08
and 09 together took 228 s for the three bands.

The before/after comparisons (``before``/``after`` in ``metrics.json``) use the
stars of the scoring half only, which the fit never saw. For the FWHM they give
(:func:`fwhm_error_budget`, in pixels, over the ``n`` scoring stars with input
``f_in`` and model ``f_ipt``; ``d = f_ipt - f_in``): the mean ``d`` and its
standard error ``s(d) / sqrt(n)`` (the bias the adjustment is meant to remove:
significant when beyond two standard errors), the rms ``sqrt(mean(d^2))``, and
the largest ``|d|`` beside the largest expected from noise alone, the median of
the maximum of ``n`` draws of ``|N(0, s)|`` with ``s = s(d)`` the scatter about
the mean: ``s * Phi^-1((1 + 2^(-1/n)) / 2)`` (:func:`expected_max_abs`). A
maximum beyond it is an outlier or a bias, not noise.

Entry point: :func:`run`. Everything the stage writes is in its product
``psf_finetune/`` (besides its section ``psf_finetune`` of ``metrics.json``; on a
tile of several bands every other band's files, all but the simulation, are in
the same product of its band run, ``bands/<band>/psf_finetune/``)::

    psf_finetune/
      psf_model.h5, psf_catalog.cat   improved PSF model and its stars
      adjustment.json                 the fitted adjustment and its diagnostics
      baseline_psf/                   PSF measured on stage 06's simulation
      sim/                            simulation with the improved model, and
                                      its PSF measured with the adjustment

The figures are in :mod:`hscsim_utils.stages.psf_finetune_plots`.

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
from hscsim_utils.metrics import relative_path, write_section
from hscsim_utils.numerics import halves
from hscsim_utils.numerics.psf_model import PARAM_NAMES
from hscsim_utils.runfolder import PRODUCTS, RunFolder
from hscsim_utils.stages import psf, quality, registry, simulate

STAGE = registry.spec("psf_finetune")
#: Files and folders inside the product ``psf_finetune/``.
IMPROVED_MODEL = "psf_model.h5"
IMPROVED_CATALOG = "psf_catalog.cat"
ADJUSTMENT = "adjustment.json"
BASELINE_PSF = "baseline_psf"
TUNED_SIM = "sim"
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
#: Scratch folder (image and catalogue in stage 05's formats) inside the folder
#: the measurement goes to; the prefix lets the chain runner sweep it after a crash.
SCRATCH_PREFIX = f"{TMP_PREFIX}psf-of-sim-"


@dataclass(frozen=True)
class Params:
    """Settings of stage 08: the parameters of its notebook. The PSF estimation
    itself runs with the settings stage 05 used (:func:`stage05_settings`)."""

    simulation: str = ""  # folder relative to the run folder; empty: sim/baseline
    slope_z: float = SLOPE_Z  # slopes within this many standard errors of 1 become 1
    min_r2: float = MIN_R2  # slopes of looser relations than this become 1

    def __post_init__(self) -> None:
        quality.check_simulation(f"{STAGE.name}.simulation", self.simulation)
        for name, low, high in (("slope_z", 0.0, np.inf), ("min_r2", 0.0, 1.0)):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not low <= value <= high:
                raise InputError(
                    f"{STAGE.name}.{name}",
                    f"must be a number in [{low}, {high}], got {value!r}",
                )


# --- paths -----------------------------------------------------------------------


def finetune_dir(run: RunFolder) -> Path:
    """The product ``psf_finetune/`` (not created: stage 09 only looks)."""
    return run.root / PRODUCTS[STAGE.name].rstrip("/")


def improved_model_path(run: RunFolder) -> Path:
    """The improved PSF model (the data measured with the adjustment)."""
    return finetune_dir(run) / IMPROVED_MODEL


def improved_catalog_path(run: RunFolder) -> Path:
    """The star catalogue of the improved PSF model."""
    return finetune_dir(run) / IMPROVED_CATALOG


def adjustment_path(run: RunFolder) -> Path:
    """The fitted adjustment and its diagnostics (JSON)."""
    return finetune_dir(run) / ADJUSTMENT


def baseline_psf_dir(run: RunFolder) -> Path:
    """The PSF measured on the baseline simulation (no adjustment)."""
    return finetune_dir(run) / BASELINE_PSF


def tuned_sim_dir(run: RunFolder) -> Path:
    """The simulation with the improved PSF model (and its measured PSF)."""
    return finetune_dir(run) / TUNED_SIM


def redirected_run(run: RunFolder, **paths: str | os.PathLike) -> RunFolder:
    """A view of ``run`` whose named products (e.g. ``psf_model``) point elsewhere,
    by property and by :meth:`RunFolder.product` alike."""
    unknown = [name for name in paths if name not in PRODUCTS]
    if unknown:
        raise TypeError(f"RunFolder has no paths {unknown}")
    moved = {name: Path(p) for name, p in paths.items()}

    def product(self, name: str) -> Path:
        return moved[name] if name in moved else RunFolder.product(self, name)

    props = {name: property(lambda self, p=p: p) for name, p in moved.items()}
    return type("RedirectedRunFolder", (RunFolder,), props | {"product": product})(
        run.root
    )


def stage05_settings(run: RunFolder) -> dict:
    """The settings stage 05 estimated the data's PSF with (its ``Params``, read
    from its summary), as keywords of :func:`hscsim_utils.stages.psf.estimate_psf`."""
    return dataclasses.asdict(psf.load_params(run))


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
    ``psf_catalog_sim.cat`` (``psf_model_sim_<band>.h5`` and
    ``psf_catalog_sim_<band>.cat`` for a simulation of several bands) into
    ``out_dir`` (default: the simulation's folder, where
    :func:`hscsim_utils.stages.quality.load_inputs` finds the catalogue), each
    atomically; the scratch files go to a temporary folder inside it.
    """
    out_dir = Path(out_dir) if out_dir is not None else sim.directory
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in (sim.image_path, sim.catalog_path):
        if not path.is_file():
            raise InputError(path, "simulation output missing; simulate again")
    settings = dict(psf_settings)
    if adjustment:
        settings["psf_measurement_adjustment"] = {
            k: tuple(map(float, v)) for k, v in adjustment.items()
        }
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=SCRATCH_PREFIX) as tmp:
        image = write_image_as_calexp(sim, Path(tmp) / "image.fits")
        cat = write_catalog_as_columns(sim, Path(tmp) / "se.cat")
        view = redirected_run(
            run,
            sextractor_cat=cat,
            psf_model=out_dir / sim.psf_file_name(simulate.PSF_MODEL),
            psf_catalog=out_dir / sim.psf_file_name(simulate.PSF_CATALOG),
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


def stars_in_half(
    cat: np.ndarray, shape: tuple[int, int] | None, half: str
) -> np.ndarray:
    """The rows of a PSF catalogue centred in ``half`` (``"tuning"`` or
    ``"scoring"``) of an image of ``shape``; all rows when ``shape`` is None."""
    if shape is None:
        return cat
    return cat[quality.in_half(cat, shape, half)]


def image_shape(sim: simulate.Simulation) -> tuple[int, int]:
    """Rows and columns of a simulated image (from its FITS header)."""
    from astropy.io import fits

    header = fits.getheader(sim.image_path)
    return int(header["NAXIS2"]), int(header["NAXIS1"])


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
    expected from noise alone (:func:`expected_max_abs` of the model's scatter
    about its mean, so that a bias does not count as noise).
    A maximum near that value and a mean within a few standard errors of zero
    mean the comparison is limited by the stars' photon noise, not by a bias.
    """
    keep = comparison_stars(cat) & (cat["psf_fwhm_cnn"] != psf.ERR_VAL)
    n = int(keep.sum())
    if n < 2:
        return dict.fromkeys(
            ("n_stars", "mean", "mean_err", "rms", "star_rms", "star_max", "max",
             "noise_max")
        ) | {"n_stars": n}  # fmt: skip
    target = np.asarray(cat["psf_fwhm"][keep], np.float64)
    model = np.asarray(cat["psf_fwhm_ipt"][keep], np.float64) - target
    star = np.asarray(cat["psf_fwhm_cnn"][keep], np.float64) - target
    scatter = float(model.std(ddof=1))
    return {
        "n_stars": n,
        "mean": float(model.mean()),
        "mean_err": scatter / float(np.sqrt(n)),
        "rms": float(np.sqrt(np.mean(model**2))),
        "star_rms": float(np.sqrt(np.mean(star**2))),
        "star_max": float(np.max(np.abs(star))),
        "max": float(np.max(np.abs(model))),
        "noise_max": expected_max_abs(scatter, n),
    }


# --- the linear adjustment ---------------------------------------------------------


@dataclass(frozen=True)
class LinearAdjustment:
    """``input = intercept + slope * measured`` and how it was obtained.

    ``kind``: ``"fit"`` (robust least squares), ``"offset"`` (slope 1: the
    stars do not resolve a slope other than 1), ``"degenerate"`` (slope 1:
    too few stars, or a parameter without spread; see
    :func:`fit_linear_adjustment`) or ``"none"`` (no star to fit: the identity,
    see :func:`fit_on_tuning_half`).
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
    """The adjustment and its diagnostics as ``psf_finetune/adjustment.json``."""
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


def improved_psf_overrides(band_runs: Mapping[str, RunFolder]) -> dict:
    """Simulation overrides that make every band of ``band_runs`` ({band: its
    run folder}) use its improved PSF model, stage 05's model where it has none;
    ``{}`` when no band has one."""
    models = {band: improved_model_path(r) for band, r in band_runs.items()}
    absent = [band for band, path in models.items() if not path.is_file()]
    if len(absent) == len(models):
        return {}
    if absent:
        import warnings

        warnings.warn(
            f"no improved PSF model of the bands {absent} (stage 08): their "
            "simulation uses stage 05's model",
            stacklevel=2,
        )
    return {
        "filepath_psfmodel_input_dict": {
            band: str(path if path.is_file() else band_runs[band].psf_model)
            for band, path in models.items()
        }
    }


def simulate_with_improved_psf(
    tile: TileSpec,
    run: RunFolder,
    band_runs: Mapping[str, RunFolder] | None = None,
    **sim_kwargs,
) -> simulate.Simulation:
    """Simulate the patch (the bands of ``band_runs``, default the tile's band)
    with the improved PSF models into :func:`tuned_sim_dir`."""
    band_runs = dict(band_runs or {tile.band: run})
    overrides = improved_psf_overrides(band_runs)
    if not overrides:
        raise InputError(improved_model_path(run), "not found; fine-tune the PSF first")
    overrides.update(sim_kwargs.pop("overrides", None) or {})
    return simulate.run_simulation(
        tile, run, out=tuned_sim_dir(run), overrides=overrides, measure_psf="none",
        band_runs=band_runs, **sim_kwargs,
    )  # fmt: skip


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
        f"{'model rms':>9s} {'star rms':>9s} {'star max':>8s} {'max':>7s} "
        f"{'noise max':>9s}"
    ]
    lines += [f"{key:12s} {b['n_stars']:4d} {b['mean']:+9.5f} {b['mean_err']:7.5f} "
              f"{b['rms']:9.5f} {b['star_rms']:9.5f} {b['star_max']:8.4f} "
              f"{b['max']:7.4f} {b['noise_max']:9.4f}"
              for key, b in budget.items() if b["mean"] is not None]  # fmt: skip
    return "\n".join(lines)


def fits_table(fits: Mapping[str, LinearAdjustment]) -> str:
    """One line per parameter: the fitted relation and how it was obtained."""
    lines = []
    for name, fit in fits.items():
        err = f"{fit.slope_err:.3f}" if fit.slope_err is not None else "-"
        lines.append(
            f"{name:15s} input = {fit.intercept:+.5f} + {fit.slope:.4f} x measured "
            f"({fit.kind}, slope error {err}, {fit.n_stars} stars, "
            f"{fit.n_clipped} clipped)"
        )
    return "\n".join(lines)


def truth_table(comparison: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    """RMS of the stage 05 and the improved model against the true PSF."""
    if not comparison:
        return "no true PSF for this tile"
    keys = list(comparison)
    lines = [f"{'model vs truth':15s}" + "".join(f"{k + ' rms':>15s}" for k in keys)]
    for name in comparison[keys[0]]:
        values = "".join(f"{comparison[k][name]['rms']:15.5f}" for k in keys)
        lines.append(f"{name:15s}{values}")
    return "\n".join(lines)


# --- the stage --------------------------------------------------------------------


@dataclass
class Measurement:
    """The PSF measured on one simulation, compared with the simulation's input."""

    simulation: Path  # the simulation's folder
    adjusted: bool  # measured with the adjustment
    estimator: str
    catalog_path: Path
    catalog: np.ndarray = dataclasses.field(repr=False)
    shape: tuple[int, int] | None = None  # the image's; None: stars not split

    def stars(self, half: str = halves.SCORING) -> np.ndarray:
        """The catalogue's rows in ``half`` (all when the shape is unknown)."""
        return stars_in_half(self.catalog, self.shape, half)

    @property
    def n_stars(self) -> int:
        """Stars of the model with a measured and an input PSF (scoring half)."""
        return int(comparison_stars(self.stars()).sum())

    def block(self, run: RunFolder) -> dict:
        """The numbers for ``metrics.json`` (stars of the scoring half), saying
        which simulation they describe."""
        scoring = self.stars()
        worst = max_abs_diffs(scoring)
        return {
            "simulation": relative_path(run.root, self.simulation),
            "psf_catalog": relative_path(run.root, self.catalog_path),
            "adjusted": self.adjusted,
            "half": halves.SCORING if self.shape is not None else None,
            "n_stars": self.n_stars,
            "psf_fwhm_max_abs_diff": worst["psf_fwhm"],
            "max_abs_diff": worst,
            "mean_diff": mean_diffs(scoring),
            "fwhm_error_budget": fwhm_error_budget(scoring),
        }


def measure(
    tile: TileSpec,
    run: RunFolder,
    sim: simulate.Simulation,
    settings: Mapping,
    adjustment: Mapping[str, tuple[float, float]] | None = None,
    out_dir: Path | None = None,
) -> Measurement:
    """:func:`measure_simulation_psf` and its catalogue, as a :class:`Measurement`."""
    result = measure_simulation_psf(
        tile, run, sim, adjustment, out_dir=out_dir, **settings
    )
    return Measurement(
        sim.directory, bool(adjustment), result.estimator, result.catalog,
        read_psf_catalog(result.catalog), image_shape(sim),
    )  # fmt: skip


def fit_on_tuning_half(before: Measurement, **kwargs) -> dict[str, LinearAdjustment]:
    """:func:`fit_adjustments` over the stars of the tuning half of ``before``
    (the scoring half's stars are left for the comparisons). Without any star
    there the adjustment is the identity (kind ``"none"``), with a warning."""
    tuning = before.stars(halves.TUNING)
    if not comparison_stars(tuning).any():
        import warnings

        warnings.warn(
            "no PSF star with a measured and an input PSF in the tuning half: "
            "the PSF measurement is not adjusted",
            stacklevel=2,
        )
        none = LinearAdjustment(0.0, 1.0, "none", 0, 0, None, 0.0)
        return dict.fromkeys(PARAM_NAMES, none)
    return fit_adjustments(tuning, **kwargs)


@dataclass
class BandTuning:
    """Stage 08 in one band: the fit on the baseline simulation, the data's PSF
    estimated again with it and (once simulated) the PSF of the simulation with
    the improved models."""

    band: str
    run: RunFolder  # the band's run folder: its data products and psf_finetune/
    settings: dict  # stage 05's PSF settings in this band
    fits: dict[str, LinearAdjustment]
    before: Measurement  # baseline simulation, not adjusted
    truth_comparison: dict  # {"stage 05"/"improved": compare_to_truth}; {} if none
    improved_model: Path
    improved_catalog: Path
    after: Measurement | None = None  # simulation with the improved models, adjusted

    @property
    def adjustment(self) -> dict[str, tuple[float, float]]:
        """``{name: (intercept, slope)}``."""
        return pipeline_adjustment(self.fits)


def tune_band(
    tile: TileSpec, band_run: RunFolder, baseline: simulate.Simulation, params: Params
) -> BandTuning:
    """Steps 1-3 in the band ``tile`` is seen from (its products in ``band_run``):
    the PSF of ``baseline`` in that band measured as stage 05 measured the data,
    the adjustment fitted on the stars of the tuning half and the data's PSF
    estimated again with it (into the band's ``psf_finetune/``)."""
    settings = stage05_settings(band_run)
    baseline = baseline.for_band(tile.band)
    out = baseline_psf_dir(band_run)
    before = measure(tile, band_run, baseline, settings, out_dir=out)
    fits = fit_on_tuning_half(before, slope_z=params.slope_z, min_r2=params.min_r2)
    improved = estimate_improved_psf(
        tile, band_run, pipeline_adjustment(fits), **settings
    )
    n_fit = int(comparison_stars(before.stars(halves.TUNING)).sum())
    write_adjustment(band_run, fits, {"n_stars": n_fit, "half": halves.TUNING})
    truth = psf.load_truth_grid(tile)
    comparison = {}
    if truth is not None:
        models = (("stage 05", band_run.psf_model), ("improved", improved.model))
        for key, path in models:
            comparison[key] = psf.compare_to_truth(psf.read_grid(path), truth)
    return BandTuning(tile.band, band_run, settings, fits, before, comparison,
                      improved.model, improved.catalog)  # fmt: skip


def band_tile(tile: TileSpec, band: str) -> TileSpec:
    """``tile`` seen from ``band`` (the tile itself for its own band)."""
    return tile if band == tile.band else tile.for_band(band)


def tuned_bands(tile: TileSpec, baseline: simulate.Simulation) -> list[str]:
    """The tile's bands that ``baseline`` simulated, the detection band first
    (a simulation of fewer bands than the tile: the others are left, with a
    warning)."""
    simulated = baseline.settings.bands
    absent = [b for b in tile.bands if b not in simulated]
    if absent and len(tile.bands) > 1:
        import warnings

        warnings.warn(
            f"the simulation in {baseline.directory} lacks the bands {absent}: "
            "their PSF is not fine-tuned",
            stacklevel=2,
        )
    return [tile.band] + [b for b in tile.bands if b in simulated and b != tile.band]


@dataclass
class Products:
    """What stage 08 fitted, wrote and measured (its metrics section is
    written): the detection band's tuning, and every other band's in
    ``bands``."""

    settings: dict  # stage 05's PSF settings, used for every estimation
    fits: dict[str, LinearAdjustment]
    before: Measurement  # baseline simulation, not adjusted
    after: Measurement  # simulation with the improved model, adjusted
    truth_comparison: dict  # {"stage 05"/"improved": compare_to_truth}; {} if none
    improved_model: Path
    improved_catalog: Path
    section: dict  # section ``psf_finetune`` of metrics.json
    bands: dict[str, BandTuning] = dataclasses.field(default_factory=dict)

    @property
    def adjustment(self) -> dict[str, tuple[float, float]]:
        """``{name: (intercept, slope)}``."""
        return pipeline_adjustment(self.fits)

    def diff_tables(self) -> str:
        """Largest and mean difference between measured and input PSF parameters,
        before and after the fine-tuning (stars of the scoring half)."""
        cats = (self.before.stars(), self.after.stars())
        worst = [max_abs_diffs(c) for c in cats]
        bias = [mean_diffs(c) for c in cats]
        return (
            "Maximum difference between measured and input PSF parameters:\n"
            f"{max_diff_table(*worst)}\nMean difference (bias):\n"
            f"{max_diff_table(*bias, digits=5)}"
        )

    def budget_table(self) -> str:
        """:func:`fwhm_error_budget` before and after, as a table (stars of the
        scoring half)."""
        return budget_table(
            {k: fwhm_error_budget(m.stars()) for k, m in
             (("before", self.before), ("after", self.after))}
        )  # fmt: skip

    def bands_table(self) -> str:
        """Every band's FWHM bias (mean measured minus input, pixels, scoring
        half, with its standard error) before and after, and its stars."""
        rows = {self.section.get("band", "?"): (self.before, self.after)} | {
            band: (t.before, t.after) for band, t in self.bands.items()
        }
        lines = [f"{'band':>5s} {'stars':>6s} {'FWHM bias before':>18s} "
                 f"{'FWHM bias after':>18s}"]  # fmt: skip
        for band, measurements in rows.items():
            cells = [_bias(m) for m in measurements]
            lines.append(f"{band:>5s} {measurements[1].n_stars:>6d} {cells[0]:>18s} "
                         f"{cells[1]:>18s}")  # fmt: skip
        return "\n".join(lines)


def _bias(measurement: Measurement | None) -> str:
    """Mean FWHM difference and its standard error (scoring half), or ``-``."""
    budget = fwhm_error_budget(measurement.stars()) if measurement else {"mean": None}
    if budget["mean"] is None:
        return "-"
    return f"{budget['mean']:+.4f} +- {budget['mean_err']:.4f}"


def metrics_section(
    run: RunFolder,
    tuning: BandTuning,
) -> dict:
    """One band's block of section ``psf_finetune`` of ``metrics.json`` (paths
    relative to the detection band's ``run``): the adjustment and the PSF
    measured minus input on each simulation (``before``/``after`` blocks, each
    naming its simulation; stars of the scoring half), with
    ``psf_fwhm_max_abs_diff`` in both; the adjustment was fitted on the stars
    of the tuning half (``fit_half``, ``n_fit_stars``)."""
    before, after = tuning.before, tuning.after
    if after is None:
        raise RuntimeError(f"band {tuning.band}: the after measurement is missing")
    return {
        "band": tuning.band,
        "estimator": after.estimator,
        "stage05_params": dict(tuning.settings),
        "adjustment": {k: list(v) for k, v in tuning.adjustment.items()},
        "adjustment_kind": {k: f.kind for k, f in tuning.fits.items()},
        "fit_half": halves.TUNING if before.shape is not None else None,
        "n_fit_stars": int(comparison_stars(before.stars(halves.TUNING)).sum()),
        "improved_model": relative_path(run.root, tuning.improved_model),
        "before": before.block(run),
        "after": after.block(run),
        "truth_rms": {
            key: {name: v["rms"] for name, v in cmp.items()}
            for key, cmp in tuning.truth_comparison.items()
        },
    }


def run(tile: TileSpec, run: RunFolder, params: Params) -> Products:
    """Stage 08 in every band the baseline simulated: measure the PSF of the
    baseline simulation as stage 05 measured the data, fit the adjustment on
    the stars of the tuning half, estimate the data's PSF again with it (each
    band into its run folder's ``psf_finetune/``), simulate all bands at once
    with the improved models and measure each band's PSF there (adjusted);
    before and after are compared on the stars of the scoring half.

    Writes the product ``psf_finetune/`` (in the detection band's run folder
    and in every other band's) and section ``psf_finetune`` of
    ``metrics.json`` (the detection band's block, the others' in ``bands``),
    nothing else.
    """
    if run.psf_finetune_dir != finetune_dir(run):
        raise RuntimeError("psf_finetune_dir and finetune_dir disagree")
    baseline = simulate.load_simulation(
        quality.simulation_folder(run, params.simulation)
    )
    band_runs = run.band_runs(tuned_bands(tile, baseline), tile.band)
    tunings = {
        band: tune_band(band_tile(tile, band), band_run, baseline, params)
        for band, band_run in band_runs.items()
    }
    tuned = simulate_with_improved_psf(
        tile, run, band_runs, **simulate.baseline_choices(run)
    )
    for band, tuning in tunings.items():
        tuning.after = measure(band_tile(tile, band), tuning.run, tuned.for_band(band),
                               tuning.settings, tuning.adjustment)  # fmt: skip
    mine, *_ = tunings.values()
    section = metrics_section(run, mine)
    others = {band: t for band, t in tunings.items() if band != tile.band}
    if others:
        section["bands"] = {b: metrics_section(run, t) for b, t in others.items()}
    write_section(run.metrics, STAGE.name, section)
    return Products(mine.settings, mine.fits, mine.before, mine.after,
                    mine.truth_comparison, mine.improved_model,
                    mine.improved_catalog, section, others)  # fmt: skip
