"""Build an independent DEMO tile (simulated): a GalSim forward model of HSC.

The ordinary demo tile (:mod:`hscsim_utils.demo.build`) is rendered by ufig with
the simulation's own PSF family and noise convention, so realism metrics on it
test plumbing only. This builder writes the same set of files in the same formats
(calexp with IMAGE/MASK/VARIANCE, the archive's frame and mosaic CSV files,
Besancon header + FITS, Gaia VOTable, ``truth/`` and ``tile.yaml``) from a model
of the observation that shares nothing with the simulation's rendering:

- observing history (:mod:`hscsim_utils.demo.observation`): visits, CCD frames
  and exact coverage maps of the visit plan, fixed per preset;
- PSF (:mod:`hscsim_utils.demo.galsim_psf`): Kolmogorov x ``galsim.OpticalPSF``
  per visit with aberrations varying over the focal plane; the coadd PSF is the
  weighted sum of the covering visits' PSFs; truth measured on its images;
- sky (:mod:`hscsim_utils.demo.galsim_scene`): GalSBI galaxies (galsbi's
  sampler only, posterior sample 1, own seed) drawn as GalSim Sersic profiles,
  Gaia stars at their positions plus a Besancon model draw, bright-star wings;
- detector and coadd (:mod:`hscsim_utils.demo.galsim_observation`): electrons,
  Poisson noise of sky and sources per visit (grouped by sub-pixel phase),
  read-out, saturation with bleeding along x, Lanczos-3 resampling, weighted
  coadd; VARIANCE and effective gain follow from that process.

Presets (visits of 270 s; single-visit noise of the UD design of
:mod:`hscsim_utils.demo.observation`, Aihara et al. 2018a, PASJ 70, S4):

- ``"ud"``: 150 visits (PDR3 delivered ~80% of the planned UltraDeep time,
  Aihara et al. 2022), circular 5-point dithers, atmospheric FWHM median 0.60",
  sigma(ln) 0.15 (measured visit PSFs: median ~0.6", the HSC-SSP i band,
  Aihara et al. 2018b, 2022), as the real UD tile;
- ``"deep"``: 22 visits, the Deep layer's i band as designed (126 min, Aihara
  et al. 2018a) at PDR3's ~80%, seeing median 0.62" (sigma(ln) 0.18).

Masks: NO_DATA where no visit covers a pixel, SAT from the visits' saturation,
BRIGHT_OBJECT around Gaia stars with G < 17.5 with the HSC-SSP radius law
(Coupon et al. 2018, PASJ 70, S7), as the ordinary demo.

``truth/truth.json`` records the generator, its settings and the versions of
GalSim, galsbi and numpy. Everything written says DEMO (simulated); the file
names are those of the real inputs, which the pipeline expects.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_dir, atomic_path, write_json
from hscsim_utils.data import provision
from hscsim_utils.demo import files as demo_files
from hscsim_utils.demo import galsim_observation as gobs
from hscsim_utils.demo import galsim_psf as gpsf
from hscsim_utils.demo import galsim_scene as gscene
from hscsim_utils.demo import observation as obs
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap

__all__ = [
    "PRESETS", "Preset", "build_independent_demo_tile", "independent_tile_name",
    "observing_history",
]  # fmt: skip

FILTER_NAME = "HSC-I2"
GENERATOR = "hscsim_utils.demo.independent (GalSim forward model)"
LABEL = "DEMO tile (simulated, independent GalSim model)"
BRIGHT_OBJECT_G = 17.5
BRIGHT_STAR_BIT, NO_DATA_FLAG = 2, 4  # ufig flag bits of the truth mask
STAR_MARGIN_PX = 64


@dataclass(frozen=True)
class Preset:
    """Depth, pointing and seeing of a simulated layer."""

    name: str
    n_visits: int
    seeing: gpsf.SeeingModel
    observation_seed: int
    pointing: tuple[float, float]  # dither centre (RA, Dec in deg)


#: ``ud``: 240 visits of 270 s around a pointing 0.2 deg from the patch centre give
#: 50,800-64,500 s (median 58,900 s) over the whole patch, the range of the real
#: UD-COSMOS patch of the tutorial (48,000-64,500 s), so its background rms is
#: that patch's too. ``deep``: 22 visits around a pointing whose footprint edge
#: crosses the patch (an exposure gradient and a NO_DATA corner).
PRESETS = {
    "ud": Preset("ud", 240, gpsf.SeeingModel(0.60, 0.15), 60221409,
                 obs.UD_PATCH_POINTING),
    "deep": Preset("deep", 22, gpsf.SeeingModel(0.62, 0.18), 60221410,
                   obs.UD_SXDS_CENTER),
}  # fmt: skip


def build_independent_demo_tile(
    out_dir: str | Path,
    size: tuple[int, int] = (4200, 4200),
    seed: int = 20240611,
    centre: tuple[float, float] | None = None,
    preset: str = "ud",
    *,
    knots: bool = False,
    workers: int | None = None,
) -> Path:
    """Build the independent DEMO tile into ``out_dir`` (replaced atomically).

    ``size`` pixels of patch 8523-4,2 around its centre or ``centre`` (0-based
    pixel of the full patch); ``seed`` draws galaxies, stars and noise (the
    observing history is fixed per ``preset``, "ud" or "deep"); ``knots`` adds
    star-forming knots to blue galaxies; ``workers`` processes draw PSFs and
    galaxies (default: up to 2). Returns the path of ``tile.yaml``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", f"must be a non-negative integer, got {seed!r}")
    if preset not in PRESETS:
        raise InputError("preset", f"must be one of {sorted(PRESETS)}, got {preset!r}")
    geom = obs.demo_geometry(demo_files.parse_size(size), centre=centre)
    n_workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as tmp:
        _build(tmp, geom, int(seed), PRESETS[preset], bool(knots), n_workers)
    return out_dir / "tile.yaml"


