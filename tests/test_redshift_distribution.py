"""n(z) of detected galaxies: selection, statistics and their bootstrap errors."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.numerics import redshift_distribution as rd


def catalog(mag, z, star_gal) -> np.ndarray:
    cat = np.zeros(len(mag), [("MAG_AUTO", "f4"), ("z", "f4"), ("star_gal", "i4")])
    cat["MAG_AUTO"], cat["z"], cat["star_gal"] = mag, z, star_gal
    return cat


def test_only_matched_galaxies_below_the_limit_count():
    cat = catalog(
        mag=[22.0, 22.5, 23.5, 24.5, 22.0, 22.0],
        z=[0.5, 1.5, 2.0, 3.0, -200, -200],
        star_gal=[0, 0, 0, 0, 1, -200],  # a star and an unmatched detection
    )
    out = rd.detected_nz(cat, (23.0, 24.0, 25.0))
    rows = out["limits"]
    assert [rows[k]["n_detected"] for k in ("23.0", "24.0", "25.0")] == [4, 5, 6]
    assert [rows[k]["n_galaxies"] for k in ("23.0", "24.0", "25.0")] == [2, 3, 4]
    assert rows["23.0"]["z_mean"] == pytest.approx(1.0)
    assert rows["24.0"]["z_median"] == pytest.approx(1.5)
    assert sum(rows["25.0"]["counts"]) == 4
    assert len(rows["25.0"]["counts"]) == len(out["z_edges"]) - 1


def test_bootstrap_errors_are_the_standard_errors():
    """Gaussian redshifts: the mean's error is sigma / sqrt(n), the median's
    sqrt(pi / 2) times that (the 200 bootstraps scatter by ~5%)."""
    rng = np.random.default_rng(1)
    n, sigma = 2000, 0.4
    z = rng.normal(1.2, sigma, n)
    row = rd.detected_nz(catalog(np.full(n, 20.0), z, np.zeros(n)), (23.0,))
    row = row["limits"]["23.0"]
    assert row["z_mean_err"] == pytest.approx(sigma / np.sqrt(n), rel=0.15)
    expected = np.sqrt(np.pi / 2) * sigma / np.sqrt(n)
    assert row["z_median_err"] == pytest.approx(expected, rel=0.2)
    assert abs(row["z_mean"] - 1.2) < 4 * sigma / np.sqrt(n)


def test_same_seed_same_errors_and_no_galaxy_gives_nulls():
    cat = catalog([22.0, 22.1, 22.2], [0.3, 0.9, 1.4], [0, 0, 0])
    assert rd.detected_nz(cat, seed=3) == rd.detected_nz(cat, seed=3)
    errors = {rd.detected_nz(cat, seed=s)["limits"]["25.0"]["z_mean_err"]
              for s in range(5)}  # fmt: skip
    assert len(errors) > 1  # the seed is used
    alone = rd.detected_nz(cat, (25.0,), seed=3)["limits"]["25.0"]
    assert alone == rd.detected_nz(cat, seed=3)["limits"]["25.0"]  # limits apart
    empty = rd.detected_nz(catalog([25.5], [1.0], [0]), (23.0,))["limits"]["23.0"]
    assert empty["n_galaxies"] == 0 and empty["z_median"] is None
    assert sum(empty["counts"]) == 0


def test_catalogue_without_matched_columns_is_refused():
    cat = np.zeros(3, [("MAG_AUTO", "f4")])
    with pytest.raises(ValueError, match=r"matched columns \['star_gal', 'z'\]"):
        rd.detected_nz(cat)
