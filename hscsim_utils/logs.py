"""Quieting the chatty loggers of galsbi, ufig and cosmic_toolbox."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def quiet_loggers(
    loggers: Iterable[logging.Logger], level: int = logging.WARNING
) -> Iterator[None]:
    """Set ``loggers`` to ``level`` (WARNING) inside the block, then restore their
    levels."""
    loggers = list(loggers)
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
