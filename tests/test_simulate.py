"""Stage 06: GalSBI + UFig simulation of a patch, on a small fabricated run folder."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from importlib.resources import files

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from cosmic_toolbox import arraytools as at
from scipy.spatial import cKDTree

from hscsim_utils.compat.galsbi import mended_galsbi_class
from hscsim_utils.errors import InputError, ToolError
from hscsim_utils.stages import quality, simulate
from tests.fabricated_run import make_run_folder, make_tile, patch_wcs
from tests.run_products import written_products

SHAPE = (500, 500)
SEED = 3
BSIG = 0.03


@pytest.fixture(scope="module")
def config():
    return simulate.load_config()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """One simulation with the direct PSF estimator measuring its PSF."""
    tf_before = "tensorflow" in sys.modules
    root = tmp_path_factory.mktemp("sim")
    run = make_run_folder(root, SHAPE, bsig=BSIG, star_grid_step=100)
    tile = make_tile(root, seed=SEED)
    sim = simulate.run_simulation(tile, run, measure_psf="direct")
    return tile, run, sim, tf_before


def test_outputs_in_place_and_loadable(simulated):
    tile, run, sim, _ = simulated
    assert sim.directory == run.sim_baseline
    sim_dir = run.sim_baseline.parent
    leftovers = [p.name for p in sim_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    manifest = json.loads((sim.directory / simulate.MANIFEST).read_text())
    assert manifest["settings"] == {
        "galaxy_model": "Moser+24", "posterior_index": 0, "seed": SEED, "band": "i",
        "bands": ["i"],
    }  # fmt: skip
    assert str(sim.directory) in manifest["parameters"]["filepath_psfmodel_output"]
    images = simulate.load_simulation(run.sim_baseline).load_images()
    assert {k: v.shape for k, v in images.items()} == dict.fromkeys(
        ("image", "segmentation", "background"), SHAPE
    )
    cats = sim.load_catalogs()
    assert {"sextractor", "ucat galaxies", "ucat stars"} <= set(cats)
    se = cats["sextractor"]
    assert len(se) > 50 and {"MAG_AUTO", "FLUX_RADIUS", "ELLIPTICITY"} <= set(
        se.dtype.names
    )
    assert set(np.unique(se["star_gal"])) <= {-200, 0, 1}
    assert (se["star_gal"] == 1).sum() >= 10  # the grid stars are found


def test_patch_parameters_reach_ufig(simulated):
    _, run, sim, _ = simulated
    p = sim.parameters
    assert p["gain_dict"]["i"] == pytest.approx(3.0 * 20)  # gain x nexp
    assert p["exposure_time_dict"]["i"] == pytest.approx(270.0)
    assert p["saturation_level_dict"]["i"] == 1500.0
    assert p["sextractor_binary"].endswith(("source-extractor", "sex"))
    assert p["filepath_sysmaps_dict"]["i"] == str(run.sysmaps)
    image = sim.load_images()["image"]
    assert image.max() <= 1500.0  # saturation level of the patch


def test_gaia_stars_land_on_their_wcs_position(simulated):
    """Stars at the data WCS position; the image header is the data WCS."""
    _, run, sim, _ = simulated
    se = sim.load_catalogs()["sextractor"]
    with h5py.File(run.gaia, "r") as fh5:
        gaia = fh5["data"][()]
    wcs = patch_wcs(SHAPE)
    x, y = wcs.all_world2pix(gaia["ra"], gaia["dec"], 1)
    inside = (x > 20) & (x < SHAPE[1] - 20) & (y > 20) & (y < SHAPE[0] - 20)
    assert inside.sum() >= 16
    tree = cKDTree(np.c_[se["XWIN_IMAGE"], se["YWIN_IMAGE"]])
    _, j = tree.query(np.c_[x[inside], y[inside]])
    dx, dy = se["XWIN_IMAGE"][j] - x[inside], se["YWIN_IMAGE"][j] - y[inside]
    # ufig's own conversion would put every star 0.5 px off in x and y
    assert abs(np.median(dx)) < 0.05 and abs(np.median(dy)) < 0.05
    header = fits.getheader(sim.image_path)
    assert (header["CRPIX1"], header["CRPIX2"]) == tuple(wcs.wcs.crpix)
    ra, dec = WCS(header).all_pix2world(se["XWIN_IMAGE"][j], se["YWIN_IMAGE"][j], 1)
    sep = np.hypot((ra - gaia["ra"][inside]) * np.cos(np.radians(dec)),
                   dec - gaia["dec"][inside]) * 3600  # fmt: skip
    assert np.median(sep) < 0.02  # arcsec


def test_background_noise_follows_the_bsig_map(simulated):
    """Noise = bsig map smoothed by ufig's Lanczos kernel, plus the shot noise of
    the light of undetected galaxies (one photon is 1 / gain ADU)."""
    _, _, sim, _ = simulated
    images = sim.load_images()
    assert set(images) == {"image", "segmentation", "background"}
    some = sim.load_images(("segmentation", "image"))  # what the realism checks read
    assert set(some) == {"image", "segmentation"}
    assert all(np.array_equal(some[k], images[k]) for k in some)
    with pytest.raises(ValueError, match="no image \\['psf'\\]"):
        sim.load_images(("image", "psf"))
    bkg = quality.background_pixels(images["image"], images["segmentation"])
    kernel = np.loadtxt(
        str(files("ufig") / "res/resampling/lanczos_resampling_kernel_n3.txt")
    )
    kernel /= kernel.sum()
    undetected_light = bkg.mean()
    assert 0 < undetected_light < BSIG
    gain = sim.parameters["gain_dict"]["i"]
    expected = np.sqrt(BSIG**2 * np.sum(kernel**2) + undetected_light / gain)
    assert quality.robust_std(bkg) == pytest.approx(expected, rel=0.04)


def test_psf_of_the_simulation_is_measured(simulated):
    _, _, sim, _ = simulated
    assert sim.psf_catalog_path is not None
    psf_cat = at.load_hdf_cols(str(sim.psf_catalog_path))
    used = psf_cat["FLAGS_STARS"] == 0
    assert used.sum() >= 5
    assert np.all(psf_cat["psf_fwhm"][used] == pytest.approx(3.6))
    assert quality.psf_fwhm_max_abs_diff(psf_cat) < 0.3


def test_tensorflow_not_imported(simulated):
    *_, tf_before = simulated
    if not tf_before:
        assert "tensorflow" not in sys.modules


def test_same_seed_same_image_other_seed_differs(simulated):
    tile, run, sim, _ = simulated
    first = sim.load_images()["image"]
    again = simulate.run_simulation(
        tile, run, out=run.root / "sim" / "again", measure_psf="none"
    )
    assert np.array_equal(again.load_images()["image"], first)
    other = simulate.run_simulation(tile, run, seed=SEED + 1, measure_psf="none",
                                    out=run.root / "sim" / "other")  # fmt: skip
    assert other.settings.seed == SEED + 1
    assert not np.array_equal(other.load_images()["image"], first)


def test_mended_rendering_equals_ufigs_own(simulated, monkeypatch):
    """ufig's threaded rendering, unmended, draws the same photons (same chunks,
    same random streams); only pixels where both threads met can differ."""
    import contextlib

    from hscsim_utils.compat import ufig_render as ufig_render_fixes

    tile, run, sim, _ = simulated
    monkeypatch.setattr(ufig_render_fixes, "deterministic_threaded_rendering",
                        lambda shape: contextlib.nullcontext())  # fmt: skip
    plain = simulate.run_simulation(
        tile, run, out=run.root / "sim" / "plain", measure_psf="none"
    )
    a, b = plain.load_images()["image"], sim.load_images()["image"]
    assert np.mean(np.abs(a - b) > 1e-9) < 1e-3
    assert a.sum() == pytest.approx(b.sum(), rel=1e-6)


def test_image_does_not_depend_on_the_threads(simulated, monkeypatch):
    tile, run, sim, _ = simulated
    monkeypatch.setenv("HSCSIM_THREADS", "1")  # as in a batch of two workers
    one = simulate.run_simulation(
        tile, run, out=run.root / "sim" / "one_thread", measure_psf="none"
    )
    assert np.array_equal(one.load_images()["image"], sim.load_images()["image"])


def test_bright_star_wings_are_not_cut(simulated, tmp_path):
    """A G = 12 star is integrated on pixels down to 0.1 sigma of the noise; with
    ufig's default accuracy (0.3 ADU) nothing would be rendered beyond ~50 px."""
    from tests.fabricated_run import grid_stars, write_stars

    tile, _, _, _ = simulated
    run = make_run_folder(tmp_path, (200, 200), bsig=BSIG)
    write_stars(run, grid_stars(patch_wcs((200, 200)), (200, 200), 100, 12.0))
    sim = simulate.run_simulation(tile, run, measure_psf="none")
    stars = sim.load_catalogs()["ucat stars"]
    bright = stars[np.argmin(stars["mag"])]
    assert bright["mag"] < 15  # rendered on pixels
    image = sim.load_images()["image"]
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(xx + 0.5 - bright["x"], yy + 0.5 - bright["y"])
    wing = np.median(image[(r > 70) & (r < 90)])
    assert wing > 0.03  # about 0.07 ADU expected; 0 if the profile were cut


