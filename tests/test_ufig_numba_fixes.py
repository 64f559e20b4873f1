"""ufig compiles its numba functions in every process; the mend caches them."""

import json
import os
import subprocess
import sys

CHILD = """
import json, sys
import numpy as np
from numba.core import event
from numba.core.caching import NullCache
from ufig.plugins import resample
before = isinstance(resample.sum_prod._cache, NullCache)
if sys.argv[1] == "mended":
    from hscsim_utils.compat.ufig_numba import cache_compiled_functions
    cache_compiled_functions(("ufig.plugins.resample",))
with event.install_recorder("numba:compile") as rec:
    value = resample.sum_prod(np.ones((2, 3)), np.full((2, 3), 2.0))
compiled = sum(e.is_start for _, e in rec.buffer)
print(json.dumps({"uncached": before, "compiled": compiled, "value": value,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def _child(mode: str, cache_dir) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ufig_compiles_again_in_every_process(tmp_path):
    first, second = (_child("plain", tmp_path) for _ in range(2))
    assert first["uncached"] and first["compiled"] >= 1
    assert second["compiled"] == first["compiled"]  # nothing kept
    assert not any(tmp_path.rglob("*.nbi"))


def test_mended_functions_compile_once_per_machine(tmp_path):
    first = _child("mended", tmp_path)
    second = _child("mended", tmp_path)
    assert first["compiled"] >= 1 and any(tmp_path.rglob("*sum_prod*.nbi"))
    assert second["compiled"] == 0  # loaded from the cache
    assert first["value"] == second["value"] == 12.0
    assert not first["tensorflow"]
