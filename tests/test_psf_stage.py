"""Stage 05 on a small synthetic patch with a known, spatially varying PSF."""

from __future__ import annotations

import dataclasses
import json
import shutil
import types
from dataclasses import asdict

import h5py
import numpy as np
import pytest

from hscsim_utils.compat.ufig_psf import (
    ERR_VAL,
    TooFewStarsError,
    import_psf_estimation,
)
from hscsim_utils.errors import InputError
from hscsim_utils.numerics import psf_direct
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import psf, psf_plots
from tests import synthetic_psf
from tests.run_products import written_products

import_psf_estimation()  # before ufig.psf_estimation: keeps TensorFlow out

from ufig.psf_estimation import star_sample_selection_cnn as sel  # noqa: E402

SHAPE = (1200, 1200)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_psf.write_synthetic_inputs(
        tmp_path_factory.mktemp("psf"), shape=SHAPE, n_stars=260, n_galaxies=200,
        n_visits=70, seed=5,
    )  # fmt: skip


@pytest.fixture(scope="module")
def base_run(synthetic):
    return psf.estimate_psf(synthetic.tile, synthetic.run, estimator="direct")


def fresh_run(tmp_path, synthetic) -> RunFolder:
    """A run folder with copies of the stage's inputs and no outputs."""
    run = RunFolder(tmp_path / "run")
    for name in ("sextractor_cat", "sysmaps", "gaia"):
        shutil.copyfile(getattr(synthetic.run, name), getattr(run, name))
    return run


def test_model_recovers_the_true_psf(synthetic, base_run):
    assert base_run.estimator == "direct"
    assert base_run.settings["sextractor_flags"] == [0, 1, 2, 3, 16, 17, 18, 19]
    grid = psf.read_grid(base_run.model)
    assert {"X_IMAGE", "Y_IMAGE", *psf.IPT_NAMES} <= set(grid.dtype.names)
    assert np.array_equal(np.unique(grid["X_IMAGE"]), np.arange(0, 1200, 100) + 0.5)
    stats = psf.compare_to_truth(grid, synthetic.truth_grid)
    assert abs(stats["psf_fwhm"]["bias"]) < 0.005 and stats["psf_fwhm"]["rms"] < 0.02
    for e in ("psf_e1", "psf_e2"):
        assert stats[e]["rms"] < 0.01
    assert stats["psf_flux_ratio"]["rms"] < 0.06
    n_fit = dict(base_run.counts)["after sigma clipping"]
    assert n_fit >= 40


def test_catalogue_rows_hold_their_own_measurements(synthetic, base_run):
    cat = psf.read_star_catalog(base_run.catalog)
    measured = cat["psf_fwhm_cnn"] != ERR_VAL
    assert 40 <= measured.sum() < 0.5 * len(cat)  # galaxies and faint stars are not
    truth = synthetic.psf.params(
        cat["X_IMAGE"][measured] - 0.5, cat["Y_IMAGE"][measured] - 0.5
    )
    assert np.all(np.abs(cat["psf_fwhm_cnn"][measured] / truth[:, 0] - 1) < 0.05)
    assert np.all(cat["gaia_id_match"][measured] >= 4_000_000_000)
    flags, gaia = cat["FLAGS_STARS"], cat["gaia_id_match"] > 0
    assert np.all(flags[~gaia] == 1 << sel.FLAGBIT_GAIA)
    assert np.all(flags[gaia & ~measured] != 0)  # cut before or by the estimator
    used = psf.used_stars(cat)
    assert (
        np.count_nonzero(flags == 0)
        == used.sum()
        == dict(base_run.counts)["after sigma clipping"]
        - np.count_nonzero(flags & (1 << sel.FLAGBIT_VALIDATION_STAR))
    )


