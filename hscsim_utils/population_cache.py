"""The galaxy population of a run's simulations: sampled once, then reused.

GalSBI samples the galaxy population (``galsbi.ucat.plugins.sample_galaxies``:
numbers and redshifts from the luminosity functions, template coefficients and
magnitudes, then sizes, Sersic indices and ellipticities) from the model's
parameters, the patch's WCS and the seed alone. The simulations of a chain
(stage 06's, 08's and the two of 09) share model, posterior sample and seed and
differ in PSF and background only, so each drew the same population again: 8.8 s
of every simulation of the full 4200 x 4200 DEMO patch (cProfile of stage 09).

This plugin stands in the plugin list where ``sample_galaxies`` stood. With the
parameter :data:`CACHE_PARAMETER` unset it runs the sampler as before (the DEMO
tile's renderer). With it set to a folder, the first simulation runs the sampler
and keeps what it made; a later one whose sampler would read the same parameter
values takes the kept population instead of sampling.

- What decides the population: every parameter the sampler reads, recorded by
  name while it runs (attribute and item reads, and names it finds absent),
  each kept with a digest of its value (SHA-256 of its pickle). A later
  simulation reuses an entry only if all these digests agree; any other
  parameter (the PSF, the background map) cannot change the population.
  Files named by parameters (the template tables of the data cache) are taken
  to be what their names say. The versions of the packages that sample
  (:data:`SAMPLING_PACKAGES`) count too: an upgrade samples anew.
- What the sampler leaves: the attributes it sets on the context (the
  catalogue, the healpix pixels, their area, the number of galaxies), the
  parameters it sets (``filters_full_names`` when absent) and numpy's global
  random state, which it seeds per healpix pixel (the plugins after it seed
  their own today; a plugin that did not would draw on). A reuse restores all
  three, so the simulation's image and catalogue are the same to the last bit
  (``tests/test_population_cache.py`` runs the simulation each way).

Entries are pairs of files, ``<key>.pkl`` (what the sampler left) and
``<key>.reads.json`` (the versions and the digests; written last, so an entry
without it is incomplete and ignored; one that cannot be read back is sampled
anew, as is any entry when the cache cannot be read or written); the
:data:`KEEP` entries last written or reused stay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ivy.plugin.base_plugin import BasePlugin

from hscsim_utils.atomic import atomic_path

__all__ = [
    "CACHE_PARAMETER", "KEEP", "SAMPLER", "SAMPLING_PACKAGES", "Plugin",
    "sample_or_reuse",
]  # fmt: skip

#: The plugin this one stands in for.
SAMPLER = "galsbi.ucat.plugins.sample_galaxies"
#: The parameter naming the cache folder (None: always sample).
CACHE_PARAMETER = "population_cache_dir"
#: How many entries a cache folder keeps (a run uses one seed and model at a time).
KEEP = 2
#: Distributions whose code draws the population (GalSBI's sampler, ufig's WCS
#: and healpix helpers, the cosmology, extinction, integrals, numpy's legacy
#: random streams).
SAMPLING_PACKAGES = ("galsbi", "ufig", "PyCosmo", "healpy", "astropy", "scipy", "numpy")
#: What an entry holds; a new layout makes the old entries misses.
FORMAT = 1
_ABSENT = "absent"
_LOG = logging.getLogger(__name__)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "format": str(FORMAT),
        **{name: version(name) for name in SAMPLING_PACKAGES},
    }


def _digest(value: Any) -> str:
    try:
        data = pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        data = repr(value).encode()
    return hashlib.sha256(data).hexdigest()


def _value_digest(par: Any, name: str) -> str | None:
    """Digest of a parameter's value, ``absent`` if unset, None for a method."""
    values = object.__getattribute__(par, "__dict__")
    if name in values:
        return _digest(values[name])
    return None if hasattr(type(par), name) else _ABSENT


@contextlib.contextmanager
def _recorded_reads(par: Any) -> Iterator[dict[str, str | None]]:
    """The digests of the parameters read while the block runs, each as it was
    first read (a parameter found absent and then set stays ``absent``)."""
    seen: dict[str, str | None] = {}
    cls = type(par)

    def note(name: str) -> None:
        if name not in seen and not name.startswith("__"):
            seen[name] = _value_digest(par, name)

    class Recording(cls):
        def __getattribute__(self, name: str) -> Any:
            note(name)
            return super().__getattribute__(name)

        def __getitem__(self, name: str) -> Any:
            note(name)
            return super().__getitem__(name)

    par.__class__ = Recording
    try:
        yield seen
    finally:
        par.__class__ = cls


