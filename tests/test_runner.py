"""The papermill chain runner on small real notebooks."""

from __future__ import annotations

import json
import os
import re

import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.pipeline import fingerprint, runner
from hscsim_utils.stages.registry import StageSpec
from tests.synthetic import write_notebooks, write_tile_file

STAGE = """# %% tags=["parameters"]
tile_file = ""
run_dir = ""
level = 1
# %%
from pathlib import Path
out = Path(run_dir) / "{name}.txt"
out.write_text(str(len(list(Path(run_dir).glob("*.txt")))) + "/" + str(level))
{extra}
"""

#: Three stages: a reads the calexp and writes a; b reads a; c reads b.
SPECS = (
    StageSpec("01", "a", reads=("tile:calexp",), writes=("a",)),
    StageSpec("02", "b", reads=("a",), writes=("b",)),
    StageSpec("03", "c", reads=("b",), writes=("c",)),
)
PRODUCTS = {"a": "01_a.txt", "b": "02_b.txt", "c": "03_c.txt"}


def _notebooks(folder, fail_in=None, extra=None):
    return write_notebooks(folder, {
        name: STAGE.format(
            name=name,
            extra="raise ValueError('boom in ' + out.name)" if name == fail_in
            else (extra or {}).get(name, ""),
        )
        for name in ("01_a", "02_b", "03_c")
    })  # fmt: skip


def _run(tile, out, nbs, **kwargs):
    return runner.run_tile(
        tile, out, notebook_dir=nbs, specs=SPECS, products=PRODUCTS, **kwargs
    )


@pytest.fixture
def tile(tmp_path):
    (tmp_path / "calexp.fits").write_bytes(b"x")
    return write_tile_file(tmp_path, "t")


def test_chain_runs_skips_and_reruns(tmp_path, tile, capfd):
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    state = _run(tile, out, nbs)
    assert "without encryption" not in capfd.readouterr().err  # kernel chatter
    assert [s["status"] for s in state.values()] == ["ok"] * 3
    assert (out / "03_c.txt").read_text() == "2/1"  # ran after 01 and 02
    assert (out / "notebooks" / "02_b.ipynb").is_file()
    assert (out / "report.html").read_text().count("Stage 0") == 3
    timing = json.loads((out / "metrics.json").read_text())["timing"]
    assert set(timing) == {"01_a", "02_b", "03_c"} and timing["01_a"]["wall_s"] > 0

    capfd.readouterr()
    _run(tile, out, nbs)
    assert capfd.readouterr().out.count("unchanged, skipped") == 3

    (tmp_path / "calexp.fits").write_bytes(b"changed input")
    _run(tile, out, nbs, stages="01-02")
    assert (out / "01_a.txt").exists()

    (out / "01_a.txt").write_text("edited")
    _run(tile, out, nbs, start="02", force=True)
    assert (out / "01_a.txt").read_text() == "edited"


def test_failing_stage_stops_the_chain(tmp_path, tile):
    nbs = _notebooks(tmp_path / "nb", fail_in="02_b")
    out = tmp_path / "run"
    with pytest.raises(runner.StageFailed) as err:
        _run(tile, out, nbs)
    assert "02_b" in str(err.value) and "boom in 02_b.txt" in str(err.value)
    # the executed notebook is written once, at the end: with the failing cell's
    # error, under its own name, no temporary left
    kept = (out / "notebooks" / "02_b.ipynb").read_text()
    assert "boom in 02_b.txt" in kept and '"output_type": "error"' in kept
    assert sorted(p.name for p in (out / "notebooks").iterdir()) == [
        "01_a.ipynb", "02_b.ipynb"]  # fmt: skip
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
    runner.run_tile(tile, tmp_path / "run", notebook_dir=nbs, label="t1",
                    specs=SPECS[:1], products=PRODUCTS)  # fmt: skip
    assert "01_a: simulate 3/3" in capfd.readouterr().out


