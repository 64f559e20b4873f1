"""Build the DEMO tile: a SIMULATED HSC PDR3 deep-coadd patch with known truth.

The demo tile is simulated, not real HSC data. It imitates an HSC-SSP UltraDeep
i-band patch in the XMM-LSS / SXDS field, tract 8523 patch 4,2 of the rings sky
map, and writes it in the formats of the real inputs (deepCoadd calexp, the
archive's frame and mosaic CSV files, Besancon web-service output, a VizieR Gaia
DR3 VOTable) together with the truth behind it.

Numbers and their sources:

- pixel scale 0.168"/pixel, zero point 27 AB, patches of 4200 x 4200 pixels
  (Bosch et al. 2018, PASJ 70 S5; Aihara et al. 2022, PASJ 74 247);
- i-band visits of 270 s; UD i band designed as 840 min to 27.4 mag (5 sigma,
  2" aperture; Aihara et al. 2018a, PASJ 70 S4), PDR3 delivered ~80% of the planned
  Deep/UD time (Aihara et al. 2022): 150 simulated UD visits; the single-visit sky
  noise is set so that the designed time reaches the designed depth;
- median i-band seeing ~0.6" (Aihara et al. 2018b PASJ 70 S8, 2019, 2022): visit
  seeing log-normal around 0.60";
- HSC: 104 CCDs of 2048 x 4176 pixels, gaps ~12" and ~53", gain 3.0 e-/ADU,
  saturation 150,000 e- (NAOJ HSC instrument pages; Miyazaki et al. 2018);
- bright-star masks: Coupon et al. 2018 (PASJ 70 S7) radius law for G < 17.5, the
  HSC point-source saturation limit quoted by the HSC data release;
- coadd noise correlated by Lanczos-3 resampling (ufig's empirical kernel).

What it writes into ``out_dir`` (see ``build_demo_tile``) is read by the pipeline
with the same readers as real data (``hsc_io``, ``tile.load_tile``).

Simplifications: optical distortion is neglected (frames are exact
quadrilaterals); the photon noise of sources follows ufig's convention of an
effective gain = mean gain x mean number of exposures (the tutorial's), not the
physical electrons per coadd ADU; the MASK plane carries NO_DATA, BRIGHT_OBJECT
and SAT only; the observing history (visits, gains, PSF fields) is fixed, the
``seed`` draws the sky (galaxies, star sampling, noise); ufig counts photons in
int32, so stars brighter than ~10.8 mag (at the effective gain) are rendered at that
limit (Gaia-placed bright stars get the Besancon star of closest G above it).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.ndimage import correlate
from tqdm import tqdm

from hscsim_utils.atomic import atomic_dir, atomic_path, write_json
from hscsim_utils.data import provision
from hscsim_utils.demo import files as demo_files
from hscsim_utils.demo import observation as obs
from hscsim_utils.demo import psf as demo_psf
from hscsim_utils.demo import render as demo_render
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.demo.files import SIMULATION_DEFAULTS, parse_size
from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap

DEMO_POSTERIOR_INDEX = 1234
OBSERVATION_SEED = 85230402
GALAXY_MODEL = "Moser+24"
FILTER_NAME = "HSC-I2"
BRIGHT_STAR_BIT = 2  # ufig flag bits of the mask file
NO_DATA_FLAG = 4
SATURATION_MAG = 17.5
TRUTH_FILES = {
    "sysmaps.h5": "map_bsig, map_rms_realised (ADU), map_expt (s), map_nexp, "
    "map_gain, map_gain_amp (sums of e-/ADU), map_invvar_weight, map_pointings",
    "psf_model.h5": "grid_psf (ufig layout, FWHM in pixels), grid/* (FWHM in "
    "arcsec), visits, visit_fwhm_arcsec",
    "mask.h5": "mask (ufig flags 2 bright star, 4 no data), mask_plane (MASK HDU)",
    "galaxies.h5": "data: ufig galaxy catalogue + X_IMAGE, Y_IMAGE, ra, dec",
    "stars.h5": "data: ufig star catalogue + X_IMAGE, Y_IMAGE, ra, dec, gaia_id",
}


def ufig_seed(seed: int) -> int:
    """ufig seed derived from the demo seed; never the simulation default 42."""
    value = int(np.random.SeedSequence(seed).generate_state(1)[0] % (2**31 - 1))
    return value + 1 if value == SIMULATION_DEFAULTS["seed"] else value


def build_demo_tile(
    out_dir: str | Path,
    size: tuple[int, int] = (4200, 4200),
    seed: int = 20240611,
    *,
    centre: tuple[float, float] | None = None,
) -> Path:
    """Build the demo tile into ``out_dir`` (replaced atomically); return tile.yaml.

    ``size`` pixels are cut from patch 8523-4,2 around its centre, or around
    ``centre`` (0-based pixel position in the full patch); the observation is
    the same for every size. ``seed`` draws galaxies, stars and noise.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", f"must be a non-negative integer, got {seed!r}")
    geom = obs.demo_geometry(parse_size(size), centre=centre)
    out_dir = Path(out_dir).resolve()  # ufig reads relative paths as its own resources
    with (
        atomic_dir(out_dir) as tmp,
        tempfile.TemporaryDirectory(prefix="hscsim-demo-") as work,
    ):
        _build(tmp, Path(work), geom, int(seed))
    return out_dir / "tile.yaml"


