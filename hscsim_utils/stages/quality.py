"""Stage 07: first quality assessment of the simulation against the data.

The patch is split into a tuning and a scoring half by a checkerboard of
256-pixel blocks (:mod:`hscsim_utils.numerics.halves`). Stages 08 and 09 fit on
the tuning half; every realism number here is computed on the scoring half
only (``"half": "scoring"`` in the block), so a fine-tuned simulation is scored
on pixels and objects its tuning never saw.

Realism (any tile): background pixels (segmentation 0, not masked) and detected
objects (``FLAGS == 0``, not on a masked pixel, finite measurements) of the
simulation and of the data are compared with the same cuts, on the scoring
half. The statistics, their formulas and their noise floors are those of
:mod:`hscsim_utils.numerics.realism_stats`:

- ``bkg_std_ratio``: robust standard deviation (1.4826 MAD) of the background
  pixels, simulation over data; ``bkg_ks``: two-sample Kolmogorov-Smirnov
  statistic of those pixel values (at most ``MAX_KS_PIXELS`` drawn from each
  with a seeded generator); ``bkg_autocorr``: largest difference of the
  background noise's autocorrelation at lags of 1-3 pixels along x and y;
- ``mag_auto_ks``, ``flux_radius_ks``, ``ellipticity_ks``: KS statistics of the
  detected objects' ``MAG_AUTO``, ``FLUX_RADIUS`` and ``ELLIPTICITY``;
  ``n_detect_ratio``: number of such objects, simulation over data;
  ``number_counts_chi2``: Poisson chi^2 per degree of freedom of the counts in
  0.5 mag bins; ``size_mag_chi2``: chi^2 per degree of freedom of the median
  ``FLUX_RADIUS`` per 0.5 mag bin;
- ``psf_fwhm_max_abs_diff``: the largest ``|psf_fwhm_ipt - psf_fwhm|`` (PSF model
  measured on the simulation minus the PSF put in, in pixels) over the stars
  of the scoring half that entered that model. It needs the simulation's PSF
  catalogue, which stage 06 writes only when it measures the simulation's PSF
  (the CNN, or the direct estimator on request); otherwise it is null.

The realism block holds these numbers under their names (the first six and the
last as before) and, in ``statistics``, every statistic with its noise floor
(the same statistic between two halves of the data), its threshold and a
``significant`` flag (:func:`hscsim_utils.numerics.realism_stats.assess`).

Truth (:func:`truth_diagnostics`): the detections matched one-to-one within 3
pixels to the true objects (:mod:`hscsim_utils.numerics.truth_matching`):
completeness, purity, ``MAG_AUTO`` minus true magnitude and ``FLUX_RADIUS``
over true half-light radius per magnitude bin, for ``FLAGS == 0`` and for all
detections, on the scoring half: for the simulation (ufig's intrinsic
catalogues ``*_ucat.gal.cat``, ``*_ucat.star.cat`` in its folder) and, on a
DEMO tile, for the data (``galaxies.h5``, ``stars.h5`` in ``tile.truth_dir``).
With both, ``mag_offset_chi2`` compares the median ``MAG_AUTO - mag`` per true
magnitude bin of simulation and data (a zero-point error shows there first) and
``mag_offset_shift`` gives the signed mean difference of those medians (which
way the simulation's photometry is off; a chi^2 cannot tell, and misses an error
that moves a biased simulation to the other side of the data).

Redshifts (:func:`redshift_block`): n(z) of the simulation's detected galaxies
(the objects realism counts, whole patch; matched to GalSBI's galaxies by ufig)
for ``MAG_AUTO`` below 23, 24 and 25, with bootstrap errors
(:mod:`hscsim_utils.numerics.redshift_distribution`). The data have no
redshifts: this describes the simulation and is not a realism number.

Every band (tile of several bands, :func:`band_realism`): the realism block of
each band but the detection band, from its band run, as ``bands.<band>``.

Colours (tile of several bands, :mod:`hscsim_utils.stages.quality_colours`):
per colour of neighbouring bands the KS distance and median shift of the
simulation against the data on the scoring half, with floors, as block
``colours``.

Closure (DEMO tile only): each stage's product compared with the truth the demo
builder wrote beside the tile; see
:func:`hscsim_utils.stages.closure.compute_closure`.

Every metric is a number or null (``None``) when its inputs are missing or too
few; nulls come with a warning saying why. The stage's section ``quality`` of
``metrics.json`` holds the blocks ``realism`` (saying which simulation it
describes, whether the data are DEMO or REAL, and the half), ``truth``,
``redshifts``, ``colours`` and ``bands`` (several bands) and, for a DEMO tile,
``closure``; it is written whole on every run.

Entry point: :func:`run`. The stage's figures are in
:mod:`hscsim_utils.stages.quality_plots`; stage 09 uses :func:`load_inputs`,
:meth:`QualityInputs.background` and :func:`described_realism` on its own
simulations.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import (
    CLOSURE_KEYS,
    REALISM_KEYS,
    read_section,
    realism_block,
    relative_path,
    write_section,
)
from hscsim_utils.numerics import halves
from hscsim_utils.numerics import realism_stats as rs
from hscsim_utils.numerics import truth_matching as tm
from hscsim_utils.numerics.realism_stats import (  # noqa: F401 (the stage's API)
    MAD_TO_STD,
    MAX_KS_PIXELS,
    NO_MEASUREMENT,
    ks_statistic,
    ratio,
    robust_std,
    subsample,
)
from hscsim_utils.numerics.redshift_distribution import detected_nz
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import registry
from hscsim_utils.stages.closure import compute_closure
from hscsim_utils.stages.masks import masked_at, read_pixel_mask
from hscsim_utils.stages.quality_colours import (
    BandSide,
    ColourComparison,
    colour_comparison,
)

STAGE = registry.spec("quality")
#: The half every realism number is computed on (stages 08 and 09 tune on the other).
SCORING = halves.SCORING
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


# ---------------------------------------------------------------- selections


def background_mask(
    image: np.ndarray,
    segmentation: np.ndarray,
    masked: np.ndarray | None = None,
    half: str | None = None,
) -> np.ndarray:
    """True on finite pixels outside every detection (segmentation 0), not
    masked, in ``half`` (``"tuning"``/``"scoring"``; None: anywhere)."""
    image = np.asarray(image)
    if np.shape(segmentation) != image.shape:
        raise InputError("segmentation", f"shape {np.shape(segmentation)} is not "
                         f"the image's {image.shape}")  # fmt: skip
    keep = (np.asarray(segmentation) == 0) & np.isfinite(image)
    if masked is not None:
        keep &= ~np.asarray(masked, bool)
    if half is not None:
        keep &= halves.half_mask(image.shape, half)
    return keep


def background_pixels(
    image: np.ndarray,
    segmentation: np.ndarray,
    masked: np.ndarray | None = None,
    half: str | None = None,
) -> np.ndarray:
    """Values of the pixels of :func:`background_mask`."""
    image = np.asarray(image)
    return image[background_mask(image, segmentation, masked, half)]


def in_half(cat: np.ndarray, shape: tuple[int, int], half: str) -> np.ndarray:
    """True for the rows of a SExtractor catalogue whose centre (``XWIN_IMAGE``,
    ``YWIN_IMAGE``, 1-based) lies in ``half`` of an image of ``shape``."""
    names = cat.dtype.names or ()
    if "XWIN_IMAGE" not in names or "YWIN_IMAGE" not in names:
        raise InputError("catalogue", "lacks XWIN_IMAGE or YWIN_IMAGE")
    return halves.in_half(cat["XWIN_IMAGE"], cat["YWIN_IMAGE"], shape, half)


def object_selection(
    cat: np.ndarray, masked: np.ndarray | None = None, flags0: bool = True
) -> np.ndarray:
    """Objects with ``FLAGS == 0`` (unless ``flags0`` is False), finite
    measurements, off masked pixels."""
    names = cat.dtype.names or ()
    missing = [c for c in ("FLAGS", *OBJECT_COLUMNS) if c not in names]
    if missing:
        raise InputError("catalogue", f"lacks columns {missing}")
    keep = cat["FLAGS"] == 0 if flags0 else np.ones(len(cat), bool)
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
    """The ``realism`` numbers of two whole samples, without halves or noise
    floors (the stage itself uses :meth:`QualityInputs.realism`).

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


