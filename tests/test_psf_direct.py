"""ufig's PSF profile (psf_model) and the direct per-star PSF fit (psf_direct)."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.compat.ufig_psf import import_psf_estimation
from hscsim_utils.numerics import psf_direct
from hscsim_utils.numerics.psf_model import (
    PARAM_NAMES,
    PSF_BETAS,
    StampRenderer,
    peak_pixel_fraction,
)
from tests import synthetic_psf

FLEXED = np.array([3.3, 0.45, 0.04, -0.03, 0.06, -0.05, 0.04, 0.07])


def ufig_photon_star(params, x, y, nphot, shape=(19, 19), seed=3):
    """One star drawn photon by photon with ufig's own star renderer."""
    import_psf_estimation()  # keeps TensorFlow out of the test process
    from ufig import rendering_util
    from ufig.plugins.render_stars_photon import integrate_image_phot

    np.random.seed(seed)  # noqa: NPY002 (ufig's photon buffer uses the global RNG)
    one = lambda v: np.array([float(v)])  # noqa: E731
    fwhm, betas = one(params[0]), np.array([PSF_BETAS])
    image = np.zeros(shape)
    integrate_image_phot(
        rendering_util.rng_buffer(),
        image,
        one(x),
        one(y),
        rendering_util.distribute_photons_psf_profiles(
            np.array([nphot]), 2, one(params[1])
        ),
        betas,
        rendering_util.compute_ellip_matrices(fwhm, one(params[2]), one(params[3])),
        rendering_util.compute_flexion_tensors(fwhm, *map(one, params[4:8])),
        rendering_util.compute_kurtoses(fwhm, np.zeros(1), betas),
        np.zeros((1, 2)),
        np.zeros((1, 2)),
        -5.0,
        False,
    )
    return image


@pytest.mark.parametrize(
    "params",
    [FLEXED, np.array([3.8, 0.7, -0.05, 0.02, -0.08, 0.04, -0.1, 0.03])],
)
def test_renderer_matches_ufig_photon_renderer(params):
    nphot, x, y = 3_000_000, 9.37, 9.71
    photons = ufig_photon_star(params, x, y, nphot)
    model = nphot * StampRenderer().render(params, x, y)
    chi2 = np.mean((photons - model) ** 2 / model)
    assert chi2 < 1.3  # Poisson noise only
    assert abs(photons.sum() / model.sum() - 1) < 2e-3
    # the same star without flexion (or with a 2% wider FWHM) is clearly worse
    no_flex = params.copy()
    no_flex[4:] = 0
    wider = params.copy()
    wider[0] *= 1.02
    for wrong in (no_flex, wider):
        other = nphot * StampRenderer().render(wrong, x, y)
        assert np.mean((photons - other) ** 2 / other) > 5 * chi2


def test_gradient_matches_finite_differences():
    renderer = StampRenderer()
    shape_par = np.array([9.4, 9.6, 3.5, 0.03, -0.02, 0.02, -0.01, 0.03, 0.01])
    _, grad = renderer.components_and_grad(shape_par)
    for n in range(len(shape_par)):
        h = 1e-7 if n in (3, 4) else 1e-6
        up, down = shape_par.copy(), shape_par.copy()
        up[n] += h
        down[n] -= h
        fd = (renderer.components(up) - renderer.components(down)) / (2 * h)
        assert np.abs(fd - grad[:, n]).max() < 1e-5 * np.abs(fd).max()


def test_components_have_unit_flux_and_share_fwhm():
    renderer = StampRenderer(shape=(81, 81))
    comp = renderer.components(np.array([40.5, 40.5, 3.5, 0, 0, 0, 0, 0, 0]))
    # beta = 5 holds nearly all flux within 40 px; beta = 2 loses its far wings
    assert comp[1].sum() == pytest.approx(1.0, abs=1e-4)
    alpha2 = 3.5 / (2 * np.sqrt(2**0.5 - 1))
    assert comp[0].sum() == pytest.approx(1 - 1 / (1 + (40 / alpha2) ** 2), abs=2e-3)
    fine = StampRenderer(shape=(41, 41), n_inner=12, n_outer=12, r_inner=99)
    for k in range(2):  # half maximum 1.75 px from the centre: FWHM 3.5
        p = fine.components(np.array([20.5, 20.5, 3.5, 0, 0, 0, 0, 0, 0]))[k]
        assert p[20, 20] > 2 * p[20, 22] and p[20, 21] > 0.5 * p[20, 20]


def test_recovers_psf_parameters_at_realistic_snr():
    rng = np.random.default_rng(11)
    cube, truth, _ = synthetic_psf.synthetic_stamps(150, rng)
    res = psf_direct.fit_stamps(cube)
    assert np.mean(res["status"] == psf_direct.STATUS_OK) > 0.97
    est = res["params"]
    rel = est[:, 0] / truth[:, 0] - 1
    assert abs(np.nanmean(rel)) < 0.002 and np.nanstd(rel) < 0.01
    diff = est - truth
    limits = {"psf_flux_ratio": 0.05, "psf_e1": 0.006, "psf_e2": 0.006}
    limits.update({name: 0.015 for name in PARAM_NAMES[4:]})
    for k, name in enumerate(PARAM_NAMES[1:], start=1):
        assert abs(np.nanmean(diff[:, k])) < limits[name] / 4, name
        assert np.nanstd(diff[:, k]) < limits[name], name
    assert np.nanmedian(res["chi2_dof"]) == pytest.approx(1.0, abs=0.1)


