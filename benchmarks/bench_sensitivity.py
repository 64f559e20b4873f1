"""Sensitivity of the stage 07 realism statistics to known errors in the simulation.

Usage::

    .venv/bin/python -m benchmarks.bench_sensitivity --tile TILE_YAML --run RUN_DIR
        [--out DIR] [--seeds N] [--posteriors N] [--quick] [--json PATH]

``RUN_DIR`` is a run folder in which stages 01-06 ran; the data side of every
comparison is its stage 02/03 products and the tile's calexp. Nothing is written
into it: the simulations (and the copies of inputs they need) go to ``--out``
(default a temporary folder, each simulation deleted once scored).

What is measured. Every simulation (stage 06's ``run_simulation`` with
``measure_psf="none"``) is scored like stage 07: the realism statistics of
:mod:`hscsim_utils.numerics.realism_stats` against the data, on the scoring half
of the checkerboard (the data's reference sample and floors computed once), and
``mag_offset_chi2`` and ``mag_offset_shift`` from the truth matching (DEMO tiles
only: they need the data's true objects). The simulations:

- baseline: stage 06's choices for the run (``simulate.baseline_choices``:
  galaxy model, posterior sample, seed, counts and photon noise, as the
  fine-tuning stages use them); every simulation keeps the model, counts and
  photon noise;
- noise floor: ``--seeds`` seeds in all (the baseline's and the next ones) at
  the baseline's posterior sample, and ``--posteriors`` GalSBI posterior samples
  in all (the baseline's and the next indices) at the baseline's seed. The
  floor of a statistic is the standard deviation (ddof 1) of its value over
  the seeds (realisation noise) and over the posterior samples (the model's
  own uncertainty), combined as ``sqrt(seed_std^2 + posterior_std^2)``;
- injected errors, each at the baseline's seed and posterior sample:

  ``zp+-0.05``  zero point +-0.05 mag: ``magzero_dict`` (skymapinfo's value
                shifted). ufig's SExtractor measures at that same zero point,
                which leaves ``MAG_AUTO`` on the true magnitudes; as the data
                would see the error, the catalogue's ``MAG_AUTO`` is put on the
                data's zero point (``-+0.05``, in memory) before scoring. The
                ``zpSE+-0.05`` variant (a second table) scores ufig's own
                measurement: only the depth changes;
  ``fwhm+-3%``  PSF FWHM x1.03 / x0.97: stage 05's estimation run again on the
                data with ``psf_measurement_adjustment = {"psf_fwhm": (0,
                factor)}`` (as stage 08 writes its improved model), written to
                a new ``psf_model.h5`` used through
                ``filepath_psfmodel_input_dict`` (its ``grid_psf`` FWHM ratio
                to the run's model is printed);
  ``bsig+-3%``  background noise x1.03 / x0.97: a copy of the sysmaps with
                ``map_bsig`` scaled (stage 09's ``write_improved_sysmaps``),
                through ``filepath_sysmaps_dict``;
  ``r50+-10%``  galaxy sizes x1.1 / x0.9: the intercepts of GalSBI's natural-log
                r50 relation (Moser+24, ``red_blue``:
                ``logr50_phys_mean_intcpt_red`` and ``_blue``; the posterior
                sample's values) shifted by ln(1.1) / ln(0.9); the median
                ``r50`` of the intrinsic catalogue (``*_ucat.gal.cat``) is
                printed against the baseline's.

Output: one row per statistic with the baseline value, the seed and posterior
standard deviations and, per injected error, the response (injected value minus
baseline value) over the combined floor; ``*`` marks ``|response| > 2``. Then,
per error, the statistic that responds most; the wall time of every simulation
(simulation + scoring) and the total. The data are said to be DEMO (simulated)
or REAL. ``--json PATH`` (default ``OUT/sensitivity.json`` when ``--out`` is
given) holds the table, every value, stage 07's own floors and significance
flags, and the timings.

The response is a paired difference (same seed), so its own noise is mostly
smaller than the floor; the floor says whether the error would stand out from
another realisation or another posterior sample of the same model. Every
statistic measures the simulation against the data, so a negative response of
a distance or chi^2 means the error brought the simulation closer to the data,
and an error of either sign can move a statistic the same way or not at all
when the baseline already misses the data (on the DEMO tile ``MAG_AUTO - mag``
of the baseline is 0.02-0.07 mag below the data's: ``zp+0.05`` doubles that
offset, ``zp-0.05`` moves it to the other side, about as far).

Expected runtime (2 cores shared with other work, load 3): 2000 x 2000 DEMO
tile, default (13 simulations) 7-8 minutes: 20-40 s per simulation, 1-3 s per
scoring, the first 65-95 s (imports, compilation, the data's reference and
floors); ``--quick`` (4 simulations) 3-3.5 minutes. A simulation of a full
4200 x 4200 patch takes several times longer.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hscsim_utils.atomic import write_json
from hscsim_utils.hsc.tile import TileSpec, load_tile
from hscsim_utils.numerics import realism_stats as rs
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import quality, simulate

#: Statistics in table order: stage 07's realism statistics, then the truth one.
STATISTICS = (*rs.KINDS, "mag_offset_chi2", "mag_offset_shift")
#: A response beyond this many combined floors is marked.
SIGNIFICANT = 2.0
#: Injected errors: name, kind, value (a shift in mag or a factor).
ERRORS: tuple[tuple[str, str, float], ...] = (
    ("zp+0.05", "zero_point", 0.05),
    ("zp-0.05", "zero_point", -0.05),
    ("fwhm+3%", "psf_fwhm", 1.03),
    ("fwhm-3%", "psf_fwhm", 0.97),
    ("bsig+3%", "bkg_noise", 1.03),
    ("bsig-3%", "bkg_noise", 0.97),
    ("r50+10%", "galaxy_size", 1.10),
    ("r50-10%", "galaxy_size", 0.90),
)
QUICK_ERRORS = ("zp+0.05",)
#: GalSBI parameters adding to the natural log of r50, per size sampling method.
R50_INTERCEPTS = {
    "single": ("logr50_phys_mean_intcpt",),
    "red_blue": ("logr50_phys_mean_intcpt_red", "logr50_phys_mean_intcpt_blue"),
    "sdss_fit": ("logr50_sdss_fit_b_red", "logr50_sdss_fit_gamma_blue"),
}


@dataclass
class Setup:
    """The tile, its run folder and the baseline's simulation settings."""

    tile: TileSpec
    run: RunFolder
    work: Path
    settings: simulate.SimulationSettings
    config: object
    posterior: np.ndarray
    conversion: dict  # stage 06's counts and photon_noise, for every simulation

    @property
    def band(self) -> str:
        return self.settings.band


