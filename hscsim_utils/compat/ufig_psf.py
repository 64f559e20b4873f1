"""Mends of defects in ufig 1.2.1's PSF estimation (``ufig.psf_estimation``).

Each defect is shown on ufig's own code by ``tests/test_ufig_psf_fixes.py``.
Files are relative to ``ufig/``.

1. Visit bitmaps lose bits. In ``psf_estimation/psf_utils.py``,
   ``get_position_weights`` hands each uint64 word of ``map_pointings`` to
   ``mask_utils.decimal_integer_to_binary(64, word, dtype_out=np.float64)``
   (``mask_utils.py``), which first converts the word to float64 (53-bit
   mantissa): once a visit index of 53 or more within a word is set, the word
   is rounded and low visits vanish or wrong ones appear. Mend:
   :func:`get_position_weights` takes the bits with integer shifts.
2. ``*_cnn`` columns in the wrong rows. In ``psf_estimation/save_model.py``,
   ``PSFSave._fill_catalog_output`` writes the estimates to the rows
   ``np.where(flags_gaia == 0)[0][flags_cnn == 0]``: indices into the
   Gaia-matched sub-catalogue used as rows of the full catalogue, right only if
   every object is a Gaia star. Mend: ``MendedPSFSave`` maps through both
   selections (Gaia match, then star cuts), see :func:`fill_catalog_output`.
3. ``FLAGS_STARS`` is never filled and cut stars enter the fit. In
   ``psf_estimation/save_model.py``, ``PSFSave._save_catalog_output`` adds
   ``FLAGS_STARS`` as zeros and ``_fill_catalog_output`` sets it only when there
   is no Gaia catalogue. ``psf_estimation/core.py``,
   ``PSFEstimationPipeline.create_psf_model``, passes every estimated star
   (``cnn_results["cat_cnn"]``) to ``PolynomialPSFModel.fit_model``
   (``psf_estimation/polynomial_fitting.py``), whose ``_select_fitting_stars``
   drops only NaN estimates: the FWHM, ellipticity and flexion cuts
   (``star_sample_selection_cnn.select_cnn_predictions`` -> ``flags_cnn``) are
   ignored. With ``fraction_validation_stars > 0`` (0.15 by default)
   ``PolynomialPSFModel._handle_validation_stars`` refits on ``cat_fit`` minus
   the validation stars, putting back the stars the sigma clipping removed.
   Mend: ``MendedPredictorPSF`` keeps its cut flags in ``cat_cnn["FLAGS_STARS"]``;
   ``MendedPolynomialPSFModel`` fits only unflagged stars and refits on the
   clipped sample; ``MendedPSFSave`` fills ``FLAGS_STARS`` with the bits of
   ``star_sample_selection_cnn`` (Gaia, selection cuts, estimator cuts,
   outlier, validation star).
4. The fine-tuning adjusts the wrong column. In ``psf_estimation/psf_utils.py``,
   ``adjust_psf_measurements`` (called by ``cnn_predictions.py``,
   ``CNNPredictorPSF._apply_corrections_and_cuts``) adjusts column ``name``
   when the catalogue has it, else ``name + "_cnn"``. A simulated catalogue
   carries the input ``psf_fwhm`` etc., so the adjustment meant for the
   measurement ``psf_fwhm_cnn`` silently changes the input column. Mend:
   :func:`apply_measurement_adjustment` adjusts exactly the per-star measured
   columns ``<name>_cnn`` (whatever estimator filled them).

:func:`mended_psf_estimation` installs the mends (and the PSF estimator to use in
place of the CNN) for the duration of one ``PSFEstimationPipeline`` run; the
mended classes come from :func:`mended_components`. Two changes there are for
speed only: the model file receives ``map_pointings`` as HDF5 copies its chunks
(ufig recompresses every sysmap with gzip 9), and the map is read once per file
(:class:`PointingsCache`) instead of once per step, its LZF chunks decoded on the
tile's threads (:func:`hscsim_utils.hdf5_lzf.read_array`). :func:`import_psf_estimation`
imports ufig's PSF package without TensorFlow unless the CNN is actually used.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np

from hscsim_utils.compat import check_version
from hscsim_utils.errors import InputError
from hscsim_utils.hdf5_lzf import read_array

check_version("ufig", "1.2.1", __name__)

ERR_VAL = 999.0
BITS_PER_WORD = 64
MAX_WORDS = 5
_CNN_UTIL = "ufig.psf_estimation.cnn_util"


# --- importing ufig.psf_estimation without TensorFlow ----------------------------


def import_psf_estimation() -> ModuleType:
    """Import ``ufig.psf_estimation`` with its TensorFlow module loaded lazily.

    ``ufig.psf_estimation`` imports ``cnn_util`` and thereby TensorFlow (seconds,
    ~1 GB). Unless it was imported already, ``cnn_util`` is first registered as a
    stand-in module that loads the real one on first attribute access, i.e.
    only when the CNN is actually used.
    """
    if "ufig.psf_estimation" not in sys.modules and _CNN_UTIL not in sys.modules:
        ufig_dir = Path(importlib.util.find_spec("ufig").origin).parent
        path = ufig_dir / "psf_estimation" / "cnn_util.py"
        spec = importlib.util.spec_from_file_location(_CNN_UTIL, path)
        stand_in = _LazyModule(_CNN_UTIL)
        stand_in.__spec__, stand_in.__file__ = spec, str(path)
        sys.modules[_CNN_UTIL] = stand_in
    import ufig.psf_estimation

    return ufig.psf_estimation


class _LazyModule(ModuleType):
    """Module whose code runs when one of its attributes is first needed."""

    def __getattr__(self, name: str):
        real = self.__dict__.get("_real")
        if real is None:
            spec = self.__spec__
            real = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(real)
            self.__dict__["_real"] = real
            sys.modules[spec.name] = real
        return getattr(real, name)


# --- defect 1: visit bitmaps -----------------------------------------------------


def n_pointing_words(n_pointings: int) -> int:
    """Number of 64-bit words ufig uses for ``n_pointings`` visits (1 to 5)."""
    return int(min(MAX_WORDS, max(1, -(-int(n_pointings) // BITS_PER_WORD))))


def visit_bits(words: np.ndarray) -> np.ndarray:
    """(n, 64) 0/1 float64 array of the bits of uint64 ``words`` (bit k = visit k)."""
    words = np.asarray(words).astype(np.uint64)
    shifts = np.arange(BITS_PER_WORD, dtype=np.uint64)
    bits = (words[:, None] >> shifts[None, :]) & np.uint64(1)
    return bits.astype(np.float64)


class PointingsCache:
    """``map_pointings`` arrays read during one pipeline run, read once each.

    ufig reads the full map (hundreds of MB for a patch) in the data preparation
    and again for every set of predictions; the model file holds a copy of the
    same map (registered with :meth:`alias`).
    """

    def __init__(self) -> None:
        self.maps: dict[tuple[str, str], np.ndarray] = {}

    @staticmethod
    def key(dataset) -> tuple[str, str]:
        return str(Path(dataset.file.filename).resolve()), dataset.name

    def get(self, dataset) -> np.ndarray:
        key = self.key(dataset)
        if key not in self.maps:
            self.maps[key] = read_array(dataset)
        return self.maps[key]

    def alias(self, copy, original) -> None:
        """Let dataset ``copy`` share the array read for ``original``."""
        if self.key(original) in self.maps:
            self.maps[self.key(copy)] = self.maps[self.key(original)]


_CACHE: PointingsCache | None = None  # set while mended_psf_estimation runs


def read_pointings(dataset) -> np.ndarray:
    """The whole map of an h5py ``map_pointings`` dataset (cached during a run)."""
    return _CACHE.get(dataset) if _CACHE is not None else read_array(dataset)


def get_position_weights(x, y, pointings_maps) -> np.ndarray:
    """Exact replacement of ``psf_utils.get_position_weights``.

    Same inputs (pixel x, y; ``map_pointings`` dataset with attribute
    ``n_pointings``) and output (n, 64 * words) weights normalised per object;
    the bits come from integer arithmetic, so every visit index is kept.
    """
    size_y, size_x = pointings_maps.shape
    xi = np.clip(np.asarray(x).astype(np.int32), 0, size_x - 1)
    yi = np.clip(np.asarray(y).astype(np.int32), 0, size_y - 1)
    n_words = n_pointing_words(pointings_maps.attrs["n_pointings"])
    if len(xi) == 0:
        return np.zeros((0, BITS_PER_WORD * n_words))
    if _CACHE is not None:
        words = _CACHE.get(pointings_maps)[yi, xi]
    else:
        y0, y1, x0, x1 = yi.min(), yi.max() + 1, xi.min(), xi.max() + 1
        words = np.asarray(pointings_maps[y0:y1, x0:x1])[yi - y0, xi - x0]
    weights = np.concatenate(
        [visit_bits(words[f"bit{w + 1}"]) for w in range(n_words)], axis=1
    )
    norm = weights.sum(axis=1, keepdims=True)
    np.divide(weights, norm, out=weights, where=norm > 0)
    return weights


# --- defect 4: measurement adjustment --------------------------------------------


def measured_column(name: str) -> str:
    """Catalogue column of the per-star measurement of PSF parameter ``name``."""
    return name if name.endswith("_cnn") else f"{name}_cnn"


def apply_measurement_adjustment(
    cat: np.ndarray, adjustment: Mapping[str, tuple[float, float]]
) -> np.ndarray:
    """Return a copy of ``cat`` with the measured PSF columns adjusted linearly.

    For each ``name: (intercept, slope)`` the column ``<name>_cnn`` (the per-star
    estimate, e.g. ``psf_fwhm_cnn`` for ``psf_fwhm``) becomes ``intercept +
    slope * value``. Input columns (``psf_fwhm``), interpolated columns
    (``*_ipt``) and rows holding ufig's error value 999 or NaN are left alone.
    """
    out = cat.copy()
    names = cat.dtype.names or ()
    for name, coeffs in adjustment.items():
        col = measured_column(name)
        if col not in names:
            raise InputError(
                "psf_measurement_adjustment",
                f"{name!r}: catalogue has no measured column {col!r}",
            )
        try:
            intercept, slope = (float(v) for v in coeffs)
        except (TypeError, ValueError):
            raise InputError(
                "psf_measurement_adjustment",
                f"{name!r}: expected (intercept, slope), got {coeffs!r}",
            ) from None
        values = out[col]
        ok = np.isfinite(values) & (values != ERR_VAL)
        values[ok] = intercept + slope * values[ok]
    return out


# --- selection record and the too-few-stars error ---------------------------------


class TooFewStarsError(InputError):
    """Too few stars left for the PSF model; the message lists every cut."""


@dataclass
class SelectionRecord:
    """What the mended pipeline saw: flags per step and the estimator's results."""

    source: str = "SExtractor catalogue"
    min_stars: int = 10
    n_catalogue: int = 0
    flags_gaia: np.ndarray | None = None  # selection cuts of Gaia-matched stars
    flags_cut: np.ndarray | None = None  # estimator cuts of the selected stars
    n_finite: int | None = None
    n_fit: int | None = None
    n_clipped: int | None = None
    extras: dict = field(default_factory=dict, repr=False)
    progress: object = field(default=None, repr=False)  # a tqdm bar over STEPS

    STEPS = ("stars selected", "stars measured", "model fitted", "files written")

    def advance(self, step: str) -> None:
        """Mark one of :attr:`STEPS` as done on the progress bar."""
        if self.progress is not None:
            self.progress.set_postfix_str(step)
            self.progress.update()

    def counts(self) -> list[tuple[str, int]]:
        """Stars left after each cut, in the order ufig applies them."""
        from ufig.psf_estimation import star_sample_selection_cnn as sel

        out = [("catalogue objects", self.n_catalogue)]
        if self.flags_gaia is None:
            return out
        out.append(("matched to Gaia", len(self.flags_gaia)))
        out += _cumulative(self.flags_gaia, _selection_bits(sel))
        if self.flags_cut is not None:
            out += _cumulative(self.flags_cut, _estimator_bits(sel))
        if self.n_finite is not None:
            out.append(("finite estimates", self.n_finite))
        if self.n_clipped is not None:
            out.append(("after sigma clipping", self.n_clipped))
        return out

    def error(self, n_left: int) -> TooFewStarsError:
        steps = "; ".join(f"{label}: {n}" for label, n in self.counts())
        return TooFewStarsError(
            self.source,
            f"too few stars for the PSF model: {n_left} left, at least "
            f"{self.min_stars} needed. Stars left after each cut: {steps}",
        )