def test_floor_calls_of_each_stage_are_recorded(tmp_path, tile):
    timed = (
        "\nimport time\nfrom hscsim_utils.calltimes import floor_call\n"
        "with floor_call('simulation'):\n"
        "    with floor_call('sextractor'):  # nested: counted once, as simulation\n"
        "        time.sleep(0.3)\n"
        "with floor_call('sextractor'):\n"
        "    time.sleep(0.2)\n"
        "time.sleep(0.3)  # the stage's own work\n"
    )
    nbs = _notebooks(tmp_path / "nb", extra={"02_b": timed})
    state = _run(tile, tmp_path / "run", nbs)
    calls = state["02_b"]["calls_s"]
    assert set(calls) == {"simulation", "sextractor"}
    assert 0.3 <= calls["simulation"] < 0.5 and 0.2 <= calls["sextractor"] < 0.4
    assert state["02_b"]["wall_s"] > calls["simulation"] + calls["sextractor"] + 0.3
    assert state["01_a"]["calls_s"] == {} and "HSCSIM_CALL_LOG" not in os.environ


def test_stages_share_one_kernel_that_each_finds_like_new(tmp_path, tile):
    """The chain runs its stages in one kernel (same process), and each stage
    finds it as a kernel of its own would be: no variable of an earlier stage,
    execution counts from 1, no open figure, its own call log."""
    probe = (
        "import json, os, matplotlib\nmatplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "seen = {'pid': os.getpid(), 'left': 'leftover' in dir(),\n"
        "        'figures': len(plt.get_fignums()),\n"
        "        'count': get_ipython().execution_count,\n"
        "        'log': os.environ.get('HSCSIM_CALL_LOG', '')}\n"
        "(Path(run_dir) / ('seen_' + out.stem)).write_text(json.dumps(seen))\n"
        "leftover = plt.figure()\n"
    )
    nbs = _notebooks(tmp_path / "nb", extra=dict.fromkeys(("01_a", "02_b", "03_c"),
                                                           probe))  # fmt: skip
    out = tmp_path / "run"
    _run(tile, out, nbs)
    seen = {n: json.loads((out / f"seen_{n}").read_text())
            for n in ("01_a", "02_b", "03_c")}  # fmt: skip
    assert len({s["pid"] for s in seen.values()}) == 1
    assert not any(s["left"] or s["figures"] for s in seen.values())
    assert {s["count"] for s in seen.values()} == {seen["01_a"]["count"]}
    assert [os.path.basename(s["log"]) for s in seen.values()] == [
        "01_a.jsonl", "02_b.jsonl", "03_c.jsonl"]  # fmt: skip
    for name in ("01_a", "02_b", "03_c"):  # nothing but the stage's own output
        cells = json.loads((out / "notebooks" / f"{name}.ipynb").read_text())["cells"]
        assert not [o for c in cells for o in c.get("outputs", [])]


def test_stage_kernel_starts_again_when_it_must(tmp_path):
    """A new kernel when the thread limits change, after a stage that imported
    a module of HEAVY_MODULES, and after the kernel died; closing a dead
    kernel does not raise."""
    import signal

    from hscsim_utils.pipeline.kernel import HEAVY_MODULES, StageKernel
    from hscsim_utils.threads import limited_threads

    def pid(kernel):
        km = kernel.manager(str(tmp_path / "calls.jsonl"))
        return km.provisioner.process.pid

    with StageKernel(tmp_path) as kernel:
        pids = [pid(kernel)]
        assert pid(kernel) == pids[0] and kernel.starts == 1
        with limited_threads(1):
            pids.append(pid(kernel))
        pids.append(pid(kernel))
        kernel._execute(f"import sys, types; sys.modules[{HEAVY_MODULES[0]!r}] = "
                        f"types.ModuleType({HEAVY_MODULES[0]!r})")  # fmt: skip
        pids.append(pid(kernel))
        os.kill(pids[-1], signal.SIGKILL)  # a kernel that died
        kernel._km.provisioner.process.wait(timeout=30)
        pids.append(pid(kernel))
        os.kill(pids[-1], signal.SIGKILL)  # dead when the block closes it
        kernel._km.provisioner.process.wait(timeout=30)
    assert len(set(pids)) == 5 and kernel.starts == 5
    assert kernel._km is None


def test_progress_line_parsing():
    line = "\rsimulate:  33%|███▎      | 1/3 [00:03<00:06,  3.06s/step, GalSBI + UFig]"
    match = runner.StageProgress._BAR.search(line)
    assert runner.StageProgress.describe(match) == "simulate 1/3 GalSBI + UFig"
    assert runner.StageProgress._BAR.search("written: 3/4 files") is None


def test_failed_run_still_writes_its_report(tmp_path, tile):
    nbs = _notebooks(tmp_path / "nb", fail_in="02_b")
    out = tmp_path / "run"
    with pytest.raises(runner.StageFailed):
        _run(tile, out, nbs)
    html = (out / "report.html").read_text()
    assert "Stage 01_a" in html and "Stage 02_b" in html and "Stage 03_c" not in html
    assert "boom in 02_b.txt" in html


def test_stages_left_behind_are_marked_stale(tmp_path, tile, capfd):
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    _run(tile, out, nbs)
    assert "STALE" not in (out / "report.html").read_text()
    (tmp_path / "calexp.fits").write_bytes(b"another calexp")  # e.g. a new seed
    capfd.readouterr()
    _run(tile, out, nbs, stages="01")
    printed = capfd.readouterr().out
    assert "02_b: STALE" in printed and "03_c: STALE" in printed
    assert "01_a: STALE" not in printed and "--from 02" in printed
    html = (out / "report.html").read_text()
    assert "Stage 02_b (STALE" in html and "Stage 01_a (STALE" not in html
    _run(tile, out, nbs, start="02")
    assert "STALE" not in (out / "report.html").read_text()


def test_demo_tile_too_small_for_the_psf_stage(tmp_path):
    from tests.synthetic import write_synthetic_calexp

    write_synthetic_calexp(tmp_path / "calexp.fits", shape=(1000, 1000))
    small = write_tile_file(tmp_path, "small-demo", is_demo=True)
    nbs = write_notebooks(tmp_path / "nb", {
        name: STAGE.format(name=name, extra="") for name in ("01_a", "05_p")
    })  # fmt: skip
    specs = (SPECS[0], StageSpec("05", "p", reads=("a",), writes=()))
    out = tmp_path / "run"
    kwargs = {"notebook_dir": nbs, "specs": specs, "products": PRODUCTS}
    with pytest.raises(InputError, match=r"1000 x 1000 px: stages 05-09 need at"):
        runner.run_tile(small, out, **kwargs)
    assert not (out / "01_a.txt").exists(), "a stage ran before the refusal"
    runner.run_tile(small, out, stages="01", **kwargs)  # stages 01-04 run
    assert (out / "01_a.txt").exists()
    real = write_tile_file(tmp_path, "small-real", is_demo=False)
    runner.run_tile(real, tmp_path / "real", **kwargs)  # real: stars decide


def test_stage_selection_errors(tmp_path):
    stages = runner.discover_stages(_notebooks(tmp_path / "nb"), SPECS)
    assert [s.number for s in runner.select_stages(stages, "01,03")] == ["01", "03"]
    with pytest.raises(InputError, match="--stages"):
        runner.select_stages(stages, "x-y")
    with pytest.raises(InputError, match="selects no stage"):
        runner.select_stages(stages, "07-09")


def test_deleted_output_reruns_its_stage_and_the_stages_reading_it(
    tmp_path, tile, capfd
):
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    _run(tile, out, nbs)
    (out / "01_a.txt").unlink()  # its rerun counts 2 files: new content
    capfd.readouterr()
    _run(tile, out, nbs)
    printed = capfd.readouterr().out
    assert "01_a: ok" in printed and "outputs missing: a" in printed
    assert "02_b: ok" in printed and "changed: a" in printed
    assert "03_c: ok" in printed and "changed: b" in printed


def test_an_input_that_comes_back_identical_stops_the_rerun(tmp_path, tile, capfd):
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    _run(tile, out, nbs)
    (out / "02_b.txt").unlink()  # 02 recounts: 1 file (01_a) + 03_c = "2/1"
    capfd.readouterr()
    _run(tile, out, nbs)
    printed = capfd.readouterr().out
    assert "01_a: unchanged, skipped" in printed and "02_b: ok" in printed
    # 02_b's new content ("2/1") differs from its first ("1/1"): 03 reruns
    assert "03_c: ok" in printed


def test_parameters_from_the_tile_and_the_command_line(tmp_path, capfd):
    (tmp_path / "calexp.fits").write_bytes(b"x")
    tile = write_tile_file(tmp_path, "t", stages={"b": {"level": 5}})
    nbs = _notebooks(tmp_path / "nb")
    out = tmp_path / "run"
    _run(tile, out, nbs)
    assert (out / "01_a.txt").read_text().endswith("/1")
    assert (out / "02_b.txt").read_text().endswith("/5")
    capfd.readouterr()
    _run(tile, out, nbs, settings=["c.level=7", "b.level=6"])
    printed = capfd.readouterr().out
    assert "01_a: unchanged" in printed and "changed: params" in printed
    assert (out / "02_b.txt").read_text().endswith("/6")
    assert (out / "03_c.txt").read_text().endswith("/7")


@pytest.mark.parametrize(
    "setting, message",
    [
        ("x.level=1", "unknown stage 'x'; the stages are a, b, c"),
        ("b.depth=1", "stage b has no parameter 'depth'; its parameters are level"),
        ("b.level=deep", "b.level must be a int, got 'deep'"),
        ("b.tile_file=x", "stage b has no parameter 'tile_file'"),
        ("blevel=1", "use STAGE.PARAMETER=VALUE"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(
    tmp_path, tile, setting, message
):
    nbs = _notebooks(tmp_path / "nb")
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        _run(tile, tmp_path / "run", nbs, settings=[setting])
    assert not (tmp_path / "run" / "01_a.txt").exists()


def test_code_change_reruns_only_the_stages_that_import_it(
    tmp_path, tile, capfd, monkeypatch
):
    package = tmp_path / "pkg" / "hscsim_utils"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plots_b.py").write_text("def plot(): return 1\n")
    (package / "shared.py").write_text("from hscsim_utils import plots_b\n")
    monkeypatch.setattr(fingerprint, "PACKAGE_DIR", package)
    # the imports are read, never run (the kernel has the real package)
    nbs = _notebooks(tmp_path / "nb", extra={
        "02_b": "if False:\n    from hscsim_utils.plots_b import plot",
        "03_c": "if False:\n    import hscsim_utils.shared",
    })  # fmt: skip
    out = tmp_path / "run"
    _run(tile, out, nbs)
    (package / "plots_b.py").write_text("def plot(): return 2\n")
    capfd.readouterr()
    _run(tile, out, nbs)
    printed = capfd.readouterr().out
    assert "01_a: unchanged" in printed
    assert "02_b: ok" in printed and "changed: code" in printed
    assert "03_c: ok" in printed  # imports plots_b through shared


def test_a_python_repo_file_counts_with_the_modules_it_imports(tmp_path, monkeypatch):
    """The simulation config is read as ``repo:``; its plugin lists live in a
    package module, whose edit must re-run the simulating stages."""
    package = tmp_path / "hscsim_utils"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugins.py").write_text("SAMPLE = ['a']\n")
    (tmp_path / "config.py").write_text("from hscsim_utils import plugins\n")
    (tmp_path / "table.csv").write_text("1\n")
    monkeypatch.setattr(fingerprint, "PACKAGE_DIR", package)
    monkeypatch.setattr(fingerprint, "REPO_ROOT", tmp_path)
    cache = fingerprint.DigestCache()

    def digest(entry: str) -> str:
        return fingerprint._read_digest(entry, None, {}, tmp_path, cache)

    before = digest("repo:config.py"), digest("repo:table.csv")
    (package / "plugins.py").write_text("SAMPLE = ['b', 'c']\n")
    after = digest("repo:config.py"), digest("repo:table.csv")
    assert after[0] != before[0] and after[1] == before[1]
    files = fingerprint.code_files(tmp_path / "config.py", package)
    assert [p.name for p in files] == ["config.py", "__init__.py", "plugins.py"]


#: a and b run per band; c reads a and b of the detection band.
BAND_SPECS = (
    StageSpec("01", "a", reads=("tile:calexp",), writes=("a",), per_band=True),
    StageSpec("02", "b", reads=("a",), writes=("b",), per_band=True),
    StageSpec("03", "c", reads=("b", "band_runs"), writes=("c",)),
)
BAND_PRODUCTS = {**PRODUCTS, "band_runs": "bands/"}


def _band_tile(tmp_path, letters: str, **values):
    """A tile file of ``letters`` (detection band i) whose band files hold the
    band's letter, and its band files."""
    from hscsim_utils.hsc.tile import BandFiles, write_tile

    bands = {}
    for band in letters:
        files = [tmp_path / f"{band}_{n}" for n in ("calexp.fits", "f.csv", "m.csv")]
        for path in files:
            path.write_bytes(band.encode())
        bands[band] = BandFiles(*files)
    tile = write_tile(tmp_path / "tile.yaml", {
        "tile_name": letters, "bands": bands, "detection_band": "i",
        "besancon_headers": [], "besancon_catalogs": [], **values,
    })  # fmt: skip
    return tile, bands


def test_every_other_band_runs_its_per_band_stages_in_a_run_of_its_own(tmp_path, capfd):
    from hscsim_utils.hsc.tile import load_tile

    tile, bands = _band_tile(tmp_path, "gri", stages={"b": {"level": 3}})
    copy_calexp = (  # stage a's product is its band's calexp
        "from hscsim_utils.hsc.tile import load_tile\n"
        "out.write_bytes(load_tile(tile_file).calexp.read_bytes())"
    )
    nbs, out = (
        _notebooks(tmp_path / "nb", extra={"01_a": copy_calexp}),
        tmp_path / "run",
    )
    kwargs = {"notebook_dir": nbs, "specs": BAND_SPECS, "products": BAND_PRODUCTS}
    state = runner.run_tile(tile, out, **kwargs)
    assert [s["status"] for s in state.values()] == ["ok"] * 3
    assert (out / "01_a.txt").read_text() == "i"
    for band in ("g", "r"):
        folder = out / "bands" / band
        seen = load_tile(folder / "tile.yaml")  # the tile from that band
        assert (seen.band, seen.calexp, seen.detection_calexp) == (
            band, bands[band].calexp, bands["i"].calexp
        )  # fmt: skip
        assert seen.bands == load_tile(tile).bands  # no band run of its own
        assert seen.stages == {"b": {"level": 3}}  # the tile's settings hold
        assert (folder / "01_a.txt").read_text() == band
        assert sorted(p.name for p in folder.glob("*.txt")) == ["01_a.txt", "02_b.txt"]
    printed = capfd.readouterr().out
    assert "[band g] 01_a: ok" in printed and "[band r] 02_b: ok" in printed

    runner.run_tile(tile, out, **kwargs)
    assert capfd.readouterr().out.count("unchanged, skipped") == 3 + 2 * 2
    # c reads the band runs: asked for c alone, the band runs come up to date first
    bands["g"].calexp.write_bytes(b"new g")
    runner.run_tile(tile, out, stages="03", **kwargs)
    printed = capfd.readouterr().out
    assert "[band g] 01_a: ok" in printed and "[band g] 02_b: ok" in printed
    assert "03_c: ok" in printed and "changed: band_runs" in printed
    assert "[band r] 01_a: unchanged" in printed
    # a band stage that reruns and writes the same product does not rerun c
    (out / "bands" / "g" / "01_a.txt").unlink()
    runner.run_tile(tile, out, stages="03", **kwargs)
    printed = capfd.readouterr().out
    assert "[band g] 01_a: ok" in printed and "outputs missing: a" in printed
    assert "03_c: unchanged" in printed
    # what a stage of the detection band writes into a band run (as stages 08
    # and 09 do) is not a band-run product: c does not rerun
    (out / "bands" / "g" / "03_c.txt").write_text("tuned in band g")
    runner.run_tile(tile, out, stages="03", **kwargs)
    assert "03_c: unchanged" in capfd.readouterr().out
    runner.run_tile(tile, out, stages="02", **kwargs)  # b only: no band run of a
    assert "01_a" not in capfd.readouterr().out


def test_bands_runs_those_of_the_tiles_bands(tmp_path, capfd):
    """``--bands gi`` on a g r i tile: a tile file of g and i in the run folder,
    one band run (g); bands the tile lacks, or without the detection band, are
    refused before anything runs."""
    from hscsim_utils.hsc.tile import load_tile

    tile, bands = _band_tile(tmp_path, "gri")
    nbs, out = _notebooks(tmp_path / "nb"), tmp_path / "run"
    kwargs = {"notebook_dir": nbs, "specs": BAND_SPECS, "products": BAND_PRODUCTS}
    for bad, fragment in [("gz", f"{tile}: has no bands ['z'] (--bands)"),
                          ("g,r", "lacks the detection band i"),
                          ("gx", "--bands: unknown bands ['x']")]:  # fmt: skip
        with pytest.raises(InputError, match=re.escape(fragment)):
            runner.run_tile(tile, out, bands=bad, **kwargs)
    assert not out.exists()
    state = runner.run_tile(tile, out, bands="i,g", **kwargs)
    assert [s["status"] for s in state.values()] == ["ok"] * 3
    chosen = load_tile(out / "tile-gi.yaml")
    assert chosen.band_names == ("g", "i") and chosen.bands["g"] == bands["g"]
    assert (out / "bands" / "g").is_dir() and not (out / "bands" / "r").exists()
    assert runner.tile_of_bands(tile, "gri", out) == tile  # all bands: the file


@pytest.mark.slow
def test_band_runs_run_beside_the_detection_bands_stages(tmp_path):
    """The other bands' runs start while the detection band's per-band stages
    still run (worker processes); the stage that reads the band runs starts
    only after all of them have finished."""

    tile, bands = _band_tile(tmp_path, "gri")
    span = (
        "import time\nt0 = time.time()\ntime.sleep(6)\n"
        "(Path(run_dir) / ('span_' + out.stem)).write_text(f'{t0} {time.time()}')"
    )
    nbs = _notebooks(tmp_path / "nb", extra=dict.fromkeys(("01_a", "02_b", "03_c"),
                                                           span))  # fmt: skip
    out = tmp_path / "run"
    runner.run_tile(tile, out, notebook_dir=nbs, specs=BAND_SPECS,
                    products=BAND_PRODUCTS)  # fmt: skip

    def times(folder, name):
        return [float(t) for t in (folder / f"span_{name}").read_text().split()]

    detection_done = times(out, "02_b")[1]
    band_starts = [times(out / "bands" / b, "01_a")[0] for b in ("g", "r")]
    band_ends = [times(out / "bands" / b, "02_b")[1] for b in ("g", "r")]
    assert min(band_starts) < detection_done  # side by side
    assert times(out, "03_c")[0] > max(band_ends)  # c reads every band run
    assert runner.band_workers(1) == 1
    assert 1 <= runner.band_workers(4) <= min(4, os.cpu_count() or 1)
    from hscsim_utils.threads import limited_threads

    with limited_threads(1):  # a tile of a batch with one thread: one worker
        assert runner.band_workers(4) == 1


def test_a_failed_band_run_fails_the_chain_before_its_readers(tmp_path):
    from hscsim_utils.errors import StageFailed

    tile, bands = _band_tile(tmp_path, "gi")
    boom = "if '/bands/g' in run_dir:\n    raise ValueError('boom in g')"
    nbs = _notebooks(tmp_path / "nb", extra={"02_b": boom})
    out = tmp_path / "run"
    with pytest.raises(StageFailed, match="boom in g"):
        runner.run_tile(tile, out, notebook_dir=nbs, specs=BAND_SPECS,
                        products=BAND_PRODUCTS)  # fmt: skip
    assert (out / "02_b.txt").is_file()  # the detection band's own stages ran
    assert not (out / "03_c.txt").exists()  # c reads the band runs: not run


def test_a_block_of_a_metrics_section_is_in_that_section():
    """Staleness passes from the stage that writes a section to one that reads
    a block of it (stage 09 reads stage 07's realism block)."""
    assert runner._whole("metrics:quality.realism") == "metrics:quality"
    assert runner._whole("metrics:quality") == "metrics:quality"
    assert runner._whole("sim_baseline") == "sim_baseline"
    assert runner._whole("tile:calexp") == "tile:calexp"
