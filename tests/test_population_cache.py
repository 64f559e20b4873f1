"""The galaxy population sampled once per run and reused by its later simulations."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from ivy.utils.struct import Struct

from hscsim_utils import population_cache as pc
from hscsim_utils.population_cache import CACHE_PARAMETER
from hscsim_utils.stages import simulate
from tests.fabricated_run import make_run_folder, make_tile

SHAPE = (400, 400)
SEED = 5


def _entries(run) -> list[str]:
    return sorted(p.name for p in run.population_cache.glob("*.reads.json"))


def _same_outputs(a: simulate.Simulation, b: simulate.Simulation) -> None:
    assert np.array_equal(a.load_images()["image"], b.load_images()["image"])
    cat_a, cat_b = a.load_catalogs(), b.load_catalogs()
    assert cat_a.keys() == cat_b.keys()
    for name in cat_a:
        assert cat_a[name].dtype == cat_b[name].dtype
        for col in cat_a[name].dtype.names:
            a_col, b_col = cat_a[name][col], cat_b[name][col]
            assert np.array_equal(a_col, b_col, equal_nan=True), col


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("population")
    run = make_run_folder(root, SHAPE, bsig=0.03, star_grid_step=100)
    tile = make_tile(root, seed=SEED)
    outcomes = []

    def recorded(ctx):
        outcomes.append(sample_or_reuse(ctx))
        return outcomes[-1]

    sample_or_reuse = pc.sample_or_reuse
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pc, "sample_or_reuse", recorded)
        sims = _three_simulations(tile, run)
    return (tile, run, *sims, outcomes)


def _three_simulations(tile, run):
    plain = simulate.run_simulation(
        tile, run, out=run.root / "sim" / "plain", measure_psf="none",
        overrides={CACHE_PARAMETER: None},
    )  # fmt: skip
    assert not run.population_cache.exists()  # None: sampled, nothing kept
    first = simulate.run_simulation(tile, run, out=run.root / "sim" / "first",
                                    measure_psf="none")  # fmt: skip
    kept = _entries(run)
    second = simulate.run_simulation(tile, run, out=run.root / "sim" / "second",
                                     measure_psf="none")  # fmt: skip
    return plain, first, second, kept


def test_a_reused_population_gives_the_same_image_and_catalogue(runs):
    _, run, plain, first, second, kept, outcomes = runs
    assert outcomes[:2] == ["sampled", "sampled and kept"]
    assert outcomes[2] == f"reused {kept[0].replace('.reads.json', '.pkl')}"
    assert len(kept) == 1 and _entries(run) == kept  # the second added none
    _same_outputs(plain, first)  # sampling and keeping changes nothing
    _same_outputs(plain, second)  # nor does reusing


def test_the_entry_holds_what_decides_the_population(runs):
    _, run, *_, kept, _ = runs
    entry = json.loads((run.population_cache / kept[0]).read_text())
    assert set(entry["versions"]) == {"format", *pc.SAMPLING_PACKAGES}
    reads = entry["reads"]
    for name in ("seed", "size_x", "size_y", "filters", "gals_mag_max", "ra0"):
        assert name in reads, name
    # what the sampler does not read cannot stop a reuse
    assert "psf_beta" not in reads and "bkg_noise_amp" not in reads
    assert CACHE_PARAMETER not in reads


def test_a_parameter_the_sampler_reads_makes_a_new_entry(runs):
    tile, run, plain, *_ = runs
    brighter = simulate.run_simulation(
        tile, run, out=run.root / "sim" / "brighter", measure_psf="none",
        overrides={"gals_mag_max": 24.0},
    )  # fmt: skip
    assert len(_entries(run)) == 2
    n_plain = len(plain.load_catalogs()["ucat galaxies"])
    assert 0 < len(brighter.load_catalogs()["ucat galaxies"]) < n_plain
    other_seed = simulate.run_simulation(
        tile, run, seed=SEED + 1, out=run.root / "sim" / "other", measure_psf="none"
    )
    assert len(_entries(run)) == pc.KEEP  # the oldest entry gave way
    assert not np.array_equal(other_seed.load_images()["image"],
                              plain.load_images()["image"])  # fmt: skip


class _Sampler:
    """Stand-in for GalSBI's sampler: reads two parameters, sets what it sets."""

    calls = 0

    def __init__(self, ctx):
        self.ctx = ctx

    def __call__(self):
        _Sampler.calls += 1
        par = self.ctx.parameters
        rng = np.random.default_rng(par.seed)
        self.ctx.galaxies = rng.normal(size=par["n"])
        if not hasattr(par, "names"):
            par.names = ["x"]
        np.random.seed(par.seed)  # noqa: NPY002 (as GalSBI's sampler does)


