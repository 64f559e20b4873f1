"""Galaxies and stars of the independent DEMO tile (simulated), drawn with GalSim.

The sky of the SIMULATED tile, independent of the simulation's rendering:

- galaxies: a GalSBI catalogue (model Moser+24, Moser et al. 2024) sampled by
  galsbi's own sampler only (the plugin ``galsbi.ucat.plugins.sample_galaxies``
  run alone through ``GalSBI(...)(mode="intrinsic")``; no ufig plugin), with
  posterior sample 1 and a seed of its own (the simulation uses sample 0 and
  seed 42), 14 < i < 28 (galsbi's reference band) over the tile plus a 32-pixel
  margin. One sampling serves every band: galsbi draws numbers, redshifts,
  templates, positions and shapes from seeds that do not depend on the filters
  asked for and then integrates each galaxy's SED over every filter, so a galaxy
  has the same position, size, Sersic index and ellipticity in all bands and
  only its magnitude changes (sampling with g r i z y gives the galaxies and i
  magnitudes of sampling with i alone, tested). Each galaxy is a
  ``galsim.Sersic`` with the catalogue's half-light radius (taken as the
  circularised radius: GalSim's shear keeps the area), index n clipped to
  GalSim's range 0.3-6.2 and rounded to a grid of 10% steps in n (31 values;
  GalSim tabulates each n once, ~70 ms per value and process), and ellipticity
  (e1, e2) as a distortion (galsbi's convention, (a^2 - b^2) / (a^2 + b^2)).
  With ``knots=True``, half of the blue galaxies get 10-40
  ``galsim.RandomKnots`` carrying 10-30% of their flux (star-forming clumps).
  The convolution uses the true coadd PSF (with the pixel response) of the
  nearest point of the 100-pixel PSF grid;
- stars: Gaia DR3 stars (the demo's table, ``gaiadr3.cat`` of ufig's tests) at
  their catalogue positions, and below G = 20.5, where Gaia is not complete,
  stars drawn from the Besancon model catalogue of the field (pixel 403, 13,521
  stars for 2 deg^2, with g r i z y): a Poisson number for the area, each a
  catalogue star picked at random with all its magnitudes moved by the same
  N(0, 0.1) mag (a kernel-density draw, so not the catalogue stage 04 reads),
  uniformly placed. Gaia G of model stars follows Evans et al. 2018 (A&A 616,
  A4, Table A.2: G - g in g - i); a Gaia star gets the colours m - G (m each of
  g r i z y) of the model star of closest G. A star is
  the coadd PSF at its exact position (the visits covering it, bilinear between
  PSF anchors); stars brighter than i = 19.5 also get the far wings of
  :mod:`hscsim_utils.demo.galsim_psf` (Kolmogorov continuation, aureole,
  one spike pattern per visit) in that band.

Catalogues of an i-band tile hold the i magnitude in ``mag``; those of several
bands also hold every band's in ``mag_g`` ... ``mag_y``, and :func:`in_band`
gives the catalogue seen in one band (``mag`` that band's). Fluxes are in coadd
ADU, zero point 27 AB: F = 10^(-0.4 (m - 27)).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import galsim
import numpy as np
from scipy.special import gamma

from hscsim_utils.bands import HSC_BANDS
from hscsim_utils.demo import galsim_psf as gpsf
from hscsim_utils.hsc.files import ZERO_POINT_AB
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC, PatchGeometry

__all__ = [
    "GALAXY_MARGIN_PX", "GALAXY_MODEL", "GALS_MAG_MAX", "GAIA_G_LIMIT",
    "POSTERIOR_INDEX", "STAR_DTYPE", "WING_MAG_LIMIT", "Stamp", "band_dtype",
    "besancon_stars", "draw_galaxy_chunk", "draw_star", "flux", "gaia_g_from_sdss",
    "gaia_stars", "galaxy_half_size", "galsbi_seed", "in_band", "sample_galaxies",
    "sersic_grid",
]  # fmt: skip

GALAXY_MODEL = "Moser+24"
POSTERIOR_INDEX = 1
SIMULATION_SEED = 42
GALS_MAG_MIN, GALS_MAG_MAX = 14.0, 28.0
GALAXY_MARGIN_PX = 32
SERSIC_N_MIN, SERSIC_N_MAX, SERSIC_LN_STEP = 0.3, 6.2, 0.1
KNOT_BLUE_FRACTION = 0.5
KNOT_FLUX_RANGE = (0.1, 0.3)
KNOT_NPOINTS_RANGE = (10, 40)
GAIA_G_LIMIT = 20.5
BESANCON_MAG_JITTER = 0.1
WING_MAG_LIMIT = 19.5
#: Surface brightness (ADU per pixel) where a stamp may end (~0.15 sigma of UD sky).
STAMP_SB_LIMIT = 2e-3
MAX_HALF_STAMP = 256
MAX_WING_HALF = int(gpsf.AUREOLE_MAX_ARCSEC / PIXEL_SCALE_ARCSEC)

GALAXY_DTYPE = np.dtype([
    ("X_IMAGE", "f8"), ("Y_IMAGE", "f8"), ("mag", "f4"), ("r50_arcsec", "f4"),
    ("sersic_n", "f4"), ("sersic_n_drawn", "f4"), ("e1", "f4"), ("e2", "f4"),
    ("blue", "?"), ("z", "f4"), ("knot_fraction", "f4"), ("knot_npoints", "i4"),
])  # fmt: skip
STAR_DTYPE = np.dtype([
    ("X_IMAGE", "f8"), ("Y_IMAGE", "f8"), ("mag", "f4"), ("gaia_G", "f4"),
    ("gaia_id", "i8"), ("is_gaia", "?"),
])  # fmt: skip


def flux(mag: np.ndarray) -> np.ndarray:
    """Flux in coadd ADU (zero point 27) of AB magnitudes."""
    return 10 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - ZERO_POINT_AB))


def band_dtype(base: np.dtype, bands: tuple[str, ...]) -> np.dtype:
    """``base`` with a ``mag_<band>`` column per band, unless the band is i alone."""
    if tuple(bands) == ("i",):
        return base
    return np.dtype(base.descr + [(f"mag_{b}", "f4") for b in bands])


def _set_band_mags(cat: np.ndarray, mags) -> None:
    """Fill the ``mag_<band>`` columns of ``cat`` from ``mags[band]``."""
    for name in cat.dtype.names:
        if name.startswith("mag_"):
            cat[name] = mags[name[4:]]


def in_band(cat: np.ndarray, band: str) -> np.ndarray:
    """``cat`` seen in ``band``: a copy whose ``mag`` is ``mag_<band>``; an
    i-only catalogue (no such columns) is its own i band."""
    name = f"mag_{band}"
    if name not in cat.dtype.names:
        if band != "i":
            raise ValueError(f"the catalogue has no magnitudes in band {band!r}")
        return cat
    out = cat.copy()
    out["mag"] = cat[name]
    return out


def galsbi_seed(seed: int) -> int:
    """galsbi's seed derived from the tile seed; never the simulation's 42."""
    value = int(np.random.SeedSequence([seed, 7]).generate_state(1)[0] % (2**31 - 1))
    return value + 1 if value == SIMULATION_SEED else value


# ---------------------------------------------------------------- galaxies


def sample_galaxies(
    geom: PatchGeometry,
    seed: int,
    posterior_index: int = POSTERIOR_INDEX,
    knots: bool = False,
    margin: int = GALAXY_MARGIN_PX,
    bands: tuple[str, ...] = ("i",),
) -> np.ndarray:
    """GalSBI galaxies over the tile and ``margin`` (FITS positions), ``mag``
    in i, and ``mag_<band>`` of every band of ``bands`` unless it is i alone.

    Only galsbi's catalogue sampler runs (no ufig plugin, nothing written); its
    filters are ``bands`` and i, its reference band.
    """
    from hscsim_utils.compat.galsbi import import_galsbi

    import_galsbi()
    import galsbi.ucat.plugins.sample_galaxies_photo  # noqa: F401 (its filters first)
    from galsbi import GalSBI

    model = GalSBI(GALAXY_MODEL, verbosity="error")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model(
            mode="intrinsic", model_index=int(posterior_index),
            plugins=["galsbi.ucat.plugins.sample_galaxies"],
            filters=[b for b in HSC_BANDS if b in bands or b == "i"],
            sampling_mode="wcs", size_x=geom.nx + 2 * margin,
            size_y=geom.ny + 2 * margin, ra0=geom.crval[0], dec0=geom.crval[1],
            crpix_ra=geom.crpix[0] + margin, crpix_dec=geom.crpix[1] + margin,
            pixscale=PIXEL_SCALE_ARCSEC, seed=galsbi_seed(seed), nside_sampling=1024,
            gals_mag_min=GALS_MAG_MIN, gals_mag_max=GALS_MAG_MAX,
            lum_fct_z_max=6, lum_fct_m_max=-4,
        )  # fmt: skip
    g = model.ctx.galaxies
    cat = np.zeros(len(g.z), band_dtype(GALAXY_DTYPE, bands))
    # galsbi's pixel convention: pixel corners at integers (FITS = x + 0.5)
    cat["X_IMAGE"] = np.asarray(g.x, np.float64) + 0.5 - margin
    cat["Y_IMAGE"] = np.asarray(g.y, np.float64) + 0.5 - margin
    cat["mag"] = g.magnitude_dict["i"]
    _set_band_mags(cat, g.magnitude_dict)
    cat["r50_arcsec"] = g.int_r50_arcsec
    cat["sersic_n"] = g.sersic_n
    cat["sersic_n_drawn"] = sersic_grid(g.sersic_n)
    cat["e1"], cat["e2"] = g.int_e1, g.int_e2
    cat["blue"] = np.asarray(g.blue_red) == 1
    cat["z"] = g.z
    if knots:
        rng = np.random.default_rng([seed, 11])
        has = cat["blue"] & (rng.random(len(cat)) < KNOT_BLUE_FRACTION)
        cat["knot_fraction"] = np.where(has, rng.uniform(*KNOT_FLUX_RANGE, len(cat)), 0)
        lo, hi = KNOT_NPOINTS_RANGE
        cat["knot_npoints"] = np.where(has, rng.integers(lo, hi + 1, len(cat)), 0)
    return cat


def sersic_grid(n: np.ndarray) -> np.ndarray:
    """Sersic indices on GalSim's range, rounded to steps of 10% (ln n by 0.1)."""
    n = np.clip(np.asarray(n, dtype=np.float64), SERSIC_N_MIN, SERSIC_N_MAX)
    k = np.round(np.log(n / SERSIC_N_MIN) / SERSIC_LN_STEP)
    return np.minimum(SERSIC_N_MIN * np.exp(k * SERSIC_LN_STEP), SERSIC_N_MAX)


