"""Pixel-rendered stars with the photon noise of the measured gain (ufig 1.2.1).

ufig draws a source's photon noise at ``par.gain``, the gain that also turns
photons into ADU (``convert_photons_to_adu``). With the tutorial's gain (mean gain
of one exposure x mean number of exposures, ~650 e-/ADU on the DEMO) a coadd ADU
holds ~650 photons, while a real UltraDeep coadd collects of the order of 10^4-10^5
electrons per ADU (stage 01 measures it from the VARIANCE plane): a simulated star
of i = 20 has ~600 times the real photon-noise variance in its core, which is
what scatters per-star PSF fits of the simulation. Drawing photons at the
measured gain instead would cost ~10^10 photons per patch.

ufig renders stars brighter than ``par.mag_pixel_rendering_stars`` on pixels: it
integrates each star's Moffat profiles over every pixel (Gauss-Legendre) and
draws the pixel value from Poisson(expected photons)
(``render_stars_photon.integrate_image_pixel``). :func:`pixel_star_noise`
replaces that function by one that draws Poisson(expected x ``scale``) and
divides by ``scale``, so a star's pixel holds its expected value with the
variance ``value / (par.gain x scale)``: with ``scale = measured / par.gain``
the photon noise of the measured gain, at the cost of pixel integration, which
does not depend on the gain. Everything else (profile, stamp radius, random
stream, seed) is ufig's own: ``scale = 1`` gives ufig's image to the bit.

Galaxies are still drawn as photons (ufig's rendering of Sérsic profiles with
flexion has no pixel integration), at ``par.gain``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from hscsim_utils.compat import check_version

check_version("ufig", "1.2.1", __name__)

__all__ = ["pixel_star_noise", "scaled_integrate_image_pixel"]


def scaled_integrate_image_pixel(
    scale: float,
    seed,
    image,
    gain,
    render_stars_accuracy,
    x,
    y,
    nphot,
    psf_beta,
    psf_flux_ratio,
    psf_fwhm,
    psf_e1,
    psf_e2,
    psf_dx_offset,
    psf_dy_offset,
) -> None:
    """ufig's ``integrate_image_pixel`` with Poisson(expected x ``scale``) /
    ``scale`` per pixel (module docstring); the arguments after ``scale`` are
    ufig's."""
    from ufig import rendering_util
    from ufig.plugins import add_psf
    from ufig.plugins.render_stars_photon import pixel_integration

    index_min = np.argmin(psf_beta, axis=1)
    beta_min = psf_beta[np.arange(psf_beta.shape[0]), index_min]
    select = index_min > 0
    flux_ratio_min = psf_flux_ratio.copy()
    flux_ratio_min[select] = 1 - flux_ratio_min[select]
    alpha_min = add_psf.moffat_fwhm2alpha(psf_fwhm, beta_min)
    flux = (
        nphot * flux_ratio_min * (beta_min - 1) / (np.pi * gain)
        * alpha_min ** (2 * (beta_min - 1))
    )  # fmt: skip
    r_max = ((flux / render_stars_accuracy) ** (1.0 / (2 * beta_min))).astype(np.int_)
    r_max += 2
    nphot_split = rendering_util.distribute_photons_psf_profiles(
        nphot, psf_beta.shape[1], psf_flux_ratio
    )
    psf_r50 = np.empty_like(psf_beta)
    for k in range(psf_beta.shape[1]):
        psf_r50[:, k] = add_psf.moffat_fwhm2r50(
            psf_fwhm, psf_beta[:, k], psf_flux_ratio
        )
    stars = np.zeros_like(image)
    pixel_integration(
        seed, stars, r_max, x, y, nphot_split.astype(np.float64) * float(scale),
        psf_beta, psf_r50, psf_e1, psf_e2, psf_dx_offset, psf_dy_offset,
    )  # fmt: skip
    stars /= image.dtype.type(scale)
    image += stars


@contextlib.contextmanager
def pixel_star_noise(scale: float) -> Iterator[None]:
    """ufig's pixel rendering of stars with the photon noise of ``scale`` times
    ``par.gain`` (:func:`scaled_integrate_image_pixel`)."""
    import functools

    from ufig.plugins import render_stars_photon

    if not (np.isfinite(scale) and scale >= 1.0):
        raise ValueError(f"scale must be finite and at least 1, got {scale}")
    original = render_stars_photon.integrate_image_pixel
    render_stars_photon.integrate_image_pixel = functools.partial(
        scaled_integrate_image_pixel, float(scale)
    )
    try:
        yield
    finally:
        render_stars_photon.integrate_image_pixel = original
