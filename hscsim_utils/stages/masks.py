"""Stage 02: pixel mask and overlap file in ufig's formats.

The calexp MASK plane bits are read from its ``MP_*`` keywords and mapped to the
flag bits ufig's ``add_generic_stamp_flags`` reads from the HDF5 dataset ``mask``:
bit 1 (value 2) bright star, bit 2 (value 4) survey mask (bit 0, delta weight, is
not used for HSC). The overlap file's dataset ``img_mask`` marks pixels duplicated
in a neighbouring tile; for a single tile it is all False.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import ImageNormalize, PercentileInterval
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from hscsim_utils.atomic import atomic_path
from hscsim_utils.hsc.files import Calexp, read_calexp
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.runfolder import RunFolder

FLAGBIT_STAR = 1
FLAGBIT_SURVEY = 2
STAR_PLANES = ("BRIGHT_OBJECT",)
SURVEY_PLANES = ("NO_DATA",)


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


def plot_mask(image: np.ndarray, mask: np.ndarray, label: str) -> Figure:
    """The image beside the ufig mask (star, survey, both)."""
    fig, axs = plt.subplots(
        1, 2, figsize=(12, 5.5), sharex=True, sharey=True, layout="constrained"
    )
    finite = image[np.isfinite(image)]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax)
    axs[0].imshow(image, origin="lower", cmap="gray", norm=norm)
    axs[0].set_title("image")
    cmap = ListedColormap(["white", "tab:orange", "tab:blue", "tab:purple"])
    im = axs[1].imshow(
        mask >> FLAGBIT_STAR, origin="lower", cmap=cmap, vmin=-0.5, vmax=3.5
    )
    cbar = fig.colorbar(im, ax=axs[1], ticks=[0, 1, 2, 3], shrink=0.8)
    cbar.ax.set_yticklabels(["none", "star (2)", "survey (4)", "both (6)"])
    axs[1].set_title("ufig mask flags")
    fig.suptitle(label)
    return fig
