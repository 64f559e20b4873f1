"""Build an independent DEMO tile (simulated): a GalSim forward model of HSC.

The ordinary demo tile (:mod:`hscsim_utils.demo.build`) is rendered by ufig with
the simulation's own PSF family and noise convention, so realism metrics on it
test plumbing only. This builder writes the same set of files in the same formats
(calexp with IMAGE/MASK/VARIANCE, the archive's frame and mosaic CSV files,
Besancon header + FITS, Gaia VOTable, ``truth/`` and ``tile.yaml``) from a model
of the observation that shares nothing with the simulation's rendering:

- observing history (:mod:`hscsim_utils.demo.observation`): visits, CCD frames
  and exact coverage maps of the visit plan, fixed per preset and band;
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

- ``"ud"``: 240 visits (PDR3 delivered ~80% of the planned UltraDeep time,
  Aihara et al. 2022), circular 5-point dithers, atmospheric FWHM median 0.60",
  sigma(ln) 0.15 (measured visit PSFs: median ~0.6", the HSC-SSP i band,
  Aihara et al. 2018b, 2022), as the real UD tile;
- ``"deep"``: 22 visits, the Deep layer's i band as designed (126 min, Aihara
  et al. 2018a) at PDR3's ~80%, seeing median 0.62" (sigma(ln) 0.18).

Bands: any of g r i z y (``bands``, default i). The galaxies and stars are drawn
once, with every band's magnitude; each band then has its own observation
(visits in proportion to the layer's design time, seeing, zero point, sky,
noise seed: :mod:`hscsim_utils.demo.galsim_bands`), rendered and written one
band after the other (the worker processes serve them all, drawing the next
band's visit PSFs while the main process makes this band's noise). The i band of a
tile of several bands is, pixel for pixel, the i-band tile of the same seed.

Masks: NO_DATA where no visit covers a pixel, SAT from the visits' saturation,
BRIGHT_OBJECT around Gaia stars with G < 17.5 with the HSC-SSP radius law
(Coupon et al. 2018, PASJ 70, S7), as the ordinary demo (the same in every
band).

Truth: ``truth/`` of an i-band tile holds its files and ``truth.json`` (the
generator, its settings and the versions of GalSim, galsbi and numpy); a tile
of several bands has those per band in ``truth/<band>/`` (catalogues with
``mag`` the band's magnitude and ``mag_g`` ... of every band) and a
``truth/truth.json`` over all bands, and its ``tile.yaml`` the multi-band form
(detection band i when present, else the first band). Everything written says
DEMO (simulated); the file names are those of the real inputs, which the
pipeline expects.
"""

from __future__ import annotations

import dataclasses
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
from hscsim_utils.bands import HSC_BANDS, parse_bands
from hscsim_utils.data import provision
from hscsim_utils.demo import files as demo_files
from hscsim_utils.demo import galsim_bands as gbands
from hscsim_utils.demo import galsim_observation as gobs
from hscsim_utils.demo import galsim_psf as gpsf
from hscsim_utils.demo import galsim_scene as gscene
from hscsim_utils.demo import observation as obs
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap

__all__ = [
    "PRESETS", "Preset", "build_independent_demo_tile", "detection_band",
    "independent_tile_name", "observing_history",
]  # fmt: skip

GENERATOR = "hscsim_utils.demo.independent (GalSim forward model)"
LABEL = "DEMO tile (simulated, independent GalSim model)"
BRIGHT_OBJECT_G = 17.5
BRIGHT_STAR_BIT, NO_DATA_FLAG = 2, 4  # ufig flag bits of the truth mask
STAR_MARGIN_PX = 64


@dataclass(frozen=True)
class Preset:
    """Depth, pointing and seeing of a simulated layer (those of its i band;
    the other bands' follow from them, :meth:`band`)."""

    name: str
    n_visits: int
    seeing: gpsf.SeeingModel
    observation_seed: int
    pointing: tuple[float, float]  # dither centre (RA, Dec in deg)
    design_min: dict[str, float]  # the layer's design time per band

    def band(self, band: str) -> gbands.BandObservation:
        """How ``band`` is observed in this layer."""
        return gbands.band_observation(
            band, self.n_visits, self.seeing, self.observation_seed, self.design_min
        )


