"""report.html: summary page first, stages without code or terminal chatter."""

from __future__ import annotations

import json

import nbformat
import pytest

from hscsim_utils.pipeline import report
from hscsim_utils.runfolder import STATE_FILE, RunFolder
from tests.synthetic import write_tile_file

PROGRESS = "\rsimulate:  33%|███▎      | 1/3 [00:03<00:06,  3.06s/step, inputs]"
WARNING = (
    "/x/site-packages/galsbi/ucat/util.py:160: UserWarning: lum_fct_m_max is too "
    "low\ngals_mag_max=28.00\n  warnings.warn(msg, stacklevel=1)\n"
)
CHATTER = [
    ("stdout", "[main]\nmodel = LCDM\ncompilation_flags = -O3\n"),
    ("stdout", "26-12-01 22:00:50 arraytools INF   loaded x.h5 with n_rows=2000 \n"),
    (
        "stderr",
        "/x/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"
        "  from .autonotebook import tqdm as notebook_tqdm\n",
    ),  # fmt: skip
    ("stderr", PROGRESS),
    ("stdout", "== Ivy run took:  84.222 s ===\nsample gal population :   8.372s\n"),
]


def _stream(name: str, text: str):
    return nbformat.v4.new_output("stream", name=name, text=text)


def _executed(path, science: str, extra=()) -> None:
    cell = nbformat.v4.new_code_cell("SECRET_CODE_MARKER = 1")
    cell.outputs = [_stream("stdout", science), _stream("stderr", WARNING)]
    cell.outputs += [_stream(name, text) for name, text in extra]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nbformat.write(nb, path)


METRICS = {
    "quality": {
        "realism": {"simulation": "sim/baseline", "data": "DEMO",
                    "bkg_ks": 0.0034230000000000094, "mag_auto_ks": 0.0227},
        "closure": {"star_detect_frac": 0.9868},
    },
    "psf_finetune": {
        "estimator": "direct",
        "before": {"simulation": "sim/baseline", "psf_fwhm_max_abs_diff": 0.031,
                   "max_abs_diff": {"psf_fwhm": 0.031, "psf_e1": 0.002}},
        "after": {"simulation": "psf_finetune/sim", "psf_fwhm_max_abs_diff": 0.012},
    },
    "background_finetune": {
        "realism": {
            "baseline": {"simulation": "sim/baseline", "data": "DEMO",
                         "bkg_ks": 0.0034},
            "bkg_tuned": {"simulation": "background_finetune/sim_tuned",
                          "data": "DEMO", "bkg_ks": 0.0012},
        },
        "std_correction": 1.0123,
    },
    "timing": {"01_sky": {"wall_s": 23.1}},
}  # fmt: skip


@pytest.fixture
def run(tmp_path):
    run = RunFolder(tmp_path / "run")
    _executed(run.notebooks_dir / "01_sky.ipynb", "median bsig 0.0158 ADU\n", CHATTER)
    _executed(run.notebooks_dir / "07_quality.ipynb", "bkg_ks = 0.0034\n")
    (run.notebooks_dir / "07_images.png").write_bytes(b"\x89PNG fake")
    run.metrics.write_text(json.dumps(METRICS))
    return run


@pytest.fixture
def tile(tmp_path):
    return write_tile_file(tmp_path, "demo-x", is_demo=True, seed=42)


def test_summary_page_then_clean_stages(run, tile):
    state = {"01_sky": {"status": "ok", "wall_s": 23.1, "peak_rss_mb": 1725.7},
             "07_quality": {"status": "failed", "wall_s": 2.0}}  # fmt: skip
    path = report.write_report(run, {"01_sky": "inputs changed"}, tile, state)
    page = path.read_text()
    summary = page[: page.index('id="stage-01_sky"')]
    assert "hscsim run report: DEMO tile (simulated): demo-x" in summary
    assert "DEMO tile (simulated, not real HSC data)" in summary
    assert (
        "<td>quality</td><td>sim/baseline vs DEMO data</td><td>realism.bkg_ks</td>"
        "<td>0.003423</td>" in summary
    )
    assert "<td>quality</td><td>-</td><td>closure.star_detect_frac</td>" in summary
    assert '<a href="#stage-07_quality">07_quality</a></td><td>failed' in summary
    assert '<a href="#stage-01_sky">01_sky</a></td><td>STALE' in summary
    assert "data:image/png;base64," in summary and "galsbi" in summary
    assert "Stage 01_sky (STALE: inputs changed)" in page
    # the science stays, the code and the terminal chatter do not
    assert "median bsig 0.0158 ADU" in page and "bkg_ks = 0.0034" in page
    gone = ("SECRET_CODE_MARKER", "s/step", "compilation_flags", "n_rows=2000",
            "TqdmWarning", "notebook_tqdm", "Ivy run", "warnings.warn")  # fmt: skip
    for text in gone:
        assert text not in page, text
    # the warning once, at the end, with its continuation and both stages
    warnings = page[page.index("<h1>Warnings</h1>") :]
    assert warnings.count("UserWarning: lum_fct_m_max is too low") == 1
    assert "gals_mag_max=28.00" in warnings and "01_sky, 07_quality" in warnings
    assert "site-packages" not in warnings
    assert "Band runs" not in summary  # one band


