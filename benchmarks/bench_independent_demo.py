"""Build the independent DEMO tile (simulated, GalSim model): time, memory, truth.

Usage::

    .venv/bin/python -m benchmarks.bench_independent_demo [--full] [--seed S]
        [--preset ud|deep] [--keep DIR]

Builds a 1000 x 1000 tile (target < 30 s) and, with ``--full``, the whole
4200 x 4200 patch (targets: 300 s and 6 GB on 2 cores), each in a fresh
process, and prints for each: wall time, CPU time, peak resident memory of the
process tree (summed over the build and its worker processes, sampled every
0.2 s; shared pages count once per process, so this is an upper bound), and
from the tile itself:

- seeing of the visits (FWHM measured on each visit's PSF at the tile centre)
  and the FWHM range of the true coadd PSF grid;
- sky rms and effective gain (electrons per coadd ADU) of the coadd;
- VARIANCE vs measured: mean of residual^2 / VARIANCE over blank-sky pixels
  (away from every drawn source, mask and bleed-trail row; light on ~40-pixel
  scales, the wings of bright stars, removed).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from hscsim_utils.demo import galsim_scene
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.memory import PeakMemory

TARGETS = {1000: (30.0, 6.0), 4200: (300.0, 6.0)}


def smooth_background(image: np.ndarray, block: int = 8, size: int = 5) -> np.ndarray:
    """Light on scales of ~40 pixels: medians of 8 x 8 blocks, a 5 x 5 median
    of those, repeated back onto the pixels."""
    ny, nx = image.shape
    by, bx = -(-ny // block), -(-nx // block)
    padded = np.pad(image, ((0, by * block - ny), (0, bx * block - nx)), mode="edge")
    blocks = np.median(padded.reshape(by, block, bx, block), axis=(1, 3))
    smooth = ndimage.median_filter(blocks, size=size, mode="nearest")
    return np.repeat(np.repeat(smooth, block, axis=0), block, axis=1)[:ny, :nx]


def blank_sky_variance_ratio(tile_yaml: Path) -> tuple[float, int]:
    """Mean residual^2 / VARIANCE over blank-sky pixels, and their number."""
    spec = load_tile(tile_yaml)
    calexp = hsc_io.read_calexp(spec.calexp, band=spec.band)
    image, variance = calexp.image.astype(np.float64), calexp.variance
    with h5py.File(spec.truth_dir / "galaxies.h5") as fh:
        gal = fh["data"][()]
    with h5py.File(spec.truth_dir / "stars.h5") as fh:
        stars = fh["data"][()]
    ny, nx = image.shape
    far = np.ones(image.shape, bool)
    radius = np.r_[
        np.maximum(galsim_scene.galaxy_half_size(gal) - 8, 6), np.full(len(stars), 24)
    ]
    xs = np.r_[gal["X_IMAGE"], stars["X_IMAGE"]]
    ys = np.r_[gal["Y_IMAGE"], stars["Y_IMAGE"]]
    for x, y, r in zip(xs, ys, radius, strict=True):
        x0, x1 = max(int(x - r), 0), min(int(x + r) + 1, nx)
        y0, y1 = max(int(y - r), 0), min(int(y + r) + 1, ny)
        if x0 < x1 and y0 < y1:
            yy, xx = np.ogrid[y0 + 1 : y1 + 1, x0 + 1 : x1 + 1]
            far[y0:y1, x0:x1] &= (xx - x) ** 2 + (yy - y) ** 2 > r * r
    sat = ((calexp.mask >> calexp.mask_bit("SAT")) & 1).astype(bool)
    rows = np.zeros_like(sat)
    rows[sat.any(axis=1)] = True
    blank = far & (calexp.mask == 0) & ~ndimage.binary_dilation(rows, iterations=3)
    blank &= np.isfinite(image)
    residual = image - smooth_background(np.nan_to_num(image))
    z = residual[blank] - residual[blank].mean()
    return float(np.mean(z**2 / variance[blank])), int(blank.sum())


def run_build(size: int, seed: int, preset: str, out: Path) -> dict:
    """Build in a fresh process; wall time, CPU time and peak RSS of the tree."""
    code = (
        "from hscsim_utils.demo.independent import build_independent_demo_tile\n"
        f"build_independent_demo_tile({str(out)!r}, size=({size}, {size}), "
        f"seed={seed}, preset={preset!r})\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    with PeakMemory(pid=proc.pid, include_self=True) as mem:
        proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"build of {size}x{size} failed ({proc.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_gb": mem.peak / 2**30}


def report(size: int, result: dict, tile_yaml: Path) -> None:
    truth = json.loads((tile_yaml.parent / "truth" / "truth.json").read_text())
    ratio, n_blank = blank_sky_variance_ratio(tile_yaml)
    wall_target, gb_target = TARGETS.get(size, (float("nan"), float("nan")))
    seeing, fwhm = truth["visit_seeing_arcsec"], truth["psf_fwhm_arcsec"]
    print(f"\nindependent DEMO tile {size}x{size} ({truth['generator']['preset']})")
    print(
        f"  wall time        {result['wall_s']:7.1f} s   (target < {wall_target:.0f} s)"
    )
    print(f"  CPU time         {result['cpu_s']:7.1f} s")
    peak = result["peak_gb"]
    print(f"  peak RSS (tree)  {peak:7.2f} GB  (target <= {gb_target:.0f} GB)")
    print(f"  steps (s)        {truth['generator']['seconds']}")
    print(
        f'  visit seeing     median {seeing["median"]:.3f}", 5-95% '
        f'{seeing["p05"]:.3f}-{seeing["p95"]:.3f}", range {seeing["min"]:.3f}-'
        f'{seeing["max"]:.3f}" ({truth["n_visits_used"]} visits)'
    )
    print(
        f'  coadd PSF FWHM   {fwhm["min"]:.3f}-{fwhm["max"]:.3f}" (median '
        f'{fwhm["median"]:.3f}") on the truth grid'
    )
    print(
        f"  sky rms          {truth['sky_rms_median_adu']:.4f} ADU; effective gain "
        f"{truth['effective_gain_median_e_per_adu']:.3g} e-/ADU; sky "
        f"{truth['sky_mag_arcsec2_median']:.2f} mag/arcsec^2"
    )
    print(f"  VARIANCE check   measured / VARIANCE = {ratio:.4f} ({n_blank} pixels)")
    print(
        f"  sources          {truth['n_galaxies']} galaxies, {truth['n_stars']} stars, "
        f"SAT {100 * truth['fraction_sat']:.3f}% of pixels"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also 4200 x 4200")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--preset", default="ud", choices=("ud", "deep"))
    parser.add_argument("--keep", type=Path, default=None, help="keep tiles here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-independent-demo-"))
    root = args.keep or work
    try:
        for size in (1000, 4200) if args.full else (1000,):
            out = root / f"DEMO-independent-{size}"
            result = run_build(size, args.seed, args.preset, out)
            report(size, result, out / "tile.yaml")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
