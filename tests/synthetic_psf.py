"""Synthetic inputs of stage 05 with a known PSF, for its tests and benchmark.

:func:`write_synthetic_inputs` writes a patch in the stage's input formats
(calexp, frame metadata, SExtractor-like catalogue, visit maps, Gaia stars) with
stars drawn from a smooth PSF field scaled by the seeing of the dithered visits,
and the true PSF on ufig's grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.hsc.tile import TileSpec, load_tile, write_tile
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages.psf import IPT_NAMES, SEXCAT_COLUMNS


def synthetic_psf_field(
    x: np.ndarray, y: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """A smoothly varying PSF (n, 8) in PARAM_NAMES order at pixel positions x, y."""
    ny, nx = shape
    u, v = 2.0 * np.asarray(x) / nx - 1.0, 2.0 * np.asarray(y) / ny - 1.0
    fwhm = 3.6 * (1 + 0.04 * u - 0.03 * v + 0.03 * u * v + 0.02 * (2 * u**2 - 1))
    return np.column_stack(
        [
            fwhm,
            0.55 + 0.08 * u - 0.05 * v,
            0.02 + 0.02 * u + 0.01 * v**2,
            -0.015 + 0.015 * v - 0.01 * u,
            0.01 + 0.01 * u,
            -0.01 + 0.01 * v,
            0.02 - 0.01 * v,
            0.005 + 0.01 * u,
        ]
    )


def _wcs_header(shape: tuple[int, int], ra0: float, dec0: float):
    from astropy.io import fits

    ny, nx = shape
    scale = PIXEL_SCALE_ARCSEC / 3600.0
    header = fits.Header()
    for key, value in (
        ("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CUNIT1", "deg"),
        ("CUNIT2", "deg"), ("CRPIX1", (nx + 1) / 2.0), ("CRPIX2", (ny + 1) / 2.0),
        ("CRVAL1", ra0), ("CRVAL2", dec0), ("CD1_1", -scale), ("CD1_2", 0.0),
        ("CD2_1", 0.0), ("CD2_2", scale), ("RADESYS", "ICRS"), ("EQUINOX", 2000.0),
    ):  # fmt: skip
        header[key] = value
    return header


def synthetic_visits(
    shape: tuple[int, int], n_visits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Dithered rectangular footprints (x0, x1, y0, y1; visit 0 covers all) and
    each visit's seeing FWHM in pixels (log-normal, 8% scatter)."""
    from hscsim_utils.compat.ufig_psf import BITS_PER_WORD, MAX_WORDS

    if not 1 <= n_visits <= BITS_PER_WORD * MAX_WORDS:
        raise InputError("n_visits", f"must be 1..320, got {n_visits}")
    ny, nx = shape
    w = rng.uniform(0.5, 0.9, n_visits) * nx
    h = rng.uniform(0.5, 0.9, n_visits) * ny
    x0 = rng.uniform(-0.3 * w, nx - 0.7 * w).astype(int)
    y0 = rng.uniform(-0.3 * h, ny - 0.7 * h).astype(int)
    rects = np.column_stack([x0, x0 + w.astype(int), y0, y0 + h.astype(int)])
    rects[0] = (0, nx, 0, ny)
    rects[:, :2] = rects[:, :2].clip(0, nx)
    rects[:, 2:] = rects[:, 2:].clip(0, ny)
    return rects, 3.6 * np.exp(rng.normal(0.0, 0.08, n_visits))


def _rectangle_sum(shape, rects, values, dtype) -> np.ndarray:
    """Sum of ``values[v]`` over the rectangles covering each pixel (prefix sums;
    uint64 sums wrap, so distinct powers of two add up to their OR)."""
    ny, nx = shape
    diff = np.zeros((ny + 1, nx + 1), dtype)
    values = np.asarray(values, dtype)
    x0, x1, y0, y1 = rects.T
    np.add.at(diff, (y0, x0), values)
    np.add.at(diff, (y0, x1), -values if dtype != np.uint64 else ~values + 1)
    np.add.at(diff, (y1, x0), -values if dtype != np.uint64 else ~values + 1)
    np.add.at(diff, (y1, x1), values)
    return diff.cumsum(axis=0, dtype=dtype).cumsum(axis=1, dtype=dtype)[:ny, :nx]


