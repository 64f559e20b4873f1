"""Tuning and scoring use disjoint halves of the patch: what stages 08 and 09
fit lies in the tuning half, what stages 07 and 09 score in the scoring half."""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.numerics import halves
from hscsim_utils.numerics.psf_model import PARAM_NAMES
from hscsim_utils.stages import background_finetune as ftb
from hscsim_utils.stages import psf_finetune as ftp
from hscsim_utils.stages import quality

SHAPE = (768, 768)  # 3 x 3 blocks of 256 pixels
N_OBJECTS = 3000


def catalogue(rng, n=N_OBJECTS):
    names = ("XWIN_IMAGE", "YWIN_IMAGE", "FLAGS", "MAG_AUTO", "FLUX_RADIUS",
             "ELLIPTICITY")  # fmt: skip
    cat = np.zeros(n, [(c, "i2" if c == "FLAGS" else "f8") for c in names])
    cat["XWIN_IMAGE"] = rng.uniform(0.5, SHAPE[1] + 0.5, n)
    cat["YWIN_IMAGE"] = rng.uniform(0.5, SHAPE[0] + 0.5, n)
    cat["MAG_AUTO"] = rng.uniform(20, 26, n)
    cat["FLUX_RADIUS"] = rng.lognormal(1, 0.3, n)
    cat["ELLIPTICITY"] = rng.beta(2, 5, n)
    return cat


def inputs(seed=1, sim_sigma=1.0):
    rng = np.random.default_rng(seed)
    no_seg = np.zeros(SHAPE, np.int32)
    return quality.QualityInputs(
        label="test", sim_image=rng.normal(0, sim_sigma, SHAPE).astype(np.float32),
        sim_segmentation=no_seg, sim_catalog=catalogue(rng),
        data_image=rng.normal(0, 1.0, SHAPE).astype(np.float32),
        data_segmentation=no_seg, data_catalog=catalogue(rng),
        masked=np.zeros(SHAPE, bool), pixscale=0.168,
    )  # fmt: skip


def spoil(inp: quality.QualityInputs, half: str) -> quality.QualityInputs:
    """The simulation made wrong in ``half`` only: three times the noise,
    objects two magnitudes fainter and twice as large."""
    mask = halves.half_mask(SHAPE, half)
    inp.sim_image = np.where(mask, 3 * inp.sim_image, inp.sim_image)
    cat = inp.sim_catalog.copy()
    inside = quality.in_half(cat, SHAPE, half)
    cat["MAG_AUTO"][inside] += 2.0
    cat["FLUX_RADIUS"][inside] *= 2.0
    inp.sim_catalog = cat
    return inp


def numbers(block: dict) -> dict:
    return {k: block[k] for k in ("bkg_std_ratio", "bkg_ks", "mag_auto_ks",
                                  "flux_radius_ks", "n_detect_ratio")}  # fmt: skip


def test_stage07_scores_on_the_scoring_half_only():
    clean = inputs()
    reference = clean.reference()
    before = clean.realism(reference=reference)
    assert before["half"] == "scoring"
    tuned_wrong = spoil(inputs(), "tuning").realism(reference=reference)
    assert numbers(tuned_wrong) == numbers(before)  # tuning half: not seen
    assert tuned_wrong["statistics"] == before["statistics"]
    scored_wrong = spoil(inputs(), "scoring").realism(reference=reference)
    assert scored_wrong["bkg_std_ratio"] > 2.5
    assert scored_wrong["statistics"]["mag_auto_ks"]["significant"]


def test_half_selections_lie_in_their_half():
    inp = inputs()
    for half in halves.HALVES:
        mask = halves.half_mask(SHAPE, half)
        bkg = quality.background_mask(inp.data_image, inp.data_segmentation,
                                      inp.masked, half)  # fmt: skip
        assert bkg.any() and not (bkg & ~mask).any()
        sim_obj, data_obj = inp.objects(half)
        for cat in (sim_obj, data_obj):
            ix = np.floor(cat["XWIN_IMAGE"] - 0.5).astype(int)
            iy = np.floor(cat["YWIN_IMAGE"] - 0.5).astype(int)
            assert mask[iy, ix].all()
    tuning, scoring = inp.objects("tuning")[0], inp.objects("scoring")[0]
    assert len(tuning) + len(scoring) == N_OBJECTS


