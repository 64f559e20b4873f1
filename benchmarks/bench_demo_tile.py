"""Build the full-size DEMO tile (simulated) and print what it costs and looks like.

Usage::

    .venv/bin/python -m benchmarks.bench_demo_tile [--size NX NY] [--seed S]
        [--keep DIR]

Prints the wall time and peak RSS (this process and its children) of
``build_demo_tile`` (targets: 180 s, 6 GB on 2 cores), then, for the note, each
next to the published HSC figure it should resemble:

- background rms: sigma-clipped std of source-free pixels (outside SExtractor's
  segmentation and the MASK planes), and the 5-sigma 2" depth it implies;
- exposure-time range of the truth map;
- SExtractor (``/usr/bin/source-extractor``, ufig's ``hsc.config``,
  ``default.nnw``, ``gauss_3.0_5x5.conv``, ``newdefault.param``; zero point 27,
  0.168"/pixel, gain = mean gain x mean n_exp, SATUR_LEVEL) detection count and
  the peak of the MAG_AUTO histogram.

Published figures used for comparison:

- UD i band as designed: 840 min, 5-sigma 27.4 mag in a 2" aperture; Deep i
  126 min, 26.8 mag (Aihara et al. 2018a, PASJ 70 S4); PDR3 Deep/UD carry ~80%
  of the planned time (Aihara et al. 2022, PASJ 74 247);
- SXDS i'-band catalogues (Suprime-Cam, same field, similar depth): about
  900,000 objects in 1.22 deg^2, i.e. ~205 per arcmin^2 (Furusawa et al. 2008,
  ApJS 176, 1);
- a MAG_AUTO histogram turns over where detection becomes incomplete, a few
  tenths of a magnitude brighter than the 5-sigma point-source depth: for UD i
  about 26.5-27.2.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from hscsim_utils.demo import build as demo_tile
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.memory import max_rss

SEXTRACTOR = "/usr/bin/source-extractor"
TARGET_SECONDS = 180.0
TARGET_RSS_GB = 6.0
UD_DEPTH, UD_MINUTES = 27.4, 840.0
DEEP_MINUTES = 126.0
PDR3_FRACTION = 0.8
SXDS_DENSITY_ARCMIN2 = 900_000 / (1.22 * 3600)


def depth_from_rms(sigma_pixel: float) -> float:
    """5-sigma 2" aperture magnitude of uncorrelated pixel noise (zero point 27)."""
    n_pix = math.pi * (1.0 / skymap.PIXEL_SCALE_ARCSEC) ** 2
    return 27.0 - 2.5 * math.log10(5.0 * sigma_pixel * math.sqrt(n_pix))