def synthetic_visit_map(shape: tuple[int, int], rects: np.ndarray) -> np.ndarray:
    """map_pointings (bit1..bit5) of visits with rectangular footprints."""
    from hscsim_utils.compat.ufig_psf import BITS_PER_WORD, MAX_WORDS

    out = np.zeros(shape, [(f"bit{w + 1}", np.uint64) for w in range(MAX_WORDS)])
    word, bit = np.divmod(np.arange(len(rects)), BITS_PER_WORD)
    for w in np.unique(word):
        values = np.left_shift(np.uint64(1), bit[word == w].astype(np.uint64))
        out[f"bit{w + 1}"] = _rectangle_sum(shape, rects[word == w], values, np.uint64)
    return out


@dataclass
class SyntheticPSF:
    """True PSF of a synthetic patch: the smooth field of :func:`synthetic_psf_field`
    with the FWHM scaled by the rms seeing of the visits covering each pixel."""

    shape: tuple[int, int]
    seeing_factor: np.ndarray  # (ny, nx)

    @classmethod
    def from_visits(cls, shape, rects, seeing_px) -> SyntheticPSF:
        s2 = _rectangle_sum(shape, rects, seeing_px**2, np.float64)
        n = _rectangle_sum(shape, rects, np.ones(len(rects)), np.float64)
        factor = np.sqrt(s2 / np.maximum(n, 1)) / 3.6
        return cls(shape, np.where(n > 0, factor, 1.0).astype(np.float32))

    def params(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n, 8) PSF at ufig pixel positions x, y (pixel j covers [j, j + 1))."""
        out = synthetic_psf_field(x, y, self.shape)
        iy = np.clip(np.asarray(y, int), 0, self.shape[0] - 1)
        ix = np.clip(np.asarray(x, int), 0, self.shape[1] - 1)
        out[:, 0] *= self.seeing_factor[iy, ix]
        return out

    def grid(self) -> np.ndarray:
        """The truth on ufig's grid (X_IMAGE = 0.5, 100.5, ...) as ``grid_psf``."""
        ny, nx = self.shape
        gx, gy = np.meshgrid(np.arange(0, nx, 100), np.arange(0, ny, 100))
        params = self.params(gx.ravel(), gy.ravel())
        names = [("X_IMAGE", "f8"), ("Y_IMAGE", "f8")] + [(n, "f8") for n in IPT_NAMES]
        grid = np.zeros(gx.size, names)
        grid["X_IMAGE"], grid["Y_IMAGE"] = gx.ravel() + 0.5, gy.ravel() + 0.5
        for k, name in enumerate(IPT_NAMES):
            grid[name] = params[:, k]
        return grid


def _write_synthetic_frames(path, header, rects, seeing_px) -> None:
    """Frame metadata in the archive's CSV layout: one frame per visit."""
    import pandas as pd
    from astropy.wcs import WCS

    from hscsim_utils.hsc.files import FRAME_COLUMNS, write_archive_csv

    x0, x1, y0, y1 = (rects.T - 0.5).astype(float)  # pixel-centre coordinates
    data = {"exptime": 270.0, "seeing": seeing_px * PIXEL_SCALE_ARCSEC}
    for corner, (cx, cy) in zip(
        ("ll", "ul", "ur", "lr"), ((x0, y0), (x0, y1), (x1, y1), (x1, y0)), strict=True
    ):
        data[f"{corner}cra"], data[f"{corner}cdec"] = WCS(header).all_pix2world(
            cx, cy, 0
        )
    for k in range(1, 5):
        data[f"gain{k}"] = 3.0
    data["visit"] = 1000 + 2 * np.arange(len(rects))
    write_archive_csv(path, pd.DataFrame(data, index=range(len(rects))), FRAME_COLUMNS)


@dataclass
class SyntheticInputs:
    """A synthetic patch written in the stage's input formats, with its truth."""

    tile: TileSpec
    run: RunFolder
    truth_grid: np.ndarray
    psf: SyntheticPSF
    stars: np.ndarray  # x, y (ufig pixel coordinates), mag, in_gaia per point source


