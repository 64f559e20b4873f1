"""Stage 01: the patch's sky information ("skymapinfo") for SExtractor and ufig.

Fields (``<b>`` is the band, e.g. ``i``):

- ``pixscale`` (arcsec/pixel), ``CRPIX1/2``, ``CRVAL1/2``, ``NAXIS1/2``: calexp header;
- ``seeing_<b>`` (arcsec), ``magzero_<b>``, ``ra2000``, ``dec2000``: coadd metadata;
- ``satur_<b>``: the value of a saturated core (:func:`saturation_level`);
- ``gain_<b>``, ``nexp_<b>``, ``exptime_<b>``: from the exposure maps, averaged over
  the pixels covered by at least one frame (``gain`` is the mean gain of one
  exposure, mean(map_gain) / mean(map_nexp));
- ``bkg_mean_<b>``: median background level (Background2D's ``background_median``),
  which ufig configs use as ``bkg_noise_amp``, the mean added to the noise;
- ``bkg_rms_<b>``: median of the background RMS map over pixels with data;
- ``gain_eff_tutorial_<b>``: the tutorial's effective gain of the coadd,
  ``gain_<b> * nexp_<b>`` (what ufig and SExtractor get by default);
- ``gain_eff_<b>``, ``gain_eff_err_<b>``: the effective gain measured from the
  calexp's VARIANCE plane (:mod:`hscsim_utils.numerics.effective_gain`), on
  pixels without a defect plane (``GAIN_BAD_PLANES``; DETECTED is allowed); NaN
  when VARIANCE holds no source photon noise.

Written as JSON for people and as a one-row numpy record array (``.npy``) that
ufig configs read with ``np.load(path, allow_pickle=True)[0]``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hscsim_utils.atomic import atomic_path, write_json
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.files import Calexp
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.numerics.effective_gain import GainEstimate, measure_effective_gain

if TYPE_CHECKING:
    from hscsim_utils.stages.sky_and_sysmaps import BackgroundMaps, ExposureMaps

INT_FIELDS = ("NAXIS1", "NAXIS2")
#: Mask planes whose pixels do not measure the gain (defects, saturation, edges).
GAIN_BAD_PLANES = (
    "NO_DATA", "SAT", "BAD", "SUSPECT", "INTRP", "CR", "EDGE", "BRIGHT_OBJECT",
    "CLIPPED", "UNMASKEDNAN", "SENSOR_EDGE", "CROSSTALK", "REJECTED",
)  # fmt: skip


def header_info(calexp: Calexp) -> dict:
    """Pixel scale and WCS reference values of the patch."""
    header = calexp.header
    ny, nx = calexp.shape
    info = {"pixscale": PIXEL_SCALE_ARCSEC}
    for key in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2"):
        info[key] = float(header[key])
    info["NAXIS1"], info["NAXIS2"] = int(nx), int(ny)
    return info


def coadd_row(
    coadd: pd.DataFrame, calexp: Calexp, source: str | os.PathLike
) -> pd.Series:
    """The coadd-metadata row of this patch (the one matching its size if several)."""
    if len(coadd) == 1:
        return coadd.iloc[0]
    ny, nx = calexp.shape
    match = coadd[(coadd["naxis1"] == nx) & (coadd["naxis2"] == ny)]
    match = match[
        np.isclose(match["crval1"], calexp.header["CRVAL1"])
        & np.isclose(match["crval2"], calexp.header["CRVAL2"])
    ]
    if len(match) != 1:
        raise InputError(
            source,
            f"{len(match)} of {len(coadd)} rows match the calexp's size and CRVAL",
        )
    return match.iloc[0]


def coadd_info(row: pd.Series, band: str, source: str | os.PathLike) -> dict:
    """Seeing, zero point and centre from the coadd metadata row."""
    columns = {
        "seeing": f"seeing_{band}",
        "zeropt": f"magzero_{band}",
        "ra2000": "ra2000",
        "dec2000": "dec2000",
    }
    values = pd.to_numeric(row[list(columns)], errors="coerce").astype(float)
    bad = [c for c in columns if not np.isfinite(values[c])]
    if values["seeing"] <= 0:
        bad.append("seeing")
    if bad:
        raise InputError(source, f"invalid values in columns {bad}")
    return {name: float(values[col]) for col, name in columns.items()}


def saturation_level(calexp: Calexp) -> float:
    """The coadd value of a saturated core: the median, over the connected areas
    of SAT-flagged pixels, of each area's highest finite value; the image maximum
    when no pixel is SAT.

    A coadd marks SAT where at least 10% of the visits' weight saturated
    (hscPipe's ``maskPropagationThresholds``), so the edges of a saturated core
    and its bleed trails hold SAT pixels far below saturation (a tenth of it and
    less), and the lowest SAT value says nothing about where saturation starts.
    Every saturated star has a core saturated in all its visits, which reaches
    the same level in each area; the median over areas ignores the few areas cut
    by the patch edge or interpolated over.
    """
    from scipy import ndimage

    image = calexp.image
    if "SAT" in calexp.mask_planes:
        sat = calexp.plane("SAT") & np.isfinite(image)
        if sat.any():
            labels, n = ndimage.label(sat)
            inside = labels > 0  # the SAT pixels only: ndimage sorts what it gets
            peaks = ndimage.maximum(
                image[inside], labels[inside], index=np.arange(1, n + 1)
            )
            return float(np.median(peaks))
    return float(np.nanmax(image))


def exposure_info(maps: ExposureMaps, band: str, source: str | os.PathLike) -> dict:
    """Mean gain per exposure, number of exposures and exposure time."""
    covered = maps.nexp > 0
    if not covered.any():
        raise InputError(source, "no frame covers the patch")
    nexp = float(maps.nexp[covered].mean())
    return {
        f"gain_{band}": float(maps.gain[covered].mean(dtype=np.float64)) / nexp,
        f"nexp_{band}": nexp,
        f"exptime_{band}": float(maps.expt[covered].mean(dtype=np.float64)),
    }


def measured_gain(calexp: Calexp, saturation: float) -> GainEstimate:
    """The effective gain from the VARIANCE plane (module docstring)."""
    usable = np.ones(calexp.shape, bool)
    for name in GAIN_BAD_PLANES:
        if name in calexp.mask_planes:
            usable &= ~calexp.plane(name)
    return measure_effective_gain(calexp.image, calexp.variance, usable, saturation)


def tutorial_gain(info: Mapping, band: str) -> float:
    """The tutorial's effective gain of the coadd: the mean gain of one exposure
    times the mean number of exposures (``gain_<b> * nexp_<b>``)."""
    return float(info[f"gain_{band}"]) * float(info[f"nexp_{band}"])


def gain_info(calexp: Calexp, band: str, saturation: float, info: dict) -> dict:
    """``gain_eff_tutorial_<b>``, ``gain_eff_<b>`` and ``gain_eff_err_<b>``."""
    est = measured_gain(calexp, saturation)
    return {
        f"gain_eff_tutorial_{band}": tutorial_gain(info, band),
        f"gain_eff_{band}": float("nan") if est.gain is None else est.gain,
        f"gain_eff_err_{band}": float("nan") if est.error is None else est.error,
    }


def build_skymapinfo(
    calexp: Calexp,
    coadd: pd.DataFrame,
    maps: ExposureMaps,
    background: BackgroundMaps,
    band: str,
    coadd_source: str | os.PathLike,
    frame_source: str | os.PathLike,
) -> dict:
    """All skymapinfo fields of one patch and band."""
    info = header_info(calexp)
    info.update(coadd_info(coadd_row(coadd, calexp, coadd_source), band, coadd_source))
    info[f"satur_{band}"] = saturation_level(calexp)
    info.update(exposure_info(maps, band, frame_source))
    info[f"bkg_mean_{band}"] = background.level_median
    info[f"bkg_rms_{band}"] = background.rms_median
    info.update(gain_info(calexp, band, info[f"satur_{band}"], info))
    return info


def to_record(info: dict) -> np.ndarray:
    """One-row structured array (int64 for NAXIS*, float64 otherwise)."""
    dtype = [(k, np.int64 if k in INT_FIELDS else np.float64) for k in info]
    rec = np.zeros(1, dtype=dtype)
    for key, value in info.items():
        rec[key] = value
    return rec


def write_skymapinfo(
    info: dict, json_path: str | os.PathLike, npy_path: str | os.PathLike
) -> tuple[Path, Path]:
    """Write the JSON and the ``.npy`` record array, each atomically."""
    rec = to_record(info)
    with atomic_path(npy_path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, rec)
    write_json(json_path, {k: _json_value(v) for k, v in info.items()})
    return Path(json_path), Path(npy_path)


def _json_value(value):
    """NaN (a field that could not be measured) as JSON null."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def read_skymapinfo(npy_path: str | os.PathLike) -> np.void:
    """The record a ufig config uses: ``np.load(path, allow_pickle=True)[0]``."""
    return np.load(npy_path, allow_pickle=True)[0]
