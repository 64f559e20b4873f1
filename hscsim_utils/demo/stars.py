"""Star inputs of the DEMO tile (simulated) in their real external formats.

The stars of the demo are real model and catalogue stars, shipped in the ``ufig``
1.1.0 source distribution (``tests/res``):

- ``besancon_HSC.h5``: a Besancon model catalogue of HEALPix pixel 403 (nside 8,
  RING; XMM-LSS / SXDS), 13,521 stars with g r i z y, stored for 2 deg^2
  (``simulation_area``). The demo writes it as the Besancon web service returns
  it: a text header (whose line "(l = ...; b = ...) ... Solid angle ... square
  degree" is the one the tutorial's ``read_catalog`` parses; layout as in real
  output, e.g. astroquery's besancon test data) plus a FITS table with r, r-g,
  r-i, r-z and r-u. u is not in the shipped catalogue: r-u is synthesised from
  g-r along the SDSS stellar locus (u-g ~ 0.55 + 1.5 (g-r)) and only fills the
  column.
- ``gaiadr3.cat``: 686 Gaia DR3 stars around the demo patch, written as a VizieR
  I/355/gaiadr3 VOTable (Source, RAJ2000, DEJ2000, Gmag).

Bright-star masks follow the HSC-SSP law (Coupon et al. 2018, PASJ 70 S7; HSC
data-release page "Bright Star Masks"): radius = 200" 10^{0.25 (7 - G)} +
12" 10^{0.05 (16 - G)} around stars brighter than G = 17.5.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import healpy as hp
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import from_table, writeto
from astropy.table import Table

from hscsim_utils.atomic import atomic_path
from hscsim_utils.compat.ufig_gaia import shift_gaia_for_ufig
from hscsim_utils.errors import InputError
from hscsim_utils.runfolder import read_dataset

BESANCON_PIXEL = 403
BESANCON_NSIDE = 8
BRIGHT_STAR_G_LIMIT = 17.5


def load_besancon_pixel(path: Path) -> tuple[np.ndarray, float]:
    """The catalogue of the Besancon HEALPix pixel and the area it represents."""
    with h5py.File(path, "r") as fh:
        key = f"healpix_list/{BESANCON_PIXEL:04d}"
        if key not in fh:
            raise InputError(path, f"no dataset {key}")
        return np.array(fh[key]), float(np.array(fh["simulation_area"]))


def besancon_header_text(gal_l: float, gal_b: float, area_deg2: float, n: int) -> str:
    """Header of a Besancon web-service run (SDSS+JHK, r reference band)."""
    bands = "".join(
        f"                          Band   {b:<3}:-99.00- 99.00\n" for b in "ugizJHK"
    )
    return (
        "1                   " + "*" * 90 + "\n"
        "                    *" + " " * 88 + "*\n"
        "                    *      BESANCON MODEL OF STELLAR POPULATION SYNTHESIS"
        " 2016\n"
        "                    *      DEMO TILE (SIMULATED): written by hscsim from"
        " the catalogue in ufig's tests\n"
        "                    " + "*" * 90 + "\n\n\n"
        f"  (l = {gal_l:9.4f}; b = {gal_b:9.4f})  Distance  0.0 a  50.0 kpc;"
        f"  Solid angle {area_deg2:10.3f}  square degree\n"
        "  Adaptive step in distance  (20,30,50)\n"
        "  SELECTIONS :\n"
        "      Absolute magnitude:    -7.00 - 20.00\n"
        "      Apparent magnitudes Band   r  :-99.00- 30.00\n" + bands + "\n"
        "      Colour :  r-g      -10.00 -  99.00\n"
        "                r-i      -10.00 -  99.00\n"
        "                r-z      -10.00 -  99.00\n"
        "                r-u      -10.00 -  99.00\n"
        "      Photometric error laws: all zero\n"
        "      System:  SDSS ugriz + JHK (2MASS)\n"
        "      Creation of a catalogue of simulated stars\n\n"
        f"  TOTAL NUMBER OF STARS : {n:6d}\n"
    )


def besancon_pixel_lb() -> tuple[float, float]:
    """Galactic l, b (deg) of the centre of the Besancon HEALPix pixel."""
    ra, dec = hp.pix2ang(BESANCON_NSIDE, BESANCON_PIXEL, lonlat=True)
    gal = SkyCoord(ra, dec, unit="deg", frame="icrs").galactic
    return float(gal.l.deg), float(gal.b.deg)


def write_besancon(header_path: Path, fits_path: Path, cat: np.ndarray, area: float):
    """Write the Besancon header text and FITS table of one pixel, atomically."""
    gal_l, gal_b = besancon_pixel_lb()
    u = cat["g"] + 0.55 + 1.5 * (cat["g"] - cat["r"])
    columns = [
        fits.Column(name="r", format="D", array=cat["r"]),
        fits.Column(name="r-g", format="D", array=cat["r"] - cat["g"]),
        fits.Column(name="r-i", format="D", array=cat["r"] - cat["i"]),
        fits.Column(name="r-z", format="D", array=cat["r"] - cat["z"]),
        fits.Column(name="r-u", format="D", array=cat["r"] - u),
    ]
    hdu = fits.BinTableHDU.from_columns(columns)
    hdu.header["COMMENT"] = "DEMO tile (simulated): Besancon model stars"
    with atomic_path(fits_path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    text = besancon_header_text(gal_l, gal_b, area, len(cat))
    with atomic_path(header_path) as tmp:
        tmp.write_text(text)


def load_gaia(path: Path) -> np.ndarray:
    """Gaia stars (ra, dec, phot_g_mean_mag, id) from ufig's HDF5 test file."""
    data = read_dataset(path, "data")
    ok = np.isfinite(data["ra"]) & np.isfinite(data["dec"])
    return data[ok & np.isfinite(data["phot_g_mean_mag"])]


