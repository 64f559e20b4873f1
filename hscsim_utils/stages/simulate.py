"""Stage 06: simulate the patch with GalSBI (galaxies) and UFig (image, SExtractor).

The static settings live in ``params/galsbi_hsc_config.py``; this module adds
everything that belongs to one patch as keyword arguments, which override the
config: the WCS, zero point, gain, exposure time and saturation of the
patch's ``skymapinfo``, the input files of its run folder (systematic maps,
masks, stars, PSF model), the output names, the galaxy model and its posterior
sample, and the seed. So one config serves any number of patches.

UFig writes its outputs itself. The run goes into a temporary folder beside
its output folder (stage 06's product ``sim_baseline``, ``RUN/sim/baseline/``)
that replaces it only when the simulation finished, with a ``simulation.json``
manifest; a crash leaves the previous result in place. Outputs (``<prefix>`` is
``sim_<posterior index>_<band>``):
``_image.fits``, ``_se.cat`` (SExtractor, matched to the input),
``_se_seg.h5``, ``_se_bkg.h5``, ``_ucat.gal.cat`` and ``_ucat.star.cat``
(intrinsic catalogues), ``gaia_ufig.h5`` (the Gaia stars as given to ufig)
and, when the simulation's PSF is measured, ``psf_catalog_sim.cat``.

Reads the tile's ``band``, ``galaxy_model``, ``posterior_index`` and ``seed``,
the config ``params/galsbi_hsc_config.py`` and the products ``skymapinfo_npy``,
``sysmaps``, ``mask``, ``overlap``, ``besancon``, ``gaia`` and ``psf_model``;
writes the product ``sim_baseline``. Entry point: :func:`run`; the figure (the
simulation beside the tile's ``calexp``) is in
:mod:`hscsim_utils.stages.simulate_plots`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import sys
import time
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm.auto import tqdm

from hscsim_utils.atomic import atomic_dir, write_json
from hscsim_utils.bands import HSC_BANDS
from hscsim_utils.calltimes import floor_call
from hscsim_utils.compat.galsbi import import_galsbi, mended_galsbi_class
from hscsim_utils.compat.ufig_gaia import shift_gaia_for_ufig
from hscsim_utils.errors import InputError, ToolError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.numerics.psf_model import PSF_BETAS, peak_pixel_fraction
from hscsim_utils.population_cache import CACHE_PARAMETER
from hscsim_utils.runfolder import REPO_ROOT, RunFolder, read_dataset
from hscsim_utils.stages import registry
from hscsim_utils.stages.skymapinfo import tutorial_gain

STAGE = registry.spec("simulate")
DEFAULT_CONFIG = REPO_ROOT / "params" / "galsbi_hsc_config.py"
FILE_PREFIX = "sim"
MANIFEST = "simulation.json"
#: The images of a simulated band (:meth:`Simulation.load_images`).
IMAGE_KEYS = ("image", "segmentation", "background")
PSF_CATALOG = "psf_catalog_sim.cat"
PSF_MODEL = "psf_model_sim.h5"
PSF_MEASUREMENTS = ("auto", "cnn", "direct", "none")
#: ufig's conversions of magnitudes into photons (``exp_time_type``): the mean
#: gain and number of exposures, the exposure-time map (the tutorial's), or the
#: gain map (mended: :mod:`hscsim_utils.compat.ufig_counts`).
COUNTS = ("constant", "variable", "gain_map")
#: Photon noise of the sources: at the tutorial's effective gain (mean gain x
#: mean number of exposures, GalSBI's published forward model) or, for stars,
#: at the gain stage 01 measured from the VARIANCE plane
#: (:mod:`hscsim_utils.compat.ufig_photon_noise`).
PHOTON_NOISE = ("tutorial", "measured")
#: With ``photon_noise="measured"`` every star is rendered on pixels.
ALL_STARS_ON_PIXELS_MAG = 99.0
GAIA_UFIG = "gaia_ufig.h5"
STAR_WING_FRACTION = 0.1  # pixel-rendered star profiles go down to this x noise
#: Stars that saturate everywhere in the patch are rendered on pixels
#: (:func:`pixel_rendering_magnitude`): the widest PSF taken as the band's seeing
#: times this factor (the DEMO's i-band PSF FWHM spans +-1% across the patch;
#: the factor leaves room for the larger spread of a real coadd).
SEEING_MARGIN = 1.25
#: Brightest magnitude of the stars ufig's PSF estimation selects (stages 05 and
#: 08: ``star_mag_range`` (18, 22) of ``ufig.psf_estimation``).
PSF_STAR_MAG_MIN = 18.0
SKYMAPINFO_FIELDS = ("pixscale", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "NAXIS1",
                     "NAXIS2")  # fmt: skip
BAND_FIELDS = ("magzero", "satur", "gain", "nexp", "exptime", "seeing")


@dataclass(frozen=True)
class Params:
    """Settings of stage 06: the parameters of its notebook."""

    galaxy_model: str = ""  # empty: the model of the tile file
    posterior_index: int = -1  # posterior sample; -1: the tile file's
    seed: int = -1  # random seed; -1: the tile file's
    measure_psf: str = "auto"  # PSF of the simulation: auto, cnn, direct or none
    counts: str = "variable"  # magnitudes to photons: constant, variable, gain_map
    photon_noise: str = "tutorial"  # tutorial, or measured (stars at stage 01's gain)

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> InputError:
            value = getattr(self, name)
            return InputError(f"{STAGE.name}.{name}", f"{allowed}, got {value!r}")

        if not isinstance(self.galaxy_model, str):
            raise bad("galaxy_model", "must be a model name such as 'Moser+24'")
        for name in ("posterior_index", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise bad(name, "must be a non-negative integer, or -1 for the tile's")
        if self.measure_psf not in PSF_MEASUREMENTS:
            raise bad("measure_psf", f"must be one of {', '.join(PSF_MEASUREMENTS)}")
        if self.counts not in COUNTS:
            raise bad("counts", f"must be one of {', '.join(COUNTS)}")
        if self.photon_noise not in PHOTON_NOISE:
            raise bad("photon_noise", f"must be one of {', '.join(PHOTON_NOISE)}")


@dataclass(frozen=True)
class SimulationSettings:
    """The choices that make one simulation of a patch.

    ``bands`` are the simulated bands, one galaxy population for all (``()``:
    ``band`` alone); ``band`` is the detection band of the forced photometry
    and the band whose files a :class:`Simulation` names.
    """

    galaxy_model: str
    posterior_index: int
    seed: int
    band: str
    bands: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bands = tuple(self.bands) or (self.band,)
        if self.band not in bands or len(set(bands)) != len(bands):
            raise InputError(
                "bands", f"{list(bands)} must be distinct and hold band {self.band!r}"
            )
        # ufig seeds each band's noise by its place in the list: one order
        order = {b: i for i, b in enumerate(HSC_BANDS)}
        bands = tuple(sorted(bands, key=lambda b: (order.get(b, len(order)), b)))
        object.__setattr__(self, "bands", bands)


# ---------------------------------------------------------------- config


def load_config(path: str | os.PathLike = DEFAULT_CONFIG) -> types.ModuleType:
    """Import the simulation config (its cosmo_torrent files are resolved here)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "simulation config not found")
    import_galsbi()  # the config imports galsbi: without PyTorch
    spec = importlib.util.spec_from_file_location(f"_hscsim_cfg_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError as err:  # a cosmo_torrent data set is missing
        raise InputError(path, str(err)) from None
    return module


def known_galaxy_models(config: types.ModuleType | str | os.PathLike) -> list[str]:
    """Galaxy models the config has a parametrisation for: the keys of its
    ``GALAXY_MODELS``. Given a path, they are read from the source without
    importing it (which would import galsbi and torch, seconds)."""
    if isinstance(config, types.ModuleType):
        return list(config.GALAXY_MODELS)
    import ast

    for node in ast.parse(Path(config).read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == "GALAXY_MODELS" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            return [ast.literal_eval(k) for k in node.value.keys if k is not None]
    raise InputError(config, "defines no GALAXY_MODELS dictionary")


def load_posterior(model: str) -> np.ndarray:
    """ABC posterior samples of ``model`` (cosmo_torrent cache, else download)."""
    import_galsbi()
    from galsbi import load

    try:
        return load.load_abc_posterior(model)
    except Exception as err:  # offline without the file, or a broken file
        raise ToolError(
            "galaxy_model: "
            f"the ABC posterior of {model} is not in the cosmo_torrent cache and "
            f"cannot be downloaded ({type(err).__name__}: {err}); run `hscsim data`; "
            f"models with a cached posterior: {_cached_models()}",
        ) from None


def _cached_models() -> list[str]:
    from hscsim_utils.data.provision import available_galaxy_models

    return available_galaxy_models()


def resolve_settings(
    tile: TileSpec,
    config: types.ModuleType,
    galaxy_model: str = "",
    posterior_index: int = -1,
    seed: int = -1,
    bands: tuple[str, ...] = (),
) -> SimulationSettings:
    """Model, posterior sample and seed: the arguments, else the tile's values.

    ``""`` and ``-1`` mean "take it from the tile file". ``bands`` are the
    simulated bands (``()``: the tile's band alone), detected in the tile's band.
    """
    model = galaxy_model or tile.galaxy_model
    known = known_galaxy_models(config)
    if model not in known:
        raise InputError("galaxy_model", f"unknown model {model!r}; known: {known}")
    index = int(posterior_index) if posterior_index != -1 else tile.posterior_index
    n_samples = len(load_posterior(model))
    if not 0 <= index < n_samples:
        raise InputError(
            "posterior_index",
            f"{index} is out of range: {model} has samples 0..{n_samples - 1}",
        )
    seed = int(seed) if seed != -1 else tile.seed
    if seed < 0:
        raise InputError("seed", f"must be a non-negative integer, got {seed}")
    return SimulationSettings(model, index, seed, tile.band, bands)


# ---------------------------------------------------------------- inputs


def read_skymapinfo(path: str | os.PathLike, band: str) -> dict[str, float]:
    """The patch record of stage 01 with the fields the simulation needs (and
    ``gain_eff_<band>``, the measured gain ``photon_noise`` uses, when present)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "not found; run stage 01 (sky information) first")
    try:
        rec = np.atleast_1d(np.load(path, allow_pickle=False))
    except (ValueError, OSError) as err:
        raise InputError(path, f"not a numpy record array ({err})") from None
    if rec.dtype.names is None or len(rec) < 1:
        raise InputError(path, "not a numpy record array")
    needed = SKYMAPINFO_FIELDS + tuple(f"{f}_{band}" for f in BAND_FIELDS)
    missing = [k for k in needed if k not in rec.dtype.names]
    if missing:
        raise InputError(path, f"missing fields {missing}")
    info = {k: float(rec[0][k]) for k in needed}
    bad = [k for k, v in info.items() if not np.isfinite(v)]
    positive = ("pixscale", "NAXIS1", "NAXIS2", f"satur_{band}", f"gain_{band}",
                f"nexp_{band}", f"exptime_{band}", f"seeing_{band}")  # fmt: skip
    bad += [k for k in positive if info[k] <= 0]
    if bad:
        raise InputError(path, f"invalid values in fields {sorted(set(bad))}")
    optional = f"gain_eff_{band}"  # stage 01's measured gain, NaN when it had none
    if optional in rec.dtype.names:
        info[optional] = float(rec[0][optional])
    return info


def star_noise_scale(
    info: Mapping[str, float], band: str, photon_noise: str, source: str | os.PathLike
) -> float:
    """Measured over tutorial effective gain (1 for ``photon_noise="tutorial"``):
    the factor by which stars' photon statistics are finer than ufig's. ``info``
    is :func:`read_skymapinfo`'s, read from ``source``."""
    if photon_noise not in PHOTON_NOISE:
        raise InputError("photon_noise", f"must be one of {PHOTON_NOISE}, "
                         f"got {photon_noise!r}")  # fmt: skip
    if photon_noise == "tutorial":
        return 1.0
    field = f"gain_eff_{band}"
    if field not in info:
        raise InputError(source, f"has no {field}; rerun stage 01 (sky information)")
    measured = info[field]
    if not np.isfinite(measured):
        raise InputError(source, f"{field} is NaN: the VARIANCE plane gave no gain; "
                         "use photon_noise 'tutorial'")  # fmt: skip
    tutorial = tutorial_gain(info, band)
    if measured < tutorial:
        warnings.warn(
            f"measured gain {measured:.4g} is below the tutorial's {tutorial:.4g}: "
            "stars keep ufig's photon noise",
            stacklevel=2,
        )
        return 1.0
    return measured / tutorial


def pixel_rendering_magnitude(
    info: Mapping[str, float], band: str, floor: float
) -> float:
    """Magnitude above which ufig renders the band's stars on pixels.

    Photon by photon, a star of magnitude m costs 10^(-0.4 (m - magzero)) x gain
    photons (~6e7 for i = 16 on the DEMO): the stars between 15 and 18 made 22 s
    of a 92 s i-band simulation. ufig's pixel integration draws the same
    per-pixel Poisson counts from the same Moffat components but without
    flexion (ufig's kurtosis is zero for this PSF), so it is used only for stars
    whose core saturates anywhere in the patch: brighter than the magnitude at
    which the brightest pixel reaches the band's saturation level with the
    broadest Moffat component (beta = 2) at ``SEEING_MARGIN`` x the band's
    seeing, centred on a pixel corner. Such stars are flagged saturated by
    SExtractor and enter no PSF fit; the result is also kept brighter than
    ``PSF_STAR_MAG_MIN`` and never fainter than ``floor`` (the config's
    ``mag_pixel_rendering_stars``). DEMO: i 17.9, g 17.5, r 17.7, z 16.7,
    y 16.3."""
    fwhm = SEEING_MARGIN * info[f"seeing_{band}"] / info["pixscale"]
    peak = peak_pixel_fraction(fwhm, min(PSF_BETAS))
    saturated = info[f"magzero_{band}"] - 2.5 * np.log10(info[f"satur_{band}"] / peak)
    return float(max(floor, min(saturated, PSF_STAR_MAG_MIN)))


def _check_datasets(
    path: Path, names: tuple[str, ...], shape: tuple[int, int] | None, stage: str
) -> None:
    if not path.is_file():
        raise InputError(path, f"not found; run stage {stage} first")
    try:
        with h5py.File(path, "r") as fh5:
            absent = [n for n in names if n not in fh5]
            if absent:
                raise InputError(path, f"has no datasets {absent}")
            if shape is None:
                return
            wrong = {n: fh5[n].shape for n in names if fh5[n].shape != shape}
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file ({err})") from None
    if wrong:
        raise InputError(path, f"shapes {wrong} differ from the patch's {shape}")


def background_noise(path: Path) -> float:
    """Median of the positive ``map_bsig`` of the sysmaps file (ADU)."""
    bsig = read_dataset(path, "map_bsig")
    positive = bsig[bsig > 0]
    if positive.size == 0:
        raise InputError(path, "map_bsig has no positive value")
    return float(np.median(positive))


def check_band_inputs(run: RunFolder, shape: tuple[int, int]) -> None:
    """One band's inputs (stages 01, 02, 05) exist and fit the patch."""
    _check_datasets(run.sysmaps, ("map_bsig", "map_expt"), shape, "01 (sysmaps)")
    _check_datasets(run.mask, ("mask",), shape, "02 (masks)")
    _check_datasets(run.overlap, ("img_mask",), shape, "02 (masks)")
    _check_datasets(run.psf_model, ("grid_psf",), None, "05 (PSF)")


def check_star_inputs(run: RunFolder) -> None:
    """The star catalogues of stage 04 exist."""
    _check_datasets(run.besancon, ("nside", "simulation_area", "healpix_list"),
                    None, "04 (stars)")  # fmt: skip
    _check_datasets(run.gaia, ("data",), None, "04 (stars)")


def sextractor_binary() -> str:
    """Full path of the SExtractor executable (``source-extractor`` or ``sex``)."""
    from hscsim_utils.stages.source_extraction import find_sextractor

    return find_sextractor()


@dataclass(frozen=True)
class BandInputs:
    """What the simulation reads of one band: stage 01's patch record
    (:func:`read_skymapinfo`) and the run folder holding the band's sysmaps,
    mask, overlap and PSF model (stages 01, 02 and 05)."""

    band: str
    run: RunFolder
    info: dict[str, float]


def read_band_inputs(band_runs: Mapping[str, RunFolder]) -> dict[str, BandInputs]:
    """Each band's inputs (stages 01, 02 and 05), checked: present, of the
    patch's shape, and on one pixel grid (HSC coadds of all bands share the
    tract's WCS)."""
    inputs = {}
    for band, run in band_runs.items():
        info = read_skymapinfo(run.skymapinfo_npy, band)
        check_band_inputs(run, (int(info["NAXIS2"]), int(info["NAXIS1"])))
        inputs[band] = BandInputs(band, run, info)
    first_band, first = next(iter(inputs.items()))
    for band, other in inputs.items():
        moved = [k for k in SKYMAPINFO_FIELDS if other.info[k] != first.info[k]]
        if moved:
            raise InputError(
                other.run.skymapinfo_npy,
                f"band {band}'s {moved} differ from band {first_band}'s: "
                "the bands of one simulation must share one pixel grid",
            )
    return inputs


def tile_parameters(
    bands: Mapping[str, BandInputs],
    shared: RunFolder,
    settings: SimulationSettings,
    model_settings: dict[str, Any],
    out_dir: Path,
    counts: str = "variable",
) -> dict[str, Any]:
    """Keyword arguments for GalSBI that make the config simulate this patch in
    ``settings.bands``, detected in ``settings.band``; ``bands`` holds each
    band's inputs, ``shared`` the run folder of the stars (stage 04);
    ``counts`` is ufig's conversion of magnitudes into photons (:data:`COUNTS`)."""
    if counts not in COUNTS:
        raise InputError("counts", f"must be one of {COUNTS}, got {counts!r}")
    missing = [b for b in settings.bands if b not in bands]
    if missing:
        raise InputError("bands", f"no inputs for bands {missing}")
    detection = bands[settings.band]
    info = detection.info
    per_band = {b: _band_parameters(bands[b]) for b in settings.bands}
    params = {
        "crpix_ra": info["CRPIX1"],
        "crpix_dec": info["CRPIX2"],
        "ra0": info["CRVAL1"],
        "dec0": info["CRVAL2"],
        "pixscale": info["pixscale"],
        "size_x": int(info["NAXIS1"]),
        "size_y": int(info["NAXIS2"]),
        "filters": list(settings.bands),
        # magnitude limits of the galaxies and stars apply in the detection band
        "reference_band": settings.band,
        "sextractor_forced_photo_detection_bands": [settings.band],
        **{
            key: {b: p[key] for b, p in per_band.items()}
            for key in per_band[settings.band]
        },
        "filepath_overlapblock": str(detection.run.overlap),
        "besancon_map_path": str(shared.besancon),
        # draw_stars places the Gaia stars from filepath_gaia (the shifted copy,
        # see ufig_gaia_file); single_band_setup then sets filepath_gaia from
        # this per-band entry, so the PSF estimation matches the true positions.
        "filepath_gaia": str(out_dir / GAIA_UFIG),
        "filepath_gaia_dict": {b: str(shared.gaia) for b in settings.bands},
        "filepath_psfmodel_output": str(out_dir / PSF_MODEL),
        "filepath_psfmodel_output_catalog": str(out_dir / PSF_CATALOG),
        "seed": settings.seed,
        # bright stars rendered on pixels: profiles out to 0.1 sigma of the
        # noise of the quietest band (one value for all bands)
        "render_stars_accuracy": STAR_WING_FRACTION
        * min(background_noise(bands[b].run.sysmaps) for b in settings.bands),
    }
    if counts == "constant":
        # round(Poisson(flux x gain x n_exp) / n_exp) photons with the mean n_exp
        params["n_exp_dict"] = {b: bands[b].info[f"nexp_{b}"] for b in settings.bands}
    params["exp_time_type"] = counts
    params.update(model_settings)
    return params


def _band_parameters(inputs: BandInputs) -> dict[str, Any]:
    """One band's value of every per-band (``<name>_dict``) parameter."""
    info, run, band = inputs.info, inputs.run, inputs.band
    return {
        "magzero_dict": info[f"magzero_{band}"],
        # Effective gain of the averaged coadd (electrons per coadd ADU), the
        # value SExtractor gets in stage 03.
        "gain_dict": tutorial_gain(info, band),
        # ufig's "variable" exposure mode counts exposures as map_expt // this;
        # its default (90 s, a DES exposure) does not fit HSC.
        "exposure_time_dict": info[f"exptime_{band}"] / info[f"nexp_{band}"],
        # Not in the tutorial's config, so ufig's default (a DES value) was used.
        "saturation_level_dict": info[f"satur_{band}"],
        # No constant level: a coadd is sky-subtracted, and the level measured on
        # it (skymapinfo bkg_mean) is the light of undetected galaxies, which
        # GalSBI renders itself (down to gals_mag_max). Adding it counts that
        # light twice (demo tile: background-pixel KS 0.063 instead of 0.004).
        # The tutorial passed bkg_mean in ADU where ufig expects electrons (it
        # is added before the division by the gain), i.e. almost nothing.
        "bkg_noise_amp_dict": 0.0,
        "filepath_sysmaps_dict": str(run.sysmaps),
        "filepath_psfmodel_input_dict": str(run.psf_model),
        "sextractor_mask_name_dict": str(run.mask),
    }


def ufig_gaia_file(gaia_path: Path, info: dict[str, float], out: Path) -> Path:
    """Copy of the Gaia table moved by half a pixel so ufig draws the stars in place
    (:mod:`hscsim_utils.compat.ufig_gaia`)."""
    from ufig.coordinate_util import tile_in_skycoords

    gaia = read_dataset(gaia_path, "data")
    wcs = tile_in_skycoords(pixscale=info["pixscale"], ra0=info["CRVAL1"],
                            dec0=info["CRVAL2"], crpix_ra=info["CRPIX1"],
                            crpix_dec=info["CRPIX2"])  # fmt: skip
    with h5py.File(out, "w") as fh5:
        fh5.create_dataset("data", data=shift_gaia_for_ufig(gaia, wcs))
    return out


# ---------------------------------------------------------------- running


def psf_measurement(choice: str, config: types.ModuleType, n_bands: int = 1) -> str:
    """Estimator of the simulation's PSF: ``"cnn"``, ``"direct"`` or ``"none"``.

    ``"auto"`` is the CNN when its weights are in the cache, else no measurement
    (the tutorial's chain). ``"direct"`` is stage 05's direct fit standing in for
    the CNN inside ufig's ``estimate_psf`` plugin. A simulation of ``n_bands``
    > 1 bands is not measured (``"auto"`` is ``"none"``).
    """
    if choice not in PSF_MEASUREMENTS:
        raise InputError("measure_psf", f"{choice!r} is not one of {PSF_MEASUREMENTS}")
    if n_bands > 1 and choice in ("cnn", "direct"):
        raise InputError(
            "measure_psf", f"{choice!r}: the PSF is measured on single-band runs only"
        )
    if choice == "auto":
        return "cnn" if config.filepath_cnn and n_bands == 1 else "none"
    if choice == "cnn" and not config.filepath_cnn:
        raise InputError(
            "measure_psf", "the PSF CNN weights are not cached; use 'direct' or 'none'"
        )
    return choice


def psf_measurement_context(
    kind: str, catalog: Path
) -> contextlib.AbstractContextManager:
    """Stage 05's mends of ufig's PSF estimation (and its estimator) for the run.

    The simulation's PSF model is a diagnostic, so any number of usable stars
    is accepted (stage 05 needs ``psf.MIN_STARS`` on the data); none at all
    still fails the run.
    """
    if kind == "none":
        return contextlib.nullcontext()
    from hscsim_utils.compat.ufig_psf import mended_psf_estimation
    from hscsim_utils.numerics.psf_direct import DirectPSFPredictor

    predictor = DirectPSFPredictor() if kind == "direct" else None
    return mended_psf_estimation(predictor, 1, source=catalog)


@dataclass
class Simulation:
    """A finished simulation in its folder and GalSBI's loaders for it."""

    directory: Path
    settings: SimulationSettings
    parameters: dict[str, Any] = field(default_factory=dict)
    wall_s: float | None = None

    def for_band(self, band: str) -> Simulation:
        """The same simulation seen from ``band``: its paths name that band's
        image, catalogue and segmentation map."""
        if band not in self.settings.bands:
            raise InputError(
                self.directory,
                f"has no band {band!r}; simulated bands: {list(self.settings.bands)}",
            )
        settings = dataclasses.replace(self.settings, band=band)
        return Simulation(self.directory, settings, self.parameters, self.wall_s)

    def _file(self, suffix: str) -> Path:
        s = self.settings
        return self.directory / f"{FILE_PREFIX}_{s.posterior_index}_{s.band}{suffix}"

    @property
    def image_path(self) -> Path:
        return self._file("_image.fits")

    @property
    def catalog_path(self) -> Path:
        return self._file("_se.cat")

    @property
    def segmentation_path(self) -> Path:
        return self._file("_se_seg.h5")

    def psf_file_name(self, name: str) -> str:
        """Name of a file of the PSF measured on this band of the simulation
        (``name``: :data:`PSF_MODEL` or :data:`PSF_CATALOG`): ``name`` itself in
        a simulation of one band, ``<stem>_<band><suffix>`` in one of several."""
        if len(self.settings.bands) < 2:
            return name
        path = Path(name)
        return f"{path.stem}_{self.settings.band}{path.suffix}"

    @property
    def psf_catalog_path(self) -> Path | None:
        """PSF catalogue measured on the simulation (None if not measured)."""
        path = self.directory / self.psf_file_name(PSF_CATALOG)
        return path if path.is_file() else None

    def load_images(self, keys: Sequence[str] = IMAGE_KEYS) -> dict[str, np.ndarray]:
        """Those of ``image``, ``segmentation`` and ``background`` of the band named
        in ``keys`` (default: all three), those present.

        The files and keys of GalSBI's ``load_images``, read without importing
        GalSBI (and with it PyTorch, ~2.5 s) in stages that only read. Each is a
        4200 x 4200 array on the full patch (the background map, 38 MB of gzip
        chunks, took 0.2-0.9 s to read); the realism checks read the image and
        the segmentation only.
        """
        from astropy.io import fits
        from cosmic_toolbox import arraytools as at

        unknown = set(keys) - set(IMAGE_KEYS)
        if unknown:
            raise ValueError(f"no image {sorted(unknown)}; there are {IMAGE_KEYS}")
        out = {}
        if "image" in keys and self.image_path.is_file():
            with fits.open(self.image_path) as hdul:
                out["image"] = hdul[0].data
        for key, suffix in (
            ("segmentation", "_se_seg.h5"),
            ("background", "_se_bkg.h5"),
        ):
            path = self._file(suffix)
            if key in keys and path.is_file():
                out[key] = at.load_hdf_cols(str(path))[key.upper()]
        return out

    def load_catalogs(self) -> dict[str, np.ndarray]:
        """``sextractor``, ``ucat galaxies``, ``ucat stars`` and ``ucat galaxies
        seds`` (those present: GalSBI's ``load_catalogs`` files and keys, without
        the SED catalogue of its SPS models)."""
        from cosmic_toolbox import arraytools as at

        files = {"ucat galaxies": self._file("_ucat.gal.cat"),
                 "ucat stars": self._file("_ucat.star.cat"),
                 "sextractor": self.catalog_path}  # fmt: skip
        seds = (
            self.directory
            / f"{FILE_PREFIX}_{self.settings.posterior_index}_ucat.gal.seds.cat"
        )
        files["ucat galaxies seds"] = seds
        return {key: at.load_hdf(str(path)) for key, path in files.items()
                if path.is_file()}  # fmt: skip


def _manifest(sim: Simulation, config_path: Path) -> dict:
    import galsbi
    import ufig

    return {
        "settings": asdict(sim.settings),
        "parameters": sim.parameters,
        "config": str(config_path),
        "wall_s": sim.wall_s,
        "versions": {"galsbi": galsbi.__version__, "ufig": ufig.__version__},
    }


def run_simulation(
    tile: TileSpec,
    run: RunFolder,
    galaxy_model: str = "",
    posterior_index: int = -1,
    seed: int = -1,
    out: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    measure_psf: str = "auto",
    config_path: str | os.PathLike = DEFAULT_CONFIG,
    verbosity: str = "warning",
    counts: str = "variable",
    photon_noise: str = "tutorial",
    band_runs: Mapping[str, RunFolder] | None = None,
) -> Simulation:
    """Simulate the patch into the folder ``out`` and return the result.

    ``out`` defaults to stage 06's product ``sim_baseline``; the fine-tuning
    stages simulate into folders of their own products.

    ``galaxy_model`` ("" = the tile's), ``posterior_index`` and ``seed`` (-1 =
    the tile's) choose the simulation; ``overrides`` replace any config value
    or per-patch parameter (e.g. another ``filepath_sysmaps_dict``);
    ``measure_psf`` is one of :data:`PSF_MEASUREMENTS` (see
    :func:`psf_measurement`); ``counts`` one of :data:`COUNTS`;
    ``photon_noise`` one of :data:`PHOTON_NOISE`.

    ``band_runs`` maps every band to simulate to the run folder of its
    per-band products (stages 01, 02, 05); the default is the tile's band in
    ``run``. All bands are drawn from one galaxy population in one GalSBI/UFig
    run and measured by SExtractor in dual-image mode, detected in the tile's
    band; ``run`` holds the stars (stage 04). With several bands the
    simulation's PSF is not measured and the photon noise is the tutorial's.
    """
    from hscsim_utils.compat.ufig_checkimages import fast_checkimages
    from hscsim_utils.compat.ufig_counts import unbiased_gain_map_counts
    from hscsim_utils.compat.ufig_flag_masks import fast_flag_masks
    from hscsim_utils.compat.ufig_numba import cache_compiled_functions
    from hscsim_utils.compat.ufig_photon_noise import pixel_star_noise
    from hscsim_utils.compat.ufig_psf import import_psf_estimation
    from hscsim_utils.compat.ufig_render import deterministic_threaded_rendering

    config_path = Path(config_path).resolve()
    steps = tqdm(total=3, desc="simulate", unit="step", file=sys.stdout)
    config = load_config(config_path)
    band_runs = dict(band_runs or {tile.band: run})
    settings = resolve_settings(
        tile, config, galaxy_model, posterior_index, seed, tuple(band_runs)
    )
    bands = read_band_inputs(band_runs)
    check_star_inputs(run)
    info = bands[settings.band].info
    source = bands[settings.band].run.skymapinfo_npy
    scale = star_noise_scale(info, settings.band, photon_noise, source)
    kind = psf_measurement(measure_psf, config, len(settings.bands))
    if photon_noise == "measured" and len(settings.bands) > 1:
        raise InputError("photon_noise", "'measured' needs a single band")
    fixed = {
        CACHE_PARAMETER: str(run.population_cache),
        "sextractor_binary": sextractor_binary(),
        "filepath_cnn": config.filepath_cnn if kind == "cnn" else None,
    }
    # ufig.plugins.add_psf imports ufig.psf_estimation, whose __init__ imports
    # TensorFlow (seconds, ~1 GB, and tf.disable_v2_behavior() for the whole
    # process); imported this way TensorFlow loads only if the CNN runs.
    import_psf_estimation()
    cache_compiled_functions()  # compiled once per machine, not per process
    steps.set_postfix_str("inputs checked")
    steps.update()
    out = Path(out) if out is not None else run.sim_baseline
    with atomic_dir(out) as tmp:
        params = tile_parameters(
            bands, run, settings, config.GALAXY_MODELS[settings.galaxy_model], tmp,
            counts,
        )  # fmt: skip
        params.update(fixed)
        params["mag_pixel_rendering_stars_dict"] = {
            b: ALL_STARS_ON_PIXELS_MAG
            if photon_noise == "measured"
            else pixel_rendering_magnitude(
                bands[b].info, b, config.mag_pixel_rendering_stars
            )
            for b in settings.bands
        }
        params.update(overrides or {})
        ufig_gaia_file(run.gaia, info, tmp / GAIA_UFIG)
        plugins = (
            config.PLUGINS_NOT_MEASURING_PSF
            if kind == "none"
            else config.PLUGINS_MEASURING_PSF
        )
        steps.set_postfix_str(f"GalSBI {settings.galaxy_model} + UFig")
        galsbi_class = mended_galsbi_class()  # imports GalSBI: not the floor
        start = time.perf_counter()
        # chdir: anything ufig writes to a relative path lands in the temp folder
        with (
            contextlib.chdir(tmp),
            deterministic_threaded_rendering((params["size_y"], params["size_x"])),
            unbiased_gain_map_counts(),
            fast_flag_masks(),
            fast_checkimages(),
            pixel_star_noise(scale)
            if photon_noise == "measured"
            else contextlib.nullcontext(),
            psf_measurement_context(kind, Simulation(tmp, settings).catalog_path),
            floor_call("simulation"),
        ):
            galsbi_class(settings.galaxy_model, verbosity=verbosity)(
                mode="config_file",
                config_file=str(config_path),
                model_index=settings.posterior_index,
                file_name=str(tmp / FILE_PREFIX),
                plugins=plugins,
                **params,
            )
        steps.update()
        params["measure_psf"] = kind
        params["photon_noise"] = photon_noise
        params["star_photon_noise_gain"] = params["gain_dict"][settings.band] * scale
        sim = Simulation(tmp, settings, _describe(params, tmp, out))
        sim.wall_s = round(time.perf_counter() - start, 2)
        if not sim.image_path.is_file() or not sim.catalog_path.is_file():
            raise ToolError(f"{config_path}: UFig finished without image or catalogue")
        write_json(tmp / MANIFEST, _manifest(sim, config_path))
    sim.directory = out
    steps.set_postfix_str(f"written to {out}")
    steps.update()
    steps.close()
    return sim


def _describe(params: dict[str, Any], tmp: Path, out: Path) -> dict[str, Any]:
    """The per-patch parameters as JSON values, with final instead of temp paths."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, np.ndarray | np.generic):
            return value.tolist()
        if isinstance(value, str):
            return value.replace(str(tmp), str(out))
        return value

    return {k: plain(v) for k, v in params.items()}


def load_simulation(folder: str | os.PathLike) -> Simulation:
    """The simulation :func:`run_simulation` wrote into ``folder``."""
    import json

    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(path, "no simulation here; run stage 06 (simulate) first")
    data = json.loads(path.read_text())
    return Simulation(
        folder,
        SimulationSettings(**data["settings"]),
        data.get("parameters", {}),
        data.get("wall_s"),
    )


def baseline_choices(run: RunFolder) -> dict[str, Any]:
    """The choices stage 06 made for ``sim_baseline`` (galaxy model, posterior
    sample, seed, counts, photon noise), as keyword arguments of
    :func:`run_simulation`: the fine-tuning stages simulate with the same."""
    sim = load_simulation(run.sim_baseline)
    s, p = sim.settings, sim.parameters
    return {
        "galaxy_model": s.galaxy_model, "posterior_index": s.posterior_index,
        "seed": s.seed, "counts": p.get("exp_time_type", "variable"),
        "photon_noise": p.get("photon_noise", "tutorial"),
    }  # fmt: skip


def run(tile: TileSpec, run: RunFolder, params: Params) -> Simulation:
    """Stage 06: simulate the tile, in all its bands, into ``sim_baseline``."""
    return run_simulation(
        tile,
        run,
        band_runs=run.band_runs(tile.bands, tile.band),
        galaxy_model=params.galaxy_model,
        posterior_index=params.posterior_index,
        seed=params.seed,
        measure_psf=params.measure_psf,
        counts=params.counts,
        photon_noise=params.photon_noise,
    )
