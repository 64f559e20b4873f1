"""Time the full template integral table and check it against galsbi.

Usage::

    .venv/bin/python -m benchmarks.bench_template_integrals [--cache DIR]
        [--z-stride N] [--workers N]

Reads the filter collection and templates from a provisioned cosmo_torrent
cache (``hscsim data``), computes the table on the full grid (every
``--z-stride``-th redshift when given, the time then scaled up), and prints
the seconds per thread count, the extrapolated time of galsbi's cell-by-cell
loop, and the largest relative difference from galsbi's ``MagCalculatorDirect``
on 50 random cells per filter and template of the cached full table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hscsim_utils.data import provision
from hscsim_utils.data import template_integrals as ti


def _paths(cache: Path) -> tuple[Path, Path, Path]:
    hsc = cache / provision.HSC_TABLES.name
    templates = cache / provision.TEMPLATES.name / provision.TEMPLATES_FILE
    return hsc / provision.FILTERS_FILE, templates, hsc / provision.INTEGRALS_FILE


def _direct_seconds_per_cell(filters: dict, templates: dict) -> float:
    z, ebv = np.linspace(0.1, 3.0, 40), np.full(40, 0.1)
    start = time.perf_counter()
    ti.direct_fluxes(filters, templates, ti.DEFAULT_BANDS[0], 0, z, ebv)
    return (time.perf_counter() - start) / z.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--z-stride", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cache = args.cache or provision.default_cache_root()
    filters_path, templates_path, integrals_path = _paths(cache)
    filters, templates = ti.load_inputs(filters_path, templates_path, ti.DEFAULT_BANDS)
    z, ebv = ti.FULL_GRID.arrays()
    z_used = z[:: args.z_stride]
    print(
        f"grid {z.size} z x {ebv.size} E(B-V), bands {ti.DEFAULT_BANDS}, "
        f"{templates['amp'].shape[0]} templates, z stride {args.z_stride}"
    )
    for workers in args.workers:
        start = time.perf_counter()
        ti.compute_template_integrals(
            filters, templates, z_used, ebv, progress=False, workers=workers
        )
        seconds = (time.perf_counter() - start) * z.size / z_used.size
        print(f"vectorised table, {workers} thread(s): {seconds:.1f} s (full grid)")
    per_cell = _direct_seconds_per_cell(filters, templates)
    n_cells = z.size * ebv.size * templates["amp"].shape[0] * len(ti.DEFAULT_BANDS)
    print(
        f"galsbi cell-by-cell loop: {per_cell * 1e3:.2f} ms per cell and filter, "
        f"about {per_cell * n_cells / 3600:.1f} h for both filters"
    )
    diffs = ti.spot_check(integrals_path, filters_path, templates_path, n_cells=50)
    print(
        f"cached table {integrals_path}: max relative difference from "
        f"MagCalculatorDirect over {len(diffs)} x 50 cells = {max(diffs.values()):.2e}"
    )


if __name__ == "__main__":
    main()
