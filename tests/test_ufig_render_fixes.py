"""The mend of ufig's threaded rendering: private images, summed in chunk order."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from hscsim_utils.compat.ufig_render import (
    deterministic_threaded_rendering,
    execute_threaded_privately,
)

SHAPE = (1, 8)


@nb.njit(nogil=True)
def _add_photons(table, image, x, n):
    """ufig-like: a shared read-only table, the shared image, per-chunk objects."""
    for i in range(n):
        image[0, x[i % len(x)]] += table[i % len(table)]


def _args(image, n_chunks, n, table=None):
    table = np.array([0.1, 0.2, 0.3]) if table is None else table
    xs = [np.arange(k, k + 3) for k in range(n_chunks)]  # columns overlap
    return [[table] * n_chunks, [image] * n_chunks, xs, [n] * n_chunks]


def _sequential(n_chunks, n, start=0.0):
    """Chunk 0 into the image, the others into their own, summed in order."""
    parts = [np.full(SHAPE, start)] + [np.zeros(SHAPE) for _ in range(n_chunks - 1)]
    table, _, xs, _ = _args(None, n_chunks, n)
    for part, x in zip(parts, xs, strict=True):
        _add_photons(table[0], part, x, n)
    return sum(parts[1:], parts[0])


def _run(image, n_chunks, n, func=_add_photons):
    execute_threaded_privately(func, n_chunks, *_args(image, n_chunks, n),
                               image_shape=SHAPE)  # fmt: skip


def test_ufig_shares_one_image_between_threads():
    from ufig import rendering_util

    seen = []
    rendering_util.execute_threaded(lambda t, img, x, n: seen.append(img), 2,
                                    *_args(np.zeros(SHAPE), 2, 1))  # fmt: skip
    assert seen[0] is seen[1]  # the cause of lost updates and unordered sums


def test_private_images_are_summed_exactly_and_in_order():
    n = 2_000_000
    seen = []

    def render(table, img, x, k):
        seen.append((id(table), id(img)))
        _add_photons(table, img, x, k)

    image = np.full(SHAPE, 5.0)
    _run(image, 2, n, render)
    assert len({t for t, _ in seen}) == 1, "the shared table must stay shared"
    assert len({i for _, i in seen}) == 2, "each chunk renders into its own image"
    assert np.array_equal(image, _sequential(2, n, start=5.0))
    again = np.full(SHAPE, 5.0)
    _run(again, 2, n, render)
    assert np.array_equal(again, image)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_result_does_not_depend_on_the_threads(monkeypatch, threads):
    monkeypatch.setenv("HSCSIM_THREADS", threads)
    image = np.zeros(SHAPE)
    _run(image, 3, 1000)
    assert np.array_equal(image, _sequential(3, 1000))


def test_thread_errors_are_raised():
    def fail(table, img, x, n):
        if x[0] == 1:
            raise RuntimeError("photon trouble")

    with pytest.raises(RuntimeError, match="photon trouble"):
        _run(np.zeros(SHAPE), 2, 1, fail)


def test_ambiguous_or_missing_image_is_an_error():
    image = np.zeros(SHAPE)
    args = _args(image, 2, 1, table=np.zeros(SHAPE))  # table of the image's shape
    with pytest.raises(RuntimeError, match="found 2"):
        execute_threaded_privately(_add_photons, 2, *args, image_shape=SHAPE)
    with pytest.raises(RuntimeError, match="found 0"):
        execute_threaded_privately(_add_photons, 2, *_args(image, 2, 1),
                                   image_shape=(4, 4))  # fmt: skip


def test_context_restores_ufig():
    from ufig import rendering_util

    original = rendering_util.execute_threaded
    with deterministic_threaded_rendering(SHAPE):
        assert rendering_util.execute_threaded.func is execute_threaded_privately
    assert rendering_util.execute_threaded is original
