"""The independent DEMO tile (simulated, GalSim forward model): noise and PSF of
the grouped coadd against a per-visit brute force, files, truth and imports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import galsim
import h5py
import numpy as np
import pytest
from scipy import ndimage

from hscsim_utils.demo import files as demo_files
from hscsim_utils.demo import galsim_bands as gbands
from hscsim_utils.demo import galsim_observation as gobs
from hscsim_utils.demo import galsim_psf as gpsf
from hscsim_utils.demo import galsim_scene as gscene
from hscsim_utils.demo import independent
from hscsim_utils.demo import observation as demo_observation
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import tile
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC
from hscsim_utils.pipeline.cli import build_parser
from hscsim_utils.stages.psf import load_truth_grid

# --------------------------------------------------------------- brute force

N_SIDE = 120
N_VISITS = 20


def _synthetic_observation(seed: int = 1):
    """Visits with random sub-pixel phases, small rotations, their own K, sky,
    read noise and weights, all covering a N_SIDE x N_SIDE tile."""
    rng = np.random.default_rng(seed)
    n = N_VISITS
    c = rng.uniform(0.0, 1.0, (n, 2))
    theta = rng.normal(5e-4, 1e-4, n)
    a = np.stack([[[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]] for t in theta])
    p0 = np.array([(N_SIDE + 1) / 2.0] * 2)
    grids = gobs.VisitGrids(c, a, p0)
    k = rng.uniform(900.0, 1100.0, n)
    sigma = 0.18 * np.exp(rng.normal(0.0, 0.15, n))
    read = rng.uniform(4.0, 5.0, n)
    gain = np.full(n, 3.0)
    sky = (sigma * k) ** 2 - read**2 - gain**2 / 12.0
    phot = gobs.VisitPhotometry(
        k, sky, read, gain, np.ones(n), np.full(n, 28.5), sigma**-2.0
    )
    plan = demo_observation.VisitPlan(
        visit=np.arange(n) * 2 + 100, ra=np.zeros(n), dec=np.zeros(n),
        pa_deg=np.zeros(n), sky_sigma=sigma, ccd_gains=np.full((104, 4), 3.0),
    )  # fmt: skip
    shape = (N_SIDE, N_SIDE)
    bits = np.zeros((*shape, demo_observation.N_BIT_WORDS), np.uint64)
    bits[..., 0] = np.uint64(2**n - 1)
    cov = demo_observation.CoverageMaps(
        expt=np.full(shape, 270 * n, np.uint32), nexp=np.full(shape, n, np.uint16),
        gain_sum=np.full(shape, 3.0 * n, np.float32),
        gain_amp_sum=np.full(shape, 3.0 * n, np.float32),
        invvar=np.full(shape, phot.weight.sum()), bits=bits, visit_ids=plan.visit,
    )  # fmt: skip
    return grids, phot, plan, cov


#: Native pixel j of a brute-force visit array has native coordinate N0 + j.
N0 = -(N_SIDE // 2) - 6
NATIVE = N_SIDE + 14


def _lanczos(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 3, np.sinc(d) * np.sinc(d / 3.0), 0.0)


def _resample_exact(native: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Normalised 2-D Lanczos-3 at every output pixel's own (tx, ty), written out
    (no tables, no separable shortcut)."""
    ix = np.floor(tx).astype(int)[..., None] - 2 + np.arange(6)
    iy = np.floor(ty).astype(int)[..., None] - 2 + np.arange(6)
    wx = _lanczos(tx[..., None] - ix)
    wy = _lanczos(ty[..., None] - iy)
    wx /= wx.sum(axis=-1, keepdims=True)
    wy /= wy.sum(axis=-1, keepdims=True)
    values = native[iy[..., :, None], ix[..., None, :]]
    return np.einsum("yxi,yxj,yxji->yx", wx, wy, values)


def _brute_force_coadd(native_signal, grids, phot, rng):
    """Every visit on its own native grid: electrons, Poisson + read noise,
    calibration, Lanczos-3 onto the patch, weighted mean. Returns the coadd and
    the noise-free coadd; ``native_signal(v)`` is visit v's signal on its native
    array (ADU)."""
    y, x = np.mgrid[1 : N_SIDE + 1, 1 : N_SIDE + 1].astype(float)
    num = np.zeros((N_SIDE, N_SIDE))
    clean = np.zeros((N_SIDE, N_SIDE))
    for v in range(len(phot.k_e_per_adu)):
        c, a = grids.c[v], grids.a[v]
        s = native_signal(v)
        k, sky = phot.k_e_per_adu[v], phot.sky_e[v]
        electrons = rng.poisson(k * s + sky) + rng.normal(
            0.0, math.sqrt(phot.read_var_e[v]), s.shape
        )
        calibrated = (electrons - sky) / k
        tx = c[0] + a[0, 0] * (x - grids.p0[0]) + a[0, 1] * (y - grids.p0[1]) - N0
        ty = c[1] + a[1, 0] * (x - grids.p0[0]) + a[1, 1] * (y - grids.p0[1]) - N0
        num += phot.weight[v] * _resample_exact(calibrated, tx, ty)
        clean += phot.weight[v] * _resample_exact(s, tx, ty)
    total = phot.weight.sum()
    return num / total, clean / total