def _sersic_b(n: np.ndarray) -> np.ndarray:
    """b_n of the Sersic profile (Ciotti & Bertin 1999 expansion)."""
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2)


def galaxy_half_size(cat: np.ndarray, psf_fwhm_px: float = 3.6) -> np.ndarray:
    """Half-size (pixels) of each galaxy's stamp: where its Sersic surface
    brightness on the major axis falls below ``STAMP_SB_LIMIT``, plus 3 PSF
    FWHM, within [12, 256]."""
    n = cat["sersic_n_drawn"].astype(np.float64)
    re = np.maximum(cat["r50_arcsec"].astype(np.float64), 1e-3) / PIXEL_SCALE_ARCSEC
    b = _sersic_b(n)
    sigma_e = flux(cat["mag"]) / (
        2 * np.pi * n * re**2 * np.exp(b) * b ** (-2 * n) * gamma(2 * n)
    )
    ratio = np.log(np.maximum(sigma_e / STAMP_SB_LIMIT, 1.0))
    r = re * (1 + ratio / b) ** n
    e = np.minimum(np.hypot(cat["e1"], cat["e2"]), 0.95)
    major = r * ((1 + e) / (1 - e)) ** 0.25
    return np.clip(np.ceil(major + 3 * psf_fwhm_px), 12, MAX_HALF_STAMP).astype(int)


