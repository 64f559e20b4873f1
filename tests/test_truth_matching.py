"""Detections matched to true objects: completeness, purity, photometry, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.numerics import truth_matching as tm

DET_DTYPE = [("XWIN_IMAGE", "f8"), ("YWIN_IMAGE", "f8"), ("MAG_AUTO", "f4"),
             ("FLUX_RADIUS", "f4"), ("FLAGS", "i2")]  # fmt: skip
UFIG_DTYPE = [("x", "f8"), ("y", "f8"), ("mag", "f4"), ("r50", "f4")]


def ufig_catalogue(x, y, mag, r50=None):
    cat = np.zeros(len(x), UFIG_DTYPE)
    cat["x"], cat["y"], cat["mag"] = x, y, mag
    cat["r50"] = 0.0 if r50 is None else r50
    return cat


def detections(x, y, mag, radius=2.0, flags=0):
    det = np.zeros(len(x), DET_DTYPE)
    det["XWIN_IMAGE"], det["YWIN_IMAGE"], det["MAG_AUTO"] = x, y, mag
    det["FLUX_RADIUS"], det["FLAGS"] = radius, flags
    return det


def test_true_objects_in_sextractor_convention():
    gal = ufig_catalogue([10.0], [20.0], [23.0], [2.5])
    star = ufig_catalogue([5.2], [7.9], [19.0])
    truth = tm.true_objects(gal, star)
    assert truth["X"].tolist() == [10.5, 5.7] and truth["Y"].tolist() == [20.5, 8.4]
    assert truth["is_star"].tolist() == [False, True]
    assert truth["r50"].tolist() == [2.5, 0.0]
    assert len(tm.true_objects(None, None)) == 0
    with pytest.raises(InputError, match="mag"):
        tm.true_objects(np.zeros(1, [("x", "f8"), ("y", "f8")]), None)


def test_match_is_one_to_one_nearest_first():
    true_x, true_y = (
        np.array([10.0, 12.0, 50.0, 80.0]),
        np.array([10.0, 10.0, 50.0, 80]),
    )
    # detection 0 sits between true 0 and 1 (closer to 1); detection 1 on true 1
    det_x, det_y = np.array([11.2, 12.1, 52.5, 90.0]), np.array([10.0, 10.0, 50.0, 80])
    true_of_det, det_of_true = tm.match(det_x, det_y, true_x, true_y, radius=3.0)
    assert true_of_det.tolist() == [0, 1, 2, -1]  # 1.2 px to true 0 once 1 is taken
    assert det_of_true.tolist() == [0, 1, 2, -1]
    none = tm.match(np.zeros(0), np.zeros(0), true_x, true_y)
    assert none[1].tolist() == [-1] * 4
    far = tm.match(det_x, det_y, true_x, true_y, radius=0.5)
    assert far[0].tolist() == [-1, 1, -1, -1]


def synthetic(rng, n=4000, mag_offset=0.0, size_scale=1.0, spurious=300, lost=0.0):
    """True galaxies, their detections (noisy positions, magnitudes and sizes,
    fainter ones missed more often) and spurious detections."""
    x, y = rng.uniform(20, 1980, n), rng.uniform(20, 1980, n)
    mag = rng.uniform(20, 28, n)
    r50 = rng.uniform(1.0, 4.0, n)
    truth = tm.true_objects(ufig_catalogue(x, y, mag, r50), None)
    p_detect = np.clip((27.0 - mag) / 2.0, 0, 1) * (1 - lost)
    seen = rng.uniform(0, 1, n) < p_detect
    det = detections(
        truth["X"][seen] + rng.normal(0, 0.3, seen.sum()),
        truth["Y"][seen] + rng.normal(0, 0.3, seen.sum()),
        mag[seen] + mag_offset + rng.normal(0, 0.05, seen.sum()),
        size_scale * 1.2 * r50[seen],
    )
    det["FLAGS"][::10] = 2  # one in ten flagged
    junk = detections(rng.uniform(20, 1980, spurious), rng.uniform(20, 1980, spurious),
                      rng.uniform(24, 27, spurious))  # fmt: skip
    return np.concatenate([det, junk]), truth


def test_completeness_purity_photometry_and_sizes():
    rng = np.random.default_rng(1)
    det, truth = synthetic(rng)
    keep_det, keep_true = np.ones(len(det), bool), np.ones(len(truth), bool)
    out = tm.diagnostics(det, truth, keep_det, keep_true)
    bins = np.array(out["mag_bins"])
    centres = 0.5 * (bins[1:] + bins[:-1])
    full = out["all"]
    expected = np.clip((27.0 - centres) / 2.0, 0, 1)
    for c, got, want in zip(centres, full["completeness"], expected, strict=True):
        if 20 < c < 28:
            assert got == pytest.approx(want, abs=0.12), c
    bright = centres < 24
    purity = np.array(full["purity"], dtype=float)
    assert np.all(purity[bright & (centres > 20)] > 0.99)  # no spurious ones there
    summary = out["summary"]
    assert summary["all"]["24-25"]["completeness"] == pytest.approx(1.0, abs=0.02)
    assert summary["all"]["25-26"]["completeness"] == pytest.approx(0.75, abs=0.05)
    assert summary["all"]["26-27"]["completeness"] == pytest.approx(0.25, abs=0.05)
    assert summary["all"]["24-25"]["purity"] < 0.95  # spurious detections at 24-27
    # FLAGS == 0 drops one detection in ten from the completeness
    ratio = (
        summary["flags0"]["22-24"]["completeness"]
        / summary["all"]["22-24"]["completeness"]
    )
    assert ratio == pytest.approx(0.9, abs=0.03)
    offsets = [v for v in full["mag_offset_median"] if v is not None]
    assert np.all(np.abs(offsets) < 0.03)
    nmad = [v for v in full["mag_offset_nmad"] if v is not None]
    assert np.median(nmad) == pytest.approx(0.05, abs=0.01)
    sizes = [v for v in full["size_ratio_median"] if v is not None]
    assert np.allclose(sizes, 1.2, atol=1e-5)


def test_a_zero_point_error_and_larger_sizes_show():
    rng = np.random.default_rng(2)
    det, truth = synthetic(rng, mag_offset=0.1, size_scale=1.1)
    out = tm.diagnostics(det, truth, np.ones(len(det), bool), np.ones(len(truth), bool))
    row = out["summary"]["flags0"]["22-24"]
    assert row["mag_offset_median"] == pytest.approx(0.1, abs=0.01)
    assert row["mag_offset_err"] < 0.01
    assert row["size_ratio_median"] == pytest.approx(1.32, abs=1e-4)


def test_selections_restrict_what_counts():
    rng = np.random.default_rng(3)
    det, truth = synthetic(rng, spurious=0)
    left = truth["X"] < 1000
    det_left = det["XWIN_IMAGE"] < 1000
    out = tm.diagnostics(det, truth, det_left, left)
    s = out["summary"]["all"]["22-24"]
    assert s["n_true"] == np.count_nonzero(left & (truth["mag"] >= 22)
                                           & (truth["mag"] < 24))  # fmt: skip
    assert s["completeness"] > 0.95 and s["purity"] == 1.0
    with pytest.raises(InputError, match="selection"):
        tm.diagnostics(det, truth, det_left[:-1], left)
    with pytest.raises(InputError, match="FLAGS"):
        tm.diagnostics(det[["XWIN_IMAGE", "YWIN_IMAGE", "MAG_AUTO", "FLUX_RADIUS"]],
                       truth, det_left, left)  # fmt: skip


def test_mag_offsets_of_matched_pairs():
    rng = np.random.default_rng(4)
    det, truth = synthetic(rng, mag_offset=0.1, spurious=0)
    mag, dmag = tm.mag_offsets(det, truth, np.ones(len(det), bool),
                               np.ones(len(truth), bool))  # fmt: skip
    assert len(mag) == len(dmag) == np.count_nonzero(det["FLAGS"] == 0)
    assert np.median(dmag) == pytest.approx(0.1, abs=0.005)
