"""``hscsim lab``: a real JupyterLab server on one run and tile, asked over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from hscsim_utils import runfolder
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TILE_FILE_ENV, resolve_tile
from hscsim_utils.pipeline import lab
from hscsim_utils.runfolder import resolve_run
from tests.synthetic import write_tile_file


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.time() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def tile(tmp_path):
    (tmp_path / "calexp.fits").write_bytes(b"x")
    return write_tile_file(tmp_path, "t")


def test_lab_serves_the_stages_and_the_runs_notebooks(tmp_path, tile):
    run = tmp_path / "run"
    (run / "notebooks").mkdir(parents=True)
    (run / "notebooks" / "05_psf.ipynb").write_text("{}")
    port, token = _free_port(), "hscsim-test"
    launch = lab.lab_launch(
        run, tile,
        ["--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}"],
    )  # fmt: skip
    assert launch.env[runfolder.RUN_DIR_ENV] == str(run.resolve())
    assert launch.env[TILE_FILE_ENV] == str(tile.resolve())
    server = subprocess.Popen(
        launch.argv, env=launch.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/api/contents"
        deadline = time.time() + 90
        stages = _get(f"{base}/stages?token={token}", deadline)
        executed = _get(f"{base}/executed?token={token}", deadline)
    finally:
        server.terminate()
        server.wait(timeout=30)
    names = {item["name"] for item in stages["content"]}
    assert "05_psf.ipynb" in names and "01_sky_and_sysmaps.ipynb" in names
    assert not any(n.endswith(".py") for n in names), "paired .py twins are shown"
    assert [item["name"] for item in executed["content"]] == ["05_psf.ipynb"]


def test_notebook_defaults_follow_the_environment(tmp_path, tile, monkeypatch):
    monkeypatch.setenv(TILE_FILE_ENV, str(tile))
    monkeypatch.setenv(runfolder.RUN_DIR_ENV, str(tmp_path / "elsewhere"))
    assert resolve_tile("").tile_name == "t"
    assert resolve_run("").root == tmp_path / "elsewhere"
    monkeypatch.setenv(TILE_FILE_ENV, str(tmp_path / "none.yaml"))
    with pytest.raises(InputError, match="none.yaml: tile file not found"):
        resolve_tile("")


def test_lab_needs_a_tile(tmp_path):
    with pytest.raises(InputError, match="tile file not found"):
        lab.lab_launch(tmp_path / "run", tmp_path / "none.yaml")
    assert not (tmp_path / "run").exists()


def test_lab_links_are_replaced_not_duplicated(tmp_path, tile):
    first = lab.lab_launch(tmp_path / "run", tile)
    again = lab.lab_launch(tmp_path / "run", tile)
    assert first.root == again.root
    assert sorted(os.listdir(again.root)) == ["executed", "stages"]
