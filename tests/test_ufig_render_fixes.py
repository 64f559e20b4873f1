"""The mend of ufig's threaded rendering: private images, summed in thread order."""

from __future__ import annotations

import threading

import numba as nb
import numpy as np
import pytest

from hscsim_utils.ufig_render_fixes import (
    deterministic_threaded_rendering,
    execute_threaded_privately,
)


@nb.njit(nogil=True)
def _add_photons(image, x, n):
    for i in range(n):
        image[0, x[i % len(x)]] += 0.1


def _args(image, n_threads, n):
    xs = [np.arange(k, k + 3) for k in range(n_threads)]  # columns overlap
    return [[image] * n_threads, xs, [n] * n_threads]


def test_ufig_shares_one_image_between_threads():
    from ufig import rendering_util

    seen = []
    rendering_util.execute_threaded(lambda img, x, n: seen.append(img), 2,
                                    *_args(np.zeros((1, 8)), 2, 1))  # fmt: skip
    assert seen[0] is seen[1]  # the cause of lost updates and unordered sums


def test_private_images_are_summed_exactly_and_in_order():
    n = 2_000_000
    image = np.full((1, 8), 5.0)
    seen = []

    def render(img, x, k):
        seen.append(id(img))
        _add_photons(img, x, k)

    execute_threaded_privately(render, 2, *_args(image, 2, n))
    assert len(set(seen)) == 2
    expected = np.full((1, 8), 5.0)
    part = [np.zeros((1, 8)) for _ in range(2)]
    for k, x in enumerate(_args(image, 2, n)[1]):
        _add_photons(part[k] if k else expected, x, n)
    assert np.array_equal(image, expected + part[1])
    again = np.full((1, 8), 5.0)
    execute_threaded_privately(render, 2, *_args(again, 2, n))
    assert np.array_equal(again, image)


def test_thread_errors_are_raised():
    def fail(img, x, n):
        if threading.current_thread() is not threading.main_thread() and x[0] == 1:
            raise RuntimeError("photon trouble")

    with pytest.raises(RuntimeError, match="photon trouble"):
        execute_threaded_privately(fail, 2, *_args(np.zeros((1, 8)), 2, 1))


def test_context_restores_ufig():
    from ufig import rendering_util

    original = rendering_util.execute_threaded
    with deterministic_threaded_rendering():
        assert rendering_util.execute_threaded is execute_threaded_privately
    assert rendering_util.execute_threaded is original


@pytest.mark.parametrize("threads", ["1", "2"])
def test_result_does_not_depend_on_the_threads(monkeypatch, threads):
    reference = np.zeros((1, 8))
    part = np.zeros((1, 8))
    for k, x in enumerate(_args(reference, 2, 1000)[1]):
        _add_photons(part if k else reference, x, 1000)
    monkeypatch.setenv("HSCSIM_THREADS", threads)
    image = np.zeros((1, 8))
    execute_threaded_privately(lambda i, x, n: _add_photons(i, x, n), 2,
                               *_args(image, 2, 1000))  # fmt: skip
    assert np.array_equal(image, reference + part)