@dataclass
class Stamp:
    """A drawn stamp: lower-left FITS pixel and the array (ADU)."""

    x0: int
    y0: int
    array: np.ndarray


_PSF_CACHE: dict[tuple[int, int], galsim.InterpolatedImage] = {}
#: Digest of the PSF grid the cache holds images of (a process may draw the
#: galaxies of several bands, each with its own grid).
_PSF_CACHE_GRID = [b""]


def _grid_digest(epsf_grid: np.ndarray) -> bytes:
    data = np.ascontiguousarray(epsf_grid).data
    return hashlib.blake2b(data, digest_size=16).digest()


def _grid_psf(
    epsf_grid: np.ndarray, gx: int, gy: int, digest: bytes
) -> galsim.InterpolatedImage:
    if digest != _PSF_CACHE_GRID[0]:
        _PSF_CACHE.clear()
        _PSF_CACHE_GRID[0] = digest
    key = (gx, gy)
    if key not in _PSF_CACHE:
        if len(_PSF_CACHE) > 4096:
            _PSF_CACHE.clear()
        image = galsim.Image(
            np.ascontiguousarray(epsf_grid[gy, gx], np.float64),
            scale=PIXEL_SCALE_ARCSEC,
        )
        _PSF_CACHE[key] = galsim.InterpolatedImage(image, pad_factor=1.5)
    return _PSF_CACHE[key]


