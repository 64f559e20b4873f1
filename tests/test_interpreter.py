"""Every entry point runs with this environment's interpreter first on PATH.

Started from a ``PATH`` without the environment's ``bin`` folder (as ``.venv/bin/
hscsim`` called by path, cron or a fresh shell does), the console script, the
notebook kernels of a run and the workers of a process pool and of a Dask
cluster must all find this environment's ``python`` first: sympy2c compiles
PyCosmo's extension with ``python setup.py build_ext`` from PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hscsim_utils import interpreter
from hscsim_utils.pipeline import runner
from tests.synthetic import write_notebooks, write_tile_file

BIN = interpreter.interpreter_bin()
#: PATH of a shell that never activated the environment.
BARE_PATH = os.pathsep.join(
    p for p in ("/usr/local/bin", "/usr/bin", "/bin") if os.path.isdir(p)
)

WHICH_PYTHON = """# %% tags=["parameters"]
tile_file = ""
run_dir = ""
# %%
import json, os, shutil, sys
from pathlib import Path
# no hscsim import here: the kernel inherits PATH from the process that started it
(Path(run_dir) / "python.json").write_text(json.dumps({
    "which": shutil.which("python"), "first": os.environ["PATH"].split(os.pathsep)[0],
    "executable": sys.executable}))
"""

DRIVER = """
import json, sys
from pathlib import Path
from hscsim_utils.pipeline import batch
from hscsim_utils.pipeline import runner
tmp, notebooks = Path(sys.argv[1]), Path(sys.argv[2])
runner.run_tile(tmp / "tiles" / "a" / "tile.yaml", tmp / "run", notebook_dir=notebooks)
for executor in ("local", "dask"):
    rows = batch.run_batch(tmp / "batch.yaml", tmp / executor, executor=executor,
                           workers=2, notebook_dir=notebooks)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
"""


def test_put_first_is_idempotent(monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join(["/opt/x", BIN, "/usr/bin"]))
    interpreter.put_interpreter_first_on_path()
    interpreter.put_interpreter_first_on_path()
    assert os.environ["PATH"].split(os.pathsep) == [BIN, "/opt/x", "/usr/bin"]


def test_import_puts_the_interpreter_first():
    code = "import os, hscsim_utils; print(os.environ['PATH'].split(os.pathsep)[0])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=os.environ | {"PATH": BARE_PATH},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == BIN


def test_console_script_from_a_bare_path():
    hscsim = Path(BIN) / "hscsim"
    done = subprocess.run(
        [str(hscsim), "--help"], env=os.environ | {"PATH": BARE_PATH}, check=False
    )
    assert done.returncode == 0


def test_kernelspec_is_this_interpreter():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(runner.KERNEL_NAME)
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve()


@pytest.mark.slow
def test_kernels_and_workers_find_this_python(tmp_path):
    from hscsim_utils.stages.registry import STAGES

    # the runner runs every registered stage: stage 01 records, the rest are empty
    empty = WHICH_PYTHON.split("# %%\n")[0] + "# %%\n"
    stand_ins = {s.notebook.removesuffix(".ipynb"): empty for s in STAGES}
    stand_ins["01_sky_and_sysmaps"] = WHICH_PYTHON
    notebooks = write_notebooks(tmp_path / "nb", stand_ins)
    tiles = {}
    for name, seed in (("a", 1), ("b", 2)):
        folder = tmp_path / "tiles" / name
        folder.mkdir(parents=True)
        tiles[name] = str(write_tile_file(folder, name, seed=seed))
    (tmp_path / "batch.yaml").write_text(yaml.safe_dump({"tiles": tiles}))
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path), str(notebooks)],
        env=os.environ | {"PATH": BARE_PATH},
        check=True,
        timeout=600,
    )
    records = sorted(tmp_path.glob("*/**/python.json"))
    assert len(records) == 5  # one run, two tiles on a pool, two on Dask
    python = shutil.which("python", path=BIN)
    for path in records:
        seen = json.loads(path.read_text())
        assert seen["first"] == BIN, path
        assert seen["which"] == python, path
        assert Path(seen["executable"]).parent == Path(BIN), path
