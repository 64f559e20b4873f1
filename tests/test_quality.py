"""Stage 07: quality metrics and plots, on synthetic images and catalogues."""

from __future__ import annotations

import json
import math

import h5py
import matplotlib
import numpy as np
import pytest
from astropy.io import fits
from cosmic_toolbox import arraytools as at

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.files import write_calexp
from hscsim_utils.metrics import (
    CLOSURE_KEYS,
    REALISM_KEYS,
    read_metrics,
    read_section,
    write_section,
)
from hscsim_utils.numerics import realism_stats as rs
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import closure, quality, quality_plots, simulate
from tests.fabricated_run import make_tile, patch_wcs, wcs_header

matplotlib.use("Agg")

SHAPE = (300, 400)
SIGMA = 0.02


def catalog(rng, n, n_junk=0, shape=SHAPE):
    """Objects with the same distributions; ``n_junk`` more that every cut drops."""
    total = n + 3 * n_junk
    names = ("XWIN_IMAGE", "YWIN_IMAGE", "FLAGS", "MAG_AUTO", "FLUX_RADIUS",
             "ELLIPTICITY")  # fmt: skip
    cat = np.zeros(total, dtype=[(c, "i2" if c == "FLAGS" else "f4") for c in names])
    cat["XWIN_IMAGE"] = rng.uniform(101, shape[1], total)  # x < 100.5 is masked
    cat["YWIN_IMAGE"] = rng.uniform(1, shape[0], total)
    cat["MAG_AUTO"] = rng.uniform(20, 26, total)
    cat["FLUX_RADIUS"] = rng.lognormal(1, 0.3, total)
    cat["ELLIPTICITY"] = rng.beta(2, 5, total)
    flagged, masked, unmeasured = (slice(n + i * n_junk, n + (i + 1) * n_junk)
                                   for i in range(3))  # fmt: skip
    cat["FLAGS"][flagged] = 2
    cat["XWIN_IMAGE"][masked] = rng.uniform(1, 99, n_junk)
    cat["MAG_AUTO"][unmeasured] = 99.0
    return cat


def pixel_mask(shape=SHAPE):
    masked = np.zeros(shape, bool)
    masked[:, :100] = True
    return masked


def image(rng, sigma, shape=SHAPE):
    """Noise, one bright source in the segmentation, junk on masked pixels."""
    img = rng.normal(0.0, sigma, shape).astype(np.float32)
    seg = np.zeros(shape, np.int32)
    seg[200:240, 300:340] = 1
    img[200:240, 300:340] += 5.0
    img[:, :100] += 50.0  # masked
    img[0, 150] = np.nan
    return img, seg


# ---------------------------------------------------------------- statistics


def test_robust_std_and_ks():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 2.0, 200_000)
    assert quality.robust_std(a) == pytest.approx(2.0, rel=0.01)
    assert quality.robust_std(np.concatenate([a, np.full(1000, 1e6)])) == (
        pytest.approx(2.0, rel=0.02)
    )  # outliers barely matter
    assert quality.ks_statistic(a, a) == 0.0
    assert quality.ks_statistic(a, a + 100) == 1.0
    assert quality.ks_statistic(a, []) is None
    assert quality.robust_std([]) is None
    assert quality.ratio(1.0, 0.0) is None and quality.ratio(None, 1.0) is None


def test_subsample_is_seeded_and_bounded():
    values = np.arange(1000)
    a = quality.subsample(values, 100, seed=4)
    assert len(a) == 100 and len(np.unique(a)) == 100
    assert np.array_equal(a, quality.subsample(values, 100, seed=4))
    assert not np.array_equal(a, quality.subsample(values, 100, seed=5))
    assert np.array_equal(quality.subsample(values, 5000), values)


