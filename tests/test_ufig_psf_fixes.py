"""Defects of ufig 1.2.1's PSF estimation: each shown on ufig's code, then mended."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from hscsim_utils.compat import ufig_psf as fixes
from hscsim_utils.errors import InputError

fixes.import_psf_estimation()  # before any ufig.psf_estimation import: no TensorFlow

from cosmic_toolbox import arraytools as at  # noqa: E402
from ufig.psf_estimation import psf_utils  # noqa: E402
from ufig.psf_estimation import star_sample_selection_cnn as sel  # noqa: E402
from ufig.psf_estimation.core import PSFEstimationPipeline  # noqa: E402
from ufig.psf_estimation.polynomial_fitting import PolynomialPSFModel  # noqa: E402
from ufig.psf_estimation.save_model import PSFSave  # noqa: E402

PARAMS = ("fwhm", "flux_ratio", "e1", "e2", "f1", "f2", "g1", "g2")
CNN_COLS = [f"psf_{p}_cnn" for p in PARAMS]
MOM_COLS = ["se_mom_fwhm", "se_mom_win", "se_mom_e1", "se_mom_e2"]


def test_import_keeps_tensorflow_out():
    code = (
        "import sys\n"
        "from hscsim_utils.compat.ufig_psf import mended_components\n"
        "mended_components()\n"
        "from ufig.psf_estimation import PSFEstimationPipeline\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- defect 1: visit bitmaps lose bits in float64 ---------------------------------


@pytest.fixture
def pointings(tmp_path):
    """Three pixels covered by visits {0, 60}, {5, 52} and {3, 63, 65}."""
    data = np.zeros((1, 3), dtype=[(f"bit{w}", np.uint64) for w in range(1, 6)])
    one = np.uint64(1)
    data["bit1"][0, 0] = (one << np.uint64(60)) | one
    data["bit1"][0, 1] = (one << np.uint64(5)) | (one << np.uint64(52))
    data["bit1"][0, 2] = (one << np.uint64(3)) | (one << np.uint64(63))
    data["bit2"][0, 2] = one << np.uint64(1)
    with h5py.File(tmp_path / "sysmaps.h5", "w") as fh5:
        fh5.create_dataset("map_pointings", data=data)
        fh5["map_pointings"].attrs["n_pointings"] = 70
    fh5 = h5py.File(tmp_path / "sysmaps.h5", "r")
    yield fh5["map_pointings"]
    fh5.close()


def expected_weights():
    w = np.zeros((3, 128))
    w[0, [0, 60]] = 0.5
    w[1, [5, 52]] = 0.5
    w[2, [3, 63, 65]] = 1 / 3
    return w


def test_ufig_position_weights_lose_visits_above_bit_52(pointings):
    x, y = np.array([0.2, 1.5, 2.9]), np.zeros(3)
    ufig = psf_utils.get_position_weights(x, y, pointings)
    assert np.allclose(ufig[1], expected_weights()[1])  # low visits are fine
    assert not np.allclose(ufig[0], expected_weights()[0])  # visit 0 vanished
    assert ufig[0, 0] == 0 and ufig[0, 60] == 1
    assert not np.allclose(ufig[2], expected_weights()[2])


def test_mended_position_weights_keep_every_visit(pointings):
    x, y = np.array([0.2, 1.5, 2.9, 7.0]), np.array([0.0, 0.0, 0.0, -3.0])
    w = fixes.get_position_weights(x, y, pointings)
    assert w.shape == (4, 128)
    assert np.array_equal(w[:3], expected_weights())
    assert np.array_equal(w[3], expected_weights()[2])  # clipped onto the map
    assert fixes.n_pointing_words(64) == 1 and fixes.n_pointing_words(65) == 2


# --- defects 2 and 3: catalogue rows and FLAGS_STARS ---------------------------------


@pytest.fixture
def pipeline_state():
    """Six objects; rows 1, 3, 4, 5 are Gaia stars; row 1 fails the magnitude
    cut, row 4 the estimator's FWHM cut; rows 3 and 5 enter the fit."""
    cat = np.zeros(6, at.get_dtype(["NUMBER:i4", "X_IMAGE", "Y_IMAGE", "MAG_AUTO"]))
    cat["NUMBER"] = np.arange(1, 7)
    flags_all = np.zeros(6, np.int32)
    flags_all[[0, 2]] = 1 << sel.FLAGBIT_GAIA
    cat_gaia = at.ensure_cols(
        cat[flags_all == 0], ["gaia_ra_match", "gaia_dec_match", "gaia_id_match:i8"]
    )
    cat_gaia["gaia_id_match"] = [11, 13, 14, 15]
    flags_gaia = np.array([1 << sel.FLAGBIT_MAG, 0, 0, 0], np.uint32)
    cat_cnn = at.ensure_cols(cat_gaia[flags_gaia == 0], CNN_COLS)
    cat_cnn["psf_fwhm_cnn"] = [3.3, 3.4, 3.5]  # objects 4, 5, 6
    flags_cnn = np.array([0, 1 << sel.FLAGBIT_FWHM, 0], np.int32)
    cat_fit = cat_cnn[[0, 2]]
    flags_fit = np.array([0, 1 << sel.FLAGBIT_OUTLIER], np.int32)
    ipt = [c.replace("_cnn", "_ipt") for c in CNN_COLS]
    predictions = {"cat_psf": np.zeros(6, at.get_dtype(ipt)), "n_exposures": 3}
    predictions["cat_psf"]["psf_fwhm_ipt"] = np.linspace(3, 4, 6)
    processed = {"cat_original": cat, "cat_gaia": cat_gaia}
    processed.update(flags_all=flags_all, flags_gaia=flags_gaia)
    model = {"col_names_fit": CNN_COLS, "col_names_ipt": ipt, "cat_fit": cat_fit}
    model.update(flags_fit=flags_fit, select_fit=np.array([True, False, True]))
    cols_new = CNN_COLS + ipt + ["FLAGS_STARS:i4", "N_EXPOSURES:i2"]
    cols_new += ["gaia_ra_match", "gaia_dec_match", "gaia_id_match:i8"]
    out = at.ensure_cols(cat, names=cols_new)
    cnn = {"cat_cnn": cat_cnn, "flags_cnn": flags_cnn}
    return out, processed, cnn, model, predictions


