"""Wall time of the calls a stage cannot avoid, logged for the chain benchmark.

The work of a stage that no amount of engineering around it removes is its
calls to the simulation (one GalSBI + UFig run), to external tools (SExtractor)
and to the core estimators (photutils' Background2D, the exposure maps, ufig's
PSF estimation). Each such call is wrapped in :func:`floor_call`; when the
environment variable :data:`ENV` names a file (the runner sets it for every
stage it runs), the call's name and wall time are appended to it as one JSON
line. The stage's wall time minus the sum of its calls is its fixed cost
(kernel start, imports, reading, plotting, writing). ``benchmarks/bench_chain.py``
sums the calls of the whole chain into its floor.

Which calls count is the list of the issue that set the target (the simulations,
SExtractor, Background2D, the sysmaps, the PSF fits): the exposure maps and the
source mask inside the background estimate are this package's own code, but
they are the stage's core computation, not overhead around it.

Nested calls are logged once, by the outermost one, so that the sum of the
lines is never larger than the time spent in calls. The file reaches a stage's
kernel through the environment of the process that starts it (the runner sets
it around each stage), so a process must run one tile at a time, as the batch's
workers do (one thread per worker).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ENV", "floor_call", "read_calls"]

#: Environment variable naming the JSON-lines file of the current stage.
ENV = "HSCSIM_CALL_LOG"
_depth = 0


@contextmanager
def floor_call(name: str) -> Iterator[None]:
    """Time the block as one call of the floor named ``name``."""
    global _depth
    _depth += 1
    start = time.perf_counter()
    try:
        yield
    finally:
        _depth -= 1
        wall = time.perf_counter() - start
        target = os.environ.get(ENV)
        if target and _depth == 0:
            line = json.dumps({"call": name, "wall_s": round(wall, 3)})
            try:
                with open(target, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError as err:  # timing must never fail the work it times
                warnings.warn(f"{target}: call time not logged ({err})", stacklevel=3)


def read_calls(path: str | os.PathLike) -> list[dict]:
    """The calls logged in ``path`` (empty when the file does not exist); a line
    that is not a call (a write cut short) is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    calls = []
    for line in path.read_text().splitlines():
        try:
            call = json.loads(line)
            calls.append({"call": str(call["call"]), "wall_s": float(call["wall_s"])})
        except (ValueError, KeyError, TypeError):
            continue
    return calls
