"""Stage 09: background RMS from background pixels and the noise correction."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from scipy.ndimage import correlate

from hscsim_utils.demo.build import lanczos_kernel
from hscsim_utils.errors import InputError
from hscsim_utils.metrics import read_metrics, read_section
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import background_finetune as ftb
from hscsim_utils.stages import background_finetune_plots, quality

SHAPE = (700, 700)


def background(
    bsig: np.ndarray, seed: int, light: float = 0.0, gain: float = 100.0
) -> np.ndarray:
    """Background pixels as ufig makes them: white noise of ``bsig`` resampled
    with the Lanczos-3 kernel, plus the light of undetected galaxies (``light``
    ADU per pixel) with its shot noise (``gain`` electrons per ADU)."""
    rng = np.random.default_rng(seed)
    white = rng.normal(0.0, 1.0, bsig.shape) * bsig
    noise = correlate(white, lanczos_kernel(), mode="nearest")
    return noise + rng.poisson(light * gain, bsig.shape) / gain


def test_ten_percent_noise_excess_is_corrected_within_one_percent():
    bsig = np.full(SHAPE, 0.02)
    data = background(1.1 * bsig, seed=2)  # the data are 10% noisier
    sim = background(bsig, seed=3)
    assert quality.robust_std(data) / quality.robust_std(sim) == pytest.approx(
        1.1, abs=0.01
    )
    k = ftb.std_correction(data, sim)
    assert k == pytest.approx(1.1, abs=0.01)
    again = background(k * bsig, seed=4)
    ratio = quality.robust_std(again) / quality.robust_std(data)
    assert ratio == pytest.approx(1.0, abs=0.01)


def test_shot_noise_of_undetected_light_is_left_out_of_the_scaling():
    bsig = np.full(SHAPE, 0.02)
    light, gain = 0.015, 100.0  # shot noise: a third of the simulated variance
    data = background(1.1 * bsig, seed=5, light=light, gain=gain)
    sim = background(bsig, seed=6, light=light, gain=gain)
    fixed = ftb.photon_variance(sim, gain)
    assert fixed == pytest.approx(light / gain, rel=0.02)
    after = {}
    for name, f in (("plain", 0.0), ("photon", fixed)):
        k = ftb.std_correction(data, sim, f)
        again = background(k * bsig, seed=7, light=light, gain=gain)
        after[name] = quality.robust_std(again) / quality.robust_std(data)
    assert after["photon"] == pytest.approx(1.0, abs=0.01)
    assert after["plain"] < 0.99  # the tutorial's plain ratio falls short
    with pytest.raises(InputError, match="gain"):
        ftb.photon_variance(sim, 0.0)


def test_emulated_background_is_the_simulation_with_the_other_map():
    """Same seed, map_bsig times a smooth factor: only the noise changes, by the
    factor pixel by pixel; scaling the background pixels' deviations from their
    level gives the width (and the correction) of the simulation with the new
    map, not of the old one."""
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]] / SHAPE[0]
    bsig = 0.02 * (1 + 0.3 * x)
    factor = 1.05 + 0.15 * y  # step 1's map over stage 01's
    light, gain = 0.01, 100.0
    old = background(bsig, seed=8, light=light, gain=gain)
    new = background(bsig * factor, seed=8, light=light, gain=gain)
    data = background(bsig * factor * 1.1, seed=9, light=light, gain=gain)
    no_seg = np.zeros(SHAPE, int)
    inputs = SimpleNamespace(sim_image=old, sim_segmentation=no_seg,
                             masked=np.zeros(SHAPE, bool))  # fmt: skip
    emulated = ftb.emulated_background(inputs, bsig, bsig * factor, gain)
    width = quality.robust_std
    assert width(emulated) == pytest.approx(width(new), rel=0.002)
    assert width(old) < 0.95 * width(new)
    fixed = ftb.photon_variance(new, gain)
    k_new = ftb.std_correction(data, new, fixed)
    assert ftb.std_correction(data, emulated, fixed) == pytest.approx(k_new, rel=0.002)
    assert abs(ftb.std_correction(data, old, fixed) - k_new) > 0.05
    # the shot noise of the light is not scaled with the map
    plain = ftb.emulated_background(inputs, bsig, bsig * factor, gain=1e12)
    assert abs(width(plain) / width(new) - 1) > 3 * abs(
        width(emulated) / width(new) - 1
    )
    with pytest.raises(InputError, match="new_bsig"):
        ftb.emulated_background(inputs, bsig, factor[:10], gain)


def test_std_correction_rejects_bad_input():
    noise = background(np.full((100, 100), 1.0), seed=8)
    with pytest.raises(InputError, match="background pixels"):
        ftb.std_correction(noise, np.array([]))
    with pytest.raises(InputError, match="fixed_variance"):
        ftb.std_correction(noise, noise, fixed_variance=10.0)
    with pytest.raises(InputError, match="fixed_variance"):
        ftb.std_correction(noise, noise, fixed_variance=-1.0)


def test_background_rms_leaves_out_sources_and_no_data():
    rng = np.random.default_rng(9)
    image = rng.normal(0.0, 0.05, (512, 512)).astype(np.float32)
    seg = np.zeros(image.shape, np.int32)
    yy, xx = np.mgrid[:512, :512]
    for k, (x, y) in enumerate(rng.uniform(20, 490, (60, 2)), start=1):
        blob = (xx - x) ** 2 + (yy - y) ** 2 < 8**2
        image[blob] += 0.04  # faint extended light: inflates an unmasked RMS
        seg[blob] = k
    no_data = np.zeros(image.shape, bool)
    no_data[:, :40] = True
    image[no_data] = 50.0
    rms = ftb.background_rms_from_background_pixels(image, no_data, seg)
    assert rms.shape == image.shape and rms.dtype == np.float32
    assert np.median(rms[~no_data]) == pytest.approx(0.05, rel=0.03)
    unmasked = ftb.background_rms_from_background_pixels(image, no_data, seg * 0)
    assert np.median(unmasked[~no_data]) > np.median(rms[~no_data])
    with pytest.raises(InputError, match="segmentation"):
        ftb.background_rms_from_background_pixels(image, no_data, seg[:10])
    with pytest.raises(InputError, match="masked"):
        ftb.background_rms_from_background_pixels(image, ~seg.astype(bool), seg)


def write_sysmaps(path, shape=(64, 80)) -> None:
    with h5py.File(path, "w") as fh5:
        fh5.create_dataset("map_bsig", data=np.full(shape, 0.02, np.float32))
        fh5.create_dataset("map_expt", data=np.full(shape, 600.0, np.float32))
        fh5.create_dataset("map_pointings", data=np.zeros(shape, np.uint64))
        fh5["map_pointings"].attrs["n_pointings"] = 7


def test_improved_sysmaps_replace_only_map_bsig(tmp_path):
    src, dst = tmp_path / "sysmaps.h5", tmp_path / "sysmaps_improved.h5"
    write_sysmaps(src)
    new = np.full((64, 80), 0.025, np.float32)
    ftb.write_improved_sysmaps(src, dst, new)
    with h5py.File(dst) as fh5, h5py.File(src) as old:
        assert np.array_equal(fh5["map_bsig"][()], new)
        assert np.array_equal(fh5["map_expt"][()], old["map_expt"][()])
        assert fh5["map_pointings"].attrs["n_pointings"] == 7
        assert np.all(old["map_bsig"][()] == np.float32(0.02))  # source untouched
    ftb.scale_bsig(dst, 1.2)
    assert np.allclose(ftb.read_bsig(dst), 0.03)
    with pytest.raises(InputError, match="shape"):
        ftb.write_improved_sysmaps(src, tmp_path / "bad.h5", new[:10])
    with pytest.raises(InputError, match="positive"):
        ftb.scale_bsig(dst, np.nan)
    assert np.allclose(ftb.read_bsig(dst), 0.03)  # unchanged after the errors
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sysmaps.h5", "sysmaps_improved.h5",
    ]  # fmt: skip
    with pytest.raises(InputError, match="run stage 01"):
        ftb.read_bsig(tmp_path / "absent.h5")


def test_simulation_needs_the_improved_sysmaps(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(InputError, match="background_finetune/sysmaps.h5"):
        ftb.simulate_with_sysmaps(SimpleNamespace(band="i"), run, ftb.TUNED_SIM)


def test_stage09_writes_inside_its_product(tmp_path):
    run = RunFolder(tmp_path / "run")
    product = run.root / "background_finetune"
    assert ftb.sysmaps_path(run) == product / "sysmaps.h5"
    for step in (ftb.MASKED_SIM, ftb.TUNED_SIM):
        assert ftb.sysmaps_path(run, step).parent == product
        assert ftb.sim_dir(run, step).parent == product
    assert ftb.sysmaps_path(run, ftb.MASKED_SIM) != ftb.sysmaps_path(run)


def test_params_are_checked():
    assert ftb.Params().account_photon_noise is True
    with pytest.raises(InputError, match="background_finetune.account_photon_noise"):
        ftb.Params(account_photon_noise="yes")
    assert ftb.Params().masked_simulation is False
    with pytest.raises(InputError, match="background_finetune.masked_simulation"):
        ftb.Params(masked_simulation=1)


def test_realism_side_by_side():
    blocks = {
        "baseline": {"simulation": "sim/baseline", "data": "DEMO",
                     "bkg_std_ratio": 0.9, "bkg_ks": 0.03, "n_detect_ratio": None},
        "bkg_tuned": {"simulation": "background_finetune/sim_tuned", "data": "DEMO",
                      "bkg_std_ratio": 1.001, "bkg_ks": 0.004},
    }  # fmt: skip
    lines = ftb.realism_table(blocks).splitlines()
    assert lines[0].split() == ["metric", "baseline", "bkg_tuned"]
    assert lines[1].split() == ["bkg_std_ratio", "0.9000", "1.0010"]
    assert lines[-1].split() == ["n_detect_ratio", "-", "-"]


def test_histogram_plot_says_what_the_data_is():
    import matplotlib

    matplotlib.use("Agg")
    data = background(np.full((200, 200), 0.02), seed=10)
    sims = {"baseline": 0.9 * data.ravel(), "bkg_tuned": data.ravel()}
    label = "DEMO tile (simulated): test"
    fig = background_finetune_plots.plot_background_steps(data.ravel(), sims, label)
    assert label in fig._suptitle.get_text()
    assert len(fig.axes[1].lines) == 3  # two ratios and the line at 1


# --- stages 08 and 09 end to end, on a small demo tile ------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The notebook tests' small demo tile ($HSCSIM_DEMO_DIR, built if absent)
    and a fresh run folder with stages 01-07 done."""
    from hscsim_utils.demo.generate import build_tile
    from hscsim_utils.hsc.tile import default_demo_dir
    from hscsim_utils.pipeline.runner import run_tile
    from tests.conftest import NOTEBOOK_TILE_SEED, NOTEBOOK_TILE_SIZE

    demo_dir = default_demo_dir()
    if not (demo_dir / "tile.yaml").is_file():
        build_tile(demo_dir, size=NOTEBOOK_TILE_SIZE, seed=NOTEBOOK_TILE_SEED)
    run = RunFolder(tmp_path_factory.mktemp("ft09") / "run")
    run_tile(demo_dir / "tile.yaml", run.root, stages="01-07", report=False)
    return demo_dir / "tile.yaml", run


