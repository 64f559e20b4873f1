"""This interpreter's folder first on ``PATH``, for hscsim and everything it starts.

Several tools that hscsim drives run ``python`` through the shell rather than
``sys.executable``: on its first use PyCosmo (galsbi's cosmology) compiles its C
extension with sympy2c, which runs ``python setup.py build_ext --inplace``. Outside
an activated virtualenv (``.venv/bin/hscsim`` called by path, a Jupyter or
papermill kernel, a Dask or process-pool worker, cron, SLURM) the ``python`` on
``PATH`` is another interpreter without Cython or numpy, and the build fails with
``No module named 'Cython'``.

Importing :mod:`hscsim_utils` therefore puts the folder of ``sys.executable`` first
on ``PATH`` of the process. Every process hscsim starts inherits it: notebook
kernels, local Dask and process-pool workers, SExtractor and pip subprocesses.
Workers of a remote Dask scheduler import :mod:`hscsim_utils` before running a
tile and so get it too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = [
    "KERNEL_DISPLAY", "KERNEL_NAME", "interpreter_bin", "put_interpreter_first_on_path",
]  # fmt: skip

#: The Jupyter kernel of this interpreter, installed by ``make setup`` and named
#: in every notebook, so that no other ``python3`` kernelspec can stand in for it.
KERNEL_NAME = "hscsim"
KERNEL_DISPLAY = "Python 3 (hscsim)"


def interpreter_bin() -> str:
    """Folder of this interpreter (``.venv/bin`` of the project's environment)."""
    return str(Path(sys.executable).parent)


def put_interpreter_first_on_path() -> None:
    """Make :func:`interpreter_bin` the first entry of ``PATH`` (idempotent)."""
    bindir = interpreter_bin()
    entries = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    if entries[:1] == [bindir]:
        return
    os.environ["PATH"] = os.pathsep.join([bindir, *(p for p in entries if p != bindir)])