def independent_tile_name(geom: skymap.PatchGeometry, seed: int, preset: str) -> str:
    """e.g. ``demo-galsim-ud-8523-402-1000x1000-seed7`` (corner when not centred)."""
    return demo_files.tile_name(geom, seed, kind=f"demo-galsim-{preset}")


@dataclass
class History:
    """The fixed observing history of a preset on a tile."""

    plan: obs.VisitPlan
    frames: obs.FrameTable
    cov: obs.CoverageMaps
    used: np.ndarray  # plan rows with a frame on the tile
    psfs: gpsf.VisitPSFs
    phot: gobs.VisitPhotometry


def observing_history(geom: skymap.PatchGeometry, preset: Preset) -> History:
    """Visits, frames, exact coverage, PSF and photometry of every visit."""
    plan = obs.plan_visits(
        np.random.default_rng(preset.observation_seed), preset.n_visits,
        preset.pointing,
    )  # fmt: skip
    frames = obs.overlapping_frames(plan, geom)
    cov = obs.coverage_maps(plan, geom, frames)
    hour_angle = np.random.default_rng([preset.observation_seed, 3]).uniform(
        -gobs.HOUR_ANGLE_MAX_H, gobs.HOUR_ANGLE_MAX_H, plan.n_visits
    )
    airmass, parallactic = gobs.hour_angle_geometry(hour_angle, plan.dec)
    psfs = gpsf.draw_visit_psfs(
        np.random.default_rng([preset.observation_seed, 1]), plan.n_visits,
        preset.seeing, parallactic,
    )  # fmt: skip
    phot = gobs.draw_visit_photometry(
        np.random.default_rng([preset.observation_seed, 2]), plan, frames, airmass
    )
    return History(plan, frames, cov, np.unique(frames.visit_row), psfs, phot)


class _Result:
    """The result of a call: made at once, or pending in a worker."""

    def __init__(self, value=None, pending=None) -> None:
        self._value, self._pending = value, pending

    def result(self):
        return self._value if self._pending is None else self._pending.get()


