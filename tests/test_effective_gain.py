"""The effective gain measured from a VARIANCE plane: synthetic, real HSC, stage 01."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hscsim_utils.numerics import effective_gain
from hscsim_utils.numerics.effective_gain import measure_effective_gain
from hscsim_utils.stages.source_extraction import settings_from_skymapinfo
from tests.reference_numpy import numpy_sky_variance

REAL_HSC = (
    Path(__file__).resolve().parents[2]
    / "shared/realdata/hsc_cosmos_cutout/hsc_cosmos_35.npz"
)
SKY_VAR = 1.5e-4


def synthetic(gain: float, seed: int = 3, shape=(300, 300), source_term=True):
    """Gaussian sources of known flux; VARIANCE = sky + image / gain, and an
    image whose noise has that variance."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    model = np.zeros(shape)
    for x, y, amp, s in zip(rng.uniform(10, nx - 10, 60), rng.uniform(10, ny - 10, 60),
                            10 ** rng.uniform(-1, 1.5, 60), rng.uniform(1.5, 4, 60),
                            strict=True):  # fmt: skip
        model += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s))
    variance = SKY_VAR + (model / gain if source_term else np.zeros(shape))
    image = model + rng.normal(0.0, np.sqrt(variance))
    return image.astype(np.float32), variance.astype(np.float32)


@pytest.mark.parametrize("gain", [300.0, 4.0e4])
def test_a_known_gain_is_recovered(gain):
    image, variance = synthetic(gain)
    est = measure_effective_gain(image, variance, np.ones(image.shape, bool))
    assert est.gain == pytest.approx(gain, rel=0.05)
    assert est.error is not None and est.error < 0.05 * gain
    assert est.n_pixels > 500


def test_the_measurement_tells_two_gains_apart():
    """A factor 2 in the gain is a factor 2 in the estimate, far beyond its error."""
    low = measure_effective_gain(*synthetic(2.0e4), np.ones((300, 300), bool))
    high = measure_effective_gain(*synthetic(4.0e4), np.ones((300, 300), bool))
    assert high.gain / low.gain == pytest.approx(2.0, rel=0.08)
    assert high.gain - low.gain > 5 * np.hypot(low.error, high.error)


def test_a_variance_plane_without_source_noise_gives_no_gain():
    image, variance = synthetic(300.0, source_term=False)
    est = measure_effective_gain(image, variance, np.ones(image.shape, bool))
    assert est.gain is None
    assert "no source photon noise" in est.reason


def test_saturated_and_unusable_pixels_are_left_out():
    image, variance = synthetic(300.0)
    usable = np.ones(image.shape, bool)
    usable[:, :150] = False
    left = measure_effective_gain(image, variance, usable)
    whole = measure_effective_gain(image, variance, np.ones(image.shape, bool))
    assert 0 < left.n_pixels < whole.n_pixels
    capped = measure_effective_gain(image, variance, usable, saturation=0.01)
    assert capped.gain is None and "pixels above" in capped.reason


@pytest.mark.skipif(
    not REAL_HSC.is_file(),
    reason="../shared/realdata (real HSC cutouts) is not beside this checkout",
)
def test_real_hsc_ud_cosmos_coadd_gain_is_far_above_the_tutorial_convention():
    """Real HSC-SSP UD-COSMOS coadd cutouts (g r i z y): VARIANCE grows with the
    image, the fitted line describes the bright pixels' variance far better
    than the sky alone, and the gain (electrons per coadd ADU) is of order 10^4,
    not the few hundred of mean gain x number of exposures."""
    data = np.load(REAL_HSC)
    for band, image, variance in zip(
        data["filters"], data["images"], data["variance"], strict=True
    ):
        usable = np.ones(image.shape, bool)
        est = measure_effective_gain(image, variance, usable)
        assert est.gain is not None, (band, est.reason)
        assert 5.0e3 < est.gain < 2.0e5, (band, est)
        assert est.error < 0.15 * est.gain, (band, est)
        bright = image > 20 * np.sqrt(est.sky_variance_median)
        with_term = np.abs(variance - est.sky_variance_median - image / est.gain)
        sky_only = np.abs(variance - est.sky_variance_median)
        assert np.median(with_term[bright]) < 0.5 * np.median(sky_only[bright]), band
        other = measure_effective_gain(image, variance, usable, min_snr=10.0)
        assert other.gain == pytest.approx(est.gain, rel=0.1), band


def test_sextractor_gets_the_gain_asked_for():
    info = {"pixscale": 0.168, "seeing_i": 0.6, "satur_i": 100.0, "magzero_i": 27.0,
            "gain_i": 3.0, "nexp_i": 200.0, "gain_eff_i": 4.0e4}  # fmt: skip
    assert settings_from_skymapinfo(info).gain == pytest.approx(600.0)
    assert settings_from_skymapinfo(info, gain="measured").gain == 4.0e4
    from hscsim_utils.errors import InputError

    with pytest.raises(InputError, match="gain_eff_i is null"):
        settings_from_skymapinfo({**info, "gain_eff_i": None}, gain="measured")
    with pytest.raises(InputError, match="must be one of"):
        settings_from_skymapinfo(info, gain="other")


@pytest.mark.parametrize("shape", [(200, 171), (128, 128), (257, 300)])
def test_sky_variance_is_the_blocks_nanmedian(shape):
    """Odd and even counts, edge blocks cut, a block without usable pixels, ties."""
    rng = np.random.default_rng(11)
    variance = rng.gamma(4.0, 0.01, shape).astype(np.float32)
    variance[:40, :40] = np.round(variance[:40, :40], 2)  # ties
    usable = rng.random(shape) > 0.3
    usable[64:128, 0:64] = False  # an empty block: the overall median
    usable[0:64, 64:128] = rng.random((64, 64)) > 0.99  # a few pixels
    got = effective_gain.sky_variance(variance, usable, 32)
    want = numpy_sky_variance(variance, usable, 32)
    assert got.dtype == want.dtype == np.float64
    np.testing.assert_array_equal(got, want)