def realism_values(
    assessed: Mapping[str, Mapping], psf_catalog: np.ndarray | None = None
) -> dict:
    """The realism block's numbers: every key of ``REALISM_KEYS`` (the value of
    its statistic; ``psf_fwhm_max_abs_diff`` from ``psf_catalog``), the half
    they describe and, in ``statistics``, every statistic with its floor."""
    out: dict = {}
    for key in REALISM_KEYS:
        if key == "psf_fwhm_max_abs_diff":
            out[key] = psf_fwhm_max_abs_diff(psf_catalog)
        else:
            out[key] = assessed[key]["value"]
            if out[key] is None:
                _warn(f"realism metric {key} is null: no pixels or objects to compare")
    return out | {"half": SCORING, "statistics": dict(assessed)}


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


# ---------------------------------------------------------------- inputs


@dataclass
class RealismReference:
    """The data's side of every realism comparison: its background pixels,
    objects and unmasked area tagged by cell of the checkerboard, and the noise
    floor of every statistic (two halves of the data against each other).
    Computed once per tile and shared by the simulations compared with it."""

    data: rs.ImageSample
    floors: dict[str, rs.Floor]


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
    sim_truth: np.ndarray | None = None  # ufig's true objects (true_objects table)
    data_truth: np.ndarray | None = None  # the DEMO tile's true objects
    _reference: RealismReference | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.data_image.shape)

    def data_side(self) -> dict[str, Any]:
        """The data fields (for :func:`load_inputs`' ``data``)."""
        names = ("data_image", "data_segmentation", "data_catalog", "masked",
                 "data_truth")  # fmt: skip
        return {name: getattr(self, name) for name in names}

    def background(self, half: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Background pixels of simulation and data (in ``half``; None: all)."""
        return self.sim_background(half), self.data_background(half)

    def sim_background(self, half: str | None = None) -> np.ndarray:
        """Background pixels of the simulation (in ``half``; None: all)."""
        return background_pixels(self.sim_image, self.sim_segmentation, self.masked,
                                 half)  # fmt: skip

    def data_background(self, half: str | None = None) -> np.ndarray:
        """Background pixels of the data (in ``half``; None: all)."""
        return background_pixels(self.data_image, self.data_segmentation, self.masked,
                                 half)  # fmt: skip

    def objects(self, half: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Selected objects of simulation and data (same cuts; in ``half``)."""
        out = []
        for cat in (self.sim_catalog, self.data_catalog):
            keep = object_selection(cat, self.masked)
            if half is not None and len(cat):
                keep &= in_half(cat, self.shape, half)
            out.append(cat[keep])
        return out[0], out[1]

    def image_sample(self, which: str) -> rs.ImageSample:
        """Background pixels, selected objects and unmasked pixels of the
        ``"simulation"`` or the ``"data"``, tagged by cell of the checkerboard."""
        if which == "simulation":
            image, seg, cat = self.sim_image, self.sim_segmentation, self.sim_catalog
        elif which == "data":
            image, seg, cat = self.data_image, self.data_segmentation, self.data_catalog
        else:
            raise ValueError(f"which must be 'simulation' or 'data', not {which!r}")
        objects = cat[object_selection(cat, self.masked)]
        return rs.image_sample(
            image, background_mask(image, seg, self.masked), ~self.masked,
            objects, objects["XWIN_IMAGE"], objects["YWIN_IMAGE"],
        )  # fmt: skip

    def reference(self, floors: dict[str, rs.Floor] | None = None) -> RealismReference:
        """The data's :class:`RealismReference` (computed on first use); ``floors``:
        the data's floors as computed before (:func:`stage07_floors`)."""
        if self._reference is None:
            data = self.image_sample("data")
            if floors is None:
                floors = rs.data_floor(data)
            self._reference = RealismReference(data, floors)
        return self._reference

    def realism(self, seed: int = 0, reference: RealismReference | None = None) -> dict:
        """The realism numbers on the scoring half (:func:`realism_values`).

        ``reference``: the data's sample and floors, when already computed for
        another simulation of the same tile.
        """
        if reference is None:
            reference = self.reference()
        else:
            self._reference = reference
        sim = self.image_sample("simulation").half(SCORING)
        stats = rs.statistics(sim, reference.data.half(SCORING), seed)
        psf_cat = self.psf_catalog
        if psf_cat is not None and len(psf_cat):
            psf_cat = psf_cat[in_half(psf_cat, self.shape, SCORING)]
        return realism_values(rs.assess_all(stats, reference.floors), psf_cat)

    def truth(self) -> dict | None:
        """:func:`truth_diagnostics` of these inputs (None without any truth)."""
        return truth_diagnostics(self)


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
    tile: TileSpec,
    run: RunFolder,
    simulation: str | os.PathLike | None = None,
    data: Mapping[str, Any] | None = None,
    reference: RealismReference | None = None,
) -> QualityInputs:
    """Read the data (calexp, stage 02/03 products) and the simulation in the
    folder ``simulation`` (default: stage 06's ``sim_baseline``), both of the
    band the tile is seen from (``run``: that band's run folder).

    ``data`` (:meth:`QualityInputs.data_side` of another simulation of the same
    tile and run) and ``reference`` (its :meth:`QualityInputs.reference`) are
    taken instead of being read and computed again: stage 09 compares four
    simulations with the same data.
    """
    from hscsim_utils.stages import simulate

    folder = Path(simulation) if simulation is not None else run.sim_baseline
    sim = simulate.load_simulation(folder)
    if tile.band != sim.settings.band:  # the tile seen from another simulated band
        sim = sim.for_band(tile.band)
    images = sim.load_images(("image", "segmentation"))
    catalogs = sim.load_catalogs()
    data = dict(data) if data is not None else _data_side(tile, run)
    shape = data["data_image"].shape
    if images["image"].shape != shape:
        raise InputError(sim.image_path, f"shape {images['image'].shape} is not "
                         f"the calexp's {shape}")  # fmt: skip
    psf_cat = None
    if sim.psf_catalog_path is not None:
        from cosmic_toolbox import arraytools as at

        psf_cat = at.load_hdf_cols(str(sim.psf_catalog_path))
    sim_truth = None
    if "ucat galaxies" in catalogs or "ucat stars" in catalogs:
        sim_truth = tm.true_objects(
            catalogs.get("ucat galaxies"), catalogs.get("ucat stars")
        )
    return QualityInputs(
        label=tile.label,
        sim_image=images["image"],
        sim_segmentation=images["segmentation"],
        sim_catalog=catalogs["sextractor"],
        pixscale=float(sim.parameters.get("pixscale", PIXEL_SCALE_ARCSEC)),
        psf_catalog=psf_cat,
        simulation=folder,
        sim_truth=sim_truth,
        _reference=reference,
        **data,
    )


