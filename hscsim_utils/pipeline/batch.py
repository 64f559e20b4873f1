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
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hscsim_utils.errors import HscsimError, InputError
from hscsim_utils.metrics import lookup, read_metrics
from hscsim_utils.runfolder import METRICS_FILE, RunFolder

#: Metric columns of the summary, named ``<section>.<metric>`` after the section
#: of ``metrics.json`` they come from: ``quality`` describes stage 06's baseline
#: simulation, ``psf_finetune`` the simulation with the improved PSF model (after
#: the fine-tuning), ``background_finetune`` the last simulation of stage 09.
SUMMARY_METRICS: dict[str, tuple[str, ...]] = {
    "quality.bkg_std_ratio": ("quality", "realism", "bkg_std_ratio"),
    "quality.bkg_ks": ("quality", "realism", "bkg_ks"),
    "quality.mag_auto_ks": ("quality", "realism", "mag_auto_ks"),
    "quality.n_detect_ratio": ("quality", "realism", "n_detect_ratio"),
    "psf_finetune.psf_fwhm_max_abs_diff": (
        "psf_finetune", "after", "psf_fwhm_max_abs_diff",
    ),
    "background_finetune.bkg_std_ratio": (
        "background_finetune", "realism", "bkg_tuned", "bkg_std_ratio",
    ),
    "background_finetune.bkg_ks": (
        "background_finetune", "realism", "bkg_tuned", "bkg_ks",
    ),
}  # fmt: skip
#: A tile's full error text, in its run folder (the summary keeps one short line).
ERROR_LOG = "batch_error.log"
#: Characters of the error shown in the printed summary table.
ERROR_WIDTH = 60


def load_batch(path: str | os.PathLike) -> dict[str, Path]:
    """Tile names and tile files of a batch YAML.

    ``tiles:`` is a list of tile files, each named by its ``tile_name``, or a
    mapping from run names to tile files. Two tiles with one name are an error
    (their runs would share a folder).
    """
    from hscsim_utils.hsc.tile import load_tile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "batch file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    tiles = raw.get("tiles") if isinstance(raw, dict) else None
    if not isinstance(tiles, list | dict) or not tiles:
        raise InputError(path, "needs a non-empty 'tiles:' list or mapping")
    unknown = set(raw) - {"tiles"}
    if unknown:
        raise InputError(path, f"unknown keys {sorted(unknown)}")
    pairs = tiles.items() if isinstance(tiles, dict) else [(None, t) for t in tiles]
    out: dict[str, Path] = {}
    for name, tile in pairs:
        tile_path = (path.parent / str(tile)).resolve()
        if not tile_path.is_file():
            raise InputError(path, f"tile {name or tile}: file {tile_path} not found")
        name = str(name) if name is not None else load_tile(tile_path).tile_name
        if name in out:
            raise InputError(
                path,
                f"tiles {out[name]} and {tile_path} are both named {name!r}: give "
                "them distinct tile_name values, or list them as a mapping of names",
            )
        out[name] = tile_path
    return out


def run_one(
    name: str,
    tile_file: Path,
    out_root: Path,
    threads: int = 1,
    attempts: int = 3,
    notebook_dir: Path | None = None,
    settings: tuple[str, ...] = (),
    bands: str | None = None,
) -> dict:
    """Run one tile's chain (in a worker); never raises, returns its summary.

    ``settings`` are ``STAGE.PARAMETER=VALUE`` assignments for every tile;
    ``bands`` the bands to run (``--bands``; default all of the tile's)."""
    from hscsim_utils.pipeline import runner
    from hscsim_utils.threads import limited_threads

    out = Path(out_root) / name
    kwargs = {"report": True, "settings": tuple(settings), "bands": bands}
    if notebook_dir is not None:
        kwargs["notebook_dir"] = Path(notebook_dir)
    start = time.perf_counter()
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            with limited_threads(threads):
                runner.run_tile(tile_file, out, label=name, **kwargs)
            error = ""
            break
        except HscsimError as err:  # a notebook or input error: deterministic
            error = str(err)
            break
        except Exception as err:  # kernel start-up races and other transients
            error = f"{type(err).__name__}: {err} (attempt {attempt}/{attempts})"
            time.sleep(1.0 * attempt)
    _keep_error(out, error)
    return _summary(name, out, error, time.perf_counter() - start)


def _keep_error(out: Path, error: str) -> None:
    """The tile's full error text in its run folder (removed after a success)."""
    from hscsim_utils.atomic import atomic_path

    log = Path(out) / ERROR_LOG
    if error:
        with atomic_path(log) as tmp:
            tmp.write_text(error + "\n")
    else:
        log.unlink(missing_ok=True)


def _summary(name: str, out: Path, error: str, wall: float) -> dict:
    metrics = read_metrics(RunFolder(out).root / METRICS_FILE)
    row = {
        "tile": name,
        "status": "failed" if error else "ok",
        "wall_s": round(wall, 1),
        "error": error.splitlines()[0] if error else "",
    }
    row.update({k: lookup(metrics, keys) for k, keys in SUMMARY_METRICS.items()})
    return row


