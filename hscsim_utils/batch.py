"""Run many tiles: one tile is one chain, on a process pool or on Dask.

``local`` uses a process pool on this machine. ``dask`` uses Dask distributed: a
``LocalCluster`` by default or any running scheduler (such as one started by
dask-jobqueue on SLURM). Each tile is limited to ``threads`` threads so that
workers do not oversubscribe the cores. A tile whose run dies for a transient
reason (a kernel that fails to start, a lost worker) is retried; a tile that fails
for good is reported with its error and the others go on.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shlex
import sys
import time
from pathlib import Path

import yaml

from .errors import HscsimError, InputError
from .metrics import read_metrics
from .runfolder import RunFolder

SUMMARY_METRICS = ("bkg_std_ratio", "bkg_ks", "mag_auto_ks", "n_detect_ratio",
                   "psf_fwhm_max_abs_diff")  # fmt: skip


def load_batch(path: str | os.PathLike) -> dict[str, Path]:
    """Tile names and tile files of a batch YAML (``tiles:`` list or mapping)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "batch file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    tiles = raw.get("tiles") if isinstance(raw, dict) else None
    if isinstance(tiles, list):
        tiles = {Path(t).parent.name or Path(t).stem: t for t in tiles}
    if not isinstance(tiles, dict) or not tiles:
        raise InputError(path, "needs a non-empty 'tiles:' list or mapping")
    unknown = set(raw) - {"tiles"}
    if unknown:
        raise InputError(path, f"unknown keys {sorted(unknown)}")
    out = {}
    for name, tile in tiles.items():
        tile_path = (path.parent / str(tile)).resolve()
        if not tile_path.is_file():
            raise InputError(path, f"tile {name}: file {tile_path} not found")
        out[str(name)] = tile_path
    return out


def run_one(
    name: str,
    tile_file: Path,
    out_root: Path,
    threads: int = 1,
    attempts: int = 3,
    notebook_dir: Path | None = None,
) -> dict:
    """Run one tile's chain (in a worker); never raises, returns its summary."""
    from . import runner
    from .threads import limited_threads

    out = Path(out_root) / name
    kwargs = {"report": True}
    if notebook_dir is not None:
        kwargs["notebook_dir"] = Path(notebook_dir)
    start = time.perf_counter()
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            with limited_threads(threads):
                runner.run_tile(tile_file, out, **kwargs)
            error = ""
            break
        except HscsimError as err:  # a notebook or input error: deterministic
            error = str(err)
            break
        except Exception as err:  # kernel start-up races and other transients
            error = f"{type(err).__name__}: {err} (attempt {attempt}/{attempts})"
            time.sleep(1.0 * attempt)
    return _summary(name, out, error, time.perf_counter() - start)


def _summary(name: str, out: Path, error: str, wall: float) -> dict:
    realism = read_metrics(RunFolder(out).root / "metrics.json").get("realism", {})
    row = {
        "tile": name,
        "status": "failed" if error else "ok",
        "wall_s": round(wall, 1),
        "error": error.splitlines()[0] if error else "",
    }
    row.update({k: realism.get(k) for k in SUMMARY_METRICS})
    return row


def run_batch(
    batch_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    executor: str = "local",
    workers: int = 2,
    scheduler: str | None = None,
    threads: int | None = None,
    notebook_dir: Path | None = None,
) -> list[dict]:
    """Run every tile of ``batch_file``; write and print the summary table."""
    tiles = load_batch(batch_file)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = [(name, tile, out_dir, threads, 3, notebook_dir) for name, tile in
            tiles.items()]  # fmt: skip
    if executor == "local":
        rows = _run_local(jobs, workers)
    elif executor == "dask":
        rows = _run_dask(jobs, workers, scheduler)
    else:
        raise InputError("--executor", f"must be 'local' or 'dask', got {executor!r}")
    rows.sort(key=lambda r: r["tile"])
    write_summary(rows, out_dir / "summary.csv")
    return rows


def _run_local(jobs: list[tuple], workers: int) -> list[dict]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(run_one, *job): job[0] for job in jobs}
        rows = []
        for fut in tqdm(as_completed(futures), total=len(futures), desc="tiles"):
            rows.append(_result(fut, futures[fut]))
    return rows


def _run_dask(jobs: list[tuple], workers: int, scheduler: str | None) -> list[dict]:
    # Importing ufig's TensorFlow stack can drop the ``metadata`` attribute of
    # ``importlib`` (the module stays loaded); distributed needs it.
    importlib.metadata = sys.modules["importlib.metadata"]
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                               processes=True, dashboard_address=None)  # fmt: skip
        client = Client(cluster)
    try:
        futures = {
            client.submit(run_one, *job, key=f"tile-{job[0]}", pure=False,
                          retries=2): job[0]
            for job in jobs
        }  # fmt: skip
        rows = []
        for fut in tqdm(as_completed(futures), total=len(futures), desc="tiles"):
            rows.append(_result(fut, futures[fut]))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return rows


def _result(future, name: str) -> dict:
    try:
        return future.result()
    except Exception as err:  # the worker itself died for good
        return {"tile": name, "status": "failed", "wall_s": None,
                "error": f"{type(err).__name__}: {err}"}  # fmt: skip


def write_summary(rows: list[dict], path: Path) -> None:
    """Write the summary CSV atomically and print it as a table."""
    import pandas as pd

    from .atomic import atomic_path

    df = pd.DataFrame(rows)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    print(df.to_string(index=False, na_rep="-"))
    print(f"summary: {path}")


def slurm_script(
    batch_file: str | os.PathLike, out_dir: str | os.PathLike, threads: int = 2
) -> str:
    """A SLURM job-array script running one tile per array task."""
    tiles = load_batch(batch_file)
    out_dir = Path(out_dir).resolve()
    hscsim = Path(sys.executable).with_name("hscsim")
    lines = [f"    {shlex.quote(f'{n} {t}')}" for n, t in tiles.items()]
    return f"""#!/bin/bash
#SBATCH --job-name=hscsim
#SBATCH --array=0-{len(tiles) - 1}
#SBATCH --cpus-per-task={threads}
#SBATCH --mem=8G
#SBATCH --time=01:00:00
#SBATCH --output={out_dir}/slurm-%A_%a.log
# One HSC tile per array task: hscsim run --tile TILE --out {out_dir}/NAME
set -euo pipefail
TILES=(
{chr(10).join(lines)}
)
read -r NAME TILE <<< "${{TILES[$SLURM_ARRAY_TASK_ID]}}"
export HSCSIM_THREADS=$SLURM_CPUS_PER_TASK OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
exec {hscsim} run --tile "$TILE" --out "{out_dir}/$NAME"
"""