#: ``ud``: 240 visits of 270 s around a pointing 0.2 deg from the patch centre give
#: 50,800-64,500 s (median 58,900 s) over the whole patch, the range of the real
#: UD-COSMOS patch of the tutorial (48,000-64,500 s), so its background rms is
#: that patch's too. ``deep``: 22 visits around a pointing whose footprint edge
#: crosses the patch (an exposure gradient and a NO_DATA corner).
PRESETS = {
    "ud": Preset("ud", 240, gpsf.SeeingModel(0.60, 0.15), 60221409,
                 obs.UD_PATCH_POINTING, gbands.UD_DESIGN_MIN),
    "deep": Preset("deep", 22, gpsf.SeeingModel(0.62, 0.18), 60221410,
                   obs.UD_SXDS_CENTER, gbands.DEEP_DESIGN_MIN),
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
    bands: str | tuple[str, ...] = ("i",),
) -> Path:
    """Build the independent DEMO tile into ``out_dir`` (replaced atomically).

    ``size`` pixels of patch 8523-4,2 around its centre or ``centre`` (0-based
    pixel of the full patch); ``seed`` draws galaxies, stars and noise (the
    observing history is fixed per ``preset``, "ud" or "deep", and band);
    ``bands`` any of g r i z y (e.g. "grizy"; kept in that order); ``knots``
    adds star-forming knots to blue galaxies; ``workers`` processes draw PSFs
    and galaxies (default: up to 2). Returns the path of ``tile.yaml``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", f"must be a non-negative integer, got {seed!r}")
    if preset not in PRESETS:
        raise InputError("preset", f"must be one of {sorted(PRESETS)}, got {preset!r}")
    band_list = parse_bands(bands)
    geom = obs.demo_geometry(demo_files.parse_size(size), centre=centre)
    n_workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as tmp:
        _build(tmp, geom, int(seed), PRESETS[preset], bool(knots), n_workers,
               band_list)  # fmt: skip
    return out_dir / "tile.yaml"


def detection_band(bands: tuple[str, ...]) -> str:
    """The detection band of a tile of ``bands``: i when there, else the first."""
    return "i" if "i" in bands else bands[0]


def independent_tile_name(
    geom: skymap.PatchGeometry, seed: int, preset: str, bands: tuple[str, ...] = ("i",)
) -> str:
    """e.g. ``demo-galsim-ud-8523-402-1000x1000-seed7`` (corner when not centred;
    ``demo-galsim-ud-grizy-...`` for bands other than i alone)."""
    kind = f"demo-galsim-{preset}"
    if tuple(bands) != ("i",):
        kind += "-" + "".join(bands)
    return demo_files.tile_name(geom, seed, kind=kind)


@dataclass
class History:
    """The fixed observing history of a preset's band on a tile."""

    plan: obs.VisitPlan
    frames: obs.FrameTable
    cov: obs.CoverageMaps
    used: np.ndarray  # plan rows with a frame on the tile
    psfs: gpsf.VisitPSFs
    phot: gobs.VisitPhotometry
    observation: gbands.BandObservation


def camera_gains(preset: Preset) -> np.ndarray:
    """The amplifier gains of the camera: those the i band's visit plan draws."""
    rng = np.random.default_rng(preset.observation_seed)
    return obs.plan_visits(rng, preset.n_visits, preset.pointing).ccd_gains