def test_stars_rendered_on_pixels_saturate_with_the_full_psf(simulated, tmp_path):
    """Every star brighter than the saturation magnitude of
    ``pixel_rendering_magnitude`` saturates even when ufig draws it photon by
    photon with the whole PSF (flexion included), so the pixel integration
    (no flexion) only ever renders saturated stars; fainter stars do not all
    saturate, so the check can fail."""
    from tests.fabricated_run import grid_stars, write_stars

    tile, _, _, _ = simulated
    shape = (360, 360)
    run = make_run_folder(tmp_path, shape, bsig=BSIG)
    extra = grid_stars(patch_wcs(shape), shape, 60, 0.0)
    extra["phot_g_mean_mag"] = np.linspace(12.0, 19.0, extra.size)
    write_stars(run, extra)
    info = simulate.read_skymapinfo(run.skymapinfo_npy, "i")
    m_sat = simulate.pixel_rendering_magnitude(info, "i", floor=0.0)
    photons = {"mag_pixel_rendering_stars_dict": {"i": 0.0}}
    sim = simulate.run_simulation(tile, run, measure_psf="none", overrides=photons)
    assert sim.parameters["mag_pixel_rendering_stars_dict"] == {"i": 0.0}
    stars = sim.load_catalogs()["ucat stars"]
    image = sim.load_images()["image"]
    peaks = []
    for star in stars:
        ix, iy = int(star["x"]), int(star["y"])
        if 3 <= ix < shape[1] - 3 and 3 <= iy < shape[0] - 3:
            peaks.append((star["mag"], image[iy - 3 : iy + 4, ix - 3 : ix + 4].max()))
    mag, peak = np.array(peaks).T
    satur = info["satur_i"]
    assert (mag < m_sat).sum() >= 5
    assert np.all(peak[mag < m_sat] >= satur)
    assert np.any(peak[(mag > m_sat) & (mag < m_sat + 3)] < satur)