@dataclass
class _Observation:
    """The fixed observing history and its truth maps."""

    plan: obs.VisitPlan
    visit_psf: demo_psf.VisitPSF
    frames: obs.FrameTable
    cpsf: demo_psf.CoaddPSF
    bsig: np.ndarray  # input background rms (ADU)
    rms: np.ndarray  # realised rms after resampling (ADU)
    nodata: np.ndarray
    exposure: dict
    gain_eff: float
    n_exp_mean: float
    saturation: float
    sysmaps: Path
    psf_model: Path


@dataclass
class _Stars:
    gaia_all: np.ndarray  # every shipped Gaia star
    gaia: np.ndarray  # those of the VizieR-style query around the patch
    besancon_h5: Path
    gaia_ufig: Path


def _build(out: Path, work: Path, geom: skymap.PatchGeometry, seed: int) -> None:
    names = demo_files.file_names(geom)
    truth = out / "truth"
    truth.mkdir()
    with tqdm(total=6, desc="demo tile (simulated)", unit="step") as steps:
        steps.set_postfix_str("observation and truth maps")
        ob = _observe(geom, truth)
        steps.update()
        steps.set_postfix_str("star inputs")
        stars = _write_star_inputs(out, work, geom, names)
        steps.update()
        steps.set_postfix_str("GalSBI + ufig rendering")
        inputs = demo_render.RenderInputs(
            sysmaps=ob.sysmaps, psf_model=ob.psf_model,
            besancon_map=stars.besancon_h5, gaia=stars.gaia_ufig, gain=ob.gain_eff,
            n_exp=ob.n_exp_mean, saturation_adu=ob.saturation, seed=ufig_seed(seed),
            posterior_index=DEMO_POSTERIOR_INDEX, galaxy_model=GALAXY_MODEL,
        )  # fmt: skip
        result = demo_render.render(geom, inputs, work / "ufig")
        steps.update()
        steps.set_postfix_str("calexp")
        bright = _write_calexp(out / names["calexp"], geom, ob, result, stars.gaia)
        _write_mask_truth(truth / "mask.h5", out / names["calexp"], ob.nodata, bright)
        steps.update()
        steps.set_postfix_str("archive metadata")
        _write_archive_csvs(out, names, geom, ob)
        steps.update()
        steps.set_postfix_str("truth catalogues and tile.yaml")
        wcs = geom.wcs()
        counts = {
            "n_galaxies": _write_galaxies(truth / "galaxies.h5", result.galaxies, wcs),
            "n_stars": _write_stars(truth / "stars.h5", result.stars, wcs, stars),
            "n_gaia_in_query": len(stars.gaia),
            "fraction_bright_object": float(bright.mean()),
        }
        summary = _truth_summary(geom, seed, inputs, ob, counts, names)
        write_json(truth / "truth.json", summary)
        demo_files.write_tile_yaml(
            out, names, demo_files.tile_name(geom, seed), out / "truth"
        )
        steps.update()