def _selection_bits(sel) -> list[tuple[str, int]]:
    return [
        ("magnitude range", sel.FLAGBIT_MAG),
        ("number of exposures", sel.FLAGBIT_N_EXP),
        ("SExtractor flags", sel.FLAGBIT_SOURCEEXTRACTOR_FLAGS),
        ("finite position weights", sel.FLAGBIT_POSITION_WEIGHTS),
        ("stamp inside image", sel.FLAGBIT_IMAGE_BOUNDARY),
        ("coadd boundaries", sel.FLAGBIT_COADD_BOUNDARY),
        ("peak at stamp centre", sel.FLAGBIT_MAX_FLUX_CENTERED),
        ("moments", sel.FLAGBIT_MOM_ERROR),
        ("sysmap delta weight", sel.FLAGBIT_SYSMAP_DELTA_WEIGHT),
        ("no nearby bright star", sel.FLAGBIT_NEARBY_BRIGHT_STAR),
        ("survey mask", sel.FLAGBIT_SURVEY_MASK),
    ]


def _estimator_bits(sel) -> list[tuple[str, int]]:
    return [
        ("beta cut", sel.FLAGBIT_BETA),
        ("FWHM cut", sel.FLAGBIT_FWHM),
        ("ellipticity cut", sel.FLAGBIT_ELLIPTICITY),
        ("flexion cut", sel.FLAGBIT_FLEXION),
        ("kurtosis cut", sel.FLAGBIT_KURTOSIS),
    ]


