"""End-to-end benchmark: build the full DEMO tile, run every stage, print one table.

    .venv/bin/python -m benchmarks.run_all [--size 4200 4200] [--out DIR]

Each figure is measured in this run next to its reference:
- every stage and the whole chain (stages 01-09 through papermill) against the
  calls inside them that the work cannot avoid (``bench_chain.chain``: the
  simulations, SExtractor, Background2D, ...);
- the sysmaps construction against a per-frame loop like the tutorial's;
- the direct PSF estimator per star against scipy's least_squares on the same model;
- the background estimation on two threads against one.
Targets: whole chain on a full tile (without data provisioning and the DEMO tile
build) at most 6 minutes and 6 GB peak on 2 cores (``bench_chain`` prints the
stricter targets of the chain against its floor). The table is also written as
JSON (``DIR/benchmark.json``) so that runs can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hscsim_utils.memory import PeakMemory

CHAIN_TARGET_S = 360.0  # end to end; bench_chain checks the chain against its floor
CHAIN_TARGET_GB = 6.0


def row(name: str, wall: float, peak: float | None, reference: str, ref_wall: float):
    return {"stage": name, "wall_s": round(wall, 2),
            "peak_rss_gb": None if peak is None else round(peak / 2**30, 2),
            "reference": reference, "reference_wall_s": round(ref_wall, 3),
            "ratio": round(wall / ref_wall, 3) if ref_wall else None}  # fmt: skip


def bench_sysmaps(tile_file: Path) -> dict:
    from benchmarks import bench_sysmaps as bs
    from hscsim_utils.hsc import files as hsc_io
    from hscsim_utils.hsc.tile import load_tile
    from hscsim_utils.stages import sky_and_sysmaps as sysmaps

    tile = load_tile(tile_file)
    calexp = hsc_io.read_calexp(tile.calexp)
    frames = hsc_io.read_frame_metadata(tile.frame_metadata)
    _, fast, _ = bs.timed(bs.all_maps, frames, calexp.wcs, calexp.shape)
    corners = sysmaps.frame_corners_pixels(frames, calexp.wcs)
    visit, _ = sysmaps.visit_indices(frames["visit"].to_numpy(), tile.frame_metadata)
    gain = frames[["gain1", "gain2", "gain3", "gain4"]].to_numpy(float).mean(axis=1)
    print(f"  per-frame loop over {len(frames)} frames ...")
    _, slow, _ = bs.timed(
        bs.per_frame_loop,
        corners,
        sysmaps.to_fixed_point(frames["exptime"], sysmaps.EXPT_QUANTUM),
        sysmaps.to_fixed_point(gain, sysmaps.GAIN_QUANTUM),
        visit,
        calexp.shape,
    )
    return row("sysmaps (exposure, gain, visit maps)", fast, None,
               "per-frame loop like the tutorial's", slow)  # fmt: skip


def bench_psf_per_star(n: int = 200) -> dict:
    from benchmarks import bench_psf as bp
    from tests.synthetic_psf import synthetic_stamps

    cube = synthetic_stamps(n, np.random.default_rng(7))[0]
    _, fast = bp.direct_fit(cube)
    _, slow = bp.scipy_fit(cube[: max(20, n // 10)])
    slow_per_star = slow / max(20, n // 10)
    return row("PSF direct estimator, per star [ms]", 1e3 * fast / n, None,
               "scipy least_squares, same model [ms]", 1e3 * slow_per_star)  # fmt: skip


def bench_background(tile_file: Path) -> dict:
    from threadpoolctl import threadpool_limits

    from hscsim_utils.hsc import files as hsc_io
    from hscsim_utils.hsc.tile import load_tile
    from hscsim_utils.stages import sky_and_sysmaps as sysmaps

    calexp = hsc_io.read_calexp(load_tile(tile_file).calexp)
    no_data = calexp.plane("NO_DATA")
    t0 = time.perf_counter()
    sysmaps.background_maps(calexp.image, no_data)
    two = time.perf_counter() - t0
    with threadpool_limits(1):
        t0 = time.perf_counter()
        sysmaps.background_maps(calexp.image, no_data)
        one = time.perf_counter() - t0
    return row("background RMS (2 threads)", two, None, "same on 1 thread", one)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(4200, 4200))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="hscsim-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    from hscsim_utils.demo.generate import build_tile

    print(f"benchmark folder {out}; load average {os.getloadavg()}")
    with PeakMemory(include_self=True, interval=0.1) as demo:
        tile_file = build_tile(out / "input", tuple(args.size))
    table = [row("DEMO tile build (GalSim, one-time)", demo.wall, demo.peak, "-", 0)]
    from benchmarks import bench_chain

    chain = bench_chain.chain(tile_file, out / "run")
    table += [row(r["stage"], r["wall_s"], r["peak_gb"] * 2**30, "its floor calls",
                  r["floor_s"]) for r in chain["stages"]]  # fmt: skip
    chain_wall, chain_peak = chain["chain_s"], chain["stage_peak_gb"]
    table.append(row("whole chain 01-09", chain_wall, chain_peak * 2**30,
                     "floor (calls inside the chain)", chain["floor_s"]))  # fmt: skip
    table.append(bench_sysmaps(tile_file))
    table.append(bench_psf_per_star())
    table.append(bench_background(tile_file))
    print(f"\n{'stage':44s} {'wall s':>9s} {'peak GB':>8s}  reference (wall s, ratio)")
    for r in table:
        peak = "-" if r.get("peak_rss_gb") is None else f"{r['peak_rss_gb']:.2f}"
        ref = (f"{r['reference']} ({r['reference_wall_s']}, x{r['ratio']})"
               if r.get("reference") not in (None, "-") else "")  # fmt: skip
        print(f"{r['stage']:44s} {r['wall_s']:9.2f} {peak:>8s}  {ref}")
    ok = chain_wall <= CHAIN_TARGET_S and chain_peak <= CHAIN_TARGET_GB
    print(f"\nwhole chain {chain_wall:.0f} s, peak {chain_peak:.2f} GB: "
          f"{'within' if ok else 'OUTSIDE'} the target of {CHAIN_TARGET_S:.0f} s and "
          f"{CHAIN_TARGET_GB:.0f} GB")  # fmt: skip
    result = {"size": list(args.size), "load_average": os.getloadavg(),
              "cpu_count": os.cpu_count(), "table": table}  # fmt: skip
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    print(f"table written to {out / 'benchmark.json'}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
