"""Where each stage reads and writes inside a tile's run folder.

One tile, one run folder, and this module is the only place that knows its
paths. Every product has a name (:data:`PRODUCTS`); stages declare the names they
read and write (:mod:`hscsim_utils.stages.registry`) and reach the files through
:class:`RunFolder`::

    RUN/
      skymapinfo.json, skymapinfo.npy   stage 01 (json for people, npy for ufig)
      sysmaps.h5                        stage 01 (map_bsig, map_expt, ...)
      mask.h5, overlap.h5               stage 02
      sextractor/data_se.cat (+ _seg.fits, _bkg.fits)   stage 03
      stars/besancon.h5, stars/gaia.h5  stage 04
      psf/psf_model.h5, psf_catalog.cat, psf_summary.json   stage 05
      sim/baseline/                     stage 06 (GalSBI/UFig outputs)
      sim/population/                   the galaxy population the simulations share
      psf_finetune/                     stage 08 (improved PSF model, its simulation)
      background_finetune/              stage 09 (improved sysmaps, its simulations)
      metrics.json                      one section per stage (07, 08, 09, timing)
      notebooks/                        executed notebooks and their figures
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hscsim_utils.errors import InputError, OutputError

RUN_DIR_ENV = "HSCSIM_RUN_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Every product of a run folder: name -> path relative to the run folder (a name
#: ending in "/" in the path is a folder, counted by all the files inside it).
PRODUCTS: dict[str, str] = {
    "skymapinfo_json": "skymapinfo.json",
    "skymapinfo_npy": "skymapinfo.npy",
    "sysmaps": "sysmaps.h5",
    "mask": "mask.h5",
    "overlap": "overlap.h5",
    "sextractor_cat": "sextractor/data_se.cat",
    "sextractor_seg": "sextractor/data_se_seg.fits",
    "sextractor_bkg": "sextractor/data_se_bkg.fits",
    "besancon": "stars/besancon.h5",
    "gaia": "stars/gaia.h5",
    "psf_model": "psf/psf_model.h5",
    "psf_catalog": "psf/psf_catalog.cat",
    "psf_summary": "psf/psf_summary.json",
    "sim_baseline": "sim/baseline/",
    "psf_finetune": "psf_finetune/",
    "background_finetune": "background_finetune/",
    "band_runs": "bands/",
}
#: Folders of work kept for reuse, not products: what a stage computes does not
#: depend on whether an entry is there, only how long it takes.
CACHES: dict[str, str] = {"population_cache": "sim/population/"}
METRICS_FILE = "metrics.json"
#: The runner's record of every stage's result in a run folder.
STATE_FILE = ".hscsim_state.json"


@dataclass(frozen=True)
class RunFolder:
    """Paths of one tile's run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    def product(self, name: str) -> Path:
        """Path of the product ``name`` (see :data:`PRODUCTS`); a folder product
        is created, a file product gets its parent folder."""
        try:
            rel = PRODUCTS[name]
        except KeyError:
            raise KeyError(f"no run-folder product {name!r}") from None
        if rel.endswith("/"):
            d = self.root / rel.rstrip("/")
            d.mkdir(parents=True, exist_ok=True)
            return d
        return self.path(*rel.split("/"))

    def band_run(self, band: str) -> RunFolder:
        """The run folder of ``band``'s per-band stages, for a tile of several
        bands whose detection band runs here (``bands/<band>/``)."""
        return RunFolder(self.root / PRODUCTS["band_runs"] / band)

    def band_run_states(self) -> dict[str, dict]:
        """The runner's record (:data:`STATE_FILE`) of every band run here, by
        band."""
        import json

        return {
            path.parent.name: json.loads(path.read_text())
            for path in sorted(
                (self.root / PRODUCTS["band_runs"]).glob(f"*/{STATE_FILE}")
            )
        }

    def band_runs(self, bands: Iterable[str], here: str) -> dict[str, RunFolder]:
        """Where each of ``bands`` has its per-band products: band ``here`` (the
        detection band) in this run, every other in its :meth:`band_run`."""
        return {b: self if b == here else self.band_run(b) for b in bands}

    def path(self, *parts: str) -> Path:
        """Return ``root/parts``, creating its parent folder."""
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def skymapinfo_json(self) -> Path:
        return self.product("skymapinfo_json")

    @property
    def skymapinfo_npy(self) -> Path:
        return self.product("skymapinfo_npy")

    @property
    def sysmaps(self) -> Path:
        return self.product("sysmaps")

    @property
    def mask(self) -> Path:
        return self.product("mask")

    @property
    def overlap(self) -> Path:
        return self.product("overlap")

    @property
    def sextractor_cat(self) -> Path:
        return self.product("sextractor_cat")

    @property
    def sextractor_seg(self) -> Path:
        return self.product("sextractor_seg")

    @property
    def sextractor_bkg(self) -> Path:
        return self.product("sextractor_bkg")

    @property
    def besancon(self) -> Path:
        return self.product("besancon")

    @property
    def gaia(self) -> Path:
        return self.product("gaia")

    @property
    def psf_model(self) -> Path:
        return self.product("psf_model")

    @property
    def psf_catalog(self) -> Path:
        return self.product("psf_catalog")

    @property
    def psf_summary(self) -> Path:
        return self.product("psf_summary")

    @property
    def sim_baseline(self) -> Path:
        """Stage 06's simulation folder."""
        return self.product("sim_baseline")

    @property
    def population_cache(self) -> Path:
        """The galaxy population the run's simulations sample once and share
        (:mod:`hscsim_utils.population_cache`). Not a product: a simulation
        finds there what it would sample itself, or samples and adds it."""
        return self.root / CACHES["population_cache"]

    @property
    def psf_finetune_dir(self) -> Path:
        """Everything stage 08 writes besides its metrics section."""
        return self.product("psf_finetune")

    @property
    def background_finetune_dir(self) -> Path:
        """Everything stage 09 writes besides its metrics section."""
        return self.product("background_finetune")

    @property
    def metrics(self) -> Path:
        return self.path(METRICS_FILE)

    @property
    def notebooks_dir(self) -> Path:
        """Executed notebooks, with their figures beside them."""
        d = self.root / "notebooks"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def plot(self, name: str) -> Path:
        """Path of a figure file, saved beside the executed notebooks."""
        return self.path("notebooks", name)


def default_run_dir() -> Path:
    """Run folder used when a notebook is opened without parameters."""
    return Path(os.environ.get(RUN_DIR_ENV, REPO_ROOT / "runs" / "demo" / "run"))


def read_dataset(path: str | os.PathLike, name: str, missing: str = "not found"):
    """Dataset ``name`` of an HDF5 file as an array; InputError naming the file
    when it is absent (``missing`` says what to do) or lacks the dataset."""
    import h5py

    from hscsim_utils.hdf5_lzf import read_array

    if not Path(path).is_file():
        raise InputError(path, missing)
    with h5py.File(path, "r") as fh5:
        if name not in fh5:
            raise InputError(path, f"has no dataset {name!r}")
        return read_array(fh5[name])


def resolve_run(run_dir: str | os.PathLike = "") -> RunFolder:
    """Run folder for a notebook: ``run_dir`` or, if empty, the demo run folder."""
    root = Path(run_dir) if run_dir else default_run_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(root, f"cannot create run folder ({err.strerror})") from None
    if not os.access(root, os.W_OK):
        raise OutputError(root, "run folder is not writable")
    return RunFolder(root)
