"""The true PSF of the DEMO tile (simulated): per-visit fields and the coadd PSF.

Every visit has its own PSF field on the focal plane in ufig's model, two Moffat
profiles with betas 2 and 5 sharing one FWHM (``psf_flux_ratio`` is the flux in
the beta = 2 wings) plus ellipticity (e1, e2) and flexion (f1, f2: spin 1;
g1, g2: spin 3):

- FWHM = visit seeing x (1 + 6% rho**2 + a small linear tilt), rho = r / 16000 px
  (the focal-plane radius); seeing is log-normal around 0.60", the median i-band
  seeing of HSC-SSP (Aihara et al. 2019, 2022);
- ellipticity = a per-visit constant (tracking, wind) + an astigmatism-like
  pattern ~ rho**2 e^{2 i phi}; flexions: coma-like f ~ rho e^{i phi} and
  trefoil-like g ~ rho**3 e^{3 i phi};
- spin-s quantities are rotated by s times the rotator angle onto the patch axes.

The coadd PSF at a point combines the visits that cover it with their coadd
weights (inverse sky variance): FWHM**2 is the weighted mean of FWHM**2 (second
moments add), shape parameters are weighted by w FWHM**2, the flux ratio by w.
It is tabulated on ufig's 100-pixel grid in the ``grid_psf`` layout that
``psf_type="coadd_moffat_cnn_read"`` reads (ufig/plugins/add_psf.py,
ufig/psf_estimation/save_model.py): fields X_IMAGE, Y_IMAGE (FITS convention),
``psf_{flux_ratio,fwhm,e1,e2,f1,f2,g1,g2}_ipt`` with the FWHM in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path
from hscsim_utils.demo.observation import VisitPlan, focal_positions
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC, PatchGeometry
from hscsim_utils.numerics.psf_model import PSF_BETAS

MEDIAN_SEEING_ARCSEC = 0.60
GRID_STEP = 100
FOCAL_RADIUS_PX = 16000.0
PSF_PARAMS = ("flux_ratio", "fwhm", "e1", "e2", "f1", "f2", "g1", "g2")


@dataclass(frozen=True)
class VisitPSF:
    """Per-visit PSF-field coefficients (focal-plane frame)."""

    seeing: np.ndarray  # FWHM at the focal-plane centre, arcsec
    flux_ratio: np.ndarray  # flux fraction in the beta = 2 component
    tilt: np.ndarray  # (n, 2) linear FWHM gradient across the field (fraction)
    e0: np.ndarray  # (n, 2) constant ellipticity
    astig: np.ndarray  # amplitude of the rho**2 ellipticity pattern
    coma: np.ndarray  # amplitude of the rho flexion (spin 1)
    trefoil: np.ndarray  # amplitude of the rho**3 flexion (spin 3)


def draw_visit_psf(rng: np.random.Generator, n_visits: int) -> VisitPSF:
    """Random PSF fields of ``n_visits`` visits."""
    seeing = MEDIAN_SEEING_ARCSEC * np.exp(rng.normal(0.0, 0.12, n_visits))
    return VisitPSF(
        seeing=np.clip(seeing, 0.42, 1.0),
        flux_ratio=np.clip(rng.normal(0.25, 0.03, n_visits), 0.1, 0.4),
        tilt=rng.normal(0.0, 0.015, (n_visits, 2)),
        e0=rng.normal(0.0, 0.012, (n_visits, 2)),
        astig=rng.normal(0.025, 0.008, n_visits),
        coma=rng.normal(0.0, 0.02, n_visits),
        trefoil=rng.normal(0.0, 0.01, n_visits),
    )


def psf_on_focal_plane(
    psf: VisitPSF, visit: np.ndarray, u: np.ndarray, v: np.ndarray, pa_deg: np.ndarray
) -> dict[str, np.ndarray]:
    """PSF parameters at focal-plane points of visits ``visit``, on the patch axes.

    ``fwhm`` is in arcsec here. Arrays broadcast against each other.
    """
    rho_u, rho_v = u / FOCAL_RADIUS_PX, v / FOCAL_RADIUS_PX
    rho2 = rho_u**2 + rho_v**2
    phi = np.arctan2(rho_v, rho_u)
    tilt = psf.tilt[visit]
    fwhm = psf.seeing[visit] * (
        1.0 + 0.06 * rho2 + tilt[..., 0] * rho_u + tilt[..., 1] * rho_v
    )
    ell = (psf.e0[visit, ..., 0] + 1j * psf.e0[visit, ..., 1]) + psf.astig[
        visit
    ] * rho2 * np.exp(2j * phi)
    flex_f = psf.coma[visit] * np.sqrt(rho2) * np.exp(1j * phi)
    flex_g = psf.trefoil[visit] * rho2**1.5 * np.exp(3j * phi)
    theta = np.radians(pa_deg)
    ell = ell * np.exp(2j * theta)
    flex_f = flex_f * np.exp(1j * theta)
    flex_g = flex_g * np.exp(3j * theta)
    return {
        "flux_ratio": psf.flux_ratio[visit] * (1.0 + 0.05 * rho2),
        "fwhm": fwhm,
        "e1": ell.real, "e2": ell.imag,
        "f1": flex_f.real, "f2": flex_f.imag,
        "g1": flex_g.real, "g2": flex_g.imag,
    }  # fmt: skip


def grid_points(geom: PatchGeometry) -> tuple[np.ndarray, np.ndarray]:
    """FITS-convention positions of ufig's PSF grid (0.5 + 100 k), 2-D arrays."""
    gx = np.arange(0, geom.nx, GRID_STEP) + 0.5
    gy = np.arange(0, geom.ny, GRID_STEP) + 0.5
    return np.meshgrid(gx, gy)