def _data_side(tile: TileSpec, run: RunFolder) -> dict:
    """The data fields of :class:`QualityInputs`, read from the tile and run."""
    from hscsim_utils.hsc.files import read_calexp
    from hscsim_utils.stages.source_extraction import read_catalog

    calexp = read_calexp(tile.calexp, tile.band)
    shape = calexp.shape
    return {
        "data_image": calexp.image,
        "data_segmentation": read_segmentation(run.sextractor_seg, shape),
        "data_catalog": read_catalog(run.sextractor_cat),
        "masked": read_pixel_mask(run.mask, shape) | ~np.isfinite(calexp.image),
        "data_truth": read_demo_truth(tile),
    }


def read_demo_truth(tile: TileSpec) -> np.ndarray | None:
    """The true galaxies and stars of a DEMO tile (``galaxies.h5``, ``stars.h5``
    in ``tile.truth_dir``) as one :func:`~hscsim_utils.numerics.truth_matching.
    true_objects` table; None for a REAL tile or without truth files."""
    if not tile.is_demo or tile.truth_dir is None:
        return None
    truth = Path(tile.truth_dir)
    parts = {}
    for name in ("galaxies", "stars"):
        path = truth / f"{name}.h5"
        if path.is_file():
            parts[name] = read_dataset(path, "data")
    if not parts:
        _warn(f"no galaxies.h5 or stars.h5 in {truth}: no truth for the data")
        return None
    return tm.true_objects(
        parts.get("galaxies"), parts.get("stars"),
        pixel_scale_arcsec=PIXEL_SCALE_ARCSEC,
    )  # fmt: skip


