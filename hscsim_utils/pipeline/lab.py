"""JupyterLab on the stage notebooks, pointed at one run and one tile.

A notebook opened without parameters reads the tile ``$HSCSIM_TILE_FILE`` (else the
demo tile in ``$HSCSIM_DEMO_DIR``, default ``runs/demo/input``) and reads and writes
the run folder ``$HSCSIM_RUN_DIR`` (default ``runs/demo/run``).
``hscsim lab --run RUN --tile TILE`` sets both for the server and its kernels, and
opens a small workspace ``RUN/lab/`` holding two links: ``stages`` (the numbered
notebooks of the repository) and ``executed`` (the run's executed notebooks and
figures). The ``.py`` twins of the notebooks are hidden in the file browser
(jupytext keeps them in sync when a notebook is saved).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TILE_FILE_ENV, default_tile_file
from hscsim_utils.pipeline.runner import NOTEBOOK_DIR
from hscsim_utils.runfolder import RUN_DIR_ENV, RunFolder

__all__ = ["LabLaunch", "lab_launch", "run_lab"]

#: Files the file browser does not list (the paired scripts, caches).
HIDDEN = ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~", "*.py"]


@dataclass(frozen=True)
class LabLaunch:
    """What starting JupyterLab needs: its command line, environment and folder."""

    argv: list[str]
    env: dict[str, str]
    root: Path


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target.resolve():
            return
        link.unlink()
    link.symlink_to(target, target_is_directory=True)


def lab_launch(
    run_dir: str | os.PathLike,
    tile_file: str | os.PathLike | None = None,
    extra_args: list[str] | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> LabLaunch:
    """Prepare ``RUN/lab/`` and the JupyterLab command for that run and tile."""
    tile = Path(tile_file).resolve() if tile_file else default_tile_file().resolve()
    if not tile.is_file():
        raise InputError(tile, "tile file not found (build the demo or give --tile)")
    run = RunFolder(Path(run_dir).resolve())
    root = run.root / "lab"
    root.mkdir(parents=True, exist_ok=True)
    _link(root / "stages", notebook_dir.resolve())
    _link(root / "executed", run.notebooks_dir)
    argv = [
        str(Path(sys.executable).with_name("jupyter-lab")),
        f"--ServerApp.root_dir={root}",
        f"--ContentsManager.hide_globs={HIDDEN!r}",
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        *(extra_args or []),
    ]
    env = os.environ | {RUN_DIR_ENV: str(run.root), TILE_FILE_ENV: str(tile)}
    return LabLaunch(argv, env, root)


def run_lab(
    run_dir: str | os.PathLike,
    tile_file: str | os.PathLike | None = None,
    extra_args: list[str] | None = None,
) -> int:
    """Start JupyterLab (until it is stopped); return its exit status."""
    launch = lab_launch(run_dir, tile_file, extra_args)
    print(f"JupyterLab on {launch.root}: stages/ (notebooks), executed/ (this run)")
    print(f"  {TILE_FILE_ENV}={launch.env[TILE_FILE_ENV]}")
    print(f"  {RUN_DIR_ENV}={launch.env[RUN_DIR_ENV]}")
    return subprocess.call(launch.argv, env=launch.env)
