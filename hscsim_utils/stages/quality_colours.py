"""Stage 07 on a tile of several bands: colours of simulation and data.

Both sides are measured alike. The data: stage 03 of the detection band
detects and measures; stage 03 of every other band (in its run
``RUN/bands/<band>/``) measures the same detections in forced photometry, so
row ``k`` of every band's catalogue is one object. The simulation: ufig's
SExtractor runs in dual-image mode with detection in the same band
(``sextractor_forced_photo_detection_bands``), one catalogue per band.

An object counts when it counts in every band: ``FLAGS == 0`` and off the
masked pixels (stage 02's mask of that band, at the detection position) in
each band, with a measured ``MAG_AUTO`` everywhere. The same cuts, with the
data's masks, select the simulation's objects. The statistics, their halves
and noise floors are those of :mod:`hscsim_utils.numerics.colours`: per colour
of neighbouring bands (g - r, r - i, i - z, z - y) the KS distance and the
signed median shift of the simulation against the data on the scoring half,
each with its floor from the data's own halves (significant beyond twice the
floor). The median colour per 0.5 mag of the detection band's ``MAG_AUTO``
(both sides) is in each median shift's ``detail``, for the colour-magnitude
figure.

Entry point: :func:`colour_comparison`; stage 07 writes its block as
``colours`` of the section ``quality`` of ``metrics.json``, the figure is
:func:`hscsim_utils.stages.quality_plots.plot_colours`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import realism_block
from hscsim_utils.numerics import colours, halves
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages.masks import masked_at

__all__ = ["BandSide", "ColourComparison", "colour_comparison", "counted_rows"]


@dataclass(frozen=True)
class ColourComparison:
    """The colours of the simulation and the data, and their comparison (the
    ``colours`` block of ``metrics.json``)."""

    simulation: colours.ColourSample
    data: colours.ColourSample
    block: dict

    def scoring(self, which: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Colours and detection-band magnitudes of the ``"simulation"`` or
        ``"data"`` on the scoring half (what the statistics compare)."""
        sample = self.simulation if which == "simulation" else self.data
        rows = sample.half(halves.SCORING)
        return {k: v[rows] for k, v in sample.colours.items()}, sample.magnitude[rows]


@dataclass(frozen=True)
class BandSide:
    """What stage 07 read of one band: its masked pixels and the simulation's
    and the data's SExtractor catalogues."""

    masked: np.ndarray
    sim_catalog: np.ndarray
    data_catalog: np.ndarray

    @classmethod
    def of(cls, inputs) -> BandSide:
        """The band of a :class:`~hscsim_utils.stages.quality.QualityInputs`."""
        return cls(inputs.masked, inputs.sim_catalog, inputs.data_catalog)


def counted_rows(
    catalogs: dict[str, np.ndarray], masks: dict[str, np.ndarray], detection: str
) -> np.ndarray:
    """Rows that count in every band: ``FLAGS == 0`` and the detection position
    off that band's masked pixels."""
    det = catalogs[detection]
    keep = np.ones(len(det), bool)
    for band, cat in catalogs.items():
        keep &= cat["FLAGS"] == 0
        if len(det):
            keep &= ~masked_at(det, masks[band])
    return keep


def _row_aligned(catalogs: dict[str, np.ndarray], detection: str, source) -> None:
    """Every band's catalogue lists the detection band's objects, row for row
    (same length and detection positions ``X_IMAGE``, ``Y_IMAGE``; the windowed
    ones are measured per band): else one InputError naming ``source``."""
    det = catalogs[detection]
    for band, cat in catalogs.items():
        if len(cat) != len(det) or not all(
            np.array_equal(cat[c], det[c]) for c in ("X_IMAGE", "Y_IMAGE")
        ):
            raise InputError(
                source(band),
                f"not the {detection} band's detections row for row ({len(cat)} "
                f"rows against {len(det)}): not measured in forced photometry",
            )


def colour_comparison(
    tile: TileSpec, run: RunFolder, folder: Path, sides: dict[str, BandSide]
) -> ColourComparison | None:
    """Colours of the simulation in ``folder`` against the data's (see the
    module docstring); ``sides``: every band's masked pixels and catalogues as
    stage 07 read them (:func:`hscsim_utils.stages.quality.band_realism`). None
    without every band (a tile of one band, or a simulation lacking bands)."""
    from hscsim_utils.stages import simulate

    if len(tile.bands) < 2 or set(sides) != set(tile.bands):
        return None
    sim = simulate.load_simulation(folder)
    runs = run.band_runs(tile.bands, tile.band)
    catalogs = {
        "simulation": {b: side.sim_catalog for b, side in sides.items()},
        "data": {b: side.data_catalog for b, side in sides.items()},
    }
    _row_aligned(catalogs["simulation"], tile.band,
                 lambda b: sim.for_band(b).catalog_path)  # fmt: skip
    _row_aligned(catalogs["data"], tile.band, lambda b: runs[b].sextractor_cat)
    masks = {b: side.masked for b, side in sides.items()}
    shape = masks[tile.band].shape
    samples = {
        side: colours.colour_sample(cats, tile.band, shape,
                                    counted_rows(cats, masks, tile.band))
        for side, cats in catalogs.items()
    }  # fmt: skip
    values = {
        "half": halves.SCORING,
        "bands": list(tile.bands),
        "magnitude": f"MAG_AUTO, detected in the {tile.band} band",
        "selection": "FLAGS == 0 and unmasked in every band",
        "statistics": colours.colour_realism(samples["simulation"], samples["data"]),
    }
    block = realism_block(run.root, folder, tile.is_demo, values)
    return ColourComparison(samples["simulation"], samples["data"], block)
