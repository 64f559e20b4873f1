"""The patch split into two disjoint halves: one to tune on, one to score on.

A fine-tuning step that fits a number on some pixels or stars and then reports
how well the simulation matches on the same pixels or stars measures its own fit,
not the simulation's realism. The patch is therefore cut into two halves by a
checkerboard of square blocks of ``block`` pixels (default :data:`BLOCK_PX` =
256): block ``(by, bx) = (iy // block, ix // block)`` (0-based pixel indices)
belongs to

- ``"tuning"`` when ``(bx + by) % 2 == 0``: fits (PSF adjustment, noise scaling)
  use only these pixels and the objects centred on them;
- ``"scoring"`` when ``(bx + by) % 2 == 1``: realism numbers use only these.

Every pixel is in exactly one half; a block cut by the image edge is kept
whole as far as it goes, so on a 2000 x 2000 image the halves hold 50.03% and
49.97% of the pixels (4 full and 3 full + 1 partial blocks per axis and parity).

Why 256 pixels (43 arcsec at 0.168 arcsec/pixel):

- larger than a galaxy and the PSF: the PSF FWHM is 3-5 pixels and the
  isophotal footprint of all but the brightest galaxies a few tens of pixels,
  so few objects straddle a block edge, and the coadd's noise correlation
  (Lanczos-3 resampling, 3 pixels) is negligible across one: the two halves
  have statistically independent noise and (nearly) disjoint objects;
- small enough to sample the exposure pattern: the exposure-time map of a
  dithered HSC coadd changes where CCD edges and gaps fall in each visit, on
  scales of arcminutes (several hundred pixels and more), so each half has
  blocks in every region of the patch (a 4200 x 4200 pixel patch has about
  16 x 16 blocks) and the two halves see the same mix of depths, PSFs and
  bright-star masks;
- 256 is a multiple of the 128-pixel boxes of stage 01's background
  estimation, so block edges fall on box edges.

Catalogue positions are assigned by their centre. :func:`in_half` takes the
coordinate of the centre of the first pixel, ``first_centre``: 1.0 for
SExtractor's and FITS's 1-based ``X_IMAGE``/``XWIN_IMAGE`` (the default; pixel
``i`` covers ``[i + 0.5, i + 1.5)``), 0.5 for ufig's ``x``/``y``, 0.0 for numpy
indices. The pixel index of a position is ``floor(x - first_centre + 0.5)``;
positions outside the image are in neither half.
"""

from __future__ import annotations

import numpy as np

from hscsim_utils.errors import InputError

#: Side of the checkerboard's square blocks, in pixels.
BLOCK_PX = 256
TUNING, SCORING = "tuning", "scoring"
HALVES = (TUNING, SCORING)
#: Coordinate of the centre of the first pixel in SExtractor's catalogues.
FITS_FIRST_CENTRE = 1.0
#: Coordinate of the centre of the first pixel in ufig's catalogues.
UFIG_FIRST_CENTRE = 0.5


def _parity(half: str) -> int:
    if half not in HALVES:
        raise InputError("half", f"must be one of {HALVES}, got {half!r}")
    return HALVES.index(half)


def _check(shape: tuple[int, ...], block: int) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) <= 0:
        raise InputError("shape", f"must be a 2-d image shape, got {shape}")
    if not isinstance(block, int | np.integer) or block <= 0:
        raise InputError("block", f"must be a positive integer, got {block!r}")
    return int(shape[0]), int(shape[1])


def block_parity(iy: np.ndarray, ix: np.ndarray, block: int = BLOCK_PX) -> np.ndarray:
    """0 (tuning) or 1 (scoring) for 0-based pixel indices ``iy``, ``ix``."""
    return (np.asarray(iy) // block + np.asarray(ix) // block) % 2


def half_mask(shape: tuple[int, int], half: str, block: int = BLOCK_PX) -> np.ndarray:
    """Boolean image: True on the pixels of ``half`` (``"tuning"``/``"scoring"``).

    ``(row block + column block) % 2`` is the exclusive or of the two blocks'
    parities: one byte per pixel instead of two int64 sums and a modulo
    (4200 x 4200: 6 ms instead of 0.35-0.7 s; stages 07-09 take it several times).
    """
    ny, nx = _check(tuple(shape), block)
    parity = _parity(half)
    rows = ((np.arange(ny) // block) % 2).astype(np.uint8)[:, None]
    cols = ((np.arange(nx) // block) % 2).astype(np.uint8)[None, :]
    return (rows ^ cols) == parity


def pixel_index(
    coord: np.ndarray, first_centre: float = FITS_FIRST_CENTRE
) -> np.ndarray:
    """0-based pixel index of catalogue coordinates (see the module docstring)."""
    coord = np.asarray(coord, np.float64)
    out = np.full(coord.shape, -1, np.int64)
    finite = np.isfinite(coord)
    out[finite] = np.floor(coord[finite] - first_centre + 0.5).astype(np.int64)
    return out


def in_half(
    x: np.ndarray,
    y: np.ndarray,
    shape: tuple[int, int],
    half: str,
    block: int = BLOCK_PX,
    first_centre: float = FITS_FIRST_CENTRE,
) -> np.ndarray:
    """True for the catalogue positions whose pixel lies in ``half``.

    ``x``, ``y``: column and row coordinates whose first pixel's centre is at
    ``first_centre`` (1.0: SExtractor's 1-based ``X_IMAGE``/``XWIN_IMAGE``;
    0.5: ufig's ``x``/``y``). Positions off the image are in neither half.
    """
    ny, nx = _check(tuple(shape), block)
    parity = _parity(half)
    ix, iy = pixel_index(x, first_centre), pixel_index(y, first_centre)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    return inside & (block_parity(iy, ix, block) == parity)


def half_fraction(shape: tuple[int, int], half: str, block: int = BLOCK_PX) -> float:
    """Fraction of the image's pixels in ``half``."""
    return float(half_mask(shape, half, block).mean())
