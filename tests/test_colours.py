"""Colour realism: dual-image catalogues of simulation and data, scoring half,
each statistic against the data's own halves."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.numerics import colours

SHAPE = (2048, 2048)
DTYPE = [("MAG_AUTO", "f4"), ("XWIN_IMAGE", "f4"), ("YWIN_IMAGE", "f4")]


def catalogs(rng, n=6000, shift=0.0, bands=("g", "r", "i")):
    """Row-aligned catalogues: i magnitudes, g - r ~ N(0.6, 0.3) (+ ``shift``),
    r - i ~ N(0.3, 0.2)."""
    x, y = rng.uniform(1, SHAPE[1], n), rng.uniform(1, SHAPE[0], n)
    mag = {"i": rng.uniform(21, 26, n)}
    mag["r"] = mag["i"] + rng.normal(0.3, 0.2, n)
    mag["g"] = mag["r"] + rng.normal(0.6, 0.3, n) + shift
    out = {}
    for band in bands:
        cat = np.zeros(n, DTYPE)
        cat["MAG_AUTO"], cat["XWIN_IMAGE"], cat["YWIN_IMAGE"] = mag[band], x, y
        out[band] = cat
    return out


def test_colour_names_follow_the_hsc_order():
    assert colours.colour_names(("i", "g", "r")) == ["g-r", "r-i"]
    assert colours.colour_names(("g", "r", "i", "z", "y")) == [
        "g-r", "r-i", "i-z", "z-y",
    ]  # fmt: skip
    assert colours.colour_names(("g", "i")) == ["g-i"]
    assert colours.colour_names(("i",)) == []


def test_unmeasured_objects_are_left_out_and_rows_must_align():
    cats = catalogs(np.random.default_rng(1), n=10)
    cats["g"]["MAG_AUTO"][3] = 99.0
    cats["r"]["MAG_AUTO"][4] = np.nan
    sample = colours.colour_sample(cats, "i", SHAPE)
    assert sample.magnitude.size == 8
    assert sample.colours["g-r"] == pytest.approx(
        np.delete(cats["g"]["MAG_AUTO"] - cats["r"]["MAG_AUTO"], [3, 4])
    )
    with pytest.raises(ValueError, match="unequal length"):
        colours.colour_sample({"g": cats["g"], "i": cats["i"][:5]}, "i", SHAPE)


def test_same_population_is_within_the_floor_a_shift_is_not():
    rng = np.random.default_rng(2)
    data = colours.colour_sample(catalogs(rng), "i", SHAPE)
    other = colours.colour_sample(catalogs(rng), "i", SHAPE)
    same = colours.colour_realism(other, data)
    assert set(same) == {"g-r_ks", "g-r_median_shift", "r-i_ks", "r-i_median_shift"}
    for record in same.values():
        # the floor is the data's halves' scatter: the same population stays
        # within three floors (twice the floor, "significant", is a 2-sigma line)
        assert record["n_splits"] == 16 and record["floor"] > 0
        assert abs(record["value"]) < 3 * record["floor"], record
    bluer = colours.colour_sample(catalogs(rng, shift=-0.1), "i", SHAPE)
    shifted = colours.colour_realism(bluer, data)
    assert shifted["g-r_median_shift"]["value"] == pytest.approx(-0.1, abs=0.03)
    assert shifted["g-r_median_shift"]["significant"]
    assert shifted["g-r_ks"]["significant"]
    assert not shifted["r-i_ks"]["significant"]  # r - i untouched
    relation = shifted["g-r_median_shift"]["detail"]
    assert len(relation["median_a"]) == len(relation["mag_bins"]) - 1


def test_objects_off_the_image_are_in_neither_half():
    cats = catalogs(np.random.default_rng(3), n=10)
    for cat in cats.values():
        cat["XWIN_IMAGE"][0] = -5.0
        cat["YWIN_IMAGE"][1] = np.nan
    sample = colours.colour_sample(cats, "i", SHAPE)
    assert sample.magnitude.size == 8
    assert (sample.half("tuning") | sample.half("scoring")).all()