@dataclass
class Case:
    """One simulation: baseline, another seed or posterior sample, or an error."""

    name: str
    kind: str  # "baseline", "seed", "posterior" or "error"
    seed: int
    posterior_index: int
    error: tuple[str, float] | None = None  # (kind, value) of ERRORS
    injection: str = ""
    overrides: dict = field(default_factory=dict)

    @property
    def folder(self) -> str:
        """Folder name: SExtractor takes no spaces or commas in its paths."""
        return self.name.replace("%", "pc").replace(" ", "_")


# ---------------------------------------------------------------- injections


def inject_zero_point(setup: Setup, delta: float, _: Path) -> tuple[dict, str]:
    """``magzero_dict`` shifted by ``delta`` mag."""
    info = simulate.read_skymapinfo(setup.run.skymapinfo_npy, setup.band)
    zp = info[f"magzero_{setup.band}"]
    return (
        {"magzero_dict": {setup.band: zp + delta}},
        f"magzero_dict[{setup.band}] {zp:.3f} -> {zp + delta:.3f}",
    )


def inject_psf_fwhm(setup: Setup, factor: float, folder: Path) -> tuple[dict, str]:
    """Stage 05 again with the FWHM measurements scaled (stage 08's way)."""
    from hscsim_utils.stages import psf, psf_finetune

    model = folder / "psf_model.h5"
    view = psf_finetune.redirected_run(
        setup.run, psf_model=model, psf_catalog=folder / "psf_catalog.cat"
    )
    with contextlib.redirect_stdout(sys.stderr):
        psf.estimate_psf(
            setup.tile, view, psf_measurement_adjustment={"psf_fwhm": (0.0, factor)},
            **psf_finetune.stage05_settings(setup.run),
        )  # fmt: skip
    old = psf.read_grid(setup.run.psf_model)["psf_fwhm_ipt"]
    ratio = float(np.median(psf.read_grid(model)["psf_fwhm_ipt"] / old))
    return (
        {"filepath_psfmodel_input_dict": {setup.band: str(model)}},
        f"filepath_psfmodel_input_dict: PSF re-estimated with psf_fwhm x{factor}; "
        f"grid_psf FWHM / run's = {ratio:.4f} (median)",
    )