def test_ufig_writes_estimates_to_wrong_rows_and_no_star_flags(pipeline_state):
    out, processed, cnn, model, predictions = pipeline_state
    PSFSave({})._fill_catalog_output(out, processed, cnn, model, predictions)
    # object 4 (row 3) is measured 3.3, but ufig puts 3.3 into row 1 (object 2,
    # not a Gaia star) and object 6's value into row 3
    assert out["psf_fwhm_cnn"][1] == pytest.approx(3.3)
    assert out["psf_fwhm_cnn"][3] == pytest.approx(3.5)
    assert out["psf_fwhm_cnn"][5] == fixes.ERR_VAL
    assert np.all(out["FLAGS_STARS"] == 0)  # not even the non-Gaia objects flagged


def test_mended_catalogue_rows_and_star_flags(pipeline_state):
    out, processed, cnn, model, predictions = pipeline_state
    fixes.mended_components().MendedPSFSave({})._fill_catalog_output(
        out, processed, cnn, model, predictions
    )
    err = fixes.ERR_VAL
    assert list(out["psf_fwhm_cnn"]) == [err, err, err, 3.3, err, 3.5]
    assert list(out["gaia_id_match"][[1, 3, 4, 5]]) == [11, 13, 14, 15]
    flags = out["FLAGS_STARS"]
    assert list(flags[[0, 2]]) == [1 << sel.FLAGBIT_GAIA] * 2
    assert flags[1] == 1 << sel.FLAGBIT_MAG
    assert flags[3] == 0  # the one star in the model
    assert flags[4] == 1 << sel.FLAGBIT_FWHM
    assert flags[5] == 1 << sel.FLAGBIT_OUTLIER
    assert np.allclose(out["psf_fwhm_ipt"], np.linspace(3, 4, 6))