def _galaxy_profile(row: np.void, seed: int) -> galsim.GSObject:
    total = float(flux(row["mag"]))
    hlr = max(float(row["r50_arcsec"]), 1e-3)
    n = min(max(float(row["sersic_n_drawn"]), SERSIC_N_MIN), SERSIC_N_MAX)
    prof = galsim.Sersic(n=n, half_light_radius=hlr)
    frac = float(row["knot_fraction"])
    if frac > 0:
        knots = galsim.RandomKnots(
            int(row["knot_npoints"]), half_light_radius=hlr,
            rng=galsim.BaseDeviate(seed),
        )  # fmt: skip
        prof = galsim.Add([(1 - frac) * prof, frac * knots])
    e1, e2 = float(row["e1"]), float(row["e2"])
    if math.hypot(e1, e2) > 0.97:
        scale = 0.97 / math.hypot(e1, e2)
        e1, e2 = e1 * scale, e2 * scale
    return prof.shear(e1=e1, e2=e2).withFlux(total)


def draw_galaxy_chunk(
    cat: np.ndarray,
    index: np.ndarray,
    epsf_grid: np.ndarray,
    grid_step: int,
    seed: int,
) -> list[tuple[int, Stamp]]:
    """Draw galaxies ``index`` of ``cat`` convolved with the grid PSF nearest
    to each; returns (index, stamp) pairs."""
    half = galaxy_half_size(cat[index])
    ny_g, nx_g = epsf_grid.shape[:2]
    digest = _grid_digest(epsf_grid)
    out = []
    for k, h in zip(index, half, strict=True):
        row = cat[k]
        x, y = float(row["X_IMAGE"]), float(row["Y_IMAGE"])
        gx = min(max(round((x - 0.5) / grid_step), 0), nx_g - 1)
        gy = min(max(round((y - 0.5) / grid_step), 0), ny_g - 1)
        prof = galsim.Convolve(
            _galaxy_profile(row, seed + int(k)), _grid_psf(epsf_grid, gx, gy, digest)
        )
        xc, yc = round(x), round(y)
        bounds = galsim.BoundsI(xc - h, xc + h, yc - h, yc + h)
        stamp = galsim.ImageF(bounds, scale=PIXEL_SCALE_ARCSEC)
        prof.drawImage(image=stamp, center=galsim.PositionD(x, y), method="no_pixel")
        out.append((int(k), Stamp(xc - h, yc - h, stamp.array.copy())))
    return out


# ---------------------------------------------------------------- stars