def inject_bkg_noise(setup: Setup, factor: float, folder: Path) -> tuple[dict, str]:
    """A copy of the sysmaps with ``map_bsig`` scaled by ``factor``."""
    from hscsim_utils.stages import background_finetune as bf

    bsig = bf.read_bsig(setup.run.sysmaps)
    path = bf.write_improved_sysmaps(setup.run.sysmaps, folder / "sysmaps.h5",
                                     bsig * factor)  # fmt: skip
    ratio = float(np.median(bf.read_bsig(path)[bsig > 0] / bsig[bsig > 0]))
    return (
        {"filepath_sysmaps_dict": {setup.band: str(path)}},
        f"filepath_sysmaps_dict: map_bsig x{ratio:.4f} (median)",
    )


def r50_parameters(setup: Setup) -> dict[str, float]:
    """The log-r50 intercepts of the model and their baseline values (the
    posterior sample's, else the config's)."""
    config = setup.config
    model = config.GALAXY_MODELS[setup.settings.galaxy_model]
    method = model.get("logr50_sampling_method", config.logr50_sampling_method)
    sample = setup.posterior[setup.settings.posterior_index]
    names = sample.dtype.names or ()
    return {
        name: float(sample[name] if name in names else getattr(config, name))
        for name in R50_INTERCEPTS[method]
    }


def inject_galaxy_size(setup: Setup, factor: float, _: Path) -> tuple[dict, str]:
    """The log-r50 intercepts shifted by ``ln(factor)``."""
    shift = math.log(factor)
    params = r50_parameters(setup)
    overrides = {name: value + shift for name, value in params.items()}
    text = ", ".join(f"{n} {v:.4f} -> {overrides[n]:.4f}" for n, v in params.items())
    return overrides, f"{text} (ln {factor})"


INJECTORS: dict[str, Callable[[Setup, float, Path], tuple[dict, str]]] = {
    "zero_point": inject_zero_point,
    "psf_fwhm": inject_psf_fwhm,
    "bkg_noise": inject_bkg_noise,
    "galaxy_size": inject_galaxy_size,
}


# ---------------------------------------------------------------- cases


def make_cases(setup: Setup, seeds: int, posteriors: int, quick: bool) -> list[Case]:
    """Baseline, the other seeds and posterior samples, the injected errors."""
    s = setup.settings
    cases = [Case("baseline", "baseline", s.seed, s.posterior_index)]
    cases += [
        Case(f"seed {s.seed + k}", "seed", s.seed + k, s.posterior_index)
        for k in range(1, seeds)
    ]
    n = len(setup.posterior)
    for k in range(1, posteriors):
        index = (s.posterior_index + k) % n
        cases.append(Case(f"posterior {index}", "posterior", s.seed, index))
    cases += [
        Case(name, "error", s.seed, s.posterior_index, (kind, value))
        for name, kind, value in ERRORS
        if not quick or name in QUICK_ERRORS
    ]
    return cases


def median_r50(folder: Path) -> tuple[float | None, int]:
    """Median ``r50`` (pixels) of the intrinsic galaxies and their number."""
    gal = simulate.load_simulation(folder).load_catalogs().get("ucat galaxies")
    if gal is None or not len(gal):
        return None, 0
    return float(np.median(gal["r50"])), len(gal)


def shift_magnitudes(inputs: quality.QualityInputs, shift: float) -> None:
    """Move the measured ``MAG_AUTO`` of the simulation's catalogue by ``shift``
    (in memory): SExtractor run at a zero point ``shift`` away."""
    cat = inputs.sim_catalog.copy()
    measured = cat["MAG_AUTO"] < quality.NO_MEASUREMENT
    cat["MAG_AUTO"][measured] += shift
    inputs.sim_catalog = cat


def score(
    setup: Setup,
    folder: Path,
    reference: quality.RealismReference | None,
    mag_shift: float = 0.0,
) -> tuple[dict, quality.RealismReference]:
    """Stage 07's statistics of the simulation in ``folder`` (scoring half),
    its ``MAG_AUTO`` moved by ``mag_shift``."""
    inputs = quality.load_inputs(setup.tile, setup.run, simulation=folder)
    if mag_shift:
        shift_magnitudes(inputs, mag_shift)
    reference = reference or inputs.reference()
    realism = inputs.realism(reference=reference)
    stats = dict(realism["statistics"])
    truth = inputs.truth() or {}
    for name in ("mag_offset_chi2", "mag_offset_shift"):
        if name in truth:
            stats[name] = truth[name]
    keys = ("value", "floor", "threshold", "significant")
    r50, n_gal = median_r50(folder)
    return {
        "half": realism["half"],
        "statistics": {k: {f: v.get(f) for f in keys} for k, v in stats.items()},
        "median_r50_px": r50,
        "n_galaxies": n_gal,
    }, reference