def _observe(geom: skymap.PatchGeometry, truth: Path) -> _Observation:
    """Visits, frames, coverage, noise and PSF truth; writes sysmaps and PSF files."""
    rng = np.random.default_rng(OBSERVATION_SEED)
    plan = obs.plan_visits(rng)
    visit_psf = demo_psf.draw_visit_psf(rng, plan.n_visits)
    frames = obs.overlapping_frames(plan, geom)
    cov = obs.coverage_maps(plan, geom, frames)
    invvar = np.maximum(cov.invvar, 1e-300)
    bsig = np.where(cov.invvar > 0, 1.0 / np.sqrt(invvar), 0.0).astype(np.float32)
    rms = realised_noise_rms(bsig)
    used = np.unique(frames.visit_row)
    cpsf = demo_psf.coadd_psf(plan, visit_psf, geom, used)
    psf_path = demo_psf.write_psf_truth(
        truth / "psf_model.h5", cpsf, plan, visit_psf, used
    )
    fwhm = float(np.median(cpsf.params["fwhm"][cpsf.covered]))
    ratio = float(np.median(cpsf.params["flux_ratio"][cpsf.covered]))
    peak = demo_psf.moffat_peak_fraction(fwhm / skymap.PIXEL_SCALE_ARCSEC, ratio)
    return _Observation(
        plan, visit_psf, frames, cpsf, bsig, rms, cov.nexp == 0,
        _exposure_summary(cov), float(np.mean(cov.gain_sum)), float(np.mean(cov.nexp)),
        10 ** (0.4 * (hsc_io.ZERO_POINT_AB - SATURATION_MAG)) * peak,
        _write_sysmaps(truth / "sysmaps.h5", cov, bsig, rms), psf_path,
    )  # fmt: skip


def _write_star_inputs(out: Path, work: Path, geom, names: dict) -> _Stars:
    """Gaia VOTable and Besancon files in their real formats, ufig's Gaia input."""
    wcs = geom.wcs()
    gaia_all = demo_stars.load_gaia(provision.ufig_test_resource("gaiadr3.cat"))
    centre = wcs.all_pix2world([(geom.nx + 1) / 2], [(geom.ny + 1) / 2], 1)
    radius = math.hypot(geom.nx, geom.ny) * skymap.PIXEL_SCALE_ARCSEC / 3600.0
    gaia = demo_stars.gaia_in_cone(gaia_all, centre[0][0], centre[1][0], radius)
    demo_stars.write_gaia_votable(out / names["gaia"], gaia)
    besancon_h5 = provision.ufig_test_resource("besancon_HSC.h5")
    cat, area = demo_stars.load_besancon_pixel(besancon_h5)
    demo_stars.write_besancon(
        out / names["besancon_header"], out / names["besancon_fits"], cat, area
    )
    gaia_ufig = demo_stars.write_gaia_for_ufig(work / "gaia_ufig.h5", gaia_all, wcs)
    return _Stars(gaia_all, gaia, besancon_h5, gaia_ufig)


def _write_calexp(path: Path, geom, ob: _Observation, result, gaia) -> np.ndarray:
    """Image, MASK and VARIANCE planes; NaN where there is no data.

    Returns the BRIGHT_OBJECT mask.
    """
    bright = _bright_star_mask(geom, gaia)
    saturated = result.image >= ob.saturation * (1 - 1e-6)
    mask = demo_files.mask_plane(ob.nodata, bright, saturated)
    image = result.image.astype(np.float32)
    image[ob.nodata] = np.nan
    variance = (
        ob.rms.astype(np.float64) ** 2 + np.maximum(result.image, 0) / ob.gain_eff
    )
    variance = variance.astype(np.float32)
    variance[ob.nodata] = np.nan
    hsc_io.write_calexp(
        path, image, mask, variance, geom.header(), band=FILTER_NAME,
        primary_cards={"OBJECT": "DEMO tile (simulated)", "TRACT": geom.tract,
                       "PATCH": f"{geom.patch[0]},{geom.patch[1]}"},
    )  # fmt: skip
    return bright


def lanczos_kernel() -> np.ndarray:
    """ufig's empirical Lanczos-3 resampling kernel, normalised to unit sum."""
    from importlib.resources import files

    import ufig

    path = files(ufig.__name__) / "res/resampling/lanczos_resampling_kernel_n3.txt"
    kernel = np.loadtxt(str(path))
    return kernel / kernel.sum()


def realised_noise_rms(bsig: np.ndarray) -> np.ndarray:
    """Per-pixel noise rms after ufig's resampling (zero padding at the borders)."""
    kernel = lanczos_kernel()
    var = correlate(bsig.astype(np.float64) ** 2, kernel**2, mode="constant")
    return np.sqrt(np.where(bsig > 0, var, 0.0)).astype(np.float32)


