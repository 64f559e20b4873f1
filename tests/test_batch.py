"""Many tiles on a process pool and on a real Dask LocalCluster."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from hscsim_utils.atomic import TMP_PREFIX
from hscsim_utils.errors import InputError
from hscsim_utils.pipeline import batch
from hscsim_utils.stages.registry import STAGES as SPECS
from tests.synthetic import write_notebooks, write_tile_file

EMPTY = """# %% tags=["parameters"]
tile_file = ""
run_dir = ""
# %%
"""
#: Stand-ins for the chain's notebooks (the runner runs every registered stage):
#: the first marks that the tile started, stage 07 writes its metrics section.
STAGES = {spec.notebook.removesuffix(".ipynb"): EMPTY for spec in SPECS} | {
    "01_sky_and_sysmaps": """# %% tags=["parameters"]
tile_file = ""
run_dir = ""
# %%
import time, pathlib
(pathlib.Path(run_dir) / "started").write_text("x")
time.sleep(4)
""",
    "07_quality": """# %% tags=["parameters"]
tile_file = ""
run_dir = ""
# %%
import os, pathlib
from hscsim_utils.metrics import write_section
from hscsim_utils.hsc.tile import load_tile
tile = load_tile(tile_file)
write_section(pathlib.Path(run_dir) / "metrics.json", "quality",
              {"realism": {"bkg_std_ratio": 1 + tile.seed / 1000,
                           "threads": os.environ["HSCSIM_THREADS"]}})
