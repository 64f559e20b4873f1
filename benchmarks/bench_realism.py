"""Benchmark of the noise-correlation sums behind every realism block.

Stages 07, 08 and 09 tag each image's pixels by checkerboard cell
(``realism_stats.image_sample``); its noise-correlation sums per 64-pixel cell
were the largest part (``_acf_sums``). This script times the numba kernel and
the vectorised numpy version it replaced (``tests/reference_acf.py``) on one
full 4200 x 4200 image in the same run, checks that they agree, and prints the
ratio and the memory each adds to the process's peak (each in a child process)::

    .venv/bin/python -m benchmarks.bench_realism
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from scipy.ndimage import uniform_filter

from hscsim_utils.numerics import halves
from hscsim_utils.numerics import realism_stats as rs
from tests.reference_acf import numpy_acf_sums


def best_of(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


CHILD = """
import numpy as np
from benchmarks.bench_realism import sample_image
from hscsim_utils.numerics import realism_stats as rs
from tests.reference_acf import numpy_acf_sums
image, valid, cell = sample_image({size})
def status_kb(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key))
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # resets the peak (VmHWM) to the present resident memory
before = status_kb("VmRSS")
({func})(image, valid, cell)
print((status_kb("VmHWM") - before) / 1e6)
"""


def sample_image(size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Correlated noise (2 x 2 box) with 30% of the pixels invalid, the cell size."""
    rng = np.random.default_rng(1)
    shape = (size, size)
    image = uniform_filter(rng.normal(0, 1, shape), 2).astype(np.float32)
    valid = rng.random(shape) > 0.3  # detections and masks: 30% of the pixels
    return image, valid, halves.BLOCK_PX // rs.SHIFTS_PER_AXIS


def added_peak_gb(func: str, size: int) -> float:
    """Peak resident memory of a child process during one call above its
    resident memory before the call (GB; Linux)."""
    code = CHILD.format(size=size, func=func)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return float(out.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4200, help="image side (px)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    image, valid, cell = sample_image(args.size)
    rs._acf_sums(image[:cell, :cell], valid[:cell, :cell], cell)  # numba cache
    new = rs._acf_sums(image, valid, cell)
    old = numpy_acf_sums(image, valid, cell)
    agree = np.allclose(new, old, rtol=1e-10, atol=1e-8)
    t_new = best_of(lambda: rs._acf_sums(image, valid, cell), args.repeats)
    t_old = best_of(lambda: numpy_acf_sums(image, valid, cell), args.repeats)
    print(f"noise-correlation sums, {args.size} x {args.size} image, {cell}-px cells "
          f"(best of {args.repeats})")  # fmt: skip
    print(f"  numba kernel   {t_new:6.2f} s")
    print(f"  numpy (before) {t_old:6.2f} s")
    print(f"  ratio          {t_new / t_old:6.2f}; results agree: {agree}")
    gb_new = added_peak_gb("rs._acf_sums", args.size)
    gb_old = added_peak_gb("numpy_acf_sums", args.size)
    print(f"  added to the peak memory: numba {gb_new:.2f} GB, numpy {gb_old:.2f} GB")
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