def _noise_statistics(images: list[np.ndarray]) -> dict[str, float]:
    stack = np.stack(images)
    stack = stack - stack.mean(axis=0)  # noise only (the mean image is the signal)
    stack *= math.sqrt(len(images) / (len(images) - 1))
    var = float(np.mean(stack**2))
    out = {"variance": var}
    for lag in (1, 2):
        out[f"x{lag}"] = float(np.mean(stack[:, :, lag:] * stack[:, :, :-lag]) / var)
        out[f"y{lag}"] = float(np.mean(stack[:, lag:, :] * stack[:, :-lag, :]) / var)
    return out


def test_grouped_noise_matches_per_visit_brute_force():
    """Same per-pixel variance, lag-1 and lag-2 correlations and VARIANCE plane
    as a coadd of every visit drawn and resampled on its own."""
    grids, phot, plan, cov = _synthetic_observation()
    level = 25.0  # ADU per pixel: the sources' photons are ~40% of the variance
    signal = np.full((N_SIDE, N_SIDE), level)
    visits = np.arange(N_VISITS)
    groups = gobs.group_visits(grids, phot.weight, visits)
    assert 4 <= len(groups) <= 16
    rng = np.random.default_rng(11)
    grouped, brute = [], []
    for _ in range(8):
        res = gobs.coadd_noise(signal, cov, plan, phot, groups, grids, rng)
        grouped.append(res.noise)
        coadd, _ = _brute_force_coadd(
            lambda v: np.full((NATIVE, NATIVE), level), grids, phot, rng
        )
        brute.append(coadd)
    g_stats, b_stats = _noise_statistics(grouped), _noise_statistics(brute)
    assert g_stats["variance"] / b_stats["variance"] == pytest.approx(1.0, abs=0.04)
    for key in ("x1", "y1", "x2", "y2"):
        assert g_stats[key] == pytest.approx(b_stats[key], abs=0.03), key
    assert b_stats["x1"] > 0.05 and b_stats["x2"] < -0.03  # Lanczos-3 correlation
    # the VARIANCE plane predicts the brute-force noise ...
    predicted = float(np.mean(res.variance))
    assert predicted / b_stats["variance"] == pytest.approx(1.0, abs=0.04)
    # ... with the sources' photons in it, at the effective gain of the process
    # (electrons per coadd ADU: W^2 / sum w^2 / K, not gain x number of visits)
    w, k = phot.weight, phot.k_e_per_adu
    g_eff = w.sum() ** 2 / np.sum(w**2 / k)
    sky_before = 1.0 / w.sum()  # coadd sky variance before resampling
    source_over_sky = (predicted - np.mean(res.variance_sky)) / np.mean(
        res.variance_sky
    )
    assert source_over_sky == pytest.approx(level / g_eff / sky_before, rel=0.05)
    assert g_eff > 300 * N_VISITS


