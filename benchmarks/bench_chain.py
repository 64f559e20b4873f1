"""The chain against its floor: what each stage costs beyond the calls it must make.

    .venv/bin/python -m benchmarks.bench_chain                    # full DEMO patch
    .venv/bin/python -m benchmarks.bench_chain --sizes 2000 3000 4200   # scaling
    .venv/bin/python -m benchmarks.bench_chain --tile T.yaml      # any tile

For each patch size a DEMO tile is built (not timed), then the whole chain runs
through the runner (papermill, the stages in one kernel, as ``hscsim run``). Inside
the stages every call that the work cannot do without (each GalSBI/UFig
simulation, each SExtractor run, Background2D, the exposure maps, ufig's PSF
estimation; :mod:`hscsim_utils.calltimes`) logs its wall time, so in the same run
the benchmark prints, per stage, its wall time, the time in those calls and the
rest (its fixed cost), and for the chain the floor (the sum of the calls) and the
ratio chain / floor. The runner's own time around the stages (input check,
fingerprints, report) counts to the chain. Peak memory: of each stage (the
run's kernel while the stage runs, modules of earlier stages included, and what
it starts, as the runner measures it) and of the whole process tree (this
script and the runner included). A no-op stage (a notebook with the
parameters cell and nothing else, run as the runner runs a stage) gives the
cost of a stage beyond its cells: in the run's kernel (as the chain runs it)
and in a kernel of its own (a notebook run alone). With several sizes, wall
time and peak memory are fitted as a fixed cost plus a cost per megapixel.
Targets (issue: 2 cores, full patch): chain / floor at most 1.3, chain at most
240 s, no-op stage at most 3 s, peak memory at most 2.5 GB. Everything is also
written to ``DIR/bench_chain.json``.
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

RATIO_TARGET = 1.3
CHAIN_TARGET_S = 240.0
NOOP_TARGET_S = 3.0
PEAK_TARGET_GB = 2.5
NOOP_SOURCE = """\
# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (hscsim)
#     language: python
#     name: hscsim
# ---

# %% tags=["parameters"]
tile_file = ""
run_dir = ""

