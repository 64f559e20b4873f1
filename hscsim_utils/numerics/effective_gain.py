"""The effective gain of a coadd, measured from its VARIANCE plane.

A coadd pixel of value ``I`` (ADU, zero point 27) holds, to the photon noise of
its sources, the variance ``I / G`` on top of the sky's, where ``G`` is the
effective gain: electrons collected, over all visits, per coadd ADU. hscPipe's
VARIANCE plane carries that term (each visit's variance is its image in
electrons plus read noise, warped and averaged with the image), so

    VARIANCE - sky variance = I / G

on source pixels. :func:`measure_effective_gain` fits that line through the
origin on bright, unsaturated, unmasked pixels:

- sky variance: the median of VARIANCE in blocks of ``block`` pixels (a source
  covers a small part of a block, so the median is the sky's), held constant in
  each block; one median for the whole image when it is smaller than two blocks;
- pixels: at least ``min_snr`` times the sky noise above zero (their source term
  is then at least a few per cent of the sky's even at large gains) and below
  ``saturation_fraction`` of the saturation level;
- ``G = sum(I) / sum(VARIANCE - sky)`` over those pixels (the ratio of sums: a
  least-squares line through the origin weighted by 1/I, the weights of Poisson
  counts); its standard error from the spread of the same ratio over groups of
  pixels sorted by position.

What it is not: the gain of a visit's CCD (about 3 e-/ADU for HSC), nor the
tutorial's convention ``mean gain x mean number of exposures`` (a few hundred on
an UltraDeep patch, where each coadd ADU is of order 10^4-10^5 electrons: the
flux of one ADU at zero point 27 collected by ~200 visits of 270 s on an 8.2 m
telescope). Resampling onto the patch grid (Lanczos-3) lowers a pixel's variance
by a factor 0.6-1 for sky and sources alike, so this per-pixel gain is up to
~1.6 times the gain of a source's total flux.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GainEstimate", "measure_effective_gain", "sky_variance"]

BLOCK = 64
MIN_SNR = 20.0
SATURATION_FRACTION = 0.5
MIN_PIXELS = 50
N_GROUPS = 16


@dataclass(frozen=True)
class GainEstimate:
    """Effective gain (e-/ADU), its standard error and what it was measured on."""

    gain: float | None  # None: no source term in VARIANCE, or too few pixels
    error: float | None
    n_pixels: int
    sky_variance_median: float
    reason: str = ""  # why ``gain`` is None

    def as_dict(self) -> dict:
        return {
            "gain": self.gain, "error": self.error, "n_pixels": self.n_pixels,
            "sky_variance_median": self.sky_variance_median, "reason": self.reason,
        }  # fmt: skip


def sky_variance(variance: np.ndarray, usable: np.ndarray, block: int = BLOCK):
    """Median VARIANCE of the usable pixels in blocks of ``block`` pixels, one
    value per pixel (one median overall when the image is under two blocks)."""
    ny, nx = variance.shape
    values = np.where(usable, variance, np.nan)
    if ny < 2 * block or nx < 2 * block:
        return np.full(variance.shape, np.nanmedian(values))
    by, bx = -(-ny // block), -(-nx // block)
    padded = np.full((by * block, bx * block), np.nan)
    padded[:ny, :nx] = values
    cells = padded.reshape(by, block, bx, block).transpose(0, 2, 1, 3)
    cells = cells.reshape(by, bx, block * block)
    empty = ~np.isfinite(cells).any(axis=-1)
    cells[empty] = np.nanmedian(values)
    medians = np.nanmedian(cells, axis=-1)
    return np.repeat(np.repeat(medians, block, axis=0), block, axis=1)[:ny, :nx]


def measure_effective_gain(
    image: np.ndarray,
    variance: np.ndarray,
    usable: np.ndarray,
    saturation: float = np.inf,
    *,
    block: int = BLOCK,
    min_snr: float = MIN_SNR,
) -> GainEstimate:
    """Fit ``VARIANCE - sky = image / G`` on bright unsaturated ``usable`` pixels."""
    usable = usable & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
    if not usable.any():
        return GainEstimate(None, None, 0, float("nan"), "no usable pixel")
    sky = sky_variance(variance, usable, block)
    bright = usable & (image > min_snr * np.sqrt(sky))
    bright &= image < SATURATION_FRACTION * saturation
    n = int(bright.sum())
    sky_median = float(np.median(sky[usable]))
    if n < MIN_PIXELS:
        return GainEstimate(
            None, None, n, sky_median,
            f"{n} pixels above {min_snr:g} sigma (need {MIN_PIXELS})",
        )  # fmt: skip
    signal = image[bright].astype(np.float64)
    excess = (variance - sky)[bright].astype(np.float64)
    total = excess.sum()
    if total <= 0:
        return GainEstimate(
            None, None, n, sky_median,
            "VARIANCE does not grow with the image: it holds no source photon noise",
        )  # fmt: skip
    gain = float(signal.sum() / total)
    groups = np.array_split(np.arange(n), min(N_GROUPS, n // 10))
    ratios = np.array([signal[g].sum() / excess[g].sum() for g in groups])
    ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
    error = (
        float(np.std(1.0 / ratios, ddof=1) / np.sqrt(len(ratios)) * gain**2)
        if len(ratios) > 2
        else None
    )
    return GainEstimate(gain, error, n, sky_median)