""",
}


@pytest.fixture
def notebooks(tmp_path):
    return write_notebooks(tmp_path / "nb", STAGES)


@pytest.fixture
def batch_file(tmp_path):
    tiles = {}
    for seed in (1, 2, 3, 4):
        d = tmp_path / "tiles" / f"t{seed}"
        d.mkdir(parents=True)
        tiles[f"t{seed}"] = str(write_tile_file(d, f"t{seed}", seed=seed))
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump({"tiles": tiles}))
    return path


def _ratios(out):
    return {
        t: json.loads((out / t / "metrics.json").read_text())["quality"]["realism"][
            "bkg_std_ratio"
        ]
        for t in ("t1", "t2", "t3", "t4")
    }


@pytest.mark.slow
def test_local_pool_equals_single_runs(tmp_path, batch_file, notebooks, capsys):
    rows = batch.run_batch(batch_file, tmp_path / "out", executor="local",
                           workers=2, notebook_dir=notebooks)  # fmt: skip
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert "summary:" in capsys.readouterr().out
    alone = batch.run_one("t3", batch.load_batch(batch_file)["t3"],
                          tmp_path / "alone", notebook_dir=notebooks)  # fmt: skip
    assert alone["quality.bkg_std_ratio"] == rows[2]["quality.bkg_std_ratio"] == 1.003
    assert rows[2]["background_finetune.bkg_std_ratio"] is None  # stage 09 not run
    metrics = json.loads((tmp_path / "out" / "t1" / "metrics.json").read_text())
    assert metrics["quality"]["realism"]["threads"] == "1"  # 2 cores / 2 workers
    assert (tmp_path / "out" / "summary.csv").read_text().count("\n") == 5


@pytest.mark.slow
def test_dask_cluster_survives_a_killed_worker(tmp_path, batch_file, notebooks):
    # see batch._run_dask: other tests' TensorFlow imports can drop this attribute
    importlib.metadata = sys.modules["importlib.metadata"]
    from distributed import Client, LocalCluster

    out = tmp_path / "out"
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster)
    pids = list(client.run(os.getpid).values())
    killed = []

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and not list(out.glob("*/started")):
            time.sleep(0.1)
        time.sleep(1.0)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        rows = batch.run_batch(batch_file, out, executor="dask", workers=2,
                               scheduler=cluster.scheduler_address,
                               notebook_dir=notebooks)  # fmt: skip
    finally:
        thread.join()
        client.close()
        cluster.close()
    assert killed, "no worker was killed"
    assert [r["status"] for r in rows] == ["ok"] * 4, rows
    assert _ratios(out) == {"t1": 1.001, "t2": 1.002, "t3": 1.003, "t4": 1.004}
    leftovers = [p for p in out.rglob("*") if p.name.startswith(TMP_PREFIX)]
    assert leftovers == []


@pytest.mark.slow
def test_failed_tile_is_reported_and_others_go_on(
    tmp_path, batch_file, notebooks, capfd
):
    failing = STAGES["07_quality"].replace(
        "tile = load_tile(tile_file)",
        "tile = load_tile(tile_file)\nassert tile.seed != 2, 'bad tile' + 'x' * 200",
    )
    write_notebooks(notebooks, {"07_quality": failing})
    out = tmp_path / "out"
    rows = batch.run_batch(batch_file, out, executor="local",
                           workers=2, notebook_dir=notebooks)  # fmt: skip
    status = {r["tile"]: r["status"] for r in rows}
    assert status == {"t1": "ok", "t2": "failed", "t3": "ok", "t4": "ok"}
    assert "bad tile" in rows[1]["error"]
    full = (out / "t2" / batch.ERROR_LOG).read_text()
    assert "x" * 200 in full and "executed notebook kept at" in full
    assert not (out / "t1" / batch.ERROR_LOG).exists()
    printed = capfd.readouterr().out
    table = printed[printed.rindex("status") :]
    assert "x" * 200 not in table and "..." in table
    assert "[t1] 01_sky_and_sysmaps: ok" in printed  # console lines name their tile

    # the same summary from the run folders alone, as after a SLURM array
    (out / "summary.csv").unlink()
    shutil.rmtree(out / "t4")
    collected = batch.collect(batch_file, out)
    assert {r["tile"]: r["status"] for r in collected} == {
        "t1": "ok", "t2": "failed", "t3": "ok", "t4": "not run"
    }  # fmt: skip
    assert collected[1]["error"] == rows[1]["error"]
    assert collected[0]["quality.bkg_std_ratio"] == 1.001
    assert rows[0]["quality.bkg_std_ratio"] == 1.001
    assert (out / "summary.csv").read_text().count("\n") == 5
    (out / "t1" / batch.ERROR_LOG).write_text("left by an earlier failed run")
    assert batch.collect(batch_file, out)[0]["status"] == "ok"


def test_batch_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiles: [nowhere/tile.yaml]\n")
    with pytest.raises(InputError, match="not found"):
        batch.load_batch(bad)
    bad.write_text("tiless: []\n")
    with pytest.raises(InputError, match="tiles"):
        batch.load_batch(bad)


def test_listed_tiles_are_named_by_their_tile_name(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    a = write_tile_file(folder, "alpha")
    b = a.with_name("other.yaml")
    b.write_text(a.read_text().replace("alpha", "beta"))
    listed = tmp_path / "batch.yaml"
    listed.write_text(yaml.safe_dump({"tiles": [str(a), str(b)]}))
    assert batch.load_batch(listed) == {"alpha": a.resolve(), "beta": b.resolve()}
    b.write_text(a.read_text())  # two tile files in one folder, one tile name
    with pytest.raises(InputError, match="both named 'alpha'"):
        batch.load_batch(listed)


def test_slurm_script_with_options_and_spaces(tmp_path):
    folder = tmp_path / "my tiles"
    tiles = {}
    for name in ("t 1", "t2"):
        d = folder / name
        d.mkdir(parents=True)
        tiles[name] = str(write_tile_file(d, name.replace(" ", "")))
    batch_file = folder / "batch.yaml"
    batch_file.write_text(yaml.safe_dump({"tiles": tiles}))
    out = tmp_path / "out dir"
    options = batch.SlurmOptions(cpus=4, mem="16G", time="03:00:00",
                                 partition="cpu", account="hsc")  # fmt: skip
    script = batch.slurm_script(batch_file, out, options)
    for line in ("--array=0-1", "--cpus-per-task=4", "--mem=16G",
                 "--time=03:00:00", "--partition=cpu", "--account=hsc"):  # fmt: skip
        assert f"#SBATCH {line}" in script
    assert "--collect" in script
    assert "--account" not in batch.slurm_script(batch_file, out)
    # what bash makes of it: array task 0 is the tile whose path has spaces
    body = script.replace("exec ", 'echo "$NAME|$TILE|$OUT"; : ')
    done = subprocess.run(
        ["bash", "-c", body], capture_output=True, text=True, check=True,
        env=os.environ | {"SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_PER_TASK": "4"},
    )  # fmt: skip
    assert done.stdout.strip() == f"t 1|{tiles['t 1']}|{out}"


def test_summary_columns_name_their_section(tmp_path):
    from hscsim_utils.metrics import write_section

    out = tmp_path / "t1"
    path = out / "metrics.json"
    write_section(
        path,
        "quality",
        {
            "realism": {
                "simulation": "sim/baseline",
                "bkg_ks": 0.004,
                "bkg_std_ratio": 0.99,
            }
        },
    )
    write_section(
        path,
        "psf_finetune",
        {
            "before": {"psf_fwhm_max_abs_diff": 0.03},
            "after": {"psf_fwhm_max_abs_diff": 0.01},
        },
    )
    write_section(
        path,
        "background_finetune",
        {"realism": {"baseline": {"bkg_ks": 0.004}, "bkg_tuned": {"bkg_ks": 0.002}}},
    )
    write_section(path, "timing", {"07_quality": {"wall_s": 1.0}})
    row = batch._summary("t1", out, "", 1.0)
    for column in batch.SUMMARY_METRICS:
        assert column.split(".")[0] in (
            "quality",
            "psf_finetune",
            "background_finetune",
        )
    assert row["quality.bkg_ks"] == 0.004 and row["quality.bkg_std_ratio"] == 0.99
    assert row["psf_finetune.psf_fwhm_max_abs_diff"] == 0.01  # after
    assert row["background_finetune.bkg_ks"] == 0.002  # the last simulation
    assert row["background_finetune.bkg_std_ratio"] is None
    assert row["quality.mag_auto_ks"] is None