def tree(root: Path, exclude: tuple[str, ...]) -> dict[str, str]:
    """Every folder and file under ``root`` (files by content) except the top-level
    entries ``exclude``."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in exclude:
            continue
        out[rel.as_posix()] = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        )
    return out


def execute(name: str, tile_file: Path, run: RunFolder) -> None:
    import papermill

    from hscsim_utils.pipeline.runner import NOTEBOOK_DIR

    papermill.execute_notebook(
        str(NOTEBOOK_DIR / f"{name}.ipynb"),
        str(run.notebooks_dir / f"{name}.ipynb"),
        parameters={"tile_file": str(tile_file), "run_dir": str(run.root)},
        cwd=str(NOTEBOOK_DIR),
        progress_bar=False,
    )


@pytest.mark.slow
def test_notebooks_08_and_09_fine_tune_psf_and_background(small_run):
    from hscsim_utils.hsc.tile import load_tile
    from hscsim_utils.stages import psf_finetune as ftp

    tile_file, run = small_run
    common = ("metrics.json", "notebooks")
    quality07 = read_section(run.metrics, "quality")
    baseline = quality07["realism"]
    assert (baseline["simulation"], baseline["data"]) == ("sim/baseline", "DEMO")

    # stage 08 writes its product and its metrics section, nothing else
    outside = tree(run.root, ("psf_finetune", *common))
    execute("08_psf_finetune", tile_file, run)
    assert tree(run.root, ("psf_finetune", *common)) == outside
    metrics = read_metrics(run.metrics)
    assert metrics["quality"] == quality07
    psf08 = metrics["psf_finetune"]
    assert psf08["before"]["simulation"] == "sim/baseline"
    assert psf08["after"]["simulation"] == "psf_finetune/sim"
    assert 0 < psf08["before"]["psf_fwhm_max_abs_diff"] < 0.5
    assert psf08["after"]["psf_fwhm_max_abs_diff"] > 0
    assert psf08["stage05_params"] == ftp.stage05_settings(run)
    assert ftp.read_adjustment(run) == {
        k: tuple(v) for k, v in psf08["adjustment"].items()
    }
    tuned = json.loads((ftp.tuned_sim_dir(run) / "simulation.json").read_text())
    assert tuned["parameters"]["filepath_psfmodel_input_dict"]["i"] == str(
        ftp.improved_model_path(run)
    )
    for path in (ftp.improved_catalog_path(run), run.plot("08_psf_max_diff.png"),
                 run.plot("08_psf_adjustment_fit.png")):  # fmt: skip
        assert path.is_file()

    # stage 09: its product and section only; the map from background pixels
    # times the correction; every simulation's realism side by side
    outside = tree(run.root, ("background_finetune", *common))
    execute("09_background_finetune", tile_file, run)
    assert tree(run.root, ("background_finetune", *common)) == outside
    metrics = read_metrics(run.metrics)
    assert metrics["quality"] == quality07  # 07, then 08 and 09: not overwritten
    assert metrics["psf_finetune"] == psf08
    assert "realism" not in metrics
    bkg09 = metrics["background_finetune"]
    steps = bkg09["realism"]
    assert bkg09["steps"] == ["baseline", "psf_tuned", "bkg_tuned"]
    assert set(steps) == set(bkg09["steps"])
    assert steps["baseline"] == baseline  # the same numbers as stage 07's
    assert [steps[k]["simulation"] for k in bkg09["steps"]] == [
        "sim/baseline", "psf_finetune/sim", "background_finetune/sim_tuned",
    ]  # fmt: skip
    assert {b["data"] for b in steps.values()} == {"DEMO"}
    # the correction emulated on stage 08's simulation: no simulation with step 1's map
    assert bkg09["correction_simulation"] == "psf_tuned"
    assert bkg09["correction_emulated"] is True
    assert not ftb.sim_dir(run, ftb.MASKED_SIM).exists()
    final = steps[ftb.TUNED_SIM]
    assert abs(final["bkg_std_ratio"] - 1) < abs(baseline["bkg_std_ratio"] - 1)
    assert abs(final["bkg_std_ratio"] - 1) < 0.02
    assert final["bkg_ks"] < baseline["bkg_ks"]
    assert bkg09["improved_psf"] is True
    tile = load_tile(tile_file)
    expected = ftb.data_background_rms(tile, run)
    ratio = ftb.read_bsig(ftb.sysmaps_path(run)) / expected
    good = expected > 0
    assert np.allclose(ratio[good], bkg09["std_correction"], rtol=1e-5)
    masked = ftb.read_bsig(ftb.sysmaps_path(run, ftb.MASKED_SIM))
    assert np.allclose(masked[good], expected[good], rtol=1e-6)
    manifest = json.loads((ftb.sim_dir(run, ftb.TUNED_SIM) / "simulation.json")
                          .read_text())  # fmt: skip
    assert manifest["parameters"]["filepath_sysmaps_dict"]["i"] == str(
        ftb.sysmaps_path(run, ftb.TUNED_SIM)
    )
    assert run.plot("09_background_histograms.png").is_file()

    # the tutorial's way: simulated with step 1's map; the emulated correction
    # beside it is the one above, and the two agree
    tutorial = ftb.run(tile, run, ftb.Params(masked_simulation=True))
    section = tutorial.section
    assert section["steps"] == ["baseline", "psf_tuned", "bkg_masked", "bkg_tuned"]
    assert section["correction_simulation"] == "bkg_masked"
    assert section["correction_emulated"] is False
    assert section["emulated_std_correction"] == bkg09["std_correction"]
    assert section["std_correction"] == pytest.approx(
        section["emulated_std_correction"], abs=0.003
    )
    manifest = json.loads((ftb.sim_dir(run, ftb.MASKED_SIM) / "simulation.json")
                          .read_text())  # fmt: skip
    assert manifest["parameters"]["filepath_sysmaps_dict"]["i"] == str(
        ftb.sysmaps_path(run, ftb.MASKED_SIM)
    )