def test_identical_inputs_give_ratio_one_and_ks_zero():
    rng = np.random.default_rng(2)
    bkg = rng.normal(0, SIGMA, 50_000)
    cat = catalog(rng, 300)
    out = quality.compute_realism(bkg, bkg.copy(), cat, cat.copy())
    assert out["bkg_std_ratio"] == 1.0 and out["n_detect_ratio"] == 1.0
    for key in ("bkg_ks", "mag_auto_ks", "flux_radius_ks", "ellipticity_ks"):
        assert out[key] == 0.0
    assert out["psf_fwhm_max_abs_diff"] is None
    assert set(out) == set(REALISM_KEYS)


def test_wider_noise_and_other_objects():
    rng = np.random.default_rng(3)
    data_bkg = rng.normal(0, SIGMA, 400_000)
    sim_bkg = rng.normal(0, 1.1 * SIGMA, 400_000)
    data, sim = catalog(rng, 500), catalog(rng, 550)
    sim["MAG_AUTO"] += 1.0  # a magnitude shift the KS statistic must see
    out = quality.compute_realism(sim_bkg, data_bkg, sim, data, max_pixels=100_000)
    assert out["bkg_std_ratio"] == pytest.approx(1.1, rel=0.01)
    assert 0.02 < out["bkg_ks"] < 0.08  # same mean, 10% wider
    assert out["n_detect_ratio"] == pytest.approx(1.1)
    assert out["mag_auto_ks"] > 0.1
    assert out["flux_radius_ks"] < 0.1 and out["ellipticity_ks"] < 0.1


def test_background_pixels_and_object_cuts():
    rng = np.random.default_rng(4)
    img, seg = image(rng, SIGMA)
    masked = pixel_mask()
    bkg = quality.background_pixels(img, seg, masked)
    assert bkg.size == (~masked).sum() - 40 * 40 - 1  # minus source and NaN pixel
    assert np.abs(bkg).max() < 10 * SIGMA
    with pytest.raises(InputError, match="segmentation"):
        quality.background_pixels(img, seg[:-1])
    cat = catalog(rng, 200, n_junk=30)
    keep = quality.object_selection(cat, masked)
    assert keep.sum() == 200 and keep[:200].all()
    assert quality.object_selection(cat).sum() == 230  # without the pixel mask
    with pytest.raises(InputError, match="ELLIPTICITY"):
        quality.object_selection(at.delete_cols(cat, ["ELLIPTICITY"]))


def test_psf_fwhm_max_abs_diff():
    names = ("psf_fwhm", "psf_fwhm_ipt", "psf_fwhm_cnn", "FLAGS_STARS")
    cat = np.zeros(6, dtype=[(c, "i4" if c == "FLAGS_STARS" else "f4") for c in names])
    cat["psf_fwhm"] = [3.6, 3.6, 3.6, -200, 3.6, 3.6]
    cat["psf_fwhm_ipt"] = [3.65, 3.5, 3.7, 9.0, 5.0, 4.5]
    cat["psf_fwhm_cnn"] = [3.6, 3.5, 3.7, 3.6, 999.0, 3.6]
    cat["FLAGS_STARS"] = [0, 0, 0, 0, 0, 4]
    # unmatched (-200), unmeasured (999) and flagged stars do not count
    assert quality.psf_fwhm_max_abs_diff(cat) == pytest.approx(0.1, abs=1e-5)
    assert quality.psf_fwhm_max_abs_diff(None) is None
    cat["FLAGS_STARS"] = 1
    with pytest.warns(UserWarning, match="no PSF star"):
        assert quality.psf_fwhm_max_abs_diff(cat) is None


def test_number_counts_per_deg2_per_mag():
    mags = np.array([20.1, 20.2, 20.3, 20.6, 21.2])
    bins = np.array([20, 20.5, 21, 22.0])
    centres, density = quality.number_counts(mags, 0.5, bins=bins)
    assert np.allclose(centres, [20.25, 20.75, 21.5])
    assert np.allclose(density, [3 / 0.5 / 0.5, 1 / 0.5 / 0.5, 1 / 0.5 / 1.0])
    masked = pixel_mask()
    assert quality.area_deg2(masked, 0.168) == pytest.approx(
        300 * 300 * (0.168 / 3600) ** 2
    )
    with pytest.raises(InputError, match="area"):
        quality.number_counts(mags, 0.0)


