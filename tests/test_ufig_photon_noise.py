"""Pixel-rendered stars with the photon noise of a larger gain, on ufig's own code."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.compat.ufig_photon_noise import (
    pixel_star_noise,
    scaled_integrate_image_pixel,
)

GAIN = 500.0
SHAPE = (48, 64)


def _stars(nphot=(2.0e6, 4.0e5, 9.0e4)) -> dict:
    """Three two-Moffat stars (FWHM 3.4 px), two of them overlapping."""
    n = len(nphot)
    return {
        "gain": GAIN, "render_stars_accuracy": 1e-4,
        "x": np.array([20.3, 24.7, 45.1])[:n], "y": np.array([22.6, 25.2, 20.4])[:n],
        "nphot": np.array(nphot, dtype=np.int64),
        "psf_beta": np.tile([2.5, 4.5], (n, 1)), "psf_flux_ratio": np.full(n, 0.2),
        "psf_fwhm": np.full(n, 3.4), "psf_e1": np.full(n, 0.03),
        "psf_e2": np.full(n, -0.02), "psf_dx_offset": np.zeros((n, 2)),
        "psf_dy_offset": np.zeros((n, 2)),
    }  # fmt: skip


def _render(scale: float | None, seed: int, image=None, **kwargs) -> np.ndarray:
    from ufig.plugins.render_stars_photon import integrate_image_pixel

    image = np.zeros(SHAPE, np.float32) if image is None else image.copy()
    args = {**_stars(), **kwargs}
    if scale is None:
        integrate_image_pixel(seed, image, **args)
    else:
        scaled_integrate_image_pixel(scale, seed, image, **args)
    return image


def test_scale_one_is_ufigs_pixel_rendering():
    background = np.random.default_rng(2).normal(0.0, 1.0, SHAPE).astype(np.float32)
    ufig = _render(None, 11, background)
    ours = _render(1.0, 11, background)
    np.testing.assert_allclose(ours, ufig, rtol=1e-6, atol=1e-3)
    assert np.abs(ufig - background).max() > 1000  # the stars are there


@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_pixel_variance_is_the_expected_photons_over_gain_times_scale(scale):
    """Per pixel over 250 seeds: mean = ufig's expectation whatever the scale,
    variance = mean / scale (in photons: Poisson at gain x scale)."""
    one = _stars(nphot=(2.0e5,))
    draws = np.stack([_render(scale, s, **one) for s in range(250)])
    mean, var = draws.mean(axis=0), draws.var(axis=0, ddof=1)
    core = mean > 200  # photons
    assert core.sum() > 15
    expected = _render(1.0e7, 0, **one)  # noise 3e-4 of a pixel's photons
    np.testing.assert_allclose(mean[core], expected[core], rtol=0.02)
    ratio = var[core].sum() / (mean[core].sum() / scale)
    assert ratio == pytest.approx(1.0, abs=0.08)


def test_the_replacement_is_in_place_only_inside_its_context():
    from ufig.plugins import render_stars_photon

    original = render_stars_photon.integrate_image_pixel
    with pixel_star_noise(25.0):
        assert render_stars_photon.integrate_image_pixel is not original
        assert render_stars_photon.integrate_image_pixel.args == (25.0,)
    assert render_stars_photon.integrate_image_pixel is original
    with pytest.raises(ValueError, match="at least 1"):
        with pixel_star_noise(0.5):
            pass
