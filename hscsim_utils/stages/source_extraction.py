"""Stage 03: source extraction on a coadd patch with the SExtractor binary.

SExtractor runs with ufig's HSC configuration (``ufig/res/sextractor``) and the
tile's seeing, saturation level, zero point, effective coadd gain and pixel
scale. The catalogue is written in ufig's HDF5 layout (one dataset per column,
as ``cosmic_toolbox.arraytools.load_hdf_cols`` reads it), next to the
SEGMENTATION and BACKGROUND check-images.

Data and simulation must be measured alike, so by default SExtractor runs as
ufig runs it on the simulated image (``weighting="none"``: no weight map, one
global detection threshold). Pixels without data (mask plane ``NO_DATA``, or a
non-finite image) are set to 0, the sky level of a background-subtracted coadd:
being noise-free they never pass the threshold, and SExtractor leaves the
all-zero background meshes out of its noise estimate, so they give no
detections and do not change the threshold (tests/test_extraction.py).

``weighting="variance"`` instead uses the inverse of the calexp VARIANCE plane
as ``MAP_WEIGHT`` (weight 0 without data): the threshold then follows the depth
pixel by pixel, which removes the spurious detections a global threshold gives
where the noise rises at the border of the coverage. It is more conservative
overall, partly because the coadd variance includes the sources' Poisson noise
(which SExtractor adds itself through GAIN) and so raises the threshold on and
around objects. On the 4200 x 4200 demo tile it found 8822 sources (25 not
matching any true object brighter than 28.5) against 13409 (2457) without
weights, and 52 % instead of 68 % of the true objects with i = 25-26.

On a tile of several bands, each band other than the detection band is
measured in forced photometry, as ufig measures the simulation
(``run_sextractor_forced_photometry``): SExtractor in dual-image mode detects on
the detection band's calexp and measures in that band's apertures on this
band's calexp, so row ``k`` of every band's catalogue is one object and the
colours of data and simulation are measured alike.

Reads the tile's ``calexp`` (of its ``band``; the detection band's calexp too
on a tile of several bands) and the products
``skymapinfo_json``, ``mask`` and ``overlap``; writes the products
``sextractor_cat``, ``sextractor_seg`` and ``sextractor_bkg``. Entry point:
:func:`run`; the figures are in
:mod:`hscsim_utils.stages.source_extraction_plots`.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits

from hscsim_utils.atomic import TMP_PREFIX, atomic_path
from hscsim_utils.calltimes import floor_call
from hscsim_utils.errors import InputError, ToolError
from hscsim_utils.hsc.files import Calexp, read_calexp
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.logs import quiet_loggers
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import registry
from hscsim_utils.stages.skymapinfo import tutorial_gain

STAGE = registry.spec("source_extraction")
#: Names under which the SExtractor binary is installed (Debian, then upstream).
SEXTRACTOR_BINARIES: tuple[str, ...] = ("source-extractor", "sex")
#: ufig's SExtractor configuration files.
SEXTRACTOR_CONFIG_DIR = Path(str(files("ufig") / "res" / "sextractor"))
DEFAULT_CONFIG = "hsc.config"
DEFAULT_PARAMS = "newdefault.param"
DEFAULT_FILTER = "gauss_3.0_5x5.conv"
DEFAULT_NNW = "default.nnw"
_WEIGHTINGS = ("none", "variance")
#: SExtractor's GAIN: the tutorial's mean gain x mean number of exposures, or
#: the effective gain stage 01 measured from the VARIANCE plane.
GAINS = ("tutorial", "measured")
#: Mask planes whose pixels are treated as pixels without data (the tutorial's).
BLANK_PLANES = ("NO_DATA",)
_STRUCTURAL_KEYS = ("XTENSION", "PCOUNT", "GCOUNT", "EXTNAME", "EXTTYPE", "INHERIT")


def plane_names(text: str) -> tuple[str, ...]:
    """The names of a comma-separated list (``"A, B"`` -> ``("A", "B")``)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Params:
    """Settings of stage 03: the parameters of its notebook."""

    sextractor_binary: str = ""  # empty: source-extractor or sex, on PATH
    sextractor_config: str = DEFAULT_CONFIG  # file in ufig/res/sextractor, or a path
    weighting: str = "none"  # none: as in the simulation; variance: inverse variance
    off_mask_radius: float = 1.0  # stamp flags: radius in units of FLUX_RADIUS
    blank_planes: str = "NO_DATA"  # comma-separated MASK planes treated as no data
    gain: str = "tutorial"  # tutorial: mean gain x mean n_exp; measured: VARIANCE

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> InputError:
            value = getattr(self, name)
            return InputError(f"{STAGE.name}.{name}", f"{allowed}, got {value!r}")

        for name in ("sextractor_binary", "sextractor_config", "blank_planes"):
            if not isinstance(getattr(self, name), str):
                raise bad(name, "must be a string")
        if not self.sextractor_config:
            raise bad("sextractor_config", "must name a SExtractor configuration file")
        if self.weighting not in _WEIGHTINGS:
            raise bad("weighting", f"must be one of {', '.join(_WEIGHTINGS)}")
        if self.gain not in GAINS:
            raise bad("gain", f"must be one of {', '.join(GAINS)}")
        radius = self.off_mask_radius
        if isinstance(radius, bool) or not isinstance(radius, int | float):
            raise bad("off_mask_radius", "must be a number")
        if not (np.isfinite(radius) and radius >= 0):
            raise bad("off_mask_radius", "must be finite and at least 0")
        if not all(re.fullmatch(r"\w+", p) for p in plane_names(self.blank_planes)):
            raise bad("blank_planes", "must be comma-separated MASK plane names")


