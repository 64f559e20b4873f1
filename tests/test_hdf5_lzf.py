"""The parallel LZF reader gives HDF5's bytes, and hands anything else to h5py."""

import h5py
import numpy as np
import pytest

from hscsim_utils.hdf5_lzf import _lzf_decode, _stored_chunks, read_array

VISITS = np.dtype([(f"bit{w + 1}", np.uint64) for w in range(5)])


def _visit_map(shape, seed=0):
    """Blocks of repeated visit words (compress well) and a noisy stripe."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, VISITS)
    for name in VISITS.names:
        words = rng.integers(0, 2**63, size=(shape[0] // 7 + 1, shape[1] // 5 + 1),
                             dtype=np.uint64)  # fmt: skip
        out[name] = np.repeat(np.repeat(words, 7, 0), 5, 1)[: shape[0], : shape[1]]
    out["bit3"][:, :9] = rng.integers(0, 2**63, size=(shape[0], 9), dtype=np.uint64)
    return out


def _write(path, name, data, **kwargs):
    with h5py.File(path, "a") as fh:
        fh.create_dataset(name, data=data, **kwargs)


def _same(path, name):
    with h5py.File(path, "r") as fh:
        got, want = read_array(fh[name]), fh[name][()]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    return got


def test_structured_map_with_edge_chunks_reads_as_hdf5_does(tmp_path):
    path = tmp_path / "m.h5"
    data = _visit_map((300, 410))
    _write(path, "map_pointings", data, compression="lzf", chunks=(64, 96))
    with h5py.File(path, "r") as fh:
        assert _stored_chunks(fh["map_pointings"]) is not None  # the parallel path
    got = _same(path, "map_pointings")
    assert np.array_equal(got, data)


def test_chunks_lzf_cannot_shrink_are_read_as_stored(tmp_path):
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 150)).astype(np.float32)
    data[:100] = 1.5  # these chunks compress, the noisy ones are stored raw
    _write(path, "map", data, compression="lzf", chunks=(50, 40))
    with h5py.File(path, "r") as fh:
        masks = {m for m, _ in _stored_chunks(fh["map"]).values()}
    assert masks == {0, 1}  # both kinds of chunk are there
    assert np.array_equal(_same(path, "map"), data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": "gzip"},
        {"compression": "lzf", "shuffle": True},
        {"compression": None, "chunks": (16, 16)},
        {},
    ],
    ids=["gzip", "lzf+shuffle", "chunked-raw", "contiguous"],
)
def test_other_layouts_are_read_by_h5py(tmp_path, kwargs):
    path = tmp_path / "o.h5"
    data = np.arange(60 * 70, dtype=np.int32).reshape(60, 70)
    _write(path, "map", data, **kwargs)
    with h5py.File(path, "r") as fh:
        assert _stored_chunks(fh["map"]) is None
    assert np.array_equal(_same(path, "map"), data)


def test_unwritten_chunks_and_other_dimensions_are_read_by_h5py(tmp_path):
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset(
            "part", shape=(64, 64), dtype=np.float32, compression="lzf",
            chunks=(16, 16), fillvalue=-1,
        )  # fmt: skip
        ds[:16, :16] = 2.0
        fh.create_dataset("cube", data=np.ones((4, 8, 8)), compression="lzf")
    with h5py.File(path, "r") as fh:
        assert _stored_chunks(fh["part"]) is None
        assert _stored_chunks(fh["cube"]) is None
    part = _same(path, "part")
    assert part[0, 0] == 2.0 and part[-1, -1] == -1
    _same(path, "cube")


def test_decoder_refuses_a_truncated_or_oversized_stream(tmp_path):
    path = tmp_path / "t.h5"
    _write(
        path, "map", np.zeros((64, 64), np.uint8), compression="lzf", chunks=(64, 64)
    )
    with h5py.File(path, "r") as fh:
        ((_, raw),) = _stored_chunks(fh["map"]).values()
    src = np.frombuffer(raw, np.uint8)
    dst = np.empty(64 * 64, np.uint8)
    assert _lzf_decode(src, dst) == dst.size and not dst.any()
    assert _lzf_decode(src[:-1], dst) < dst.size  # cut stream: short or -1
    assert _lzf_decode(src, np.empty(100, np.uint8)) == -1  # no room
    literal = np.array([3, 1, 2, 3], np.uint8)  # a run of 4 literals, 3 given
    assert _lzf_decode(literal, dst) == -1
    backref = np.array([0, 7, 0x20, 5], np.uint8)  # reference before the start
    assert _lzf_decode(backref, dst) == -1


@pytest.mark.parametrize(
    "dtype",
    [np.dtype(">f4"), np.dtype([("a", "u1"), ("b", "<f8")], align=True)],
    ids=["big-endian", "padded-compound"],
)
def test_stored_types_other_than_the_arrays_read_as_hdf5_does(tmp_path, dtype):
    path = tmp_path / "t.h5"
    data = np.zeros((40, 30), dtype)
    for name in dtype.names or (None,):
        view = data if name is None else data[name]
        view[...] = np.arange(1200).reshape(40, 30) % 7
    _write(path, "map", data, compression="lzf", chunks=(16, 16))
    got = _same(path, "map")
    assert np.array_equal(got, data)