def _cumulative(flags: np.ndarray, bits: list[tuple[str, int]]) -> list:
    out, mask = [], 0
    for label, bit in bits:
        mask |= 1 << bit
        out.append((label, int(np.count_nonzero((flags.astype(np.int64) & mask) == 0))))
    return out


# --- the mended pipeline components ----------------------------------------------


@functools.cache
def mended_components() -> SimpleNamespace:
    """The mended subclasses of ufig's pipeline components (built on first use).

    ``MendedDataPreparator(config, record)``, ``MendedPredictorPSF(config,
    predictor, record)``, ``MendedPolynomialPSFModel(config, record)``,
    ``MendedPSFSave(config, record)``.
    """
    import_psf_estimation()
    return SimpleNamespace(
        MendedDataPreparator=_mended_data_preparator(),
        MendedPredictorPSF=_mended_predictor(),
        MendedPolynomialPSFModel=_mended_polynomial_model(),
        MendedPSFSave=_mended_save(),
    )


def _mended_data_preparator():
    from ufig.psf_estimation.data_preparation import PSFDataPreparator

    class MendedDataPreparator(PSFDataPreparator):
        """Records the selection flags; stops early when too few stars are left."""

        def __init__(self, config, record=None):
            super().__init__(config)
            self.record = record if record is not None else SelectionRecord()

        def _get_exposure_info(self, cat_gaia, filepath_sys):
            """ufig's step, with the map read once (see PointingsCache)."""
            import h5py

            with h5py.File(filepath_sys, mode="r") as fh5:
                dataset = fh5["map_pointings"]
                weights = get_position_weights(
                    cat_gaia["XWIN_IMAGE"] - 0.5, cat_gaia["YWIN_IMAGE"] - 0.5, dataset
                )
                return weights, read_pointings(dataset)

        def prepare_data(self, **kwargs):
            data = super().prepare_data(**kwargs)
            self.record.n_catalogue = len(data["cat_original"])
            self.record.flags_gaia = np.asarray(data["flags_gaia"])
            n_left = int(np.count_nonzero(data["flags_gaia"] == 0))
            if n_left < self.record.min_stars:
                raise self.record.error(n_left)
            self.record.advance("stars selected")
            return data

    return MendedDataPreparator


