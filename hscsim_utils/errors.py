"""The errors hscsim raises on purpose, and which one to raise.

Policy:

- :class:`InputError` ``(source, problem)``: bad input, a file or a value the user
  gave (a tile file, a calexp, a parameter, a run folder written by an earlier
  stage); ``source`` names the file or the parameter.
- :class:`ToolError` ``(message)``: an external program or upstream package
  (SExtractor, pip, UFig, cosmo_torrent, the PyCosmo compiler) is missing, failed
  or produced nothing.
- :class:`OutputError` ``(path, problem)``: an output cannot be written (no
  permission, disk full, a folder that cannot be created).
- :class:`StageFailed` ``(message)``: a stage notebook raised; the message names
  the stage, the cell and the error.
- A broken internal invariant (a bug) is none of these: raise a built-in
  exception (``ValueError``, ``TypeError``, ``RuntimeError``).

The ``hscsim`` command prints the message of every :class:`HscsimError` (and of an
``OSError``) as ``hscsim CMD: error: ...`` lines and exits with status 2; any other
exception ends it with a traceback.

Every class survives pickling (a worker process or a Dask worker hands its error
to the parent with its class and message).
"""

from __future__ import annotations

import os


class HscsimError(Exception):
    """Base class of the errors hscsim raises on purpose."""


class InputError(HscsimError, ValueError):
    """An input file or parameter is missing or malformed."""

    def __init__(self, source: str | os.PathLike, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):
        return type(self), (self.source, self.problem), self.__dict__


class ToolError(HscsimError, RuntimeError):
    """An external program (such as SExtractor) is missing or failed."""


class OutputError(HscsimError, OSError):
    """An output could not be written (disk full, no permission)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem), self.__dict__


class StageFailed(HscsimError):
    """A notebook raised; the message names the stage, cell and error."""