def scorings(case: Case) -> list[tuple[str, str, float, str]]:
    """(name, kind, MAG_AUTO shift, note) of every scoring of the case's simulation.

    ufig's SExtractor measures at the simulation's ``magzero``, so a shifted
    ``magzero_dict`` alone leaves ``MAG_AUTO`` on the true magnitudes (a depth
    change). The zero-point error as the data would show it is that image
    measured at the data's zero point: ``MAG_AUTO - delta``; the ``zpSE`` variant
    keeps ufig's measurement.
    """
    if case.error is None or case.error[0] != "zero_point":
        return [(case.name, case.kind, 0.0, case.injection)]
    delta = case.error[1]
    return [
        (case.name, "error", -delta,
         f"{case.injection}; MAG_AUTO at the data's zero point ({-delta:+.2f})"),
        (case.name.replace("zp", "zpSE"), "variant", 0.0,
         f"{case.injection}; MAG_AUTO at the shifted zero point (ufig's SExtractor)"),
    ]  # fmt: skip


def simulate_case(setup: Setup, case: Case) -> tuple[Path, float, float]:
    """Inject the case's error (if any) and simulate; folder and the two times."""
    folder = setup.work / case.folder
    t0 = time.perf_counter()
    if case.error is not None:
        inputs = setup.work / "inputs" / case.folder
        inputs.mkdir(parents=True, exist_ok=True)
        kind, value = case.error
        case.overrides, case.injection = INJECTORS[kind](setup, value, inputs)
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stage 06's progress bar
        simulate.run_simulation(
            setup.tile, setup.run, seed=case.seed,
            posterior_index=case.posterior_index, out=folder,
            overrides=case.overrides, measure_psf="none", verbosity="error",
            galaxy_model=setup.settings.galaxy_model, **setup.conversion,
        )  # fmt: skip
    return folder, t1 - t0, time.perf_counter() - t1


def run_case(
    setup: Setup, case: Case, reference: quality.RealismReference | None, keep: bool
) -> tuple[list[dict], quality.RealismReference]:
    """Inject, simulate, score: the case's records (two for a zero point)."""
    folder, inject_s, simulate_s = simulate_case(setup, case)
    records = []
    for name, kind, shift, note in scorings(case):
        t0 = time.perf_counter()
        scored, reference = score(setup, folder, reference, shift)
        records.append(
            {"name": name, "kind": kind, "seed": case.seed,
             "posterior_index": case.posterior_index, "injection": note,
             "inject_s": round(inject_s, 2), "simulate_s": round(simulate_s, 2),
             "score_s": round(time.perf_counter() - t0, 2),
             "simulated": not records, **scored}
        )  # fmt: skip
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    return records, reference


def run_cases(setup: Setup, cases: Sequence[Case], keep: bool) -> list[dict]:
    """Every case in turn (one simulation at a time), with a progress line each."""
    records, reference = [], None
    for i, case in enumerate(cases, 1):
        new, reference = run_case(setup, case, reference, keep)
        records += new
        r = new[0]
        print(f"  [{i:2d}/{len(cases)}] {case.name:13s} inject {r['inject_s']:5.1f} s"
              f"  simulate {r['simulate_s']:6.1f} s  score "
              f"{sum(x['score_s'] for x in new):5.1f} s", flush=True)  # fmt: skip
    return records


# ---------------------------------------------------------------- the table


def value(record: dict, stat: str) -> float | None:
    return record["statistics"].get(stat, {}).get("value")


def spread(records: Sequence[dict], stat: str) -> float | None:
    """Standard deviation (ddof 1) of a statistic over ``records``."""
    values = [value(r, stat) for r in records]
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def combine(*stds: float | None) -> float | None:
    """``sqrt(sum of squares)`` of the known standard deviations."""
    known = [s for s in stds if s is not None]
    return float(math.sqrt(sum(s * s for s in known))) if known else None


