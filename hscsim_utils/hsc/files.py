"""Readers and writers of the HSC PDR3 input formats.

One place defines the formats, and the pipeline reads real and demo inputs with
the same functions:

- deepCoadd ``calexp`` FITS: HDU 0 primary (``FILTER``, ``FLUXMAG0``), HDU 1
  ``IMAGE`` (float32, zero point 27 AB, TAN WCS), HDU 2 ``MASK`` (int32, plane
  names in ``MP_*`` header keywords), HDU 3 ``VARIANCE``;
- CSV files of the HSC data archive's SQL server: a header line ``# col1,col2,...``
  then comma-separated rows. The frame query (one row per CCD frame of the coadd)
  and the mosaic query (one row per patch) of the tutorial give the columns below.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError

ZERO_POINT_AB = 27.0

#: Mask planes of HSC PDR3 (hscPipe 8) coadds, as written in the MP_* keywords.
PDR3_MASK_PLANES: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "BRIGHT_OBJECT": 9,
    "CROSSTALK": 10,
    "NOT_DEBLENDED": 11,
    "UNMASKEDNAN": 12,
    "REJECTED": 13,
    "CLIPPED": 14,
    "SENSOR_EDGE": 15,
    "INEXACT_PSF": 16,
}

#: Columns of the frame query (pdr3_dud.frame joined with mosaicframe).
FRAME_COLUMNS: tuple[str, ...] = (
    "llcra", "llcdec", "ulcra", "ulcdec", "urcra", "urcdec", "lrcra", "lrcdec",
    "exptime", "gain1", "gain2", "gain3", "gain4", "seeing", "visit",
)  # fmt: skip

#: Columns of the mosaic query (pdr3_dud.mosaic).
COADD_COLUMNS: tuple[str, ...] = (
    "llcra", "llcdec", "ulcra", "ulcdec", "urcra", "urcdec", "lrcra", "lrcdec",
    "seeing", "zeropt", "cd1_1", "cd1_2", "cd2_1", "cd2_2", "crpix1", "crpix2",
    "crval1", "crval2", "ctype1", "ctype2", "cunit1", "cunit2", "naxis1", "naxis2",
    "ra2000", "dec2000", "zeropt_err", "ellipticity", "ellipticity_pa",
)  # fmt: skip

_WCS_KEYS = ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CTYPE1", "CTYPE2")
_HDU_NAMES = ("IMAGE", "MASK", "VARIANCE")


@dataclass
class Calexp:
    """The three planes of a coadd patch, its headers, WCS and mask-plane bits."""

    path: Path
    image: np.ndarray
    mask: np.ndarray
    variance: np.ndarray
    header: fits.Header
    primary_header: fits.Header
    wcs: WCS
    mask_planes: dict[str, int] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(NAXIS2, NAXIS1) of the image."""
        return self.image.shape

    def mask_bit(self, name: str) -> int:
        """Bit number of mask plane ``name`` (e.g. ``"NO_DATA"``)."""
        if name not in self.mask_planes:
            raise InputError(self.path, f"mask plane MP_{name} not in the MASK header")
        return self.mask_planes[name]

    def plane(self, name: str, missing_ok: bool = False) -> np.ndarray:
        """Boolean map of the pixels in mask plane ``name`` (e.g. ``"NO_DATA"``).

        A plane the MASK header does not define is an :class:`InputError`, or
        with ``missing_ok`` a map without any pixel.
        """
        if missing_ok and name not in self.mask_planes:
            return np.zeros(self.mask.shape, bool)
        return ((self.mask >> self.mask_bit(name)) & 1) == 1


def _check_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    return path


def mask_planes_from_header(header: fits.Header) -> dict[str, int]:
    """Map mask-plane names to bit numbers from the ``MP_*`` keywords."""
    return {k[3:]: int(v) for k, v in header.items() if k.startswith("MP_")}


def _band_matches(filter_value: str, band: str) -> bool:
    """True when header FILTER (e.g. 'HSC-I2') is the band (e.g. 'i')."""
    name = filter_value.strip().upper().removeprefix("HSC-")
    return name.rstrip("0123456789") == band.strip().upper()


#: INSTRUME values of Hyper Suprime-Cam (upper case, without spaces and hyphens).
HSC_INSTRUMENTS = ("HSC", "HYPERSUPRIMECAM")


def _check_complete(path: Path, hdul: fits.HDUList) -> None:
    """A file shorter than its own FITS headers say is truncated (a cut download)."""
    size = path.stat().st_size
    needed = max(h.fileinfo()["datLoc"] + h.fileinfo()["datSpan"] for h in hdul)
    if size < needed or size % 2880:
        raise InputError(
            path,
            f"is truncated: {size} bytes where its FITS headers need {needed} "
            "(an interrupted download? fetch it again)",
        )


