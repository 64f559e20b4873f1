"""Where each stage reads and writes inside a tile's run folder.

One tile, one run folder. Every stage takes the folder and finds its inputs and
outputs here, so notebooks, the chain runner and tests agree on the layout::

    RUN/
      skymapinfo.json, skymapinfo.npy   stage 01 (json for people, npy for ufig)
      sysmaps.h5                        stage 01 (map_bsig, map_expt, ...)
      mask.h5, overlap.h5               stage 02
      sextractor/data_se.cat (+ _seg.fits, _bkg.fits)   stage 03
      stars/besancon.h5, stars/gaia.h5  stage 04
      psf/psf_model.h5, psf/psf_catalog.cat             stage 05
      sim/                              stage 06 (GalSBI/ufig outputs)
      metrics.json                      stage 07+
      notebooks/                        executed notebooks and their figures
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR_ENV = "HSCSIM_DEMO_DIR"
RUN_DIR_ENV = "HSCSIM_RUN_DIR"
TILE_FILE_ENV = "HSCSIM_TILE_FILE"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunFolder:
    """Paths of one tile's run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def path(self, *parts: str) -> Path:
        """Return ``root/parts``, creating its parent folder."""
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def skymapinfo_json(self) -> Path:
        return self.path("skymapinfo.json")

    @property
    def skymapinfo_npy(self) -> Path:
        return self.path("skymapinfo.npy")

    @property
    def sysmaps(self) -> Path:
        return self.path("sysmaps.h5")

    @property
    def sysmaps_improved(self) -> Path:
        return self.path("sysmaps_improved.h5")

    @property
    def mask(self) -> Path:
        return self.path("mask.h5")

    @property
    def overlap(self) -> Path:
        return self.path("overlap.h5")

    @property
    def sextractor_cat(self) -> Path:
        return self.path("sextractor", "data_se.cat")

    @property
    def sextractor_seg(self) -> Path:
        return self.path("sextractor", "data_se_seg.fits")

    @property
    def sextractor_bkg(self) -> Path:
        return self.path("sextractor", "data_se_bkg.fits")

    @property
    def besancon(self) -> Path:
        return self.path("stars", "besancon.h5")

    @property
    def gaia(self) -> Path:
        return self.path("stars", "gaia.h5")

    @property
    def psf_model(self) -> Path:
        return self.path("psf", "psf_model.h5")

    @property
    def psf_catalog(self) -> Path:
        return self.path("psf", "psf_catalog.cat")

    @property
    def sim_dir(self) -> Path:
        d = self.root / "sim"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def metrics(self) -> Path:
        return self.path("metrics.json")

    @property
    def notebooks_dir(self) -> Path:
        """Executed notebooks, with their figures beside them."""
        d = self.root / "notebooks"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def plot(self, name: str) -> Path:
        """Path of a figure file, saved beside the executed notebooks."""
        return self.path("notebooks", name)


def default_demo_dir() -> Path:
    """Demo tile input folder: ``$HSCSIM_DEMO_DIR`` or runs/demo/input."""
    return Path(os.environ.get(DEMO_DIR_ENV, REPO_ROOT / "runs" / "demo" / "input"))


def default_tile_file() -> Path:
    """Tile of a notebook opened without parameters: ``$HSCSIM_TILE_FILE`` or the
    demo tile (``tile.yaml`` in :func:`default_demo_dir`)."""
    value = os.environ.get(TILE_FILE_ENV)
    return Path(value) if value else default_demo_dir() / "tile.yaml"


def default_run_dir() -> Path:
    """Run folder used when a notebook is opened without parameters."""
    return Path(os.environ.get(RUN_DIR_ENV, REPO_ROOT / "runs" / "demo" / "run"))


def read_dataset(path: str | os.PathLike, name: str, missing: str = "not found"):
    """Dataset ``name`` of an HDF5 file as an array; InputError naming the file
    when it is absent (``missing`` says what to do) or lacks the dataset."""
    import h5py

    from hscsim_utils.errors import InputError

    if not Path(path).is_file():
        raise InputError(path, missing)
    with h5py.File(path, "r") as fh5:
        if name not in fh5:
            raise InputError(path, f"has no dataset {name!r}")
        return fh5[name][()]
