"""Each mend of an upstream package checks, on import, the version it was made for."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from importlib.metadata import version

import pytest

from hscsim_utils import compat
from hscsim_utils.compat import CompatibilityWarning, check_version

#: Every mend module and the packages whose version it checks.
MENDS = {
    "hscsim_utils.compat.ufig_psf": ["ufig"],
    "hscsim_utils.compat.ufig_render": ["ufig"],
    "hscsim_utils.compat.ufig_gaia": ["ufig"],
    "hscsim_utils.compat.ufig_counts": ["ufig"],
    "hscsim_utils.compat.ufig_flag_masks": ["ufig"],
    "hscsim_utils.compat.ufig_checkimages": ["ufig"],
    "hscsim_utils.compat.galsbi": ["galsbi"],
    "hscsim_utils.compat.cosmo_torrent": ["cosmo_torrent"],
    "hscsim_utils.compat.pycosmo": ["PyCosmo", "sympy2c"],
}

#: Imports the modules named on the command line in a fresh interpreter, with the
#: packages named in argv[1] (JSON) reported at version 0.0.0, and prints the
#: CompatibilityWarning messages of each import.
_IMPORT = """
import importlib, importlib.metadata as md, json, sys, warnings
fake, real = set(json.loads(sys.argv[1])), md.version
md.version = lambda name: "0.0.0" if name in fake else real(name)
out = {}
for name in sys.argv[2:]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        importlib.import_module(name)
    out[name] = [str(w.message) for w in seen
                 if w.category.__name__ == "CompatibilityWarning"]
print("RESULT " + json.dumps(out))
"""


def _import_fresh(fake: list[str]) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT, json.dumps(fake), *MENDS],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_silent_on_the_installed_version():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_version("ufig", version("ufig"), "a mend")


def test_warns_once_naming_package_and_both_versions(monkeypatch):
    monkeypatch.setattr(compat, "version", lambda name: "9.9.9")
    with pytest.warns(CompatibilityWarning) as seen:
        assert not check_version("ufig", "1.2.1", "hscsim_utils.compat.x")
    assert len(seen) == 1
    message = str(seen[0].message)
    assert "ufig 1.2.1" in message and "ufig 9.9.9" in message
    assert "hscsim_utils.compat.x" in message


def test_a_missing_package_is_a_different_version(monkeypatch):
    def missing(name):
        raise compat.PackageNotFoundError(name)

    monkeypatch.setattr(compat, "version", missing)
    with pytest.warns(CompatibilityWarning, match="galsbi none is installed"):
        check_version("galsbi", "0.3.0", "a mend")


def test_every_mend_checks_its_package_on_import():
    """Fresh interpreters: silent with the pinned packages; one warning per mended
    package when each reports another version."""
    assert _import_fresh([]) == {name: [] for name in MENDS}
    packages = sorted({p for ps in MENDS.values() for p in ps})
    seen = _import_fresh(packages)
    for name, mended in MENDS.items():
        assert len(seen[name]) == len(mended), (name, seen[name])
        for package, message in zip(mended, seen[name], strict=True):
            assert f"{package} 0.0.0 is installed" in message
            assert f"{package} {version(package)}" in message  # the expected one
            assert name in message
