"""Batch of demo tiles on Dask against the same tiles run one after the other.

    .venv/bin/python -m benchmarks.bench_batch [--size 2000 2000] [--workers 2]
        [--kill-worker-after SECONDS]

Builds four small demo tiles (different seeds and positions in the patch), runs
them as a batch on a Dask LocalCluster with two worker processes (one thread per
tile), then runs each alone in sequence (all cores), and prints both wall times,
their ratio (target: at most 0.55 on 2 cores), the CPU time of each, and whether
every tile's metrics are the same in both runs (to 1e-9 relative: floating-point
reductions may sum in another order on one thread than on two). Numba's on-disk
caches are filled first, so that neither run pays the one-time compilation.

With ``--kill-worker-after``, a second batch runs on a LocalCluster of which one
worker process is killed (SIGKILL) that many seconds in: the benchmark then checks
that every tile still succeeds with the metrics of its run alone and that no
temporary file is left in the batch folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from hscsim_utils.atomic import TMP_PREFIX
from hscsim_utils.demo.build import build_demo_tile
from hscsim_utils.pipeline import batch, runner

CENTRES = [(1400.0, 1400.0), (2800.0, 1400.0), (1400.0, 2800.0), (2800.0, 2800.0)]
TARGET_RATIO = 0.55
#: Metrics agree to this relative difference: a tile on one thread sums some
#: floating-point reductions (BLAS, numba) in another order than on two.
SAME_REL = 1e-9


def metrics(run_dir: Path) -> dict:
    """Stage 07's numbers (realism of the baseline simulation, DEMO closure)."""
    quality = json.loads((run_dir / "metrics.json").read_text())["quality"]
    return {k: quality.get(k) for k in ("realism", "closure")}


def max_rel_diff(a: dict, b: dict) -> float:
    """Largest relative difference between the numbers of two metrics dicts (inf
    where keys, None-ness or non-numbers differ)."""
    if a.keys() != b.keys():
        return float("inf")
    worst = 0.0
    for key, x in a.items():
        y = b[key]
        if isinstance(x, dict) and isinstance(y, dict):
            worst = max(worst, max_rel_diff(x, y))
        elif isinstance(x, int | float) and isinstance(y, int | float):
            scale = max(abs(x), abs(y))
            worst = max(worst, abs(x - y) / scale if scale else 0.0)
        elif x != y:
            return float("inf")
    return worst


def children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def warm_numba_caches() -> None:
    """Compile the cached numba kernels of the PSF stage once, before timing."""
    from hscsim_utils.numerics import psf_direct

    rng = np.random.default_rng(0)
    psf_direct.DirectPSFPredictor()(rng.normal(0.0, 0.01, (4, 19, 19)) + 1.0)


def timed(label: str, func) -> tuple[object, float, float]:
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    result = func()
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    print(f"{label}: {wall:.1f} s wall, {cpu:.0f} s CPU ({cpu / wall:.2f} cores busy)")
    return result, wall, cpu


def run_alone(tile: str, out: Path) -> str:
    """One tile's chain on all cores: ``"ok"`` or the failure."""
    try:
        runner.run_tile(tile, out, report=False)
    except runner.StageFailed as err:
        return f"failed: {str(err).splitlines()[0]}"
    return "ok"


def killed_worker_batch(batch_file: Path, out: Path, workers: int, after: float):
    """The batch on a LocalCluster one of whose workers is killed ``after`` s in."""
    importlib.metadata = sys.modules["importlib.metadata"]
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster)
    pid = next(iter(client.run(os.getpid).values()))
    client.close()
    timer = threading.Timer(after, os.kill, (pid, signal.SIGKILL))
    timer.start()
    try:
        return batch.run_batch(batch_file, out, executor="dask", workers=workers,
                               scheduler=cluster.scheduler_address)  # fmt: skip
    finally:
        timer.cancel()
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(2000, 2000))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--kill-worker-after", type=float, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="hscsim-bench-batch-"))
    print(f"benchmark folder {out}; load average {os.getloadavg()}")
    tiles = {}
    for i, centre in enumerate(CENTRES):
        tiles[f"tile{i}"] = str(build_demo_tile(
            out / "inputs" / f"tile{i}", size=tuple(args.size), seed=100 + i,
            centre=centre,
        ))  # fmt: skip
    batch_file = out / "batch.yaml"
    batch_file.write_text(yaml.safe_dump({"tiles": tiles}))
    warm_numba_caches()

    rows, batch_wall, batch_cpu = timed(
        f"batch on Dask ({args.workers} workers)",
        lambda: batch.run_batch(
            batch_file, out / "batch", executor="dask", workers=args.workers
        ),  # fmt: skip
    )
    alone, alone_wall, alone_cpu = timed(
        "one after the other",
        lambda: {n: run_alone(t, out / "alone" / n) for n, t in tiles.items()},
    )
    diff = {n: max_rel_diff(metrics(out / "batch" / n), metrics(out / "alone" / n))
            for n in tiles}  # fmt: skip
    same = {n: d <= SAME_REL for n, d in diff.items()}
    ratio = batch_wall / alone_wall
    print(f"\n4 tiles of {args.size[0]} x {args.size[1]} px, {os.cpu_count()} cores")
    print(f"batch on Dask ({args.workers} workers): {batch_wall:7.1f} s")
    print(f"one after the other:          {alone_wall:7.1f} s")
    print(f"ratio: {ratio:.2f} (target <= {TARGET_RATIO})")
    busy, cores = alone_cpu / alone_wall, os.cpu_count()
    print(f"alone, a tile keeps {busy:.2f} of {cores} cores busy: the ratio cannot "
          f"go below {busy / cores:.2f} even with perfect scaling")  # fmt: skip
    print(f"statuses: batch {[r['status'] for r in rows]}, alone {list(alone.values())}"
          f"; metrics equal (relative {SAME_REL:g}): {same}, largest relative "
          f"difference {max(diff.values()):.1e}")  # fmt: skip
    ok = all(same.values()) and all(r["status"] == "ok" for r in rows)
    ok &= all(status == "ok" for status in alone.values())
    result = {"size": list(args.size), "workers": args.workers, "ratio": ratio,
              "batch_wall_s": batch_wall, "alone_wall_s": alone_wall,
              "batch_cpu_s": batch_cpu, "alone_cpu_s": alone_cpu,
              "metrics_equal": same, "metrics_max_rel_diff": diff}  # fmt: skip

    if args.kill_worker_after is not None:
        killed_out = out / "killed"
        rows = killed_worker_batch(batch_file, killed_out, args.workers,
                                   args.kill_worker_after)  # fmt: skip
        same_k = {n: max_rel_diff(metrics(killed_out / n), metrics(out / "alone" / n))
                  <= SAME_REL for n in tiles}  # fmt: skip
        left = [str(p) for p in killed_out.rglob("*") if p.name.startswith(TMP_PREFIX)]
        print(f"\nworker killed after {args.kill_worker_after:.0f} s: statuses "
              f"{[r['status'] for r in rows]}; metrics equal to alone: {same_k}; "
              f"temporary files left: {left}")  # fmt: skip
        ok &= all(same_k.values()) and not left
        ok &= all(r["status"] == "ok" for r in rows)
        result["killed_worker"] = {"metrics_equal": same_k, "leftovers": left}
    (out / "bench_batch.json").write_text(json.dumps(result, indent=2))
    print(f"written to {out / 'bench_batch.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
