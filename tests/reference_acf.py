"""The noise-correlation sums of :mod:`hscsim_utils.numerics.realism_stats` in
vectorised numpy, as hscsim computed them before the numba kernel: the reference
the kernel is tested against (tests/test_realism_stats.py) and timed against
(benchmarks/bench_realism.py)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hscsim_utils.numerics import realism_stats as rs


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
    values = rs._blocks(np.where(good, image, 0.0).astype(np.float64), block)
    ok = rs._blocks(good, block)
    del good
    nby, _, nbx, _ = values.shape
    flat = np.where(ok, values, np.nan).astype(np.float32)  # float32: half the work
    flat = flat.transpose(0, 2, 1, 3).reshape(nby, nbx, -1)
    centre = rs.nanmedian_rows(flat)
    sigma = rs.MAD_TO_STD * rs.nanmedian_rows(np.abs(flat - centre[..., None]))
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