def test_grid_is_what_ufig_reads(synthetic, base_run):
    from ufig.plugins.add_psf import get_moffat_coadd_psf_cnn_from_file

    x, y = np.array([150.3, 620.0, 1030.7]), np.array([220.2, 610.9, 980.4])
    par = types.SimpleNamespace(
        filepath_psfmodel_input=str(base_run.model), psf_beta=[2.0, 5.0],
        psf_kurtosis=0.0, psfmodel_corr_brighter_fatter=None,
    )  # fmt: skip
    ctx = types.SimpleNamespace(parameters=par, stars=types.SimpleNamespace(x=x, y=y))
    get_moffat_coadd_psf_cnn_from_file("stars", ctx)
    truth = synthetic.psf.params(np.round(x, -2), np.round(y, -2))
    assert np.allclose(ctx.stars.psf_fwhm, truth[:, 0], rtol=0.03)
    assert np.allclose(ctx.stars.psf_e1, truth[:, 2], atol=0.015)


def test_cnn_branch_runs_the_cnn_predictor(tmp_path, synthetic, base_run, monkeypatch):
    from ufig.psf_estimation import cnn_predictions

    prefix = tmp_path / "cnn" / "pretrained"
    prefix.parent.mkdir()
    for suffix in (".index", ".h5"):
        prefix.with_name(prefix.name + suffix).write_text("weights")
    loaded = []

    class FakeCNN(psf_direct.DirectPSFPredictor):
        def __init__(self, path):
            loaded.append(path)
            super().__init__()

    fake_module = types.SimpleNamespace(CNNPredictor=FakeCNN)
    monkeypatch.setattr(cnn_predictions, "cnn_util", fake_module)
    run = fresh_run(tmp_path, synthetic)
    result = psf.estimate_psf(
        synthetic.tile, run, estimator="auto", cnn_path=prefix,
        **psf.DIRECT_SETTINGS,  # the CNN branch keeps the tutorial's flags otherwise
    )  # fmt: skip
    assert result.estimator == "cnn" and loaded == [str(prefix)]
    assert result.settings["sextractor_flags"] == [0, 1, 2, 3, 16, 17, 18, 19]
    # same stars, same fit: the outputs equal the direct run's (deterministic)
    assert np.array_equal(psf.read_grid(result.model), psf.read_grid(base_run.model))


def test_estimator_choice(tmp_path, monkeypatch):
    from cosmo_torrent import cosmo_torrent

    monkeypatch.setattr(cosmo_torrent, "_cache_base_folder", lambda: str(tmp_path))
    assert psf.choose_estimator("auto") == ("direct", None)
    assert psf.choose_estimator("direct") == ("direct", None)
    with pytest.raises(InputError, match="no weights"):
        psf.choose_estimator("cnn")
    cache = tmp_path / "psf_cnn"
    cache.mkdir()
    (cache / "pretrained.index").write_text("x")
    assert psf.choose_estimator("auto") == ("direct", None)  # not marked valid yet
    (cache / ".valid").write_text("")
    assert psf.choose_estimator("auto") == ("cnn", cache / "pretrained")
    assert psf.choose_estimator("direct") == ("direct", None)
    with pytest.raises(InputError, match="incomplete"):
        psf.choose_estimator("auto", cnn_path=tmp_path / "elsewhere")
    with pytest.raises(InputError, match="estimator"):
        psf.choose_estimator("neural")


def test_too_few_stars_names_every_cut(tmp_path, synthetic):
    run = fresh_run(tmp_path, synthetic)
    with pytest.raises(TooFewStarsError) as err:
        psf.estimate_psf(synthetic.tile, run, estimator="direct", min_stars=5000)
    text = str(err.value)
    assert text.startswith(str(run.sextractor_cat))
    for step in ("catalogue objects: 460", "matched to Gaia", "magnitude range"):
        assert step in text
    assert not run.psf_model.exists() and not run.psf_catalog.exists()
    assert not list(run.psf_model.parent.glob(".*"))  # no temporary files either


def test_no_gaia_star_in_the_patch(tmp_path, synthetic):
    run = fresh_run(tmp_path, synthetic)
    with h5py.File(run.gaia, "r+") as fh5:
        data = fh5["data"][()]
        data["dec"] += 1.0
        fh5["data"][...] = data
    with pytest.raises(TooFewStarsError, match="matched to Gaia: 0"):
        psf.estimate_psf(synthetic.tile, run, estimator="direct")


