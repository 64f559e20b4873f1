"""Images reduced for display keep their pixel coordinates and thin flags."""

import numpy as np
import pytest

from hscsim_utils.thumbnail import MAX_SIDE, thumbnail


def test_small_image_is_shown_as_is():
    image = np.arange(12.0).reshape(3, 4)
    shown = thumbnail(image)
    assert shown.data is image and shown.step == 1
    assert shown.extent == (-0.5, 3.5, -0.5, 2.5)


def test_stride_keeps_pixel_coordinates():
    ny, nx = 4200, 3000
    shown = thumbnail(np.broadcast_to(np.arange(nx, dtype=float), (ny, nx)))
    assert shown.step == 5 and max(shown.data.shape) <= MAX_SIDE
    # the centre of shown column k, in full-image pixels, is the pixel it shows
    x0, x1 = shown.extent[:2]
    width = (x1 - x0) / shown.data.shape[1]
    centres = x0 + width * (np.arange(shown.data.shape[1]) + 0.5)
    np.testing.assert_allclose(centres, shown.data[0])
    y0, y1 = shown.extent[2:]
    assert (y1 - y0) / shown.data.shape[0] == shown.step
    with pytest.raises(ValueError, match="2-D"):
        thumbnail(np.zeros(5))


def test_block_reduction_keeps_one_pixel_flags():
    mask = np.zeros((2001, 1500), np.int32)
    mask[:, 778] |= 2  # a one-pixel bleed trail
    mask[1000, :] |= 4  # crossing a one-pixel row
    shown = thumbnail(mask, block=np.bitwise_or)
    assert shown.step == 3
    column = 778 // 3
    assert np.all(shown.data[:, column] & 2)
    assert shown.data[1000 // 3, column] == 6
    assert np.count_nonzero(shown.data & 2) == shown.data.shape[0]
    # with stride, the same trail would vanish (778 is not a multiple of 3)
    assert not np.any(thumbnail(mask).data & 2)
    # block k covers pixels k*step ... (k+1)*step-1
    x0, x1 = shown.extent[:2]
    assert x0 == -0.5 and (x1 - x0) == shown.data.shape[1] * shown.step


def test_largest_label_wins():
    labels = np.zeros((3000, 3000), np.int8)
    labels[10, 10] = 3
    labels[11, 11] = 1
    shown = thumbnail(labels, block=np.maximum)
    assert shown.data[3, 3] == 3 and shown.data.sum() == 3
