"""Two faster steps of every ufig simulation: the pixel masks of the stamp flags
by bit operations, and the check images at gzip level 1. Each is first shown on
ufig's own code: what it does (and what it costs), then that the mend gives the
same numbers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hscsim_utils.compat.ufig_checkimages import (
    CHECKIMAGE_COMPRESSION,
    fast_checkimages,
)
from hscsim_utils.compat.ufig_flag_masks import fast_flag_masks, masked_pixels_by_bits


def test_ufig_expands_every_pixel_into_bits():
    """ufig's selection builds one integer per pixel and bit (the cost)."""
    from ufig import mask_utils

    mask = np.array([[0, 1, 2], [3, 4, 7]], np.int32)
    binary = mask_utils.decimal_integer_to_binary(3, np.ravel(mask), np.uint8)
    assert binary.shape == (6, 3)  # n_pixels x n_bits
    assert binary[5].tolist() == [1, 1, 1] and binary[4].tolist() == [0, 0, 1]
    kept = mask_utils.set_masked_pixels(mask, [0, 2], n_bits=3)
    assert kept.tolist() == [[0, 1, 0], [1, 1, 2]]


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("keep", [[0], [1], [2], [0, 2], [2, 2], []])
@pytest.mark.parametrize("n_bits", [3, 9])
def test_bit_operations_give_ufigs_array(dtype, keep, n_bits):
    """Same values and dtype as ufig's, masks beyond the bits and negative
    values (cast like ufig's) included."""
    from ufig import mask_utils

    rng = np.random.default_rng(len(keep) + n_bits)
    high = 8 if dtype == np.uint8 else 2000
    low = 0 if dtype == np.uint8 else -50
    mask = rng.integers(low, high, size=(60, 40)).astype(dtype)
    expected = mask_utils.set_masked_pixels(mask, keep, n_bits)
    got = masked_pixels_by_bits(mask, keep, n_bits)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_the_flag_plugin_uses_the_mend_inside_the_block_only():
    from ufig import mask_utils

    original = mask_utils.set_masked_pixels
    with fast_flag_masks():
        assert mask_utils.set_masked_pixels is masked_pixels_by_bits
    assert mask_utils.set_masked_pixels is original


def _fits(path, data):
    from astropy.io import fits

    fits.PrimaryHDU(data).writeto(path)
    return str(path)


def test_ufig_writes_check_images_at_gzip_level_9(tmp_path):
    from ufig.plugins.run_sextractor_forced_photometry import checkimages_to_hdf

    seg = np.arange(60 * 40, dtype=np.int32).reshape(60, 40) % 7
    checkimages_to_hdf(["SEGMENTATION"], [_fits(tmp_path / "s.fits", seg)],
                       [str(tmp_path / "s.h5")])  # fmt: skip
    with h5py.File(tmp_path / "s.h5") as fh5:
        dataset = fh5["SEGMENTATION"]
        assert (dataset.compression, dataset.compression_opts) == ("gzip", 9)


def test_mended_check_images_are_level_1_with_the_same_arrays(tmp_path):
    from ufig.plugins import run_sextractor_forced_photometry as plugin

    rng = np.random.default_rng(2)
    seg = rng.integers(0, 50, size=(60, 40)).astype(np.int32)
    bkg = rng.normal(0, 1, size=(60, 40)).astype(np.float32)
    original = plugin.checkimages_to_hdf
    with fast_checkimages():
        plugin.checkimages_to_hdf(
            ["SEGMENTATION", "BACKGROUND"],
            [_fits(tmp_path / "s.fits", seg), _fits(tmp_path / "b.fits", bkg)],
            [str(tmp_path / "s.h5"), str(tmp_path / "b.h5")],
        )
    assert plugin.checkimages_to_hdf is original
    for name, key, data in (("s.h5", "SEGMENTATION", seg), ("b.h5", "BACKGROUND", bkg)):
        with h5py.File(tmp_path / name) as fh5:
            dataset = fh5[key]
            level = CHECKIMAGE_COMPRESSION["compression_opts"]
            assert (dataset.compression, dataset.compression_opts) == ("gzip", level)
            assert level == 1 and dataset.shuffle
            np.testing.assert_array_equal(dataset[()], data)
    assert not list(tmp_path.glob("*.fits"))  # ufig's clean-up still runs
