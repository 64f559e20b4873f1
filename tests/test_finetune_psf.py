"""Stage 08: the PSF adjustment fit, and the measurement of a simulation's PSF."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from astropy.io import fits

from hscsim_utils.errors import InputError
from hscsim_utils.metrics import read_metrics, write_section
from hscsim_utils.numerics.psf_model import PARAM_NAMES
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import psf, psf_finetune_plots, simulate
from hscsim_utils.stages import psf_finetune as ftp
from tests import synthetic_psf

# --- the linear fit ------------------------------------------------------------------


def test_fit_recovers_a_known_linear_relation_despite_outliers():
    rng = np.random.default_rng(1)
    measured = rng.uniform(3.2, 4.0, 300)
    target = 0.15 + 0.93 * measured + rng.normal(0, 0.004, 300)
    target[:6] += 0.3  # six wild stars
    fit = ftp.fit_linear_adjustment(measured, target)
    assert fit.kind == "fit"
    assert fit.slope == pytest.approx(0.93, abs=0.01)
    assert fit.intercept == pytest.approx(0.15, abs=0.04)
    assert fit.n_clipped >= 6 and fit.n_stars <= 294
    assert fit.residual_std == pytest.approx(0.004, rel=0.2)
    assert np.allclose(fit.apply(measured[6:]), target[6:], atol=0.02)
    plain = np.polyfit(measured, target, 1)[0]
    assert abs(plain - 0.93) > abs(fit.slope - 0.93)  # the clipping mattered


def test_parameter_without_spread_gets_slope_one_and_mean_offset():
    rng = np.random.default_rng(2)
    target = np.full(40, 0.27)  # constant input (e.g. a constant PSF)
    measured = target - 0.004 + rng.normal(0, 0.002, 40)
    fit = ftp.fit_linear_adjustment(measured, target)
    assert fit.kind == "degenerate" and fit.slope == 1.0
    assert fit.intercept == pytest.approx(np.mean(target - measured), abs=5e-4)
    same = ftp.fit_linear_adjustment(np.full(10, 2.0), np.full(10, 2.5))
    assert (same.kind, same.slope, same.intercept) == ("degenerate", 1.0, 0.5)


def test_implausible_slope_keeps_only_the_offset():
    """A model much flatter than its input (9 stars, strong smoothing): the fitted
    slope (~25) would multiply every star's measurement noise."""
    rng = np.random.default_rng(8)
    target = rng.normal(0.0, 0.01, 9)
    measured = 0.002 + target / 25 + rng.normal(0, 2e-5, 9)
    assert ftp.fit_linear_adjustment(measured, target, max_slope=np.inf).slope > 20
    fit = ftp.fit_linear_adjustment(measured, target)
    assert (fit.kind, fit.slope) == ("offset", 1.0)
    assert fit.intercept == pytest.approx(np.mean(target - measured), abs=0.01)


def test_too_few_stars_are_degenerate():
    fit = ftp.fit_linear_adjustment([1.0, 2.0, 3.0], [1.5, 2.4, 3.6])
    assert fit.kind == "degenerate" and fit.slope == 1.0
    assert fit.intercept == pytest.approx(0.5, abs=1e-12)


def test_unresolved_slope_keeps_only_the_offset():
    rng = np.random.default_rng(3)
    measured = rng.uniform(-0.001, 0.001, 40)  # spread far below the scatter
    target = measured + 0.002 + rng.normal(0, 0.003, 40)
    fit = ftp.fit_linear_adjustment(measured, target)
    assert fit.kind == "offset" and fit.slope == 1.0
    assert fit.slope_err > 0.3
    assert fit.intercept == pytest.approx(np.mean(target - measured), abs=1e-3)
    free = ftp.fit_linear_adjustment(measured, target, slope_z=0, min_r2=0)
    assert free.kind == "fit" and free.slope != 1.0


