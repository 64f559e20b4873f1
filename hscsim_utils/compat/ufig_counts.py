"""A mend of ufig's ``gain_map`` conversion of magnitudes into photons (ufig 1.2.1).

ufig turns an object's magnitude into a number of photons to render, then
divides the image by the gain (``convert_photons_to_adu``: ADU = photons /
``par.gain``). Its three conversions (``par.exp_time_type``) draw

- ``constant``: ``round(Poisson(F g n) / n)`` with ``n = par.n_exp``;
- ``variable``: the same with ``n`` the object's exposure time over
  ``par.exposure_time`` (from ``map_expt``);
- ``gain_map``: ``Poisson(F G(x, y))`` with ``G`` the object's value of
  ``map_gain``,

where ``F = 10^(0.4 (magzero - mag))`` is the flux in ADU and ``g = par.gain``.
The first two have the mean ``F g``: after the division by ``g`` the object has
its flux. ``gain_map`` has the mean ``F G``, so an object comes out with the
flux ``F G / g``: brighter by ``2.5 log10(G / g)`` where the gain map is above
the mean gain, fainter where it is below. On an ultra-deep patch ``map_gain``
(summed gain of the exposures) varies by +-10% across the patch (DEMO: 50,800 to
64,500 s of exposure), which makes a position-dependent zero-point error of
+-0.1 mag; at the edge of a survey footprint much more.

:func:`unbiased_gain_map_counts` replaces the ``gain_map`` conversion with one
that keeps the photon statistics of the local gain and the flux of the object:
``round(Poisson(F G) g / G)``, mean ``F g`` (as the other two), relative
Poisson scatter ``1 / sqrt(F G)`` (that of the electrons collected where the
object is). An object on a pixel without exposure (``G = 0``) gets no photons,
as in ufig's ``variable`` conversion.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from hscsim_utils.compat import check_version

check_version("ufig", "1.2.1", __name__)

__all__ = ["gain_map_photons", "unbiased_gain_map_counts"]


def gain_map_photons(mag, par, x, y, **_) -> np.ndarray:
    """Photons of objects at pixels (x, y): Poisson at the local gain, scaled to
    the mean ``par.gain`` that turns photons into ADU (module docstring)."""
    from ufig.plugins.single_band_setup import get_gain_per_object

    local = np.asarray(get_gain_per_object(par, x, y), dtype=np.float64)
    flux = np.power(10.0, 0.4 * (par.magzero - np.asarray(mag, dtype=np.float64)))
    photons = np.zeros(len(local), dtype=np.int32)
    ok = local > 0
    # ufig seeds the global generator before each conversion (same seed, same draw)
    drawn = np.random.poisson(flux[ok] * local[ok])  # noqa: NPY002
    photons[ok] = np.round(drawn * par.gain / local[ok]).astype(np.int32)
    return photons


@contextlib.contextmanager
def unbiased_gain_map_counts() -> Iterator[None]:
    """ufig's ``gain_map`` conversion replaced by :func:`gain_map_photons`."""
    from ufig.plugins import single_band_setup

    table = single_band_setup.NPHOT_GENERATOR
    original = table["gain_map"]
    table["gain_map"] = gain_map_photons
    try:
        yield
    finally:
        table["gain_map"] = original
