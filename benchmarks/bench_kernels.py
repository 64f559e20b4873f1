"""Steps of the chain's fixed cost against the forms they replaced, in one run.

On full 4200 x 4200 inputs (synthetic, seeded), each step and its reference
(``tests/reference_numpy.py``, or the reader it stands in for) run alternately;
the script checks that both give the same result and prints the median time of
each, their ratio and the spread of the repeats::

    .venv/bin/python -m benchmarks.bench_kernels            # 5 repeats
    .venv/bin/python -m benchmarks.bench_kernels --repeats 9

- ``robust_std``: both medians by radix selection (float32 and float64 values)
  against two numpy partitions and a temporary of deviations;
- ``sky_variance``: the effective gain's per-block medians selected on the
  threads against ``np.nanmedian`` of padded blocks;
- an LZF map: :func:`hscsim_utils.hdf5_lzf.read_array` against h5py (a
  float32 map as stage 01 stores it, LZF in 132 x 132 chunks);
- the calexp's geometry (the input check) against reading the calexp.

The first call of each form (numba's cache loaded, files read into the page
cache) is left out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SIZE = 4200


def _timed(func: Callable, repeats: int) -> tuple[list[float], object]:
    result = func()  # first call left out
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times, result


def compare(name: str, new: Callable, old: Callable, repeats: int, same) -> dict:
    """Time ``new`` and ``old`` alternately; ``same(a, b)``: whether they agree."""
    new_t, old_t = [], []
    a = new()
    b = old()
    for _ in range(repeats):
        new_t += _timed(new, 1)[0]
        old_t += _timed(old, 1)[0]
    row = {"step": name, "new_s": statistics.median(new_t),
           "old_s": statistics.median(old_t), "same": bool(same(a, b)),
           "new_range": (min(new_t), max(new_t)),
           "old_range": (min(old_t), max(old_t))}  # fmt: skip
    row["ratio"] = row["new_s"] / row["old_s"]
    print(f"{name:34s} {row['new_s']:7.3f} s ({min(new_t):.3f}-{max(new_t):.3f})  "
          f"{row['old_s']:7.3f} s ({min(old_t):.3f}-{max(old_t):.3f})  "
          f"ratio {row['ratio']:.2f}  same: {row['same']}", flush=True)  # fmt: skip
    return row


def _inputs(folder: Path) -> dict:
    import h5py
    from astropy.wcs import WCS

    from hscsim_utils.hsc import files, skymap

    rng = np.random.default_rng(20241203)
    shape = (SIZE, SIZE)
    sky = rng.normal(0.0, 0.02, shape).astype(np.float32)
    variance = rng.gamma(4.0, 1e-4, shape).astype(np.float32)
    usable = rng.random(shape) > 0.1
    maps = folder / "maps.h5"
    with h5py.File(maps, "w") as fh:
        fh.create_dataset("map_expt", data=np.round(variance * 1e6, 0),
                          compression="lzf", chunks=(132, 132))  # fmt: skip
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [SIZE / 2, SIZE / 2]
    wcs.wcs.cd = np.diag([-1.0, 1.0]) * skymap.PIXEL_SCALE_ARCSEC / 3600
    calexp = files.write_calexp(
        folder / "calexp.fits", sky, np.zeros(shape, np.int32), variance,
        wcs.to_header(),
    )  # fmt: skip
    return {"sky": sky, "variance": variance, "usable": usable, "maps": maps,
            "calexp": calexp}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from hscsim_utils.hdf5_lzf import read_array
    from hscsim_utils.hsc import files
    from hscsim_utils.numerics import effective_gain
    from hscsim_utils.numerics import realism_stats as rs
    from tests.reference_numpy import (
        h5py_read,
        numpy_robust_std,
        numpy_sky_variance,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import h5py

    equal = np.array_equal
    with tempfile.TemporaryDirectory(prefix="hscsim-bench-kernels-") as tmp:
        data = _inputs(Path(tmp))
        sky, variance, usable = data["sky"], data["variance"], data["usable"]
        pixels = sky[usable]  # ~16 million background-like values
        wide = pixels.astype(np.float64)

        def read(name: str) -> Callable:
            def go():
                with h5py.File(data["maps"], "r") as fh:
                    return read_array(fh[name])

            return go

        def geometry():
            wcs, shape = files.calexp_geometry(data["calexp"])
            return wcs.to_header_string(), shape

        def whole():
            calexp = files.read_calexp(data["calexp"])
            return calexp.wcs.to_header_string(), calexp.shape

        print(f"{'step':34s} {'new (min-max)':>24s}  {'old (min-max)':>22s}")
        rows = [
            compare(f"robust_std float32 ({pixels.size / 1e6:.1f} M)",
                    lambda: rs.robust_std(pixels), lambda: numpy_robust_std(pixels),
                    args.repeats, lambda a, b: a == b),
            compare(f"robust_std float64 ({wide.size / 1e6:.1f} M)",
                    lambda: rs.robust_std(wide), lambda: numpy_robust_std(wide),
                    args.repeats, lambda a, b: a == b),
            compare("sky_variance (blocks of 64 px)",
                    lambda: effective_gain.sky_variance(variance, usable, 64),
                    lambda: numpy_sky_variance(variance, usable, 64),
                    args.repeats, equal),
            compare("LZF map (float32)", read("map_expt"),
                    lambda: h5py_read(data["maps"], "map_expt"), args.repeats,
                    lambda a, b: a.tobytes() == b.tobytes()),
            compare("calexp geometry vs whole calexp", geometry, whole,
                    args.repeats, lambda a, b: a == b),
        ]  # fmt: skip
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
