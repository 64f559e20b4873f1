"""The error classes survive pickling: across processes they keep class and message."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from hscsim_utils.compat.ufig_psf import TooFewStarsError
from hscsim_utils.errors import (
    HscsimError,
    InputError,
    OutputError,
    StageFailed,
    ToolError,
)

ERRORS = [
    HscsimError("something failed"),
    InputError("tile.yaml", "missing required keys ['calexp']"),
    ToolError("cannot start source-extractor: not found"),
    OutputError("/run/mask.h5", "cannot write (disk full)"),
    StageFailed("stage 05_psf failed in cell 3: ValueError: x"),
    TooFewStarsError("SExtractor catalogue", "3 stars left, the model needs 10"),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_pickle_round_trip(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.args == err.args
    assert vars(back) == vars(err)


def test_message_unchanged():
    assert str(InputError("a.fits", "bad")) == "a.fits: bad"
    assert str(OutputError("/x/y.h5", "cannot write")) == "/x/y.h5: cannot write"
    assert str(ToolError("pip failed")) == "pip failed"


def _raise(index: int) -> None:
    raise ERRORS[index]


@pytest.mark.parametrize("start", ["fork", "spawn"])  # spawn: as the batch runs
def test_error_crosses_a_process_pool(start):
    ctx = multiprocessing.get_context(start)
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        for i, err in enumerate(ERRORS):
            with pytest.raises(type(err)) as got:
                pool.submit(_raise, i).result()
            assert type(got.value) is type(err)
            assert str(got.value) == str(err)