def star_sample(n=60, seed=2):
    """Stars with a constant PSF on a 1000 x 1000 image seen by one visit."""
    rng = np.random.default_rng(seed)
    cat = np.zeros(n, at.get_dtype(["NUMBER:i4", "X_IMAGE", "Y_IMAGE"] + CNN_COLS))
    cat["NUMBER"] = np.arange(1, n + 1)
    cat["X_IMAGE"], cat["Y_IMAGE"] = rng.uniform(10, 990, (2, n))
    for col in CNN_COLS:
        cat[col] = rng.normal(0, 0.002, n)
    cat["psf_fwhm_cnn"] += 3.5
    cat["psf_flux_ratio_cnn"] += 0.5
    cat = at.ensure_cols(cat, MOM_COLS)
    for col in MOM_COLS:
        cat[col] = rng.normal(1, 0.01, n)
    weights = np.zeros((n, 64))
    weights[:, 0] = 1
    return cat, weights


def poly_config(**kwargs):
    config = PSFEstimationPipeline(**kwargs).config
    config["image_shape"] = (1000, 1000)
    return config


def fwhm_at(results, x, y):
    settings = results["settings_fit"]
    xy = psf_utils.transform_forward(
        np.array([[x - 0.5, y - 0.5]]), settings["scale_pos"]
    )
    pred = results["regressor"].predict(np.c_[xy, np.eye(64)[:1]])
    col = results["col_names_fit"].index("psf_fwhm_cnn")
    return float(psf_utils.transform_inverse(pred, settings["scale_par"])[0, col])


def test_ufig_fits_stars_that_failed_the_cuts():
    cat, weights = star_sample()
    cat = at.ensure_cols(cat, ["FLAGS_STARS:i4"])
    cat["FLAGS_STARS"][:5] = 1 << sel.FLAGBIT_FWHM
    cat["psf_fwhm_cnn"][:5] = 9.9  # flagged by the estimator's cuts
    ufig = PolynomialPSFModel(poly_config(fraction_validation_stars=0))
    assert set(cat["NUMBER"][:5]) <= set(
        ufig.fit_model(cat, weights)["cat_fit"]["NUMBER"]
    )
    mended = fixes.mended_components().MendedPolynomialPSFModel(
        poly_config(fraction_validation_stars=0)
    )
    res = mended.fit_model(cat, weights)
    assert not set(cat["NUMBER"][:5]) & set(res["cat_fit"]["NUMBER"])
    assert fwhm_at(res, 500, 500) == pytest.approx(3.5, abs=0.01)


def test_ufig_validation_refit_puts_clipped_outliers_back():
    cat, weights = star_sample(seed=4)
    cat["psf_fwhm_cnn"][0] = 5.0  # a gross outlier; the sigma clipping removes it
    x0, y0 = cat["X_IMAGE"][0], cat["Y_IMAGE"][0]
    ufig = PolynomialPSFModel(poly_config(fraction_validation_stars=0.15))
    res_ufig = ufig.fit_model(cat, weights)
    assert cat["NUMBER"][0] not in res_ufig["cat_clip"]["NUMBER"]
    assert fwhm_at(res_ufig, x0, y0) > 3.6  # ... yet it pulls the final model
    mended = fixes.mended_components().MendedPolynomialPSFModel(
        poly_config(fraction_validation_stars=0.15)
    )
    res = mended.fit_model(cat, weights)
    assert fwhm_at(res, x0, y0) == pytest.approx(3.5, abs=0.02)
    flags = dict(zip(res["cat_fit"]["NUMBER"], res["flags_fit"], strict=True))
    assert flags[1] & (1 << sel.FLAGBIT_OUTLIER)
    n_val = sum(bool(f & (1 << sel.FLAGBIT_VALIDATION_STAR)) for f in flags.values())
    assert n_val == int(0.15 * len(res["cat_clip"]))


