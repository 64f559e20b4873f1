"""How many threads a tile may use, so that parallel tiles do not oversubscribe."""

from __future__ import annotations

import os

THREADS_ENV = "HSCSIM_THREADS"
_LIBRARY_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)  # fmt: skip


def n_threads() -> int:
    """Threads for ufig rendering, SExtractor and numba: ``$HSCSIM_THREADS`` or all."""
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else os.cpu_count() or 1


def limit_threads(n: int) -> None:
    """Limit this process and the kernels it starts to ``n`` threads."""
    os.environ[THREADS_ENV] = str(n)
    for var in _LIBRARY_VARS:
        os.environ[var] = str(n)