def true_selection(truth: np.ndarray, masked: np.ndarray, half: str) -> np.ndarray:
    """True objects on the image, on an unmasked pixel, in ``half``."""
    ny, nx = masked.shape
    ix, iy = halves.pixel_index(truth["X"]), halves.pixel_index(truth["Y"])
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    keep[keep] = ~masked[iy[keep], ix[keep]]
    return keep & halves.in_half(truth["X"], truth["Y"], masked.shape, half)


def truth_diagnostics(inputs: QualityInputs, half: str = SCORING) -> dict | None:
    """Detections matched to the true objects, for the simulation and (DEMO)
    the data, in ``half``; None when neither has a truth.

    Detections that count: measured (finite ``MAG_AUTO`` below 90, finite
    ``FLUX_RADIUS`` and ``ELLIPTICITY``), off masked pixels, centred in
    ``half``; true objects: on unmasked pixels in ``half``. With both truths,
    ``mag_offset_chi2`` is :func:`~hscsim_utils.numerics.realism_stats.
    median_relation` of ``MAG_AUTO - mag`` against ``mag`` (``FLAGS == 0``),
    simulation against data, with the data's tuning half against its scoring
    half as floor (significant beyond the 99% point of chi^2).
    """
    sides = {"simulation": (inputs.sim_catalog, inputs.sim_truth),
             "data": (inputs.data_catalog, inputs.data_truth)}  # fmt: skip
    if all(truth is None for _, truth in sides.values()):
        return None
    out: dict = {"half": half, "match_radius_px": tm.MATCH_RADIUS_PX}
    offsets = {}
    for name, (cat, truth) in sides.items():
        if truth is None:
            continue
        det = object_selection(cat, inputs.masked, flags0=False)
        if len(cat):
            det &= in_half(cat, inputs.shape, half)
        true = true_selection(truth, inputs.masked, half)
        out[name] = tm.diagnostics(cat, truth, det, true)
        offsets[name] = tm.mag_offsets(cat, truth, det, true)
    if len(offsets) == 2:
        other = halves.TUNING if half == SCORING else SCORING
        cat, truth = sides["data"]
        det = object_selection(cat, inputs.masked, flags0=False)
        det &= in_half(cat, inputs.shape, other) if len(cat) else det
        other_offsets = tm.mag_offsets(
            cat, truth, det, true_selection(truth, inputs.masked, other)
        )
        stat = rs.median_relation(*offsets["simulation"], *offsets["data"],
                                  bins=tm.MAG_BINS)  # fmt: skip
        floor = rs.median_relation(*other_offsets, *offsets["data"], bins=tm.MAG_BINS)
        out["mag_offset_chi2"] = rs.assess(
            stat, rs.Floor(floor.value, floor.value, None, 1)
        )
        out["mag_offset_shift"] = mag_offset_shift(
            offsets["simulation"], offsets["data"], other_offsets
        )
    return out


