"""PyCosmo's compiled cosmology, built once by the set-up (``hscsim data``).

galsbi samples galaxy distances with ``PyCosmo.build()`` (flat LCDM). On its
first call PyCosmo generates C code for its background and perturbation equations
with sympy2c and compiles it into a Python extension (about 1-2 minutes on 2
cores, gcc and Cython needed), kept under ``$HOME/_cache/sympy2c/<platform>/
<sympy2c>__np_<numpy>_py<python>/``. sympy2c runs the build as
``python setup.py build_ext --inplace`` through the shell, so the ``python`` on
``PATH`` must be this environment's (see :mod:`hscsim_utils.interpreter`).

Building it in the set-up keeps that minute and any compiler failure out of the
first simulation or demo-tile build. The build runs in a subprocess (PyCosmo
pulls in sympy; ``hscsim data`` with a filled cache stays a second). A marker
``<cache>/_built/pycosmo.json`` records the sympy2c folder and the versions it was
built for; the build is repeated when the versions change or the folder is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from hscsim_utils.atomic import write_json
from hscsim_utils.compat import check_version
from hscsim_utils.errors import ToolError

check_version("PyCosmo", "2.3.3", __name__)
check_version("sympy2c", "2.5.1", __name__)

__all__ = ["ensure_pycosmo_extension"]

MARKER = Path("_built") / "pycosmo.json"
_PACKAGES = ("PyCosmo", "sympy2c", "numpy", "Cython")

#: Run in a subprocess: build the model galsbi uses, print where sympy2c keeps it.
_BUILD = """
import json, PyCosmo
from sympy2c.utils import sympy2c_cache_folder
PyCosmo.build()
print("HSCSIM_SYMPY2C_FOLDER=" + json.dumps(sympy2c_cache_folder()))
"""


def _versions() -> dict[str, str]:
    found = {name: version(name) for name in _PACKAGES}
    return found | {"python": sys.version.split()[0]}


def _is_built(marker: Path) -> bool:
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    folder = Path(record.get("folder", ""))
    return (
        record.get("versions") == _versions()
        and folder.is_dir()
        and any(folder.rglob("*.so"))
    )


def ensure_pycosmo_extension(cache_root: str | os.PathLike, force: bool = False) -> str:
    """Compile PyCosmo's extension unless the marker says it is built; print one line.

    Returns ``"verified"`` or ``"built"``. A failed build raises :class:`ToolError`
    with the end of the compiler's output.
    """
    marker = Path(cache_root) / MARKER
    label = "PyCosmo C extension"
    if not force and _is_built(marker):
        print(f"{label:<30} {'verified':<10} sympy2c")
        return "verified"
    print(f"{label}: compiling with sympy2c (1-2 minutes, once per machine)")
    start = time.perf_counter()
    env = os.environ | {"REBUILD_WRAPPER": "1"} if force else None
    done = subprocess.run(
        [sys.executable, "-c", _BUILD], capture_output=True, text=True, env=env
    )
    lines = [ln for ln in done.stdout.splitlines() if "HSCSIM_SYMPY2C_FOLDER=" in ln]
    if done.returncode != 0 or not lines:
        tail = (done.stdout + done.stderr).strip()[-1500:]
        raise ToolError(
            f"PyCosmo's C extension failed to compile (exit {done.returncode}); "
            f"gcc, Cython and this environment's python first on PATH are needed. "
            f"Last output:\n{tail}"
        )
    folder = json.loads(lines[-1].split("=", 1)[1])
    write_json(marker, {"folder": folder, "versions": _versions()})
    seconds = time.perf_counter() - start
    print(f"{label:<30} {'built':<10} sympy2c in {seconds:.0f} s ({folder})")
    return "built"