def test_coadd_psf_matches_per_visit_brute_force():
    """A point source drawn in every visit with that visit's PSF on its native
    grid, resampled and coadded, has the coadd PSF of the truth (weighted sum of
    the visit PSFs)."""
    grids, phot, _, _ = _synthetic_observation(seed=2)
    psfs = gpsf.draw_visit_psfs(
        np.random.default_rng(5), N_VISITS, gpsf.SeeingModel(0.6, 0.2)
    )
    rng = np.random.default_rng(6)
    uv = rng.uniform(-15000, 15000, (N_VISITS, 2))
    profiles = [
        gpsf.visit_profile(psfs, v, tuple(uv[v]), np.eye(2)) for v in range(N_VISITS)
    ]
    star = np.array([60.3, 59.7])  # FITS position on the tile
    flux = 1000.0

    def native_signal(v):
        # native pixels integrate the visit's PSF (pixel response included); the
        # star's native coordinate is c + A (star - p0), array index = that - N0
        u = grids.c[v] + grids.a[v] @ (star - grids.p0) - N0
        image = galsim.ImageD(NATIVE, NATIVE, scale=PIXEL_SCALE_ARCSEC)
        (flux * profiles[v]).drawImage(
            image=image, center=galsim.PositionD(u[0] + 1, u[1] + 1), method="auto"
        )
        return image.array

    _, coadd = _brute_force_coadd(native_signal, grids, phot, rng)
    # the truth: weighted sum of the visit PSFs (no resampling), at the star
    os_images = np.stack([gpsf.draw_oversampled(p) for p in profiles])
    truth_os = np.tensordot(phot.weight / phot.weight.sum(), os_images, axes=1)
    epsf = gpsf.effective_psf(truth_os)
    model = galsim.InterpolatedImage(
        galsim.Image(epsf, scale=PIXEL_SCALE_ARCSEC), pad_factor=1.5
    ).withFlux(flux)
    image = galsim.ImageD(N_SIDE, N_SIDE, scale=PIXEL_SCALE_ARCSEC)
    model.drawImage(image=image, center=galsim.PositionD(*star), method="no_pixel")
    cut = np.s_[40:80, 40:80]
    m_brute = galsim.hsm.FindAdaptiveMom(galsim.Image(coadd[cut]))
    m_model = galsim.hsm.FindAdaptiveMom(galsim.Image(image.array[cut]))
    assert m_brute.moments_sigma / m_model.moments_sigma == pytest.approx(1, abs=0.01)
    assert m_brute.observed_shape.e1 == pytest.approx(
        m_model.observed_shape.e1, abs=3e-3
    )
    assert m_brute.observed_shape.e2 == pytest.approx(
        m_model.observed_shape.e2, abs=3e-3
    )
    assert m_brute.moments_centroid.x == pytest.approx(
        m_model.moments_centroid.x, abs=0.02
    )
    assert m_brute.moments_centroid.y == pytest.approx(
        m_model.moments_centroid.y, abs=0.02
    )
    peak = image.array.max()
    assert np.abs(coadd[cut] - image.array[cut]).max() < 0.02 * peak
    assert coadd.sum() == pytest.approx(flux, rel=0.02)


def test_bleeding_conserves_charge_along_the_row():
    row = np.full(200, 30000.0)
    row[95:105] = 1e6
    before = row.sum()
    gobs._bleed_row(row, gobs.FULL_WELL_E)
    assert row.max() <= gobs.FULL_WELL_E
    assert row.sum() == pytest.approx(before)
    full = np.nonzero(row >= gobs.FULL_WELL_E)[0]
    # 8.5e6 e- of excess fill 120,000 e- of room per pixel, 35 pixels each side
    assert full.min() == 60 and full.max() == 139


def test_psf_measurement_of_known_profiles():
    for fwhm, e1, e2, ratio in ((0.55, 0.04, -0.02, 0.3), (0.75, -0.01, 0.03, 0.6)):
        prof = galsim.Add(
            [ratio * galsim.Moffat(beta=2, fwhm=fwhm),
             (1 - ratio) * galsim.Moffat(beta=5, fwhm=fwhm)]
        ).shear(e1=e1, e2=e2)  # fmt: skip
        m = gpsf.measure_psf(gpsf.draw_oversampled(prof))
        assert m.fwhm_arcsec == pytest.approx(fwhm, rel=3e-3)
        assert (m.e1, m.e2) == pytest.approx((e1, e2), abs=1e-4)
        assert m.flux_ratio == pytest.approx(ratio, abs=0.01)


# --------------------------------------------------------------- built tile

SIZE = (512, 512)
#: Part of patch 8523-4,2 with a G = 14.1 Gaia star (saturated, bled) near x 782.
CENTRE = (760.0, 2300.0)
SEED = 7
SIMULATION_MODULES = ("ufig.plugins", "ufig.rendering", "galsbi_hsc_config",
                      "hscsim_utils.demo.render", "hscsim_utils.demo.ufig_config",
                      "hscsim_utils.demo.psf")  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the tile in a subprocess; report the modules it imported."""
    out = tmp_path_factory.mktemp("independent") / "input"
    code = textwrap.dedent(f"""
        import json, sys
        from hscsim_utils.demo.independent import build_independent_demo_tile
        build_independent_demo_tile({str(out)!r}, size={SIZE}, seed={SEED},
                                    centre={CENTRE}, preset="ud")
        print(json.dumps(sorted(sys.modules)))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    spec = tile.load_tile(out / "tile.yaml")
    return {
        "out": out, "spec": spec, "modules": modules,
        "calexp": hsc_io.read_calexp(spec.calexp, band=spec.band),
        "truth": json.loads((spec.truth_dir / "truth.json").read_text()),
    }  # fmt: skip


@pytest.mark.slow
def test_build_imports_nothing_of_the_simulation_path(built):
    bad = [m for m in built["modules"] if any(s in m for s in SIMULATION_MODULES)]
    assert not bad, bad
    assert (
        "galsim" in built["modules"]
        and "galsbi.ucat.plugins.sample_galaxies" in (built["modules"])
    )