def _check_zero_point(path: Path, primary: fits.Header) -> None:
    """``FLUXMAG0`` (when present) must be that of zero point 27 AB."""
    if "FLUXMAG0" not in primary:
        return
    value = float(primary["FLUXMAG0"])
    expected = 10 ** (0.4 * ZERO_POINT_AB)
    if not value > 0 or abs(value / expected - 1) > 1e-3:
        zero_point = 2.5 * np.log10(value) if value > 0 else float("nan")
        raise InputError(
            path,
            f"FLUXMAG0 = {value:.6g} is zero point {zero_point:.3f}, not "
            f"{ZERO_POINT_AB:g} AB as HSC coadds are (and hscsim assumes)",
        )


def _check_instrument(path: Path, primary: fits.Header) -> None:
    """Refuse a calexp of another instrument (when the header names one)."""
    instrument = str(primary.get("INSTRUME", "")).strip()
    if instrument and instrument.upper().replace(" ", "").replace("-", "") not in (
        HSC_INSTRUMENTS
    ):
        raise InputError(
            path,
            f"INSTRUME is {instrument!r}: not a Hyper Suprime-Cam image (hscsim "
            "simulates HSC coadds: pixel scale, CCD layout and filters are HSC's)",
        )


def read_calexp(path: str | os.PathLike, band: str | None = None) -> Calexp:
    """Read a deepCoadd calexp; check its HDUs, WCS, mask planes and band."""
    path = _check_file(path)
    with _open_fits(path) as hdul:
        header, primary, planes = _check_calexp_headers(path, hdul, band)
        calexp = Calexp(
            path=path,
            image=np.asarray(hdul[1].data, dtype=np.float32),
            mask=np.asarray(hdul[2].data, dtype=np.int32),
            variance=np.asarray(hdul[3].data, dtype=np.float32),
            header=header.copy(),
            primary_header=primary.copy(),
            wcs=WCS(header),
            mask_planes=planes,
        )
    if not np.isfinite(calexp.image).any():
        raise InputError(calexp.path, "IMAGE has no finite pixel")
    return calexp


def calexp_geometry(
    path: str | os.PathLike, band: str | None = None
) -> tuple[WCS, tuple[int, int]]:
    """WCS and shape (NAXIS2, NAXIS1) of a deepCoadd calexp, with every check of
    :func:`read_calexp` that its headers allow (all but IMAGE having a finite
    pixel), without reading its pixels: the input check before a run (reading
    and converting the three 4200 x 4200 planes took 0.08-1.3 s, as fast as the
    machine maps fresh memory; this 0.004 s)."""
    path = _check_file(path)
    with _open_fits(path) as hdul:
        header, _, _ = _check_calexp_headers(path, hdul, band)
        shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        return WCS(header), shape


def read_mask_plane(
    path: str | os.PathLike, name: str, band: str | None = None
) -> np.ndarray:
    """Boolean map of mask plane ``name`` of a calexp (:meth:`Calexp.plane`),
    its headers checked as :func:`read_calexp` checks them, reading the MASK
    pixels only."""
    path = _check_file(path)
    with _open_fits(path) as hdul:
        _, _, planes = _check_calexp_headers(path, hdul, band)
        if name not in planes:
            raise InputError(path, f"mask plane MP_{name} not in the MASK header")
        mask = np.asarray(hdul[2].data, dtype=np.int32)
    return ((mask >> planes[name]) & 1) == 1