# %%
pass
"""


def noop_stage(folder: Path, repeats: int = 3) -> dict[str, float]:
    """Median wall time of a notebook that does nothing, run as the runner runs
    a stage: ``own_kernel``, each in a kernel started for it (a notebook run
    alone), and ``run_kernel``, in the kernel a run keeps for its stages (the
    first run, which starts that kernel, left out of the median)."""
    import jupytext

    from hscsim_utils.pipeline import runner
    from hscsim_utils.pipeline.kernel import StageKernel
    from hscsim_utils.stages.registry import StageSpec

    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / "00_noop.ipynb"
    jupytext.write(jupytext.reads(NOOP_SOURCE, fmt="py:percent"), notebook)
    stage = runner.Stage(StageSpec("00", "noop", (), ()), notebook)
    run = _run_folder(folder / "run")
    params = {"tile_file": "", "run_dir": ""}

    def timed(kernel: StageKernel | None) -> float:
        t0 = time.perf_counter()
        runner._run_notebook(stage, params, run, kernel=kernel)
        return time.perf_counter() - t0

    own = [timed(None) for _ in range(repeats)]
    with (
        runner._call_log(folder / "calls.jsonl"),
        StageKernel(run.notebooks_dir) as kernel,
    ):
        shared = [timed(kernel) for _ in range(repeats + 1)][1:]
    return {"own_kernel": float(np.median(own)), "run_kernel": float(np.median(shared))}


def _run_folder(path: Path):
    from hscsim_utils.runfolder import RunFolder

    run = RunFolder(path)
    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    return run


def chain(
    tile_file: Path, run_dir: Path, stages: str | None = None, bands: str | None = None
) -> dict:
    """Run the chain once as ``hscsim run`` does, its input check first
    (``bands``: those of the tile's bands, as ``--bands``); per stage its wall
    time, floor calls and peak memory, and the stages of the band runs of a tile
    of several bands."""
    from hscsim_utils.pipeline import runner
    from hscsim_utils.pipeline.check_tile import check_tile

    with PeakMemory(include_self=True, interval=0.2) as mem:
        start = time.perf_counter()
        problems = check_tile(tile_file, bands)
        check = time.perf_counter() - start
        if problems:
            raise SystemExit("\n".join(problems))
        state = runner.run_tile(tile_file, run_dir, stages=stages, force=True,
                                bands=bands)  # fmt: skip
    rows = []
    for name, s in state.items():
        calls = s.get("calls_s", {})
        floor = sum(calls.values())
        rows.append({"stage": name, "wall_s": s["wall_s"], "floor_s": round(floor, 2),
                     "fixed_s": round(s["wall_s"] - floor, 2), "calls": calls,
                     "peak_gb": round(s["peak_rss_mb"] / 1024, 2)})  # fmt: skip
    wall = mem.wall
    floor = sum(r["floor_s"] for r in rows)
    return {"stages": rows, "chain_s": round(wall, 1), "floor_s": round(floor, 1),
            "runner_s": round(wall - sum(r["wall_s"] for r in rows), 1),
            "check_s": round(check, 1),
            "ratio": round(wall / floor, 3) if floor else None,
            "stage_peak_gb": max(r["peak_gb"] for r in rows),
            "peak_gb": round(mem.peak / 2**30, 2),
            "band_runs": band_run_rows(Path(run_dir))}  # fmt: skip


def band_run_rows(run_dir: Path) -> list[dict]:
    """Band, stage, wall time and peak memory of every band run of a run."""
    from hscsim_utils.runfolder import RunFolder

    return [
        {"band": band, "stage": name, "wall_s": s["wall_s"],
         "peak_gb": round(s["peak_rss_mb"] / 1024, 2)}
        for band, state in RunFolder(run_dir).band_run_states().items()
        for name, s in state.items()
    ]  # fmt: skip


def print_chain(size: str, result: dict) -> None:
    print(f"\n{size}: stage table (s; floor = calls the stage cannot avoid)")
    print(
        f"{'stage':26s} {'wall':>7s} {'floor':>7s} {'fixed':>7s} {'peak GB':>8s}  calls"
    )
    for r in result["stages"]:
        calls = ", ".join(f"{k} {v:.1f}" for k, v in r["calls"].items())
        print(f"{r['stage']:26s} {r['wall_s']:7.1f} {r['floor_s']:7.1f} "
              f"{r['fixed_s']:7.1f} {r['peak_gb']:8.2f}  {calls}")  # fmt: skip
    for r in result.get("band_runs", []):
        blank = " " * 15
        print(f"  band {r['band']} {r['stage']:19s} {r['wall_s']:7.1f} {blank} "
              f"{r['peak_gb']:8.2f}  (beside the stages above)")  # fmt: skip
    print(f"{'runner (check, fingerprints, report)':26s} {result['runner_s']:7.1f}  "
          f"input check {result['check_s']:.1f}")  # fmt: skip
    r = result
    print(f"chain {r['chain_s']:.1f} s, floor {r['floor_s']:.1f} s, "
          f"chain/floor {r['ratio']}; peak of a stage {r['stage_peak_gb']:.2f} GB, "
          f"of the whole process tree {r['peak_gb']:.2f} GB")  # fmt: skip


def fit_scaling(results: dict[int, dict]) -> dict | None:
    """Chain wall time and peak memory as a + b x megapixels (least squares)."""
    if len(results) < 2:
        return None
    mpix = np.array([n * n / 1e6 for n in results])
    out = {}
    for key in ("chain_s", "floor_s", "stage_peak_gb"):
        y = np.array([r[key] for r in results.values()])
        slope, fixed = np.polyfit(mpix, y, 1)
        out[key] = {"fixed": round(float(fixed), 2), "per_mpix": round(float(slope), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4200])
    parser.add_argument("--tile", type=Path, default=None, help="run this tile instead")
    parser.add_argument(
        "--generator",
        choices=("galsim", "ufig"),
        default="galsim",
        help="DEMO generator (hscsim demo-tile's default: galsim)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="hscsim-bench-chain-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"benchmark folder {out}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    noops = noop_stage(out / "noop")
    noop = noops["run_kernel"]
    own = noops["own_kernel"]
    print(f"no-op stage (median of 3): {noop:.2f} s in the run's kernel, as the "
          f"chain runs it; {own:.2f} s in a kernel of its own")  # fmt: skip
    results: dict = {}
    if args.tile is not None:
        results["tile"] = chain(args.tile.resolve(), out / "run")
        print_chain(str(args.tile), results["tile"])
    else:
        from hscsim_utils.demo.generate import build_tile
        from hscsim_utils.pipeline.runner import MIN_DEMO_SIZE

        for n in args.sizes:
            print(f"building the DEMO tile of {n} x {n} px ({args.generator}) ...")
            tile = build_tile(out / f"input_{n}", (n, n), generator=args.generator)
            stages = None if n >= MIN_DEMO_SIZE else "01-04"
            results[n] = chain(tile, out / f"run_{n}", stages)
            print_chain(f"DEMO {n} x {n}" + (" (stages 01-04)" if stages else ""),
                        results[n])  # fmt: skip
    full = [r for n, r in results.items() if n == "tile" or n >= 2000]
    scaling = fit_scaling({n: r for n, r in results.items()
                           if n != "tile" and n >= 2000})  # fmt: skip
    if scaling:
        print("\nscaling (DEMO, stages 01-09): value = fixed + per_mpix x megapixels")
        for key, fit in scaling.items():
            print(
                f"  {key:8s} fixed {fit['fixed']:8.2f}  per Mpix {fit['per_mpix']:7.3f}"
            )
    last = full[-1] if full else None
    if last:
        print("\ntargets on the last patch: "
              f"chain / floor {last['ratio']} (<= {RATIO_TARGET}), "
              f"chain {last['chain_s']:.0f} s (<= {CHAIN_TARGET_S:.0f}), "
              f"no-op stage {noop:.2f} s (<= {NOOP_TARGET_S}), "
              f"peak of a stage {last['stage_peak_gb']:.2f} GB "
              f"(<= {PEAK_TARGET_GB})")  # fmt: skip
    report = {"cpu_count": os.cpu_count(), "noop_stage_s": round(noop, 2),
              "noop_own_kernel_s": round(own, 2),
              "chains": {str(k): v for k, v in results.items()},
              "scaling": scaling}  # fmt: skip
    (out / "bench_chain.json").write_text(json.dumps(report, indent=2))
    print(f"written {out / 'bench_chain.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