@pytest.mark.slow
def test_files_formats_and_labels(built):
    out, spec, calexp = built["out"], built["spec"], built["calexp"]
    names = demo_files.file_names(demo_observation.demo_geometry(SIZE, CENTRE))
    for name in (*names.values(), "tile.yaml", "truth/truth.json", "truth/sysmaps.h5",
                 "truth/psf_model.h5", "truth/mask.h5", "truth/galaxies.h5",
                 "truth/stars.h5"):  # fmt: skip
        assert (out / name).is_file(), name
    assert calexp.shape == (SIZE[1], SIZE[0])
    assert calexp.mask_planes == hsc_io.PDR3_MASK_PLANES
    assert "DEMO" in calexp.primary_header["OBJECT"]
    assert spec.is_demo and "DEMO" in spec.label
    assert spec.tile_name.startswith("demo-galsim-")
    assert (spec.galaxy_model, spec.posterior_index, spec.seed) == ("Moser+24", 0, 42)
    gen = built["truth"]["generator"]
    assert set(gen["versions"]) == {"galsim", "galsbi", "numpy"}
    assert gen["galsbi_posterior_index"] != spec.posterior_index
    assert gen["galsbi_seed"] != spec.seed
    frames = hsc_io.read_frame_metadata(spec.frame_metadata)
    assert frames["seeing"].between(0.35, 1.3).all()
    # measured at each CCD: CCDs of one visit differ slightly (neighbouring CCDs
    # may agree to the 4 decimals of the CSV)
    spread = frames.groupby("visit")["seeing"].agg(lambda s: s.max() - s.min())
    multi = spread[frames.groupby("visit").size() > 1]
    assert len(multi) > 10 and (multi > 0).mean() > 0.5, multi.describe()
    assert 0.5 < hsc_io.read_coadd_metadata(spec.coadd_metadata)["seeing"][0] < 0.75


@pytest.mark.slow
def test_variance_plane_matches_blank_sky(built):
    """Pixels away from every drawn source (galaxies out to where their profile
    falls below ~0.002 ADU, stars, masks, the rows of bleed trails, whose faint
    ends are saturated in fewer than 10% of the visits and so not SAT), with the
    smooth light of bright-star wings removed by a 41-pixel median: their scatter
    is the VARIANCE plane's."""
    spec, calexp = built["spec"], built["calexp"]
    image, variance = calexp.image.astype(np.float64), calexp.variance
    with h5py.File(spec.truth_dir / "galaxies.h5") as fh:
        gal = fh["data"][()]
    with h5py.File(spec.truth_dir / "stars.h5") as fh:
        stars = fh["data"][()]
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]] + 1.0
    far = np.ones(image.shape, bool)
    radius = np.r_[
        np.maximum(gscene.galaxy_half_size(gal) - 8, 6), np.full(len(stars), 24)
    ]
    for x, y, r in zip(
        np.r_[gal["X_IMAGE"], stars["X_IMAGE"]],
        np.r_[gal["Y_IMAGE"], stars["Y_IMAGE"]],
        radius,
        strict=True,
    ):
        x0, x1 = max(int(x - r), 0), min(int(x + r) + 1, image.shape[1])
        y0, y1 = max(int(y - r), 0), min(int(y + r) + 1, image.shape[0])
        if x0 < x1 and y0 < y1:
            far[y0:y1, x0:x1] &= (
                np.hypot(xx[y0:y1, x0:x1] - x, yy[y0:y1, x0:x1] - y) > r
            )
    sat = ((calexp.mask >> calexp.mask_bit("SAT")) & 1).astype(bool)
    trail_rows = np.zeros_like(sat)
    trail_rows[sat.any(axis=1)] = True
    blank = (
        far & (calexp.mask == 0) & ~ndimage.binary_dilation(trail_rows, iterations=3)
    )
    residual = image - ndimage.median_filter(image, size=41)
    z = residual[blank] - residual[blank].mean()
    ratio = float(np.mean(z**2 / variance[blank]))
    assert blank.sum() > 20000
    assert ratio == pytest.approx(1.0, abs=0.04)


@pytest.mark.slow
def test_coverage_truth_is_the_observation_maps(built):
    spec = built["spec"]
    geom = demo_observation.demo_geometry(SIZE, CENTRE)
    history = independent.observing_history(geom, independent.PRESETS["ud"])
    cov, frames = history.cov, history.frames
    with h5py.File(spec.truth_dir / "sysmaps.h5") as fh:
        np.testing.assert_array_equal(fh["map_expt"][()], cov.expt)
        np.testing.assert_array_equal(fh["map_nexp"][()], cov.nexp)
        words = fh["map_pointings"][()]
        bits = np.stack([words[f"bit{i + 1}"] for i in range(5)], axis=-1)
        np.testing.assert_array_equal(bits, cov.bits)
        np.testing.assert_allclose(fh["map_invvar_weight"][()], cov.invvar, rtol=1e-6)
        gain = fh["map_gain_effective"][()]
    covered = cov.nexp > 0
    # electrons per coadd ADU: ~ number of visits x ~1000, not gain x n_exp
    assert np.median(gain[covered] / cov.nexp[covered]) > 500
    frames_csv = hsc_io.read_frame_metadata(spec.frame_metadata)
    assert len(frames_csv) == len(frames.ccd)


