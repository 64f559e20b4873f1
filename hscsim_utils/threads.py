"""How many threads a tile may use, so that parallel tiles do not oversubscribe."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

THREADS_ENV = "HSCSIM_THREADS"
_LIBRARY_VARS = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)  # fmt: skip
#: Every variable :func:`limited_threads` sets.
THREAD_VARS = (THREADS_ENV, *_LIBRARY_VARS)


def n_threads() -> int:
    """Threads for ufig rendering, SExtractor and numba: ``$HSCSIM_THREADS`` or all."""
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else os.cpu_count() or 1


@contextlib.contextmanager
def limited_threads(n: int) -> Iterator[None]:
    """Limit the kernels and tools started inside the block to ``n`` threads.

    Only environment variables change (the kernels inherit them), and they are
    restored afterwards: libraries already running in this process are untouched.
    """
    saved = {name: os.environ.get(name) for name in THREAD_VARS}
    os.environ.update({name: str(n) for name in THREAD_VARS})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