def table_rows(records: Sequence[dict]) -> list[dict]:
    """Per statistic: baseline, floors and the response to every error."""
    base = records[0]
    by_kind = {k: [base] + [r for r in records if r["kind"] == k]
               for k in ("seed", "posterior")}  # fmt: skip
    errors = [r for r in records if r["kind"] in ("error", "variant")]
    rows = []
    for stat in STATISTICS:
        if not any(stat in r["statistics"] for r in records):
            continue
        b = value(base, stat)
        seed_std = spread(by_kind["seed"], stat)
        post_std = spread(by_kind["posterior"], stat)
        floor = combine(seed_std, post_std)
        responses = {}
        for r in errors:
            v = value(r, stat)
            ok = None not in (v, b) and floor
            responses[r["name"]] = (v - b) / floor if ok else None
        rows.append({"statistic": stat, "baseline": b, "seed_std": seed_std,
                     "posterior_std": post_std, "floor": floor,
                     "stage07_floor": base["statistics"][stat].get("floor"),
                     "responses": responses})  # fmt: skip
    return rows


def fmt(v: float | None, spec: str = "9.4g") -> str:
    """``v`` formatted, or ``-`` as wide as the spec's width."""
    width = spec.split(".")[0].lstrip("+") or "1"
    return format(v, spec) if v is not None else f"{'-':>{width}s}"


def print_table(rows: Sequence[dict], errors: Sequence[str]) -> None:
    """Baseline, floors and responses (``*``: beyond :data:`SIGNIFICANT`)."""
    widths = [max(8, len(e)) for e in errors]
    head = f"{'statistic':20s} {'baseline':>9s} {'seed std':>9s} {'post std':>9s}"
    print(head + "".join(f" {e:>{w}s}" for e, w in zip(errors, widths, strict=True)))
    for row in rows:
        stds = (fmt(row["seed_std"], "9.3g"), fmt(row["posterior_std"], "9.3g"))
        line = f"{row['statistic']:20s} {fmt(row['baseline'])} {' '.join(stds)}"
        for e, w in zip(errors, widths, strict=True):
            x = row["responses"][e]
            mark = "*" if x is not None and abs(x) > SIGNIFICANT else " "
            line += f" {fmt(x, f'+{w - 1}.1f')}{mark}"
        print(line)


def strongest(rows: Sequence[dict], errors: Sequence[str]) -> dict[str, dict]:
    """Per error: the statistic with the largest |response| / floor."""
    out = {}
    for e in errors:
        known = [(abs(r["responses"][e]), r) for r in rows
                 if r["responses"][e] is not None]  # fmt: skip
        if not known:
            out[e] = {"statistic": None, "response": None, "detected": None}
            continue
        size, row = max(known, key=lambda t: t[0])
        out[e] = {"statistic": row["statistic"], "response": row["responses"][e],
                  "detected": bool(size > SIGNIFICANT)}  # fmt: skip
    return out


def print_checks(records: Sequence[dict]) -> None:
    """How every error was injected, and the size check on the true catalogue."""
    base = records[0]
    print("\ninjected errors:")
    for r in records:
        if r["kind"] in ("error", "variant"):
            print(f"  {r['name']:9s} {r['injection']}")
    if not any(r["name"].startswith("r50") for r in records):
        return
    print(f"\ngalaxy sizes on the intrinsic catalogue (*_ucat.gal.cat), baseline "
          f"median r50 = {fmt(base['median_r50_px'], '.4f')} px "
          f"({base['n_galaxies']} galaxies):")  # fmt: skip
    for r in records:
        if r["kind"] == "error" and r["name"].startswith("r50"):
            ratio = None
            if r["median_r50_px"] and base["median_r50_px"]:
                ratio = r["median_r50_px"] / base["median_r50_px"]
            print(f"  {r['name']:9s} median r50 {fmt(r['median_r50_px'], '.4f')} px, "
                  f"ratio to baseline {fmt(ratio, '.4f')} ({r['n_galaxies']} "
                  "galaxies)")  # fmt: skip