class _Workers:
    """Worker processes forked when created (before the large arrays exist, so
    that they stay small); ``workers <= 1`` runs every call at once instead."""

    def __init__(self, workers: int) -> None:
        self._pool = (
            multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
        )

    def submit(self, fn, *args) -> _Result:
        if self._pool is None:
            return _Result(value=fn(*args))
        return _Result(pending=self._pool.apply_async(fn, args))

    def close(self, cancel: bool = False) -> None:
        """Wait for the workers to finish, or stop them at once (``cancel``)."""
        if self._pool is not None:
            if cancel:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()


def _build(
    out: Path, geom: skymap.PatchGeometry, seed: int, preset: Preset, knots: bool,
    workers: int,
) -> None:  # fmt: skip
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    names = demo_files.file_names(geom)
    truth = out / "truth"
    truth.mkdir()
    rng_sky = np.random.default_rng([seed, 3])
    pool = _Workers(workers)
    try:
        hist = observing_history(geom, preset)
        lattice = gpsf.anchor_lattice(geom)
        ax, ay = lattice.points()
        anchor_jobs = gpsf.psf_jobs(hist.plan, geom, hist.used, ax, ay)
        anchor_futures = [
            pool.submit(gpsf.draw_psf_job, hist.psfs, j) for j in anchor_jobs
        ]
        lap("observation")
        stars_in = _write_star_inputs(out, geom, names)
        galaxies = gscene.sample_galaxies(geom, seed, knots=knots)
        model = stars_in["model"]
        stars = np.concatenate([
            gscene.gaia_stars(stars_in["gaia_all"], model, geom, STAR_MARGIN_PX),
            gscene.besancon_stars(model, stars_in["area"], geom, rng_sky,
                                  STAR_MARGIN_PX),
        ])  # fmt: skip
        lap("catalogues")
        # (n_used, n_anchors, 132, 132)
        images = np.stack([f.result() for f in anchor_futures])
        lap("visit PSFs")
        grid = _coadd_psf_grid(hist, geom, lattice, images)
        galaxy_futures = _submit_galaxies(pool, galaxies, grid["epsf"], seed, workers)
        # the frames' seeing (written last) after the galaxies
        frame_jobs = _frame_jobs(hist, geom)
        frame_futures = [
            pool.submit(gpsf.draw_psf_job, hist.psfs, j, True) for j, _ in frame_jobs
        ]
        grid.update(_measure_grid(grid["os"], grid["covered"]))
        del grid["os"]
        visit_seeing = _visit_seeing(images, lattice, geom)
        lap("coadd PSF truth")
        signal = np.zeros((geom.ny, geom.nx))
        stars = _draw_stars(signal, stars, hist, geom, lattice, images)
        for future in galaxy_futures:
            for _, stamp in future.result():
                _add_stamp(signal, stamp)
        del images
        lap("rendering")
        frame_seeing = np.empty(len(hist.frames.ccd))
        for (_, rows), future in zip(frame_jobs, frame_futures, strict=True):
            frame_seeing[rows] = future.result()
        lap("frame seeing")
    except BaseException:
        pool.close(cancel=True)
        raise
    pool.close()
    signal, sat = gobs.saturate(signal, hist.cov, hist.plan, hist.phot, hist.used)
    lap("saturation")
    grids = gobs.visit_grids(hist.plan, geom, hist.used)
    groups = gobs.group_visits(grids, hist.phot.weight, hist.used)
    noise = gobs.coadd_noise(
        signal, hist.cov, hist.plan, hist.phot, groups, grids, rng_sky.spawn(1)[0]
    )
    gain_eff = gobs.effective_gain(hist.cov, hist.plan, hist.phot, hist.used)
    lap("noise")
    nodata = hist.cov.invvar <= 0
    bright, gaia_query = _bright_object_mask(geom, stars_in["gaia_all"])
    mask = demo_files.mask_plane(nodata, bright, sat)
    image = signal.astype(np.float32)
    del signal
    image += noise.noise
    image[nodata] = np.nan
    variance = noise.variance
    variance[nodata] = np.nan
    hsc_io.write_calexp(
        out / names["calexp"], image, mask, variance, geom.header(), band=FILTER_NAME,
        primary_cards={"OBJECT": LABEL, "TRACT": geom.tract,
                       "PATCH": f"{geom.patch[0]},{geom.patch[1]}"},
    )  # fmt: skip
    demo_stars.write_gaia_votable(out / names["gaia"], gaia_query)
    demo_files.write_frame_csv(
        out / names["frames"], hist.plan, hist.frames, frame_seeing
    )
    cov = grid["covered"]
    demo_files.write_coadd_csv(
        out / names["coadd"], geom, float(np.median(grid["fwhm"][cov])),
        float(np.median(grid["e1"][cov])), float(np.median(grid["e2"][cov])),
    )  # fmt: skip
    _write_mask_truth(truth / "mask.h5", nodata, bright, mask)
    rms_sky = np.sqrt(noise.variance_sky)
    _write_sysmaps(truth / "sysmaps.h5", hist.cov, rms_sky, gain_eff)
    _write_psf_truth(truth / "psf_model.h5", grid, hist, visit_seeing)
    n_gal = _write_table(truth / "galaxies.h5", _with_sky(galaxies, geom), "galaxies")
    n_star = _write_table(truth / "stars.h5", _with_sky(stars, geom), "stars")
    lap("writing")
    covered = ~nodata
    phot, used = hist.phot, hist.used
    summary = {
        "description": f"{LABEL}: truth behind the simulated patch",
        "generator": {
            "name": GENERATOR,
            "versions": {p: version(p) for p in ("galsim", "galsbi", "numpy")},
            "preset": preset.name, "seed": seed, "knots": knots,
            "galsbi_model": gscene.GALAXY_MODEL,
            "galsbi_posterior_index": gscene.POSTERIOR_INDEX,
            "galsbi_seed": gscene.galsbi_seed(seed),
            "observation_seed": preset.observation_seed,
            "seconds": timings,
        },
        "tract": geom.tract, "patch": list(geom.patch), "size": [geom.nx, geom.ny],
        "crval": list(geom.crval), "crpix": list(geom.crpix),
        "pixel_scale_arcsec": skymap.PIXEL_SCALE_ARCSEC,
        "zero_point": hsc_io.ZERO_POINT_AB, "exptime_per_visit_s": obs.EXPTIME_S,
        "n_visits_planned": int(hist.plan.n_visits), "n_visits_used": len(hist.used),
        "n_frames": len(hist.frames.ccd), "n_noise_groups": noise.n_groups,
        "expt_max_s": int(hist.cov.expt.max()),
        "expt_median_covered_s": _median(hist.cov.expt[covered]),
        "fraction_no_data": float(nodata.mean()),
        "electrons_per_adu_visit_median": float(np.median(phot.k_e_per_adu[used])),
        "sky_electrons_visit_median": float(np.median(phot.sky_e[used])),
        "sky_mag_arcsec2_median": _sky_brightness(hist),
        "effective_gain_median_e_per_adu": _median(gain_eff[covered]),
        "sky_rms_median_adu": _median(rms_sky[covered]),
        "full_well_e": gobs.FULL_WELL_E,
        "fraction_sat": float(sat.mean()),
        "fraction_bright_object": float(bright.mean()),
        "visit_seeing_arcsec": _percentiles(visit_seeing[np.isfinite(visit_seeing)]),
        "frame_seeing_arcsec": _percentiles(frame_seeing),
        "psf_fwhm_arcsec": _percentiles(grid["fwhm"][grid["covered"]]),
        "psf_ellipticity": _percentiles(
            np.hypot(grid["e1"], grid["e2"])[grid["covered"]]
        ),
        "n_galaxies": n_gal, "n_stars": n_star,
        "n_gaia_in_query": len(gaia_query),
        "files": {**names, "truth": _TRUTH_FILES},
    }  # fmt: skip
    write_json(truth / "truth.json", summary)
    demo_files.write_tile_yaml(
        out, names, independent_tile_name(geom, seed, preset.name), truth
    )


