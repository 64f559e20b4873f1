"""Benchmark of stage 06 (GalSBI + UFig) on a full-size 4200 x 4200 patch.

Target: at most 2 minutes wall time and 4 GB peak resident memory on 2 cores.
The stage runs in a child process, as in the chain; this script samples the
resident memory of that process and everything it starts (SExtractor) and
prints wall time and peak RSS.

Without ``--run-dir``/``--tile`` a run folder with the stage 01-05 products of a
flat 4200 x 4200 patch is fabricated first (``tests/fabricated_run.py``: real
Besancon and Gaia stars of the XMM-LSS field, constant maps and PSF)::

    .venv/bin/python -m benchmarks.bench_simulate
    .venv/bin/python -m benchmarks.bench_simulate --run-dir runs/demo/run \\
        --tile runs/demo/input/tile.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hscsim_utils.memory import PeakMemory

REPO = Path(__file__).resolve().parent.parent
LIMIT_S = 120.0
LIMIT_GB = 4.0
CHILD = """
import json, time
from hscsim_utils.stages import simulate
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.hsc.tile import load_tile
run = RunFolder({run!r})
if {tile!r}:
    tile = load_tile({tile!r})
else:
    from tests.fabricated_run import make_tile
    tile = make_tile(run.root, seed=42)
t0 = time.perf_counter()
sim = simulate.run_simulation(tile, run, measure_psf={measure!r})
print("RESULT", json.dumps({{"run_simulation_s": time.perf_counter() - t0,
                            "ufig_s": sim.wall_s}}))
"""


def fabricate(root: Path) -> None:
    from tests.fabricated_run import make_run_folder

    make_run_folder(root, shape=(4200, 4200))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="", help="run folder with stages 01-05")
    parser.add_argument("--tile", default="", help="tile YAML of that run folder")
    parser.add_argument("--measure-psf", default="auto", help="auto, direct or none")
    args = parser.parse_args()
    if bool(args.run_dir) != bool(args.tile):
        parser.error("give both --run-dir and --tile, or neither")
    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        run_dir = Path(args.run_dir or Path(tmp) / "run").resolve()
        if not args.run_dir:
            print(f"fabricating a 4200 x 4200 run folder in {run_dir} ...")
            fabricate(run_dir)
        code = CHILD.format(run=str(run_dir),
                            tile=str(Path(args.tile).resolve()) if args.tile else "",
                            measure=args.measure_psf)  # fmt: skip
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        # in the repository folder: the child imports tests.fabricated_run
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        with PeakMemory(proc.pid, include_self=True, interval=0.1) as mem:
            out, _ = proc.communicate()
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(out[-5000:])
        print(f"stage 06 failed with exit code {proc.returncode}")
        return 1
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
                        .removeprefix("RESULT "))  # fmt: skip
    peak_gb = mem.peak / 1e9
    print(f"cores: {os.cpu_count()}, load average before: {load_before:.2f}")
    print(f"stage 06 wall time (process): {wall:7.1f} s   (limit {LIMIT_S:.0f} s)")
    print(f"  run_simulation:             {result['run_simulation_s']:7.1f} s")
    print(f"  GalSBI + UFig (ivy run):    {result['ufig_s']:7.1f} s")
    print(f"peak RSS, children included:  {peak_gb:7.2f} GB  (limit {LIMIT_GB:.0f} GB)")
    ok = wall <= LIMIT_S and peak_gb <= LIMIT_GB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