def _mended_predictor():
    from ufig.psf_estimation.cnn_predictions import CNNPredictorPSF

    class MendedPredictorPSF(CNNPredictorPSF):
        """Uses the given estimator (else the CNN); mends defects 3 and 4."""

        def __init__(self, config, predictor=None, record=None):
            super().__init__(config)
            self.predictor = predictor
            self.record = record if record is not None else SelectionRecord()

        def _load_cnn_model(self, filepath_cnn):
            if self.predictor is None:
                super()._load_cnn_model(filepath_cnn)
            else:
                self.cnn_pred = self.predictor

        def _apply_corrections_and_cuts(self, cat_cnn, flags_cnn):
            adjustment = self.config.get("psf_measurement_adjustment")
            if adjustment:
                cat_cnn = apply_measurement_adjustment(cat_cnn, adjustment)
            config = self.config
            self.config = {**config, "psf_measurement_adjustment": None}
            try:
                return super()._apply_corrections_and_cuts(cat_cnn, flags_cnn)
            finally:
                self.config = config

        def predict_psf_parameters(self, cat_gaia, cube_gaia, filepath_cnn):
            from cosmic_toolbox import arraytools as at

            res = super().predict_psf_parameters(cat_gaia, cube_gaia, filepath_cnn)
            cat = at.ensure_cols(res["cat_cnn"], names=["FLAGS_STARS:i4"])
            cat["FLAGS_STARS"] = res["flags_cnn"]
            res["cat_cnn"] = cat
            self.record.flags_cut = np.asarray(res["flags_cnn"])
            self.record.extras["cube"] = res["cube_cnn"]
            self.record.extras["cat_cnn"] = cat
            fit = getattr(self.cnn_pred, "last_fit", None)
            if fit is not None:
                self.record.extras["fit"] = fit
            self.record.advance("stars measured")
            return res

    return MendedPredictorPSF