_TRUTH_FILES = {
    "sysmaps.h5": "map_bsig (1/sqrt(sum w)), map_rms_realised (sky noise rms of the "
    "image), map_expt, map_nexp, map_gain, map_gain_amp, map_invvar_weight, "
    "map_pointings, map_gain_effective (e- per coadd ADU)",
    "psf_model.h5": "grid_psf (FWHM in pixels, e1, e2, flux ratio), grid/* (FWHM "
    "in arcsec, effective PSF images), visits",
    "mask.h5": "mask (ufig flags 2 bright star, 4 no data), mask_plane (MASK HDU)",
    "galaxies.h5": "data: drawn galaxies (X_IMAGE, Y_IMAGE FITS, mag i, r50, n, e)",
    "stars.h5": "data: drawn stars (X_IMAGE, Y_IMAGE FITS, mag i, Gaia id and G)",
}


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else 0.0


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    q = np.percentile(values, [0, 5, 50, 95, 100])
    return dict(zip(("min", "p05", "median", "p95", "max"), map(float, q), strict=True))


def _sky_brightness(hist: History) -> float:
    """Median sky surface brightness (mag/arcsec^2) implied by the visits."""
    u = hist.used
    rate = hist.phot.sky_e[u] / obs.EXPTIME_S / skymap.PIXEL_SCALE_ARCSEC**2
    return float(np.median(hist.phot.zp_e[u] - 2.5 * np.log10(rate)))