def mag_offset_shift(sim: tuple, data: tuple, data_other: tuple) -> dict:
    """The signed photometric offset of the simulation from the data
    (:func:`~hscsim_utils.numerics.realism_stats.median_shift` of ``MAG_AUTO -
    mag`` per true magnitude bin), assessed against a floor: the larger of its
    standard error and the shift between the data's two halves."""
    stat = rs.median_shift(*sim, *data, bins=tm.MAG_BINS)
    halves_shift = rs.median_shift(*data_other, *data, bins=tm.MAG_BINS)
    parts = [stat.detail.get("error"), halves_shift.deviation]
    parts = [p for p in parts if p is not None]
    floor = max(parts) if parts else None
    return rs.assess(stat, rs.Floor(floor, halves_shift.value, None, 1))


def described_realism(
    tile: TileSpec,
    run: RunFolder,
    inputs: QualityInputs,
    seed: int = 0,
) -> dict:
    """The realism metrics of ``inputs`` (scoring half) as a block of
    ``metrics.json``: which simulation (relative to the run folder) against
    which data (DEMO or REAL); a data reference ``inputs`` already hold (see
    :func:`load_inputs`) is used, not computed again."""
    if inputs.simulation is None:
        raise ValueError("the inputs do not say which simulation they hold")
    return realism_block(run.root, inputs.simulation, tile.is_demo,
                         inputs.realism(seed))  # fmt: skip