def observing_history(
    geom: skymap.PatchGeometry, preset: Preset, band: str = "i"
) -> History:
    """Visits, frames, exact coverage, PSF and photometry of every visit."""
    ob = preset.band(band)
    seed = ob.observation_seed
    plan = obs.plan_visits(
        np.random.default_rng(seed), ob.n_visits, preset.pointing, ob.sky_sigma,
        ob.first_visit,
    )  # fmt: skip
    if band != "i":
        plan = dataclasses.replace(plan, ccd_gains=camera_gains(preset))
    frames = obs.overlapping_frames(plan, geom)
    cov = obs.coverage_maps(plan, geom, frames)
    hour_angle = np.random.default_rng([seed, 3]).uniform(
        -gobs.HOUR_ANGLE_MAX_H, gobs.HOUR_ANGLE_MAX_H, plan.n_visits
    )
    airmass, parallactic = gobs.hour_angle_geometry(hour_angle, plan.dec)
    psfs = gpsf.draw_visit_psfs(
        np.random.default_rng([seed, 1]), plan.n_visits, ob.seeing, parallactic
    )
    phot = gobs.draw_visit_photometry(
        np.random.default_rng([seed, 2]), plan, frames, airmass, ob.zp_electrons,
        ob.extinction,
    )  # fmt: skip
    return History(plan, frames, cov, np.unique(frames.visit_row), psfs, phot, ob)


def noise_rng(seed: int, band: str) -> np.random.Generator:
    """The noise stream of ``band``: the i band keeps the first child of the
    tile's sky stream ``[seed, 3]`` (that of the i-band tiles), the other bands
    take children of their own."""
    stream = 0 if band == "i" else 1 + HSC_BANDS.index(band)
    return np.random.default_rng(np.random.SeedSequence([seed, 3], spawn_key=(stream,)))


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
        """Wait for the workers to finish, or stop them at once (``cancel``);
        nothing once closed."""
        if self._pool is not None:
            if cancel:
                self._pool.terminate()
            else:
                self._pool.close()
            self._pool.join()
            self._pool = None