@pytest.mark.slow
def test_saturated_stars_bleed_along_x(built):
    spec, calexp = built["spec"], built["calexp"]
    sat = (calexp.mask >> calexp.mask_bit("SAT")) & 1
    assert sat.sum() > 0
    with h5py.File(spec.truth_dir / "stars.h5") as fh:
        stars = fh["data"][()]
    labels, _ = ndimage.label(sat)
    inside = (stars["X_IMAGE"] > 1) & (stars["X_IMAGE"] < SIZE[0])
    inside &= (stars["Y_IMAGE"] > 1) & (stars["Y_IMAGE"] < SIZE[1])
    brightest = stars[inside][np.argmin(stars["mag"][inside])]
    assert brightest["mag"] < 15
    lab = labels[int(brightest["Y_IMAGE"] - 0.5), int(brightest["X_IMAGE"] - 0.5)]
    assert lab > 0, "the brightest star's core is not SAT"
    ys, xs = np.nonzero(labels == lab)
    assert np.ptp(xs) + 1 > 3 * (np.ptp(ys) + 1)  # a trail along x
    bright = (calexp.mask >> calexp.mask_bit("BRIGHT_OBJECT")) & 1
    assert bright[int(brightest["Y_IMAGE"] - 0.5), int(brightest["X_IMAGE"] - 0.5)]


@pytest.mark.slow
def test_psf_truth_grid(built):
    spec = built["spec"]
    grid = load_truth_grid(spec)
    assert grid is not None and len(grid) > 0
    for name in ("psf_fwhm_ipt", "psf_e1_ipt", "psf_e2_ipt", "psf_flux_ratio_ipt"):
        assert np.isfinite(grid[name]).all(), name
    fwhm = grid["psf_fwhm_ipt"] * PIXEL_SCALE_ARCSEC
    assert 0.45 < fwhm.min() and fwhm.max() < 0.8
    assert np.all(np.hypot(grid["psf_e1_ipt"], grid["psf_e2_ipt"]) < 0.1)
    with h5py.File(spec.truth_dir / "psf_model.h5") as fh:
        epsf = fh["grid/epsf"][()]
        visits = fh["visits"][()]
    np.testing.assert_allclose(epsf.sum(axis=(-1, -2)), 1.0, atol=1e-4)
    seeing = visits["seeing_centre_arcsec"]
    assert 0.5 < np.median(seeing) < 0.7 and seeing.std() > 0.03


def test_unknown_preset_is_refused(tmp_path):
    from hscsim_utils.errors import InputError

    with pytest.raises(InputError):
        independent.build_independent_demo_tile(tmp_path / "x", (64, 64), preset="wide")
    assert not (tmp_path / "x").exists()


def test_tile_names_say_demo():
    geom = demo_observation.demo_geometry((1000, 1000))
    name = independent.independent_tile_name(geom, 3, "deep")
    assert (
        name.startswith("demo-galsim-deep-")
        and "deep" in name
        and name.endswith("seed3")
    )
    assert Path(demo_files.file_names(geom)["calexp"]).suffix == ".fits"


@pytest.mark.slow
def test_effective_gain_from_variance_is_the_process_gain(built):
    """Stage 01's gain from VARIANCE against the electrons per coadd ADU of the
    visits (truth map): equal but for resampling, which lowers each pixel's
    variance by a factor 0.6-1 (so the per-pixel gain is 1-1.7 times it); the
    tutorial's mean gain x number of exposures is hundreds of times smaller."""
    from hscsim_utils.stages.skymapinfo import measured_gain, saturation_level

    calexp, spec = built["calexp"], built["spec"]
    est = measured_gain(calexp, saturation_level(calexp))
    with h5py.File(spec.truth_dir / "sysmaps.h5") as fh:
        truth = fh["map_gain_effective"][()]
        nexp = fh["map_nexp"][()]
    covered = nexp > 0
    ratio = est.gain / float(np.median(truth[covered]))
    assert 1.0 <= ratio <= 1.7, (est, ratio)
    assert est.gain > 100 * 3.0 * float(np.mean(nexp[covered]))


# --------------------------------------------------------------- several bands

BANDS = "grizy"


