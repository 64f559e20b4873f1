"""Images reduced for display.

A figure panel of 6-7 inches at 120 dpi is 700-850 pixels wide, so a 4200 x 4200
patch drawn in full is resampled by matplotlib at every ``savefig`` and again
for the notebook's inline PNG: stage 02's image-and-mask figure took 4.9 s to
save (profile of stage 02 on the full DEMO), most of the stage's wall time.
:func:`thumbnail` hands matplotlib at most :data:`MAX_SIDE` pixels per axis:
every n-th pixel of an image (noise keeps its look) or, for flag and label maps,
a reduction over each n x n block (the bitwise OR of flags, the largest label:
a one-pixel bleed trail stays visible), with the ``extent`` that keeps the axes
in pixels of the full image, so that overlays (Gaia positions, CCD outlines)
need no rescaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_SIDE", "Thumbnail", "thumbnail"]

#: Largest number of pixels per axis handed to ``imshow``.
MAX_SIDE = 1000


@dataclass(frozen=True)
class Thumbnail:
    """The reduced image, its step and its extent in full-image pixels."""

    data: np.ndarray
    step: int
    extent: tuple[float, float, float, float]


def thumbnail(
    array: np.ndarray, max_side: int = MAX_SIDE, block: np.ufunc | None = None
) -> Thumbnail:
    """``array`` with at most ``max_side`` pixels per axis (see module doc).

    ``block`` (e.g. ``np.bitwise_or``, ``np.maximum``) reduces each n x n block
    instead of taking every n-th pixel.
    """
    if np.ndim(array) != 2:
        raise ValueError(f"thumbnail of a {np.ndim(array)}-D array: needs 2-D")
    ny, nx = array.shape
    step = max(1, -(-max(ny, nx) // max_side))
    if step == 1:
        return Thumbnail(array, 1, (-0.5, nx - 0.5, -0.5, ny - 0.5))
    my, mx = -(-ny // step), -(-nx // step)
    if block is None:  # shown pixel k is pixel k * step, centred on it
        half = step / 2
        extent = (-half, mx * step - half, -half, my * step - half)
        return Thumbnail(array[::step, ::step], step, extent)
    # shown pixel k covers pixels k * step ... (k + 1) * step - 1
    blocks = np.pad(array, ((0, my * step - ny), (0, mx * step - nx)))
    blocks = blocks.reshape(my, step, mx, step)
    reduced = block.reduce(block.reduce(blocks, axis=3), axis=1)
    extent = (-0.5, mx * step - 0.5, -0.5, my * step - 0.5)
    return Thumbnail(reduced, step, extent)
