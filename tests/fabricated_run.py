"""A run folder with every input of stage 06, fabricated for tests and benchmarks.

Stages 01-05 normally write these files. Here they are made directly: skymapinfo
of a small TAN patch in the XMM-LSS field (RA 34.2, Dec -5.57, so the real Gaia
stars shipped with ufig fall on it), constant systematic maps, empty masks, the
real Besancon catalogue and Gaia table from the ufig source distribution (as
provisioned by ``hscsim data`` in the cache) and a
constant PSF grid in the layout ufig's ``coadd_moffat_cnn_read`` reads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from hscsim_utils.data.provision import ufig_test_resource
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.runfolder import RunFolder
from tests.synthetic import tile_fields

RA0, DEC0 = 34.2, -5.57
PIXSCALE = PIXEL_SCALE_ARCSEC
N_EXP, EXPTIME, GAIN = 20.0, 270.0, 3.0  # per exposure
MEASURED_GAIN_FACTOR = 50.0  # gain from VARIANCE over the tutorial's gain x n_exp
PSF_GRID_STEP = 100
GAIA_DTYPE = np.dtype(
    [("ra", "f8"), ("dec", "f8"), ("phot_g_mean_mag", "f4"), ("id", "i8")]
)
PSF_PARAMS = ("psf_flux_ratio", "psf_fwhm", "psf_e1", "psf_e2", "psf_f1", "psf_f2",
              "psf_g1", "psf_g2")  # fmt: skip


def patch_wcs(shape: tuple[int, int], ra0: float = RA0, dec0: float = DEC0) -> WCS:
    """TAN WCS of the patch, reference point at its centre."""
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    wcs.wcs.cd = np.diag([-PIXSCALE / 3600, PIXSCALE / 3600])
    wcs.wcs.set()
    return wcs


def skymapinfo(
    shape: tuple[int, int], bsig: float, wcs: WCS, band: str = "i"
) -> dict[str, float]:
    ny, nx = shape
    per_band = {
        "seeing": 0.6,
        "magzero": 27.0,
        "satur": 1500.0,
        "gain": GAIN,
        "nexp": N_EXP,
        "exptime": N_EXP * EXPTIME,
        "bkg_mean": 0.0,
        "bkg_rms": bsig,
    }
    return {
        "pixscale": PIXSCALE,
        "CRPIX1": float(wcs.wcs.crpix[0]),
        "CRPIX2": float(wcs.wcs.crpix[1]),
        "CRVAL1": float(wcs.wcs.crval[0]),
        "CRVAL2": float(wcs.wcs.crval[1]),
        "NAXIS1": nx,
        "NAXIS2": ny,
        **{f"{key}_{band}": value for key, value in per_band.items()},
        "ra2000": float(wcs.wcs.crval[0]),
        "dec2000": float(wcs.wcs.crval[1]),
        f"gain_eff_tutorial_{band}": GAIN * N_EXP,
        f"gain_eff_{band}": MEASURED_GAIN_FACTOR * GAIN * N_EXP,
        f"gain_eff_err_{band}": 0.01 * MEASURED_GAIN_FACTOR * GAIN * N_EXP,
    }


def write_skymapinfo(run: RunFolder, info: dict) -> None:
    dtype = [(k, np.int64 if k.startswith("NAXIS") else np.float64) for k in info]
    rec = np.zeros(1, dtype=dtype)
    for key, value in info.items():
        rec[key] = value
    np.save(run.skymapinfo_npy, rec)
    import json

    run.skymapinfo_json.write_text(json.dumps(info))


def write_sysmaps(run: RunFolder, shape: tuple[int, int], bsig: float) -> None:
    pointings = np.zeros(shape, dtype=[(f"bit{w}", np.uint64) for w in range(1, 6)])
    pointings["bit1"] = 2 ** int(N_EXP) - 1
    with h5py.File(run.sysmaps, "w") as fh5:
        fh5["map_bsig"] = np.full(shape, bsig, np.float32)
        fh5["map_expt"] = np.full(shape, N_EXP * EXPTIME, np.float32)
        fh5["map_nexp"] = np.full(shape, N_EXP, np.uint16)
        fh5["map_gain"] = np.full(shape, N_EXP * GAIN, np.float32)
        fh5["map_invv"] = np.full(shape, bsig**-2, np.float32)
        fh5["map_pointings"] = pointings
        fh5["map_pointings"].attrs["n_pointings"] = int(N_EXP)


def write_masks(run: RunFolder, shape: tuple[int, int]) -> None:
    with h5py.File(run.mask, "w") as fh5:
        fh5["mask"] = np.zeros(shape, np.int64)
    with h5py.File(run.overlap, "w") as fh5:
        fh5["img_mask"] = np.zeros(shape, bool)


def grid_stars(wcs: WCS, shape: tuple[int, int], step: int, g_mag: float):
    """Extra Gaia-like stars on a regular grid (so small patches have PSF stars)."""
    ny, nx = shape
    x, y = np.meshgrid(np.arange(step, nx - step // 2, step),
                       np.arange(step, ny - step // 2, step))  # fmt: skip
    ra, dec = wcs.all_pix2world(x.ravel() + 0.3, y.ravel() + 0.6, 0)
    cat = np.zeros(ra.size, dtype=GAIA_DTYPE)
    cat["ra"], cat["dec"], cat["phot_g_mean_mag"] = ra, dec, g_mag
    cat["id"] = -1 - np.arange(ra.size)
    return cat


def write_stars(run: RunFolder, extra: np.ndarray | None = None) -> None:
    shutil.copyfile(ufig_test_resource("besancon_HSC.h5"), run.besancon)
    with h5py.File(ufig_test_resource("gaiadr3.cat"), "r") as fh5:
        gaia = fh5["data"][()].astype(GAIA_DTYPE)
    if extra is not None:
        gaia = np.concatenate([gaia, extra])
    with h5py.File(run.gaia, "w") as fh5:
        fh5["data"] = gaia


def psf_grid(shape: tuple[int, int], fwhm_px: float, e1: float = 0.0) -> np.ndarray:
    """Constant PSF on a 100-px grid (SExtractor's 1-based pixel coordinates)."""
    ny, nx = shape
    xs = np.arange(PSF_GRID_STEP / 2, nx + PSF_GRID_STEP, PSF_GRID_STEP)
    ys = np.arange(PSF_GRID_STEP / 2, ny + PSF_GRID_STEP, PSF_GRID_STEP)
    gx, gy = np.meshgrid(xs, ys)
    names = ["X_IMAGE", "Y_IMAGE"] + [f"{p}_ipt" for p in PSF_PARAMS]
    grid = np.zeros(gx.size, dtype=[(n, np.float32) for n in names])
    grid["X_IMAGE"], grid["Y_IMAGE"] = gx.ravel(), gy.ravel()
    grid["psf_flux_ratio_ipt"] = 0.9
    grid["psf_fwhm_ipt"] = fwhm_px
    grid["psf_e1_ipt"] = e1
    return grid


def write_psf_model(run: RunFolder, shape: tuple[int, int], fwhm_px: float) -> None:
    with h5py.File(run.psf_model, "w") as fh5:
        fh5["grid_psf"] = psf_grid(shape, fwhm_px)


def make_run_folder(
    root: str | Path,
    shape: tuple[int, int] = (600, 600),
    bsig: float = 0.03,
    fwhm_px: float = 3.6,
    star_grid_step: int = 0,
    band: str = "i",
) -> RunFolder:
    """A run folder holding the outputs of stages 01-05 for a flat patch in ``band``.

    ``star_grid_step`` > 0 adds G = 18.5 stars every that many pixels to the
    real Gaia stars (a small patch has too few for a PSF model).
    """
    run = RunFolder(Path(root))
    wcs = patch_wcs(shape)
    write_skymapinfo(run, skymapinfo(shape, bsig, wcs, band))
    write_sysmaps(run, shape, bsig)
    write_masks(run, shape)
    extra = grid_stars(wcs, shape, star_grid_step, 18.5) if star_grid_step else None
    write_stars(run, extra)
    write_psf_model(run, shape, fwhm_px)
    return run


def make_tile(root: str | Path, seed: int = 3, **values) -> TileSpec:
    """A TileSpec whose input paths point into ``root`` (files need not exist)."""
    fields = tile_fields(root, "fabricated", is_demo=True, seed=seed)
    return TileSpec(**(fields | values))


def wcs_header(wcs: WCS) -> fits.Header:
    """IMAGE header with CD-matrix keywords, as in a calexp."""
    header = wcs.to_header()
    for i in (1, 2):
        for j in (1, 2):
            header[f"CD{i}_{j}"] = float(wcs.wcs.cd[i - 1, j - 1])
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        header.remove(key, ignore_missing=True)
    return header
