"""Colours of detected objects in several bands, simulation against data.

Simulation and data are each measured by SExtractor in dual-image mode:
detected once in the detection band, measured in every band in the same
apertures, so row ``k`` of every band's catalogue is one object. A colour is
the difference of ``MAG_AUTO`` in two bands next to each other among those
present (all five: g - r, r - i, i - z, z - y) of the objects that count in
every band (finite magnitudes below 90; the caller cuts flags and masks as for
the single-band realism statistics).

The rules are those of :mod:`hscsim_utils.numerics.realism_stats`: every
number compares the simulation with the data on the scoring half of the
checkerboard (:mod:`hscsim_utils.numerics.halves`), which no tuning step sees,
and comes with its noise floor: the same statistic between the data's tuning
and scoring halves, as the rms over the 16 moves of the checkerboard by a
quarter block (:data:`realism_stats.SHIFTS_PER_AXIS` per axis), so a colour
difference is significant beyond twice the floor
(:func:`realism_stats.assess`). Per colour:

- ``<colour>_ks``: two-sample Kolmogorov-Smirnov statistic of the colour
  distributions (a distance, 0 when equal);
- ``<colour>_median_shift``: the median colour of the simulation minus the
  data's (mag, signed: which way the simulation is off; the KS statistic
  cannot tell), with the median colour per 0.5 mag of the detection band's
  ``MAG_AUTO`` in its ``detail`` for the colour-magnitude figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hscsim_utils.bands import HSC_BANDS
from hscsim_utils.numerics import halves
from hscsim_utils.numerics import realism_stats as rs

__all__ = [
    "MAG_BINS",
    "ColourSample",
    "colour_names",
    "colour_realism",
    "colour_sample",
]

MAG_BINS = np.arange(18.0, 27.01, 0.5)


def colour_names(bands: tuple[str, ...] | list[str]) -> list[str]:
    """``"g-r"`` and the like: each band of ``bands`` minus the next one in the
    HSC order (all five: g-r, r-i, i-z, z-y; g and i alone: g-i)."""
    present = [b for b in HSC_BANDS if b in bands]
    return [f"{a}-{b}" for a, b in zip(present, present[1:], strict=False)]


@dataclass(frozen=True)
class ColourSample:
    """The objects of one image that count in every band: their colours, the
    detection band's magnitude and their pixel indices (0-based)."""

    shape: tuple[int, int]
    colours: dict[str, np.ndarray]
    magnitude: np.ndarray
    ix: np.ndarray
    iy: np.ndarray

    def half(self, name: str, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
        """True for the objects in half ``name`` of the checkerboard moved by
        ``shift = (dy, dx)`` pixels."""
        dy, dx = shift
        parity = halves.block_parity(self.iy + dy, self.ix + dx)
        return parity == halves.HALVES.index(name)


def colour_sample(
    catalogs: Mapping[str, np.ndarray],
    detection_band: str,
    shape: tuple[int, int],
    keep: np.ndarray | None = None,
) -> ColourSample:
    """Colours of the row-aligned ``catalogs`` (band -> SExtractor catalogue of
    a dual-image run); ``keep`` selects rows beforehand (flags, masks)."""
    sizes = {len(cat) for cat in catalogs.values()}
    if len(sizes) != 1:
        raise ValueError(f"catalogues of unequal length {sorted(sizes)}: not one "
                         "dual-image detection list")  # fmt: skip
    (n,) = sizes
    good = np.ones(n, bool) if keep is None else np.asarray(keep, bool).copy()
    for cat in catalogs.values():
        mag = cat["MAG_AUTO"]
        good &= np.isfinite(mag) & (mag < rs.NO_MEASUREMENT)
    det = catalogs[detection_band]
    ix = halves.pixel_index(det["XWIN_IMAGE"], halves.FITS_FIRST_CENTRE)
    iy = halves.pixel_index(det["YWIN_IMAGE"], halves.FITS_FIRST_CENTRE)
    good &= (ix >= 0) & (ix < shape[1]) & (iy >= 0) & (iy < shape[0])  # on the image
    det, ix, iy = det[good], ix[good], iy[good]
    colours = {}
    for name in colour_names(tuple(catalogs)):
        a, b = name.split("-")
        colours[name] = np.asarray(
            catalogs[a]["MAG_AUTO"][good] - catalogs[b]["MAG_AUTO"][good], float
        )
    return ColourSample(tuple(shape), colours, np.asarray(det["MAG_AUTO"], float),
                        ix, iy)  # fmt: skip


def _median_relation(mag: np.ndarray, colour: np.ndarray) -> list[float | None]:
    """Median colour per bin of :data:`MAG_BINS` (None below 5 objects)."""
    med, _, count = rs.binned_medians(mag, colour, MAG_BINS)
    return [float(m) if n >= 5 else None for m, n in zip(med, count, strict=True)]


def _statistics(
    sim: ColourSample, sim_rows: np.ndarray, data: ColourSample, data_rows: np.ndarray
) -> dict[str, rs.Statistic]:
    """The two statistics of every colour between two selections."""
    out = {}
    n = (int(sim_rows.sum()), int(data_rows.sum()))
    for name in sim.colours:
        a, b = sim.colours[name][sim_rows], data.colours[name][data_rows]
        out[f"{name}_ks"] = rs.Statistic(rs.ks_statistic(a, b), "distance", n=n)
        shift = float(np.median(a) - np.median(b)) if a.size and b.size else None
        detail = {
            "mag_bins": MAG_BINS.tolist(),
            "median_a": _median_relation(sim.magnitude[sim_rows], a),
            "median_b": _median_relation(data.magnitude[data_rows], b),
        }
        out[f"{name}_median_shift"] = rs.Statistic(shift, "shift", n=n, detail=detail)
    return out


def _floors(data: ColourSample) -> dict[str, rs.Floor]:
    """Every colour statistic between the data's halves, over the moves of the
    checkerboard by a quarter block (the first: the tuning/scoring split)."""
    runs = [
        _statistics(data, data.half(halves.TUNING, shift),
                    data, data.half(halves.SCORING, shift))
        for shift in rs.checkerboard_shifts()
    ]  # fmt: skip
    return rs.floors_of_halvings(runs)


def colour_realism(sim: ColourSample, data: ColourSample) -> dict[str, dict]:
    """Every colour statistic, simulation against data on the scoring half,
    assessed against its floor (:func:`realism_stats.assess`)."""
    if set(sim.colours) != set(data.colours):
        raise ValueError(f"simulation colours {sorted(sim.colours)} are not the "
                         f"data's {sorted(data.colours)}")  # fmt: skip
    stats = _statistics(sim, sim.half(halves.SCORING), data, data.half(halves.SCORING))
    floors = _floors(data)
    return {key: rs.assess(stat, floors[key]) for key, stat in stats.items()}
