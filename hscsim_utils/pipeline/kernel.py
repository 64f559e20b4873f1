"""One Jupyter kernel for the stages a chain runs one after another.

Started for every stage, a kernel costs about 1 s to start and stop, and the
stage's imports (astropy, matplotlib, the stage modules, numba's cached
functions) 1-3 s more (the i-band chain on the full DEMO patch: 1.3-2.4 s per
stage between the end of one stage's last cell and the start of the next
stage's first, 1.2-2.8 s in each import cell). :class:`StageKernel` keeps one
kernel for the stages of a run and, before each stage, gives it the state a new
kernel would have where a notebook could tell the difference:

- an empty namespace (IPython's reset: no variable of an earlier stage is
  seen, and its arrays are freed, the last error's traceback too) and a new
  history session (execution counts from 1);
- no open figure, and the working folder the kernel started in;
- the stage's call log (:mod:`hscsim_utils.calltimes`), which a new kernel
  would inherit from the runner's environment.

Libraries read their thread counts once, when imported (numba, OpenMP,
OpenBLAS): a kernel is started again when the runner's thread limits
(:func:`hscsim_utils.threads.limited_threads`) differ from those it started
with, as they do in a tile of several bands once its band runs have finished,
and after a stage that imported a module of :data:`HEAVY_MODULES`.
Modules stay imported, with the state they keep (caches, warnings already
shown once). Each notebook run alone, in JupyterLab or by papermill, still has
a kernel of its own.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from hscsim_utils import calltimes
from hscsim_utils.interpreter import KERNEL_NAME
from hscsim_utils.threads import THREAD_VARS

__all__ = ["StageKernel"]

#: The kernel's own start-up log off (e.g. "running over TCP without
#: encryption" on every start; a notebook's output is unaffected), and its
#: input history in memory, as nbclient starts its kernels: no history file
#: shared by the kernels of parallel runs.
KERNEL_ARGUMENTS = [
    "--IPKernelApp.log_level=ERROR", "--HistoryManager.hist_file=:memory:",
]  # fmt: skip
#: Modules after which a stage leaves the kernel to be started again: they hold
#: memory no reset returns (TensorFlow, ~1 GB, when stage 05's PSF estimator
#: uses ufig's CNN).
HEAVY_MODULES = ("tensorflow", "torch")


class _Manager(AsyncKernelManager):
    """A kernel manager that keeps the clients papermill makes of it, so that
    their channels (and heartbeat threads) can be closed after each stage."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clients: list = []

    def client(self, **kwargs):  # noqa: ANN201 (jupyter_client's signature)
        kc = super().client(**kwargs)
        self.clients.append(kc)
        return kc

    def release_clients(self) -> None:
        """Close the channels of every client made so far."""
        for kc in self.clients:
            kc.stop_channels()
        self.clients = []


def _thread_limits() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in THREAD_VARS}


class StageKernel:
    """A kernel reused by the stages of one run (see the module docstring):
    ``papermill.execute_notebook(..., km=kernel.manager(call_log))`` for each
    stage, then :meth:`release`; :meth:`close` (or leaving the ``with`` block)
    shuts it down."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = Path(cwd)
        self.starts = 0
        self._km: _Manager | None = None
        self._limits: dict[str, str | None] = {}

    def __enter__(self) -> StageKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def manager(self, call_log: str | None) -> AsyncKernelManager:
        """The kernel manager for the next stage, its kernel prepared for it
        (started when there is none, it died, the thread limits changed or it
        holds a module of :data:`HEAVY_MODULES`); ``call_log``: the stage's
        call log, or None for none."""
        limits = _thread_limits()
        if self._km is not None and (
            limits != self._limits or not run_sync(self._km.is_alive)()
        ):
            self.close()
        if self._km is not None and self._prepare(call_log):
            self.close()
        if self._km is None:
            km = _Manager(kernel_name=KERNEL_NAME)
            run_sync(km.start_kernel)(cwd=str(self.cwd),
                                      extra_arguments=KERNEL_ARGUMENTS)  # fmt: skip
            self._km, self._limits = km, limits
            self.starts += 1
            self._prepare(call_log)
        return self._km

    def release(self) -> None:
        """Close the channels of the clients the last stage used."""
        if self._km is not None:
            self._km.release_clients()

    def close(self) -> None:
        """Shut the kernel down (a no-op when none runs). Never raises: it also
        runs while a stage's error propagates, which it must not replace."""
        if self._km is None:
            return
        km, self._km = self._km, None
        try:
            km.release_clients()
            if run_sync(km.is_alive)():
                run_sync(km.shutdown_kernel)(now=False)
            else:
                run_sync(km.cleanup_resources)()
        except Exception as err:  # a kernel already gone, a closed zmq context
            warnings.warn(f"stage kernel not shut down cleanly: {err}", stacklevel=2)

    def _prepare(self, call_log: str | None) -> bool:
        """Reset the kernel for the next stage; whether it holds a module of
        :data:`HEAVY_MODULES` (imported by an earlier stage; a reset keeps
        modules)."""
        log = (f"_os.environ[{calltimes.ENV!r}] = {str(call_log)!r}\n" if call_log
               else f"_os.environ.pop({calltimes.ENV!r}, None)\n")  # fmt: skip
        code = (
            # a new history session: execution counts from 1 again
            "get_ipython().reset(new_session=True)\n"
            "import gc as _gc, os as _os, sys as _sys\n"
            "_sys.last_type = _sys.last_value = _sys.last_traceback = None\n"
            "if 'matplotlib.pyplot' in _sys.modules:\n"
            "    _sys.modules['matplotlib.pyplot'].close('all')\n"
            f"_os.chdir({str(self.cwd)!r})\n"
            f"{log}"
            "_gc.collect()\n"
            "del _gc, _os, _sys\n"
        )
        heavy = f"any(m in __import__('sys').modules for m in {HEAVY_MODULES})"
        content = self._execute(code, {"heavy": heavy})["content"]
        if content["status"] != "ok":
            raise RuntimeError(
                f"preparing the stage kernel failed: {content.get('ename')}: "
                f"{content.get('evalue')}"
            )
        return content["user_expressions"]["heavy"]["data"]["text/plain"] == "True"

    def _execute(self, code: str, expressions: dict[str, str] | None = None) -> dict:
        """Run ``code`` silently in the kernel; its reply."""
        kc = self._km.client()
        try:
            kc.start_channels()
            run_sync(kc.wait_for_ready)(timeout=60)
            return run_sync(kc.execute_interactive)(
                code, silent=True, store_history=False, timeout=120,
                user_expressions=expressions or {}, output_hook=lambda msg: None,
            )  # fmt: skip
        finally:
            self.release()