def test_failed_run_keeps_previous_result(simulated):
    tile, run, sim, _ = simulated
    before = (sim.directory / simulate.MANIFEST).read_text()
    with pytest.raises(Exception, match="nowhere"):
        simulate.run_simulation(
            tile, run, measure_psf="none",
            overrides={"besancon_map_path": "/nowhere/besancon.h5"},
        )  # fmt: skip
    assert (sim.directory / simulate.MANIFEST).read_text() == before
    assert not [p for p in sim.directory.parent.iterdir() if p.name.startswith(".")]


def test_run_writes_exactly_the_declared_products(simulated, tmp_path):
    tile, _, _, _ = simulated
    run = make_run_folder(tmp_path, (200, 200), bsig=BSIG)
    before = set(run.root.rglob("*"))
    sim = simulate.run(tile, run, simulate.Params())
    assert written_products(run, before) == set(simulate.STAGE.writes)
    assert sim.directory == run.sim_baseline and sim.settings.seed == SEED
    again = simulate.load_simulation(run.sim_baseline)
    assert again.settings == sim.settings and again.image_path.is_file()


# ---------------------------------------------------------------- no simulation


def test_params_validate_themselves():
    assert simulate.Params() == simulate.Params("", -1, -1, "auto")
    for bad, fragment in [
        (dict(posterior_index=-2), r"^simulate\.posterior_index: must be a non-neg"),
        (dict(seed=1.5), r"simulate\.seed"),
        (dict(seed=True), r"simulate\.seed"),
        (dict(measure_psf="always"), r"simulate\.measure_psf: must be one of auto"),
        (dict(galaxy_model=None), r"simulate\.galaxy_model"),
    ]:
        with pytest.raises(InputError, match=fragment):
            simulate.Params(**bad)