def test_bands_are_kept_in_hsc_order_and_unknown_ones_refused(tmp_path):
    from hscsim_utils.bands import parse_bands
    from hscsim_utils.errors import InputError

    assert parse_bands("zig") == parse_bands("z, i,g") == ("g", "i", "z")
    assert parse_bands(["y", "g", "g"]) == ("g", "y")
    assert independent.detection_band(("g", "r")) == "g"
    assert independent.detection_band(("g", "i", "y")) == "i"
    for bad, word in (("ix", "'x'"), ("", "at least one"), (["i", "u"], "'u'")):
        with pytest.raises(InputError, match=word):
            independent.build_independent_demo_tile(tmp_path / "x", (64, 64), bands=bad)
    assert not (tmp_path / "x").exists()
    args = build_parser().parse_args(["demo-tile", "--out", "o", "--bands", BANDS])
    assert args.bands == BANDS
    assert build_parser().parse_args(["demo-tile", "--out", "o"]).bands == "i"


def test_band_observations_follow_the_design():
    """Visits in proportion to the UD design time (z capped at 320 visits), the
    i band as before, every band its own plan seed, visit numbers and filter."""
    ud, deep = independent.PRESETS["ud"], independent.PRESETS["deep"]
    bands = {b: ud.band(b) for b in BANDS}
    assert {b: o.n_visits for b, o in bands.items()} == {
        "g": 120, "r": 120, "i": 240, "z": 320, "y": 288,
    }  # fmt: skip
    assert [deep.band(b).n_visits for b in BANDS] == [15, 15, 22, 37, 22]
    i = bands["i"]
    assert i.sky_sigma == demo_observation.SINGLE_VISIT_SIGMA
    assert (i.observation_seed, i.seeing, i.zp_electrons, i.extinction) == (
        ud.observation_seed, ud.seeing, gobs.ZP_ELECTRONS,
        gobs.EXTINCTION_PER_AIRMASS,
    )  # fmt: skip
    assert len({o.observation_seed for o in bands.values()}) == 5
    assert len({o.first_visit for o in bands.values()}) == 5
    assert [o.filter_name for o in bands.values()] == [
        "HSC-G", "HSC-R2", "HSC-I2", "HSC-Z", "HSC-Y",
    ]  # fmt: skip
    assert bands["g"].seeing.median_arcsec > bands["z"].seeing.median_arcsec > 0.6
    # per-visit noise grows to the red (brighter sky, fewer photons per ADU)
    sigmas = [o.sky_sigma for o in bands.values()]
    assert sigmas == sorted(sigmas)


@pytest.mark.slow
def test_galsbi_sampling_with_every_filter_keeps_the_galaxies():
    """galsbi draws the same galaxies, shapes and i magnitudes whatever the
    filters asked for: the premise of one population for all bands."""
    geom = demo_observation.demo_geometry((200, 200))
    alone = gscene.sample_galaxies(geom, SEED)
    every = gscene.sample_galaxies(geom, SEED, bands=tuple(BANDS))
    assert len(alone) > 20
    for name in alone.dtype.names:
        np.testing.assert_array_equal(alone[name], every[name], err_msg=name)
    np.testing.assert_array_equal(every["mag_i"], every["mag"])
    assert np.median(every["mag_g"] - every["mag_i"]) > 0.3  # redder than flat