def test_predictor_has_the_cnn_interface_and_masks_bad_pixels():
    rng = np.random.default_rng(5)
    cube, truth, _ = synthetic_psf.synthetic_stamps(6, rng, mag=(18.5, 19.0))
    predictor = psf_direct.DirectPSFPredictor()
    assert predictor.config["param_names"] == list(PARAM_NAMES)
    clean = predictor(cube, batchsize=500)
    assert clean.shape == (6, 8)
    damaged = cube.copy()
    damaged[:, 2, 3] = np.nan  # a dead pixel
    damaged[:, 15, 15] = 1e6  # and a cosmic ray, masked by the caller below
    weights = psf_direct.noise_weights(damaged)
    weights[:, 15, 15] = 0
    fit = psf_direct.fit_stamps(damaged, weights=weights)["params"]
    assert np.allclose(fit, clean, atol=2e-3)
    assert np.allclose(predictor(cube), clean)  # deterministic
    with pytest.raises(ValueError, match="shape"):
        predictor(cube[:, :15, :15])


def test_failed_fit_gives_nan_not_garbage():
    blank = np.zeros((2, 19, 19))
    blank[1] = np.random.default_rng(0).normal(0, 1, (19, 19))
    res = psf_direct.fit_stamps(blank)
    ok = res["status"] != psf_direct.STATUS_FAILED
    assert np.all(np.isnan(res["params"][~ok]))
    # whatever converged on pure noise must not look like a valid PSF
    assert not np.any(ok & (np.abs(res["params"][:, 0] - 3.5) < 0.5))


def test_neighbours_are_masked():
    rng = np.random.default_rng(8)
    renderer = StampRenderer()
    yy, xx = np.mgrid[0:19, 0:19] + 0.5
    cube, truth = np.empty((12, 19, 19)), np.empty((12, 8))
    for i in range(12):
        truth[i] = [
            rng.uniform(3.3, 3.9),
            rng.uniform(0.4, 0.6),
            *rng.normal(0, 0.03, 6),
        ]
        flux = 10 ** (-0.4 * (19.5 - 27.0))
        mu = renderer.render(truth[i], *rng.uniform(9, 10, 2), flux)
        angle = rng.uniform(0, 2 * np.pi)  # a galaxy 7.5 px away, 20% of the flux
        gx, gy = 9.5 + 7.5 * np.cos(angle), 9.5 + 7.5 * np.sin(angle)
        mu += (
            0.2
            * flux
            * np.exp(-0.5 * ((xx - gx) ** 2 + (yy - gy) ** 2) / 4)
            / (8 * np.pi)
        )
        cube[i] = rng.poisson(mu * 1000) / 1000 + rng.normal(0, 0.03, mu.shape)
    masked = psf_direct.fit_stamps(cube)
    plain = psf_direct.fit_stamps(cube, mask_rounds=0)
    assert np.all(masked["n_masked"] > 0) and np.all(plain["n_masked"] == 0)
    assert np.median(masked["chi2_dof"]) < 1.5 < 10 < np.median(plain["chi2_dof"])
    err = lambda res: np.abs(res["params"][:, 1] - truth[:, 1])  # noqa: E731
    assert np.median(err(masked)) < 0.06 < np.median(err(plain))
    rel = np.abs(masked["params"][:, 0] / truth[:, 0] - 1)
    assert np.median(rel) < 0.01


@pytest.mark.parametrize("beta", PSF_BETAS)
def test_peak_pixel_fraction_is_the_lowest_peak_of_the_moffat(beta):
    """The brightest pixel's share of a Moffat star sitting on a pixel corner,
    against a 400 x 400 midpoint sum; other placements have a higher peak."""
    fwhm = 3.6
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))

    def pixel_share(dx, dy):
        t = (np.arange(400) + 0.5) / 400
        r2 = ((t[None, :] - dx) ** 2 + (t[:, None] - dy) ** 2) / alpha**2
        return ((beta - 1) / (np.pi * alpha**2) * (1 + r2) ** -beta).mean()

    corner = peak_pixel_fraction(fwhm, beta)
    assert corner == pytest.approx(pixel_share(0.0, 0.0), rel=1e-5)
    for dx, dy in [(0.5, 0.5), (0.25, 0.1), (0.5, 0.0), (0.1, 0.4)]:
        assert pixel_share(dx, dy) > corner


_FIT_IN_A_NEW_PROCESS = """
import sys
import numpy as np
from hscsim_utils.numerics import psf_direct
from tests import synthetic_psf

cube, _, _ = synthetic_psf.synthetic_stamps(40, np.random.default_rng(5))
theta = psf_direct.fit_stamps(cube)["theta"]
np.save(sys.argv[1], theta)
print(sum(psf_direct._fit_all.stats.cache_hits.values()))
"""


@pytest.mark.slow
def test_fit_is_the_same_freshly_compiled_and_loaded_from_the_cache(tmp_path):
    """The first run of a new checkout compiles the fit; every later run loads
    it from numba's disk cache. Both must give the same numbers to the last
    bit (with ``fastmath`` they differed by up to 4e-11)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTHONPATH": str(root)}  # fmt: skip
    hits, fits = [], []
    for run in ("compiled", "cached"):
        out = tmp_path / f"{run}.npy"
        done = subprocess.run(
            [sys.executable, "-c", _FIT_IN_A_NEW_PROCESS, str(out)],
            cwd=root, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        hits.append(int(done.stdout.split()[-1]))
        fits.append(np.load(out))
    assert hits == [0, 1]  # the first compiled the fit, the second loaded it
    assert np.isfinite(fits[0]).sum() > 0.9 * fits[0].size
    assert fits[0].tobytes() == fits[1].tobytes()
