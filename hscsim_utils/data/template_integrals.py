"""Tabulate template-spectrum integrals through filters on a (z, E(B-V)) grid.

The table is the one galsbi's ``MagCalculatorTable`` reads: for every filter
and template, the flux of the redshifted, dust-reddened template (coefficient
1) on a grid of redshift ``z`` and extinction ``E(B-V)``. galsbi computes it
cell by cell with ``MagCalculatorDirect``; here each redshift is one matrix
product. For a fixed ``z`` the observed wavelengths are fixed, so the
trapezoid weights, the observed wavelength, the interpolated filter curve and
the template fold into one row vector per template, and the extinction factor
``10**(-0.4 A(lambda_obs, E))`` is a (n_lambda, n_E) matrix shared by all
templates: ``fluxes(z) = W(z) @ F(z)``. Only the wavelengths inside the filter
enter ``W`` (elsewhere the integrand is exactly zero).

Units and scalings follow galsbi: wavelengths in micrometre (file values times
``1e-4``), template amplitudes times ``1e4``.

The cost grows linearly with the number of bands: on the full grid, 2 cores,
the two bands HSC_i2 and SuprimeCam_B take 19-25 s and the six
``DEFAULT_BANDS`` 60-73 s to compute (ratio 2.9-3.2, one thread: 30 s and
89 s), plus 10 s to write the six-band file of 536 MB; the tables in memory
take 8 bytes x 5 templates x 7463 x 401 = 120 MB per band
(``benchmarks/bench_template_integrals.py``, machine shared with other jobs).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError
from hscsim_utils.logs import quiet_loggers

#: The HSC broad bands g, r, i, z, y as params/galsbi_hsc_config.py names them, and
#: SuprimeCam_B, the band of galsbi's luminosity function. Every name is a group
#: of galsbi 0.1.0's tests/data/HSC_tables/HSC_filters_collection_yfix.h5 (which
#: holds these and GenericBessel_B).
DEFAULT_BANDS: tuple[str, ...] = (
    "HSC_g",
    "HSC_r2",
    "HSC_i2",
    "HSC_z",
    "HSC_y",
    "SuprimeCam_B",
)
LAM_SCALE = 1e-4  # Angstrom -> micrometre, as galsbi loads filters and templates
AMP_SCALE = 1e4  # template amplitude scale galsbi applies
SPEED_OF_LIGHT_UM_PER_S = 3e14  # the value galsbi's magnitude calculator uses


@dataclass(frozen=True)
class Grid:
    """Redshift and E(B-V) grid of the table (galsbi's parametrisation)."""

    z_max: float = 7.462
    z_step: float = 0.001
    ebv_max: float = 0.4
    ebv_step: float = 0.001

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(z_grid, ebv_grid)`` exactly as galsbi builds them."""
        from galsbi.ucat.sed_templates_util import get_redshift_extinction_grid

        z_grid, ebv_grid, _, _ = get_redshift_extinction_grid(
            z_max=self.z_max,
            z_stepsize=self.z_step,
            excess_b_v_max=self.ebv_max,
            excess_b_v_stepsize=self.ebv_step,
        )
        return z_grid, ebv_grid

    def shape(self) -> tuple[int, int]:
        """Return ``(n_z, n_ebv)`` without building the grid arrays."""
        n_z = len(np.arange(0, self.z_max + self.z_step, step=self.z_step))
        n_e = len(np.arange(0, self.ebv_max + self.ebv_step, self.ebv_step))
        return n_z, n_e


FULL_GRID = Grid()  # 7463 redshifts x 401 E(B-V) values


def load_inputs(
    filters_path: str | Path, templates_path: str | Path, bands: Sequence[str]
) -> tuple[dict, dict]:
    """Load filter curves and templates with galsbi's loaders and scalings."""
    from galsbi.ucat import filters_util, sed_templates_util

    filters_path, templates_path = Path(filters_path), Path(templates_path)
    for path in (filters_path, templates_path):
        if not path.is_file():
            raise InputError(path, "file not found")
    with h5py.File(filters_path, "r") as fh:
        missing = [b for b in bands if b not in fh]
    if missing:
        raise InputError(filters_path, f"filters {missing} not in the collection")
    with quiet_loggers(m.LOGGER for m in (filters_util, sed_templates_util)):
        filters = filters_util.load_filters(
            str(filters_path), filter_names=list(bands), lam_scale=LAM_SCALE
        )
        templates = sed_templates_util.load_template_spectra(
            str(templates_path), lam_scale=LAM_SCALE, amp_scale=AMP_SCALE
        )
    return filters, templates


def _filter_window(lam_obs: np.ndarray, filt_lam: np.ndarray) -> slice:
    """Index range of ``lam_obs`` covering the filter plus one zero point each side.

    The points just outside carry a zero integrand but close the trapezoids of
    the first and last points inside the filter.
    """
    start = max(int(np.searchsorted(lam_obs, filt_lam[0], "left")) - 1, 0)
    stop = min(int(np.searchsorted(lam_obs, filt_lam[-1], "right")) + 1, len(lam_obs))
    return slice(start, stop)


def _trapezoid_weights(x: np.ndarray) -> np.ndarray:
    """Weights ``w`` with ``sum(w * y) == trapezoid(y, x)`` on the points ``x``."""
    d = np.diff(x)
    w = np.zeros_like(x)
    w[:-1] += d
    w[1:] += d
    return 0.5 * w


def _fluxes_at_redshift(
    z: float, ebv: np.ndarray, filt: Mapping, templates: Mapping, spline
) -> np.ndarray:
    """Fluxes of all templates through one filter at redshift ``z``: (n_t, n_E)."""
    from galsbi.ucat.spectrum_util import extinction_coefficient

    lam_obs = templates["lam"] * (1 + z)
    window = _filter_window(lam_obs, filt["lam"])
    x = lam_obs[window]
    if len(x) < 2:
        return np.zeros((templates["amp"].shape[0], len(ebv)))
    filt_amp = np.interp(x, filt["lam"], filt["amp"], left=0.0, right=0.0)
    weights = templates["amp"][:, window] * (x * filt_amp * _trapezoid_weights(x))
    # extinction_coefficient returns A(lambda_obs) for every E(B-V): (n_E, n_lambda)
    attenuation = 10 ** (-2 / 5 * extinction_coefficient(x, ebv, spline))
    return (weights @ attenuation.T) / (SPEED_OF_LIGHT_UM_PER_S * filt["integ"])


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Keep BLAS to one thread: the products are small and run in parallel here."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with the stack
        return contextlib.nullcontext()
    return threadpool_limits(1)


def compute_template_integrals(
    filters: Mapping[str, Mapping],
    templates: Mapping,
    z_grid: np.ndarray,
    ebv_grid: np.ndarray,
    bands: Sequence[str] = DEFAULT_BANDS,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Return ``{band: array (n_templates, n_z, n_ebv)}`` of template fluxes.

    ``filters`` and ``templates`` are as galsbi's ``load_filters`` and
    ``load_template_spectra`` return them (micrometre, scaled amplitudes).
    The values equal ``MagCalculatorDirect(..., coeffs=1, return_fluxes=True)``.
    Redshifts are shared among ``workers`` threads (default: one per core);
    every cell is computed the same way whatever the number of threads.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from galsbi.ucat.spectrum_util import spline_ext_coeff
    from tqdm import tqdm

    spline = spline_ext_coeff()
    z_grid = np.asarray(z_grid, dtype=float)
    ebv_grid = np.asarray(ebv_grid, dtype=float)
    n_workers = max(1, workers or os.cpu_count() or 1)
    chunks = np.array_split(np.arange(len(z_grid)), min(len(z_grid), 16 * n_workers))
    tables = {
        band: np.empty((templates["amp"].shape[0], len(z_grid), len(ebv_grid)))
        for band in bands
    }

    def fill(band: str, indices: np.ndarray) -> int:
        for i in indices:
            tables[band][:, i, :] = _fluxes_at_redshift(
                z_grid[i], ebv_grid, filters[band], templates, spline
            )
        return len(indices)

    bar = tqdm(
        total=len(bands) * len(z_grid),
        desc="template integrals",
        unit="z",
        disable=not progress,
        mininterval=0.5,
    )
    with bar, _single_threaded_blas(), ThreadPoolExecutor(n_workers) as pool:
        jobs = [pool.submit(fill, b, idx) for b in bands for idx in chunks if idx.size]
        for job in as_completed(jobs):
            bar.update(job.result())
    return tables


def write_integrals(
    path: str | Path,
    tables: Mapping[str, np.ndarray],
    z_grid: np.ndarray,
    ebv_grid: np.ndarray,
) -> Path:
    """Write the table in galsbi's layout (``z``, ``E(B-V)``, ``integrals/...``)."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("E(B-V)", data=ebv_grid, compression="lzf", shuffle=True)
        fh.create_dataset("z", data=z_grid, compression="lzf", shuffle=True)
        for band, table in tables.items():
            for i, values in enumerate(table):
                fh.create_dataset(
                    f"integrals/{band}/template_{i}",
                    data=values,
                    compression="lzf",
                    shuffle=True,
                )
    return path


def build_integrals_file(
    filters_path: str | Path,
    templates_path: str | Path,
    out_path: str | Path,
    bands: Sequence[str] = DEFAULT_BANDS,
    grid: Grid = FULL_GRID,
    progress: bool = True,
    workers: int | None = None,
) -> float:
    """Compute the table for ``bands`` on ``grid``, write it; return the seconds."""
    start = time.perf_counter()
    filters, templates = load_inputs(filters_path, templates_path, bands)
    z_grid, ebv_grid = grid.arrays()
    tables = compute_template_integrals(
        filters, templates, z_grid, ebv_grid, bands, progress=progress, workers=workers
    )
    write_integrals(out_path, tables, z_grid, ebv_grid)
    return time.perf_counter() - start


def direct_fluxes(
    filters: Mapping,
    templates: Mapping,
    band: str,
    template: int,
    z: np.ndarray,
    ebv: np.ndarray,
) -> np.ndarray:
    """Fluxes of one template at points ``(z, ebv)`` with galsbi's direct calculator."""
    from galsbi.ucat.magnitude_calculator import MagCalculatorDirect

    single = {"lam": templates["lam"], "amp": templates["amp"][[template]]}
    calc = MagCalculatorDirect(filters, single)
    out = calc(
        redshifts=np.asarray(z, dtype=float),
        excess_b_v=np.asarray(ebv, dtype=float),
        coeffs=np.ones(len(z)),
        filter_names=[band],
        return_fluxes=True,
    )
    return out[band]


def max_relative_difference(table: np.ndarray, reference: np.ndarray) -> float:
    """Largest ``|table - reference| / |reference|``; cells where both are 0 count 0."""
    table, reference = np.asarray(table), np.asarray(reference)
    both_zero = (table == 0) & (reference == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(table - reference) / np.abs(reference)
    return float(np.max(np.where(both_zero, 0.0, rel), initial=0.0))


def spot_check(
    integrals_path: str | Path,
    filters_path: str | Path,
    templates_path: str | Path,
    bands: Sequence[str] = DEFAULT_BANDS,
    n_cells: int = 50,
    seed: int = 0,
) -> dict[tuple[str, int], float]:
    """Compare ``n_cells`` random table cells per band and template with galsbi.

    Returns the maximum relative difference per ``(band, template)``.
    """
    filters, templates = load_inputs(filters_path, templates_path, bands)
    rng = np.random.default_rng(seed)
    result = {}
    with h5py.File(integrals_path, "r") as fh:
        z_grid, ebv_grid = np.asarray(fh["z"]), np.asarray(fh["E(B-V)"])
        for band in bands:
            for t in range(templates["amp"].shape[0]):
                iz = rng.integers(0, len(z_grid), n_cells)
                ie = rng.integers(0, len(ebv_grid), n_cells)
                dset = fh[f"integrals/{band}/template_{t}"]
                values = np.array([dset[a, b] for a, b in zip(iz, ie, strict=True)])
                ref = direct_fluxes(
                    filters, templates, band, t, z_grid[iz], ebv_grid[ie]
                )
                result[(band, t)] = max_relative_difference(values, ref)
    return result
