"""Peak resident memory of a process tree, for the chain's timing and benchmarks."""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterable


class PeakMemory:
    """Peak summed resident memory (bytes) of a process tree while a block runs.

    A thread samples every ``interval`` seconds the resident memory of the
    descendants of process ``pid`` (this process when None), and of the process
    itself with ``include_self``; ``exclude`` gives (at each sample) processes
    whose trees do not count (work running beside the measured one). Sampling
    stops at the end of the block or when the process has gone. ``wall`` is the
    block's wall time in seconds::

        with PeakMemory() as mem:  # children of this process, e.g. a kernel
            ...
        mem.peak, mem.wall
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        include_self: bool = False,
        interval: float = 0.2,
        exclude: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.include_self = include_self
        self.exclude = exclude
        self.interval = interval
        self.peak = 0
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                procs = root.children(recursive=True)
            except psutil.Error:
                return  # the process has gone
            if self.include_self:
                procs.append(root)
            if self.exclude is not None:
                left_out = _trees(self.exclude())
                procs = [p for p in procs if p.pid not in left_out]
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()


def _trees(pids: Iterable[int]) -> set[int]:
    """``pids`` and all their descendants (those still running)."""
    import psutil

    out = set()
    for pid in pids:
        out.add(pid)
        try:
            out.update(p.pid for p in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    return out


def max_rss() -> tuple[int, int]:
    """High-water resident memory (bytes) of this process and of its waited-for
    children so far, as the kernel records it (``getrusage``)."""
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes or KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own * unit, children * unit