def test_reads_decide_and_the_sampler_leaves_everything_behind(tmp_path, monkeypatch):
    from ivy.plugin.plugin_factory import PluginFactory

    monkeypatch.setattr(PluginFactory, "create_instance",
                        staticmethod(lambda name, ctx: _Sampler(ctx)))  # fmt: skip

    def ctx(**par):
        return Struct(parameters=Struct(population_cache_dir=str(tmp_path), **par))

    a = ctx(seed=1, n=5, psf=0.6)
    assert pc.sample_or_reuse(a) == "sampled and kept"
    after_a = np.random.random()  # noqa: NPY002 (the global state is the point)
    b = ctx(seed=1, n=5, psf=0.9)  # psf is not read
    np.random.seed(99)  # noqa: NPY002
    assert pc.sample_or_reuse(b).startswith("reused")
    assert _Sampler.calls == 1
    assert np.array_equal(b.galaxies, a.galaxies) and b.parameters.names == ["x"]
    assert np.random.random() == after_a  # noqa: NPY002 (as sampling left it)
    c = ctx(seed=1, n=6, psf=0.6)  # n is read through []
    assert pc.sample_or_reuse(c) == "sampled and kept" and _Sampler.calls == 2
    d = ctx(seed=1, n=5, psf=0.6, names=["y"])  # found absent before: now set
    assert pc.sample_or_reuse(d) == "sampled and kept" and d.parameters.names == ["y"]
    assert type(d.parameters) is Struct  # the recording class is gone again


def test_an_upgrade_or_an_unreadable_entry_samples_anew(tmp_path, monkeypatch):
    from ivy.plugin.plugin_factory import PluginFactory

    monkeypatch.setattr(PluginFactory, "create_instance",
                        staticmethod(lambda name, ctx: _Sampler(ctx)))  # fmt: skip

    def ctx():
        return Struct(parameters=Struct(population_cache_dir=str(tmp_path), seed=2,
                                        n=3))  # fmt: skip

    assert pc.sample_or_reuse(ctx()) == "sampled and kept"
    assert pc.sample_or_reuse(ctx()).startswith("reused")
    versions = pc._versions()
    monkeypatch.setattr(pc, "_versions", lambda: {**versions, "galsbi": "99.0"})
    assert pc.sample_or_reuse(ctx()) == "sampled and kept"  # another galsbi
    monkeypatch.setattr(pc, "_versions", lambda: versions)
    for kept in tmp_path.glob("*.pkl"):
        kept.write_bytes(b"not a pickle")
    again = ctx()
    assert pc.sample_or_reuse(again) == "sampled and kept"
    assert again.galaxies.shape == (3,)


def test_the_cache_folder_keeps_the_last_used_and_never_stops_a_simulation(
    tmp_path, monkeypatch, caplog
):
    from ivy.plugin.plugin_factory import PluginFactory

    monkeypatch.setattr(PluginFactory, "create_instance",
                        staticmethod(lambda name, ctx: _Sampler(ctx)))  # fmt: skip

    def ctx(seed, folder=tmp_path):
        return Struct(parameters=Struct(population_cache_dir=str(folder), seed=seed,
                                        n=3))  # fmt: skip

    def entries() -> set[str]:
        return {p.name for p in tmp_path.glob("*.reads.json")}

    assert pc.sample_or_reuse(ctx(1)) == "sampled and kept"
    (first,) = entries()
    assert pc.sample_or_reuse(ctx(2)) == "sampled and kept"
    (second,) = entries() - {first}
    os.utime(tmp_path / first, (1, 1))  # written long ago ...
    assert pc.sample_or_reuse(ctx(1)).startswith("reused")  # ... used just now
    (tmp_path / "orphan.pkl").write_bytes(b"left by a stopped process")
    assert pc.sample_or_reuse(ctx(3)) == "sampled and kept"  # a third entry
    names = {p.name for p in tmp_path.iterdir()}
    assert len(names) == 2 * pc.KEEP and "orphan.pkl" not in names
    assert first in names and second not in names  # the least recently used went
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING):
        made = ctx(4, folder=blocked)
        assert pc.sample_or_reuse(made) == "sampled, not kept"
    assert made.galaxies.shape == (3,) and "population not kept" in caplog.text