def test_bad_inputs_are_named(tmp_path, synthetic):
    run = fresh_run(tmp_path, synthetic)
    run.sysmaps.unlink()
    with pytest.raises(InputError, match="sysmaps.h5: sysmaps not found"):
        psf.estimate_psf(synthetic.tile, run)
    run = fresh_run(tmp_path, synthetic)
    with h5py.File(run.gaia, "w") as fh5:
        fh5.create_dataset("data", data=np.zeros(3, [("ra", "f8"), ("dec", "f8")]))
    with pytest.raises(InputError, match="lacks fields"):
        psf.estimate_psf(synthetic.tile, run)
    run = fresh_run(tmp_path, synthetic)
    with pytest.raises(InputError, match="min_stars"):
        psf.estimate_psf(synthetic.tile, run, min_stars=0)
    with pytest.raises(InputError, match="ridge_alpha"):
        psf.estimate_psf(synthetic.tile, run, ridge_alpha="tiny")


def test_measurement_adjustment_shifts_only_measurements(tmp_path, synthetic, base_run):
    run = fresh_run(tmp_path, synthetic)
    psf.estimate_psf(
        synthetic.tile, run, estimator="direct",
        psf_measurement_adjustment={"psf_fwhm": (0.2, 1.0)},
    )  # fmt: skip
    before = psf.read_star_catalog(base_run.catalog)
    after = psf.read_star_catalog(run.psf_catalog)
    used = psf.used_stars(before) & psf.used_stars(after)
    assert used.sum() > 30
    shift = after["psf_fwhm_cnn"][used] - before["psf_fwhm_cnn"][used]
    assert np.allclose(shift, 0.2)
    grid_shift = (
        psf.read_grid(run.psf_model)["psf_fwhm_ipt"]
        - psf.read_grid(base_run.model)["psf_fwhm_ipt"]
    )
    assert np.median(grid_shift) == pytest.approx(0.2, abs=0.02)


def test_visit_seeing_prior_sharpens_the_fwhm_model(tmp_path, synthetic, base_run):
    with h5py.File(synthetic.run.sysmaps, "r") as fh5:
        n_pointings = fh5["map_pointings"].attrs["n_pointings"]
    seeing = psf.visit_seeing(synthetic.tile, n_pointings)
    assert seeing.shape == (128,) and np.isnan(seeing[70:]).all()
    factor = synthetic.psf.seeing_factor
    assert np.sqrt(np.mean(seeing[:70] ** 2)) == pytest.approx(3.6, rel=0.05)
    assert factor.min() < 0.97 and factor.max() > 1.03  # the visits leave a pattern
    with pytest.raises(InputError, match="map_pointings has 71"):
        psf.visit_seeing(synthetic.tile, 71)
    run = fresh_run(tmp_path, synthetic)
    plain = psf.estimate_psf(
        synthetic.tile, run, estimator="direct", seeing_prior=False
    )
    rms = {
        name: psf.compare_to_truth(psf.read_grid(res.model), synthetic.truth_grid)[
            "psf_fwhm"
        ]["rms"]
        for name, res in (("prior", base_run), ("plain", plain))
    }
    assert rms["prior"] < 0.8 * rms["plain"]
    assert base_run.record.extras["prior_scale_psf_fwhm_cnn"] == pytest.approx(
        1, abs=0.02
    )