# ------------------------------------------------------------------ PSF truth


def _frame_jobs(hist: History, geom) -> list[tuple[gpsf.PSFJob, np.ndarray]]:
    """One job per visit: its PSF at the centres of its CCD frames."""
    ccds = obs.hsc_ccds()
    jobs = []
    for v in hist.used:
        rows = np.nonzero(hist.frames.visit_row == v)[0]
        g_inv = np.linalg.inv(hist.plan.focal_matrix(int(v), geom))
        uv, jac = [], []
        for r in rows:
            u, w = ccds[hist.frames.ccd[r], :2]
            h = g_inv @ np.array([u, w, 1.0])
            point, j = gpsf.focal_jacobian(
                hist.plan, geom, int(v), h[0] / h[2], h[1] / h[2]
            )
            uv.append(point)
            jac.append(j)
        jobs.append((gpsf.PSFJob(int(v), np.array(uv), np.array(jac)), rows))
    return jobs


def _visit_weights(hist: History, geom, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, n_used) coadd weight of each used visit at FITS points (x, y)."""
    _, _, hit = obs.focal_positions(hist.plan, geom, x, y)
    hit = hit[hist.used].T
    return np.where(hit >= 0, hist.phot.weight[hist.used][None, :], 0.0)


def _coadd_psf_grid(hist: History, geom, lattice, images) -> dict:
    """The coadd PSF on ufig's 100-pixel grid: oversampled images, effective PSF
    images (uncovered points take the nearest covered point's, for drawing)."""
    gx, gy = gpsf.grid_points(geom)
    w = _visit_weights(hist, geom, gx.ravel(), gy.ravel())
    covered = w.sum(axis=1) > 0
    if not covered.any():
        raise InputError("size", "no visit covers any PSF grid point of the tile")
    os_images = gpsf.coadd_images(images, lattice, gx.ravel(), gy.ravel(), w)
    epsf = gpsf.effective_psf(os_images)
    idx = np.nonzero(covered)[0]
    nearest = idx[
        np.argmin(
            (gx.ravel()[:, None] - gx.ravel()[idx]) ** 2
            + (gy.ravel()[:, None] - gy.ravel()[idx]) ** 2,
            axis=1,
        )
    ]
    epsf = epsf[nearest].reshape(*gx.shape, gpsf.STAMP_PIX, gpsf.STAMP_PIX)
    return {"x": gx, "y": gy, "covered": covered.reshape(gx.shape), "os": os_images,
            "epsf": epsf.astype(np.float32)}  # fmt: skip


def _measure_grid(os_images: np.ndarray, covered: np.ndarray) -> dict:
    shape = covered.shape
    params = {
        k: np.full(covered.size, np.nan) for k in ("fwhm", "e1", "e2", "flux_ratio")
    }
    for i in np.nonzero(covered.ravel())[0]:
        m = gpsf.measure_psf(os_images[i].astype(np.float64))
        params["fwhm"][i], params["e1"][i] = m.fwhm_arcsec, m.e1
        params["e2"][i], params["flux_ratio"][i] = m.e2, m.flux_ratio
    return {k: v.reshape(shape) for k, v in params.items()}


def _visit_seeing(images: np.ndarray, lattice, geom) -> np.ndarray:
    """Measured FWHM (arcsec) of every used visit's PSF at the tile centre."""
    cx, cy = np.array([(geom.nx + 1) / 2]), np.array([(geom.ny + 1) / 2])
    b = lattice.weights(cx, cy)[0]
    return np.array([gpsf.half_max_fwhm(np.tensordot(b, im, axes=1)) for im in images])


# ------------------------------------------------------------------ rendering


def _add_stamp(image: np.ndarray, stamp: gscene.Stamp) -> None:
    """Add a stamp (lower-left FITS pixel x0, y0) to the image, clipped."""
    ny, nx = image.shape
    h, w = stamp.array.shape
    x0, y0 = stamp.x0 - 1, stamp.y0 - 1
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + w, nx), min(y0 + h, ny)
    if xa >= xb or ya >= yb:
        return
    image[ya:yb, xa:xb] += stamp.array[ya - y0 : yb - y0, xa - x0 : xb - x0]