def run_batch(
    batch_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    executor: str = "local",
    workers: int = 2,
    scheduler: str | None = None,
    threads: int | None = None,
    notebook_dir: Path | None = None,
    settings: tuple[str, ...] = (),
    bands: str | None = None,
) -> list[dict]:
    """Run every tile of ``batch_file``; write and print the summary table.

    ``settings`` (``STAGE.PARAMETER=VALUE``) apply to every tile, over each tile
    file's ``stages:`` section; ``bands`` (``--bands``) to every tile too."""
    tiles = load_batch(batch_file)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = [(name, tile, out_dir, threads, 3, notebook_dir, tuple(settings), bands)
            for name, tile in tiles.items()]  # fmt: skip
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

    from hscsim_utils.atomic import atomic_path

    df = pd.DataFrame(rows)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    shown = df.copy()
    if "error" in shown:
        shown["error"] = [_shorten(str(e)) for e in shown["error"].fillna("")]
    print(shown.to_string(index=False, na_rep="-"))
    print(f"summary: {path} (full errors: <tile>/{ERROR_LOG})")


def _shorten(text: str, width: int = ERROR_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def collect(batch_file: str | os.PathLike, out_dir: str | os.PathLike) -> list[dict]:
    """Summary of runs made elsewhere (a SLURM array): read each tile's run folder.

    A tile is ``ok`` when every stage it ran succeeded, ``failed`` when one failed
    (its error from ``batch_error.log`` or the stage state), ``not run`` without a
    run folder. Writes ``summary.csv`` into ``out_dir`` and prints the table.
    """
    from hscsim_utils.runfolder import STATE_FILE

    out_dir = Path(out_dir).resolve()
    rows = []
    for name in load_batch(batch_file):
        run = out_dir / name
        try:
            state = json.loads((run / STATE_FILE).read_text())
        except (OSError, ValueError):
            state = {}
        failed = [stage for stage, s in state.items() if s.get("status") != "ok"]
        log = run / ERROR_LOG
        error = ""
        if failed:  # a log left by an earlier failed batch run says nothing now
            error = log.read_text().strip() if log.is_file() else ""
            error = error or f"stage {failed[0]} failed (see {run / 'notebooks'})"
        wall = sum(s.get("wall_s", 0.0) for s in state.values())
        row = _summary(name, run, error, wall) if state else None
        if row is None:
            row = {"tile": name, "status": "not run", "wall_s": None, "error": ""}
            row.update(dict.fromkeys(SUMMARY_METRICS))
        rows.append(row)
    write_summary(rows, out_dir / "summary.csv")
    return rows


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each array task (one tile) of the SLURM script."""

    cpus: int = 2
    mem: str = "8G"
    time: str = "02:00:00"
    partition: str | None = None
    account: str | None = None


def slurm_script(
    batch_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: SlurmOptions = SlurmOptions(),
    settings: tuple[str, ...] = (),
    bands: str | None = None,
) -> str:
    """A SLURM job-array script running one tile per array task.

    ``settings`` (``STAGE.PARAMETER=VALUE``) and ``bands`` (``--bands``) are
    passed to every ``hscsim run``.

    Names and tile paths are quoted bash array elements, so paths with spaces
    work. After the array, ``hscsim batch BATCH --out OUT --collect`` gathers
    the summary (the script's last comment says so).
    """
    tiles = load_batch(batch_file)
    out_dir = Path(out_dir).resolve()
    hscsim = shlex.quote(str(Path(sys.executable).with_name("hscsim")))
    q = shlex.quote
    sbatch = {
        "job-name": "hscsim", "array": f"0-{len(tiles) - 1}",
        "cpus-per-task": options.cpus, "mem": options.mem, "time": options.time,
        "partition": options.partition, "account": options.account,
        "output": f"{out_dir}/slurm-%A_%a.log",
    }  # fmt: skip
    header = "\n".join(f"#SBATCH --{k}={v}" for k, v in sbatch.items() if v)
    sets = "".join(f" --set {q(s)}" for s in settings)
    sets += f" --bands {q(bands)}" if bands else ""
    names = " ".join(q(n) for n in tiles)
    paths = " ".join(q(str(t)) for t in tiles.values())
    collect_cmd = (
        f"{hscsim} batch {q(str(Path(batch_file).resolve()))} "
        f"--out {q(str(out_dir))} --collect"
    )
    return f"""#!/bin/bash
{header}
# One HSC tile per array task: hscsim run --tile TILE --out OUT/NAME.
# When the array has finished, gather summary.csv with:
#   {collect_cmd}
set -euo pipefail
NAMES=({names})
TILES=({paths})
NAME=${{NAMES[$SLURM_ARRAY_TASK_ID]}}
TILE=${{TILES[$SLURM_ARRAY_TASK_ID]}}
OUT={q(str(out_dir))}
exec {hscsim} run --tile "$TILE" --out "$OUT/$NAME" \\
    --threads "$SLURM_CPUS_PER_TASK"{sets}
"""
