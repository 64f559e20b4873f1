"""The chain on a DEMO tile of three bands: the real notebooks, run by the runner.

A 2000 x 2000 GalSim DEMO tile in g, r and i (detection band i) goes through
stages 01-09 with ``hscsim run``'s runner and papermill: every other band's
per-band stages run in its band run beside the detection band's, its source
extraction measures the i-band detections (forced photometry), stage 06
simulates the three bands in one GalSBI/UFig run and stage 07 compares their
colours with the data's; stages 08 and 09 fine-tune the PSF and background of
every band. A second run finds everything up to date.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hscsim_utils.pipeline import runner
from hscsim_utils.runfolder import STATE_FILE, RunFolder
from hscsim_utils.stages.source_extraction import read_catalog

pytestmark = pytest.mark.slow

BANDS = "gri"
SIZE = (2000, 2000)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from hscsim_utils.demo.independent import build_independent_demo_tile

    root = tmp_path_factory.mktemp("gri")
    tile = build_independent_demo_tile(root / "input", size=SIZE, seed=7,
                                       bands=tuple(BANDS))  # fmt: skip
    run = RunFolder(root / "run")
    state = runner.run_tile(tile, run.root, stages="01-07")
    return tile, run, state


def test_every_stage_of_every_band_ran(chain):
    _, run, state = chain
    assert {name: s["status"] for name, s in state.items()} == {
        name: "ok" for name in state
    }  # fmt: skip
    assert len(state) == 7
    for band in "gr":
        band_state = json.loads((run.band_run(band).root / STATE_FILE).read_text())
        assert sorted(band_state) == [
            "01_sky_and_sysmaps", "02_masks", "03_source_extraction", "04_stars",
            "05_psf",
        ]  # fmt: skip
        assert all(s["status"] == "ok" for s in band_state.values())
    assert "Band runs" in (run.root / "report.html").read_text()


def test_other_bands_are_measured_on_the_detection_bands_sources(chain):
    _, run, _ = chain
    columns = ["X_IMAGE", "Y_IMAGE", "MAG_AUTO"]
    detection = read_catalog(run.sextractor_cat, columns)
    assert len(detection) > 1000
    for band in "gr":
        cat = read_catalog(run.band_run(band).sextractor_cat, columns)
        np.testing.assert_array_equal(cat["X_IMAGE"], detection["X_IMAGE"])
        assert not np.array_equal(cat["MAG_AUTO"], detection["MAG_AUTO"])


def test_colours_are_compared_with_their_floors(chain):
    _, run, _ = chain
    block = json.loads(run.metrics.read_text())["quality"]["colours"]
    assert block["bands"] == ["g", "r", "i"] and block["data"] == "DEMO"
    stats = block["statistics"]
    assert sorted(stats) == ["g-r_ks", "g-r_median_shift", "r-i_ks",
                             "r-i_median_shift"]  # fmt: skip
    for stat in stats.values():
        assert min(stat["n"]) > 500 and 0 < stat["floor"] < 0.1
        assert stat["significant"] in (True, False)
    notebooks = run.notebooks_dir
    figures = ("06_bands_background_rms.png", "06_bands_masked.png",
               "06_bands_psf_fwhm.png", "07_colours.png")  # fmt: skip
    for figure in figures:
        assert (notebooks / figure).is_file(), figure


def test_every_band_has_its_realism_block(chain):
    """Stage 07 compares every other band's image and objects too, each band
    with floors from its own data."""
    _, run, _ = chain
    quality = json.loads(run.metrics.read_text())["quality"]
    bands = quality["bands"]
    assert sorted(bands) == ["g", "r"]
    for band, block in bands.items():
        assert block["band"] == band and block["data"] == "DEMO"
        assert 0.7 < block["bkg_std_ratio"] < 1.4
        stats = block["statistics"]
        assert stats.keys() == quality["realism"]["statistics"].keys()
        floors = [stats[k]["floor"] for k in ("bkg_ks", "mag_auto_ks")]
        assert all(0 < f < 0.2 for f in floors)
    # each band's own pixels: not the detection band's numbers again
    assert bands["g"]["bkg_ks"] != quality["realism"]["bkg_ks"]


def test_each_band_has_its_own_seeing(chain):
    """The DEMO's g band has broader seeing than its i band; stage 05 of each
    band finds it (PSF model FWHM on the grid)."""
    from hscsim_utils.stages.bands_plots import psf_fwhm_map

    _, run, _ = chain
    fwhm = {b: np.nanmedian(psf_fwhm_map(r.psf_model)[0])
            for b, r in run.band_runs(BANDS, "i").items()}  # fmt: skip
    assert fwhm["g"] > fwhm["i"] + 0.1 and fwhm["r"] > fwhm["i"] + 0.05


@pytest.fixture(scope="module")
def tuned(chain):
    """Stages 08 and 09 on the run of ``chain``."""
    tile, run, _ = chain
    state = runner.run_tile(tile, run.root, stages="08-09")
    return json.loads(run.metrics.read_text()), state


def test_every_band_has_its_psf_fine_tuned(chain, tuned):
    """Stage 08 fits an adjustment in every band, on that band's baseline image,
    estimates the band's PSF again into its run folder, and measures every band
    of one simulation of all bands with the improved models."""
    _, run, _ = chain
    metrics, state = tuned
    assert state["08_psf_finetune"]["status"] == "ok"
    section = metrics["psf_finetune"]
    assert section["band"] == "i" and sorted(section["bands"]) == ["g", "r"]
    tuned_sim = json.loads((run.psf_finetune_dir / "sim" / "simulation.json")
                           .read_text())  # fmt: skip
    assert tuned_sim["settings"]["bands"] == ["g", "r", "i"]
    for band, block in section["bands"].items():
        band_run = run.band_run(band)
        assert block["band"] == band and block["n_fit_stars"] > 5
        assert (band_run.psf_finetune_dir / "psf_model.h5").is_file()
        assert block["improved_model"] == f"bands/{band}/psf_finetune/psf_model.h5"
        assert block["after"]["simulation"] == "psf_finetune/sim"
        assert block["after"]["psf_catalog"] == (
            f"psf_finetune/sim/psf_catalog_sim_{band}.cat"
        )
        assert block["before"]["n_stars"] > 5 and block["after"]["n_stars"] > 5
        # each band its own stars and fit, not the detection band's again
        assert block["adjustment"] != section["adjustment"]


def test_every_band_has_its_background_fine_tuned(chain, tuned):
    """Stage 09 corrects every band's background map from that band's
    background pixels; on the scoring half, each band's tuned background width
    is closer to the data's than the baseline's (the DEMO's backgrounds are
    wider than the untuned simulation's in every band)."""
    _, run, _ = chain
    metrics, state = tuned
    assert state["09_background_finetune"]["status"] == "ok"
    section = metrics["background_finetune"]
    assert section["band"] == "i" and sorted(section["bands"]) == ["g", "r"]
    floors = metrics["quality"]["bands"]
    for band, block in section["bands"].items():
        assert block["steps"] == ["baseline", "psf_tuned", "bkg_tuned"]
        assert block["correction_simulation"] == "psf_tuned"
        assert (run.band_run(band).background_finetune_dir / "sysmaps.h5").is_file()
        realism = block["realism"]
        # the baseline as stage 07 scored it in this band
        stage07 = {k: v for k, v in floors[band].items() if k != "band"}
        assert realism["baseline"] == stage07
        before = abs(realism["baseline"]["bkg_std_ratio"] - 1)
        after = abs(realism["bkg_tuned"]["bkg_std_ratio"] - 1)
        assert after < before and block["std_correction"] > 1
        # scored against the floors stage 07 computed for this band
        floor = floors[band]["statistics"]["bkg_std_ratio"]["floor"]
        assert realism["bkg_tuned"]["statistics"]["bkg_std_ratio"]["floor"] == floor
    assert section["bands"]["g"]["std_correction"] != section["std_correction"]


def test_a_second_run_skips_everything(chain, tuned, capfd):
    """The fine-tuning files in the band runs do not count as band-run
    products: nothing runs again."""
    tile, run, _ = chain
    capfd.readouterr()
    runner.run_tile(tile, run.root, stages="01-09")
    printed = capfd.readouterr().out
    assert printed.count("unchanged, skipped") == 9 + 2 * 5
    assert ": ok in" not in printed