def _submit_galaxies(pool, cat: np.ndarray, epsf_grid, seed: int, workers: int):
    """Galaxy chunks sorted by PSF cell and Sersic index (GalSim caches both)."""
    step = gpsf.GRID_STEP
    cell = np.round((cat["Y_IMAGE"] - 0.5) / step) * 1000 + np.round(
        (cat["X_IMAGE"] - 0.5) / step
    )
    order = np.lexsort((cat["sersic_n_drawn"], cell))
    n_chunks = max(1, 4 * max(workers, 1))
    return [
        pool.submit(gscene.draw_galaxy_chunk, cat, idx, epsf_grid, step, seed)
        for idx in np.array_split(order, n_chunks)
        if len(idx)
    ]


def _draw_stars(signal, stars, hist: History, geom, lattice, images) -> np.ndarray:
    """Draw every star covered by a visit; returns the drawn stars."""
    if len(stars) == 0:
        return stars
    w = _visit_weights(hist, geom, stars["X_IMAGE"], stars["Y_IMAGE"])
    keep = w.sum(axis=1) > 0
    stars, w = stars[keep], w[keep]
    os_images = gpsf.coadd_images(
        images, lattice, stars["X_IMAGE"], stars["Y_IMAGE"], w
    )
    angles = hist.psfs.spike_angle_deg[hist.used]
    for star, os_psf, weights in zip(stars, os_images, w, strict=True):
        for stamp in gscene.draw_star(
            float(star["mag"]), float(star["X_IMAGE"]), float(star["Y_IMAGE"]),
            os_psf.astype(np.float64), angles, weights,
        ):  # fmt: skip
            _add_stamp(signal, stamp)
    return stars


# ------------------------------------------------------------------ inputs, masks