# --- defect 4: the measurement adjustment --------------------------------------------


def psf_catalog():
    cat = np.zeros(3, at.get_dtype(["psf_fwhm", "psf_fwhm_cnn", "psf_e1_cnn"]))
    cat["psf_fwhm"] = [3.0, 3.1, 3.2]  # the simulation's input PSF
    cat["psf_fwhm_cnn"] = [3.05, fixes.ERR_VAL, 3.25]  # the measurement
    cat["psf_e1_cnn"] = [0.01, 0.02, np.nan]
    return cat


def test_ufig_adjustment_changes_the_input_column():
    cat = psf_catalog()
    psf_utils.adjust_psf_measurements(cat, {"psf_fwhm": (0.5, 1.0)})
    assert np.allclose(cat["psf_fwhm"], [3.5, 3.6, 3.7])  # input changed
    assert cat["psf_fwhm_cnn"][0] == 3.05  # measurement untouched


def test_mended_adjustment_changes_exactly_the_measurements():
    cat = psf_catalog()
    out = fixes.apply_measurement_adjustment(
        cat, {"psf_fwhm": (0.5, 1.0), "psf_e1_cnn": (0.0, 2.0)}
    )
    assert np.array_equal(out["psf_fwhm"], cat["psf_fwhm"])
    assert out["psf_fwhm_cnn"][0] == pytest.approx(3.55)
    assert out["psf_fwhm_cnn"][1] == fixes.ERR_VAL  # error value kept
    assert out["psf_e1_cnn"][1] == pytest.approx(0.04) and np.isnan(
        out["psf_e1_cnn"][2]
    )
    assert cat["psf_fwhm_cnn"][0] == 3.05  # the input array is not modified
    with pytest.raises(InputError, match="psf_g1_cnn"):
        fixes.apply_measurement_adjustment(cat, {"psf_g1": (0.0, 1.0)})
    with pytest.raises(InputError, match="intercept, slope"):
        fixes.apply_measurement_adjustment(cat, {"psf_fwhm": 1.0})


# --- the patching itself ---------------------------------------------------------


def test_patches_are_undone_even_after_an_error():
    from ufig.psf_estimation import cnn_predictions, save_model

    before = (save_model.PSFSave, cnn_predictions.CNNPredictorPSF,
              psf_utils.get_position_weights)  # fmt: skip
    with pytest.raises(RuntimeError):
        with fixes.mended_psf_estimation(predictor=object()):
            assert psf_utils.get_position_weights is fixes.get_position_weights
            raise RuntimeError("boom")
    after = (save_model.PSFSave, cnn_predictions.CNNPredictorPSF,
             psf_utils.get_position_weights)  # fmt: skip
    assert after == before


def test_selection_record_lists_every_cut():
    record = fixes.SelectionRecord(source="cat.h5", min_stars=5, n_catalogue=100)
    record.flags_gaia = np.array(
        [0, 1 << sel.FLAGBIT_MAG, 1 << sel.FLAGBIT_MAG | 1 << sel.FLAGBIT_SURVEY_MASK,
         1 << sel.FLAGBIT_SURVEY_MASK, 0, 0]
    )  # fmt: skip
    record.flags_cut = np.array([0, 1 << sel.FLAGBIT_ELLIPTICITY])
    counts = dict(record.counts())
    assert counts["catalogue objects"] == 100 and counts["matched to Gaia"] == 6
    assert counts["magnitude range"] == 4 and counts["survey mask"] == 3
    assert counts["FWHM cut"] == 2 and counts["ellipticity cut"] == 1
    err = record.error(1)
    assert isinstance(err, InputError) and str(err).startswith("cat.h5: too few stars")
    assert "magnitude range: 4" in str(err) and "at least 5" in str(err)
