"""numpy forms of steps hscsim now computes otherwise, kept as the references the
faster forms are tested against (to the last bit) and timed against
(benchmarks/bench_kernels.py)."""

from __future__ import annotations

import h5py
import numpy as np

from hscsim_utils.numerics import realism_stats as rs


def numpy_sky_variance(
    variance: np.ndarray, usable: np.ndarray, block: int
) -> np.ndarray:
    """``effective_gain.sky_variance`` as ``np.nanmedian`` over padded blocks."""
    ny, nx = variance.shape
    values = np.where(usable, variance, np.nan)
    by, bx = -(-ny // block), -(-nx // block)
    padded = np.full((by * block, bx * block), np.nan)
    padded[:ny, :nx] = values
    cells = padded.reshape(by, block, bx, block).transpose(0, 2, 1, 3)
    cells = cells.reshape(by, bx, block * block)
    empty = ~np.isfinite(cells).any(axis=-1)
    cells[empty] = np.nanmedian(values)
    medians = np.nanmedian(cells, axis=-1)
    return np.repeat(np.repeat(medians, block, axis=0), block, axis=1)[:ny, :nx]


def numpy_robust_std(values: np.ndarray) -> float:
    """``realism_stats.robust_std`` as two partitions (float32 kept, others in
    float64)."""
    values = np.asarray(values).ravel()
    if values.dtype != np.float32:
        values = values.astype(np.float64)
    return float(rs.MAD_TO_STD * rs.median(np.abs(values - rs.median(values))))


def h5py_read(path, name: str) -> np.ndarray:
    """A whole dataset as HDF5 reads it (its chunks one after the other)."""
    with h5py.File(path, "r") as fh:
        return fh[name][()]
