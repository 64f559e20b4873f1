"""A mend of cosmo_torrent 0.2.0's downloads, which never time out.

``cosmo_torrent.cosmo_torrent.download`` fetches every archive with
``requests.get(url, stream=True)`` and no timeout: on a network that drops
packets instead of refusing the connection, ``hscsim data`` would wait forever.
:func:`request_timeout` gives each ``requests.get`` of the module a timeout for
the duration of a block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from hscsim_utils.compat import check_version

check_version("cosmo_torrent", "0.2.0", __name__)

__all__ = ["request_timeout"]


class _TimeoutRequests:
    """Stand-in for the ``requests`` module that adds a timeout to ``get``."""

    def __init__(self, module: Any, timeout: tuple[float, float]) -> None:
        self._module, self._timeout = module, timeout

    def get(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        return self._module.get(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@contextlib.contextmanager
def request_timeout(module: Any, timeout: tuple[float, float]) -> Iterator[None]:
    """Inside the block, ``module.requests.get`` (``module``: cosmo_torrent's
    ``cosmo_torrent.cosmo_torrent``) has a (connect, read) ``timeout`` in seconds."""
    original = module.requests
    module.requests = _TimeoutRequests(original, timeout)
    try:
        yield
    finally:
        module.requests = original