def print_report(records: Sequence[dict], total_s: float) -> dict:
    """The tables, the strongest responses, the checks and the timings."""
    rows = table_rows(records)
    errors = [r["name"] for r in records if r["kind"] == "error"]
    variants = [r["name"] for r in records if r["kind"] == "variant"]
    n_seed = 1 + sum(r["kind"] == "seed" for r in records)
    n_post = 1 + sum(r["kind"] == "posterior" for r in records)
    print(f"\nresponse = (injected - baseline) / sqrt(seed_std^2 + post_std^2); "
          f"* = |response| > {SIGNIFICANT:g}; std over {n_seed} seeds and "
          f"{n_post} posterior samples (ddof 1)\n")  # fmt: skip
    print_table(rows, errors)
    if variants:
        print("\nzero point with the simulation's SExtractor at the shifted zero "
              "point too (ufig's own measurement: a depth change only):")  # fmt: skip
        print_table(rows, variants)
    best = strongest(rows, errors + variants)
    print("\nstrongest response per error:")
    for e, b in best.items():
        verdict = {True: "exceeds 2", False: "below 2", None: "-"}[b["detected"]]
        print(f"  {e:9s} {b['statistic'] or '-':20s} {fmt(b['response'], '+8.1f')}  "
              f"{verdict}")  # fmt: skip
    print_checks(records)
    print("\nwall time (simulation + scoring, s):")
    simulated = [r for r in records if r["simulated"]]
    for r in simulated:
        extra = f"  (+ {r['inject_s']:.1f} injecting)" if r["inject_s"] > 0.05 else ""
        print(f"  {r['name']:13s} {r['simulate_s']:6.1f} + {r['score_s']:5.1f}{extra}")
    print(f"  total {total_s:.0f} s for {len(simulated)} simulations")
    return {"rows": rows, "strongest": best}


# ---------------------------------------------------------------- main


def make_setup(tile_path: Path, run_dir: Path, work: Path) -> Setup:
    from cosmic_toolbox import logger

    logger.set_all_loggers_level("warning")  # their INFO lines go to stdout
    tile, run = load_tile(tile_path), RunFolder(run_dir)
    choices = simulate.baseline_choices(run)  # stage 06's, as stages 08/09 use
    config = simulate.load_config()
    model, index, seed = (choices.pop(k) for k in ("galaxy_model", "posterior_index",
                                                   "seed"))  # fmt: skip
    settings = simulate.resolve_settings(tile, config, model, index, seed)
    posterior = simulate.load_posterior(settings.galaxy_model)
    return Setup(tile, run, work, settings, config, posterior, choices)


def header(setup: Setup) -> str:
    s = setup.settings
    data = ("DEMO (simulated data, not real HSC)" if setup.tile.is_demo
            else "REAL (HSC-SSP data)")  # fmt: skip
    return (f"Sensitivity of the stage 07 statistics: {setup.tile.tile_name}, band "
            f"{s.band}\n  data: {data}\n  statistics on the {quality.SCORING} half "
            f"(checkerboard of 256-pixel blocks), against run folder {setup.run.root}"
            f"\n  baseline (stage 06's choices): {s.galaxy_model} posterior sample "
            f"{s.posterior_index}, seed {s.seed}, counts "
            f"{setup.conversion['counts']}, photon noise "
            f"{setup.conversion['photon_noise']}\n  load average "
            f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=Path, required=True, help="tile YAML")
    p.add_argument("--run", type=Path, required=True, help="run folder (stages 01-06)")
    p.add_argument("--out", type=Path, default=None, help="simulations (kept)")
    p.add_argument("--seeds", type=int, default=3, help="seeds, baseline's included")
    p.add_argument("--posteriors", type=int, default=3,
                   help="posterior samples, baseline's included")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="2 seeds, 2 samples, zp+0.05")
    p.add_argument("--json", type=Path, default=None, help="write the table here")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.posteriors = min(args.seeds, 2), min(args.posteriors, 2)
    if args.seeds < 1 or args.posteriors < 1:
        p.error("--seeds and --posteriors must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = args.out
        if work is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="sens-"))
            work = Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        setup = make_setup(args.tile, args.run, work)
        print(header(setup), flush=True)
        cases = make_cases(setup, args.seeds, args.posteriors, args.quick)
        print(f"\n{len(cases)} simulations into {work}", flush=True)
        records = run_cases(setup, cases, keep=args.out is not None)
        total = time.perf_counter() - t0
        report = print_report(records, total)
    path = args.json or (args.out / "sensitivity.json" if args.out else None)
    if path is not None:
        write_json(path, {"tile": setup.tile.tile_name, "is_demo": setup.tile.is_demo,
                          "half": records[0]["half"], "total_s": round(total, 1),
                          "load_average": os.getloadavg(), "cases": records,
                          **report})  # fmt: skip
        print(f"table written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