def block(value=0.5, **values):
    """A realism block of the baseline simulation of a DEMO tile."""
    numbers = dict.fromkeys(REALISM_KEYS, value) | values
    return {"simulation": "sim/baseline", "data": "DEMO"} | numbers


def test_schema_check():
    good = dict.fromkeys(REALISM_KEYS, 0.5) | {"psf_fwhm_max_abs_diff": None}
    quality.check_schema(good, REALISM_KEYS)
    for bad in ({"bkg_ks": math.nan}, {"bkg_ks": True}, {"bkg_ks": "0.1"}):
        with pytest.raises(InputError, match="bkg_ks"):
            quality.check_schema(good | bad, REALISM_KEYS)
    with pytest.raises(InputError, match="missing"):
        quality.check_schema({"bkg_ks": 0.1}, REALISM_KEYS)


# ---------------------------------------------------------------- stage 07 end to end


def write_products(root, rng, sim_sigma=1.1 * SIGMA, n_sim=330, n_data=300):
    """Data products of stages 01-03 and a simulation in stage 06's layout."""
    run = RunFolder(root / "run")
    tile = make_tile(root)
    masked = pixel_mask()
    with h5py.File(run.mask, "w") as fh5:
        fh5["mask"] = masked.astype(np.int64) * 4
    data_img, data_seg = image(rng, SIGMA)
    write_calexp(tile.calexp, data_img, np.zeros(SHAPE, np.int32),
                 np.full(SHAPE, SIGMA**2, np.float32),
                 wcs_header(patch_wcs(SHAPE)))  # fmt: skip
    fits.writeto(run.sextractor_seg, data_seg)
    at.save_hdf_cols(str(run.sextractor_cat), catalog(rng, n_data, n_junk=20))
    sim_dir = run.sim_baseline
    sim_img, sim_seg = image(rng, sim_sigma)
    prefix = sim_dir / f"{simulate.FILE_PREFIX}_0_i"
    fits.writeto(f"{prefix}_image.fits", sim_img.astype(np.float64))
    for name, data in (("SEGMENTATION", sim_seg), ("BACKGROUND", 0 * sim_img)):
        with h5py.File(f"{prefix}_se_{name[:3].lower()}.h5", "w") as fh5:
            fh5[name] = data
    at.save_hdf(f"{prefix}_se.cat", catalog(rng, n_sim, n_junk=20))
    manifest = {"settings": {"galaxy_model": "Moser+24", "posterior_index": 0,
                             "seed": 1, "band": "i"},
                "parameters": {"pixscale": 0.168}}  # fmt: skip
    (sim_dir / simulate.MANIFEST).write_text(json.dumps(manifest))
    return tile, run


def test_stage07_metrics_json(tmp_path):
    rng = np.random.default_rng(5)
    tile, run = write_products(tmp_path, rng)
    others = {"timing": {"06_simulate": {"wall_s": 1.0}},
              "psf_finetune": {"after": {"psf_fwhm_max_abs_diff": 0.01}}}  # fmt: skip
    run.metrics.write_text(json.dumps(others | {"quality": {"stale": 1}}))
    with pytest.warns(UserWarning, match="truth_dir"):  # a DEMO tile without truth
        result = quality.run(tile, run, quality.Params())
    metrics = read_metrics(run.metrics)
    for name, section in others.items():
        assert metrics[name] == section  # other sections untouched
    assert set(metrics["quality"]) == {"realism", "closure"}  # replaced whole
    assert metrics["quality"]["realism"] == result.realism
    section = metrics["quality"]["realism"]
    assert section["simulation"] == result.simulation == "sim/baseline"
    assert section["data"] == "DEMO"
    quality.check_schema(section, REALISM_KEYS)
    assert section["bkg_std_ratio"] == pytest.approx(1.1, rel=0.03)
    assert section["half"] == "scoring"  # every realism number: the scoring half
    sim_obj, data_obj = result.inputs.objects("scoring")
    assert section["n_detect_ratio"] == pytest.approx(len(sim_obj) / len(data_obj))
    assert set(section["statistics"]) == set(rs.KINDS)
    for key in ("bkg_ks", "mag_auto_ks", "flux_radius_ks", "ellipticity_ks"):
        assert 0.0 <= section[key] < 0.2
    assert section["psf_fwhm_max_abs_diff"] is None  # no PSF catalogue of the sim