def test_plots_carry_the_tile_label(tmp_path, synthetic, base_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = synthetic.tile.label
    assert label.startswith("DEMO tile (simulated)")
    grid = psf.read_grid(base_run.model)
    cat = psf.read_star_catalog(base_run.catalog)
    figures = [
        psf_plots.plot_psf_maps(grid, cat, label),
        psf_plots.plot_psf_maps(grid, cat, label, params=("psf_flux_ratio", "psf_g1")),
        psf_plots.plot_whiskers(grid, cat, label),
        psf_plots.plot_star_stamps(base_run, label, n=3),
        psf_plots.plot_truth_comparison(grid, synthetic.truth_grid, label),
    ]
    for k, fig in enumerate(figures):
        titles = [fig._suptitle.get_text()] if fig._suptitle else []
        titles += [ax.get_title() for ax in fig.axes]
        assert any(label in t for t in titles)
        fig.savefig(tmp_path / f"{k}.png")
        assert (tmp_path / f"{k}.png").stat().st_size > 10_000
        plt.close(fig)
    assert len(psf_plots.typical_stars(base_run, 3)) == 3


def test_run_writes_the_declared_products_and_its_params(
    tmp_path, synthetic, base_run, monkeypatch
):
    from cosmo_torrent import cosmo_torrent

    empty_cache = str(tmp_path / "cache")  # no CNN weights: "auto" is the direct fit
    monkeypatch.setattr(cosmo_torrent, "_cache_base_folder", lambda: empty_cache)
    run = fresh_run(tmp_path, synthetic)
    before = set(run.root.rglob("*"))
    result = psf.run(synthetic.tile, run, psf.Params())
    assert written_products(run, before) == set(psf.STAGE.writes)
    assert np.array_equal(psf.read_grid(run.psf_model), psf.read_grid(base_run.model))
    summary = json.loads(run.psf_summary.read_text())
    assert summary["params"] == {**asdict(psf.Params()), "estimator": "direct"}
    assert summary["estimator"] == "direct"
    assert summary["truth"]["psf_fwhm"]["rms"] < 0.02
    assert summary["stars_after_each_cut"] == dict(result.counts)
    assert result.summary["truth"] == summary["truth"]
    assert psf.load_params(run) == psf.Params(estimator="direct")


def test_load_params_names_the_summary(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(InputError, match=r"psf_summary.json: not found; run stage 05"):
        psf.load_params(run)
    run.psf_summary.write_text(json.dumps({"estimator": "direct"}))
    with pytest.raises(InputError, match="psf_summary.json: records no parameters"):
        psf.load_params(run)
    run.psf_summary.write_text(json.dumps({"params": {"min_stars": 0}}))
    with pytest.raises(InputError, match=r"psf_summary.json: .*psf\.min_stars"):
        psf.load_params(run)
    run.psf_summary.write_text(json.dumps({"params": {"ridge_alpha": "ufig"}}))
    assert psf.load_params(run) == psf.Params(ridge_alpha="ufig")


def test_params_validate_themselves():
    assert psf.Params() == psf.Params("auto", "", 10, "cv", True)
    for bad, fragment in [
        (dict(estimator="neural"), r"^psf\.estimator: must be one of auto, cnn"),
        (dict(min_stars=0), r"psf\.min_stars: must be at least 1"),
        (dict(min_stars=10.0), r"psf\.min_stars: must be an integer"),
        (dict(ridge_alpha="tiny"), r"psf\.ridge_alpha"),
        (dict(seeing_prior="yes"), r"psf\.seeing_prior"),
        (dict(cnn_path=None), r"psf\.cnn_path"),
    ]:
        with pytest.raises(InputError, match=fragment):
            psf.Params(**bad)


def test_visit_seeing_is_kept_per_version_of_the_frame_table(tmp_path, synthetic):
    with h5py.File(synthetic.run.sysmaps, "r") as fh5:
        n_pointings = fh5["map_pointings"].attrs["n_pointings"]
    frames = tmp_path / "frames.csv"
    shutil.copyfile(synthetic.tile.frame_metadata, frames)
    tile = dataclasses.replace(synthetic.tile, frame_metadata=frames)
    first = psf.visit_seeing(tile, n_pointings)
    first[:] = -1.0  # the caller's copy: the kept result is not touched
    again = psf.visit_seeing(tile, n_pointings)
    assert np.array_equal(again, psf.visit_seeing(synthetic.tile, n_pointings),
                          equal_nan=True)  # fmt: skip
    table = frames.read_text().splitlines()
    header = table[0].lstrip("# ").split(",")
    col = header.index("seeing")
    rows = [line.split(",") for line in table[1:]]
    for row in rows:
        row[col] = str(2 * float(row[col]))
    frames.write_text("\n".join([table[0], *(",".join(r) for r in rows)]) + "\n")
    doubled = psf.visit_seeing(tile, n_pointings)  # a new version of the file
    ok = np.isfinite(again)
    assert np.allclose(doubled[ok], 2 * again[ok])
