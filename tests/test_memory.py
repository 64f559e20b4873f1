"""Peak resident memory of a process tree (the chain's timing, the benchmarks)."""

from __future__ import annotations

import subprocess
import sys

from hscsim_utils.memory import PeakMemory, max_rss

#: A child that holds about 200 MB for a second.
_HOLD = "import time; b = bytearray(200 * 2**20); time.sleep(1.0)"


def test_children_of_this_process():
    with PeakMemory(interval=0.05) as mem:
        subprocess.run([sys.executable, "-c", _HOLD], check=True)
    assert mem.peak > 150 * 2**20
    assert mem.wall >= 1.0


def test_a_given_process_and_itself():
    proc = subprocess.Popen([sys.executable, "-c", _HOLD])
    with PeakMemory(proc.pid, include_self=True, interval=0.05) as mem:
        proc.wait()
    assert mem.peak > 150 * 2**20


def test_a_process_that_has_gone_ends_the_sampling():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with PeakMemory(proc.pid, interval=0.05) as mem:
        pass
    assert mem.peak == 0


def test_max_rss_in_bytes():
    own, children = max_rss()
    assert 10 * 2**20 < own < 2**40 and children >= 0