def test_unknown_galaxy_model(tmp_path, config):
    with pytest.raises(InputError, match=r"galaxy_model.*Moser\+24.*Fischbacher\+24"):
        simulate.resolve_settings(make_tile(tmp_path), config, galaxy_model="Foo+99")


def test_posterior_index_out_of_range(tmp_path, config):
    with pytest.raises(InputError, match=r"posterior_index: 2000 .* 0\.\.1999"):
        simulate.resolve_settings(make_tile(tmp_path), config, posterior_index=2000)


def test_settings_from_tile_or_arguments(tmp_path, config):
    tile = make_tile(tmp_path, seed=11, posterior_index=5)
    s = simulate.resolve_settings(tile, config)
    assert (s.galaxy_model, s.posterior_index, s.seed) == ("Moser+24", 5, 11)
    s = simulate.resolve_settings(tile, config, posterior_index=7, seed=0)
    assert (s.posterior_index, s.seed) == (7, 0)


def test_posterior_not_available(tmp_path, config, monkeypatch):
    from galsbi import load

    def offline(name):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(load, "load_abc_posterior", offline)
    with pytest.raises(ToolError, match="hscsim data"):
        simulate.resolve_settings(
            make_tile(tmp_path), config, galaxy_model="Fischbacher+24"
        )


def test_model_parametrisations_match_galsbi(config):
    import importlib

    for model, settings in config.GALAXY_MODELS.items():
        ref = importlib.import_module(f"galsbi.configs.config_{model}_image")
        for key, value in settings.items():
            assert np.array_equal(getattr(ref, key), value), (model, key)
    models = config.GALAXY_MODELS
    assert (
        models["Moser+24"]["lum_fct_parametrization"]
        != models["Fischbacher+24"]["lum_fct_parametrization"]
    )


def test_simulation_extracts_like_stage_03(config):
    from hscsim_utils.stages import source_extraction as extraction

    assert config.sextractor_config == extraction.DEFAULT_CONFIG
    assert config.sextractor_params == extraction.DEFAULT_PARAMS
    assert config.sextractor_filter == extraction.DEFAULT_FILTER


def test_missing_input_names_file_and_stage(tmp_path):
    run = make_run_folder(tmp_path, (100, 100))
    run.psf_model.unlink()
    with pytest.raises(InputError, match=r"psf_model\.h5: not found; run stage 05"):
        simulate.check_band_inputs(run, (100, 100))
    with pytest.raises(InputError, match="shapes"):
        other = make_run_folder(tmp_path / "b", (100, 120))
        simulate.check_band_inputs(other, (100, 100))


def test_bad_skymapinfo(tmp_path):
    run = make_run_folder(tmp_path, (100, 100))
    rec = np.load(run.skymapinfo_npy)
    np.save(run.skymapinfo_npy, rec[[n for n in rec.dtype.names if n != "gain_i"]])
    with pytest.raises(InputError, match=r"missing fields \['gain_i'\]"):
        simulate.read_skymapinfo(run.skymapinfo_npy, "i")