def write_synthetic_inputs(
    folder: str | os.PathLike,
    shape: tuple[int, int] = (2000, 2000),
    n_stars: int = 300,
    n_galaxies: int = 300,
    n_visits: int = 70,
    seed: int = 1,
    sky_sigma: float = 0.03,
    gain: float = 1000.0,
) -> SyntheticInputs:
    """Calexp, frame metadata, SExtractor-like catalogue, sysmaps, Gaia file and
    the true PSF grid of a synthetic patch.

    Stars are drawn with the true PSF (:class:`SyntheticPSF`) and the ufig PSF
    renderer of :mod:`hscsim_utils.numerics.psf_model`, galaxies as Gaussian blobs; the
    catalogue is built from the truth (as SExtractor would measure it, with
    small errors). Writes ``folder/input`` (tile.yaml, calexp, frames CSV,
    truth) and the run folder ``folder/run``.
    """
    from cosmic_toolbox import arraytools as at

    from hscsim_utils.hsc.files import write_calexp
    from hscsim_utils.numerics.psf_model import render_star_field

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    ny, nx = shape
    header = _wcs_header(shape, 34.0, -5.0)
    rects, seeing_px = synthetic_visits(shape, n_visits, rng)
    truth_psf = SyntheticPSF.from_visits(shape, rects, seeing_px)
    xs, ys = rng.uniform(3, nx - 3, n_stars), rng.uniform(3, ny - 3, n_stars)
    mag_s = rng.uniform(16.5, 23.0, n_stars)
    params = truth_psf.params(xs, ys)
    image = render_star_field(shape, xs, ys, 10 ** (-0.4 * (mag_s - 27)), params)
    xg, yg = rng.uniform(3, nx - 3, n_galaxies), rng.uniform(3, ny - 3, n_galaxies)
    mag_g = rng.uniform(19.0, 24.0, n_galaxies)
    size_g = rng.uniform(1.5, 4.0, n_galaxies)
    image += _gaussian_blobs(shape, xg, yg, 10 ** (-0.4 * (mag_g - 27)), size_g)
    noisy = rng.poisson(np.maximum(image, 0) * gain) / gain
    noisy += rng.normal(0.0, sky_sigma, shape)
    variance = sky_sigma**2 + np.maximum(image, 0) / gain
    tile_dir = folder / "input"
    calexp = write_calexp(
        tile_dir / "calexp.fits", noisy, np.zeros(shape, np.int32), variance, header
    )
    _write_synthetic_frames(tile_dir / "frames.csv", header, rects, seeing_px)
    run = RunFolder(folder / "run")
    g_mag = mag_s + 0.3
    in_gaia = g_mag < 21.0
    cat = _synthetic_catalog(
        header, np.r_[xs, xg], np.r_[ys, yg], np.r_[mag_s, mag_g],
        np.r_[params[:, 0] / 2.355, size_g], np.r_[params[:, 2], np.zeros(n_galaxies)],
        np.r_[params[:, 3], np.zeros(n_galaxies)], rng,
    )  # fmt: skip
    with atomic_path(run.sextractor_cat) as tmp:
        at.save_hdf_cols(str(tmp), cat)
    with atomic_path(run.sysmaps) as tmp, h5py.File(tmp, "w") as fh5:
        fh5.create_dataset(
            "map_pointings", data=synthetic_visit_map(shape, rects), compression="lzf"
        )
        fh5["map_pointings"].attrs["n_pointings"] = n_visits
    _write_synthetic_gaia(
        run.gaia, header, xs[in_gaia], ys[in_gaia], g_mag[in_gaia], rng
    )
    truth = truth_psf.grid()
    truth_dir = tile_dir / "truth"
    with atomic_path(truth_dir / "psf_truth.h5") as tmp, h5py.File(tmp, "w") as fh5:
        fh5.create_dataset("grid_psf", data=truth)
    tile_file = write_tile(
        tile_dir / "tile.yaml",
        dict(
            tile_name="synthetic-psf", calexp=Path(calexp),
            frame_metadata=tile_dir / "frames.csv",
            coadd_metadata=tile_dir / "unused.csv", besancon_headers=[],
            besancon_catalogs=[], truth_dir=truth_dir, is_demo=True, seed=seed,
        ),
    )  # fmt: skip
    tile = load_tile(tile_file)
    stars = np.rec.fromarrays([xs, ys, mag_s, in_gaia], names="x,y,mag,in_gaia")
    return SyntheticInputs(tile, run, truth, truth_psf, stars)


def _gaussian_blobs(shape, x, y, flux, sigma) -> np.ndarray:
    image = np.zeros(shape)
    half = 15
    grid = np.arange(-half, half + 1)
    for xi, yi, fi, si in zip(x, y, flux, sigma, strict=True):
        cx, cy = int(xi), int(yi)
        gx = np.exp(-0.5 * ((cx + grid + 0.5 - xi) / si) ** 2)
        gy = np.exp(-0.5 * ((cy + grid + 0.5 - yi) / si) ** 2)
        box = fi * np.outer(gy, gx) / (2 * np.pi * si**2)
        sy = slice(max(cy - half, 0), min(cy + half + 1, shape[0]))
        sx = slice(max(cx - half, 0), min(cx + half + 1, shape[1]))
        image[sy, sx] += box[
            sy.start - cy + half : sy.stop - cy + half,
            sx.start - cx + half : sx.stop - cx + half,
        ]
    return image