def gaia_g_from_sdss(g: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Gaia G from SDSS g, i (Evans et al. 2018, A&A 616, A4, Table A.2)."""
    gi = np.asarray(g) - np.asarray(i)
    return g - 0.074189 - 0.51409 * gi - 0.080607 * gi**2 + 0.0016001 * gi**3


def besancon_stars(
    model: np.ndarray,
    area_deg2: float,
    geom: PatchGeometry,
    rng: np.random.Generator,
    margin: int,
    bands: tuple[str, ...] = ("i",),
) -> np.ndarray:
    """Model stars fainter than G = 20.5 (brighter ones come from Gaia) over the
    tile and ``margin``: a Poisson number for the area, catalogue stars drawn at
    random with their magnitudes moved by N(0, 0.1), uniform positions; ``mag``
    in i and ``mag_<band>`` as :func:`sample_galaxies`."""
    area = (
        (geom.nx + 2 * margin)
        * (geom.ny + 2 * margin)
        * (PIXEL_SCALE_ARCSEC / 3600) ** 2
    )
    n = rng.poisson(len(model) * area / area_deg2)
    pick = model[rng.integers(0, len(model), n)]
    shift = rng.normal(0.0, BESANCON_MAG_JITTER, n)
    g_gaia = gaia_g_from_sdss(pick["g"] + shift, pick["i"] + shift)
    keep = g_gaia >= GAIA_G_LIMIT
    out = np.zeros(int(keep.sum()), band_dtype(STAR_DTYPE, bands))
    out["X_IMAGE"] = rng.uniform(0.5 - margin, geom.nx + 0.5 + margin, n)[keep]
    out["Y_IMAGE"] = rng.uniform(0.5 - margin, geom.ny + 0.5 + margin, n)[keep]
    mags = {b: pick[b][keep] + shift[keep] for b in HSC_BANDS}
    out["mag"], out["gaia_G"] = mags["i"], g_gaia[keep]
    _set_band_mags(out, mags)
    out["gaia_id"] = -1
    return out


def gaia_stars(
    gaia: np.ndarray,
    model: np.ndarray,
    geom: PatchGeometry,
    margin: int,
    bands: tuple[str, ...] = ("i",),
) -> np.ndarray:
    """Gaia stars over the tile and ``margin`` at their positions; each band's
    magnitude m from the m - G colour of the model star of closest G (``mag``
    in i, ``mag_<band>`` as :func:`sample_galaxies`)."""
    x, y = geom.wcs().all_world2pix(gaia["ra"], gaia["dec"], 1)
    inside = (x > 0.5 - margin) & (x < geom.nx + 0.5 + margin)
    inside &= (y > 0.5 - margin) & (y < geom.ny + 0.5 + margin)
    sel = gaia[inside]
    g_model = gaia_g_from_sdss(model["g"], model["i"])
    order = np.argsort(g_model)
    idx = np.searchsorted(g_model[order], sel["phot_g_mean_mag"])
    idx = order[np.clip(idx, 0, len(order) - 1)]
    out = np.zeros(len(sel), band_dtype(STAR_DTYPE, bands))
    out["X_IMAGE"], out["Y_IMAGE"] = x[inside], y[inside]
    out["gaia_G"] = sel["phot_g_mean_mag"]
    mags = {
        b: sel["phot_g_mean_mag"] + (model[b][idx] - g_model[idx]) for b in HSC_BANDS
    }
    out["mag"] = mags["i"]
    _set_band_mags(out, mags)
    out["gaia_id"] = sel["id"]
    out["is_gaia"] = True
    return out


def wing_half_size(mag: float) -> int:
    """Half-size (pixels) of a bright star's wing stamp: where the aureole falls
    below ``STAMP_SB_LIMIT``, at most the aureole's 120" radius."""
    r0 = gpsf.AUREOLE_CORE_ARCSEC / PIXEL_SCALE_ARCSEC
    log_term = math.log1p(MAX_WING_HALF**2 / r0**2)
    amp = float(flux(mag)) * gpsf.AUREOLE_FRACTION / (math.pi * log_term)
    return int(min(max(math.sqrt(amp / STAMP_SB_LIMIT), 24), MAX_WING_HALF))


def draw_star(
    mag: float,
    x: float,
    y: float,
    os_psf: np.ndarray,
    spike_angles: np.ndarray,
    spike_weights: np.ndarray,
) -> list[Stamp]:
    """A star at FITS (x, y) with the coadd PSF ``os_psf`` (4x oversampled,
    pixel-free, unit sum); bright ones with their far wings."""
    f = float(flux(mag))
    epsf = gpsf.effective_psf(os_psf)
    core = galsim.InterpolatedImage(
        galsim.Image(np.ascontiguousarray(epsf, np.float64), scale=PIXEL_SCALE_ARCSEC),
        pad_factor=1.5,
    ).withFlux(f)
    h = gpsf.STAMP_PIX // 2 + 2
    xc, yc = round(x), round(y)
    stamp = galsim.ImageF(galsim.BoundsI(xc - h, xc + h, yc - h, yc + h),
                          scale=PIXEL_SCALE_ARCSEC)  # fmt: skip
    core.drawImage(image=stamp, center=galsim.PositionD(x, y), method="no_pixel")
    stamps = [Stamp(xc - h, yc - h, stamp.array.copy())]
    if mag < WING_MAG_LIMIT:
        half = wing_half_size(mag)
        offset = (x - xc, y - yc)
        fwhm = gpsf.half_max_fwhm(os_psf)
        wings = f * gpsf.kolmogorov_tail(epsf, offset, half)
        angles, weights = gpsf.binned_spike_angles(spike_angles, spike_weights)
        wings += gpsf.wing_image(f, offset, half, fwhm, angles, weights)
        stamps.append(Stamp(xc - half, yc - half, wings))
    return stamps