def test_stage07_redshifts_of_the_detected_galaxies(tmp_path):
    """With ufig's matched columns the section holds the n(z) block of the
    objects realism counts; its figure says it shows the simulation."""
    from numpy.lib import recfunctions

    rng = np.random.default_rng(8)
    tile, run = write_products(tmp_path, rng)
    path = run.sim_baseline / f"{simulate.FILE_PREFIX}_0_i_se.cat"
    cat = at.load_hdf(str(path))
    z = rng.uniform(0.2, 3.0, len(cat))
    star_gal = np.where(rng.random(len(cat)) < 0.1, 1, 0)
    cat = recfunctions.append_fields(cat, ("z", "star_gal"), (z, star_gal),
                                     usemask=False)  # fmt: skip
    path.unlink()
    at.save_hdf(str(path), cat)
    with pytest.warns(UserWarning, match="truth_dir"):
        result = quality.run(tile, run, quality.Params())
    block = read_metrics(run.metrics)["quality"]["redshifts"]
    assert block == result.redshifts
    assert block["simulation"] == "sim/baseline"
    selected = cat[quality.object_selection(cat, result.inputs.masked)]
    limits = block["limits"]
    for limit, row in limits.items():
        bright = selected[selected["MAG_AUTO"] < float(limit)]
        assert row["n_detected"] == len(bright)
        galaxies = bright["z"][bright["star_gal"] == 0]
        assert row["n_galaxies"] == len(galaxies) > 0
        assert row["z_median"] == pytest.approx(np.median(galaxies))
    fig = quality_plots.plot_redshift_distribution(block, tile.label)
    assert "SIMULATION of DEMO tile (simulated)" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


def test_stage07_floors_are_read_back_or_asked_for(tmp_path):
    rng = np.random.default_rng(9)
    tile, run = write_products(tmp_path, rng)
    for read in (quality.stage07_floors, quality.stage07_realism):
        with pytest.raises(InputError, match=r"of stage 07.*run stage 07 \(quality\)"):
            read(run)
    with pytest.warns(UserWarning, match="truth_dir"):
        result = quality.run(tile, run, quality.Params())
    floors = quality.stage07_floors(run)
    assert floors == result.inputs.reference().floors
    # stage 09 takes the baseline's realism block from here, as written
    assert quality.stage07_realism(run) == result.realism
    with pytest.raises(InputError, match="in band g"):
        quality.stage07_realism(run, "g", "i")


def test_a_stage_reading_another_stages_section_counts_it_by_content(tmp_path):
    from hscsim_utils.pipeline.fingerprint import DigestCache, _read_digest

    run = RunFolder(tmp_path / "run")
    write_section(run.metrics, "quality", {"realism": {"bkg_ks": 0.1}})
    before = _read_digest("metrics:quality", None, {}, run.root, DigestCache())
    write_section(run.metrics, "background_finetune", {"other": 1})
    assert _read_digest("metrics:quality", None, {}, run.root, DigestCache()) == before
    write_section(run.metrics, "quality", {"realism": {"bkg_ks": 0.2}})
    assert _read_digest("metrics:quality", None, {}, run.root, DigestCache()) != before
    # one block of it: stage 09 reads stage 07's realism block (its floors)
    block = _read_digest("metrics:quality.realism", None, {}, run.root, DigestCache())
    write_section(run.metrics, "quality", {"realism": {"bkg_ks": 0.2}, "colours": {}})
    again = _read_digest("metrics:quality.realism", None, {}, run.root, DigestCache())
    assert again == block
    write_section(run.metrics, "quality", {"realism": {"bkg_ks": 0.3}})
    again = _read_digest("metrics:quality.realism", None, {}, run.root, DigestCache())
    assert again != block