def gaia_in_cone(gaia: np.ndarray, ra: float, dec: float, radius_deg: float):
    """Gaia stars within ``radius_deg`` of (ra, dec)."""
    centre = SkyCoord(ra, dec, unit="deg")
    sep = SkyCoord(gaia["ra"], gaia["dec"], unit="deg").separation(centre).deg
    return gaia[sep <= radius_deg]


def write_gaia_votable(path: Path, gaia: np.ndarray) -> Path:
    """Write Gaia stars as VizieR returns I/355/gaiadr3 (VOTable), atomically."""
    table = Table()
    table["Source"] = np.asarray(gaia["id"], dtype=np.int64)
    table["RAJ2000"] = np.asarray(gaia["ra"], dtype=np.float64)
    table["DEJ2000"] = np.asarray(gaia["dec"], dtype=np.float64)
    table["Gmag"] = np.asarray(gaia["phot_g_mean_mag"], dtype=np.float32)
    table["RAJ2000"].unit = table["DEJ2000"].unit = "deg"
    table["Gmag"].unit = "mag"
    table["Source"].description = "Unique source identifier"
    table["RAJ2000"].description = "Right ascension (ICRS) at Epoch=J2000"
    table["DEJ2000"].description = "Declination (ICRS) at Epoch=J2000"
    table["Gmag"].description = "G-band mean magnitude"
    votable = from_table(table)
    resource = votable.resources[0]
    resource.name = "I/355"
    resource.description = "DEMO tile (simulated): Gaia DR3 stars (VizieR layout)"
    vt_table = resource.tables[0]
    vt_table.name = "I/355/gaiadr3"
    ucds = {
        "Source": "meta.id;meta.main", "RAJ2000": "pos.eq.ra;meta.main",
        "DEJ2000": "pos.eq.dec;meta.main", "Gmag": "phot.mag;em.opt",
    }  # fmt: skip
    for field in vt_table.fields:
        field.ucd = ucds[field.name]
    with atomic_path(path) as tmp:
        writeto(votable, str(tmp))
    return path


def write_gaia_for_ufig(path: Path, gaia: np.ndarray, wcs) -> Path:
    """Gaia HDF5 for ufig's Besancon-Gaia splice, the stars moved by half a pixel
    through the patch ``wcs`` so that ufig draws them in place
    (:mod:`hscsim_utils.compat.ufig_gaia`)."""
    out = shift_gaia_for_ufig(gaia, wcs)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("data", data=out)
    return path


def bright_star_radius_arcsec(gmag: np.ndarray) -> np.ndarray:
    """HSC-SSP bright-star mask radius (arcsec) for Gaia G magnitudes."""
    gmag = np.asarray(gmag, dtype=float)
    return 200.0 * 10 ** (0.25 * (7.0 - gmag)) + 12.0 * 10 ** (0.05 * (16.0 - gmag))


def bright_star_mask(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, radius_px: np.ndarray
) -> np.ndarray:
    """Boolean (NY, NX) mask of discs around 1-based pixel positions (x, y)."""
    mask = np.zeros(shape, dtype=bool)
    ny, nx = shape
    for xc, yc, r in zip(x, y, radius_px, strict=True):
        x0, x1 = max(int(np.floor(xc - r)) - 1, 0), min(int(np.ceil(xc + r)), nx)
        y0, y1 = max(int(np.floor(yc - r)) - 1, 0), min(int(np.ceil(yc + r)), ny)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (xx + 1 - xc) ** 2 + (yy + 1 - yc) ** 2 <= r**2
    return mask