@dataclass(frozen=True)
class ExtractionSettings:
    """Image properties SExtractor needs (all in the units SExtractor expects)."""

    seeing_arcsec: float
    saturation: float
    magzero: float
    gain: float
    pixscale: float

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not np.isfinite(value) or (name != "magzero" and value <= 0):
                need = "finite" if name == "magzero" else "finite and positive"
                raise InputError(name, f"must be {need}, got {value}")

    def as_arguments(self) -> list[str]:
        """Command-line arguments of SExtractor for these settings."""
        return [
            "-SEEING_FWHM", f"{self.seeing_arcsec:.6g}",
            "-SATUR_KEY", "NONE",
            "-SATUR_LEVEL", f"{self.saturation:.8g}",
            "-MAG_ZEROPOINT", f"{self.magzero:.6g}",
            "-GAIN_KEY", "NONE",
            "-GAIN", f"{self.gain:.8g}",
            "-PIXEL_SCALE", f"{self.pixscale:.6g}",
        ]  # fmt: skip


def settings_from_skymapinfo(
    info: dict, band: str = "i", source: str = "", gain: str = "tutorial"
) -> ExtractionSettings:
    """Settings from a stage-01 skymapinfo mapping.

    ``gain="tutorial"``: SExtractor gets ``gain_<band> * nexp_<band>``, the
    tutorial's effective gain of the coadd, as ufig does with
    ``flag_gain_times_nexp``; ``"measured"``: ``gain_eff_<band>``, the effective
    gain stage 01 measured from the VARIANCE plane (an error when it could not).
    """
    if gain not in GAINS:
        raise InputError("gain", f"must be one of {', '.join(GAINS)}, got {gain!r}")
    keys = ("pixscale", f"seeing_{band}", f"satur_{band}", f"magzero_{band}")
    keys += (f"gain_{band}", f"nexp_{band}")
    keys += (f"gain_eff_{band}",) if gain == "measured" else ()
    missing = [k for k in keys if k not in info]
    if missing:
        raise InputError(source or "skymapinfo", f"missing keys {missing}")
    if gain == "measured":
        value = info[f"gain_eff_{band}"]
        if value is None:
            raise InputError(
                source or "skymapinfo",
                f"gain_eff_{band} is null: the VARIANCE plane gave no gain; "
                "use gain 'tutorial'",
            )
    else:
        value = tutorial_gain(info, band)
    try:
        return ExtractionSettings(
            seeing_arcsec=float(info[f"seeing_{band}"]),
            saturation=float(info[f"satur_{band}"]),
            magzero=float(info[f"magzero_{band}"]),
            gain=float(value),
            pixscale=float(info["pixscale"]),
        )
    except InputError as err:
        raise InputError(source or "skymapinfo", str(err)) from None


