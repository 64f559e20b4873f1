"""A mend of ufig's threaded photon rendering (ufig 1.2.1).

``ufig.rendering_util.execute_threaded`` runs the rendering of galaxies and
stars in threads that all add photons into the *same* image array, split by x.
Photons of objects near the split land in the other thread's half, so two
threads can update one pixel at once: an update can be lost and the order of
the floating-point sums depends on the scheduling. Same inputs and seed then do
not always give the same image (seen under load). Its ``executor.map`` results
are also never read, so an exception in a rendering thread passes silently.

:func:`deterministic_threaded_rendering` gives every thread but the first its
own zeroed copy of the image (the argument that all threads share and that has
the image's shape; shared inputs such as the Sersic profile table stay shared),
adds the copies to the original in thread order afterwards, and re-raises a
thread's exception. The image is then the same for the same seed, whatever the
load.

ufig's ``n_threads_photon_rendering`` then only sets the number of work chunks
(each with its own random stream and image); the chunks run on
:func:`hscsim_utils.threads.n_threads` threads, so the image is also the same
whether a tile runs alone on all cores or in a batch on one.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hscsim_utils.compat import check_version

check_version("ufig", "1.2.1", __name__)


def _shared_images(args: Sequence[Sequence], shape: tuple[int, ...]) -> list[int]:
    """Indices of the argument lists that pass one and the same array of the
    image's ``shape`` to every thread (the image being rendered)."""
    return [
        i
        for i, values in enumerate(args)
        if len(values) > 1
        and isinstance(values[0], np.ndarray)
        and values[0].shape == shape
        and all(v is values[0] for v in values)
    ]


def execute_threaded_privately(
    func: Callable, n_chunks: int, *args, image_shape: tuple[int, ...]
) -> None:
    """``func(*[a[k] for a in args])`` for each chunk k, the shared image made
    private to each chunk and summed afterwards in chunk order; the chunks run on
    at most :func:`~hscsim_utils.threads.n_threads` threads."""
    from hscsim_utils.threads import n_threads

    args = [list(values) for values in args]
    images = _shared_images(args, tuple(image_shape))
    if len(images) != 1:
        raise RuntimeError(
            f"ufig's threaded rendering: expected one shared image of shape "
            f"{tuple(image_shape)}, found {len(images)}"
        )
    (i,) = images
    args[i][1:] = [np.zeros_like(args[i][0]) for _ in args[i][1:]]
    with ThreadPoolExecutor(max_workers=max(1, min(n_chunks, n_threads()))) as pool:
        list(pool.map(func, *args))  # reading the results re-raises errors
    for private in args[i][1:]:
        args[i][0] += private


@contextlib.contextmanager
def deterministic_threaded_rendering(image_shape: tuple[int, int]) -> Iterator[None]:
    """ufig's threaded rendering of an image of ``image_shape`` (ny, nx) with
    :func:`execute_threaded_privately`."""
    from ufig import rendering_util

    original = rendering_util.execute_threaded
    rendering_util.execute_threaded = functools.partial(
        execute_threaded_privately, image_shape=tuple(image_shape)
    )
    try:
        yield
    finally:
        rendering_util.execute_threaded = original
