"""Time the full template integral table for 2 and 6 bands and check it against galsbi.

Usage::

    .venv/bin/python -m benchmarks.bench_template_integrals [--cache DIR]
        [--z-stride N] [--workers N [N ...]] [--no-write]

Reads the filter collection and templates from a provisioned cosmo_torrent
cache (``hscsim data``) and, in one run, computes the table on the full grid
(every ``--z-stride``-th redshift when given, the time then scaled up) for the
two bands of an i-band simulation (HSC_i2, SuprimeCam_B) and for the six of
``DEFAULT_BANDS``; it prints the seconds per thread count and their ratio, the
seconds to write the six-band table and its size (unless ``--no-write`` or a
stride), the extrapolated time of galsbi's cell-by-cell loop, and the largest
relative difference from galsbi's ``MagCalculatorDirect`` on 50 random cells
per filter and template of the cached table (the bands it holds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.data import provision
from hscsim_utils.data import template_integrals as ti

TWO_BANDS = ("HSC_i2", "SuprimeCam_B")  # the default before the five HSC bands


def _paths(cache: Path) -> tuple[Path, Path, Path]:
    hsc = cache / provision.HSC_TABLES.name
    templates = cache / provision.TEMPLATES.name / provision.TEMPLATES_FILE
    return hsc / provision.FILTERS_FILE, templates, hsc / provision.INTEGRALS_FILE


def _direct_seconds_per_cell(filters: Mapping, templates: Mapping) -> float:
    z, ebv = np.linspace(0.1, 3.0, 40), np.full(40, 0.1)
    start = time.perf_counter()
    ti.direct_fluxes(filters, templates, ti.DEFAULT_BANDS[0], 0, z, ebv)
    return (time.perf_counter() - start) / z.size


def _time_table(
    filters: Mapping,
    templates: Mapping,
    grids: tuple[np.ndarray, np.ndarray],
    bands: Sequence[str],
    workers: int,
) -> tuple[float, dict[str, np.ndarray]]:
    """Seconds to compute the table of ``bands`` on ``grids``, and the table."""
    z, ebv = grids
    start = time.perf_counter()
    tables = ti.compute_template_integrals(
        filters, templates, z, ebv, bands, progress=False, workers=workers
    )
    return time.perf_counter() - start, tables


def _time_write(
    tables: Mapping[str, np.ndarray], z: np.ndarray, ebv: np.ndarray
) -> tuple[float, int]:
    """Seconds to write ``tables`` in galsbi's layout, and the file's bytes."""
    with tempfile.TemporaryDirectory(prefix="bench-integrals.") as tmp:
        path = Path(tmp) / provision.INTEGRALS_FILE
        start = time.perf_counter()
        ti.write_integrals(path, tables, z, ebv)
        return time.perf_counter() - start, path.stat().st_size


def _cached_bands(integrals_path: Path) -> list[str]:
    with h5py.File(integrals_path, "r") as fh:
        return [b for b in ti.DEFAULT_BANDS if b in fh["integrals"]]


def _compare_band_counts(
    filters: Mapping, templates: Mapping, args: argparse.Namespace
) -> dict[str, np.ndarray]:
    """Print the 2- and 6-band times per thread count; return the last 6-band table."""
    z, ebv = ti.FULL_GRID.arrays()
    used = (z[:: args.z_stride], ebv)
    scale = z.size / used[0].size
    tables: dict[str, np.ndarray] = {}
    for workers in args.workers:
        two = _time_table(filters, templates, used, TWO_BANDS, workers)[0]
        six, tables = _time_table(filters, templates, used, ti.DEFAULT_BANDS, workers)
        print(
            f"{workers} thread(s), full grid: {len(TWO_BANDS)} bands "
            f"{two * scale:.1f} s, {len(ti.DEFAULT_BANDS)} bands {six * scale:.1f} s, "
            f"ratio {six / two:.2f}"
        )
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--z-stride", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cache = args.cache or provision.default_cache_root()
    filters_path, templates_path, integrals_path = _paths(cache)
    filters, templates = ti.load_inputs(filters_path, templates_path, ti.DEFAULT_BANDS)
    z, ebv = ti.FULL_GRID.arrays()
    n_t = templates["amp"].shape[0]
    print(
        f"grid {z.size} z x {ebv.size} E(B-V), {n_t} templates, "
        f"z stride {args.z_stride}, bands {ti.DEFAULT_BANDS}"
    )
    tables = _compare_band_counts(filters, templates, args)
    if not args.no_write and args.z_stride == 1:
        seconds, size = _time_write(tables, z, ebv)
        print(f"writing the 6-band table: {seconds:.1f} s, {size / 1e6:.0f} MB")
    del tables
    per_cell = _direct_seconds_per_cell(filters, templates)
    n_cells = z.size * ebv.size * n_t * len(ti.DEFAULT_BANDS)
    print(
        f"galsbi cell-by-cell loop: {per_cell * 1e3:.2f} ms per cell and filter, "
        f"about {per_cell * n_cells / 3600:.1f} h for {len(ti.DEFAULT_BANDS)} filters"
    )
    bands = _cached_bands(integrals_path)
    diffs = ti.spot_check(
        integrals_path, filters_path, templates_path, bands=bands, n_cells=50
    )
    print(
        f"cached table {integrals_path} ({', '.join(bands)}): max relative "
        f"difference from MagCalculatorDirect over {len(diffs)} x 50 cells = "
        f"{max(diffs.values()):.2e}"
    )


if __name__ == "__main__":
    main()