def _write_sysmaps(path: Path, cov: obs.CoverageMaps, bsig, rms) -> Path:
    """Sysmaps HDF5 (ufig reads map_bsig, map_expt) with the coverage truth."""
    words = np.dtype([(f"bit{i + 1}", np.uint64) for i in range(obs.N_BIT_WORDS)])
    pointings = cov.bits.view(words)[..., 0]
    datasets = {
        "map_bsig": (bsig, "input background rms (ADU, before resampling)"),
        "map_rms_realised": (rms, "realised noise rms (ADU, after resampling)"),
        "map_expt": (cov.expt, "exposure time (s), uint32"),
        "map_nexp": (cov.nexp, "number of CCD frames"),
        "map_gain": (cov.gain_sum, "sum of frame-mean gains (e-/ADU)"),
        "map_gain_amp": (cov.gain_amp_sum, "sum of amplifier gains (e-/ADU)"),
        "map_invvar_weight": (
            cov.invvar.astype(np.float32),
            "sum of coadd weights 1/sigma_visit^2",
        ),
        "map_pointings": (pointings, "visit bitmaps, visits 0-63 in bit1, ..."),
    }
    return demo_files.write_truth_sysmaps(
        path, datasets, cov.visit_ids, "DEMO tile (simulated)"
    )


def _exposure_summary(cov: obs.CoverageMaps) -> dict:
    covered = cov.nexp > 0
    return {
        "expt_min_s": int(cov.expt.min()),
        "expt_max_s": int(cov.expt.max()),
        "expt_median_covered_s": float(np.median(cov.expt[covered])),
        "nexp_max": int(cov.nexp.max()),
        "nexp_mean": float(cov.nexp.mean()),
        "gain_mean_e_per_adu": float(cov.gain_sum.mean() / max(cov.nexp.mean(), 1e-9)),
        "n_visits": len(cov.visit_ids),
    }


def _bright_star_mask(geom: skymap.PatchGeometry, gaia: np.ndarray) -> np.ndarray:
    bright = gaia[gaia["phot_g_mean_mag"] < SATURATION_MAG]
    x, y = geom.wcs().all_world2pix(bright["ra"], bright["dec"], 1)
    radius = demo_stars.bright_star_radius_arcsec(bright["phot_g_mean_mag"])
    return demo_stars.bright_star_mask(
        (geom.ny, geom.nx), x, y, radius / skymap.PIXEL_SCALE_ARCSEC
    )


def _write_mask_truth(path: Path, calexp_path: Path, nodata, bright) -> None:
    """ufig flag map (2 bright star, 4 no data) and a copy of the MASK plane."""
    flags = (bright.astype(np.int32) * BRIGHT_STAR_BIT) | (
        nodata.astype(np.int32) * NO_DATA_FLAG
    )
    mask = hsc_io.read_calexp(calexp_path).mask
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        ds = fh.create_dataset("mask", data=flags, compression="lzf")
        ds.attrs["description"] = "ufig flag bits: 2 bright star, 4 survey mask"
        ds = fh.create_dataset("mask_plane", data=mask, compression="lzf")
        ds.attrs["description"] = "the calexp MASK plane (PDR3 MP_* bits)"
        fh.attrs["description"] = "DEMO tile (simulated): true masks"


def _with_sky(cat: np.ndarray, wcs, extra: dict) -> np.ndarray:
    """Append X_IMAGE, Y_IMAGE (FITS convention), ra, dec and ``extra`` columns."""
    x_fits = cat["x"].astype(np.float64) + 0.5
    y_fits = cat["y"].astype(np.float64) + 0.5
    ra, dec = wcs.all_pix2world(x_fits, y_fits, 1)
    new = {"X_IMAGE": x_fits, "Y_IMAGE": y_fits, "ra": ra, "dec": dec, **extra}
    dtype = cat.dtype.descr + [(k, np.asarray(v).dtype) for k, v in new.items()]
    out = np.empty(len(cat), dtype=dtype)
    for name in cat.dtype.names:
        out[name] = cat[name]
    for name, values in new.items():
        out[name] = values
    return out


def _write_galaxies(path: Path, galaxies: np.ndarray, wcs) -> int:
    extra = {}
    if "r50" in galaxies.dtype.names:
        extra["r50_arcsec"] = galaxies["r50"] * skymap.PIXEL_SCALE_ARCSEC
    table = _with_sky(galaxies, wcs, extra)
    _write_table(path, table, "true galaxies (x, y ufig: FITS - 0.5; r50 pixels)")
    return len(table)