def _write_star_inputs(out: Path, geom, names: dict) -> dict:
    """Besancon files (what stage 04 reads) and the model and Gaia catalogues."""
    gaia_all = demo_stars.load_gaia(provision.ufig_test_resource("gaiadr3.cat"))
    model, area = demo_stars.load_besancon_pixel(
        provision.ufig_test_resource("besancon_HSC.h5")
    )
    demo_stars.write_besancon(
        out / names["besancon_header"], out / names["besancon_fits"], model, area
    )
    return {"gaia_all": gaia_all, "model": model, "area": area}


def _bright_object_mask(geom, gaia_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BRIGHT_OBJECT discs of the Gaia stars of the VizieR-style query; the query."""
    wcs = geom.wcs()
    centre = wcs.all_pix2world([(geom.nx + 1) / 2], [(geom.ny + 1) / 2], 1)
    radius = math.hypot(geom.nx, geom.ny) * skymap.PIXEL_SCALE_ARCSEC / 3600.0
    gaia = demo_stars.gaia_in_cone(gaia_all, centre[0][0], centre[1][0], radius)
    bright = gaia[gaia["phot_g_mean_mag"] < BRIGHT_OBJECT_G]
    x, y = wcs.all_world2pix(bright["ra"], bright["dec"], 1)
    r = demo_stars.bright_star_radius_arcsec(bright["phot_g_mean_mag"])
    mask = demo_stars.bright_star_mask(
        (geom.ny, geom.nx), x, y, r / skymap.PIXEL_SCALE_ARCSEC
    )
    return mask, gaia


def _write_mask_truth(path: Path, nodata, bright, mask) -> None:
    flags = (bright.astype(np.int32) * BRIGHT_STAR_BIT) | (
        nodata.astype(np.int32) * NO_DATA_FLAG
    )
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        ds = fh.create_dataset("mask", data=flags, compression="lzf")
        ds.attrs["description"] = "ufig flag bits: 2 bright star, 4 survey mask"
        ds = fh.create_dataset("mask_plane", data=mask, compression="lzf")
        ds.attrs["description"] = "the calexp MASK plane (PDR3 MP_* bits)"
        fh.attrs["description"] = f"{LABEL}: true masks"


def _write_sysmaps(path: Path, cov: obs.CoverageMaps, rms_sky, gain_eff) -> None:
    words = np.dtype([(f"bit{i + 1}", np.uint64) for i in range(obs.N_BIT_WORDS)])
    pointings = cov.bits.view(words)[..., 0]
    bsig = np.where(cov.invvar > 0, 1 / np.sqrt(np.maximum(cov.invvar, 1e-300)), 0.0)
    datasets = {
        "map_bsig": (bsig.astype(np.float32),
                     "coadd rms before resampling, 1/sqrt(sum of weights) (ADU)"),
        "map_rms_realised": (rms_sky.astype(np.float32),
                             "sky noise rms of the image, after resampling (ADU)"),
        "map_expt": (cov.expt, "exposure time (s), uint32"),
        "map_nexp": (cov.nexp, "number of CCD frames"),
        "map_gain": (cov.gain_sum, "sum of frame-mean gains (e-/ADU)"),
        "map_gain_amp": (cov.gain_amp_sum, "sum of amplifier gains (e-/ADU)"),
        "map_invvar_weight": (cov.invvar.astype(np.float32),
                              "sum of coadd weights 1/sigma_visit^2"),
        "map_gain_effective": (gain_eff,
                               "electrons per coadd ADU of the source photon noise"),
        "map_pointings": (pointings, "visit bitmaps, visits 0-63 in bit1, ..."),
    }  # fmt: skip
    demo_files.write_truth_sysmaps(path, datasets, cov.visit_ids, LABEL)


def _write_psf_truth(path: Path, grid: dict, hist: History, visit_seeing) -> None:
    """``grid_psf`` (ufig's layout: FITS positions, FWHM in pixels) and more."""
    names = ["X_IMAGE", "Y_IMAGE", "psf_fwhm_ipt", "psf_flux_ratio_ipt",
             "psf_e1_ipt", "psf_e2_ipt"]  # fmt: skip
    table = np.empty(grid["x"].size, dtype=[(n, np.float32) for n in names])
    table["X_IMAGE"], table["Y_IMAGE"] = grid["x"].ravel(), grid["y"].ravel()
    table["psf_fwhm_ipt"] = grid["fwhm"].ravel() / skymap.PIXEL_SCALE_ARCSEC
    table["psf_flux_ratio_ipt"] = grid["flux_ratio"].ravel()
    table["psf_e1_ipt"], table["psf_e2_ipt"] = grid["e1"].ravel(), grid["e2"].ravel()
    u = hist.used
    psfs, phot, plan = hist.psfs, hist.phot, hist.plan
    visits = {
        "visit": plan.visit[u], "pa_deg": plan.pa_deg[u],
        "atm_fwhm_arcsec": psfs.atm_fwhm[u], "seeing_centre_arcsec": visit_seeing,
        "atm_g1": psfs.atm_shear[u, 0], "atm_g2": psfs.atm_shear[u, 1],
        "defocus": psfs.defocus[u], "astig_z6": psfs.astig[u, 0],
        "astig_z5": psfs.astig[u, 1], "coma_z8": psfs.coma[u, 0],
        "coma_z7": psfs.coma[u, 1], "spike_angle_deg": psfs.spike_angle_deg[u],
        "weight": phot.weight[u], "electrons_per_adu": phot.k_e_per_adu[u],
        "sky_electrons": phot.sky_e[u], "read_noise_e": phot.read_noise_e[u],
        "airmass": phot.airmass[u],
    }  # fmt: skip
    rec = np.empty(len(u), dtype=[(k, np.asarray(v).dtype) for k, v in visits.items()])
    for k, v in visits.items():
        rec[k] = v
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("grid_psf", data=table)
        for name in ("fwhm", "e1", "e2", "flux_ratio"):
            ds = fh.create_dataset(f"grid/{name}", data=grid[name].astype(np.float32))
            ds.attrs["unit"] = "arcsec" if name == "fwhm" else ""
        fh.create_dataset("grid/x_fits", data=grid["x"][0])
        fh.create_dataset("grid/y_fits", data=grid["y"][:, 0])
        fh.create_dataset("grid/covered", data=grid["covered"])
        ds = fh.create_dataset("grid/epsf", data=grid["epsf"], compression="gzip")
        ds.attrs["description"] = (
            "true coadd PSF with the pixel response, 33 x 33 coadd pixels, unit sum"
        )
        fh.create_dataset("visits", data=rec)
        fh.attrs["description"] = (
            f"{LABEL}: true coadd PSF (GalSim Kolmogorov x OpticalPSF per visit, "
            "weighted sum); FWHM, e1, e2, flux ratio measured on its images"
        )
        fh.attrs["measurement"] = (
            "e1, e2: galsim.hsm adaptive moments (distortion) of the pixel-free 4x "
            "oversampled image; FWHM: 2 sqrt(A/pi) of the half-maximum isophote; "
            "flux_ratio: least-squares beta=2 weight of a two-Moffat (2, 5) model "
            "with that FWHM and shape"
        )


def _with_sky(cat: np.ndarray, geom) -> np.ndarray:
    """Append ra, dec of the FITS positions."""
    ra, dec = geom.wcs().all_pix2world(cat["X_IMAGE"], cat["Y_IMAGE"], 1)
    out = np.empty(len(cat), dtype=cat.dtype.descr + [("ra", "f8"), ("dec", "f8")])
    for name in cat.dtype.names:
        out[name] = cat[name]
    out["ra"], out["dec"] = ra, dec
    return out


def _write_table(path: Path, table: np.ndarray, what: str) -> int:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        ds = fh.create_dataset("data", data=table, compression="lzf")
        ds.attrs["description"] = f"{LABEL}: drawn {what} (X_IMAGE, Y_IMAGE 1-based)"
    return len(table)