# ---------------------------------------------------------------- metrics.json


def stage07_realism(
    run: RunFolder, band: str | None = None, detection_band: str | None = None
) -> dict:
    """The realism block of the baseline simulation as stage 07 wrote it: that
    of the detection band (block ``realism``) unless ``band`` names another band
    (its block ``bands.<band>``, without its key ``band``)."""
    other = band is not None and band != detection_band
    try:
        section = read_section(run.metrics, STAGE.name)
        block = section["bands"][band] if other else section["realism"]
        if not isinstance(block, Mapping) or "statistics" not in block:
            raise KeyError("statistics")
    except (KeyError, TypeError):
        which = f" in band {band}" if other else ""
        raise InputError(
            run.metrics,
            f"has no realism block of stage 07{which}, or one of an older "
            "version: run stage 07 (quality) first",
        ) from None
    return {key: value for key, value in block.items() if key != "band"}


def stage07_floors(
    run: RunFolder, band: str | None = None, detection_band: str | None = None
) -> dict[str, rs.Floor]:
    """The data's noise floors as stage 07 computed and wrote them (the data
    and its halvings do not depend on the simulation): stage 09 scores its
    simulations against the same floors without the ~7 s of computing them.
    Those of the detection band (block ``realism``) unless ``band`` names
    another band (its block ``bands.<band>``)."""
    block = stage07_realism(run, band, detection_band)
    try:
        return rs.recorded_floors(block["statistics"])
    except (KeyError, TypeError):
        other = band is not None and band != detection_band
        which = f" in band {band}" if other else ""
        raise InputError(
            run.metrics,
            f"has no noise floors of stage 07{which}, or floors of an older "
            "version: run stage 07 (quality) first",
        ) from None


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


def redshift_block(inputs: QualityInputs, band: str, simulation: str) -> dict | None:
    """n(z) of the simulation's detected galaxies (:func:`detected_nz` of the
    objects realism counts, whole patch) as a block of ``metrics.json``, naming
    the ``simulation`` folder; None (with a warning) when its catalogue lacks
    ufig's matched ``z``."""
    cat = inputs.sim_catalog
    if not {"star_gal", "z"} <= set(cat.dtype.names or ()):
        _warn("the simulation's catalogue has no matched z: no n(z)")
        return None
    selected = cat[object_selection(cat, inputs.masked)]
    return {
        "simulation": simulation,
        "magnitude": f"MAG_AUTO, {band} band",
        "selection": "FLAGS == 0, unmasked, whole patch",
        **detected_nz(selected),
    }