def read_settings(
    path: str | os.PathLike, band: str = "i", gain: str = "tutorial"
) -> ExtractionSettings:
    """Settings from the run folder's ``skymapinfo.json`` (written by stage 01);
    ``gain`` as in :func:`settings_from_skymapinfo`."""
    import json

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "not found; run stage 01 (sky information) first")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if isinstance(info, list) and len(info) == 1:
        info = info[0]
    if not isinstance(info, dict):
        raise InputError(path, "must hold one mapping of keys to values")
    return settings_from_skymapinfo(info, band, source=str(path), gain=gain)


def find_sextractor(binary: str = "") -> str:
    """Full path of the SExtractor binary; ``""`` tries the usual names."""
    names = (binary,) if binary else SEXTRACTOR_BINARIES
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ToolError(
        f"SExtractor binary not found (tried {', '.join(names)} on PATH); install it "
        "with tools/install_sextractor.sh (Debian package source-extractor)"
    )


def config_file(name: str) -> Path:
    """A bare file name is taken from ufig's SExtractor folder, a path as is."""
    path = Path(name)
    if path.name == name:
        path = SEXTRACTOR_CONFIG_DIR / name
    if not path.is_file():
        raise InputError(name, f"SExtractor configuration file not found ({path})")
    return path


def prepare_inputs(
    calexp: Calexp,
    weighting: str = "none",
    blank_planes: tuple[str, ...] = BLANK_PLANES,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Image and weight map handed to SExtractor (see the module docstring).

    Pixels in any of ``blank_planes`` (default ``NO_DATA``, as the tutorial) are
    treated as pixels without data; a named plane the calexp lacks is an error,
    except the default ``NO_DATA`` of files that have no such plane.
    """
    _check_weighting(weighting)
    no_data = ~np.isfinite(calexp.image)
    for plane in blank_planes:
        no_data |= calexp.plane(plane, missing_ok=plane == "NO_DATA")
    image = np.where(no_data, np.float32(0), calexp.image).astype(np.float32)
    if weighting == "none":
        return image, None
    var = calexp.variance
    good = ~no_data & np.isfinite(var) & (var > 0)
    weight = np.zeros(var.shape, np.float32)
    weight[good] = 1.0 / var[good]
    if not good.any():
        raise InputError(calexp.path, "no pixel with data and a positive variance")
    return image, weight


def _check_weighting(weighting: str) -> None:
    if weighting not in _WEIGHTINGS:
        raise InputError(
            "weighting", f"must be one of {_WEIGHTINGS}, got {weighting!r}"
        )


def _write_inputs(
    stem: Path, calexp: Calexp, weighting: str, blank_planes: tuple[str, ...]
) -> tuple[Path, Path | None]:
    """Image and weight (:func:`prepare_inputs`) as ``<stem>.fits`` and
    ``<stem>_weight.fits``."""
    image, weight = prepare_inputs(calexp, weighting, blank_planes)
    image_path = stem.with_suffix(".fits")
    _write_fits(image_path, image, calexp.header)
    if weight is None:
        return image_path, None
    weight_path = stem.parent / f"{stem.name}_weight.fits"
    _write_fits(weight_path, weight, calexp.header)
    return image_path, weight_path


def _write_fits(path: Path, data: np.ndarray, header: fits.Header) -> None:
    hdr = header.copy()
    for key in _STRUCTURAL_KEYS:
        hdr.remove(key, ignore_missing=True, remove_all=True)
    fits.PrimaryHDU(data=data, header=hdr).writeto(path)


def build_command(
    binary: str,
    image: Path,
    weight: Path | None,
    catalog: Path,
    checkimages: tuple[Path, Path],
    settings: ExtractionSettings,
    config: str = DEFAULT_CONFIG,
    detection: tuple[Path, Path | None] | None = None,
) -> list[str]:
    """SExtractor command line in dual-image mode: detection on ``detection``
    (image and weight; default the image itself), measurement on the image."""
    det_image, det_weight = detection or (image, weight)
    if (weight is None) != (det_weight is None):
        raise ValueError("detection and measurement images need weights alike")
    if weight is None:
        weight_args = ["-WEIGHT_TYPE", "NONE,NONE"]
    else:
        weight_args = [
            "-WEIGHT_TYPE", "MAP_WEIGHT,MAP_WEIGHT",
            "-WEIGHT_IMAGE", f"{det_weight},{weight}",
        ]  # fmt: skip
    return [
        binary, f"{det_image},{image}",
        "-c", str(config_file(config)),
        *settings.as_arguments(),
        "-STARNNW_NAME", str(config_file(DEFAULT_NNW)),
        "-FILTER_NAME", str(config_file(DEFAULT_FILTER)),
        "-PARAMETERS_NAME", str(config_file(DEFAULT_PARAMS)),
        "-CATALOG_NAME", str(catalog),
        "-CATALOG_TYPE", "FITS_LDAC",
        "-CHECKIMAGE_TYPE", "SEGMENTATION,BACKGROUND",
        "-CHECKIMAGE_NAME", f"{checkimages[0]},{checkimages[1]}",
        *weight_args,
        "-WEIGHT_GAIN", "N,N",
        "-WRITE_XML", "N",
        "-VERBOSE_TYPE", "QUIET",
    ]  # fmt: skip


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        with floor_call("sextractor"):
            proc = subprocess.run(
                cmd, cwd=cwd, capture_output=True, text=True, check=False
            )
    except OSError as err:
        raise ToolError(f"cannot start {shlex.join(cmd)}: {err}") from None
    if proc.returncode != 0:
        raise ToolError(
            f"SExtractor failed (exit code {proc.returncode}): {shlex.join(cmd)}\n"
            f"stderr:\n{proc.stderr.strip()}"
        )
    return proc


def ldac_to_hdf(ldac_path: str | os.PathLike, hdf_path: str | os.PathLike) -> int:
    """Convert a FITS_LDAC catalogue to ufig's HDF5 layout; return the row count.

    Same result as ufig's ``convert_fits_to_hdf`` (native byte order, float64
    columns stored as float32, one dataset per column), but it writes a new file
    instead of replacing the FITS file in place, and a bad file is an error.
    """
    try:
        with fits.open(ldac_path) as hdul:
            hdu = hdul["LDAC_OBJECTS"]
            cat = np.asarray(hdu.data)
    except (OSError, KeyError, IndexError) as err:
        raise ToolError(f"{ldac_path}: not a FITS_LDAC catalogue ({err})") from None
    with h5py.File(hdf_path, "w") as fh5:
        for name in cat.dtype.names:
            col = cat[name]
            dtype = col.dtype.newbyteorder("=")
            if dtype == np.float64:
                dtype = np.dtype(np.float32)
            fh5.create_dataset(name, data=col.astype(dtype), compression="lzf")
    return len(cat)


def run_sextractor(
    calexp: Calexp,
    settings: ExtractionSettings,
    catalog: str | os.PathLike,
    segmentation: str | os.PathLike,
    background: str | os.PathLike,
    binary: str = "",
    config: str = DEFAULT_CONFIG,
    weighting: str = "none",
    blank_planes: tuple[str, ...] = BLANK_PLANES,
    detection: Calexp | None = None,
) -> dict:
    """Run SExtractor on a calexp; write catalogue (HDF5) and check-images.

    ``detection``: the calexp of the detection band (forced photometry, as
    ufig's ``run_sextractor_forced_photometry`` does for the simulation): its
    sources are measured on ``calexp`` in the same apertures, row for row, and
    the segmentation map is the detection image's; ``settings`` (zero point,
    gain, saturation) are those of ``calexp``'s band. All three outputs appear
    together or not at all. Returns a summary with the number of sources, the
    run time and SExtractor's warnings.
    """
    exe = find_sextractor(binary)
    catalog, segmentation, background = map(Path, (catalog, segmentation, background))
    _check_weighting(weighting)  # before anything is written
    if detection is not None and detection.shape != calexp.shape:
        raise InputError(detection.path, f"shape {detection.shape} is not the "
                         f"measured calexp's {calexp.shape}")  # fmt: skip
    catalog.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        work = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(
                    prefix=f"{TMP_PREFIX}sextractor-", dir=catalog.parent
                )
            )
        )
        tmp_cat = stack.enter_context(atomic_path(catalog))
        tmp_seg = stack.enter_context(atomic_path(segmentation))
        tmp_bkg = stack.enter_context(atomic_path(background))
        image_path, weight_path = _write_inputs(
            work / "image", calexp, weighting, blank_planes
        )
        det_paths = None
        if detection is not None:
            det_paths = _write_inputs(work / "detection", detection, weighting,
                                      blank_planes)  # fmt: skip
        ldac = work / "catalog.ldac"
        cmd = build_command(
            exe, image_path, weight_path, ldac, (tmp_seg, tmp_bkg), settings, config,
            det_paths,
        )  # fmt: skip
        start = time.perf_counter()
        proc = _run(cmd, cwd=work)
        seconds = time.perf_counter() - start
        absent = [p.name for p in (ldac, tmp_seg, tmp_bkg) if not p.is_file()]
        if absent:
            raise ToolError(
                f"SExtractor wrote no {absent}: {shlex.join(cmd)}\n"
                f"stderr:\n{proc.stderr.strip()}"
            )
        n_sources = ldac_to_hdf(ldac, tmp_cat)
    warnings = [line.strip() for line in proc.stderr.splitlines() if "WARNING" in line]
    return {
        "n_sources": n_sources,
        "seconds": seconds,
        "warnings": warnings,
        "binary": exe,
    }


def read_catalog(
    path: str | os.PathLike, columns: list[str] | None = None
) -> np.ndarray:
    """Read a catalogue in ufig's HDF5 layout into a structured array."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "catalogue not found")
    with h5py.File(path, "r") as fh5:
        names = list(fh5) if columns is None else columns
        absent = [c for c in names if c not in fh5]
        if absent:
            raise InputError(path, f"catalogue lacks columns {absent}")
        data = {c: fh5[c][()] for c in names}
    n = {len(v) for v in data.values()}
    if len(n) > 1:
        raise InputError(path, "catalogue columns differ in length")
    dtype = [(c, v.dtype, v.shape[1:]) for c, v in data.items()]
    cat = np.empty(n.pop() if n else 0, dtype=dtype)
    for c, v in data.items():
        cat[c] = v
    return cat