def run_sextractor(image_path: Path, work: Path, truth: dict) -> tuple[Path, Path]:
    """SExtractor with ufig's HSC configuration; returns catalogue, segmentation."""
    import ufig

    config = Path(ufig.__path__[0]) / "res" / "sextractor"
    cat, seg = work / "se.cat", work / "se_seg.fits"
    cmd = [
        SEXTRACTOR, str(image_path), "-c", str(config / "hsc.config"),
        "-SEEING_FWHM", f"{truth['psf_fwhm_arcsec_median']:.4f}",
        "-SATUR_KEY", "NONE", "-SATUR_LEVEL", f"{truth['saturation_adu']:.4f}",
        "-MAG_ZEROPOINT", "27.0", "-GAIN_KEY", "NONE",
        "-GAIN", f"{truth['gain_effective_ufig']:.4f}",
        "-PIXEL_SCALE", str(skymap.PIXEL_SCALE_ARCSEC),
        "-STARNNW_NAME", str(config / "default.nnw"),
        "-FILTER_NAME", str(config / "gauss_3.0_5x5.conv"),
        "-PARAMETERS_NAME", str(config / "newdefault.param"),
        "-CATALOG_NAME", str(cat), "-CATALOG_TYPE", "FITS_LDAC",
        "-CHECKIMAGE_TYPE", "SEGMENTATION", "-CHECKIMAGE_NAME", str(seg),
        "-WEIGHT_TYPE", "NONE", "-VERBOSE_TYPE", "QUIET",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return cat, seg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(4200, 4200))
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--keep", type=Path, default=None, help="keep the tile here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    out = args.keep or work / "demo"
    try:
        t0 = time.perf_counter()
        spec = load_tile(
            demo_tile.build_demo_tile(out, size=tuple(args.size), seed=args.seed)
        )
        wall = time.perf_counter() - t0
        own, children = (b / 2**30 for b in max_rss())
        print(f"\nbuild_demo_tile {args.size[0]}x{args.size[1]} (DEMO, simulated)")
        print(f"  wall time        {wall:7.1f} s   (target <= {TARGET_SECONDS:.0f} s)")
        print(
            f"  peak RSS         {own:7.2f} GB self, {children:.2f} GB children "
            f"(target <= {TARGET_RSS_GB:.0f} GB)"
        )
        report(spec, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(spec, work: Path) -> None:
    """Background rms, exposure range, detections and MAG_AUTO peak vs published."""
    truth = json.loads((spec.truth_dir / "truth.json").read_text())
    calexp = hsc_io.read_calexp(spec.calexp, band=spec.band)
    with h5py.File(spec.truth_dir / "sysmaps.h5") as fh:
        expt = fh["map_expt"][()]
    image_path = work / "image.fits"
    fits.writeto(image_path, np.nan_to_num(calexp.image, nan=0.0), calexp.header)
    t0 = time.perf_counter()
    cat_path, seg_path = run_sextractor(image_path, work, truth)
    t_se = time.perf_counter() - t0
    cat = fits.getdata(cat_path, ext=2)
    seg = fits.getdata(seg_path)

    free = (seg == 0) & (calexp.mask == 0)
    _, _, rms = sigma_clipped_stats(calexp.image[free], sigma=3.0)
    deep = free & (expt >= np.percentile(expt[expt > 0], 90))
    _, _, rms_deep = sigma_clipped_stats(calexp.image[deep], sigma=3.0)
    factor = truth["lanczos_rms_factor"]
    sigma_design = 10 ** (-0.4 * (UD_DEPTH - 27.0)) / 5.0
    sigma_design /= math.sqrt(math.pi / skymap.PIXEL_SCALE_ARCSEC**2)
    sigma_pdr3 = sigma_design / math.sqrt(PDR3_FRACTION)
    print("\nbackground rms (sigma-clipped, source-free pixels, ADU at zp 27)")
    print(f"  whole patch      {rms:.4f}   deepest 10%: {rms_deep:.4f}")
    print(
        f"  implied depth    {depth_from_rms(rms_deep / factor):.2f} mag (5 sigma, "
        f'2", deepest 10%; resampling factor {factor:.3f} removed)'
    )
    print(
        f"  published        UD i design 27.4 mag / 840 min -> pixel rms "
        f"{sigma_design:.4f} ({sigma_design * factor:.4f} after resampling); "
        f"PDR3 ~80% time -> {sigma_pdr3:.4f} ({sigma_pdr3 * factor:.4f})"
    )

    covered = expt > 0
    print("\nexposure time (truth map)")
    print(
        f"  range            {expt.min()} .. {expt.max()} s, median "
        f"{np.median(expt[covered]):.0f} s over covered pixels, "
        f"{truth['n_visits']} visits, NO_DATA {100 * (~covered).mean():.1f}%"
    )
    print(
        f"  published        UD i design {UD_MINUTES * 60:.0f} s (PDR3 ~"
        f"{UD_MINUTES * 60 * PDR3_FRACTION:.0f} s); Deep i {DEEP_MINUTES * 60:.0f} s"
    )

    mags = cat["MAG_AUTO"][(cat["MAG_AUTO"] > 15) & (cat["MAG_AUTO"] < 35)]
    area = covered.sum() * (skymap.PIXEL_SCALE_ARCSEC / 60) ** 2
    hist, edges = np.histogram(mags, bins=np.arange(17.0, 30.01, 0.25))
    peak = edges[np.argmax(hist)] + 0.125
    print(f"\nSExtractor ({t_se:.1f} s, ufig hsc.config)")
    print(
        f"  detections       {len(cat)} = {len(cat) / area:.0f} per arcmin^2 "
        f"over {area:.1f} arcmin^2 with data"
    )
    print(
        f"  published        SXDS i' (Furusawa et al. 2008): ~"
        f"{SXDS_DENSITY_ARCMIN2:.0f} per arcmin^2"
    )
    print(f"  MAG_AUTO peak    {peak:.2f} mag (0.25 mag bins)")
    print("  expected         ~26.5-27.2 (just brighter than the UD 5-sigma 27.4)")
    print(
        f"  input (truth)    {truth['n_galaxies']} galaxies, {truth['n_stars']} stars; "
        f'PSF FWHM {truth["psf_fwhm_arcsec_median"]:.3f}" (HSC i median ~0.6")'
    )


if __name__ == "__main__":
    sys.exit(main())
