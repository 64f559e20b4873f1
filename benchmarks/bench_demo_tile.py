"""Build DEMO tiles (simulated): cost, truth, and the data against the real tile.

Usage::

    .venv/bin/python -m benchmarks.bench_demo_tile [--full] [--generator galsim|ufig]
        [--preset ud|deep] [--seed S] [--keep DIR]

Builds a 1000 x 1000 tile (target < 30 s) and, with ``--full``, the whole
4200 x 4200 patch (targets: 300 s and 6 GB on 2 cores), each in a fresh
process, and prints for each its wall time, CPU time and the peak resident
memory of the process tree (summed over the build and its worker processes,
sampled every 0.2 s: an upper bound, shared pages count once per process).

For a GalSim tile it then prints the truth behind it (visit seeing, coadd PSF
FWHM, sky rms, effective gain) and checks the VARIANCE plane: the mean of
residual^2 / VARIANCE over blank-sky pixels (away from every drawn source, mask
and bleed-trail row; light on ~40-pixel scales removed) should be 1.

Last, the largest tile goes through stages 01-03 of the chain (sky information,
masks, SExtractor with ufig's HSC configuration) and its figures are printed
next to those of the real HSC-SSP PDR3 UD-COSMOS i-band patch that the tutorial
shows (``docs/HSC_DUD`` of the ufig 1.1.0 source distribution; read off its
figures, so good to the width of a line):

- exposure map, ``output_15_1.png``: 48,000-64,500 s, highest towards one corner,
  a gentle gradient to ~50,000 s at the opposite one;
- background histogram (pixels outside SExtractor's segmentation),
  ``output_50_1.png``: a Gaussian of FWHM ~0.028 ADU, sigma ~0.012 (zero point 27);
- MAG_AUTO, FLUX_RADIUS and ELLIPTICITY of the detections, ``output_51_1.png``:
  histogram peaks near 26.6 mag, 2.8 pixels and 0.15.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from scipy import ndimage

from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.memory import PeakMemory

TARGETS = {1000: (30.0, 6.0), 4200: (300.0, 6.0)}

#: The real UD-COSMOS i-band patch of the tutorial, read off its figures.
REAL_EXPT_RANGE_S = (48_000, 64_500)
REAL_BKG_SIGMA = 0.012
REAL_PEAKS = {"MAG_AUTO": 26.6, "FLUX_RADIUS": 2.8, "ELLIPTICITY": 0.15}
PEAK_BINS = {
    "MAG_AUTO": np.arange(20.0, 30.01, 0.2),
    "FLUX_RADIUS": np.arange(0.0, 10.01, 0.25),
    "ELLIPTICITY": np.arange(0.0, 1.001, 0.05),
}


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
    """Mean residual^2 / VARIANCE over blank-sky pixels of a GalSim DEMO tile,
    and their number."""
    from hscsim_utils.demo import galsim_scene

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
    sat = calexp.plane("SAT")
    rows = np.zeros_like(sat)
    rows[sat.any(axis=1)] = True
    blank = far & (calexp.mask == 0) & ~ndimage.binary_dilation(rows, iterations=3)
    blank &= np.isfinite(image)
    residual = image - smooth_background(np.nan_to_num(image))
    z = residual[blank] - residual[blank].mean()
    return float(np.mean(z**2 / variance[blank])), int(blank.sum())


def run_build(size: int, args: argparse.Namespace, out: Path) -> dict:
    """Build in a fresh process; wall time, CPU time and peak RSS of the tree."""
    code = (
        "from hscsim_utils.demo.generate import build_tile\n"
        f"build_tile({str(out)!r}, size=({size}, {size}), seed={args.seed}, "
        f"generator={args.generator!r}, preset={args.preset!r})\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    with PeakMemory(pid=proc.pid, include_self=True) as mem:
        proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"build of {size}x{size} failed ({proc.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_gb": mem.peak / 2**30}


def report_build(size: int, result: dict, tile_yaml: Path) -> None:
    truth = json.loads((tile_yaml.parent / "truth" / "truth.json").read_text())
    wall_target, gb_target = TARGETS.get(size, (float("nan"), float("nan")))
    generator = truth.get("generator") or {}
    label = generator.get("preset", "ufig") if isinstance(generator, dict) else "ufig"
    print(f"\nDEMO tile {size}x{size} ({label}; simulated, not real HSC data)")
    wall = result["wall_s"]
    print(f"  wall time        {wall:7.1f} s   (target < {wall_target:.0f} s)")
    print(f"  CPU time         {result['cpu_s']:7.1f} s")
    peak = result["peak_gb"]
    print(f"  peak RSS (tree)  {peak:7.2f} GB  (target <= {gb_target:.0f} GB)")
    if "visit_seeing_arcsec" not in truth:
        return
    seeing, fwhm = truth["visit_seeing_arcsec"], truth["psf_fwhm_arcsec"]
    ratio, n_blank = blank_sky_variance_ratio(tile_yaml)
    print(f"  steps (s)        {generator['seconds']}")
    print(
        f'  visit seeing     median {seeing["median"]:.3f}", 5-95% '
        f'{seeing["p05"]:.3f}-{seeing["p95"]:.3f}" ({truth["n_visits_used"]} visits)'
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


def histogram_peak(values: np.ndarray, bins: np.ndarray) -> float:
    counts, edges = np.histogram(values, bins=bins)
    i = int(np.argmax(counts))
    return float(0.5 * (edges[i] + edges[i + 1]))


def depth_5sigma(sigma_pixel: float, correlation: float = 1.0) -> float:
    """5-sigma 2" aperture magnitude (zero point 27) of pixel noise ``sigma_pixel``
    whose aperture sum has ``correlation`` times the variance of white noise."""
    n_pix = math.pi * (1.0 / skymap.PIXEL_SCALE_ARCSEC) ** 2
    return 27.0 - 2.5 * math.log10(5.0 * sigma_pixel * math.sqrt(n_pix * correlation))


def aperture_variance_factor(residual: np.ndarray, radius_px: float) -> float:
    """Variance of 2" circular-aperture sums of ``residual`` (blank pixels, NaN
    elsewhere) over that of white noise of the same pixel variance: the noise
    correlation of the coadd, measured on the image."""
    r = int(math.ceil(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    aperture = (xx**2 + yy**2 <= radius_px**2).astype(float)
    good = np.isfinite(residual)
    filled = np.where(good, residual, 0.0)
    sums = ndimage.convolve(filled, aperture, mode="constant")
    full = ndimage.convolve(good.astype(float), aperture, mode="constant")
    centres = full[r::17, r::17] >= aperture.sum() - 0.5
    samples = sums[r::17, r::17][centres]
    pixel_var = np.nanvar(residual)
    return float(np.var(samples) / (pixel_var * aperture.sum()))


def compare_with_real(tile_yaml: Path, work: Path) -> None:
    """Stages 01-03 on the tile; its figures next to the real tutorial patch's."""
    from hscsim_utils.runfolder import RunFolder
    from hscsim_utils.stages import masks, sky_and_sysmaps, source_extraction
    from hscsim_utils.stages.source_extraction import read_catalog

    spec = load_tile(tile_yaml)
    run = RunFolder(work / "run")
    t0 = time.perf_counter()
    for stage in (sky_and_sysmaps, masks, source_extraction):
        stage.run(spec, run, stage.Params())
    seconds = time.perf_counter() - t0
    calexp = hsc_io.read_calexp(spec.calexp, band=spec.band)
    with h5py.File(run.product("sysmaps")) as fh:
        expt = fh["map_expt"][()]
    seg = fits.getdata(run.sextractor_seg)
    cat = read_catalog(run.sextractor_cat, ["MAG_AUTO", "FLUX_RADIUS", "ELLIPTICITY"])

    covered = expt > 0
    background = calexp.image[(seg == 0) & covered & np.isfinite(calexp.image)]
    lo, med, hi = np.percentile(background, [15.87, 50.0, 84.13])
    sigma = 0.5 * (hi - lo)
    sky = fits.getdata(run.product("sextractor_bkg"))
    far = ~ndimage.binary_dilation(seg > 0, iterations=4) & (calexp.mask == 0)
    blank = np.where(far, calexp.image - sky, np.nan)
    corr = aperture_variance_factor(blank, 1.0 / skymap.PIXEL_SCALE_ARCSEC)
    area = covered.sum() * (skymap.PIXEL_SCALE_ARCSEC / 60.0) ** 2
    print(f"\nDEMO tile through stages 01-03 ({seconds:.0f} s) against the REAL patch")
    print("  (REAL: HSC-SSP PDR3 UD-COSMOS i, as shown by the tutorial's figures)")
    print(f"  {'figure':34s}{'DEMO':>14s}{'REAL':>16s}")
    e = expt[covered]
    print(
        f"  {'exposure time range (s)':34s}{f'{e.min()}-{e.max()}':>14s}"
        f"{f'{REAL_EXPT_RANGE_S[0]}-{REAL_EXPT_RANGE_S[1]}':>16s}"
    )
    print(f"  {'exposure time median (s)':34s}{np.median(e):14.0f}{'~58000':>16s}")
    label = "background sigma (ADU, 16-84%)"
    print(f"  {label:34s}{sigma:14.4f}{REAL_BKG_SIGMA:16.3f}")
    for name, real in REAL_PEAKS.items():
        values = cat[name][np.isfinite(cat[name])]
        peak = histogram_peak(values, PEAK_BINS[name])
        print(f"  {name + ' histogram peak':34s}{peak:14.2f}{real:16.2f}")
    print(
        f"  {'detections per arcmin^2':34s}{len(cat) / area:14.0f}{'(not shown)':>16s}"
    )
    print(
        f"  {'5-sigma 2-arcsec depth (mag)':34s}{depth_5sigma(sigma, corr):14.2f}"
        f"{depth_5sigma(REAL_BKG_SIGMA, corr):16.2f}"
    )
    print(
        f"  (depth from the background sigma with the aperture-noise factor {corr:.2f}"
        ' measured on the DEMO image for both:\n   2" apertures on blank sky, '
        "SExtractor's background removed, sources grown by 4 px;\n   resampling "
        "correlation and undetected galaxies)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also 4200 x 4200")
    parser.add_argument("--generator", default="galsim", choices=("galsim", "ufig"))
    parser.add_argument("--preset", default="ud", choices=("ud", "deep"))
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--keep", type=Path, default=None, help="keep tiles here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-demo-tile-"))
    root = args.keep or work
    try:
        out = None
        for size in (1000, 4200) if args.full else (1000,):
            out = root / f"DEMO-{args.generator}-{args.preset}-{size}"
            result = run_build(size, args, out)
            report_build(size, result, out / "tile.yaml")
        compare_with_real(out / "tile.yaml", work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