def _synthetic_catalog(header, x, y, mag, sigma, e1, e2, rng) -> np.ndarray:
    from astropy.wcs import WCS

    n = len(x)
    cols = SEXCAT_COLUMNS + ("FLAGS_STAMP",)
    ints = {"NUMBER", "XPEAK_IMAGE", "YPEAK_IMAGE", "FLAGS", "FLAGS_STAMP"}
    cat = np.zeros(n, [(c, "i4" if c in ints else "f8") for c in cols])
    cat["NUMBER"] = np.arange(1, n + 1)
    cat["X_IMAGE"] = cat["XWIN_IMAGE"] = x + 0.5 + rng.normal(0, 0.02, n)
    cat["Y_IMAGE"] = cat["YWIN_IMAGE"] = y + 0.5 + rng.normal(0, 0.02, n)
    cat["XPEAK_IMAGE"], cat["YPEAK_IMAGE"] = np.floor(x) + 1, np.floor(y) + 1
    ra, dec = WCS(header).all_pix2world(cat["XWIN_IMAGE"], cat["YWIN_IMAGE"], 1)
    cat["ALPHAWIN_J2000"], cat["DELTAWIN_J2000"] = ra, dec
    cat["MAG_AUTO"] = mag + rng.normal(0, 0.02, n)
    cat["FLAGS"] = np.where(rng.random(n) < 0.03, 2, 0)
    snr = 10 ** (-0.4 * (mag - 27.0)) / 0.3  # rough S/N of the moments
    noise = np.clip(1.0 / snr, 0.002, 0.2)
    cat["FLUX_RADIUS"] = 1.18 * sigma * (1 + rng.normal(0, 1, n) * noise)
    s2 = sigma**2 * (1 + rng.normal(0, 2, n) * noise)
    cat["X2WIN_IMAGE"] = s2 * (1 + e1 + rng.normal(0, 1, n) * noise)
    cat["Y2WIN_IMAGE"] = s2 * (1 - e1 + rng.normal(0, 1, n) * noise)
    cat["XYWIN_IMAGE"] = s2 * (e2 + rng.normal(0, 1, n) * noise)
    return cat


def _write_synthetic_gaia(path, header, x, y, g_mag, rng) -> None:
    from astropy.wcs import WCS

    ra, dec = WCS(header).all_pix2world(x + 0.5, y + 0.5, 1)
    data = np.zeros(
        len(x), [("ra", "f8"), ("dec", "f8"), ("phot_g_mean_mag", "f4"), ("id", "i8")]
    )
    jitter = 0.01 / 3600.0
    data["ra"] = ra + rng.normal(0, jitter, len(x))
    data["dec"] = dec + rng.normal(0, jitter, len(x))
    data["phot_g_mean_mag"] = g_mag
    data["id"] = 4_000_000_000 + np.arange(len(x))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh5:
        fh5.create_dataset("data", data=data)


def synthetic_stamps(
    n: int,
    rng: np.random.Generator,
    mag: tuple[float, float] = (18.0, 22.0),
    sky: float = 0.03,
    gain: float = 1000.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """19 x 19 stamps of ``n`` stars at HSC-deep-like S/N (zero point 27,
    Poisson and sky noise) with random PSFs: (cube, true parameters, fluxes)."""
    from hscsim_utils.numerics.psf_model import StampRenderer

    renderer = StampRenderer()
    truth = np.column_stack(
        [
            rng.uniform(3.0, 4.2, n),
            rng.uniform(0.3, 0.8, n),
            rng.normal(0, 0.04, (n, 2)),
            rng.normal(0, 0.03, (n, 4)),
        ]
    )
    flux = 10 ** (-0.4 * (rng.uniform(*mag, n) - 27.0))
    pos = rng.uniform(9.0, 10.0, (n, 2))
    cube = np.empty((n, 19, 19))
    for i in range(n):
        mu = renderer.render(truth[i], pos[i, 0], pos[i, 1], flux[i], 0.01)
        cube[i] = rng.poisson(mu * gain) / gain + rng.normal(0, sky, mu.shape)
    return cube, truth, flux
