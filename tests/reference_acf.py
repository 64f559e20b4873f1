"""The noise-correlation sums of :mod:`hscsim_utils.numerics.realism_stats` in
vectorised numpy, as hscsim computed them before the numba kernel: the reference
the kernel is tested against (tests/test_realism_stats.py) and timed against
(benchmarks/bench_realism.py); and the numba kernel's earlier form (a pass per
lag), which the present one must equal to the last bit."""

from __future__ import annotations

from collections.abc import Mapping

import numba as nb
import numpy as np

from hscsim_utils.numerics import realism_stats as rs


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=-1)``, the same numbers (NaN for a row without
    values, without the warning), from one sort instead of one median per row.
    """
    ordered = np.sort(values, axis=-1)  # NaN last
    count = np.count_nonzero(~np.isnan(ordered), axis=-1)
    hi = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)[..., 0]
    lo = np.take_along_axis(ordered, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[
        ..., 0
    ]
    out = np.where(count % 2 == 1, hi, (lo + hi) / 2)
    return np.where(count == 0, np.nan, out).astype(values.dtype, copy=False)


def _blocks(array: np.ndarray, block: int) -> np.ndarray:
    """``array`` padded with zeros to whole blocks, as (rows, block, cols, block)."""
    ny, nx = array.shape
    nby, nbx = -(-ny // block), -(-nx // block)
    padded = np.zeros((nby * block, nbx * block), array.dtype)
    padded[:ny, :nx] = array
    return padded.reshape(nby, block, nbx, block)


def numpy_acf_sums(
    image: np.ndarray,
    valid: np.ndarray,
    block: int,
    lags: Mapping[str, tuple[int, int]] = rs.LAGS,
) -> np.ndarray:
    """Per block of ``block`` pixels (row-major): ``n, sum v, sum v^2`` and per
    lag ``pairs, sum v_p, sum v_q, sum v_p v_q`` over the pairs inside the
    block; shape (n_blocks, 3 + 4 n_lags).

    ``v`` is the pixel value minus the median of the block's valid pixels;
    pixels beyond :data:`rs.CLIP_SIGMA` times the block's robust standard deviation
    do not count. Everything is local to a block, so the numbers of a set of
    blocks do not depend on the pixels of the others.
    """
    good = np.asarray(valid, bool) & np.isfinite(image)
    values = _blocks(np.where(good, image, 0.0).astype(np.float64), block)
    ok = _blocks(good, block)
    del good
    nby, _, nbx, _ = values.shape
    flat = np.where(ok, values, np.nan).astype(np.float32)  # float32: half the work
    flat = flat.transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
    centre = nanmedian_rows(flat)
    sigma = rs.MAD_TO_STD * nanmedian_rows(np.abs(flat - centre[..., None]))
    del flat
    centre = np.nan_to_num(centre)[:, None, :, None]
    sigma = np.nan_to_num(sigma)[:, None, :, None]
    v = values - centre
    ok &= (np.abs(v) <= rs.CLIP_SIGMA * sigma) | (sigma == 0)
    v[~ok] = 0.0
    ok = ok.astype(np.float64)
    cols = [ok.sum(axis=(1, 3)), v.sum(axis=(1, 3)), (v * v).sum(axis=(1, 3))]
    for dy, dx in lags.values():
        p = (slice(None), slice(0, block - dy), slice(None), slice(0, block - dx))
        q = (slice(None), slice(dy, block), slice(None), slice(dx, block))
        for a, b in ((ok[p], ok[q]), (v[p], ok[q]), (ok[p], v[q]), (v[p], v[q])):
            cols.append(np.einsum("iajb,iajb->ij", a, b))  # sum of a * b per block
    return np.stack([c.ravel() for c in cols], axis=1)


@nb.njit(cache=True)
def _sorted_median_f32(ordered: np.ndarray) -> np.float32:
    """Median of sorted float32 values, the mean of the middle two computed in
    float32 (as ``np.nanmedian`` does for float32 rows)."""
    n = ordered.size
    hi = ordered[n // 2]
    if n % 2 == 1:
        return hi
    return (ordered[(n - 1) // 2] + hi) / np.float32(2.0)


@nb.njit(cache=True, parallel=True)
def previous_acf_block_sums(image, good, block, shifts, clip, mad):
    """``realism_stats._acf_block_sums`` before its one-pass form: a pass per
    lag over every pair of the block with 0/1 weights, medians from sorts."""
    ny, nx = image.shape
    nby, nbx = -(-ny // block), -(-nx // block)
    n_lags = shifts.shape[0]
    out = np.zeros((nby * nbx, 3 + 4 * n_lags))
    for k in nb.prange(nby * nbx):
        y0, x0 = (k // nbx) * block, (k % nbx) * block
        h, w = min(block, ny - y0), min(block, nx - x0)
        values = np.empty(h * w, np.float32)
        n = 0
        for yy in range(h):
            for xx in range(w):
                if good[y0 + yy, x0 + xx]:
                    values[n] = np.float32(image[y0 + yy, x0 + xx])
                    n += 1
        centre, sigma = np.float32(0.0), np.float32(0.0)
        if n > 0:
            centre = _sorted_median_f32(np.sort(values[:n]))
            sigma = mad * _sorted_median_f32(np.sort(np.abs(values[:n] - centre)))
        limit = np.float64(clip * sigma)
        v = np.zeros((h, w))
        ok = np.zeros((h, w))
        for yy in range(h):
            for xx in range(w):
                if good[y0 + yy, x0 + xx]:
                    d = np.float64(image[y0 + yy, x0 + xx]) - np.float64(centre)
                    if abs(d) <= limit or sigma == 0:
                        v[yy, xx] = d
                        ok[yy, xx] = 1.0
        row = out[k]
        for yy in range(h):
            for xx in range(w):
                row[0] += ok[yy, xx]
                row[1] += v[yy, xx]
                row[2] += v[yy, xx] * v[yy, xx]
        for j in range(n_lags):
            dy, dx = shifts[j, 0], shifts[j, 1]
            for yy in range(h - dy):
                for xx in range(w - dx):
                    op, oq = ok[yy, xx], ok[yy + dy, xx + dx]
                    vp, vq = v[yy, xx], v[yy + dy, xx + dx]
                    row[3 + 4 * j] += op * oq
                    row[4 + 4 * j] += vp * oq
                    row[5 + 4 * j] += op * vq
                    row[6 + 4 * j] += vp * vq
    return out