def _check_h5_image(path: Path, dataset: str, shape: tuple[int, int]) -> None:
    if not path.is_file():
        raise InputError(path, "not found; run stage 02 (masks) first")
    with h5py.File(path, "r") as fh5:
        if dataset not in fh5:
            raise InputError(path, f"has no dataset {dataset!r}")
        if fh5[dataset].shape != tuple(shape):
            raise InputError(
                path, f"{dataset} has shape {fh5[dataset].shape}, image {tuple(shape)}"
            )


def add_stamp_flags(
    catalog: str | os.PathLike,
    mask: str | os.PathLike,
    overlap: str | os.PathLike,
    shape: tuple[int, int],
    off_mask_radius: float = 1.0,
) -> np.ndarray:
    """Add ufig's ``FLAGS_STAMP`` column (overlap, bright-star and survey masks).

    ufig's ``add_all_stamp_flags`` edits the catalogue in place; here it edits a
    copy that replaces the catalogue only once complete. Returns the flags.
    As in the simulations, the masks' bits are selected with bit operations and
    ufig's numba functions come from the disk cache (the same flags; on the
    full patch 1.7 s of bit expansion and about 1.5 s of compilation less).
    """
    from ufig.plugins.add_generic_stamp_flags import add_all_stamp_flags

    from hscsim_utils.compat.ufig_flag_masks import fast_flag_masks
    from hscsim_utils.compat.ufig_numba import cache_compiled_functions

    cache_compiled_functions(("ufig.mask_utils",))

    catalog, mask, overlap = map(Path, (catalog, mask, overlap))
    if not catalog.is_file():
        raise InputError(catalog, "catalogue not found; run the extraction first")
    _check_h5_image(mask, "mask", shape)
    _check_h5_image(overlap, "img_mask", shape)
    with (
        atomic_path(catalog) as tmp,
        quiet_loggers(logging.getLogger(n) for n in ("add_generi", "arraytools")),
        fast_flag_masks(),
    ):
        shutil.copyfile(catalog, tmp)
        add_all_stamp_flags(str(tmp), str(overlap), str(mask), off_mask_radius)
        with h5py.File(tmp, "r") as fh5:
            flags = fh5["FLAGS_STAMP"][()]
    return flags