@dataclass
class CoaddPSF:
    """Coadd PSF on the grid (2-D arrays, FWHM in arcsec) and per-visit values."""

    x: np.ndarray
    y: np.ndarray
    params: dict[str, np.ndarray]
    covered: np.ndarray  # bool: at least one visit covers the grid point
    visit_fwhm: np.ndarray  # (n_visits, ny_g, nx_g) arcsec, NaN where not covered


def coadd_psf(
    plan: VisitPlan, psf: VisitPSF, geom: PatchGeometry, visits_used: np.ndarray
) -> CoaddPSF:
    """Combine the visits in ``visits_used`` (plan rows) into the coadd PSF grid."""
    x, y = grid_points(geom)
    u, v, hit = focal_positions(plan, geom, x.ravel(), y.ravel())
    rows = np.arange(plan.n_visits)[:, None]
    per_visit = psf_on_focal_plane(psf, rows, u, v, plan.pa_deg[:, None])
    used = np.isin(rows, visits_used)
    weight = np.where((hit >= 0) & used, 1.0 / plan.sky_sigma[:, None] ** 2, 0.0)
    w_sum = weight.sum(axis=0)
    covered = w_sum > 0
    safe = np.where(covered, w_sum, 1.0)
    f2 = per_visit["fwhm"] ** 2
    wf2 = (weight * f2).sum(axis=0)
    params = {"fwhm": np.sqrt(wf2 / safe)}
    params["flux_ratio"] = (weight * per_visit["flux_ratio"]).sum(axis=0) / safe
    for name in ("e1", "e2", "f1", "f2", "g1", "g2"):
        params[name] = (weight * f2 * per_visit[name]).sum(axis=0) / np.where(
            covered, wf2, 1.0
        )
    for name, values in params.items():
        fill = np.median(values[covered]) if covered.any() else 0.0
        params[name] = np.where(covered, values, fill).reshape(x.shape)
    visit_fwhm = np.where(weight > 0, per_visit["fwhm"], np.nan).reshape(
        (plan.n_visits, *x.shape)
    )
    return CoaddPSF(x, y, params, covered.reshape(x.shape), visit_fwhm)


