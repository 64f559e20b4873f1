"""Speed and accuracy of the PSF estimation (stage 05).

1. Per-star fit: the direct estimator (numba Levenberg-Marquardt, analytic
   Jacobian) against a plain ``scipy.optimize.least_squares`` fit of the same
   model (same renderer, same start, finite-difference Jacobian), both on one
   core, on the same synthetic stamps at realistic S/N; plus the recovery of
   every PSF parameter.
2. The whole stage on a full-size patch: the demo tile's run folder when its
   inputs (stages 01-04) exist, else a synthetic 4200 x 4200 patch with a known
   PSF; the model is compared with the truth.

Usage: .venv/bin/python -m benchmarks.bench_psf [--stars N] [--tile T --run R]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from scipy.optimize import least_squares

from hscsim_utils.numerics import psf_direct
from hscsim_utils.numerics.psf_model import PARAM_NAMES, StampRenderer
from hscsim_utils.stages import psf
from tests import synthetic_psf


def scipy_fit(cube: np.ndarray) -> tuple[np.ndarray, float]:
    """The same model fitted with scipy's least_squares (2-point Jacobian)."""
    renderer = StampRenderer()
    weights = np.sqrt(psf_direct.noise_weights(cube))
    theta0 = psf_direct.initial_guess(cube)
    out = np.empty((len(cube), len(PARAM_NAMES)))
    start = time.perf_counter()
    for i, (stamp, w, th0) in enumerate(zip(cube, weights, theta0, strict=True)):

        def residual(th, stamp=stamp, w=w):
            comp = renderer.components(th[:9])
            return ((stamp - th[11] - th[9] * comp[0] - th[10] * comp[1]) * w).ravel()

        th = least_squares(residual, th0, method="lm").x
        out[i] = [th[2], th[9] / (th[9] + th[10]), *th[3:9]]
    return out, time.perf_counter() - start


def direct_fit(cube: np.ndarray, mask_rounds: int = 2) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    params = psf_direct.fit_stamps(cube, mask_rounds=mask_rounds)["params"]
    return params, time.perf_counter() - start


def recovery(est: np.ndarray, truth: np.ndarray) -> list[str]:
    lines = []
    for k, name in enumerate(PARAM_NAMES):
        d = est[:, k] - truth[:, k]
        if k == 0:
            d = d / truth[:, 0]
            name += " (relative)"
        lines.append(f"  {name:24s} bias {np.nanmean(d):+.4f}  rms {np.nanstd(d):.4f}")
    return lines


def bench_per_star(n_stars: int) -> None:
    cube, truth, _ = synthetic_psf.synthetic_stamps(n_stars, np.random.default_rng(7))
    psf_direct.fit_stamps(cube[:2])  # compile / load the numba cache
    numba.set_num_threads(1)
    est_plain, t_plain = direct_fit(cube, mask_rounds=0)
    est_direct, t_direct = direct_fit(cube)
    n_scipy = min(n_stars, 40)
    est_scipy, t_scipy = scipy_fit(cube[:n_scipy])
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    _, t_par = direct_fit(cube)
    print(f"per-star fit, {n_stars} stars (scipy on the first {n_scipy}), one core:")
    print(f"  direct estimator, no masking   {1e3 * t_plain / n_stars:8.1f} ms/star")
    print(f"  scipy least_squares, same fit  {1e3 * t_scipy / n_scipy:8.1f} ms/star")
    speed_up = (t_scipy / n_scipy) / (t_plain / n_stars)
    print(f"  speed-up                       {speed_up:8.1f} x")
    print(f"  direct estimator as run        {1e3 * t_direct / n_stars:8.1f} ms/star "
          "(with neighbour masking)")  # fmt: skip
    print(
        f"  as run on {numba.config.NUMBA_NUM_THREADS} threads: "
        f"{1e3 * t_par / n_stars:.1f} ms/star wall"
    )
    diff = np.nanmax(np.abs(est_plain[:n_scipy] - est_scipy), axis=0)
    print(
        "  largest |direct - scipy| per parameter:", np.array2string(diff, precision=5)
    )
    print("recovery at realistic S/N (i = 18..22), direct estimator:")
    print("\n".join(recovery(est_direct, truth)))


def bench_stage(tile_file: str, run_dir: str, size: int) -> None:
    from hscsim_utils.hsc.tile import resolve_tile
    from hscsim_utils.runfolder import resolve_run

    if tile_file or run_dir or _demo_ready():
        tile, run = resolve_tile(tile_file), resolve_run(run_dir)
        truth = psf.load_truth_grid(tile)
        what = tile.label
    else:
        folder = Path(tempfile.mkdtemp(prefix="bench-psf-"))
        start = time.perf_counter()
        syn = synthetic_psf.write_synthetic_inputs(
            folder, shape=(size, size), n_stars=int(1300 * (size / 4200) ** 2),
            n_galaxies=int(1300 * (size / 4200) ** 2), n_visits=150, seed=3,
        )  # fmt: skip
        took = time.perf_counter() - start
        print(f"synthetic {size} x {size} inputs written in {took:.0f} s")
        tile, run, truth = syn.tile, syn.run, syn.truth_grid
        what = f"synthetic {size} x {size} patch, 150 visits (no demo tile found)"
    start = time.perf_counter()
    result = psf.estimate_psf(tile, run)
    wall = time.perf_counter() - start
    print(f"whole stage on {what}:")
    n_fit = dict(result.counts)["after sigma clipping"]
    print(
        f"  {wall:.1f} s wall on {numba.config.NUMBA_NUM_THREADS} threads "
        f"({result.estimator} estimator, {n_fit} stars in the fit)"
    )
    if truth is not None:
        print("  model against the truth on the grid:")
        for name, s in psf.compare_to_truth(psf.read_grid(result.model), truth).items():
            print(f"  {name:15s} bias {s['bias']:+.4f}  rms {s['rms']:.4f}")


def _demo_ready() -> bool:
    from hscsim_utils.hsc.tile import default_demo_dir
    from hscsim_utils.runfolder import default_run_dir

    run = default_run_dir()
    return (default_demo_dir() / "tile.yaml").is_file() and all(
        (run / p).is_file()
        for p in ("sysmaps.h5", "sextractor/data_se.cat", "stars/gaia.h5")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stars", type=int, default=200, help="stamps per-star test")
    parser.add_argument("--tile", default="", help="tile YAML (default: demo tile)")
    parser.add_argument("--run", default="", help="run folder (default: demo run)")
    parser.add_argument("--size", type=int, default=4200, help="synthetic patch size")
    parser.add_argument("--skip-stage", action="store_true")
    args = parser.parse_args()
    bench_per_star(args.stars)
    if not args.skip_stage:
        bench_stage(args.tile, args.run, args.size)


if __name__ == "__main__":
    main()
