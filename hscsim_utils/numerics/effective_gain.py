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

import numba as nb
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
    value per pixel (one median overall when the image is under two blocks; a
    block without a usable pixel takes it too).

    The medians are ``np.nanmedian`` of each block's pixels in float64 (NaN for
    the pixels not usable), selected per block on the tile's threads
    (:func:`_block_medians`): 4200 x 4200 pixels, 0.19 s instead of 0.65-1.8 s
    (``benchmarks/bench_kernels.py``, median 1.26 s).
    """
    ny, nx = variance.shape
    values = np.where(usable, variance, np.nan)
    if ny < 2 * block or nx < 2 * block:
        return np.full(variance.shape, np.nanmedian(values))
    medians = _block_medians(values, block)
    empty = np.isnan(medians)
    if empty.any():
        medians[empty] = np.nanmedian(values)
    return np.repeat(np.repeat(medians, block, axis=0), block, axis=1)[:ny, :nx]


@nb.njit(nogil=True, cache=True, parallel=True)
def _block_medians(values, block):
    """Median in float64 of the values other than NaN in each block of ``block``
    x ``block`` pixels (the last row and column of blocks cut at the edge), NaN
    for a block of NaN only: the mean of the two middle values for an even
    count, as ``np.median`` takes it."""
    ny, nx = values.shape
    by, bx = -(-ny // block), -(-nx // block)
    out = np.empty((by, bx))
    for k in nb.prange(by * bx):
        y0, x0 = (k // bx) * block, (k % bx) * block
        buf = np.empty(block * block)
        n = 0
        for y in range(y0, min(y0 + block, ny)):
            for x in range(x0, min(x0 + block, nx)):
                v = np.float64(values[y, x])
                if v == v:
                    buf[n] = v
                    n += 1
        if n == 0:
            out[k // bx, k % bx] = np.nan
            continue
        part = np.partition(buf[:n], np.array([(n - 1) // 2, n // 2]))
        mid = part[n // 2]
        out[k // bx, k % bx] = mid if n % 2 else (part[(n - 1) // 2] + mid) / 2
    return out


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