@pytest.fixture(scope="module")
def built5(tmp_path_factory):
    """The five-band tile of the same patch area and seed as ``built``."""
    out = tmp_path_factory.mktemp("independent5") / "input"
    code = textwrap.dedent(f"""
        from hscsim_utils.demo.independent import build_independent_demo_tile
        build_independent_demo_tile({str(out)!r}, size={SIZE}, seed={SEED},
                                    centre={CENTRE}, preset="ud", bands={BANDS!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    spec = tile.load_tile(out / "tile.yaml")
    return {
        "out": out, "spec": spec,
        "calexp": {b: hsc_io.read_calexp(spec.for_band(b).calexp, band=b)
                   for b in BANDS},
        "truth": {b: json.loads((out / "truth" / b / "truth.json").read_text())
                  for b in BANDS},
    }  # fmt: skip


def _truth_table(spec, band: str, name: str) -> np.ndarray:
    with h5py.File(spec.for_band(band).truth_dir / f"{name}.h5") as fh:
        return fh["data"][()]


@pytest.mark.slow
def test_five_band_files_tile_and_check(built5):
    from hscsim_utils.pipeline.check_tile import check_tile

    out, spec = built5["out"], built5["spec"]
    geom = demo_observation.demo_geometry(SIZE, CENTRE)
    assert spec.band_names == tuple(BANDS) and spec.detection_band == "i"
    assert spec.truth_dir == (out / "truth" / "i").resolve()
    assert "truth_dir:" not in (out / "tile.yaml").read_text().split("bands:")[0]
    assert spec.tile_name.startswith(f"demo-galsim-ud-{BANDS}-")
    for band in BANDS:
        names = demo_files.file_names(geom, band)
        assert names["calexp"] == f"calexp-HSC-{band.upper()}-8523-402.fits"
        view = spec.for_band(band)
        assert view.calexp == (out / names["calexp"]).resolve()
        assert view.truth_dir == (out / "truth" / band).resolve()
        for name in ("truth.json", "sysmaps.h5", "psf_model.h5", "mask.h5",
                     "galaxies.h5", "stars.h5"):  # fmt: skip
            assert (view.truth_dir / name).is_file(), (band, name)
        calexp = built5["calexp"][band]
        assert calexp.primary_header["FILTER"] == gbands.FILTER_NAMES[band]
        assert calexp.shape == (SIZE[1], SIZE[0])
    summary = json.loads((out / "truth" / "truth.json").read_text())
    assert summary["generator"]["bands"] == list(BANDS)
    assert set(summary["bands"]) == set(BANDS)
    # BRIGHT_OBJECT from Gaia: the same in every band
    bit = built5["calexp"]["i"].mask_bit("BRIGHT_OBJECT")
    masks = [(built5["calexp"][b].mask >> bit) & 1 for b in BANDS]
    assert masks[0].any() and all(np.array_equal(masks[0], m) for m in masks)
    assert check_tile(out / "tile.yaml") == []


@pytest.mark.slow
def test_five_band_i_is_the_i_band_tile(built, built5):
    """One galaxy population and the i band's own streams: the i band of the
    five-band tile is the i-band tile, pixel for pixel."""
    one, five = built["calexp"], built5["calexp"]["i"]
    for plane in ("image", "mask", "variance"):
        np.testing.assert_array_equal(
            getattr(one, plane), getattr(five, plane), err_msg=plane
        )
    for name in ("galaxies", "stars"):
        a = _truth_table(built["spec"], "i", name)
        b = _truth_table(built5["spec"], "i", name)
        for column in a.dtype.names:
            np.testing.assert_array_equal(a[column], b[column], err_msg=column)
    spec1, spec5 = built["spec"], built5["spec"].for_band("i")
    assert spec1.frame_metadata.read_bytes() == spec5.frame_metadata.read_bytes()


@pytest.mark.slow
def test_same_galaxies_and_stars_in_every_band(built5):
    spec = built5["spec"]
    fixed_columns = {
        "galaxies": ("X_IMAGE", "Y_IMAGE", "r50_arcsec", "sersic_n", "e1", "e2", "z"),
        "stars": ("X_IMAGE", "Y_IMAGE", "gaia_G", "gaia_id"),
    }
    for name, fixed in fixed_columns.items():
        tables = {b: _truth_table(spec, b, name) for b in BANDS}
        for band, table in tables.items():
            for column in fixed:
                np.testing.assert_array_equal(table[column], tables["i"][column])
            np.testing.assert_array_equal(table["mag"], table[f"mag_{band}"])
            for other in BANDS:
                np.testing.assert_array_equal(
                    table[f"mag_{other}"], tables[other]["mag"]
                )
        assert np.ptp(tables["g"]["mag"] - tables["i"]["mag"]) > 0.5, name


@pytest.mark.slow
def test_bands_differ_in_seeing_noise_and_visits_as_designed(built5):
    """Measured coadd PSF FWHM (truth) and sky noise (truth and VARIANCE plane)
    follow the bands' seeing, visits and visit noise; each band has its own
    visits, dithers and coverage."""
    spec, truth = built5["spec"], built5["truth"]
    fwhm = {b: truth[b]["psf_fwhm_arcsec"]["median"] for b in BANDS}
    assert fwhm["g"] > fwhm["z"] > fwhm["i"] and fwhm["r"] > fwhm["y"] > fwhm["i"]
    assert fwhm["g"] - fwhm["i"] > 0.12
    ud = independent.PRESETS["ud"]
    design = {b: ud.band(b).sky_sigma / math.sqrt(ud.band(b).n_visits) for b in BANDS}
    rms = {b: truth[b]["sky_rms_median_adu"] for b in BANDS}
    var = {b: float(np.sqrt(np.nanmedian(built5["calexp"][b].variance)))
           for b in BANDS}  # fmt: skip
    assert list(rms.values()) == sorted(rms.values())  # g < r < i < z < y
    for b in BANDS:  # the sky the design noise implies: brighter than a dark sky
        brighter = gbands.DARK_SKY_MAG_ARCSEC2[b] - truth[b]["sky_mag_arcsec2_median"]
        assert 0.2 < brighter < 1.3, (b, brighter)
    for b in BANDS:  # resampling lowers each band's noise by the same factor
        ratio = rms[b] / design[b] / (rms["i"] / design["i"])
        assert ratio == pytest.approx(1.0, abs=0.08), (b, ratio)
        assert var[b] == pytest.approx(rms[b], rel=0.1), b
    visits, nexp = {}, {}
    for b in BANDS:
        assert truth[b]["n_visits_planned"] == ud.band(b).n_visits
        frames = hsc_io.read_frame_metadata(spec.for_band(b).frame_metadata)
        visits[b] = set(frames["visit"])
        with h5py.File(spec.for_band(b).truth_dir / "sysmaps.h5") as fh:
            nexp[b] = fh["map_nexp"][()]
    assert all(visits[a].isdisjoint(visits[b]) for a in BANDS for b in BANDS if a < b)
    assert not np.array_equal(nexp["g"], nexp["r"])  # same count, other dithers


def _aperture_fluxes(calexp, x, y, radius):
    """Sum within ``radius`` of FITS (x, y) minus the median of an annulus out to
    ``radius + 8``; its variance from VARIANCE; NaN where masked."""
    yy, xx = np.mgrid[: calexp.shape[0], : calexp.shape[1]] + 1.0
    out, var = np.full(len(x), np.nan), np.full(len(x), np.nan)
    for k, (xc, yc, r) in enumerate(zip(x, y, radius, strict=True)):
        d = np.hypot(xx - xc, yy - yc)
        inner, ring = d <= r, (d > r + 2) & (d <= r + 8)
        if calexp.mask[d <= r + 8].any() or not np.isfinite(calexp.image[inner]).all():
            continue
        sky = np.median(calexp.image[ring])
        out[k] = calexp.image[inner].sum() - sky * inner.sum()
        var[k] = calexp.variance[inner].sum()
    return out, var


#: Aperture losses differ between bands with their PSFs (FWHM 0.57-0.75"): up to
#: ~2% in apertures of 2 r50 + 5 pixels; bright galaxies' photon noise is less.
APERTURE_SYSTEMATIC = 0.03


def _isolated_bright_galaxies(gal: np.ndarray, stars: np.ndarray) -> np.ndarray:
    """Galaxies with i < 24.5 off the edges and no source within 3.8 mag of them
    whose light (to 3 r50 + 8 pixels) reaches their aperture; their apertures."""
    radius = 2 * gal["r50_arcsec"] / PIXEL_SCALE_ARCSEC + 5
    inside = np.ones(len(gal), bool)
    for axis, n in (("X_IMAGE", SIZE[0]), ("Y_IMAGE", SIZE[1])):
        inside &= (gal[axis] > radius + 10) & (gal[axis] < n - radius - 10)
    px, py = (
        np.r_[gal["X_IMAGE"], stars["X_IMAGE"]],
        np.r_[gal["Y_IMAGE"], stars["Y_IMAGE"]],
    )
    pmag = np.r_[gal["mag_i"], stars["mag_i"]]
    reach = np.r_[3 * gal["r50_arcsec"] / PIXEL_SCALE_ARCSEC, np.zeros(len(stars))] + 8
    keep = []
    for k in np.nonzero(inside & (gal["mag_i"] < 24.5))[0]:
        d = np.hypot(px - gal["X_IMAGE"][k], py - gal["Y_IMAGE"][k])
        if not (
            (d > 0) & (d < radius[k] + reach) & (pmag < gal["mag_i"][k] + 3.8)
        ).any():
            keep.append(k)
    return np.array(keep, int), radius


@pytest.mark.slow
def test_colours_of_bright_isolated_galaxies(built5):
    """Aperture fluxes of bright isolated galaxies on the calexps: their ratio
    between two bands is the truth colour within the noise (VARIANCE plane) and
    the bands' different aperture losses."""
    spec = built5["spec"]
    gal = _truth_table(spec, "i", "galaxies")
    keep, radius = _isolated_bright_galaxies(gal, _truth_table(spec, "i", "stars"))
    sel = gal[keep]
    flux, var = {}, {}
    for b in ("g", "i", "z"):
        flux[b], var[b] = _aperture_fluxes(
            built5["calexp"][b], sel["X_IMAGE"], sel["Y_IMAGE"], radius[keep]
        )
    for a, b in (("g", "i"), ("i", "z")):
        ok = np.isfinite(flux[a]) & np.isfinite(flux[b])
        assert ok.sum() >= 3, (a, b, ok.sum())
        ratio = flux[a][ok] / flux[b][ok]
        true = 10 ** (-0.4 * (sel[f"mag_{a}"][ok] - sel[f"mag_{b}"][ok]))
        noise = ratio * np.sqrt(
            var[a][ok] / flux[a][ok] ** 2 + var[b][ok] / flux[b][ok] ** 2
        )
        pull = (ratio - true) / np.hypot(noise, APERTURE_SYSTEMATIC * true)
        assert np.all(np.abs(pull) < 4), (a, b, ratio / true, pull)
        assert abs(np.median(ratio / true) - 1) < APERTURE_SYSTEMATIC, (a, b)