def test_tile_parameters(tmp_path):
    run = make_run_folder(tmp_path, (100, 120))
    bands = simulate.read_band_inputs({"i": run})
    info = bands["i"].info
    settings = simulate.SimulationSettings("Moser+24", 0, 5, "i")
    p = simulate.tile_parameters(bands, run, settings, {"x": 1}, tmp_path)
    assert (p["size_x"], p["size_y"]) == (120, 100)
    assert (p["crpix_ra"], p["crpix_dec"]) == (info["CRPIX1"], info["CRPIX2"])
    assert p["filepath_gaia"] == str(tmp_path / simulate.GAIA_UFIG)
    assert p["filepath_gaia_dict"] == {"i": str(run.gaia)}  # PSF estimation
    assert p["bkg_noise_amp_dict"]["i"] == 0.0  # GalSBI renders the faint light
    assert p["seed"] == 5 and p["x"] == 1
    assert p["render_stars_accuracy"] == pytest.approx(0.1 * 0.03)  # 0.1 x bsig


def test_tile_parameters_of_several_bands(tmp_path):
    """Every per-band entry holds each band's own value; detection in r."""
    runs = {
        "g": make_run_folder(tmp_path / "g", (100, 120), bsig=0.02, band="g"),
        "r": make_run_folder(tmp_path / "r", (100, 120), bsig=0.05, band="r"),
    }
    rec = np.load(runs["g"].skymapinfo_npy)
    rec["magzero_g"] = 26.5
    np.save(runs["g"].skymapinfo_npy, rec)
    bands = simulate.read_band_inputs(runs)
    settings = simulate.SimulationSettings("Moser+24", 0, 5, "r", ("g", "r"))
    p = simulate.tile_parameters(bands, runs["r"], settings, {}, tmp_path)
    assert p["filters"] == ["g", "r"]
    assert p["reference_band"] == "r"
    assert p["sextractor_forced_photo_detection_bands"] == ["r"]
    assert p["magzero_dict"] == {"g": 26.5, "r": 27.0}
    assert p["filepath_sysmaps_dict"] == {b: str(runs[b].sysmaps) for b in runs}
    assert p["filepath_psfmodel_input_dict"] == {
        b: str(runs[b].psf_model) for b in runs
    }
    assert p["sextractor_mask_name_dict"] == {b: str(runs[b].mask) for b in runs}
    assert p["filepath_overlapblock"] == str(runs["r"].overlap)
    # star profiles are integrated down to the quieter band's noise
    assert p["render_stars_accuracy"] == pytest.approx(0.1 * 0.02)
    with pytest.raises(InputError, match=r"no inputs for bands \['z'\]"):
        simulate.tile_parameters(
            bands, runs["r"], dataclasses.replace(settings, bands=("r", "z")), {},
            tmp_path,
        )  # fmt: skip


def test_bands_must_share_one_pixel_grid(tmp_path):
    g = make_run_folder(tmp_path / "g", (100, 120), band="g")
    r = make_run_folder(tmp_path / "r", (100, 120), band="r")
    rec = np.load(r.skymapinfo_npy)
    rec["CRVAL1"] += 1e-3
    np.save(r.skymapinfo_npy, rec)
    with pytest.raises(InputError, match=r"band r's \['CRVAL1'\] differ from band g"):
        simulate.read_band_inputs({"g": g, "r": r})


def test_settings_name_the_detection_band_among_the_bands():
    s = simulate.SimulationSettings("Moser+24", 0, 1, "i")
    assert s.bands == ("i",)
    assert simulate.SimulationSettings("M", 0, 1, "i", ["g", "i"]).bands == ("g", "i")
    with pytest.raises(InputError, match="must be distinct and hold band 'i'"):
        simulate.SimulationSettings("M", 0, 1, "i", ("g", "r"))
    with pytest.raises(InputError, match="must be distinct"):
        simulate.SimulationSettings("M", 0, 1, "i", ("i", "i"))


