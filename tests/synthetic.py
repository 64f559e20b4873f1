"""Small synthetic inputs in the real HSC formats, written with hsc_io's writers.

Frames are placed by their corners in 0-based pixel coordinates of the patch
(pixel ``[j, i]`` has its centre at ``x = i, y = j``) and converted to RA/Dec with
the patch WCS, so tests know exactly which pixel centres a frame covers.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS
from matplotlib.path import Path as PolygonPath

from hscsim_utils import interpreter
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap
from hscsim_utils.hsc.tile import write_tile


def make_wcs(
    shape: tuple[int, int] = (200, 300),
    ra0: float = 150.0,
    dec0: float = 2.0,
    pixscale: float = skymap.PIXEL_SCALE_ARCSEC,
    rotation_deg: float = 0.0,
) -> WCS:
    """TAN WCS centred on the patch (RA to the left, like a coadd)."""
    ny, nx = shape
    scale = pixscale / 3600.0
    rot = np.deg2rad(rotation_deg)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    wcs.wcs.cd = scale * np.array(
        [[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]]
    )
    wcs.wcs.set()
    return wcs


def wcs_header(wcs: WCS) -> fits.Header:
    """IMAGE-HDU header with CD-matrix WCS keywords, as in a PDR3 calexp."""
    header = fits.Header()
    for i in (1, 2):
        header[f"CTYPE{i}"] = wcs.wcs.ctype[i - 1]
        header[f"CUNIT{i}"] = "deg"
        header[f"CRPIX{i}"] = float(wcs.wcs.crpix[i - 1])
        header[f"CRVAL{i}"] = float(wcs.wcs.crval[i - 1])
    for i in (1, 2):
        for j in (1, 2):
            header[f"CD{i}_{j}"] = float(wcs.wcs.cd[i - 1, j - 1])
    header["RADESYS"] = "ICRS"
    header["EQUINOX"] = 2000.0
    return header


def rectangle(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners ll, ul, ur, lr of an axis-aligned box in pixel coordinates."""
    return np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0]], float)


def rotated_rectangle(
    cx: float, cy: float, width: float, height: float, angle_deg: float
) -> np.ndarray:
    """Corners ll, ul, ur, lr of a box rotated by ``angle_deg`` about its centre."""
    box = rectangle(-width / 2, -height / 2, width / 2, height / 2)
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return box @ rot.T + [cx, cy]


def true_coverage(corners_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n_frames, ny, nx) bool: pixel centre inside each frame (matplotlib test)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    centres = np.column_stack([xx.ravel(), yy.ravel()])
    cover = [
        PolygonPath(np.asarray(c, float)).contains_points(centres).reshape(shape)
        for c in corners_xy
    ]
    return np.array(cover, bool).reshape(len(corners_xy), ny, nx)


@dataclass
class SyntheticCalexp:
    """A written calexp and the truth behind it."""

    path: Path
    wcs: WCS
    image: np.ndarray
    mask: np.ndarray
    variance: np.ndarray
    noise_sigma: np.ndarray  # true background RMS per pixel
    source_mask: np.ndarray  # pixels near a synthetic source


def write_synthetic_calexp(
    path: str | os.PathLike,
    shape: tuple[int, int] = (200, 300),
    *,
    wcs: WCS | None = None,
    noise_sigma: float | np.ndarray = 1.0,
    n_sources: int = 0,
    mask: np.ndarray | None = None,
    mask_planes: dict[str, int] | None = None,
    saturation: float | None = None,
    band: str = "HSC-I",
    seed: int = 0,
) -> SyntheticCalexp:
    """Gaussian noise plus round Gaussian sources, written in the PDR3 layout.

    Pixels at or above ``saturation`` are clipped to it and flagged SAT; NO_DATA
    pixels of ``mask`` are set to 0 in the image and variance.
    """
    rng = np.random.default_rng(seed)
    wcs = wcs if wcs is not None else make_wcs(shape)
    planes = dict(hsc_io.PDR3_MASK_PLANES if mask_planes is None else mask_planes)
    sigma = np.broadcast_to(np.asarray(noise_sigma, float), shape).copy()
    image = rng.normal(0.0, 1.0, shape) * sigma
    source_mask = np.zeros(shape, bool)
    for _ in range(n_sources):
        x, y = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        width, flux = rng.uniform(1.5, 4.0), rng.uniform(50, 500) * sigma.mean()
        cut = _cutout(x, y, 6 * width + 1, shape)
        yy, xx = np.mgrid[cut]
        r2 = (xx - x) ** 2 + (yy - y) ** 2
        image[cut] += flux / (2 * np.pi * width**2) * np.exp(-r2 / (2 * width**2))
        source_mask[cut] |= r2 < (6 * width) ** 2
    mask = np.zeros(shape, np.int32) if mask is None else mask.astype(np.int32)
    if saturation is not None:
        sat = image >= saturation
        image[sat] = saturation
        mask[sat] |= 1 << planes["SAT"]
    variance = sigma**2
    if "NO_DATA" in planes:
        no_data = ((mask >> planes["NO_DATA"]) & 1) == 1
        image[no_data] = 0.0
        variance[no_data] = 0.0
    hsc_io.write_calexp(
        path, image, mask, variance, wcs_header(wcs), band=band, mask_planes=planes
    )
    return SyntheticCalexp(
        Path(path), wcs, image.astype(np.float32), mask, variance, sigma, source_mask
    )