def test_noisy_measurement_is_not_flattened_towards_the_mean():
    rng = np.random.default_rng(5)
    truth = rng.uniform(-0.003, 0.003, 200)
    measured = truth - 0.001 + rng.normal(0, 0.002, 200)  # scatter ~ variation
    fit = ftp.fit_linear_adjustment(measured, truth)
    assert fit.kind == "offset" and fit.slope == 1.0
    assert fit.intercept == pytest.approx(0.001, abs=4e-4)
    diluted = ftp.fit_linear_adjustment(measured, truth, min_r2=0, max_slope=np.inf)
    assert diluted.kind == "fit" and 0.3 < diluted.slope < 0.8  # regression dilution
    unrelated = ftp.fit_linear_adjustment(-truth + rng.normal(0, 1e-4, 200), truth)
    assert unrelated.kind == "offset" and unrelated.slope == 1.0


def test_fit_rejects_bad_input():
    with pytest.raises(InputError, match="measured"):
        ftp.fit_linear_adjustment([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="no finite pair"):
        ftp.fit_linear_adjustment([np.nan, 1.0], [2.0, np.inf])


# --- catalogues ---------------------------------------------------------------

ADJUST = {"psf_fwhm": (0.12, 0.97), "psf_e1": (0.002, 0.8)}


def synthetic_catalog(n: int = 200, seed: int = 4) -> np.ndarray:
    """A simulated PSF catalogue: input, model (ipt) and star (cnn) columns."""
    rng = np.random.default_rng(seed)
    dtype = [("FLAGS_STARS", "i4")] + [
        (f"{p}{s}", "f4") for p in PARAM_NAMES for s in ("", "_ipt", "_cnn")
    ]
    cat = np.zeros(n, dtype)
    centre = {"psf_fwhm": 3.6, "psf_flux_ratio": 0.27}
    for p in PARAM_NAMES:
        truth = centre.get(p, 0.0) + rng.uniform(-0.05, 0.05, n)
        intercept, slope = ADJUST.get(p, (0.0, 1.0))
        cat[p] = truth
        cat[f"{p}_ipt"] = (truth - intercept) / slope + rng.normal(0, 1e-4, n)
        cat[f"{p}_cnn"] = cat[f"{p}_ipt"] + rng.normal(0, 0.01, n)
    cat["FLAGS_STARS"][:20] = 4  # cut stars
    cat["psf_fwhm"][20:30] = ftp.NO_INPUT  # unmatched objects
    cat["psf_fwhm_cnn"][30:35] = psf.ERR_VAL  # no measurement
    return cat


def test_fit_adjustments_use_only_model_stars_with_input():
    cat = synthetic_catalog()
    keep = ftp.comparison_stars(cat)
    assert keep.sum() == 200 - 35 and not keep[:35].any()
    fits = ftp.fit_adjustments(cat, slope_z=0)  # variation 0.1, scatter 1e-4
    for name in PARAM_NAMES:
        intercept, slope = ADJUST.get(name, (0.0, 1.0))
        assert fits[name].slope == pytest.approx(slope, abs=0.01)
        assert fits[name].apply(cat[f"{name}_ipt"][keep]) == pytest.approx(
            cat[name][keep], abs=1e-3
        )
    adjustment = ftp.pipeline_adjustment(fits)
    assert set(adjustment) == set(PARAM_NAMES)
    assert adjustment["psf_fwhm"] == (
        fits["psf_fwhm"].intercept,
        fits["psf_fwhm"].slope,
    )
    cat["FLAGS_STARS"][:] = 1
    with pytest.raises(InputError, match="no star"):
        ftp.fit_adjustments(cat)


def test_max_abs_diffs_over_the_comparison_stars():
    cat = synthetic_catalog()
    cat["psf_fwhm_ipt"][0] = 99.0  # a cut star: must not count
    cat["psf_fwhm_ipt"][50] = cat["psf_fwhm"][50] + 0.5
    diffs = ftp.max_abs_diffs(cat)
    assert diffs["psf_fwhm"] == pytest.approx(0.5, abs=1e-5)
    keep = ftp.comparison_stars(cat)
    bias = ftp.mean_diffs(cat)["psf_e1"]
    assert bias == pytest.approx(np.mean(cat["psf_e1_ipt"][keep] - cat["psf_e1"][keep]))
    assert set(diffs) == set(PARAM_NAMES)
    table = ftp.max_diff_table(diffs, dict.fromkeys(PARAM_NAMES))
    assert "0.5000" in table and "psf_g2" in table


def test_expected_max_abs_matches_monte_carlo():
    rng = np.random.default_rng(5)
    draws = np.abs(rng.normal(0, 0.01, (4000, 57))).max(axis=1)
    assert ftp.expected_max_abs(0.01, 57) == pytest.approx(np.median(draws), rel=0.03)
    assert ftp.expected_max_abs(0.01, 1) == pytest.approx(0.01 * 0.6745, rel=1e-3)


def test_fwhm_error_budget_separates_bias_from_noise():
    rng = np.random.default_rng(6)
    cat = synthetic_catalog(n=600)
    keep = ftp.comparison_stars(cat)
    cat["psf_fwhm_ipt"] = cat["psf_fwhm"] + 0.004 + rng.normal(0, 0.01, len(cat))
    cat["psf_fwhm_cnn"][keep] = cat["psf_fwhm"][keep] + rng.normal(0, 0.02, keep.sum())
    budget = ftp.fwhm_error_budget(cat)
    assert budget["n_stars"] == keep.sum()
    assert budget["mean"] == pytest.approx(0.004, abs=3 * budget["mean_err"])
    assert budget["mean_err"] == pytest.approx(0.01 / np.sqrt(keep.sum()), rel=0.15)
    assert budget["rms"] == pytest.approx(np.hypot(0.004, 0.01), rel=0.1)
    assert budget["star_rms"] == pytest.approx(0.02, rel=0.1)
    star = cat["psf_fwhm_cnn"][keep] - cat["psf_fwhm"][keep]
    assert budget["star_max"] == pytest.approx(np.abs(star).max())
    assert 0.5 * budget["noise_max"] < budget["max"] < 2 * budget["noise_max"]
    table = ftp.budget_table({"before": budget}).splitlines()
    assert len(table) == 2 and "noise max" in table[0]
    assert table[1].split()[:2] == ["before", str(keep.sum())]
    cat["FLAGS_STARS"][:] = 1
    assert ftp.fwhm_error_budget(cat)["mean"] is None


def test_redirected_run(tmp_path):
    run = RunFolder(tmp_path / "run")
    view = ftp.redirected_run(run, psf_model=tmp_path / "m.h5")
    assert isinstance(view, RunFolder)
    assert view.psf_model == tmp_path / "m.h5"
    assert view.psf_catalog == run.psf_catalog and view.sysmaps == run.sysmaps
    assert view.product("psf_model") == tmp_path / "m.h5"  # either way of asking
    assert view.product("gaia") == run.gaia
    with pytest.raises(TypeError, match="no paths"):
        ftp.redirected_run(run, psf_modle=tmp_path)


def test_params_are_checked():
    assert ftp.Params() == ftp.Params("", 2.0, 0.8)
    for bad in ({"slope_z": -1.0}, {"min_r2": 1.5}, {"min_r2": True},
                {"slope_z": "2"}, {"simulation": "/elsewhere"}):  # fmt: skip
        with pytest.raises(InputError, match=f"psf_finetune.{next(iter(bad))}"):
            ftp.Params(**bad)


def test_stage05_settings_are_what_stage05_used(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(InputError, match="stage 05"):
        ftp.stage05_settings(run)
    used = psf.Params(estimator="direct", min_stars=7, seeing_prior=False)
    run.psf_summary.write_text(
        json.dumps({"estimator": "direct", "params": dataclasses.asdict(used)})
    )
    assert ftp.stage05_settings(run) == dataclasses.asdict(used)


def test_stage08_paths_are_inside_its_product(tmp_path):
    run = RunFolder(tmp_path / "run")
    paths = (ftp.improved_model_path(run), ftp.improved_catalog_path(run),
             ftp.adjustment_path(run), ftp.baseline_psf_dir(run),
             ftp.tuned_sim_dir(run))  # fmt: skip
    for path in paths:
        assert path.parent == run.root / "psf_finetune" or path.parent.parent == (
            run.root / "psf_finetune"
        )
    assert not (run.root / "psf_finetune").exists()  # looking creates nothing


def test_adjustment_file_and_metrics(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert ftp.read_adjustment(run) is None
    cat = synthetic_catalog()
    fits = ftp.fit_adjustments(cat)
    ftp.write_adjustment(run, fits, {"n_stars": 165})
    assert ftp.read_adjustment(run) == ftp.pipeline_adjustment(fits)
    assert json.loads(ftp.adjustment_path(run).read_text())["n_stars"] == 165
    worse = cat.copy()
    worse["psf_fwhm_ipt"][50] = worse["psf_fwhm"][50] + 0.5
    measured = {
        key: ftp.Measurement(folder, key == "after", "direct", folder / "p.cat", c)
        for key, folder, c in (("before", run.sim_baseline, worse),
                               ("after", ftp.tuned_sim_dir(run), cat))
    }  # fmt: skip
    settings = dataclasses.asdict(psf.Params(estimator="direct"))
    paths = ftp.improved_model_path(run), ftp.improved_catalog_path(run)
    tuning = ftp.BandTuning("i", run, settings, fits, measured["before"], {}, *paths,
                            measured["after"])  # fmt: skip
    section = ftp.metrics_section(run, tuning)
    write_section(run.metrics, "quality", {"realism": {"bkg_ks": 0.01}})
    write_section(run.metrics, "psf_finetune", {"stale": True})
    write_section(run.metrics, "psf_finetune", section)
    metrics = read_metrics(run.metrics)
    assert metrics["quality"] == {"realism": {"bkg_ks": 0.01}}  # untouched
    assert set(metrics) == {"quality", "psf_finetune"}  # no top-level realism
    written = metrics["psf_finetune"]
    assert "stale" not in written
    assert written["before"]["simulation"] == "sim/baseline"
    assert written["after"]["simulation"] == "psf_finetune/sim"
    assert (written["before"]["adjusted"], written["after"]["adjusted"]) == (
        False, True,
    )  # fmt: skip
    assert written["before"]["psf_fwhm_max_abs_diff"] == pytest.approx(0.5, abs=1e-5)
    assert written["after"]["psf_fwhm_max_abs_diff"] == pytest.approx(
        ftp.max_abs_diffs(cat)["psf_fwhm"]
    )
    assert (
        written["after"]["max_abs_diff"]["psf_fwhm"]
        == (written["after"]["psf_fwhm_max_abs_diff"])
    )
    assert written["stage05_params"]["estimator"] == "direct"
    assert written["improved_model"] == "psf_finetune/psf_model.h5"
    ftp.adjustment_path(run).write_text("{}")
    with pytest.raises(InputError, match="not an adjustment file"):
        ftp.read_adjustment(run)


def test_tables():
    cat = synthetic_catalog()
    fits = ftp.fit_adjustments(cat)
    lines = ftp.fits_table(fits).splitlines()
    assert len(lines) == len(PARAM_NAMES) and lines[0].startswith("psf_fwhm")
    assert ftp.truth_table({}) == "no true PSF for this tile"
    cmp = {
        k: {"psf_fwhm": {"rms": r}}
        for k, r in (("stage 05", 0.01), ("improved", 0.005))
    }
    table = ftp.truth_table(cmp).splitlines()
    assert "stage 05 rms" in table[0] and "improved rms" in table[0]
    assert table[1].split() == ["psf_fwhm", "0.01000", "0.00500"]


def test_plots_say_what_the_data_is():
    import matplotlib

    matplotlib.use("Agg")
    cat = synthetic_catalog()
    label = "DEMO tile (simulated): test"
    fig = psf_finetune_plots.plot_adjustment_fits(cat, ftp.fit_adjustments(cat), label)
    assert label in fig._suptitle.get_text()
    fig = psf_finetune_plots.plot_diffs(cat, cat, label)
    assert label in fig._suptitle.get_text()


# --- measuring a (fabricated) simulation ----------------------------------------


@pytest.fixture(scope="module")
def fabricated_sim(tmp_path_factory):
    """Stage 05's synthetic patch dressed as a ufig simulation: primary-HDU image,
    one-table catalogue with the input PSF of every object."""
    root = tmp_path_factory.mktemp("ft08")
    syn = synthetic_psf.write_synthetic_inputs(
        root, shape=(1000, 1000), n_stars=160, n_galaxies=60, n_visits=40, seed=11
    )
    settings = simulate.SimulationSettings("Moser+24", 0, 1, "i")
    sim = simulate.Simulation(root / "sim", settings)
    sim.directory.mkdir()
    with fits.open(syn.tile.calexp) as hdul:
        fits.PrimaryHDU(hdul[1].data, hdul[1].header).writeto(sim.image_path)
    cat = psf.read_star_catalog(syn.run.sextractor_cat)
    x = cat["X_IMAGE"] - 0.5
    y = cat["Y_IMAGE"] - 0.5
    true = syn.psf.params(x, y)
    dtype = cat.dtype.descr + [(p, "f4") for p in PARAM_NAMES]
    full = np.zeros(len(cat), dtype)
    for name in cat.dtype.names:
        full[name] = cat[name]
    for i, p in enumerate(PARAM_NAMES):
        full[p] = true[:, i]
    with h5py.File(sim.catalog_path, "w") as fh5:
        fh5.create_dataset("data", data=full)
    return syn, sim


def test_adjustment_changes_exactly_the_measured_columns(fabricated_sim, tmp_path):
    syn, sim = fabricated_sim
    plain = ftp.measure_simulation_psf(
        syn.tile, syn.run, sim, out_dir=tmp_path / "plain", estimator="direct"
    )
    adjusted = ftp.measure_simulation_psf(
        syn.tile, syn.run, sim, ADJUST, out_dir=tmp_path / "adj", estimator="direct"
    )
    assert plain.catalog == tmp_path / "plain" / simulate.PSF_CATALOG
    a = ftp.read_psf_catalog(plain.catalog)
    b = ftp.read_psf_catalog(adjusted.catalog)
    measured = (a["psf_fwhm_cnn"] != psf.ERR_VAL) & (b["psf_fwhm_cnn"] != psf.ERR_VAL)
    assert measured.sum() > 40
    for name in PARAM_NAMES:
        assert np.array_equal(a[name], b[name])  # the simulation's input: untouched
        intercept, slope = ADJUST.get(name, (0.0, 1.0))
        expected = intercept + slope * a[f"{name}_cnn"][measured].astype(float)
        assert b[f"{name}_cnn"][measured] == pytest.approx(expected, abs=2e-5)
    used = ftp.comparison_stars(a) & ftp.comparison_stars(b)
    shift = b["psf_fwhm_ipt"][used] - a["psf_fwhm_ipt"][used]
    expected = 0.12 - 0.03 * a["psf_fwhm_ipt"][used]
    assert np.median(shift - expected) == pytest.approx(0.0, abs=0.01)
    diffs = ftp.max_abs_diffs(a)
    assert 0 < diffs["psf_fwhm"] < 0.2  # the estimator is close to the truth
    assert not list(tmp_path.rglob(f"{ftp.SCRATCH_PREFIX}*"))  # scratch removed
    assert not list(syn.run.root.rglob(f"{ftp.SCRATCH_PREFIX}*"))


def test_missing_improved_model_is_named(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert ftp.improved_psf_overrides({"i": run}) == {}
    with pytest.raises(InputError, match="psf_finetune/psf_model.h5"):
        ftp.simulate_with_improved_psf(SimpleNamespace(band="i"), run)


def test_each_band_simulates_with_its_own_improved_model(tmp_path):
    """Several bands: each its improved model; a band without one keeps stage
    05's model, with a warning naming it."""
    run = RunFolder(tmp_path / "run")
    band_runs = run.band_runs("gri", "i")
    for band in "ri":
        path = ftp.improved_model_path(band_runs[band])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(band.encode())
    with pytest.warns(UserWarning, match=r"bands \['g'\].*stage 05"):
        overrides = ftp.improved_psf_overrides(band_runs)
    assert overrides["filepath_psfmodel_input_dict"] == {
        "g": str(band_runs["g"].psf_model),
        "r": str(tmp_path / "run/bands/r/psf_finetune/psf_model.h5"),
        "i": str(tmp_path / "run/psf_finetune/psf_model.h5"),
    }
