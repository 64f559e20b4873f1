"""ufig's Besancon-Gaia splice draws Gaia stars half a pixel off; the mend's shift."""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import healpy as hp
import numpy as np
import pytest

from hscsim_utils.compat.ufig_gaia import shift_gaia_for_ufig
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC

SIZE = 64
GAIA_DTYPE = np.dtype(
    [("ra", "f8"), ("dec", "f8"), ("phot_g_mean_mag", "f4"), ("id", "i8")]
)


@pytest.fixture
def par(tmp_path):
    """ufig parameters of a 64 x 64 image and a Besancon map whose pixels hold a
    few stars each (too few for any random star in a 1024 pixel)."""
    nside = 8
    stars = np.zeros(3, [(b, "f8") for b in "grizy"])
    for b in "grizy":
        stars[b] = [19.0, 20.0, 21.0]
    path = tmp_path / "besancon.h5"
    with h5py.File(path, "w") as fh5:
        fh5.create_dataset("nside", data=np.int64(nside))
        fh5.create_dataset("simulation_area", data=np.float64(1.0))
        fh5.create_dataset("healpix_mask", data=np.full(hp.nside2npix(nside), 3.0))
        group = fh5.create_group("healpix_list")
        for ipix in range(hp.nside2npix(nside)):
            group.create_dataset(f"{ipix:04d}", data=stars)
    return SimpleNamespace(
        pixscale=PIXEL_SCALE_ARCSEC, size_x=SIZE, size_y=SIZE, ra0=34.2,
        dec0=-5.57, crpix_ra=SIZE / 2 + 0.5, crpix_dec=SIZE / 2 + 0.5,
        nside_sampling=1024, besancon_map_path=str(path), maps_remote_dir="",
        stars_mag_min=10.0, stars_mag_max=30.0, reference_band="i",
        filters=["i"], seed=1, star_num_seed_offset=0, star_dist_seed_offset=0,
        filepath_gaia=str(tmp_path / "gaia.h5"),
    )  # fmt: skip


def _draw(par, gaia: np.ndarray) -> tuple[float, float]:
    """Position (x, y) at which ufig's splice draws the one Gaia star."""
    from ufig.plugins import draw_stars_besancon_map as stars

    with h5py.File(par.filepath_gaia, "w") as fh5:
        fh5.create_dataset("data", data=gaia)
    ctx = SimpleNamespace(parameters=par, stars=SimpleNamespace(
        x=np.zeros(0), y=np.zeros(0), magnitude_dict={"i": np.zeros(0)}))  # fmt: skip
    stars.get_star_cat_besancon_gaia_splice(ctx)
    assert len(ctx.stars.x) == 1  # the Gaia star only
    return float(ctx.stars.x[0]), float(ctx.stars.y[0])


def _star_at_fits_pixel(par, x_fits: float, y_fits: float):
    """A Gaia table with one star at FITS pixel (x_fits, y_fits), its WCS and the
    position ufig's own convention (``coordinate_util.radec2xy``) gives it."""
    from ufig import coordinate_util

    wcs = coordinate_util.wcs_from_parameters(par)
    ra, dec = wcs.all_pix2world(x_fits, y_fits, 1)
    gaia = np.zeros(1, GAIA_DTYPE)
    gaia["ra"], gaia["dec"], gaia["phot_g_mean_mag"] = ra, dec, 18.0
    x, y = coordinate_util.radec2xy(wcs, gaia["ra"], gaia["dec"])
    return gaia, wcs, (float(x[0]), float(y[0]))


def test_ufig_draws_gaia_stars_half_a_pixel_low_and_left(par):
    gaia, _, expected = _star_at_fits_pixel(par, 33.0, 30.0)
    assert expected == pytest.approx((32.5, 29.5), abs=1e-6)  # centre of a pixel
    x, y = _draw(par, gaia)
    assert (x, y) == pytest.approx((expected[0] - 0.5, expected[1] - 0.5), abs=1e-6)


def test_shifted_gaia_stars_are_drawn_in_place(par):
    gaia, wcs, expected = _star_at_fits_pixel(par, 33.0, 30.0)
    shifted = shift_gaia_for_ufig(gaia, wcs)
    assert shifted["phot_g_mean_mag"] == gaia["phot_g_mean_mag"]
    assert _draw(par, shifted) == pytest.approx(expected, abs=1e-6)
