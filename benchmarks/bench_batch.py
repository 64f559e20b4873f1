"""Batch of demo tiles on Dask against the same tiles run one after the other.

    .venv/bin/python benchmarks/bench_batch.py [--size 2000 2000] [--workers 2]

Builds four small demo tiles (different seeds and positions in the patch), runs
them as a batch on a Dask LocalCluster with two worker processes, then runs each
alone in sequence, and prints both wall times, their ratio (target: at most 0.65
on 2 cores) and whether every tile's metrics are the same in both runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from hscsim_utils import batch, runner
from hscsim_utils.demo_tile import build_demo_tile

CENTRES = [(1400.0, 1400.0), (2800.0, 1400.0), (1400.0, 2800.0), (2800.0, 2800.0)]


def metrics(run_dir: Path) -> dict:
    data = json.loads((run_dir / "metrics.json").read_text())
    return {k: data.get(k) for k in ("realism", "closure")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(2000, 2000))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="hscsim-bench-batch-"))
    tiles = {}
    for i, centre in enumerate(CENTRES):
        tiles[f"tile{i}"] = str(build_demo_tile(
            out / "inputs" / f"tile{i}", size=tuple(args.size), seed=100 + i,
            centre=centre,
        ))  # fmt: skip
    batch_file = out / "batch.yaml"
    batch_file.write_text(yaml.safe_dump({"tiles": tiles}))

    t0 = time.perf_counter()
    rows = batch.run_batch(batch_file, out / "batch", executor="dask",
                           workers=args.workers)  # fmt: skip
    batch_wall = time.perf_counter() - t0

    t0 = time.perf_counter()
    for name, tile in tiles.items():
        runner.run_tile(tile, out / "alone" / name, report=False)
    alone_wall = time.perf_counter() - t0

    same = {n: metrics(out / "batch" / n) == metrics(out / "alone" / n) for n in tiles}
    print(f"\n4 tiles of {args.size[0]} x {args.size[1]} px")
    print(f"batch on Dask ({args.workers} workers): {batch_wall:7.1f} s")
    print(f"one after the other:          {alone_wall:7.1f} s")
    print(f"ratio: {batch_wall / alone_wall:.2f} (target <= 0.65)")
    print(f"statuses: {[r['status'] for r in rows]}; metrics equal: {same}")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
