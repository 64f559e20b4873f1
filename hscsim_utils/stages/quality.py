"""Stage 07: first quality assessment of the simulation against the data.

Realism (any tile): background pixels (segmentation 0, not masked) and detected
objects (``FLAGS == 0``, not on a masked pixel, finite measurements) of the
simulation and of the data are compared with the same cuts:

- ``bkg_std_ratio``: robust standard deviation (1.4826 MAD) of the background
  pixels, simulation over data; ``bkg_ks``: two-sample Kolmogorov-Smirnov
  statistic of those pixel values (at most ``MAX_KS_PIXELS`` drawn from each
  with a seeded generator);
- ``mag_auto_ks``, ``flux_radius_ks``, ``ellipticity_ks``: KS statistics of the
  detected objects' ``MAG_AUTO``, ``FLUX_RADIUS`` and ``ELLIPTICITY``;
  ``n_detect_ratio``: number of such objects, simulation over data;
- ``psf_fwhm_max_abs_diff``: the largest ``|psf_fwhm_ipt - psf_fwhm|`` (PSF model
  measured on the simulation minus the PSF put in, in pixels) over the stars
  that entered that model. It needs the simulation's PSF catalogue, which stage
  06 writes only when it measures the simulation's PSF (the CNN, or the direct
  estimator on request); otherwise it is null.

Closure (DEMO tile only): each stage's product compared with the truth the demo
builder wrote beside the tile; see :func:`compute_closure`.

Every metric is a number or null (``None``) when its inputs are missing or too
few; nulls come with a warning saying why. The stage's section ``quality`` of
``metrics.json`` holds the blocks ``realism`` (saying which simulation it
describes and whether the data are DEMO or REAL) and, for a DEMO tile,
``closure``; it is written whole on every run.

Entry point: :func:`run`. The stage's figures are in
:mod:`hscsim_utils.stages.quality_plots`; stage 09 uses :func:`load_inputs` and
:meth:`QualityInputs.realism` on its own simulations.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import (
    CLOSURE_KEYS,
    REALISM_KEYS,
    realism_block,
    relative_path,
    write_section,
)
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import registry

STAGE = registry.spec("quality")
MAD_TO_STD = 1.4826
MAX_KS_PIXELS = 1_000_000
NO_MEASUREMENT = 90.0  # SExtractor writes 99 for magnitudes it could not measure
OBJECT_COLUMNS = ("MAG_AUTO", "FLUX_RADIUS", "ELLIPTICITY")
TRIANGLE_RANGES = {"MAG_AUTO": (17, 30), "FLUX_RADIUS": (0, 10), "ELLIPTICITY": (0, 1)}
MAG_BINS = np.arange(16.0, 30.01, 0.5)
PSF_ERR_VAL = 999.0  # ufig's value for stars without a PSF measurement


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def check_simulation(field: str, value: object) -> None:
    """InputError unless ``value`` is a folder relative to the run folder or ""."""
    ok = isinstance(value, str)
    if ok and value:
        path = PurePosixPath(value)
        ok = not path.is_absolute() and ".." not in path.parts
    if not ok:
        raise InputError(
            field,
            "must be a simulation folder relative to the run folder (such as "
            f"'sim/baseline'), or empty for stage 06's simulation; got {value!r}",
        )


def simulation_folder(run: RunFolder, simulation: str = "") -> Path:
    """The folder of the simulation ``simulation`` (relative to the run folder;
    empty: stage 06's ``sim_baseline``)."""
    return run.root / simulation if simulation else run.sim_baseline


@dataclass(frozen=True)
class Params:
    """Settings of stage 07: the parameters of its notebook."""

    simulation: str = ""  # folder relative to the run folder; empty: sim/baseline

    def __post_init__(self) -> None:
        check_simulation(f"{STAGE.name}.simulation", self.simulation)


# ---------------------------------------------------------------- statistics


def robust_std(values: np.ndarray) -> float | None:
    """1.4826 times the median absolute deviation (None for no values)."""
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        return None
    return float(MAD_TO_STD * np.median(np.abs(values - np.median(values))))


def subsample(values: np.ndarray, n_max: int, seed: int = 0) -> np.ndarray:
    """At most ``n_max`` of ``values``, drawn without replacement (seeded)."""
    values = np.asarray(values).ravel()
    if values.size <= n_max:
        return values
    rng = np.random.default_rng(seed)
    return values[rng.choice(values.size, size=n_max, replace=False)]


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sample Kolmogorov-Smirnov statistic (None if a sample is empty)."""
    from scipy.stats import ks_2samp

    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if a.size == 0 or b.size == 0:
        return None
    return float(ks_2samp(a, b).statistic)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; None when either is missing or it is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator / denominator)


# ---------------------------------------------------------------- selections


def background_pixels(
    image: np.ndarray, segmentation: np.ndarray, masked: np.ndarray | None = None
) -> np.ndarray:
    """Finite pixel values outside every detection (segmentation 0), not masked."""
    image = np.asarray(image)
    if np.shape(segmentation) != image.shape:
        raise InputError("segmentation", f"shape {np.shape(segmentation)} is not "
                         f"the image's {image.shape}")  # fmt: skip
    keep = (np.asarray(segmentation) == 0) & np.isfinite(image)
    if masked is not None:
        keep &= ~np.asarray(masked, bool)
    return image[keep]


def masked_at(cat: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """True where an object's centre (XWIN/YWIN, 1-based) lies on a masked pixel."""
    ny, nx = masked.shape
    x = np.clip(np.floor(cat["XWIN_IMAGE"] - 0.5).astype(np.int64), 0, nx - 1)
    y = np.clip(np.floor(cat["YWIN_IMAGE"] - 0.5).astype(np.int64), 0, ny - 1)
    return masked[y, x]


def object_selection(cat: np.ndarray, masked: np.ndarray | None = None) -> np.ndarray:
    """Objects with ``FLAGS == 0``, finite measurements, off masked pixels."""
    names = cat.dtype.names or ()
    missing = [c for c in ("FLAGS", *OBJECT_COLUMNS) if c not in names]
    if missing:
        raise InputError("catalogue", f"lacks columns {missing}")
    keep = cat["FLAGS"] == 0
    for col in OBJECT_COLUMNS:
        keep &= np.isfinite(cat[col])
    keep &= cat["MAG_AUTO"] < NO_MEASUREMENT
    if masked is not None and len(cat):
        keep &= ~masked_at(cat, np.asarray(masked, bool))
    return keep


def psf_fwhm_max_abs_diff(psf_cat: np.ndarray | None) -> float | None:
    """Largest ``|psf_fwhm_ipt - psf_fwhm|`` over the stars of the PSF model.

    ``psf_cat`` is the PSF catalogue measured on the simulation: ``psf_fwhm`` is
    the PSF the simulation put in (matched objects; -200 = no match),
    ``psf_fwhm_ipt`` the measured PSF model at the object, ``FLAGS_STARS == 0``
    marks the stars that entered the model (when the column is present).
    """
    if psf_cat is None:
        return None
    names = psf_cat.dtype.names or ()
    if "psf_fwhm" not in names or "psf_fwhm_ipt" not in names:
        _warn("PSF catalogue of the simulation lacks psf_fwhm or psf_fwhm_ipt")
        return None
    keep = (psf_cat["psf_fwhm"] > 0) & np.isfinite(psf_cat["psf_fwhm_ipt"])
    keep &= psf_cat["psf_fwhm_ipt"] != PSF_ERR_VAL
    if "FLAGS_STARS" in names:
        keep &= psf_cat["FLAGS_STARS"] == 0
    if "psf_fwhm_cnn" in names:
        keep &= psf_cat["psf_fwhm_cnn"] != PSF_ERR_VAL
    if not keep.any():
        _warn("no PSF star of the simulation has an input and a measured PSF")
        return None
    diff = psf_cat["psf_fwhm_ipt"][keep] - psf_cat["psf_fwhm"][keep]
    return float(np.max(np.abs(diff)))


# ---------------------------------------------------------------- realism


def compute_realism(
    sim_bkg: np.ndarray,
    data_bkg: np.ndarray,
    sim_objects: np.ndarray,
    data_objects: np.ndarray,
    psf_catalog: np.ndarray | None = None,
    seed: int = 0,
    max_pixels: int = MAX_KS_PIXELS,
) -> dict[str, float | None]:
    """The ``realism`` metrics from background pixels and selected objects.

    ``sim_bkg``/``data_bkg`` are background pixel values (see
    :func:`background_pixels`), ``sim_objects``/``data_objects`` the selected
    catalogue rows (see :func:`object_selection`).
    """
    out: dict[str, float | None] = {
        "bkg_std_ratio": ratio(robust_std(sim_bkg), robust_std(data_bkg)),
        "bkg_ks": ks_statistic(
            subsample(sim_bkg, max_pixels, seed), subsample(data_bkg, max_pixels, seed)
        ),
    }
    for col in OBJECT_COLUMNS:
        out[f"{col.lower()}_ks"] = ks_statistic(sim_objects[col], data_objects[col])
    out["n_detect_ratio"] = ratio(len(sim_objects), len(data_objects))
    out["psf_fwhm_max_abs_diff"] = psf_fwhm_max_abs_diff(psf_catalog)
    for key, value in out.items():
        if value is None and key != "psf_fwhm_max_abs_diff":
            _warn(f"realism metric {key} is null: no pixels or objects to compare")
    return out


def number_counts(
    mags: np.ndarray, area_deg2: float, bins: np.ndarray = MAG_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and counts per deg^2 per magnitude."""
    if area_deg2 <= 0:
        raise InputError("area_deg2", f"must be positive, got {area_deg2}")
    counts, edges = np.histogram(mags, bins=bins)
    return 0.5 * (edges[1:] + edges[:-1]), counts / area_deg2 / np.diff(edges)


def area_deg2(masked: np.ndarray, pixscale_arcsec: float) -> float:
    """Sky area of the unmasked pixels."""
    n = np.count_nonzero(~np.asarray(masked, bool))
    return float(n * (pixscale_arcsec / 3600.0) ** 2)


# ---------------------------------------------------------------- closure

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


def median_rel_err(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Median of ``(estimate - truth) / truth`` where the truth is positive."""
    estimate, truth = _same_shape(estimate, truth)
    ok = (truth > 0) & np.isfinite(truth) & np.isfinite(estimate)
    if not ok.any():
        raise InputError("closure", "no pixel with a positive true value")
    return float(np.median(estimate[ok] / truth[ok].astype(np.float64) - 1.0))


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


def _read(path: Path, dataset: str) -> np.ndarray:
    return read_dataset(path, dataset)


def _sysmaps_closure(truth: Path, run: RunFolder) -> dict:
    est, true = run.sysmaps, truth / "sysmaps.h5"
    return {
        "expt_map_max_abs_diff": max_abs_diff(
            _read(est, "map_expt"), _read(true, "map_expt")
        ),
        "pointings_mismatch_pixels": mismatch_pixels(
            _read(est, "map_pointings"), _read(true, "map_pointings")
        ),
        # Stage 01 measures the noise of the image, i.e. after ufig's Lanczos
        # resampling: compare with the realised rms, not the rms put into ufig.
        "bsig_median_rel_err": median_rel_err(
            _read(est, "map_bsig"), _read(true, "map_rms_realised")
        ),
    }


def _mask_closure(truth: Path, run: RunFolder) -> dict:
    est, true = _read(run.mask, "mask"), _read(truth / "mask.h5", "mask")
    return {"mask_mismatch_pixels": mismatch_pixels(est, true)}


def _star_closure(truth: Path, run: RunFolder) -> dict:
    from hscsim_utils.stages.source_extraction import read_catalog

    stars = _read(truth / "stars.h5", "data")
    true_mask = _read(truth / "mask.h5", "mask")
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


def _psf_closure(truth: Path, run: RunFolder) -> dict:
    return psf_closure(
        _read(run.psf_model, "grid_psf"), _read(truth / "psf_model.h5", "grid_psf")
    )


_CLOSURE_STEPS = (
    (("expt_map_max_abs_diff", "pointings_mismatch_pixels", "bsig_median_rel_err"),
     _sysmaps_closure),
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
    for keys, step in _CLOSURE_STEPS:
        try:
            out.update(step(truth, run))
        except (OSError, KeyError, ValueError) as err:
            _warn(f"closure metrics {list(keys)} are null: {err}")
    return out


# ---------------------------------------------------------------- inputs


@dataclass
class QualityInputs:
    """Simulation and data of one tile, ready for the comparisons."""

    label: str
    sim_image: np.ndarray
    sim_segmentation: np.ndarray
    sim_catalog: np.ndarray
    data_image: np.ndarray
    data_segmentation: np.ndarray
    data_catalog: np.ndarray
    masked: np.ndarray
    pixscale: float
    psf_catalog: np.ndarray | None = None
    simulation: Path | None = None  # the simulation's folder

    def background(self) -> tuple[np.ndarray, np.ndarray]:
        """Background pixels of simulation and data."""
        return (
            background_pixels(self.sim_image, self.sim_segmentation, self.masked),
            background_pixels(self.data_image, self.data_segmentation, self.masked),
        )

    def objects(self) -> tuple[np.ndarray, np.ndarray]:
        """Selected objects of simulation and data (same cuts)."""
        sim = self.sim_catalog[object_selection(self.sim_catalog, self.masked)]
        data = self.data_catalog[object_selection(self.data_catalog, self.masked)]
        return sim, data

    def realism(self, seed: int = 0) -> dict[str, float | None]:
        """The ``realism`` metrics (see :func:`compute_realism`)."""
        sim_bkg, data_bkg = self.background()
        sim_obj, data_obj = self.objects()
        return compute_realism(sim_bkg, data_bkg, sim_obj, data_obj,
                               self.psf_catalog, seed)  # fmt: skip


def read_pixel_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Pixels flagged in stage 02's ufig mask (any bit set)."""
    mask = read_dataset(path, "mask", "not found; run stage 02 (masks) first")
    if mask.shape != tuple(shape):
        raise InputError(path, f"mask shape {mask.shape} is not the image's {shape}")
    return mask != 0


def read_segmentation(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """SEGMENTATION check-image of the data (stage 03, FITS)."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "not found; run stage 03 (source extraction) first")
    seg = np.asarray(fits.getdata(path))
    if seg.shape != tuple(shape):
        raise InputError(path, f"shape {seg.shape} is not the image's {shape}")
    return seg


def load_inputs(
    tile: TileSpec, run: RunFolder, simulation: str | os.PathLike | None = None
) -> QualityInputs:
    """Read the data (calexp, stage 02/03 products) and the simulation in the
    folder ``simulation`` (default: stage 06's ``sim_baseline``)."""
    from hscsim_utils.hsc.files import read_calexp
    from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
    from hscsim_utils.stages import simulate
    from hscsim_utils.stages.source_extraction import read_catalog

    folder = Path(simulation) if simulation is not None else run.sim_baseline
    sim = simulate.load_simulation(folder)
    images = sim.load_images()
    catalogs = sim.load_catalogs()
    calexp = read_calexp(tile.calexp, tile.band)
    shape = calexp.shape
    if images["image"].shape != shape:
        raise InputError(sim.image_path, f"shape {images['image'].shape} is not "
                         f"the calexp's {shape}")  # fmt: skip
    psf_cat = None
    if sim.psf_catalog_path is not None:
        from cosmic_toolbox import arraytools as at

        psf_cat = at.load_hdf_cols(str(sim.psf_catalog_path))
    masked = read_pixel_mask(run.mask, shape) | ~np.isfinite(calexp.image)
    return QualityInputs(
        label=tile.label,
        sim_image=images["image"],
        sim_segmentation=images["segmentation"],
        sim_catalog=catalogs["sextractor"],
        data_image=calexp.image,
        data_segmentation=read_segmentation(run.sextractor_seg, shape),
        data_catalog=read_catalog(run.sextractor_cat),
        masked=masked,
        pixscale=float(sim.parameters.get("pixscale", PIXEL_SCALE_ARCSEC)),
        psf_catalog=psf_cat,
        simulation=folder,
    )


def described_realism(
    tile: TileSpec, run: RunFolder, inputs: QualityInputs, seed: int = 0
) -> dict:
    """The realism metrics of ``inputs`` as a block of ``metrics.json``: which
    simulation (relative to the run folder) against which data (DEMO or REAL)."""
    if inputs.simulation is None:
        raise ValueError("the inputs do not say which simulation they hold")
    return realism_block(run.root, inputs.simulation, tile.is_demo,
                         inputs.realism(seed))  # fmt: skip


# ---------------------------------------------------------------- metrics.json


def check_schema(section: Mapping[str, object], keys: tuple[str, ...]) -> None:
    """Every key present, every value a finite number or None."""
    missing = [k for k in keys if k not in section]
    if missing:
        raise InputError("metrics", f"missing keys {missing}")
    for key in keys:
        value = section[key]
        ok = value is None or (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and np.isfinite(value)
        )
        if not ok:
            raise InputError("metrics", f"{key} must be a finite number or null")


def write_metrics(
    run: RunFolder,
    realism: Mapping[str, object],
    closure: Mapping[str, float | None] | None = None,
) -> dict:
    """Write the stage's section of ``metrics.json`` whole (after checking the
    schema): ``realism`` (a block of :func:`described_realism`) and ``closure``
    (left out when None). Returns the file's contents."""
    check_schema(realism, REALISM_KEYS)
    missing = [k for k in ("simulation", "data") if k not in realism]
    if missing:
        raise InputError("metrics", f"realism block lacks {missing}")
    section: dict[str, object] = {"realism": dict(realism)}
    if closure is not None:
        check_schema(closure, CLOSURE_KEYS)
        section["closure"] = dict(closure)
    return write_section(run.metrics, STAGE.name, section)


# ---------------------------------------------------------------- the stage


@dataclass
class Products:
    """What stage 07 compared and found (its metrics section is written)."""

    inputs: QualityInputs  # images, catalogues and masks (for the figures)
    realism: dict  # the simulation against the data, with what both are
    closure: dict | None  # DEMO tile: every stage's product against the truth
    simulation: str  # the simulation's folder, relative to the run folder

    @property
    def area_deg2(self) -> float:
        """Unmasked sky area."""
        return area_deg2(self.inputs.masked, self.inputs.pixscale)

    def metric_lines(self) -> list[str]:
        """``block key = value`` lines of the numbers written to metrics.json."""
        blocks = {"realism": self.realism, "closure": self.closure or {}}
        return [
            f"{name:>8s} {key:>26s} = {value}"
            for name, block in blocks.items()
            for key, value in block.items()
        ]


def run(tile: TileSpec, run: RunFolder, params: Params) -> Products:
    """Stage 07: realism of the simulation against the data and, for a DEMO
    tile, closure of every stage against the truth; writes section ``quality``
    of ``metrics.json``."""
    folder = simulation_folder(run, params.simulation)
    inputs = load_inputs(tile, run, folder)
    realism = described_realism(tile, run, inputs)
    closure = compute_closure(tile, run) if tile.is_demo else None
    write_metrics(run, realism, closure)
    return Products(inputs, realism, closure, relative_path(run.root, folder))
