"""The checkerboard split of a patch into a tuning and a scoring half."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.numerics import halves


@pytest.mark.parametrize("shape", [(2000, 2000), (4200, 4200), (300, 777), (100, 50)])
def test_halves_are_disjoint_cover_everything_and_are_even(shape):
    tuning = halves.half_mask(shape, "tuning")
    scoring = halves.half_mask(shape, "scoring")
    assert tuning.shape == scoring.shape == shape
    assert not (tuning & scoring).any()
    assert (tuning | scoring).all()
    if min(shape) >= 2 * halves.BLOCK_PX:
        assert halves.half_fraction(shape, "scoring") == pytest.approx(0.5, abs=0.01)
    # an image smaller than a block is all tuning
    if max(shape) <= halves.BLOCK_PX:
        assert tuning.all()


def test_blocks_alternate():
    b = halves.BLOCK_PX
    tuning = halves.half_mask((4 * b, 4 * b), "tuning")
    assert tuning[0, 0] and tuning[b - 1, b - 1]
    assert not tuning[0, b] and not tuning[b, 0] and tuning[b, b]
    small = halves.half_mask((4, 6), "scoring", block=2)
    assert small.astype(int).tolist() == [
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 1],
        [1, 1, 0, 0, 1, 1],
    ]


def test_positions_follow_their_pixel():
    shape = (1000, 1200)
    rng = np.random.default_rng(1)
    iy, ix = rng.integers(0, shape[0], 500), rng.integers(0, shape[1], 500)
    mask = halves.half_mask(shape, "scoring")
    # SExtractor: pixel i spans [i + 0.5, i + 1.5); ufig: [i, i + 1)
    for first_centre, low in ((1.0, 0.5), (0.5, 0.0), (0.0, -0.5)):
        for frac in (0.0, 0.5, 0.999):
            x, y = ix + low + frac, iy + low + frac
            got = halves.in_half(x, y, shape, "scoring", first_centre=first_centre)
            assert np.array_equal(got, mask[iy, ix])
    b = halves.BLOCK_PX
    x = np.array([b + 0.49, b + 0.5, np.nan, 0.4, shape[1] + 0.5])
    y = np.ones(5)
    tuning = halves.in_half(x, y, shape, "tuning")
    scoring = halves.in_half(x, y, shape, "scoring")
    assert tuning.tolist() == [True, False, False, False, False]
    assert scoring.tolist() == [False, True, False, False, False]


def test_bad_arguments():
    with pytest.raises(InputError, match="half"):
        halves.half_mask((10, 10), "training")
    with pytest.raises(InputError, match="block"):
        halves.half_mask((10, 10), "tuning", block=0)
    with pytest.raises(InputError, match="shape"):
        halves.in_half([1.0], [1.0], (10,), "tuning")