def test_stage09_correction_uses_the_tuning_half_only():
    inp = inputs(sim_sigma=0.8)  # the simulation's noise is 20% too low
    correction, plain, fixed, n = ftb.tuning_correction(inp, gain=1e9)
    assert correction == pytest.approx(1.25, rel=0.01)
    assert n == halves.half_mask(SHAPE, "tuning").sum()
    # whatever the simulation does on the scoring half leaves the correction alone
    again = ftb.tuning_correction(spoil(inputs(sim_sigma=0.8), "scoring"), gain=1e9)
    assert again == (correction, plain, fixed, n)
    moved = ftb.tuning_correction(spoil(inputs(sim_sigma=0.8), "tuning"), gain=1e9)
    assert moved[0] == pytest.approx(1.25 / 3, rel=0.01)


def psf_catalogue(rng, n=400):
    """Stars of a measured PSF catalogue whose model is 0.05 px too wide in the
    tuning half and 0.5 px too wide in the scoring half."""
    dtype = [("XWIN_IMAGE", "f8"), ("YWIN_IMAGE", "f8"), ("FLAGS_STARS", "i4")]
    dtype += [(f"{p}{s}", "f4") for p in PARAM_NAMES for s in ("", "_ipt", "_cnn")]
    cat = np.zeros(n, dtype)
    cat["XWIN_IMAGE"] = rng.uniform(0.5, SHAPE[1] + 0.5, n)
    cat["YWIN_IMAGE"] = rng.uniform(0.5, SHAPE[0] + 0.5, n)
    for p in PARAM_NAMES:
        cat[p] = (3.6 if p == "psf_fwhm" else 0.0) + rng.uniform(-0.05, 0.05, n)
        cat[f"{p}_ipt"] = cat[p] + rng.normal(0, 1e-3, n)
        cat[f"{p}_cnn"] = cat[f"{p}_ipt"]
    scoring = quality.in_half(cat, SHAPE, "scoring")
    cat["psf_fwhm_ipt"] += np.where(scoring, 0.5, 0.05)
    return cat, scoring


def test_stage08_fits_on_tuning_stars_and_compares_on_scoring_stars(tmp_path):
    from hscsim_utils.runfolder import RunFolder

    rng = np.random.default_rng(3)
    cat, scoring = psf_catalogue(rng)
    before = ftp.Measurement(tmp_path, False, "direct", tmp_path / "c.cat", cat, SHAPE)
    assert len(before.stars("tuning")) == (~scoring).sum()
    assert len(before.stars("scoring")) == scoring.sum()
    fits = ftp.fit_on_tuning_half(before)
    assert fits["psf_fwhm"].intercept == pytest.approx(-0.05, abs=0.005)
    assert fits["psf_fwhm"].n_stars <= (~scoring).sum()
    block = before.block(RunFolder(tmp_path))
    assert block["half"] == "scoring" and block["n_stars"] == scoring.sum()
    budget = block["fwhm_error_budget"]
    assert budget["mean"] == pytest.approx(0.5, abs=0.005)
    assert budget["mean_err"] < 0.001
    assert budget["max"] > budget["noise_max"]  # a bias, not noise
    tuning = ftp.BandTuning("i", RunFolder(tmp_path), {}, fits, before, {},
                            tmp_path / "m.h5", tmp_path / "c.cat", before)  # fmt: skip
    section = ftp.metrics_section(RunFolder(tmp_path), tuning)
    assert section["fit_half"] == "tuning"
    assert section["n_fit_stars"] == (~scoring).sum()