def _write_stars(path: Path, stars: np.ndarray, wcs, inputs: _Stars) -> int:
    gaia = inputs.gaia_all
    gx, gy = wcs.all_world2pix(gaia["ra"], gaia["dec"], 1)
    gaia_id = np.full(len(stars), -1, np.int64)
    gaia_g = np.full(len(stars), np.nan, np.float32)
    if len(stars) and len(gaia):
        from scipy.spatial import cKDTree

        dist, idx = cKDTree(np.c_[gx, gy]).query(
            np.c_[stars["x"] + 0.5, stars["y"] + 0.5]
        )
        hit = dist < 1e-3
        gaia_id[hit] = gaia["id"][idx[hit]]
        gaia_g[hit] = gaia["phot_g_mean_mag"][idx[hit]]
    table = _with_sky(stars, wcs, {"gaia_id": gaia_id, "gaia_G": gaia_g})
    _write_table(path, table, "true stars (Gaia-placed ones carry gaia_id)")
    return len(table)


def _write_table(path: Path, table: np.ndarray, description: str) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        ds = fh.create_dataset("data", data=table, compression="lzf")
        ds.attrs["description"] = f"DEMO tile (simulated): {description}"


def _truth_summary(geom, seed, inputs, ob: _Observation, counts, names) -> dict:
    covered = ob.bsig > 0
    fwhm = ob.cpsf.params["fwhm"][ob.cpsf.covered]
    ell = np.hypot(ob.cpsf.params["e1"], ob.cpsf.params["e2"])[ob.cpsf.covered]
    return {
        "description": "DEMO tile (simulated): truth behind the simulated patch",
        "seed": seed,
        "ufig_seed": inputs.seed,
        "galaxy_model": inputs.galaxy_model,
        "posterior_index": inputs.posterior_index,
        "observation_seed": OBSERVATION_SEED,
        "tract": geom.tract,
        "patch": list(geom.patch),
        "size": [geom.nx, geom.ny],
        "crval": list(geom.crval),
        "crpix": list(geom.crpix),
        "pixel_scale_arcsec": skymap.PIXEL_SCALE_ARCSEC,
        "zero_point": hsc_io.ZERO_POINT_AB,
        "exptime_per_visit_s": obs.EXPTIME_S,
        "n_visits_planned": int(ob.plan.n_visits),
        "n_frames": len(ob.frames.ccd),
        **ob.exposure,
        "gain_effective_ufig": inputs.gain,
        "n_exp_mean": inputs.n_exp,
        "saturation_adu": inputs.saturation_adu,
        "stars_mag_min_rendered": max(8.0, inputs.stars_mag_min),
        "sky_sigma_single_visit_adu": obs.SINGLE_VISIT_SIGMA,
        "sky_rms_input_median_adu": float(np.median(ob.bsig[covered])),
        "sky_rms_realised_median_adu": float(np.median(ob.rms[covered])),
        "lanczos_rms_factor": float(np.sqrt((lanczos_kernel() ** 2).sum())),
        "fraction_no_data": float(ob.nodata.mean()),
        "psf_fwhm_arcsec_median": float(np.median(fwhm)),
        "psf_fwhm_arcsec_min": float(fwhm.min()),
        "psf_fwhm_arcsec_max": float(fwhm.max()),
        "psf_ellipticity_median": float(np.median(ell)),
        "psf_beta": list(demo_psf.PSF_BETAS),
        **counts,
        "files": {**names, "truth": TRUTH_FILES},
    }


def _write_archive_csvs(out: Path, names: dict, geom, ob: _Observation) -> None:
    """Frame CSV (seeing of each visit's PSF at the CCD centre) and mosaic CSV
    (median coadd PSF)."""
    ccds = obs.hsc_ccds()[ob.frames.ccd]
    seeing = demo_psf.psf_on_focal_plane(
        ob.visit_psf, ob.frames.visit_row, ccds[:, 0], ccds[:, 1],
        ob.plan.pa_deg[ob.frames.visit_row],
    )["fwhm"]  # fmt: skip
    demo_files.write_frame_csv(out / names["frames"], ob.plan, ob.frames, seeing)
    covered = ob.cpsf.covered
    e1 = float(np.median(ob.cpsf.params["e1"][covered]))
    e2 = float(np.median(ob.cpsf.params["e2"][covered]))
    fwhm = float(np.median(ob.cpsf.params["fwhm"][covered]))
    demo_files.write_coadd_csv(out / names["coadd"], geom, fwhm, e1, e2)