def _cutout(x: float, y: float, radius: float, shape: tuple[int, int]):
    """Slices of the pixels within ``radius`` of (x, y) along both axes."""
    y0, y1 = max(int(y - radius), 0), min(int(y + radius) + 2, shape[0])
    x0, x1 = max(int(x - radius), 0), min(int(x + radius) + 2, shape[1])
    return slice(y0, y1), slice(x0, x1)


def frame_table(
    wcs: WCS,
    corners_xy: np.ndarray,
    *,
    exptime: float | np.ndarray = 300.0,
    gain: float | np.ndarray = 3.0,
    seeing: float | np.ndarray = 0.7,
    visit: np.ndarray | None = None,
) -> pd.DataFrame:
    """Frame-query rows for frames with the given pixel corners (n, 4, 2).

    ``gain`` is one value per frame (all four amplifiers) or an (n, 4) array.
    """
    corners_xy = np.asarray(corners_xy, float).reshape(-1, 4, 2)
    n = len(corners_xy)
    ra, dec = wcs.all_pix2world(corners_xy[..., 0], corners_xy[..., 1], 0)
    df = pd.DataFrame(index=range(n))
    for k, name in enumerate(("ll", "ul", "ur", "lr")):
        df[f"{name}cra"] = np.mod(ra[:, k], 360.0)
        df[f"{name}cdec"] = dec[:, k]
    df["exptime"] = np.broadcast_to(exptime, n)
    g = np.asarray(gain, float)
    gains = g if g.ndim == 2 else np.broadcast_to(g.reshape(-1, 1), (n, 4))
    for k in range(4):
        df[f"gain{k + 1}"] = gains[:, k]
    df["seeing"] = np.broadcast_to(seeing, n)
    df["visit"] = np.arange(n) if visit is None else np.asarray(visit)
    return df[list(hsc_io.FRAME_COLUMNS)]


def write_synthetic_frames(
    path: str | os.PathLike, wcs: WCS, corners_xy: np.ndarray, **kwargs
) -> pd.DataFrame:
    """Write a frame CSV (HSC archive layout); keyword arguments as frame_table."""
    df = frame_table(wcs, corners_xy, **kwargs)
    hsc_io.write_archive_csv(path, df, hsc_io.FRAME_COLUMNS)
    return df


def coadd_table(
    wcs: WCS, shape: tuple[int, int], seeing: float = 0.7, zeropt: float = 27.0
) -> pd.DataFrame:
    """One mosaic-query row describing the patch."""
    ny, nx = shape
    edges = rectangle(-0.5, -0.5, nx - 0.5, ny - 0.5)
    ra, dec = wcs.all_pix2world(edges[:, 0], edges[:, 1], 0)
    ra_c, dec_c = wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
    row = {f"{c}cra": ra[k] % 360 for k, c in enumerate(("ll", "ul", "ur", "lr"))}
    row |= {f"{c}cdec": dec[k] for k, c in enumerate(("ll", "ul", "ur", "lr"))}
    cd = wcs.wcs.cd
    row |= dict(
        seeing=seeing, zeropt=zeropt, cd1_1=cd[0, 0], cd1_2=cd[0, 1], cd2_1=cd[1, 0],
        cd2_2=cd[1, 1], crpix1=wcs.wcs.crpix[0], crpix2=wcs.wcs.crpix[1],
        crval1=wcs.wcs.crval[0], crval2=wcs.wcs.crval[1], ctype1="RA---TAN",
        ctype2="DEC--TAN", cunit1="deg", cunit2="deg", naxis1=nx, naxis2=ny,
        ra2000=ra_c[0] % 360, dec2000=dec_c[0], zeropt_err=0.01, ellipticity=0.02,
        ellipticity_pa=10.0,
    )  # fmt: skip
    return pd.DataFrame([row])[list(hsc_io.COADD_COLUMNS)]


def write_synthetic_coadd(
    path: str | os.PathLike, wcs: WCS, shape: tuple[int, int], **kwargs
) -> pd.DataFrame:
    """Write the coadd (mosaic) CSV of the patch."""
    df = coadd_table(wcs, shape, **kwargs)
    hsc_io.write_archive_csv(path, df, hsc_io.COADD_COLUMNS)
    return df