def band_realism(
    tile: TileSpec, run: RunFolder, folder: Path, inputs: QualityInputs
) -> tuple[dict | None, dict[str, BandSide]]:
    """The realism block of every band but the detection band (tiles of several
    bands): simulation against data in that band, from its band run (its
    calexp, mask and forced-photometry catalogue; detections and segmentation
    are the detection band's in data and simulation alike), with the same
    statistics, halves and floors as the detection band's block; and every
    band's masked pixels and catalogues as read for it (``inputs``: the
    detection band's), for the colours. None and no bands on a tile of one band,
    or (with a warning) when the simulation in ``folder`` lacks a band of the
    tile."""
    from hscsim_utils.stages import simulate

    if len(tile.bands) < 2:
        return None, {}
    simulated = simulate.load_simulation(folder).settings.bands
    absent = [b for b in tile.bands if b not in simulated]
    if absent:
        _warn(f"the simulation in {folder} lacks the bands {absent}: the "
              "detection band only")  # fmt: skip
        return None, {}
    blocks, sides = {}, {tile.band: BandSide.of(inputs)}
    for band, band_run in run.band_runs(tile.bands, tile.band).items():
        if band != tile.band:
            band_inputs = load_inputs(tile.for_band(band), band_run, folder)
            blocks[band] = {"band": band, **described_realism(tile, run, band_inputs)}
            sides[band] = BandSide.of(band_inputs)
    return blocks, sides


def write_metrics(
    run: RunFolder,
    realism: Mapping[str, object],
    closure: Mapping[str, float | None] | None = None,
    truth: Mapping[str, object] | None = None,
    redshifts: Mapping[str, object] | None = None,
    colours: Mapping[str, object] | None = None,
    bands: Mapping[str, Mapping[str, object]] | None = None,
) -> dict:
    """Write the stage's section of ``metrics.json`` whole (after checking the
    schema): ``realism`` (a block of :func:`described_realism`), ``truth``
    (:func:`truth_diagnostics`), ``redshifts`` (:func:`redshift_block`),
    ``colours`` (:func:`~hscsim_utils.stages.quality_colours.colour_comparison`),
    ``bands`` (:func:`band_realism`) and ``closure``, each left out when None.
    Returns the file's contents."""
    check_schema(realism, REALISM_KEYS)
    missing = [k for k in ("simulation", "data") if k not in realism]
    if missing:
        raise InputError("metrics", f"realism block lacks {missing}")
    section: dict[str, object] = {"realism": dict(realism)}
    if truth is not None:
        section["truth"] = dict(truth)
    if redshifts is not None:
        section["redshifts"] = dict(redshifts)
    if colours is not None:
        section["colours"] = dict(colours)
    if bands is not None:
        for block in bands.values():
            check_schema(block, REALISM_KEYS)
        section["bands"] = {band: dict(block) for band, block in bands.items()}
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
    truth: dict | None = None  # detections against the true objects
    redshifts: dict | None = None  # n(z) of the simulation's detected galaxies
    #: Several bands: colours of simulation and data (``colours.block`` in
    #: metrics.json).
    colours: ColourComparison | None = None
    #: Several bands: the realism block of every other band (``bands``).
    bands: dict | None = None

    @property
    def area_deg2(self) -> float:
        """Unmasked sky area of the scoring half."""
        masked = self.inputs.masked | ~halves.half_mask(self.inputs.shape, SCORING)
        return area_deg2(masked, self.inputs.pixscale)

    def statistics_table(self) -> str:
        """Statistic, value, floor, threshold, significant (scoring half)."""
        return rs.table(self.realism["statistics"])

    def band_tables(self) -> dict[str, str]:
        """:meth:`statistics_table` of every other band (several bands)."""
        return {band: rs.table(block["statistics"])
                for band, block in (self.bands or {}).items()}  # fmt: skip

    def colour_table(self) -> str:
        """The colour statistics like :meth:`statistics_table` (several bands)."""
        if self.colours is None:
            return "one band: no colours"
        return rs.table(self.colours.block["statistics"])

    def truth_table(self, ranges: tuple[str, ...] = ("22-24", "24-25", "26-27")) -> str:
        """Completeness, purity and ``MAG_AUTO - mag`` of simulation and data
        over magnitude ranges (``FLAGS == 0`` and all detections)."""
        return truth_table(self.truth, ranges)

    def metric_lines(self) -> list[str]:
        """``block key = value`` lines of the numbers written to metrics.json
        (the statistics' details are in :meth:`statistics_table`)."""
        blocks = {"realism": self.realism, "closure": self.closure or {}}
        return [
            f"{name:>8s} {key:>26s} = {value}"
            for name, block in blocks.items()
            for key, value in block.items()
            if key != "statistics"
        ]