def _mended_polynomial_model():
    from ufig.array_util import set_flag_bit
    from ufig.psf_estimation import psf_utils
    from ufig.psf_estimation import star_sample_selection_cnn as sel
    from ufig.psf_estimation.polynomial_fitting import PolynomialPSFModel

    class MendedPolynomialPSFModel(PolynomialPSFModel):
        """Fits only stars that passed every cut; keeps the clipping (defect 3)."""

        def __init__(self, config, record=None):
            super().__init__(config)
            self.record = record if record is not None else SelectionRecord()

        def fit_model(self, cat, position_weights):
            results = super().fit_model(cat, position_weights)
            cat_fit, flags_fit = results["cat_fit"], results["flags_fit"]
            outlier = ~np.isin(cat_fit["NUMBER"], results["cat_clip"]["NUMBER"])
            set_flag_bit(flags=flags_fit, select=outlier, field=sel.FLAGBIT_OUTLIER)
            results["select_fit"] = self._select
            self.record.n_fit = len(cat_fit)
            self.record.n_clipped = len(results["cat_clip"])
            self.record.extras["model_results"] = results
            self.record.advance("model fitted")
            return results

        def _select_fitting_stars(self, cat_cnn, position_weights):
            select = np.ones(len(cat_cnn), dtype=bool)
            for col in cat_cnn.dtype.names:
                if col.endswith("_cnn") and np.issubdtype(cat_cnn[col].dtype, float):
                    select &= np.isfinite(cat_cnn[col])
            if "FLAGS_STARS" in cat_cnn.dtype.names:
                select &= cat_cnn["FLAGS_STARS"] == 0
            n_left = int(np.count_nonzero(select))
            self.record.n_finite = n_left
            if n_left < max(self.record.min_stars, 1):
                raise self.record.error(n_left)
            self._select = select
            flags_fit = np.zeros(n_left, dtype=np.int32)
            return cat_cnn[select], flags_fit, position_weights[select]

        def _handle_validation_stars(
            self, cat_fit, cat_clip, flags_fit, col_names_fit, position_weights_fit,
            settings_fit,
        ):  # fmt: skip
            fraction = self.config.get("fraction_validation_stars", 0)
            index_val = psf_utils.select_validation_stars(len(cat_clip), fraction)
            is_val = np.isin(cat_fit["NUMBER"], cat_clip["NUMBER"][index_val])
            set_flag_bit(
                flags=flags_fit, select=is_val, field=sel.FLAGBIT_VALIDATION_STAR
            )
            kept = np.isin(cat_fit["NUMBER"], cat_clip["NUMBER"]) & ~is_val
            regressor = self._fit_single_model(
                cat_fit[kept], col_names_fit, position_weights_fit[kept], settings_fit
            )
            self.record.extras["validation"] = self._test_validation_stars(
                regressor, cat_fit[is_val], col_names_fit,
                position_weights_fit[is_val], settings_fit,
            )  # fmt: skip
            return regressor

    return MendedPolynomialPSFModel


