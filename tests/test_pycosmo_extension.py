"""PyCosmo's C extension is built by the set-up and found again by its marker."""

from __future__ import annotations

import json
import subprocess

import pytest

from hscsim_utils.compat import pycosmo as pe
from hscsim_utils.errors import ToolError


def _no_subprocess(*args, **kwargs):
    raise AssertionError("a verified extension must not start the build")


def test_build_then_verified_then_rebuilt_on_new_versions(tmp_path, monkeypatch):
    # `make test` ran `hscsim data`: sympy2c's cache holds the module, so this
    # "build" loads it (seconds) and records where it is.
    assert pe.ensure_pycosmo_extension(tmp_path) == "built"
    record = json.loads((tmp_path / pe.MARKER).read_text())
    assert record["versions"]["PyCosmo"] and record["versions"]["sympy2c"]
    assert list((tmp_path.parent / record["folder"]).rglob("*.so"))

    with monkeypatch.context() as m:
        m.setattr(pe.subprocess, "run", _no_subprocess)
        assert pe.ensure_pycosmo_extension(tmp_path) == "verified"

    record["versions"]["numpy"] = "0.0.1"
    (tmp_path / pe.MARKER).write_text(json.dumps(record))
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(
        pe.subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k)
    )
    assert pe.ensure_pycosmo_extension(tmp_path) == "built"
    assert len(calls) == 1


def test_missing_sympy2c_folder_means_not_built(tmp_path):
    marker = tmp_path / pe.MARKER
    marker.parent.mkdir()
    marker.write_text(json.dumps({"folder": str(tmp_path / "gone"), "versions": {}}))
    assert not pe._is_built(marker)
    marker.write_text("{truncated")
    assert not pe._is_built(marker)


def test_failed_build_names_the_cause(tmp_path, monkeypatch):
    monkeypatch.setattr(pe, "_BUILD", "import sys; print('gcc: error'); sys.exit(3)")
    with pytest.raises(ToolError, match=r"(?s)exit 3\).*gcc: error"):
        pe.ensure_pycosmo_extension(tmp_path)
    assert not (tmp_path / pe.MARKER).exists()


def test_versions_survive_a_lost_importlib_metadata_attribute(monkeypatch):
    # TensorFlow's import (ufig's PSF code, imported by other tests) can drop the
    # ``metadata`` attribute of ``importlib`` while the module stays loaded.
    import importlib

    monkeypatch.delattr(importlib, "metadata", raising=False)
    assert pe._versions()["sympy2c"]
    from hscsim_utils.pipeline import report

    assert report._versions()["galsbi"] != "not installed"


def test_sympy2c_compiles_with_the_python_on_path(tmp_path, monkeypatch):
    """The upstream behaviour the build and :mod:`hscsim_utils.interpreter` mend:
    sympy2c runs ``python setup.py`` through the shell, i.e. whatever ``python``
    comes first on PATH, not this interpreter."""
    from sympy2c import compiler

    seen = []

    def run(cmd, **kwargs):
        seen.append((cmd, kwargs.get("shell")))
        return subprocess.CompletedProcess(cmd, 0, stdout="")

    monkeypatch.setenv("REBUILD_WRAPPER", "1")
    monkeypatch.setattr(compiler.subprocess, "run", run)
    compiler.compile_files(str(tmp_path))
    assert seen == [("python setup.py build_ext --inplace", True)]