def dithered_frames(
    shape: tuple[int, int], n_visits: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two CCD-like frames per visit, randomly dithered and rotated: corners, visit."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    corners, visits = [], []
    for v in range(n_visits):
        cx, cy = rng.uniform(0.2, 0.8) * nx, rng.uniform(0.2, 0.8) * ny
        angle = rng.uniform(-5, 5)
        w, h = 0.55 * nx, 1.3 * ny
        for side in (-0.5, 0.5):
            dx = side * (w + 0.03 * nx)
            a = np.deg2rad(angle)
            corners.append(
                rotated_rectangle(cx + dx * np.cos(a), cy + dx * np.sin(a), w, h, angle)
            )
            visits.append(1000 + 7 * v)
    return np.array(corners), np.array(visits)


@dataclass
class SyntheticTile:
    """A synthetic tile on disk: tile YAML, calexp truth and frame corners."""

    tile_file: Path
    calexp: SyntheticCalexp
    frames: pd.DataFrame
    corners_xy: np.ndarray


def write_synthetic_tile(
    directory: str | os.PathLike,
    shape: tuple[int, int] = (200, 300),
    *,
    n_visits: int = 4,
    corners_xy: np.ndarray | None = None,
    visit: np.ndarray | None = None,
    wcs: WCS | None = None,
    seed: int = 0,
    **calexp_kwargs,
) -> SyntheticTile:
    """Calexp, frame CSV, coadd CSV and tile.yaml in ``directory``."""
    directory = Path(directory)
    wcs = wcs if wcs is not None else make_wcs(shape)
    if corners_xy is None:
        corners_xy, visit = dithered_frames(shape, n_visits, seed)
    calexp = write_synthetic_calexp(
        directory / "calexp.fits", shape, wcs=wcs, seed=seed, **calexp_kwargs
    )
    rng = np.random.default_rng(seed)
    frames = write_synthetic_frames(
        directory / "frames.csv",
        wcs,
        corners_xy,
        exptime=rng.choice([180.0, 270.0, 300.0], len(corners_xy)),
        gain=rng.uniform(2.9, 3.4, (len(corners_xy), 4)),
        visit=visit,
    )
    write_synthetic_coadd(directory / "coadd.csv", wcs, shape)
    tile_file = write_tile_file(directory, band="i", is_demo=True, seed=seed)
    return SyntheticTile(tile_file, calexp, frames, np.asarray(corners_xy))


def tile_fields(folder: str | Path, name: str = "synthetic", **values) -> dict:
    """Tile-file fields whose inputs have the usual names in ``folder`` (the
    files need not exist); ``values`` add or replace fields."""
    folder = Path(folder)
    fields = dict(
        tile_name=name,
        calexp=folder / "calexp.fits",
        frame_metadata=folder / "frames.csv",
        coadd_metadata=folder / "coadd.csv",
        besancon_headers=[],
        besancon_catalogs=[],
    )
    return fields | values


def write_tile_file(folder: str | Path, name: str = "synthetic", **values) -> Path:
    """``folder/tile.yaml`` with :func:`tile_fields`."""
    return write_tile(Path(folder) / "tile.yaml", tile_fields(folder, name, **values))


def write_notebooks(folder: Path, stages: dict[str, str]) -> Path:
    """``folder/<name>.ipynb`` from py:percent texts, on the hscsim kernel."""
    import jupytext

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in stages.items():
        nb = jupytext.reads(text, fmt="py:percent")
        nb.metadata["kernelspec"] = {
            "name": interpreter.KERNEL_NAME,
            "display_name": interpreter.KERNEL_DISPLAY,
            "language": "python",
        }
        jupytext.write(nb, folder / f"{name}.ipynb")
    return folder


#: Small demo tile for closure tests: deep, uniform coverage of patch 8523-4,2
#: with saturated Gaia stars (bright-star masks, SAT pixels).
DEMO_TEST_SIZE = (512, 512)
DEMO_TEST_CENTRE = (2750.0, 2100.0)
_DEMO_TILES: dict[int, Path] = {}


def demo_tile_for_tests(seed: int = 7) -> Path:
    """tile.yaml of the small demo tile (simulated), built once per test process."""
    if seed not in _DEMO_TILES:
        from hscsim_utils.demo.build import build_demo_tile

        base = Path(tempfile.mkdtemp(prefix="hscsim-test-demo-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        _DEMO_TILES[seed] = build_demo_tile(
            base / "input", size=DEMO_TEST_SIZE, seed=seed, centre=DEMO_TEST_CENTRE
        )
    return _DEMO_TILES[seed]