def truth_table(truth: Mapping | None, ranges: tuple[str, ...]) -> str:
    """:meth:`Products.truth_table` of a ``truth`` block."""
    if not truth:
        return "no true catalogue for the simulation or the data"

    def fmt(v, spec=".3f") -> str:
        return format(v, spec) if isinstance(v, int | float) else "-"

    lines = [
        f"{'':10s} {'selection':9s} {'mag':>6s} {'n_true':>7s} {'complete':>9s} "
        f"{'purity':>7s} {'dmag med':>9s} {'dmag nmad':>9s}"
    ]
    for side in ("simulation", "data"):
        if side not in truth:
            continue
        for selection in tm.SELECTIONS:
            for key in ranges:
                row = truth[side]["summary"][selection].get(key, {})
                lines.append(
                    f"{side:10s} {selection:9s} {key:>6s} "
                    f"{fmt(row.get('n_true'), 'd'):>7s} "
                    f"{fmt(row.get('completeness')):>9s} {fmt(row.get('purity')):>7s} "
                    f"{fmt(row.get('mag_offset_median'), '+.3f'):>9s} "
                    f"{fmt(row.get('mag_offset_nmad')):>9s}"
                )
    if "mag_offset_chi2" in truth:
        a = truth["mag_offset_chi2"]
        lines.append(
            f"MAG_AUTO - mag, simulation vs data: chi2/dof {fmt(a['value'])} "
            f"(dof {a.get('dof')}), floor {fmt(a['floor'])}, threshold "
            f"{fmt(a['threshold'])}, significant: {a['significant']}"
        )
    if "mag_offset_shift" in truth:
        a = truth["mag_offset_shift"]
        lines.append(
            f"MAG_AUTO - mag, simulation minus data: {fmt(a['value'], '+.4f')} mag, "
            f"floor {fmt(a['floor'])}, threshold {fmt(a['threshold'])}, "
            f"significant: {a['significant']}"
        )
    return "\n".join(lines)


def run(tile: TileSpec, run: RunFolder, params: Params) -> Products:
    """Stage 07: realism of the simulation against the data on the scoring
    half, detections against the true objects and, for a DEMO tile, closure of
    every stage against the truth; writes section ``quality`` of
    ``metrics.json``."""
    folder = simulation_folder(run, params.simulation)
    inputs = load_inputs(tile, run, folder)
    realism = described_realism(tile, run, inputs)
    truth = inputs.truth()
    simulation = relative_path(run.root, folder)
    redshifts = redshift_block(inputs, tile.band, simulation)
    bands, sides = band_realism(tile, run, folder, inputs)
    colours = colour_comparison(tile, run, folder, sides)
    closure = compute_closure(tile, run) if tile.is_demo else None
    write_metrics(run, realism, closure, truth, redshifts,
                  colours.block if colours else None, bands)  # fmt: skip
    return Products(inputs, realism, closure, simulation, truth, redshifts, colours,
                    bands)  # fmt: skip
