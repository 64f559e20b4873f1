"""The chain's stages: what each reads and what it writes, declared once.

Every stage is a notebook ``notebooks/NN_<name>.ipynb`` and a module
``hscsim_utils.stages.<name>`` with one entry point of one shape::

    result = <name>.run(tile, run, <name>.Params(...))

``Params`` is a frozen dataclass whose fields and defaults are the notebook's
``parameters`` cell (less ``tile_file`` and ``run_dir``); ``run`` returns the
stage's products object. This table says what each stage reads and writes, so
that the runner can tell when a stage must run again and the architecture page
can list it (a test keeps both in sync):

- ``tile:<field>``: a field of the tile file; a path field counts by the content of
  the file it names, any other field by its value;
- ``repo:<path>``: a file of the repository the stage reads at run time (the
  GalSBI/UFig configuration);
- a product name of :data:`hscsim_utils.runfolder.PRODUCTS`: a file or folder in
  the run folder, counted by content;
- ``metrics:<section>`` (or ``metrics:<section>.<block>``, one block of it): a
  section of the run's ``metrics.json``, owned by the
  stage of that name and written by no other; a stage that reads it counts it
  by content.

No stage writes another stage's products. A stage of the detection band that
tunes every band (08, 09) writes its product in each band run as well (the
band's ``psf_finetune/``, ``background_finetune/``); the band runs' fingerprint
counts the per-band stages' products only. Importing this module imports no
stage (the runner reads the table without loading astropy or ufig).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RUNNER_PRODUCTS", "STAGES", "StageSpec", "spec"]

#: Products the runner writes, not a stage: the runs of the per-band stages of a
#: tile's other bands (``RUN/bands/<band>/``).
RUNNER_PRODUCTS = ("band_runs",)

_CALEXP = ("tile:calexp", "tile:band")
_FRAMES = ("tile:frame_metadata", "tile:coadd_metadata")
_TRUTH = ("tile:truth_dir", "tile:is_demo")
_SIM_SETTINGS = (
    "tile:galaxy_model", "tile:posterior_index", "tile:seed",
    "repo:params/galsbi_hsc_config.py",
)  # fmt: skip


@dataclass(frozen=True)
class StageSpec:
    """One stage: its number, name and declared inputs and outputs."""

    number: str
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    #: Runs once per band of a tile of several bands (each other band in a run
    #: of its own, ``RUN/bands/<band>/``, on the tile seen from that band).
    per_band: bool = False

    @property
    def notebook(self) -> str:
        """File name of the stage's notebook (``.ipynb``)."""
        return f"{self.number}_{self.name}.ipynb"

    @property
    def module(self) -> str:
        """Dotted name of the stage's module."""
        return f"hscsim_utils.stages.{self.name}"


# fmt: off
STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "01", "sky_and_sysmaps",
        reads=(*_CALEXP, *_FRAMES),
        writes=("skymapinfo_json", "skymapinfo_npy", "sysmaps"), per_band=True,
    ),
    StageSpec("02", "masks", reads=_CALEXP, writes=("mask", "overlap"),
              per_band=True),
    StageSpec(
        "03", "source_extraction",
        reads=(*_CALEXP, "tile:detection_band", "tile:detection_calexp",
               "skymapinfo_json", "mask", "overlap"),
        writes=("sextractor_cat", "sextractor_seg", "sextractor_bkg"), per_band=True,
    ),
    StageSpec(
        "04", "stars",
        reads=(*_CALEXP, "tile:besancon_headers", "tile:besancon_catalogs",
               "tile:gaia_table", "tile:is_demo", "tile:seed"),
        writes=("besancon", "gaia"), per_band=True,
    ),
    StageSpec(
        "05", "psf",
        reads=("tile:calexp", "tile:frame_metadata", "tile:truth_dir",
               "sextractor_cat", "sysmaps", "gaia"),
        writes=("psf_model", "psf_catalog", "psf_summary"), per_band=True,
    ),
    StageSpec(
        "06", "simulate",
        reads=(*_CALEXP, "tile:bands", *_SIM_SETTINGS, "skymapinfo_npy", "sysmaps",
               "mask", "overlap", "besancon", "gaia", "psf_model", "band_runs"),
        writes=("sim_baseline",),
    ),
    StageSpec(
        "07", "quality",
        reads=(*_CALEXP, *_TRUTH, "tile:bands", "sysmaps", "mask", "sextractor_cat",
               "sextractor_seg", "psf_model", "sim_baseline", "band_runs"),
        writes=("metrics:quality",),
    ),
    StageSpec(
        "08", "psf_finetune",
        reads=(*_CALEXP, "tile:frame_metadata", *_TRUTH, "tile:bands",
               *_SIM_SETTINGS, "skymapinfo_npy", "sysmaps", "mask", "overlap",
               "besancon", "gaia", "sextractor_cat", "psf_model", "psf_summary",
               "sim_baseline", "band_runs"),
        writes=("psf_finetune", "metrics:psf_finetune"),
    ),
    StageSpec(
        "09", "background_finetune",
        reads=(*_CALEXP, "tile:is_demo", "tile:bands", *_SIM_SETTINGS,
               "skymapinfo_npy", "sysmaps", "mask", "overlap", "besancon", "gaia",
               "sextractor_cat", "sextractor_seg", "psf_model", "sim_baseline",
               "psf_finetune", "band_runs", "metrics:quality.realism",
               "metrics:quality.bands"),
        writes=("background_finetune", "metrics:background_finetune"),
    ),
)
# fmt: on


def spec(name: str) -> StageSpec:
    """The stage called ``name`` (e.g. ``psf``) or numbered ``name`` (``05``)."""
    for stage in STAGES:
        if name in (stage.name, stage.number):
            return stage
    from hscsim_utils.errors import InputError

    known = ", ".join(s.name for s in STAGES)
    raise InputError("stage", f"unknown stage {name!r}; the stages are {known}")