@dataclass
class Stage03Result:
    """What the stage-03 notebook shows."""

    calexp: Calexp
    settings: ExtractionSettings
    summary: dict
    catalog: np.ndarray
    #: The band detected on (the tile's detection band in forced photometry),
    #: None when detection and measurement are the same image.
    detected_in: str | None = None


def extract_sources(
    tile: TileSpec,
    run: RunFolder,
    binary: str = "",
    config: str = DEFAULT_CONFIG,
    weighting: str = "none",
    off_mask_radius: float = 1.0,
    blank_planes: tuple[str, ...] = BLANK_PLANES,
    gain: str = "tutorial",
) -> Stage03Result:
    """Stage 03: SExtractor catalogue, check-images and stamp flags of a tile
    (forced photometry on the detection band's sources when the tile is seen
    from another of its bands)."""
    calexp = read_calexp(tile.calexp, band=tile.band)
    forced = tile.band != tile.detection_band
    detection = (
        read_calexp(tile.detection_calexp, band=tile.detection_band) if forced
        else None
    )  # fmt: skip
    settings = read_settings(run.skymapinfo_json, tile.band, gain)
    _check_h5_image(run.mask, "mask", calexp.shape)  # before the long run
    _check_h5_image(run.overlap, "img_mask", calexp.shape)
    summary = run_sextractor(
        calexp,
        settings,
        run.sextractor_cat,
        run.sextractor_seg,
        run.sextractor_bkg,
        binary=binary,
        config=config,
        weighting=weighting,
        blank_planes=blank_planes,
        detection=detection,
    )
    add_stamp_flags(
        run.sextractor_cat, run.mask, run.overlap, calexp.shape, off_mask_radius
    )
    return Stage03Result(calexp, settings, summary, read_catalog(run.sextractor_cat),
                         tile.detection_band if forced else None)  # fmt: skip


def run(tile: TileSpec, run: RunFolder, params: Params) -> Stage03Result:
    """Stage 03: SExtractor catalogue, check-images and stamp flags of the tile."""
    return extract_sources(
        tile,
        run,
        binary=params.sextractor_binary,
        config=params.sextractor_config,
        weighting=params.weighting,
        off_mask_radius=params.off_mask_radius,
        blank_planes=plane_names(params.blank_planes),
        gain=params.gain,
    )