class _Clock:
    """Seconds of the named steps since the last :meth:`take`."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 2)
        self._last = now

    def take(self) -> dict[str, float]:
        out, self.timings = self.timings, {}
        return out


@dataclass
class _Scene:
    """What every band shares: catalogues (every band's magnitudes), the Gaia
    query and the BRIGHT_OBJECT mask."""

    galaxies: np.ndarray
    stars: np.ndarray
    gaia_query: np.ndarray
    bright: np.ndarray


@dataclass
class _Band:
    """One band under way: its history and, once rendered, its products."""

    hist: History
    lattice: gpsf.AnchorLattice
    anchor_futures: list
    grid: dict | None = None
    signal: np.ndarray | None = None
    galaxies: np.ndarray | None = None
    stars: np.ndarray | None = None
    visit_seeing: np.ndarray | None = None
    frame_seeing: np.ndarray | None = None


def _build(
    out: Path, geom: skymap.PatchGeometry, seed: int, preset: Preset, knots: bool,
    workers: int, bands: tuple[str, ...],
) -> None:  # fmt: skip
    clock = _Clock()
    several = bands != ("i",)
    names = demo_files.file_names(geom)
    truth = out / "truth"
    truth.mkdir()
    pool = _Workers(workers)
    summaries = {}
    try:
        state = _start_band(pool, geom, preset, bands[0])
        clock.lap("observation")
        scene = _scene(out, geom, seed, knots, bands, names)
        clock.lap("catalogues")
        for k, band in enumerate(bands):
            _render_band(pool, state, scene, geom, seed, workers, clock)
            # the workers draw the next band's visit PSFs during this band's noise
            following = None
            if k + 1 < len(bands):
                following = _start_band(pool, geom, preset, bands[k + 1])
                clock.lap("next band's observation")
            else:
                pool.close()
            where = truth / band if several else truth
            summaries[band] = _finish_band(
                out, where, state, scene, geom, seed, preset, knots, clock, several
            )
            state = following
    except BaseException:
        pool.close(cancel=True)
        raise
    tile_name = independent_tile_name(geom, seed, preset.name, bands)
    if not several:
        demo_files.write_tile_yaml(out, names, tile_name, truth)
        return
    _write_bands_summary(truth, summaries, geom, seed, preset, knots, bands)
    demo_files.write_bands_tile_yaml(
        out, {b: demo_files.file_names(geom, b) for b in bands}, tile_name,
        {b: truth / b for b in bands}, detection_band(bands),
    )  # fmt: skip


def _start_band(pool: _Workers, geom, preset: Preset, band: str) -> _Band:
    """The band's observing history; its visit PSFs at the anchors submitted."""
    hist = observing_history(geom, preset, band)
    lattice = gpsf.anchor_lattice(geom)
    ax, ay = lattice.points()
    jobs = gpsf.psf_jobs(hist.plan, geom, hist.used, ax, ay)
    return _Band(hist, lattice, [pool.submit(gpsf.draw_psf_job, hist.psfs, j)
                                 for j in jobs])  # fmt: skip


def _scene(out: Path, geom, seed: int, knots: bool, bands, names: dict) -> _Scene:
    """Star inputs and Gaia table written; galaxies and stars in every band."""
    stars_in = _write_star_inputs(out, geom, names)
    galaxies = gscene.sample_galaxies(geom, seed, knots=knots, bands=bands)
    model = stars_in["model"]
    rng_sky = np.random.default_rng([seed, 3])
    stars = np.concatenate([
        gscene.gaia_stars(stars_in["gaia_all"], model, geom, STAR_MARGIN_PX, bands),
        gscene.besancon_stars(model, stars_in["area"], geom, rng_sky, STAR_MARGIN_PX,
                              bands),
    ])  # fmt: skip
    bright, gaia_query = _bright_object_mask(geom, stars_in["gaia_all"])
    demo_stars.write_gaia_votable(out / names["gaia"], gaia_query)
    return _Scene(galaxies, stars, gaia_query, bright)


def _render_band(
    pool: _Workers, band: _Band, scene: _Scene, geom, seed: int, workers: int,
    clock: _Clock,
) -> None:  # fmt: skip
    """Coadd PSF truth, the noise-free signal of the band's stars and galaxies
    and the frames' seeing, into ``band``."""
    hist, lattice = band.hist, band.lattice
    name = hist.observation.band
    band.galaxies = gscene.in_band(scene.galaxies, name)
    # (n_used, n_anchors, 132, 132)
    images = np.stack([f.result() for f in band.anchor_futures])
    band.anchor_futures = []
    clock.lap("visit PSFs")
    grid = _coadd_psf_grid(hist, geom, lattice, images)
    galaxy_futures = _submit_galaxies(pool, band.galaxies, grid["epsf"], seed, workers)
    # the frames' seeing (written last) after the galaxies
    frame_jobs = _frame_jobs(hist, geom)
    frame_futures = [
        pool.submit(gpsf.draw_psf_job, hist.psfs, j, True) for j, _ in frame_jobs
    ]
    grid.update(_measure_grid(grid["os"], grid["covered"]))
    del grid["os"]
    band.grid = grid
    band.visit_seeing = _visit_seeing(images, lattice, geom)
    clock.lap("coadd PSF truth")
    signal = np.zeros((geom.ny, geom.nx))
    stars = gscene.in_band(scene.stars, name)
    band.stars = _draw_stars(signal, stars, hist, geom, lattice, images)
    for future in galaxy_futures:
        for _, stamp in future.result():
            _add_stamp(signal, stamp)
    band.signal = signal
    del images, galaxy_futures
    clock.lap("rendering")
    band.frame_seeing = np.empty(len(hist.frames.ccd))
    for (_, rows), future in zip(frame_jobs, frame_futures, strict=True):
        band.frame_seeing[rows] = future.result()
    clock.lap("frame seeing")


def _finish_band(
    out: Path, truth: Path, band: _Band, scene: _Scene, geom, seed: int,
    preset: Preset, knots: bool, clock: _Clock, several: bool,
) -> dict:  # fmt: skip
    """Saturation, noise and the band's files and truth; its truth summary."""
    hist = band.hist
    name = hist.observation.band
    signal, sat = gobs.saturate(band.signal, hist.cov, hist.plan, hist.phot, hist.used)
    band.signal = None
    clock.lap("saturation")
    grids = gobs.visit_grids(hist.plan, geom, hist.used)
    groups = gobs.group_visits(grids, hist.phot.weight, hist.used)
    noise = gobs.coadd_noise(
        signal, hist.cov, hist.plan, hist.phot, groups, grids, noise_rng(seed, name)
    )
    gain_eff = gobs.effective_gain(hist.cov, hist.plan, hist.phot, hist.used)
    clock.lap("noise")
    names = demo_files.file_names(geom, name)
    nodata = hist.cov.invvar <= 0
    mask = demo_files.mask_plane(nodata, scene.bright, sat)
    image = signal.astype(np.float32)
    del signal
    image += noise.noise
    image[nodata] = np.nan
    variance = noise.variance
    variance[nodata] = np.nan
    hsc_io.write_calexp(
        out / names["calexp"], image, mask, variance, geom.header(),
        band=hist.observation.filter_name,
        primary_cards={"OBJECT": LABEL, "TRACT": geom.tract,
                       "PATCH": f"{geom.patch[0]},{geom.patch[1]}"},
    )  # fmt: skip
    del image, variance
    demo_files.write_frame_csv(
        out / names["frames"], hist.plan, hist.frames, band.frame_seeing
    )
    grid, cov = band.grid, band.grid["covered"]
    demo_files.write_coadd_csv(
        out / names["coadd"], geom, float(np.median(grid["fwhm"][cov])),
        float(np.median(grid["e1"][cov])), float(np.median(grid["e2"][cov])),
    )  # fmt: skip
    truth.mkdir(exist_ok=True)
    _write_mask_truth(truth / "mask.h5", nodata, scene.bright, mask)
    rms_sky = np.sqrt(noise.variance_sky)
    _write_sysmaps(truth / "sysmaps.h5", hist.cov, rms_sky, gain_eff)
    _write_psf_truth(truth / "psf_model.h5", grid, hist, band.visit_seeing)
    n_gal = _write_table(
        truth / "galaxies.h5", _with_sky(band.galaxies, geom), "galaxies"
    )
    n_star = _write_table(truth / "stars.h5", _with_sky(band.stars, geom), "stars")
    clock.lap("writing")
    covered = ~nodata
    summary = {
        "description": f"{LABEL}: truth behind the simulated patch",
        "generator": {
            **_generator(seed, preset, knots),
            "observation_seed": hist.observation.observation_seed,
            "seconds": clock.take(),
        },
        **_geometry(geom),
        "zero_point": hsc_io.ZERO_POINT_AB, "exptime_per_visit_s": obs.EXPTIME_S,
        **_observation_summary(hist, covered),
        "n_noise_groups": noise.n_groups,
        "effective_gain_median_e_per_adu": _median(gain_eff[covered]),
        "sky_rms_median_adu": _median(rms_sky[covered]),
        "full_well_e": gobs.FULL_WELL_E,
        "fraction_sat": float(sat.mean()),
        "fraction_bright_object": float(scene.bright.mean()),
        "visit_seeing_arcsec": _percentiles(
            band.visit_seeing[np.isfinite(band.visit_seeing)]
        ),
        "frame_seeing_arcsec": _percentiles(band.frame_seeing),
        "psf_fwhm_arcsec": _percentiles(grid["fwhm"][cov]),
        "psf_ellipticity": _percentiles(np.hypot(grid["e1"], grid["e2"])[cov]),
        "n_galaxies": n_gal, "n_stars": n_star,
        "n_gaia_in_query": len(scene.gaia_query),
        "files": {**names, "truth": _truth_files(name, several)},
    }  # fmt: skip
    if several:
        summary |= {"band": name, "observation": dataclasses.asdict(hist.observation)}
    write_json(truth / "truth.json", summary)
    return summary


def _generator(seed: int, preset: Preset, knots: bool) -> dict:
    return {
        "name": GENERATOR,
        "versions": {p: version(p) for p in ("galsim", "galsbi", "numpy")},
        "preset": preset.name, "seed": seed, "knots": knots,
        "galsbi_model": gscene.GALAXY_MODEL,
        "galsbi_posterior_index": gscene.POSTERIOR_INDEX,
        "galsbi_seed": gscene.galsbi_seed(seed),
    }  # fmt: skip


def _geometry(geom) -> dict:
    return {
        "tract": geom.tract, "patch": list(geom.patch), "size": [geom.nx, geom.ny],
        "crval": list(geom.crval), "crpix": list(geom.crpix),
        "pixel_scale_arcsec": skymap.PIXEL_SCALE_ARCSEC,
    }  # fmt: skip


def _observation_summary(hist: History, covered: np.ndarray) -> dict:
    phot, used = hist.phot, hist.used
    return {
        "n_visits_planned": int(hist.plan.n_visits), "n_visits_used": len(used),
        "n_frames": len(hist.frames.ccd),
        "expt_max_s": int(hist.cov.expt.max()),
        "expt_median_covered_s": _median(hist.cov.expt[covered]),
        "fraction_no_data": float((~covered).mean()),
        "electrons_per_adu_visit_median": float(np.median(phot.k_e_per_adu[used])),
        "sky_electrons_visit_median": float(np.median(phot.sky_e[used])),
        "sky_mag_arcsec2_median": _sky_brightness(hist),
    }  # fmt: skip


#: Per-band figures ``truth/truth.json`` of a tile of several bands lists.
_OVERVIEW_KEYS = (
    "n_visits_planned", "n_visits_used", "expt_median_covered_s",
    "sky_mag_arcsec2_median", "sky_rms_median_adu", "fraction_sat", "n_galaxies",
    "n_stars",
)  # fmt: skip


def _write_bands_summary(
    truth: Path, summaries: dict, geom, seed: int, preset: Preset, knots: bool,
    bands: tuple[str, ...],
) -> None:  # fmt: skip
    """``truth/truth.json`` of a tile of several bands: the generator, the bands
    and a few figures of each (the rest in ``truth/<band>/truth.json``)."""
    overview = {
        b: {
            "truth_dir": b, "calexp": s["files"]["calexp"],
            "filter": s["observation"]["filter_name"],
            "observation_seed": s["generator"]["observation_seed"],
            **{k: s[k] for k in _OVERVIEW_KEYS},
            "psf_fwhm_arcsec_median": s["psf_fwhm_arcsec"].get("median"),
            "seconds": round(sum(s["generator"]["seconds"].values()), 2),
        }
        for b, s in summaries.items()
    }  # fmt: skip
    write_json(truth / "truth.json", {
        "description": f"{LABEL}: truth behind the simulated patch, bands "
                       + " ".join(bands),
        "generator": {**_generator(seed, preset, knots), "bands": list(bands),
                      "detection_band": detection_band(bands)},
        **_geometry(geom), "zero_point": hsc_io.ZERO_POINT_AB,
        "bands": overview,
    })  # fmt: skip


def _truth_files(band: str, several: bool) -> dict[str, str]:
    """What each truth file of ``band`` holds."""
    mags = f"mag {band}" + (", mag_g ... of every band" if several else "")
    return {
        "sysmaps.h5": "map_bsig (1/sqrt(sum w)), map_rms_realised (sky noise rms of "
        "the image), map_expt, map_nexp, map_gain, map_gain_amp, map_invvar_weight, "
        "map_pointings, map_gain_effective (e- per coadd ADU)",
        "psf_model.h5": "grid_psf (FWHM in pixels, e1, e2, flux ratio), grid/* (FWHM "
        "in arcsec, effective PSF images), visits",
        "mask.h5": "mask (ufig flags 2 bright star, 4 no data), mask_plane (MASK HDU)",
        "galaxies.h5": f"data: drawn galaxies (X_IMAGE, Y_IMAGE FITS, {mags}, r50, n, "
        "e)",
        "stars.h5": f"data: drawn stars (X_IMAGE, Y_IMAGE FITS, {mags}, Gaia id and G)",
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