def _open_fits(path: Path) -> fits.HDUList:
    try:
        with warnings.catch_warnings():  # _check_complete says it in one line
            warnings.filterwarnings("ignore", "File may have been truncated")
            return fits.open(path, memmap=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable FITS file ({err})") from None


def _check_calexp_headers(
    path: Path, hdul: fits.HDUList, band: str | None
) -> tuple[fits.Header, fits.Header, dict[str, int]]:
    """Check a calexp's layout from its headers (complete, HSC, zero point 27,
    IMAGE/MASK/VARIANCE of one 2-d shape, WCS keywords, ``MP_*`` planes, the
    band); its IMAGE header, primary header and mask planes."""
    _check_complete(path, hdul)
    _check_instrument(path, hdul[0].header)
    _check_zero_point(path, hdul[0].header)
    if len(hdul) < 4:
        raise InputError(
            path,
            f"has {len(hdul)} HDUs; a calexp needs primary, IMAGE, MASK, VARIANCE",
        )
    shapes = set()
    for i, name in enumerate(_HDU_NAMES, start=1):
        hdr = hdul[i].header
        extname = hdr.get("EXTNAME", name)
        if extname.upper() != name:
            raise InputError(path, f"HDU {i} should be {name}, found {extname!r}")
        if hdr.get("NAXIS", 0) != 2:
            raise InputError(
                path, f"{name} is not a 2-d image (NAXIS = {hdr.get('NAXIS', 0)})"
            )
        shapes.add((hdr.get("NAXIS2"), hdr.get("NAXIS1")))
    if len(shapes) != 1:
        raise InputError(path, f"IMAGE, MASK, VARIANCE shapes differ: {shapes}")
    header = hdul[1].header
    missing = [k for k in _WCS_KEYS if k not in header]
    if missing:
        raise InputError(path, f"IMAGE header lacks WCS keywords {missing}")
    planes = mask_planes_from_header(hdul[2].header)
    if not planes:
        raise InputError(path, "MASK header has no MP_* mask-plane keywords")
    primary = hdul[0].header
    if band is not None and "FILTER" in primary:
        if not _band_matches(str(primary["FILTER"]), band):
            raise InputError(
                path, f"FILTER is {primary['FILTER']!r}, expected band {band!r}"
            )
    return header, primary, planes


def write_calexp(
    path: str | os.PathLike,
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    wcs_header: fits.Header,
    band: str = "HSC-I",
    mask_planes: dict[str, int] | None = None,
    primary_cards: dict | None = None,
) -> Path:
    """Write a calexp in the PDR3 layout, atomically."""
    planes = PDR3_MASK_PLANES if mask_planes is None else mask_planes
    primary = fits.PrimaryHDU()
    primary.header["FILTER"] = band
    primary.header["FLUXMAG0"] = 10 ** (0.4 * ZERO_POINT_AB)
    for key, value in (primary_cards or {}).items():
        primary.header[key] = value
    img = fits.ImageHDU(np.asarray(image, np.float32), header=wcs_header, name="IMAGE")
    msk_header = fits.Header()
    for name, bit in planes.items():
        msk_header[f"HIERARCH MP_{name}"] = bit  # as in real PDR3 files
    msk = fits.ImageHDU(np.asarray(mask, np.int32), header=msk_header, name="MASK")
    var = fits.ImageHDU(
        np.asarray(variance, np.float32), header=wcs_header, name="VARIANCE"
    )
    for hdu in (img, msk, var):
        hdu.header["EXTTYPE"] = hdu.name
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([primary, img, msk, var]).writeto(tmp)
    return path


#: Column names of earlier HSC archive schemas and their PDR3 names: the frame
#: and mosaic tables of the first data release spell declinations ``decl``
#: (``llcdecl`` ... ``decl2000``), as SQL reserves ``dec``.
COLUMN_ALIASES = {
    "llcdecl": "llcdec", "ulcdecl": "ulcdec", "urcdecl": "urcdec",
    "lrcdecl": "lrcdec", "decl2000": "dec2000",
}  # fmt: skip


def read_archive_csv(path: str | os.PathLike, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read an HSC-archive CSV: ``columns`` (in that order) of its rows.

    The header line names the columns, with or without the archive's leading
    ``#``, in any order; columns beyond ``columns`` are ignored, a missing one is
    an error. A column under an earlier schema's name (:data:`COLUMN_ALIASES`)
    counts as its PDR3 name unless that name is there too.
    """
    path = _check_file(path)
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    found = [c.strip().lower() for c in first.lstrip("#").strip().split(",")]
    found = [
        COLUMN_ALIASES[c] if c in COLUMN_ALIASES and COLUMN_ALIASES[c] not in found
        else c
        for c in found
    ]  # fmt: skip
    missing = [c for c in columns if c not in found]
    if missing:
        extra = [c for c in found if c not in columns]
        raise InputError(
            path,
            f"wrong columns: missing {missing}, unexpected {extra} (the header line "
            "must name the columns, as the archive's '# col1,col2,...')",
        )
    try:
        df = pd.read_csv(
            path, comment="#", header=None, skiprows=1, skipinitialspace=True
        )
    except pd.errors.EmptyDataError:
        raise InputError(path, "has no rows") from None
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(path, f"cannot parse CSV rows ({err})") from None
    if df.shape[1] != len(found):
        raise InputError(
            path, f"its header names {len(found)} columns, its rows have {df.shape[1]}"
        )
    df.columns = found
    return df.loc[:, list(columns)]


def write_archive_csv(
    path: str | os.PathLike, df: pd.DataFrame, columns: tuple[str, ...]
) -> Path:
    """Write ``df`` in the HSC-archive CSV layout, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("# " + ",".join(columns) + "\n")
            # 17 significant digits: floats round-trip exactly (frame corners!)
            df.loc[:, list(columns)].to_csv(
                fh, header=False, index=False, float_format="%.17g"
            )
    return path


def read_frame_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Frame-query CSV (one row per CCD frame); numeric columns checked."""
    df = read_archive_csv(path, FRAME_COLUMNS)
    bad = [c for c in FRAME_COLUMNS if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise InputError(path, f"non-numeric values in columns {bad}")
    if not np.isfinite(df.to_numpy(float)).all():
        raise InputError(path, "non-finite values in frame metadata")
    return df


def read_coadd_metadata(path: str | os.PathLike) -> pd.DataFrame:
    """Mosaic-query CSV (one row per patch and band)."""
    return read_archive_csv(path, COADD_COLUMNS)