def test_redshifts_one_row_per_magnitude_limit():
    block = {"simulation": "sim/baseline", "magnitude": "MAG_AUTO, i band",
             "z_edges": [0.0, 0.1], "limits": {"25.0": {
                 "n_detected": 3000, "n_galaxies": 2718, "z_mean": 1.2131,
                 "z_mean_err": 0.018, "z_median": 0.9381, "z_median_err": 0.013,
                 "counts": [1, 2]}}}  # fmt: skip
    rows = report.metric_rows({"quality": {"redshifts": block}})
    assert ("quality", "sim/baseline", "redshifts.limits.25.0",
            "2718 galaxies of 3000 detections, median z 0.938 +- 0.013, "
            "mean z 1.213 +- 0.018") in rows  # fmt: skip
    assert not [r for r in rows if "z_edges" in r[2] or "[" in r[3]]


def test_band_runs_are_listed(run, tile):
    band = run.band_run("g").root
    band.mkdir(parents=True)
    (band / STATE_FILE).write_text(json.dumps(
        {"03_source_extraction": {"status": "ok", "wall_s": 5.5, "peak_rss_mb": 900}}
    ))  # fmt: skip
    page = report.write_report(run, {}, tile, {}).read_text()
    assert "Band runs" in page
    assert "<td>g</td><td>03_source_extraction</td><td>ok</td><td>5.5</td>" in page


def test_real_tile_is_said_to_be_real(run, tmp_path):
    real = write_tile_file(tmp_path, "tract-9813", is_demo=False)
    page = report.write_report(run, None, real, {}).read_text()
    assert "hscsim run report: REAL HSC data: tract-9813" in page
    assert "with the REAL data" in page and "DEMO tile (simulated):" not in page


def test_clean_stream_keeps_science_and_drops_progress():
    text, warnings = report.clean_stream("a = 1\n" + PROGRESS + "\nb = 2\n", "stdout")
    assert text == "a = 1\nb = 2\n" and warnings == []
    text, warnings = report.clean_stream(WARNING, "stderr")
    assert text == "" and len(warnings) == 1
    assert warnings[0].startswith("galsbi/ucat/util.py:160: UserWarning")
    stamp = "\x1b[33m26-12-01 22:04:34 file_utils WAR   Cannot remove x\x1b[0m\n"
    assert report.clean_stream(stamp) == ("", ["file_utils: Cannot remove x"])


def test_metric_rows_say_section_and_simulation():
    rows = report.metric_rows(METRICS)
    assert {r[0] for r in rows} == {"quality", "psf_finetune", "background_finetune"}
    found = {(r[0], r[2]): (r[1], r[3]) for r in rows}
    assert found["quality", "realism.mag_auto_ks"] == (
        "sim/baseline vs DEMO data", "0.0227",
    )  # fmt: skip
    assert found["psf_finetune", "before.psf_fwhm_max_abs_diff"] == (
        "sim/baseline", "0.031",
    )  # fmt: skip
    assert found["psf_finetune", "after.psf_fwhm_max_abs_diff"] == (
        "psf_finetune/sim", "0.012",
    )  # fmt: skip
    assert found["psf_finetune", "before.max_abs_diff"][1].startswith('{"psf_fwhm"')
    assert found["psf_finetune", "estimator"] == ("-", "direct")
    assert found["background_finetune", "realism.bkg_tuned.bkg_ks"] == (
        "background_finetune/sim_tuned vs DEMO data", "0.0012",
    )  # fmt: skip
    assert found["background_finetune", "std_correction"] == ("-", "1.012")
    assert not any("simulation" in r[2] or r[2].endswith("data") for r in rows)
    assert not any(r[0] == "timing" for r in rows)  # the stages table has it


def test_closure_rows_carry_their_target_and_verdict():
    from hscsim_utils.metrics import closure_verdict

    assert closure_verdict("star_detect_frac", 0.97) == "target >= 0.95: met"
    assert closure_verdict("psf_fwhm_bias_frac", -0.02) == "target |x| <= 0.01: missed"
    assert closure_verdict("bsig_rms_rel_err", None) is None
    assert closure_verdict("psf_flux_ratio_rms", 0.06) is None  # no target
