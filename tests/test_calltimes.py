"""Floor calls are logged only where the runner asks, nested ones once."""

import time

import pytest

from hscsim_utils import calltimes


def test_no_log_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(calltimes.ENV, raising=False)
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a))
    with calltimes.floor_call("sextractor"):
        pass
    assert opened == []
    monkeypatch.undo()
    assert calltimes.read_calls(tmp_path / "missing.jsonl") == []


def test_a_failed_log_write_warns_and_keeps_the_work(tmp_path, monkeypatch):
    monkeypatch.setenv(calltimes.ENV, str(tmp_path / "gone" / "calls.jsonl"))
    with pytest.warns(UserWarning, match="not logged"):
        with calltimes.floor_call("simulation"):
            done = True
    assert done
    log = tmp_path / "calls.jsonl"
    log.write_text('{"call": "sextractor", "wall_s": 1.5}\n{"call": "simu')
    assert calltimes.read_calls(log) == [{"call": "sextractor", "wall_s": 1.5}]


def test_outermost_call_is_logged_even_when_it_fails(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv(calltimes.ENV, str(log))
    with calltimes.floor_call("simulation"):
        with calltimes.floor_call("sextractor"):
            time.sleep(0.05)
    try:
        with calltimes.floor_call("psf estimation"):
            raise ValueError("boom")
    except ValueError:
        pass
    calls = calltimes.read_calls(log)
    assert [c["call"] for c in calls] == ["simulation", "psf estimation"]
    assert calls[0]["wall_s"] >= 0.05
