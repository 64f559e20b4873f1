"""Redshift distribution n(z) of the detected simulated galaxies.

GalSBI draws every galaxy with its redshift; ufig's
``match_sextractor_seg_catalog_multiband_read`` gives each SExtractor detection
the intrinsic properties of the object that dominates its segment, ``z`` and
``star_gal`` (0 galaxy, 1 star, -200 no match) among them. The n(z) of the
detected galaxies brighter than a measured magnitude is what a selection in
the data corresponds to in redshift: photometric-redshift calibration and
clustering analyses of HSC deep fields draw it from such simulations (Moser
et al. 2024, arXiv:2401.06846, compare the simulations' n(z) with COSMOS).

It is a property of the simulation alone: the data have no redshifts, so it is
not a realism number. Its noise is that of one patch's galaxies: the bootstrap
standard error of the mean and median (resampling the galaxies,
:data:`N_BOOTSTRAP` times with a fixed seed). Cosmic variance (one patch,
~0.05 deg^2 of the 1.7 deg^2 HSC tract) is not in it.

Per magnitude limit (``MAG_AUTO`` of the detection band below 23, 24 and 25, the
limits of :data:`MAG_LIMITS`) :func:`detected_nz` gives the number of
detections, of those matched to a galaxy, their mean and median redshift with
errors, and the counts in :data:`Z_EDGES`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAG_LIMITS", "N_BOOTSTRAP", "Z_EDGES", "detected_nz", "galaxy_redshifts"]

MAG_LIMITS: tuple[float, ...] = (23.0, 24.0, 25.0)
Z_EDGES = np.round(np.arange(0.0, 6.0001, 0.1), 1)  # GalSBI draws z up to 6
N_BOOTSTRAP = 200
NO_MATCH = -200  # ufig's value for a detection without an intrinsic object
GALAXY = 0  # ufig's star_gal of a galaxy


def galaxy_redshifts(catalog: np.ndarray, mag_limit: float) -> tuple[int, np.ndarray]:
    """Detections with ``MAG_AUTO < mag_limit``: their number and the redshifts
    of those matched to a galaxy."""
    bright = catalog[catalog["MAG_AUTO"] < mag_limit]
    galaxy = (bright["star_gal"] == GALAXY) & (bright["z"] != NO_MATCH)
    return len(bright), np.asarray(bright["z"][galaxy], np.float64)


def _bootstrap_errors(z: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Standard errors of the mean and the median of ``z`` (bootstrap)."""
    draws = z[rng.integers(0, z.size, size=(N_BOOTSTRAP, z.size))]
    return float(np.std(draws.mean(axis=1))), float(np.std(np.median(draws, axis=1)))


def detected_nz(
    catalog: np.ndarray, mag_limits: tuple[float, ...] = MAG_LIMITS, seed: int = 0
) -> dict:
    """n(z) of the detected galaxies below each of ``mag_limits``.

    ``catalog``: the simulation's SExtractor catalogue with ufig's matched
    columns (``MAG_AUTO``, ``star_gal``, ``z``), already cut to the objects that
    count. Returns ``{"z_edges": [...], "limits": {"23.0": {...}, ...}}`` with,
    per limit, ``n_detected``, ``n_galaxies``, ``z_mean``, ``z_mean_err``,
    ``z_median``, ``z_median_err`` (None without galaxies) and ``counts``.
    """
    missing = [c for c in ("MAG_AUTO", "star_gal", "z") if c not in catalog.dtype.names]
    if missing:
        raise ValueError(f"catalogue lacks the matched columns {missing}")
    limits = {}
    for limit in mag_limits:
        n_detected, z = galaxy_redshifts(catalog, limit)
        row = {"n_detected": n_detected, "n_galaxies": int(z.size)}
        if z.size:  # each limit's resamples from a generator of its own
            rng = np.random.default_rng([seed, round(100 * limit)])
            mean_err, median_err = _bootstrap_errors(z, rng)
            row |= {
                "z_mean": float(z.mean()), "z_mean_err": mean_err,
                "z_median": float(np.median(z)), "z_median_err": median_err,
            }  # fmt: skip
        else:
            row |= dict.fromkeys(("z_mean", "z_mean_err", "z_median", "z_median_err"))
        row["counts"] = np.histogram(z, bins=Z_EDGES)[0].tolist()
        limits[f"{limit:.1f}"] = row
    return {"z_edges": Z_EDGES.tolist(), "limits": limits}