def _sample(ctx: Any) -> None:
    from ivy.plugin.plugin_factory import PluginFactory

    PluginFactory.create_instance(SAMPLER, ctx)()


def _pickle_of(reads: Path) -> Path:
    """The ``<key>.pkl`` of an entry's ``<key>.reads.json``."""
    return reads.with_name(reads.name.replace(".reads.json", ".pkl"))


def _changed(before: dict, after: dict) -> dict:
    return {k: v for k, v in after.items() if k not in before or before[k] is not v}


def _run_and_keep(ctx: Any, folder: Path) -> bool:
    """Sample into ``ctx`` and keep the outcome in ``folder``; whether it was kept."""
    par = ctx.parameters
    ctx_before, par_before = dict(ctx.__dict__), dict(par.__dict__)
    with _recorded_reads(par) as seen:
        _sample(ctx)
    digests = {n: d for n, d in sorted(seen.items()) if d is not None}
    entry = {"versions": _versions(), "reads": digests}
    left = {
        "context": _changed(ctx_before, ctx.__dict__),
        "parameters": _changed(par_before, par.__dict__),
        "random_state": np.random.get_state(),  # noqa: NPY002 (ufig draws from it)
    }
    key = _digest(entry)[:16]
    try:  # a cache that cannot be written costs time, not the simulation
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{key}.pkl") as tmp:
            tmp.write_bytes(pickle.dumps(left, protocol=5))
        with atomic_path(folder / f"{key}.reads.json") as tmp:
            tmp.write_text(json.dumps(entry, indent=0, sort_keys=True))
    except (OSError, pickle.PicklingError) as err:  # OutputError is an OSError
        _LOG.warning("%s: population not kept (%s)", folder, err)
        return False
    _prune(folder)
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _prune(folder: Path) -> None:
    """Keep the :data:`KEEP` most recently written or reused entries; drop
    pickles whose entry is gone (a process stopped between two writes)."""
    entries = sorted(folder.glob("*.reads.json"), key=_mtime)
    for old in entries[:-KEEP]:
        old.unlink(missing_ok=True)
    complete = {_pickle_of(reads) for reads in folder.glob("*.reads.json")}
    for kept in set(folder.glob("*.pkl")) - complete:
        kept.unlink(missing_ok=True)


def _reuse(ctx: Any, folder: Path) -> Path | None:
    """Restore a kept population whose reads all agree; its file, else None."""
    par, versions = ctx.parameters, _versions()
    for reads in sorted(folder.glob("*.reads.json")):
        try:
            entry = json.loads(reads.read_text())
        except (OSError, ValueError):  # pruned meanwhile, or not JSON
            continue
        if entry.get("versions") != versions or any(
            _value_digest(par, n) != d for n, d in entry.get("reads", {}).items()
        ):
            continue
        kept = _pickle_of(reads)
        try:
            left = pickle.loads(kept.read_bytes())
        except (OSError, EOFError, ImportError, AttributeError,
                pickle.UnpicklingError) as err:  # fmt: skip
            _LOG.warning("%s: cannot be read back (%s); sampling anew", kept, err)
            continue
        for name, value in left["parameters"].items():
            setattr(par, name, value)
        for name, value in left["context"].items():
            setattr(ctx, name, value)
        np.random.set_state(left["random_state"])  # noqa: NPY002
        with contextlib.suppress(OSError):
            os.utime(reads)  # used: the last to go
        return kept
    return None


def sample_or_reuse(ctx: Any) -> str:
    """Sample the population into ``ctx``, or restore a kept one; which it did."""
    folder = getattr(ctx.parameters, CACHE_PARAMETER, None)
    if folder is None:
        _sample(ctx)
        return "sampled"
    folder = Path(folder)
    if folder.is_dir() and (kept := _reuse(ctx, folder)) is not None:
        return f"reused {kept.name}"
    return "sampled and kept" if _run_and_keep(ctx, folder) else "sampled, not kept"


class Plugin(BasePlugin):
    """GalSBI's galaxy sampling, reusing a run's earlier identical sample."""

    def __call__(self) -> None:
        _LOG.info("galaxy population: %s", sample_or_reuse(self.ctx))

    def __str__(self) -> str:
        return "sample gal population (cached)"