def test_stage07_inputs_must_fit(tmp_path):
    rng = np.random.default_rng(6)
    tile, run = write_products(tmp_path, rng)
    run.sextractor_seg.unlink()
    with pytest.raises(InputError, match="run stage 03"):
        quality.load_inputs(tile, run)
    fits.writeto(run.sextractor_seg, np.zeros((10, 10), np.int32))
    with pytest.raises(InputError, match="shape"):
        quality.load_inputs(tile, run)


def test_write_metrics_checks_schema(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(InputError, match="missing"):
        quality.write_metrics(run, {"bkg_ks": 0.1})
    with pytest.raises(InputError, match="lacks"):
        quality.write_metrics(run, dict.fromkeys(REALISM_KEYS, 0.5))
    assert not run.metrics.exists()
    closure = dict.fromkeys(CLOSURE_KEYS)
    quality.write_metrics(run, block(), closure)
    assert read_section(run.metrics, "quality") == {
        "realism": block(), "closure": closure,
    }  # fmt: skip
    quality.write_metrics(run, block(0.7))  # a REAL tile: no closure
    assert read_section(run.metrics, "quality") == {"realism": block(0.7)}


def test_a_realism_block_says_what_it_compares(tmp_path):
    rng = np.random.default_rng(8)
    tile, run = write_products(tmp_path, rng)
    moved = run.root / "elsewhere"
    run.sim_baseline.rename(moved)
    params = quality.Params(simulation="elsewhere")
    with pytest.warns(UserWarning, match="truth_dir"):
        result = quality.run(tile, run, params)
    assert result.realism["simulation"] == "elsewhere"
    real = make_tile(tmp_path, is_demo=False)
    result = quality.run(real, run, params)
    assert result.realism["data"] == "REAL" and result.closure is None
    assert read_section(run.metrics, "quality") == {"realism": result.realism}


@pytest.mark.parametrize("value", ["/abs/sim", "../other/sim", "a/../../b", 3])
def test_params_reject_a_simulation_outside_the_run_folder(value):
    with pytest.raises(InputError, match="quality.simulation"):
        quality.Params(simulation=value)


def test_other_sections_are_never_touched(tmp_path):
    path = tmp_path / "metrics.json"
    write_section(path, "quality", {"realism": block()})
    write_section(path, "psf_finetune", {"after": {"psf_fwhm_max_abs_diff": 0.1}})
    write_section(path, "quality", {"realism": block(0.2)})
    assert read_metrics(path) == {
        "quality": {"realism": block(0.2)},
        "psf_finetune": {"after": {"psf_fwhm_max_abs_diff": 0.1}},
    }  # fmt: skip


def test_data_side_read_once_gives_the_same_realism(tmp_path):
    """Stage 09 reads the data once for four simulations: same numbers."""
    tile, run = write_products(tmp_path, np.random.default_rng(7))
    first = quality.load_inputs(tile, run)
    expected = first.realism()
    again = quality.load_inputs(tile, run, None, first.data_side(), first.reference())
    assert again.data_image is first.data_image
    assert again.realism() == expected
    assert quality.load_inputs(tile, run).realism() == expected


def test_plots_say_what_the_data_is(tmp_path):
    rng = np.random.default_rng(7)
    tile, run = write_products(tmp_path, rng)
    inputs = quality.load_inputs(tile, run)
    sim_bkg, data_bkg = inputs.background()
    sim_obj, data_obj = inputs.objects()
    area = quality.area_deg2(inputs.masked, inputs.pixscale)
    figs = [
        quality_plots.plot_images(inputs.sim_image, inputs.data_image, tile.label),
        quality_plots.plot_background_histograms(sim_bkg, data_bkg, tile.label),
        quality_plots.plot_triangles(sim_obj, data_obj, tile.label),
        quality_plots.plot_number_counts(
            sim_obj["MAG_AUTO"], data_obj["MAG_AUTO"], area, tile.label
        ),  # fmt: skip
    ]
    for fig in figs:
        titles = [t.get_text() for t in fig.texts]
        titles += [ax.get_title() for ax in fig.axes]
        assert any("DEMO tile (simulated)" in t for t in titles)
        matplotlib.pyplot.close(fig)


# ---------------------------------------------------------------- closure


def write_closure_products(root):
    """Truth in the demo builder's layout and run products with known errors."""
    truth, run = root / "truth", RunFolder(root / "run")
    truth.mkdir()
    words = np.dtype([(f"bit{i}", np.uint64) for i in range(1, 6)])
    expt = np.full(SHAPE, 5400.0, np.float32)
    pointings = np.zeros(SHAPE, words)
    pointings["bit1"] = 0b1011
    pointings["bit3"][5, 5] = 1
    bsig = np.full(SHAPE, 0.03, np.float32)
    bsig[:10] = 0.0  # no data: not counted
    with h5py.File(truth / "sysmaps.h5", "w") as fh5:
        fh5["map_expt"], fh5["map_pointings"] = expt, pointings
        fh5["map_rms_realised"] = bsig
    est_expt, est_pointings = expt.copy(), pointings.copy()
    est_expt[3, 4] += 2.5
    est_pointings["bit1"][:7, 0] = 0b1010
    with h5py.File(run.sysmaps, "w") as fh5:
        fh5["map_expt"], fh5["map_pointings"] = est_expt, est_pointings
        fh5["map_bsig"] = np.where(bsig > 0, 0.9 * bsig, 0.05)
    mask = np.zeros(SHAPE, np.int32)
    mask[:, :100] = 4
    with h5py.File(truth / "mask.h5", "w") as fh5:
        fh5["mask"] = mask
    est_mask = mask.copy()
    est_mask[50, 150:163] = 2
    with h5py.File(run.mask, "w") as fh5:
        fh5["mask"] = est_mask
    stars = np.zeros(6, dtype=[("X_IMAGE", "f8"), ("Y_IMAGE", "f8"), ("mag", "f4")])
    stars["X_IMAGE"] = [150.0, 200.0, 250.0, 300.0, 350.0, 50.0]  # last one masked
    stars["Y_IMAGE"] = 150.0
    stars["mag"] = [20, 21, 22, 23, 25.5, 20]  # 25.5: too faint to count
    with h5py.File(truth / "stars.h5", "w") as fh5:
        fh5["data"] = stars
    cat = np.zeros(4, dtype=[("XWIN_IMAGE", "f4"), ("YWIN_IMAGE", "f4")])
    cat["XWIN_IMAGE"] = [150.3, 200.0, 252.0, 350.0]  # 250 missed by 2 px
    cat["YWIN_IMAGE"] = [150.4, 149.0, 150.0, 150.0]  # 300 not detected
    at.save_hdf_cols(str(run.sextractor_cat), cat)
    grid = fabricated_psf_grid()
    with h5py.File(truth / "psf_model.h5", "w") as fh5:
        fh5["grid_psf"] = grid
    model = grid.copy()
    model["psf_fwhm_ipt"] *= 1.02
    model["psf_e1_ipt"] += 0.01
    with h5py.File(run.psf_model, "w") as fh5:
        fh5["grid_psf"] = model
    return make_tile(root, truth_dir=truth), run


def fabricated_psf_grid():
    from tests.fabricated_run import psf_grid

    grid = psf_grid(SHAPE, 3.6, e1=0.02)
    grid["psf_fwhm_ipt"] += np.linspace(0, 0.3, len(grid))
    return grid


def test_closure_against_truth(tmp_path):
    tile, run = write_closure_products(tmp_path)
    out = closure.compute_closure(tile, run)
    assert set(out) == set(CLOSURE_KEYS)
    assert out["expt_map_max_abs_diff"] == pytest.approx(2.5)
    assert out["pointings_mismatch_pixels"] == 7
    assert out["bsig_median_rel_err"] == pytest.approx(-0.1, abs=1e-6)
    assert out["mask_mismatch_pixels"] == 13
    assert out["star_detect_frac"] == pytest.approx(2 / 4)
    assert out["psf_fwhm_bias_frac"] == pytest.approx(0.02, abs=1e-5)
    assert out["psf_fwhm_rms_frac"] == pytest.approx(0.02, abs=1e-5)
    assert out["psf_e1_rms"] == pytest.approx(0.01, abs=1e-6)
    assert out["psf_e2_rms"] == 0.0 and out["psf_flux_ratio_rms"] == 0.0
    quality.write_metrics(run, block(1.0), out)
    quality.check_schema(read_section(run.metrics, "quality")["closure"], CLOSURE_KEYS)


def test_closure_missing_product_gives_null(tmp_path):
    tile, run = write_closure_products(tmp_path)
    run.psf_model.unlink()
    (tile.truth_dir / "mask.h5").unlink()
    with pytest.warns(UserWarning, match="null") as record:
        out = closure.compute_closure(tile, run)
    assert len(record) == 4  # per-pixel noise, mask, stars (need the mask), PSF
    for key in ("bsig_rms_rel_err", "mask_mismatch_pixels", "star_detect_frac",
                "psf_fwhm_bias_frac", "psf_e1_rms"):  # fmt: skip
        assert out[key] is None
    assert out["pointings_mismatch_pixels"] == 7
    with pytest.warns(UserWarning, match="truth_dir"):
        assert set(closure.compute_closure(make_tile(tmp_path), run).values()) == {None}


def test_closure_comparisons():
    a = np.zeros((3, 4))
    with pytest.raises(InputError, match="shapes differ"):
        closure.max_abs_diff(a, np.zeros((4, 3)))
    with pytest.raises(InputError, match="positive"):
        closure.median_rel_err(a, a)
    assert closure.detected_fraction(np.array([[1.0, 1.0]]), np.zeros((0, 2))) == 0.0
    with pytest.raises(InputError, match="no true object"):
        closure.detected_fraction(np.zeros((0, 2)), np.zeros((3, 2)))


@pytest.mark.parametrize("truth_chunks", [(16, 32), (10, 10)])
def test_dataset_mismatch_pixels_by_chunks(tmp_path, monkeypatch, truth_chunks):
    """Equal chunks are skipped by their stored bytes; differing ones and other
    layouts (the second case: a truth written with other chunks) are compared
    pixel by pixel, with the same count."""
    from hscsim_utils.stages.sky_and_sysmaps import POINTINGS_DTYPE

    rng = np.random.default_rng(3)
    truth = np.zeros((40, 70), POINTINGS_DTYPE)
    for name in POINTINGS_DTYPE.names:
        truth[name] = rng.integers(0, 2**40, truth.shape, dtype=np.uint64)
    est = truth.copy()
    est["bit3"][5, 6] ^= 1  # one chunk
    est["bit1"][33, 40:45] = 0  # another chunk (values were non-zero)
    paths = tmp_path / "est.h5", tmp_path / "truth.h5"
    for path, data, chunks in zip(
        paths, (est, truth), ((16, 32), truth_chunks), strict=True
    ):
        with h5py.File(path, "w") as fh5:
            fh5.create_dataset("map_pointings", data=data, chunks=chunks,
                               compression="lzf")  # fmt: skip
    compared = []
    count = closure.mismatch_pixels

    def counting(a, b):
        compared.append(a.shape)
        return count(a, b)

    monkeypatch.setattr(closure, "mismatch_pixels", counting)
    assert closure.dataset_mismatch_pixels(*paths, "map_pointings") == 6
    # same layout: only the two differing chunks of 3 x 3 are decompressed
    assert len(compared) == (2 if truth_chunks == (16, 32) else 1)
    assert closure.dataset_mismatch_pixels(paths[1], paths[1], "map_pointings") == 0
    with pytest.raises(InputError, match="no dataset"):
        closure.dataset_mismatch_pixels(*paths, "map_expt")
