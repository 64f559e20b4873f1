"""The papermill chain runner on small real notebooks."""

from __future__ import annotations

import json

import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.pipeline import runner
from tests.synthetic import write_notebooks, write_tile_file

STAGE = """# %% tags=["parameters"]
tile_file = ""
run_dir = ""
# %%
from pathlib import Path
out = Path(run_dir) / "{name}.txt"
out.write_text(str(len(list(Path(run_dir).glob("*.txt")))))
{extra}
"""


def _notebooks(folder, fail_in=None):
    return write_notebooks(folder, {
        name: STAGE.format(
            name=name,
            extra="raise ValueError('boom in ' + out.name)" if name == fail_in else "",
        )
        for name in ("01_a", "02_b", "03_c")
    })  # fmt: skip


@pytest.fixture
def tile(tmp_path):
    (tmp_path / "calexp.fits").write_bytes(b"x")
    return write_tile_file(tmp_path, "t")


def test_chain_runs_skips_and_reruns(tmp_path, tile, capfd):
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    state = runner.run_tile(tile, out, notebook_dir=nbs)
    assert "without encryption" not in capfd.readouterr().err  # kernel chatter
    assert [s["status"] for s in state.values()] == ["ok"] * 3
    assert (out / "03_c.txt").read_text() == "2"  # ran after 01 and 02
    assert (out / "notebooks" / "02_b.ipynb").is_file()
    assert (out / "report.html").read_text().count("Stage 0") == 3
    timing = json.loads((out / "metrics.json").read_text())["timing"]
    assert set(timing) == {"01_a", "02_b", "03_c"} and timing["01_a"]["wall_s"] > 0

    (out / "01_a.txt").unlink()
    runner.run_tile(tile, out, notebook_dir=nbs)
    assert not (out / "01_a.txt").exists(), "unchanged stage was not skipped"
    assert "unchanged, skipped" in capfd.readouterr().out

    (tmp_path / "calexp.fits").write_bytes(b"changed input")
    runner.run_tile(tile, out, notebook_dir=nbs, stages="01-02")
    assert (out / "01_a.txt").exists()

    (out / "01_a.txt").unlink()
    runner.run_tile(tile, out, notebook_dir=nbs, start="02", force=True)
    assert not (out / "01_a.txt").exists()


def test_failing_stage_stops_the_chain(tmp_path, tile):
    nbs = _notebooks(tmp_path / "nb", fail_in="02_b")
    out = tmp_path / "run"
    with pytest.raises(runner.StageFailed) as err:
        runner.run_tile(tile, out, notebook_dir=nbs)
    assert "02_b" in str(err.value) and "boom in 02_b.txt" in str(err.value)
    assert (out / "notebooks" / "02_b.ipynb").is_file()
    assert not (out / "03_c.txt").exists()
    state = json.loads((out / runner.STATE_FILE).read_text())
    assert state["02_b"]["status"] == "failed" and "03_c" not in state


def test_long_stages_show_their_progress(tmp_path, tile, capfd):
    slow = STAGE.format(name="01_a", extra="") + (
        "\nfrom tqdm import tqdm\nimport time, sys\n"
        "for _ in tqdm(range(3), desc='simulate', file=sys.stdout):\n"
        "    time.sleep(0.2)\n"
    )
    nbs = write_notebooks(tmp_path / "nb", {"01_a": slow})
    runner.run_tile(tile, tmp_path / "run", notebook_dir=nbs, label="t1")
    assert "01_a: simulate 3/3" in capfd.readouterr().out


def test_progress_line_parsing():
    line = "\rsimulate:  33%|███▎      | 1/3 [00:03<00:06,  3.06s/step, GalSBI + UFig]"
    match = runner.StageProgress._BAR.search(line)
    assert runner.StageProgress.describe(match) == "simulate 1/3 GalSBI + UFig"
    assert runner.StageProgress._BAR.search("written: 3/4 files") is None


def test_failed_run_still_writes_its_report(tmp_path, tile):
    nbs = _notebooks(tmp_path / "nb", fail_in="02_b")
    out = tmp_path / "run"
    with pytest.raises(runner.StageFailed):
        runner.run_tile(tile, out, notebook_dir=nbs)
    html = (out / "report.html").read_text()
    assert "Stage 01_a" in html and "Stage 02_b" in html and "Stage 03_c" not in html
    assert "boom in 02_b.txt" in html


def test_stages_left_behind_are_marked_stale(tmp_path, tile, capfd):
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    runner.run_tile(tile, out, notebook_dir=nbs)
    assert "STALE" not in (out / "report.html").read_text()
    (tmp_path / "calexp.fits").write_bytes(b"another calexp")  # e.g. a new seed
    capfd.readouterr()
    runner.run_tile(tile, out, notebook_dir=nbs, stages="01")
    printed = capfd.readouterr().out
    assert "02_b: STALE" in printed and "03_c: STALE" in printed
    assert "01_a: STALE" not in printed and "--from 02" in printed
    html = (out / "report.html").read_text()
    assert "Stage 02_b (STALE" in html and "Stage 01_a (STALE" not in html
    runner.run_tile(tile, out, notebook_dir=nbs, start="02")
    assert "STALE" not in (out / "report.html").read_text()


def test_demo_tile_too_small_for_the_psf_stage(tmp_path):
    from tests.synthetic import write_synthetic_calexp

    write_synthetic_calexp(tmp_path / "calexp.fits", shape=(1000, 1000))
    small = write_tile_file(tmp_path, "small-demo", is_demo=True)
    nbs = write_notebooks(tmp_path / "nb", {
        name: STAGE.format(name=name, extra="") for name in ("01_a", "05_p")
    })  # fmt: skip
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"1000 x 1000 px: stages 05-09 need at"):
        runner.run_tile(small, out, notebook_dir=nbs)
    assert not (out / "01_a.txt").exists(), "a stage ran before the refusal"
    runner.run_tile(small, out, notebook_dir=nbs, stages="01")  # stages 01-04 run
    assert (out / "01_a.txt").exists()
    real = write_tile_file(tmp_path, "small-real", is_demo=False)
    runner.run_tile(real, tmp_path / "real", notebook_dir=nbs)  # real: stars decide


def test_stage_selection_errors(tmp_path):
    stages = runner.discover_stages(_notebooks(tmp_path / "nb"))
    assert [s.number for s in runner.select_stages(stages, "01,03")] == ["01", "03"]
    with pytest.raises(InputError, match="--stages"):
        runner.select_stages(stages, "x-y")
    with pytest.raises(InputError, match="selects no stage"):
        runner.select_stages(stages, "07-09")