def test_report_shows_each_statistic_with_its_floor():
    from hscsim_utils.pipeline import report

    stats = {
        "bkg_std_ratio": {"value": 0.9, "kind": "ratio", "floor": 0.005,
                          "threshold": 0.01, "significant": True},
        "size_mag_chi2": {"value": 1.2, "kind": "chi2", "floor": 1.0, "dof": 9,
                          "threshold": 2.4, "significant": False},
    }  # fmt: skip
    summary = {"24-25": {"completeness": 0.79, "purity": 0.996,
                         "mag_offset_median": 0.085}}  # fmt: skip
    metrics = {"quality": {
        "realism": {"simulation": "sim/baseline", "data": "DEMO", "half": "scoring",
                    "bkg_std_ratio": 0.9, "statistics": stats},
        "truth": {"half": "scoring", "simulation": {"summary": {"all": summary}}},
    }}  # fmt: skip
    found = {r[2]: (r[1], r[3]) for r in report.metric_rows(metrics)}
    assert found["realism.statistics.bkg_std_ratio"] == (
        "sim/baseline vs DEMO data", "0.9 (floor 1 +- 0.005: significant)",
    )  # fmt: skip
    assert found["realism.statistics.size_mag_chi2"][1] == (
        "1.2 (floor 1, dof 9: within noise)"
    )
    assert found["truth.simulation.24-25"][1] == (
        "completeness 0.790, purity 0.996, MAG_AUTO - mag +0.085"
    )
    assert found["realism.half"][1] == "scoring"


def test_stage08_without_tuning_stars_does_not_adjust(tmp_path):
    rng = np.random.default_rng(4)
    cat, scoring = psf_catalogue(rng)
    cat = cat[scoring]  # every star in the scoring half
    before = ftp.Measurement(tmp_path, False, "direct", tmp_path / "c.cat", cat, SHAPE)
    with pytest.warns(UserWarning, match="tuning half"):
        fits = ftp.fit_on_tuning_half(before)
    assert ftp.pipeline_adjustment(fits) == dict.fromkeys(PARAM_NAMES, (0.0, 1.0))
    assert {f.kind for f in fits.values()} == {"none"}


def test_stage07_truth_on_the_scoring_half(tmp_path):
    from hscsim_utils.metrics import read_section
    from hscsim_utils.numerics import truth_matching as tm
    from hscsim_utils.runfolder import RunFolder

    rng = np.random.default_rng(5)
    inp = inputs()
    # every detection of the simulation and of the data is a true galaxy
    for side in ("sim", "data"):
        cat = getattr(inp, f"{side}_catalog")
        ufig = np.zeros(len(cat), [("x", "f8"), ("y", "f8"), ("mag", "f8"),
                                   ("r50", "f8")])  # fmt: skip
        ufig["x"], ufig["y"] = cat["XWIN_IMAGE"] - 0.5, cat["YWIN_IMAGE"] - 0.5
        error = rng.normal(0.0, 0.05, len(cat))  # photometric noise
        ufig["mag"] = cat["MAG_AUTO"] + error - 0.1 * (side == "sim")  # zero point
        ufig["r50"] = cat["FLUX_RADIUS"] / 1.5
        setattr(inp, f"{side}_truth", tm.true_objects(ufig, None))
    truth = inp.truth()
    assert truth["half"] == "scoring"
    for side, cat in (("simulation", inp.sim_catalog), ("data", inp.data_catalog)):
        row = truth[side]["summary"]["all"]["22-24"]
        assert row["completeness"] == 1.0 and row["purity"] == 1.0
        assert row["size_ratio_median"] == pytest.approx(1.5)
        scoring = quality.in_half(cat, SHAPE, "scoring")
        assert sum(truth[side]["all"]["n_true"]) == scoring.sum()
    assert truth["simulation"]["summary"]["all"]["22-24"][
        "mag_offset_median"
    ] == pytest.approx(0.1, abs=0.02)
    assert truth["mag_offset_chi2"]["significant"] is True
    shift = truth["mag_offset_shift"]  # simulation minus data, signed
    assert shift["value"] == pytest.approx(0.1, abs=0.02)
    assert shift["significant"] is True and shift["kind"] == "shift"
    # detections lost in the tuning half change nothing
    keep = ~quality.in_half(inp.sim_catalog, SHAPE, "tuning") | (
        rng.uniform(0, 1, N_OBJECTS) < 0.5
    )
    inp.sim_catalog = inp.sim_catalog[keep]
    assert inp.truth()["simulation"] == truth["simulation"]
    run = RunFolder(tmp_path)
    block = {"simulation": "sim/baseline", "data": "DEMO"} | inp.realism()
    quality.write_metrics(run, block, None, truth)
    assert set(read_section(run.metrics, "quality")) == {"realism", "truth"}