def test_psf_measurement_choice(config, monkeypatch):
    monkeypatch.setattr(config, "filepath_cnn", None)
    assert simulate.psf_measurement("auto", config) == "none"
    assert simulate.psf_measurement("direct", config) == "direct"
    with pytest.raises(InputError, match="CNN"):
        simulate.psf_measurement("cnn", config)
    with pytest.raises(InputError, match="measure_psf"):
        simulate.psf_measurement("always", config)
    monkeypatch.setattr(config, "filepath_cnn", "/cache/psf_cnn/pretrained")
    assert simulate.psf_measurement("auto", config) == "cnn"
    assert simulate.psf_measurement("auto", config, n_bands=2) == "none"
    with pytest.raises(InputError, match="single-band runs only"):
        simulate.psf_measurement("direct", config, n_bands=2)


def test_posterior_row_with_psf_betas(monkeypatch):
    """galsbi's own _run fails on such a row; ours passes plain values on."""
    from galsbi import GalSBI
    from ufig import run_util

    row = np.zeros(1, dtype=[("lum_fct_alpha_red", "f8"), ("moffat_beta1", "f8"),
                             ("moffat_beta2", "f8")])[0]  # fmt: skip
    captured = {}
    monkeypatch.setattr(run_util, "run_ufig_from_config",
                        lambda config, **kw: captured.update(kw))  # fmt: skip
    with pytest.raises(IndexError):
        GalSBI("Moser+24")._run("cfg", row, filters=["i"])
    mended_galsbi_class()("Moser+24")._run("cfg", row, filters=["i"], seed=1)
    assert "moffat_beta1" not in captured and "psf_beta" not in captured
    assert captured["lum_fct_alpha_red"] == 0.0
    assert type(captured["lum_fct_alpha_red"]) is float


IMPORTS_TORCH = """
import sys
{setup}
import galsbi.ucat.config.common, ufig.config.common
from galsbi import GalSBI, load
import galsbi.ucat.plugins.sample_galaxies
print("torch" in sys.modules)
import torch
print(hasattr(torch, "Tensor"))
"""


MENDED = "from hscsim_utils.compat.galsbi import import_galsbi; import_galsbi()"


@pytest.mark.parametrize(("setup", "loaded"), [("", "True"), (MENDED, "False")])
def test_galsbi_imports_torch_unless_mended(setup, loaded):
    """galsbi's import loads PyTorch; after import_galsbi the Moser+24 chain's
    modules load without it, and a later ``import torch`` gets the real one."""
    code = IMPORTS_TORCH.format(setup=setup)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [loaded, "True"]


