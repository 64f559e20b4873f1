"""Shared test set-up: one small demo tile and run folder for the notebook tests.

The notebooks under ``notebooks/`` are executed for real by nbval (``--nbval-lax``)
in order, on a small demo tile built once per session; their parameters default to
``$HSCSIM_DEMO_DIR`` / ``$HSCSIM_RUN_DIR``, which are set here before any kernel
starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hscsim_utils.hsc.tile import DEMO_DIR_ENV
from hscsim_utils.runfolder import RUN_DIR_ENV

#: Size of the demo tile the notebook tests run on: large enough for the PSF
#: stage to find Gaia stars, small enough for minutes of CI.
NOTEBOOK_TILE_SIZE = (2000, 2000)
NOTEBOOK_TILE_SEED = 7


def pytest_configure(config) -> None:
    base = Path(tempfile.mkdtemp(prefix="hscsim-notebooks-"))
    os.environ.setdefault(DEMO_DIR_ENV, str(base / "input"))
    os.environ.setdefault(RUN_DIR_ENV, str(base / "run"))
    os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_finish(session) -> None:
    if not any(item.path.suffix == ".ipynb" for item in session.items):
        return
    demo_dir = Path(os.environ[DEMO_DIR_ENV])
    if not (demo_dir / "tile.yaml").is_file():
        # In a subprocess: rendering imports TensorFlow and friends, whose side
        # effects (e.g. on importlib) should not leak into the test process.
        hscsim = Path(sys.executable).with_name("hscsim")
        size = [str(n) for n in NOTEBOOK_TILE_SIZE]
        subprocess.run(
            [hscsim, "demo-tile", "--out", demo_dir, "--size", *size,
             "--seed", str(NOTEBOOK_TILE_SEED)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
