"""Stage 02: pixel mask and overlap file in ufig's formats.

The calexp MASK plane bits are read from its ``MP_*`` keywords and mapped to the
flag bits ufig's ``add_generic_stamp_flags`` reads from the HDF5 dataset ``mask``:
bit 1 (value 2) bright star, bit 2 (value 4) survey mask (bit 0, delta weight, is
not used for HSC). The overlap file's dataset ``img_mask`` marks pixels duplicated
in a neighbouring tile; for a single tile it is all False.

Reads the tile's ``calexp`` (of its ``band``); writes the products ``mask`` and
``overlap``. Entry point: :func:`run`; the figure is in
:mod:`hscsim_utils.stages.masks_plots`. Later stages read the mask back with
:func:`read_pixel_mask` and cut objects on masked pixels with :func:`masked_at`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.files import Calexp, read_calexp
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import registry

STAGE = registry.spec("masks")
FLAGBIT_STAR = 1
FLAGBIT_SURVEY = 2
STAR_PLANES = ("BRIGHT_OBJECT",)
SURVEY_PLANES = ("NO_DATA",)


def plane_names(text: str) -> list[str]:
    """The names of a comma-separated list (``"A, B"`` -> ``["A", "B"]``)."""
    return [p.strip() for p in text.split(",") if p.strip()]


@dataclass(frozen=True)
class Params:
    """Settings of stage 02: the parameters of its notebook."""

    star_planes: str = "BRIGHT_OBJECT"  # comma-separated MASK planes -> star flag
    survey_planes: str = "NO_DATA"  # comma-separated MASK planes -> survey flag

    def __post_init__(self) -> None:
        for name in ("star_planes", "survey_planes"):
            value = getattr(self, name)
            if not isinstance(value, str) or not all(
                re.fullmatch(r"\w+", p) for p in plane_names(value)
            ):
                raise InputError(
                    f"{STAGE.name}.{name}",
                    "must be comma-separated MASK plane names such as "
                    f"'BRIGHT_OBJECT,NO_DATA' (or empty for none), got {value!r}",
                )


@dataclass
class Stage02Result:
    """The image and the ufig mask (the files are already written)."""

    image: np.ndarray
    mask: np.ndarray


def plane_set(mask: np.ndarray, bits: Sequence[int]) -> np.ndarray:
    """True where any of the mask-plane ``bits`` is set."""
    out = np.zeros(mask.shape, bool)
    for bit in bits:
        out |= ((mask >> bit) & 1).astype(bool)
    return out


def ufig_mask(
    calexp: Calexp,
    star_planes: Sequence[str] = STAR_PLANES,
    survey_planes: Sequence[str] = SURVEY_PLANES,
) -> np.ndarray:
    """uint8 ufig flag mask: 2 where a star plane is set, + 4 for a survey plane."""
    star = plane_set(calexp.mask, [calexp.mask_bit(p) for p in star_planes])
    survey = plane_set(calexp.mask, [calexp.mask_bit(p) for p in survey_planes])
    return (star.astype(np.uint8) << FLAGBIT_STAR) | (
        survey.astype(np.uint8) << FLAGBIT_SURVEY
    )


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """HDF5 with dataset ``mask`` (uint8 flags), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh5:
            fh5.create_dataset("mask", data=mask.astype(np.uint8), compression="lzf")
    return path


def write_overlap(path: str | os.PathLike, shape: tuple[int, int]) -> Path:
    """HDF5 with dataset ``img_mask`` (bool, all False: no neighbouring tile)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh5:
            fh5.create_dataset(
                "img_mask", data=np.zeros(shape, bool), compression="lzf"
            )
    return path


def make_masks(
    tile: TileSpec,
    run: RunFolder,
    star_planes: Sequence[str] = STAR_PLANES,
    survey_planes: Sequence[str] = SURVEY_PLANES,
) -> Stage02Result:
    """Stage 02: write the mask and overlap files of the tile's calexp."""
    calexp = read_calexp(tile.calexp, band=tile.band)
    mask = ufig_mask(calexp, star_planes, survey_planes)
    write_mask(run.mask, mask)
    write_overlap(run.overlap, calexp.shape)
    return Stage02Result(calexp.image, mask)


def run(tile: TileSpec, run: RunFolder, params: Params) -> Stage02Result:
    """Stage 02: the mask and overlap files of the tile's calexp."""
    return make_masks(
        tile, run, plane_names(params.star_planes), plane_names(params.survey_planes)
    )


def masked_at(cat: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """True where an object's centre (XWIN/YWIN, 1-based) lies on a masked pixel."""
    ny, nx = masked.shape
    x = np.clip(np.floor(cat["XWIN_IMAGE"] - 0.5).astype(np.int64), 0, nx - 1)
    y = np.clip(np.floor(cat["YWIN_IMAGE"] - 0.5).astype(np.int64), 0, ny - 1)
    return masked[y, x]


def read_pixel_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Pixels flagged in stage 02's ufig mask (any bit set)."""
    mask = read_dataset(path, "mask", "not found; run stage 02 (masks) first")
    if mask.shape != tuple(shape):
        raise InputError(path, f"mask shape {mask.shape} is not the image's {shape}")
    return mask != 0