def grid_psf_table(cpsf: CoaddPSF) -> np.ndarray:
    """The ``grid_psf`` structured array ufig reads (FWHM in pixels)."""
    names = ["X_IMAGE", "Y_IMAGE"] + [f"psf_{p}_ipt" for p in PSF_PARAMS]
    table = np.empty(cpsf.x.size, dtype=[(n, np.float32) for n in names])
    table["X_IMAGE"], table["Y_IMAGE"] = cpsf.x.ravel(), cpsf.y.ravel()
    for p in PSF_PARAMS:
        values = cpsf.params[p].ravel()
        table[f"psf_{p}_ipt"] = values / PIXEL_SCALE_ARCSEC if p == "fwhm" else values
    return table


def write_psf_truth(
    path: Path, cpsf: CoaddPSF, plan: VisitPlan, psf: VisitPSF, visits_used
) -> Path:
    """Write the ufig grid_psf file plus per-visit truth, atomically."""
    per_visit = np.empty(
        plan.n_visits,
        dtype=[
            ("visit", np.int64), ("used", bool), ("pa_deg", np.float64),
            ("seeing_arcsec", np.float64), ("flux_ratio", np.float64),
            ("tilt_u", np.float64), ("tilt_v", np.float64), ("e0_1", np.float64),
            ("e0_2", np.float64), ("astig", np.float64), ("coma", np.float64),
            ("trefoil", np.float64), ("weight", np.float64),
        ],
    )  # fmt: skip
    per_visit["visit"], per_visit["pa_deg"] = plan.visit, plan.pa_deg
    per_visit["used"] = np.isin(np.arange(plan.n_visits), visits_used)
    per_visit["seeing_arcsec"], per_visit["flux_ratio"] = psf.seeing, psf.flux_ratio
    per_visit["tilt_u"], per_visit["tilt_v"] = psf.tilt[:, 0], psf.tilt[:, 1]
    per_visit["e0_1"], per_visit["e0_2"] = psf.e0[:, 0], psf.e0[:, 1]
    per_visit["astig"], per_visit["coma"] = psf.astig, psf.coma
    per_visit["trefoil"], per_visit["weight"] = psf.trefoil, plan.sky_sigma**-2.0
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        fh.create_dataset("grid_psf", data=grid_psf_table(cpsf))
        for name, values in cpsf.params.items():
            unit = "arcsec" if name == "fwhm" else ""
            ds = fh.create_dataset(f"grid/{name}", data=values.astype(np.float32))
            ds.attrs["unit"] = unit
        fh.create_dataset("grid/x_fits", data=cpsf.x[0])
        fh.create_dataset("grid/y_fits", data=cpsf.y[:, 0])
        fh.create_dataset("grid/covered", data=cpsf.covered)
        fh.create_dataset("visits", data=per_visit)
        fh.create_dataset(
            "visit_fwhm_arcsec", data=cpsf.visit_fwhm.astype(np.float32),
            compression="gzip",
        )  # fmt: skip
        fh.attrs["psf_beta"] = PSF_BETAS
        fh.attrs["description"] = (
            "DEMO tile (simulated): true coadd PSF on ufig's grid and per-visit fields"
        )
    return path


def moffat_peak_fraction(fwhm_px: float, flux_ratio: float) -> float:
    """Fraction of a point source's flux in its central pixel (two Moffats)."""
    peak = 0.0
    for beta, frac in zip(PSF_BETAS, (flux_ratio, 1.0 - flux_ratio), strict=True):
        alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        # flux in a 1 x 1 pixel ~ flux in the circle of equal area (r = 1/sqrt(pi))
        peak += frac * (1.0 - (1.0 + 1.0 / (math.pi * alpha**2)) ** (1.0 - beta))
    return peak