@pytest.mark.parametrize("counts", simulate.COUNTS)
def test_each_counts_mode_gives_objects_their_flux(tmp_path, counts):
    """Exposures, exposure time and summed gain 1.5 times deeper on the left half:
    in every mode the photons of an object over the gain are its catalogue flux
    on both halves (ufig's own gain_map would make the left half 0.2 mag too
    bright, see test_ufig_counts_fixes), and the mode is recorded."""
    run = make_run_folder(tmp_path, SHAPE, bsig=BSIG)
    left = np.s_[:, : SHAPE[1] // 2]
    with h5py.File(run.sysmaps, "r+") as fh5:
        for name in ("map_expt", "map_gain", "map_nexp"):
            values = fh5[name][()]
            values[left] = values[left] * 3 // 2
            fh5[name][...] = values
    tile = make_tile(tmp_path, seed=SEED)
    sim = simulate.run_simulation(tile, run, measure_psf="none", counts=counts)
    manifest = json.loads((sim.directory / simulate.MANIFEST).read_text())
    assert manifest["parameters"]["exp_time_type"] == counts
    gal = sim.load_catalogs()["ucat galaxies"]
    gain = sim.parameters["gain_dict"]["i"]
    ratio = gal["nphot"] / gain / 10 ** (0.4 * (27.0 - gal["mag"]))
    bright = (gal["mag"] < 25.0) & (gal["y"] > 0) & (gal["y"] < SHAPE[0])
    on_left = gal["x"] < SHAPE[1] // 2
    for half in (on_left, ~on_left):
        assert (bright & half).sum() > 30
        assert np.median(ratio[bright & half]) == pytest.approx(1.0, abs=0.02)


def test_measured_photon_noise_gives_stars_the_noise_of_the_measured_gain(tmp_path):
    """Two simulations that differ only in the random stream of the star
    rendering: their difference on star pixels has the variance 2 x image /
    measured gain (stage 01's, 50 x the tutorial's here), not 2 x image /
    tutorial gain; the choice is recorded."""
    from tests.fabricated_run import GAIN, MEASURED_GAIN_FACTOR, N_EXP

    run = make_run_folder(tmp_path, SHAPE, bsig=BSIG, star_grid_step=100)
    tile = make_tile(tmp_path, seed=SEED)
    images = []
    for offset in (0, 7):
        sim = simulate.run_simulation(
            tile, run, out=tmp_path / f"sim{offset}", measure_psf="none",
            photon_noise="measured", overrides={"star_render_seed_offset": offset},
        )  # fmt: skip
        images.append(sim.load_images()["image"].astype(np.float64))
    tutorial = GAIN * N_EXP
    measured = MEASURED_GAIN_FACTOR * tutorial
    p = sim.parameters
    assert p["photon_noise"] == "measured"
    assert p["mag_pixel_rendering_stars_dict"] == {
        "i": simulate.ALL_STARS_ON_PIXELS_MAG
    }
    assert p["star_photon_noise_gain"] == pytest.approx(measured)
    diff, mean = images[0] - images[1], 0.5 * (images[0] + images[1])
    core = (mean > 30 * BSIG) & (mean < 0.5 * 1500.0) & (diff != 0)
    assert core.sum() > 200
    observed = (diff[core] ** 2).sum()
    assert observed / (2 * mean[core] / measured).sum() == pytest.approx(1.0, abs=0.2)
    assert observed / (2 * mean[core] / tutorial).sum() < 0.1


def test_measured_photon_noise_needs_a_measured_gain(tmp_path):
    run = make_run_folder(tmp_path, (100, 120))
    rec = np.load(run.skymapinfo_npy)
    rec["gain_eff_i"] = np.nan
    np.save(run.skymapinfo_npy, rec)
    info = simulate.read_skymapinfo(run.skymapinfo_npy, "i")
    src = run.skymapinfo_npy
    assert simulate.star_noise_scale(info, "i", "tutorial", src) == 1.0
    with pytest.raises(InputError, match="gain_eff_i is NaN"):
        simulate.star_noise_scale(info, "i", "measured", src)


def test_fine_tuning_stages_simulate_with_stage_06_choices(simulated):
    """Stages 08 and 09 pass these to their simulations: model, sample and seed
    of the baseline, and its counts and photon-noise choices."""
    _, run, sim, _ = simulated
    assert simulate.baseline_choices(run) == {
        "galaxy_model": "Moser+24", "posterior_index": 0, "seed": SEED,
        "counts": "variable", "photon_noise": "tutorial",
    }  # fmt: skip


def test_stage_06_reads_every_band_where_the_runner_ran_it(tmp_path):
    from hscsim_utils.hsc.tile import BandFiles
    from hscsim_utils.runfolder import RunFolder

    run = RunFolder(tmp_path / "run")
    one = make_tile(tmp_path)
    assert run.band_runs(one.bands, one.band) == {"i": run}
    files = BandFiles(tmp_path / "g.fits", tmp_path / "g.csv", tmp_path / "gm.csv")
    two = make_tile(tmp_path, bands={"g": files}, detection_band="i")
    assert two.band_names == ("g", "i")
    assert run.band_runs(two.bands, two.band) == {
        "g": RunFolder(run.root / "bands" / "g"), "i": run,
    }  # fmt: skip
