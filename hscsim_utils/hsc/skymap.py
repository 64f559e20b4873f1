"""Geometry of the HSC "rings" sky map: tracts, patches and their TAN WCS.

The HSC-SSP sky map (Bosch et al. 2018, PASJ 70 S5; Aihara et al. 2022 for PDR3)
covers the sphere with 120 rings of TAN tracts; each tract is 9 x 9 patches of
4000 x 4000 pixels at 0.168"/pixel, and a patch file adds a 100-pixel border on
every side (4200 x 4200). Tract centres follow the rings layout: tract 9813 lands
on COSMOS at RA 150.25, Dec 2.23, as in PDR3. Pure computation, no network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from hscsim_utils.errors import InputError

__all__ = [
    "FULL_PATCH", "PATCH_BORDER", "PATCH_INNER", "PIXEL_SCALE_ARCSEC",
    "PatchGeometry", "patch_geometry", "rings_tract_center", "ray_to_radec",
    "tangent_basis",
]  # fmt: skip

PIXEL_SCALE_ARCSEC = 0.168
PIXEL_SCALE_RAD = math.radians(PIXEL_SCALE_ARCSEC / 3600.0)
PATCH_INNER = 4000
PATCH_BORDER = 100
PATCHES_PER_TRACT = 9
#: Pixels per side of a patch file: the inner patch and its border on both sides.
FULL_PATCH = PATCH_INNER + 2 * PATCH_BORDER
N_RINGS = 120


def rings_tract_center(tract: int, n_rings: int = N_RINGS) -> tuple[float, float]:
    """RA, Dec (deg) of a tract centre in the HSC rings sky map."""
    ring_size = math.pi / (n_rings + 1)
    counts = []
    for i in range(n_rings):
        start = ring_size * (i + 0.5) - 0.5 * math.pi
        dec_edge = min(abs(start), abs(start + ring_size))
        counts.append(int(2 * math.pi * math.cos(dec_edge) / ring_size) + 1)
    if not 1 <= tract <= sum(counts):
        raise InputError("tract", f"{tract} is not a ring tract (1..{sum(counts)})")
    index, ring = tract - 1, 0
    while index >= counts[ring]:
        index -= counts[ring]
        ring += 1
    dec = ring_size * (ring + 1) - 0.5 * math.pi
    ra = 2 * math.pi * index / counts[ring]
    return math.degrees(ra) % 360.0, math.degrees(dec)


@dataclass(frozen=True)
class PatchGeometry:
    """A (possibly centrally cropped) patch of a rings tract and its TAN WCS."""

    tract: int
    patch: tuple[int, int]
    nx: int
    ny: int
    crval: tuple[float, float]
    crpix: tuple[float, float]

    @property
    def patch_id(self) -> str:
        """Patch as in the archive file names, e.g. '402' for patch (4, 2)."""
        return str(self.patch[0] * 100 + self.patch[1])

    @property
    def offset(self) -> tuple[int, int]:
        """0-based pixel of the full 4200 x 4200 patch at this area's corner."""
        crpix_tract = PATCHES_PER_TRACT * PATCH_INNER / 2 + 0.5
        return (
            round(crpix_tract - self.crpix[0] - self.patch[0] * PATCH_INNER)
            + PATCH_BORDER,
            round(crpix_tract - self.crpix[1] - self.patch[1] * PATCH_INNER)
            + PATCH_BORDER,
        )

    @property
    def skymap_id(self) -> int:
        """Archive skymap_id, tract * 10000 + x * 100 + y."""
        return self.tract * 10000 + self.patch[0] * 100 + self.patch[1]

    def header(self) -> fits.Header:
        """TAN WCS header with a CD matrix, no LTV keywords."""
        scale = PIXEL_SCALE_ARCSEC / 3600.0
        cards = {
            "RADESYS": "ICRS", "EQUINOX": 2000.0,
            "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
            "CUNIT1": "deg", "CUNIT2": "deg",
            "CRVAL1": self.crval[0], "CRVAL2": self.crval[1],
            "CRPIX1": self.crpix[0], "CRPIX2": self.crpix[1],
            "CD1_1": -scale, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": scale,
        }  # fmt: skip
        header = fits.Header()
        for key, value in cards.items():
            header[key] = value
        return header

    def wcs(self) -> WCS:
        """Astropy WCS of the patch (FITS 1-based pixel convention)."""
        return WCS(self.header())

    def pixel_to_ray(self) -> np.ndarray:
        """3x3 M with unit-sphere direction proportional to M @ (x, y, 1), 1-based."""
        east, north, centre = tangent_basis(*self.crval)
        step = math.radians(PIXEL_SCALE_ARCSEC / 3600.0)
        col_x, col_y = -step * east, step * north
        col_1 = centre - col_x * self.crpix[0] - col_y * self.crpix[1]
        return np.stack([col_x, col_y, col_1], axis=1)


def patch_geometry(
    size: tuple[int, int],
    tract: int,
    patch: tuple[int, int],
    centre: tuple[float, float] | None = None,
) -> PatchGeometry:
    """Geometry of ``size`` = (NX, NY) pixels of the given patch.

    The area is centred on the patch, or on ``centre`` (0-based pixel position in
    the full 4200 x 4200 patch), and always lies inside the patch.
    """
    full = FULL_PATCH
    nx, ny = (int(v) for v in size)
    if not (16 <= nx <= full and 16 <= ny <= full):
        raise InputError("size", f"{size} must be within 16..{full} pixels per axis")
    if centre is None:
        off_x, off_y = (full - nx) // 2, (full - ny) // 2
    else:
        off_x = min(max(int(math.floor(centre[0] - nx / 2 + 0.5)), 0), full - nx)
        off_y = min(max(int(math.floor(centre[1] - ny / 2 + 0.5)), 0), full - ny)
    ra, dec = rings_tract_center(tract)
    crpix_tract = PATCHES_PER_TRACT * PATCH_INNER / 2 + 0.5
    x0 = patch[0] * PATCH_INNER - PATCH_BORDER + off_x
    y0 = patch[1] * PATCH_INNER - PATCH_BORDER + off_y
    return PatchGeometry(
        tract, tuple(patch), nx, ny, (ra, dec), (crpix_tract - x0, crpix_tract - y0)
    )


def tangent_basis(ra_deg: float, dec_deg: float) -> np.ndarray:
    """Rows: unit vectors east, north and towards (ra, dec)."""
    a, d = math.radians(ra_deg), math.radians(dec_deg)
    return np.array(
        [
            [-math.sin(a), math.cos(a), 0.0],
            [-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)],
            [math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)],
        ]
    )


def ray_to_radec(ray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of direction vectors (..., 3)."""
    ray = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    ra = np.degrees(np.arctan2(ray[..., 1], ray[..., 0])) % 360.0
    return ra, np.degrees(np.arcsin(np.clip(ray[..., 2], -1.0, 1.0)))
