"""Exceptions raised for bad input; messages name the file or parameter."""

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


class ToolError(HscsimError, RuntimeError):
    """An external program (such as SExtractor) is missing or failed."""


class OutputError(HscsimError, OSError):
    """An output could not be written (disk full, no permission)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")
