"""Realism statistics and their noise floors, on synthetic images and catalogues:
each statistic sees the error it is meant to see and stays at its floor without
one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from hscsim_utils.errors import InputError
from hscsim_utils.numerics import halves
from hscsim_utils.numerics import realism_stats as rs
from tests.reference_acf import nanmedian_rows, numpy_acf_sums, previous_acf_block_sums
from tests.reference_numpy import numpy_robust_std

SHAPE = (1024, 1024)
BLOCK = 128  # 8 x 8 blocks on a small image
N_OBJECTS = 20_000


def magnitudes(rng, n, slope=0.3, lo=18.0, hi=25.5):
    """Number counts rising as 10^(slope m) between lo and hi."""
    u = rng.uniform(0, 1, n)
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + u * (b - a)) / slope


def objects(rng, n=N_OBJECTS, mag_shift=0.0, size_scale=1.0):
    cat = np.zeros(n, [(c, "f4") for c in rs.OBJECT_COLUMNS])
    cat["MAG_AUTO"] = magnitudes(rng, n) + mag_shift
    size = 3.0 * 10 ** (-0.1 * (cat["MAG_AUTO"] - mag_shift - 22.0))
    cat["FLUX_RADIUS"] = size_scale * size * rng.lognormal(0.0, 0.3, n)
    cat["ELLIPTICITY"] = rng.beta(2, 5, n)
    return cat


def noise(rng, sigma=1.0, smooth=1, shape=SHAPE):
    """White noise, or noise averaged over ``smooth`` x ``smooth`` pixels and
    rescaled to the same width (correlated, not wider)."""
    white = rng.normal(0.0, 1.0, shape)
    if smooth > 1:
        white = uniform_filter(white, smooth, mode="wrap") * smooth
    return (sigma * white).astype(np.float32)


def sample(seed, sigma=1.0, smooth=1, mag_shift=0.0, size_scale=1.0):
    rng = np.random.default_rng(seed)
    image = noise(rng, sigma, smooth)
    unmasked = np.ones(SHAPE, bool)
    unmasked[:, :64] = False  # a masked stripe: no pixels, no objects, no area
    cat = objects(rng, mag_shift=mag_shift, size_scale=size_scale)
    x = rng.uniform(64.5, SHAPE[1] + 0.5, len(cat))
    y = rng.uniform(0.5, SHAPE[0] + 0.5, len(cat))
    return rs.image_sample(image, unmasked, unmasked, cat, x, y, block=BLOCK)


@pytest.fixture(scope="module")
def data():
    return sample(1)


@pytest.fixture(scope="module")
def floors(data):
    return rs.data_floor(data)


def assessed(sim, data, floors):
    stats = rs.statistics(sim.half("scoring"), data.half("scoring"))
    return rs.assess_all(stats, floors)


# ---------------------------------------------------------------- single statistics


def test_ks_ratio_and_robust_width():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 2.0, 200_000)
    assert rs.robust_std(a) == pytest.approx(2.0, rel=0.01)
    assert rs.robust_std(a.astype(np.float32)) == pytest.approx(rs.robust_std(a))
    assert rs.ks(a, a).value == 0.0 and rs.ks(a, a + 100).value == 1.0
    from scipy.stats import ks_2samp

    b = rng.normal(0.1, 2.0, 3000).round(1)  # ties as well
    assert rs.ks_statistic(a[:5000].round(1), b) == pytest.approx(
        ks_2samp(a[:5000].round(1), b).statistic, abs=1e-12
    )
    assert rs.ks(a, []).value is None
    assert rs.width_ratio(1.1 * a, a).value == pytest.approx(1.1)
    assert rs.width_ratio(1.1 * a, a).deviation == pytest.approx(0.1)
    assert rs.density_ratio(110, 2.0, 100, 2.0).value == pytest.approx(1.1)
    assert rs.density_ratio(110, 0.0, 100, 2.0).value is None


def _ks_by_lookup(a, b) -> float:
    """The KS statistic as it was computed before the merge: every pooled value
    looked up in both sorted samples."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / a.size
    cdf_b = np.searchsorted(b, pooled, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ks_merge_gives_the_lookups_float(dtype):
    rng = np.random.default_rng(7)
    for n_a, n_b, decimals in [(1000, 1000, 1), (50_000, 7_001, 2), (3, 40_000, 0),
                               (200_000, 150_000, 6)]:  # fmt: skip
        a = rng.normal(0, 1, n_a).round(decimals).astype(dtype)
        b = rng.normal(0.02, 1.1, n_b).round(decimals).astype(dtype)
        assert rs.ks_statistic(a, b) == _ks_by_lookup(a, b)  # exactly
        assert rs.ks_statistic(b, a) == _ks_by_lookup(b, a)
    mixed = rng.normal(size=500)
    assert rs.ks_statistic(mixed.astype(np.float32), mixed) == _ks_by_lookup(
        mixed.astype(np.float32), mixed
    )
    with_nan = np.append(rng.normal(size=99), np.nan)
    assert rs.ks_statistic(with_nan, mixed) == _ks_by_lookup(with_nan, mixed)
    half = mixed.astype(np.float16)  # not numba's: the lookup
    assert rs.ks_statistic(half, half[:200]) == _ks_by_lookup(half, half[:200])


def test_counts_chi2_is_the_poisson_formula():
    bins = np.array([20.0, 21.0, 22.0, 23.0])
    a = np.r_[np.full(30, 20.5), np.full(10, 21.5), np.full(2, 22.5)]
    b = np.r_[np.full(20, 20.5), np.full(10, 21.5), np.full(2, 22.5)]
    stat = rs.counts_chi2(a, 1.0, b, 1.0, bins, min_count=5)
    assert stat.dof == 2  # the last bin has 4 objects in all
    assert stat.value == pytest.approx((10**2 / 50 + 0) / 2)
    # different areas: densities are compared
    same = rs.counts_chi2(np.r_[a, a], 2.0, a, 1.0, bins, min_count=5)
    assert same.value == pytest.approx(0.0)
    with pytest.raises(InputError, match="area"):
        rs.counts_chi2(a, 0.0, b, 1.0)


def test_counts_chi2_sees_a_tenth_of_a_magnitude():
    rng = np.random.default_rng(3)
    data = magnitudes(rng, 10_000)
    same = rs.counts_chi2(magnitudes(rng, 10_000), 1.0, data, 1.0)
    shifted = rs.counts_chi2(magnitudes(rng, 10_000) + 0.1, 1.0, data, 1.0)
    assert same.value < rs.chi2_threshold(same.dof)
    assert shifted.value > 2 * rs.chi2_threshold(shifted.dof)


def test_median_standard_error():
    rng = np.random.default_rng(4)
    draws = rng.normal(0.0, 2.0, (4000, 400))
    empirical = np.median(draws, axis=1).std()
    _, err, _ = rs.binned_medians(np.zeros(400), draws[0], np.array([-1.0, 1.0]))
    assert err[0] == pytest.approx(empirical, rel=0.1)
    assert err[0] == pytest.approx(1.2533 * 2.0 / np.sqrt(400), rel=0.1)


def test_size_relation_sees_ten_percent_larger_objects():
    # without an error chi^2/dof exceeds its 99% point in ~2.5% of draws (seed 5 does)
    rng = np.random.default_rng(7)
    data = objects(rng, 10_000)
    same = rs.size_mag_chi2(objects(rng, 10_000), data)
    larger = rs.size_mag_chi2(objects(rng, 10_000, size_scale=1.1), data)
    assert same.value < rs.chi2_threshold(same.dof)
    assert larger.value > 2 * rs.chi2_threshold(larger.dof)
    assert len(larger.detail["median_a"]) == larger.dof


def test_autocorrelation_of_white_and_smoothed_noise():
    rng = np.random.default_rng(6)
    valid = np.ones(SHAPE, bool)
    white = rs.autocorrelation(noise(rng), valid)
    assert max(abs(v) for v in white.values()) < 0.01
    smooth = rs.autocorrelation(noise(rng, smooth=2), valid)
    # a 2 x 2 box: neighbours share half their pixels along each axis
    for name, expected in (("x1", 0.5), ("y1", 0.5), ("x2", 0.0), ("y3", 0.0)):
        assert smooth[name] == pytest.approx(expected, abs=0.01)
    # pixels outside ``valid`` and outliers do not count
    image = noise(rng, smooth=2)
    image[:, ::7] = 1e6
    valid[:, ::7] = False
    assert rs.autocorrelation(image, valid)["x1"] == pytest.approx(0.5, abs=0.01)
    image[10, 10] = 1e6  # far beyond the clip
    assert rs.autocorrelation(image, np.ones(SHAPE, bool))["y1"] == pytest.approx(
        0.5, abs=0.01
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f4"])
def test_acf_sums_follow_their_definition(dtype):
    """The numba kernel against the vectorised numpy sums: blocks cut by the
    image's edge, an empty block, a NaN, outliers and a constant block; the
    pair counts exactly, the sums to rounding."""
    rng = np.random.default_rng(11)
    shape, block = (300, 257), 64
    image = uniform_filter(rng.normal(0, 1, shape), 2).astype(dtype)
    image[5:9, 5:70] = 50.0
    image[128:192, 0:64] = 0.25
    image[3, 3] = np.nan
    valid = rng.random(shape) > 0.2
    valid[:64, 64:128] = False
    got = rs._acf_sums(image, valid, block)
    expected = numpy_acf_sums(image, valid, block)
    assert got.shape == (5 * 5, 3 + 4 * len(rs.LAGS))
    counts = [0] + [3 + 4 * j for j in range(len(rs.LAGS))]
    np.testing.assert_array_equal(got[:, counts], expected[:, counts])
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-9)
    assert got[1, 0] == 0  # the empty block


@pytest.mark.parametrize(("dtype", "block"), [("<f4", 64), ("<f8", 64), ("<f4", 37)])
def test_acf_kernel_in_one_pass_gives_the_floats_of_a_pass_per_lag(dtype, block):
    """Same sums to the last bit as the kernel's earlier form: a NaN, outliers,
    a constant block, an empty block, blocks cut by the image's edge."""
    rng = np.random.default_rng(12)
    shape = (300, 257)
    image = uniform_filter(rng.normal(0, 1, shape), 2).astype(dtype)
    image[5:9, 5:70] = 50.0
    image[128:192, 0:64] = 0.25
    image[3, 3] = np.nan
    valid = (rng.random(shape) > 0.2) & np.isfinite(image)
    valid[:64, 64:128] = False
    shifts = np.array(list(rs.LAGS.values()), dtype=np.int64).reshape(-1, 2)
    args = (image, valid, block, shifts, np.float32(rs.CLIP_SIGMA),
            np.float32(rs.MAD_TO_STD))  # fmt: skip
    np.testing.assert_array_equal(
        rs._acf_block_sums(*args), previous_acf_block_sums(*args)
    )


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "<f8"])
def test_image_sample_tags_pixels_as_numpy_masks_do(dtype):
    """The sample's background values, their cells and the area per cell, as
    boolean masks and ``np.bincount`` give them: cells cut by the image's edge,
    NaNs among the background pixels, a big-endian FITS image."""
    rng = np.random.default_rng(5)
    shape, block = (300, 257), 128
    image = rng.normal(0, 1, shape).astype(dtype)
    image[3, 3] = image[299, 256] = np.nan
    background = rng.random(shape) > 0.3
    unmasked = rng.random(shape) > 0.1
    sample = rs.image_sample(image, background, unmasked, np.zeros(0), np.zeros(0),
                             np.zeros(0), block=block)  # fmt: skip
    cell = block // rs.SHIFTS_PER_AXIS
    ncx = -(-shape[1] // cell)
    labels = (np.arange(shape[0]) // cell)[:, None] * ncx + np.arange(shape[1]) // cell
    keep = background & np.isfinite(image)
    np.testing.assert_array_equal(sample.bkg_values, image[keep])
    np.testing.assert_array_equal(sample.bkg_cells, labels[keep])
    np.testing.assert_array_equal(
        sample.cell_area,
        np.bincount(labels.ravel(), unmasked.ravel(), labels.max() + 1),
    )
    assert keep.sum() < background.sum() and sample.cell_area.size == 10 * 9


# ---------------------------------------------------------------- halves and floors


def test_halves_of_a_sample(data):
    tuning, scoring = data.half("tuning"), data.half("scoring")
    assert tuning.background.size + scoring.background.size == data.bkg_values.size
    assert tuning.area + scoring.area == (SHAPE[0] * (SHAPE[1] - 64))
    assert len(tuning.objects) + len(scoring.objects) == N_OBJECTS
    assert abs(len(tuning.objects) / N_OBJECTS - 0.5) < 0.02
    # the unmoved checkerboard is the halves module's
    mask = halves.half_mask(SHAPE, "scoring", BLOCK)
    assert scoring.area == mask[:, 64:].sum()
    shifts = data.shifts()
    assert len(shifts) == rs.N_SPLITS == 16 and shifts[0] == (0, 0)
    assert shifts[-1] == (3 * BLOCK // 4, 3 * BLOCK // 4)
    for shift in shifts[1:]:
        a, b = data.half("tuning", shift), data.half("scoring", shift)
        assert a.area + b.area == tuning.area + scoring.area
        assert abs(a.area / (a.area + b.area) - 0.5) < 0.05
    with pytest.raises(InputError, match="cells"):
        data.select(np.ones(3, bool))
    with pytest.raises(InputError, match="half"):
        data.half("training")


def test_floor_checkerboard_is_tuning_against_scoring(data, floors):
    direct = rs.statistics(data.half("tuning"), data.half("scoring"))
    for name, floor in floors.items():
        assert floor.checkerboard == direct[name].value
        assert floor.n_splits == rs.N_SPLITS
        assert floor.floor is not None and floor.floor >= 0


def test_no_error_stays_at_the_floor(data, floors):
    out = assessed(sample(11), data, floors)
    assert set(out) == set(rs.KINDS)
    assert not [k for k, a in out.items() if a["significant"]], rs.table(out)
    for a in out.values():
        assert a["value"] is not None and a["threshold"] > 0


@pytest.mark.parametrize(
    ("error", "statistic"),
    [
        ({"mag_shift": 0.1}, "number_counts_chi2"),
        ({"size_scale": 1.1}, "size_mag_chi2"),
        ({"size_scale": 1.1}, "flux_radius_ks"),
        ({"smooth": 2}, "bkg_autocorr"),
        ({"sigma": 1.02}, "bkg_std_ratio"),
        ({"sigma": 1.02}, "bkg_ks"),
    ],
)
def test_an_injected_error_is_significant(data, floors, error, statistic):
    out = assessed(sample(11, **error), data, floors)
    assert out[statistic]["significant"] is True, rs.table(out)


def test_smoothed_noise_of_the_same_width_is_seen_only_by_the_autocorrelation(
    data, floors
):
    out = assessed(sample(11, smooth=2, sigma=1.0), data, floors)
    assert out["bkg_autocorr"]["value"] > 0.4
    assert out["bkg_autocorr"]["detail"]["a"]["x1"] == pytest.approx(0.5, abs=0.02)


def test_assess_rules():
    floor = rs.Floor(0.01, 1.005, 0.002, 16)
    ratio = rs.assess(rs.Statistic(1.03, "ratio"), floor)
    assert ratio["threshold"] == pytest.approx(0.02) and ratio["significant"]
    assert not rs.assess(rs.Statistic(0.985, "ratio"), floor)["significant"]
    assert not rs.assess(rs.Statistic(0.015, "distance"), floor)["significant"]
    chi2 = rs.assess(rs.Statistic(2.0, "chi2", dof=10), rs.Floor(1.1, 1.0, 0.3, 16))
    assert chi2["threshold"] == pytest.approx(23.209 / 10, rel=1e-3)
    assert chi2["significant"] is False and chi2["floor_exceeds_threshold"] is False
    wide = rs.assess(rs.Statistic(2.5, "chi2", dof=10), rs.Floor(3.0, 3.0, 0.3, 16))
    assert wide["significant"] is True and wide["floor_exceeds_threshold"] is True
    missing = rs.assess(rs.Statistic(None, "distance"), floor)
    assert missing["significant"] is None
    lines = rs.table({"bkg_std_ratio": ratio, "x": missing}).splitlines()
    assert lines[1].split()[-1] == "yes" and "1 +- 0.0200" in lines[1]
    assert lines[2].split()[1:] == ["-", "0.0100", "0.0200", "-"]


def test_median_shift_has_a_sign_where_the_chi2_has_none():
    """A relation 0.04 below the reference: shifting it by +0.08 leaves the chi^2
    where it was (the other side, as far), the signed shift goes -0.04 -> +0.04."""
    rng = np.random.default_rng(4)
    x = rng.uniform(20, 26, 20000)
    ref_x = rng.uniform(20, 26, 20000)
    ref_y = rng.normal(0.0, 0.05, ref_x.size)
    below = rng.normal(-0.04, 0.05, x.size)
    low = rs.median_shift(x, below, ref_x, ref_y)
    high = rs.median_shift(x, below + 0.08, ref_x, ref_y)
    assert low.value == pytest.approx(-0.04, abs=0.003)
    assert high.value == pytest.approx(0.04, abs=0.003)
    assert low.detail["error"] < 0.001 and low.deviation == abs(low.value)
    chi_low = rs.median_relation(x, below, ref_x, ref_y).value
    chi_high = rs.median_relation(x, below + 0.08, ref_x, ref_y).value
    assert chi_high == pytest.approx(chi_low, rel=0.3)
    assert rs.median_shift(x[:3], below[:3], ref_x, ref_y).value is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 10, 601, 1_000_001])
def test_median_is_numpys(n, dtype):
    values = np.random.default_rng(n).normal(0.01, 0.02, n).astype(dtype)
    got, expected = rs.median(values), np.median(values)
    assert got == expected and type(got) is type(expected)
    values[n // 3] = np.nan
    assert np.isnan(rs.median(values))
    assert np.isnan(rs.median(np.array([], dtype)))


def _float_samples():
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).smallest_subnormal
        for n in (1, 2, 3, 4, 5, 10, 101, 4096, 4097, 100_000):
            yield rng.normal(0.01, 0.02, n).astype(dtype)
            yield rng.integers(-3, 4, n).astype(dtype)  # ties across bins
            yield (rng.normal(size=n) * tiny * 1e6).astype(dtype)  # subnormal
        zeros = rng.normal(size=10_001).astype(dtype)
        zeros[::7], zeros[::11] = -0.0, 0.0
        yield zeros
        signed = np.zeros(1000, dtype)
        signed[::2] = -0.0
        yield signed
        wild = rng.standard_cauchy(100_000).astype(dtype)
        big = np.finfo(dtype).max
        wild[:5] = [np.inf, -np.inf, big, -big, tiny]
        yield wild
        yield np.full(5000, 2.5, dtype)
        with_nan = rng.normal(size=1000).astype(dtype)
        with_nan[10] = np.nan
        yield with_nan
    yield rng.integers(-50, 50, 999)  # integers: taken in float64


@pytest.mark.parametrize("values", list(_float_samples()))
def test_robust_std_is_the_two_medians_of_numpy(values):
    work = values if values.dtype == np.float32 else values.astype(np.float64)
    expected = float(rs.MAD_TO_STD * np.median(np.abs(work - np.median(work))))
    assert numpy_robust_std(values) == expected or np.isnan(expected)  # the reference
    got = rs.robust_std(values)
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == expected and np.signbit(got) == np.signbit(expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_pair_gives_both_middle_ranks(dtype):
    values = np.random.default_rng(2).normal(size=20_000).astype(dtype)
    ordered = np.sort(values)
    centre = dtype(0.3)
    deviations = np.sort(np.abs(values - centre))
    for k in (0, 1, 9_999, 19_998):
        lo, hi, ok = rs.order_pair(values, k, k + 1)
        assert ok and (lo, hi) == (ordered[k], ordered[k + 1])
        assert lo.dtype == hi.dtype == dtype
        lo, hi, ok = rs.order_pair(values, k, k, centre)
        assert ok and lo == hi == deviations[k]


def test_nanmedian_rows_is_numpys():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(6, 7, 900)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan
    values[0, 0] = np.nan  # a block without pixels
    values[0, 1, :-1] = np.nan  # one pixel
    values[0, 2, :-2] = np.nan  # two pixels
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(values, axis=-1)
    got = nanmedian_rows(values)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_floors_on_threads_are_the_sequential_ones(data, floors, monkeypatch):
    monkeypatch.setattr(rs, "MAX_FLOOR_THREADS", 1)
    assert rs.data_floor(data) == floors


def test_recorded_floors_are_the_floors(data, floors):
    """metrics.json keeps each floor exactly: stage 09 reads stage 07's back."""
    import json

    records = json.loads(json.dumps(assessed(sample(2), data, floors)))
    assert rs.recorded_floors(records) == floors
    del records["bkg_ks"]["floor_spread"]
    with pytest.raises(KeyError, match="floor_spread"):
        rs.recorded_floors(records)