def _mended_save():
    from ufig.psf_estimation.save_model import PSFSave

    class MendedPSFSave(PSFSave):
        """Writes estimates to the right rows and fills FLAGS_STARS (defects 2, 3)."""

        def __init__(self, config, record=None):
            super().__init__(config)
            self.record = record if record is not None else SelectionRecord()

        def save_psf_model(self, *args, **kwargs):
            super().save_psf_model(*args, **kwargs)
            self.record.advance("files written")

        def _fill_catalog_output(
            self, cat_save_psf, processed_data, cnn_results, model_results, predictions
        ):
            fill_catalog_output(
                cat_save_psf, processed_data, cnn_results, model_results, predictions
            )

        def _copy_systematics_maps(self, fh5_out, filepath_sys):
            """Copy only ``map_pointings`` (all the model reads), chunks as they are.

            ufig recompresses every sysmap with gzip level 9 (tens of seconds
            for a full patch); HDF5's object copy moves the compressed chunks.
            """
            import h5py

            with h5py.File(filepath_sys, mode="r") as fh5_sys:
                fh5_sys.copy("map_pointings", fh5_out)
                if _CACHE is not None:
                    _CACHE.alias(fh5_out["map_pointings"], fh5_sys["map_pointings"])

    return MendedPSFSave


def fill_catalog_output(
    cat_save_psf: np.ndarray,
    processed_data: dict,
    cnn_results: dict,
    model_results: dict,
    predictions: dict,
) -> None:
    """Fill ufig's output catalogue in place (mended ``_fill_catalog_output``).

    Rows: ``flags_all == 0`` marks the Gaia-matched objects (= ``cat_gaia``),
    ``flags_gaia == 0`` those of them given to the estimator (= ``cat_cnn``).
    ``*_cnn`` columns hold the estimates of stars passing the estimator cuts
    (999 elsewhere); ``FLAGS_STARS`` collects every flag bit of each object.
    """
    flags_all = np.asarray(processed_data["flags_all"])
    flags_gaia = np.asarray(processed_data["flags_gaia"])
    cat_gaia = processed_data["cat_gaia"]
    cat_cnn, flags_cnn = cnn_results["cat_cnn"], np.asarray(cnn_results["flags_cnn"])
    rows_gaia = np.flatnonzero(flags_all == 0)
    rows_est = rows_gaia[flags_gaia == 0]
    if len(rows_gaia) != len(cat_gaia) or len(rows_est) != len(cat_cnn):
        raise ValueError("flags and sub-catalogues of the PSF pipeline disagree")
    for col in model_results["col_names_ipt"]:
        if col in predictions["cat_psf"].dtype.names:
            cat_save_psf[col] = predictions["cat_psf"][col]
    passed = flags_cnn == 0
    for col in model_results["col_names_fit"]:
        if col.endswith("_cnn") and col in cat_cnn.dtype.names:
            cat_save_psf[col] = ERR_VAL
            cat_save_psf[col][rows_est[passed]] = cat_cnn[col][passed]
    for col in ("gaia_ra_match", "gaia_dec_match", "gaia_id_match"):
        cat_save_psf[col][rows_gaia] = cat_gaia[col]
    flags = flags_all.astype(np.int64)
    flags[rows_gaia] |= flags_gaia.astype(np.int64)
    flags[rows_est] |= flags_cnn.astype(np.int64)
    if "select_fit" in model_results:
        rows_fit = rows_est[model_results["select_fit"]]
        flags[rows_fit] |= np.asarray(model_results["flags_fit"], np.int64)
    cat_save_psf["FLAGS_STARS"] = flags.astype(cat_save_psf["FLAGS_STARS"].dtype)
    cat_save_psf["N_EXPOSURES"] = predictions.get("n_exposures", 1)


_PATCHES = (
    ("ufig.psf_estimation.data_preparation", "PSFDataPreparator"),
    ("ufig.psf_estimation.cnn_predictions", "CNNPredictorPSF"),
    ("ufig.psf_estimation.polynomial_fitting", "PolynomialPSFModel"),
    ("ufig.psf_estimation.save_model", "PSFSave"),
    ("ufig.psf_estimation.psf_utils", "get_position_weights"),
)


@contextlib.contextmanager
def mended_psf_estimation(
    predictor=None,
    min_stars: int = 10,
    source: str = "SExtractor catalogue",
    polynomial_model=None,
) -> Iterator[SelectionRecord]:
    """Run ufig's ``PSFEstimationPipeline`` with the mends and ``predictor``.

    ``predictor`` replaces the CNN (any object with ``config["param_names"]`` and
    ``__call__(cube, batchsize)``); ``None`` keeps the CNN. Yields the
    :class:`SelectionRecord` of the run; a run with fewer than ``min_stars``
    usable stars raises :class:`TooFewStarsError` naming ``source``.
    ``polynomial_model``, a subclass of ``MendedPolynomialPSFModel``, replaces
    it for the interpolation (e.g. with other regularisation).
    """
    parts = mended_components()
    record = SelectionRecord(source=str(source), min_stars=int(min_stars))
    replacements = (
        functools.partial(parts.MendedDataPreparator, record=record),
        functools.partial(parts.MendedPredictorPSF, predictor=predictor, record=record),
        functools.partial(
            polynomial_model or parts.MendedPolynomialPSFModel, record=record
        ),
        functools.partial(parts.MendedPSFSave, record=record),
        get_position_weights,
    )
    global _CACHE
    from tqdm import tqdm

    record.progress = tqdm(total=len(record.STEPS), desc="PSF estimation", unit="step")
    saved = []
    try:
        for (module_name, attr), new in zip(_PATCHES, replacements, strict=True):
            module = sys.modules[module_name]
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, new)
        _CACHE = PointingsCache()
        yield record
    finally:
        _CACHE = None
        record.progress.close()
        record.progress = None
        for module, attr, old in reversed(saved):
            setattr(module, attr, old)
