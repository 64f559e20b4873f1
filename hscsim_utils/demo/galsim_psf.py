"""True PSF of the independent DEMO tile (simulated): optics x atmosphere per visit.

Every visit of the SIMULATED observation has its own PSF, built with GalSim and
not with the two-Moffat family of the simulation:

- atmosphere: a Kolmogorov profile (``galsim.Kolmogorov``) at 770 nm, the
  effective wavelength of HSC-i2 (Kawanomoto et al. 2018, PASJ 70, 66), whose
  FWHM is drawn per visit from a log-normal distribution (UltraDeep preset:
  median 0.60", sigma(ln) 0.15, clipped to 0.35-1.2"), so that with the optics
  the measured median is ~0.6", the median i-band seeing of HSC-SSP (Aihara et
  al. 2018b, PASJ 70, S8; 2022, PASJ 74, 247). A small shear per visit (rms 0.01
  per component) stands for tracking errors and wind shake;
- optics: ``galsim.OpticalPSF`` of the 8.2 m Subaru primary (Iye et al. 2004,
  PASJ 56, 381) with a central obscuration of 0.2 (assumed, the shadow of the
  prime-focus unit) and Zernike aberrations in waves at 770 nm that vary smoothly
  over the focal plane, rho = r / 16000 px (the field radius, 0.75 deg), phi the
  focal-plane angle:
  defocus = d_v + 0.10 rho^2 (field curvature), astigmatism (Z6 + i Z5) =
  a_v + 0.15 rho^2 e^{2 i phi}, coma (Z8 + i Z7) = c_v + 0.12 rho e^{i phi},
  spherical 0.02; the per-visit offsets d_v (rms 0.08), a_v and c_v (rms 0.04
  per component) stand for focus and alignment drifts. This adds ~0.2" in
  quadrature and ellipticities of a few per cent, the size of the PSF anisotropy
  of Subaru prime-focus cameras (~2%, Miyazaki et al. 2002, PASJ 54, 833);
- the optical profile is built in the focal-plane frame and mapped onto the
  patch axes with the local Jacobian of the visit's focal-plane projection
  (:meth:`hscsim_utils.demo.observation.VisitPlan.focal_matrix`).

The far wings of bright stars (drawn by :mod:`hscsim_utils.demo.galsim_scene`)
continue the core with the Kolmogorov slope r^(-11/3) and add the scattered-light
aureole I ~ 1 / (r^2 + r0^2) (King 1971, PASP 83, 199; Racine 1996, PASP 108, 699;
1% of the flux within 120", r0 = 1", assumed) and four diffraction spikes of the
spider vanes (0.5% of the flux, intensity ~ s^-2 along a spike, assumed). Subaru
is alt-azimuth and the spider is fixed to the telescope while the HSC rotator
keeps the sky orientation, so the spikes of a visit turn on the sky with its
parallactic angle (from its hour angle, :func:`hscsim_utils.demo.
galsim_observation.hour_angle_geometry`): a coadd of visits at different hour
angles shows several faint spike pairs rather than one sharp cross.

The true coadd PSF at a point is the sum of the PSFs of the visits covering it,
each weighted by its coadd weight (inverse sky variance), normalised: the visit
PSFs are drawn (no pixel response, 4x oversampled, 33 x 33 coadd pixels) at the
corners and mid-points of the tile (2 x 2 anchors up to 1500 pixels, 3 x 3
above) and interpolated bilinearly between them; the PSF field varies on scales
of the focal plane (0.75 deg), much larger than a patch (0.2 deg).

Measurement of a PSF image (one method everywhere: truth grid, frame seeing):

- e1, e2: adaptive moments (``galsim.hsm.FindAdaptiveMom``) of the oversampled,
  pixel-free image; ``observed_shape`` gives the distortion
  (Ixx - Iyy, 2 Ixy) / (Ixx + Iyy), the second-moment ellipticity of ufig's
  ``psf_e1``/``psf_e2``;
- FWHM: the diameter of the circle with the area of the half-maximum isophote,
  FWHM = 2 sqrt(A / pi): the peak from a quadratic fit to the 3 x 3 samples
  around the maximum, the isophote traced with ``contourpy`` on the 4x
  oversampled image (0.042" samples) and its area from the shoelace formula;
- flux ratio: the least-squares weight of the beta = 2 component of a two-Moffat
  model (betas 2 and 5, the FWHM and shape fixed to the measured ones, centred
  on the adaptive-moment centroid) fitted to the image: the parameter
  ``psf_flux_ratio`` of the truth grid. The flexions of ufig's model (f1, f2, g1,
  g2) are not defined for these PSFs and are not part of the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import contourpy
import galsim
import numpy as np

from hscsim_utils.demo.observation import VisitPlan
from hscsim_utils.hsc.skymap import PIXEL_SCALE_ARCSEC, PatchGeometry

__all__ = [
    "ATM_WING_SLOPE", "AUREOLE_CORE_ARCSEC", "AUREOLE_FRACTION",
    "AUREOLE_MAX_ARCSEC", "AnchorLattice", "DIAMETER_M", "FOCAL_RADIUS_PX",
    "GRID_STEP", "OBSCURATION", "OS_PIX", "OS_SCALE", "OVERSAMPLING", "PSFJob",
    "PSFShape", "PSF_BETAS", "SPIKE_FRACTION", "STAMP_PIX", "SeeingModel",
    "VisitPSFs", "WAVELENGTH_NM", "aberrations", "anchor_lattice",
    "binned_spike_angles", "coadd_images", "draw_oversampled", "draw_psf_job",
    "draw_visit_psfs", "effective_psf", "focal_jacobian", "grid_points",
    "half_max_fwhm", "kolmogorov_tail", "measure_psf", "psf_jobs", "visit_profile",
    "wing_image",
]  # fmt: skip

WAVELENGTH_NM = 770.0
DIAMETER_M = 8.2
OBSCURATION = 0.2
FOCAL_RADIUS_PX = 16000.0
OVERSAMPLING = 4
STAMP_PIX = 33  # coadd pixels per side of a PSF image (5.5")
OS_PIX = OVERSAMPLING * STAMP_PIX
OS_SCALE = PIXEL_SCALE_ARCSEC / OVERSAMPLING
GRID_STEP = 100  # ufig's PSF grid: FITS positions 0.5 + 100 k
PSF_BETAS = (2.0, 5.0)

FIELD_DEFOCUS = 0.10
FIELD_ASTIG = 0.15
FIELD_COMA = 0.12
SPHERICAL = 0.02
VISIT_DEFOCUS_RMS = 0.08
VISIT_ASTIG_RMS = 0.04
VISIT_COMA_RMS = 0.04
ATM_SHEAR_RMS = 0.01

ATM_WING_SLOPE = -11.0 / 3.0
AUREOLE_FRACTION = 0.01
AUREOLE_CORE_ARCSEC = 1.0
AUREOLE_MAX_ARCSEC = 120.0
SPIKE_FRACTION = 0.005
SPIKE_ANGLE_BIN_DEG = 2.5


@dataclass(frozen=True)
class SeeingModel:
    """Log-normal atmospheric FWHM (arcsec at 770 nm), clipped to [lo, hi]."""

    median_arcsec: float
    sigma_ln: float
    lo: float = 0.35
    hi: float = 1.2

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` atmospheric FWHMs."""
        fwhm = self.median_arcsec * np.exp(rng.normal(0.0, self.sigma_ln, n))
        return np.clip(fwhm, self.lo, self.hi)


@dataclass(frozen=True)
class VisitPSFs:
    """Per-visit PSF parameters (aberrations in waves, focal-plane frame)."""

    atm_fwhm: np.ndarray  # Kolmogorov FWHM, arcsec
    atm_shear: np.ndarray  # (n, 2) reduced shear g1, g2 on the patch axes
    defocus: np.ndarray  # per-visit focus offset
    astig: np.ndarray  # (n, 2): Z6, Z5 offsets
    coma: np.ndarray  # (n, 2): Z8, Z7 offsets
    spike_angle_deg: np.ndarray  # spider orientation on the patch axes

    @property
    def n_visits(self) -> int:
        return len(self.atm_fwhm)


def draw_visit_psfs(
    rng: np.random.Generator,
    n_visits: int,
    seeing: SeeingModel,
    parallactic_deg: np.ndarray | None = None,
) -> VisitPSFs:
    """Random PSF parameters of ``n_visits`` visits; the spikes follow the
    visits' parallactic angles (random when not given)."""
    if parallactic_deg is None:
        parallactic_deg = rng.uniform(0.0, 90.0, n_visits)
    return VisitPSFs(
        atm_fwhm=seeing.draw(rng, n_visits),
        atm_shear=rng.normal(0.0, ATM_SHEAR_RMS, (n_visits, 2)),
        defocus=rng.normal(0.0, VISIT_DEFOCUS_RMS, n_visits),
        astig=rng.normal(0.0, VISIT_ASTIG_RMS, (n_visits, 2)),
        coma=rng.normal(0.0, VISIT_COMA_RMS, (n_visits, 2)),
        spike_angle_deg=np.asarray(parallactic_deg, dtype=float) % 90.0,
    )


def aberrations(psfs: VisitPSFs, visit: int, u: float, v: float) -> dict:
    """Zernike coefficients (waves) of ``visit`` at focal-plane pixel (u, v)."""
    rho_u, rho_v = u / FOCAL_RADIUS_PX, v / FOCAL_RADIUS_PX
    rho2 = rho_u**2 + rho_v**2
    phi = math.atan2(rho_v, rho_u)
    astig = complex(*psfs.astig[visit]) + FIELD_ASTIG * rho2 * np.exp(2j * phi)
    coma = complex(*psfs.coma[visit]) + FIELD_COMA * math.sqrt(rho2) * np.exp(1j * phi)
    return {
        "defocus": float(psfs.defocus[visit] + FIELD_DEFOCUS * rho2),
        "astig1": float(astig.imag), "astig2": float(astig.real),
        "coma1": float(coma.imag), "coma2": float(coma.real),
        "spher": SPHERICAL,
    }  # fmt: skip


def focal_jacobian(
    plan: VisitPlan, geom: PatchGeometry, visit: int, x: float, y: float
) -> tuple[tuple[float, float], np.ndarray]:
    """Focal-plane position (u, v) of the FITS patch position (x, y) in ``visit``
    and the Jacobian d(u, v) / d(x, y) there (the projection is projective)."""
    g = plan.focal_matrix(visit, geom)
    h = g @ np.array([x, y, 1.0])
    u, v = h[0] / h[2], h[1] / h[2]
    jac = (g[:2, :2] - np.outer([u, v], g[2, :2])) / h[2]
    return (float(u), float(v)), jac


_APERTURE: dict[str, galsim.Aperture] = {}


def _aperture() -> galsim.Aperture:
    """The Subaru pupil, built once per process (Nyquist-sampled, no padding:
    the images are 4x coarser than the diffraction scale)."""
    if "subaru" not in _APERTURE:
        _APERTURE["subaru"] = galsim.Aperture(
            diam=DIAMETER_M, lam=WAVELENGTH_NM, obscuration=OBSCURATION,
            oversampling=1.0, pad_factor=1.0,
        )  # fmt: skip
    return _APERTURE["subaru"]


def visit_profile(
    psfs: VisitPSFs, visit: int, uv: tuple[float, float], jac: np.ndarray
) -> galsim.GSObject:
    """Kolmogorov x OpticalPSF of ``visit`` at focal-plane point ``uv``, on the
    patch axes (``jac`` = d(u, v) / d(x, y) there)."""
    atm = galsim.Kolmogorov(fwhm=float(psfs.atm_fwhm[visit]))
    atm = atm.shear(
        g1=float(psfs.atm_shear[visit, 0]), g2=float(psfs.atm_shear[visit, 1])
    )
    optics = galsim.OpticalPSF(
        lam=WAVELENGTH_NM, diam=DIAMETER_M, aper=_aperture(),
        suppress_warning=True, **aberrations(psfs, visit, *uv),
    )  # fmt: skip
    # profile(x) = optics_focal(J x): transform with the inverse Jacobian
    inv = np.linalg.inv(jac)
    optics = optics.transform(inv[0, 0], inv[0, 1], inv[1, 0], inv[1, 1])
    return galsim.Convolve(atm, optics)


def draw_oversampled(profile: galsim.GSObject) -> np.ndarray:
    """Pixel-free image, 4x oversampled, centred between the four central
    samples (so that 4 x 4 blocks are coadd pixels), normalised to unit sum."""
    image = profile.drawImage(nx=OS_PIX, ny=OS_PIX, scale=OS_SCALE, method="no_pixel")
    arr = image.array.astype(np.float64)
    return arr / arr.sum()


def effective_psf(os_image: np.ndarray) -> np.ndarray:
    """The PSF with the pixel response on the coadd grid (33 x 33): sums of 4 x 4
    oversampled samples (midpoint rule for the pixel integral), centred."""
    n = os_image.shape[-1] // OVERSAMPLING
    shape = (*os_image.shape[:-2], n, OVERSAMPLING, n, OVERSAMPLING)
    return os_image.reshape(shape).sum(axis=(-1, -3))


@dataclass(frozen=True)
class PSFJob:
    """PSFs of one visit to draw at focal-plane points with their Jacobians."""

    visit: int
    uv: np.ndarray  # (k, 2)
    jac: np.ndarray  # (k, 2, 2)


def psf_jobs(
    plan: VisitPlan,
    geom: PatchGeometry,
    visits: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
) -> list[PSFJob]:
    """Jobs drawing every visit in ``visits`` at the FITS patch points (x, y)."""
    jobs = []
    for visit in visits:
        uv, jac = zip(
            *(
                focal_jacobian(plan, geom, int(visit), xi, yi)
                for xi, yi in zip(x, y, strict=True)
            ),
            strict=True,
        )
        jobs.append(PSFJob(int(visit), np.array(uv), np.array(jac)))
    return jobs


def draw_psf_job(psfs: VisitPSFs, job: PSFJob, measure: bool = False):
    """Oversampled images (k, 132, 132) float32 of a job, or with ``measure`` the
    measured FWHM (arcsec) of each."""
    out = []
    for uv, jac in zip(job.uv, job.jac, strict=True):
        image = draw_oversampled(visit_profile(psfs, job.visit, tuple(uv), jac))
        out.append(half_max_fwhm(image) if measure else image.astype(np.float32))
    return np.array(out)


def grid_points(geom: PatchGeometry) -> tuple[np.ndarray, np.ndarray]:
    """FITS positions of ufig's PSF grid (0.5 + 100 k) as 2-D arrays."""
    gx = np.arange(0, geom.nx, GRID_STEP) + 0.5
    gy = np.arange(0, geom.ny, GRID_STEP) + 0.5
    return np.meshgrid(gx, gy)


@dataclass(frozen=True)
class AnchorLattice:
    """Points (FITS) where the visit PSFs are drawn; bilinear in between."""

    x: np.ndarray
    y: np.ndarray

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """All anchors, x fastest (the order of the anchor axis of the images)."""
        gx, gy = np.meshgrid(self.x, self.y)
        return gx.ravel(), gy.ravel()

    def weights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n, n_anchors) bilinear weights of points (x, y)."""
        wx = _hat_weights(self.x, np.asarray(x, float))
        wy = _hat_weights(self.y, np.asarray(y, float))
        return (wy[:, :, None] * wx[:, None, :]).reshape(len(wx), -1)


def _hat_weights(nodes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights (n, len(nodes)), clamped."""
    t = np.clip(t, nodes[0], nodes[-1])
    k = np.clip(np.searchsorted(nodes, t, side="right") - 1, 0, len(nodes) - 2)
    frac = (t - nodes[k]) / (nodes[k + 1] - nodes[k])
    w = np.zeros((len(t), len(nodes)))
    w[np.arange(len(t)), k] = 1.0 - frac
    w[np.arange(len(t)), k + 1] += frac
    return w


def anchor_lattice(geom: PatchGeometry) -> AnchorLattice:
    """2 anchors per axis up to 1500 pixels, 3 above (corners and mid-points)."""

    def axis(n: int) -> np.ndarray:
        return np.linspace(0.5, n + 0.5, 2 if n <= 1500 else 3)

    return AnchorLattice(axis(geom.nx), axis(geom.ny))


def coadd_images(
    images: np.ndarray,
    lattice: AnchorLattice,
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    chunk: int = 256,
) -> np.ndarray:
    """Coadd PSF images (n, 132, 132) at FITS points (x, y).

    ``images`` (n_visits, n_anchors, 132, 132) are the visit PSFs at the anchors,
    ``weights`` (n, n_visits) the coadd weight of each visit at each point (0
    where it does not cover it); rows of zero weight give zero images.
    """
    flat = images.reshape(images.shape[0] * images.shape[1], -1)
    anchor_w = lattice.weights(x, y)
    out = np.empty((len(x), flat.shape[1]), np.float32)
    for s in range(0, len(x), chunk):
        w = weights[s : s + chunk]
        total = w.sum(axis=1, keepdims=True)
        coef = (w / np.where(total > 0, total, 1.0))[:, :, None] * anchor_w[
            s : s + chunk, None, :
        ]
        out[s : s + chunk] = coef.reshape(len(w), -1).astype(np.float32) @ flat
    return out.reshape(len(x), OS_PIX, OS_PIX)


# ------------------------------------------------------------------ measurement


@dataclass(frozen=True)
class PSFShape:
    """Measured FWHM (arcsec), distortion e1, e2 and two-Moffat flux ratio."""

    fwhm_arcsec: float
    e1: float
    e2: float
    flux_ratio: float


def _peak(image: np.ndarray) -> float:
    """Maximum of a quadratic surface fitted to the 3 x 3 samples at the peak."""
    j, i = np.unravel_index(np.argmax(image), image.shape)
    j = min(max(j, 1), image.shape[0] - 2)
    i = min(max(i, 1), image.shape[1] - 2)
    yy, xx = np.mgrid[-1:2, -1:2]
    design = np.stack(
        [np.ones(9), xx.ravel(), yy.ravel(), xx.ravel() ** 2, (xx * yy).ravel(),
         yy.ravel() ** 2], axis=1,
    )  # fmt: skip
    c = np.linalg.lstsq(
        design, image[j - 1 : j + 2, i - 1 : i + 2].ravel(), rcond=None
    )[0]
    hess = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
    try:
        d = np.linalg.solve(hess, -c[1:3])
    except np.linalg.LinAlgError:
        return float(image[j, i])
    if np.abs(d).max() > 1.0:
        return float(image[j, i])
    return float(c[0] + c[1] * d[0] + c[2] * d[1] + c[3] * d[0] ** 2
                 + c[4] * d[0] * d[1] + c[5] * d[1] ** 2)  # fmt: skip


def half_max_fwhm(image: np.ndarray, scale: float = OS_SCALE) -> float:
    """FWHM = 2 sqrt(A / pi) of the half-maximum isophote (area A), arcsec."""
    half = 0.5 * _peak(image)
    lines = contourpy.contour_generator(z=image).lines(half)
    j, i = np.unravel_index(np.argmax(image), image.shape)
    best = 0.0
    for line in lines:
        if len(line) < 3:
            continue
        xs, ys = line[:, 0], line[:, 1]
        area = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
        if area > best and xs.min() <= i <= xs.max() and ys.min() <= j <= ys.max():
            best = area
    return 2.0 * math.sqrt(best / math.pi) * scale


def _moffat(r2: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    prof = (1.0 + r2 / alpha**2) ** (-beta)
    return prof / prof.sum()


def measure_psf(image: np.ndarray, scale: float = OS_SCALE) -> PSFShape:
    """FWHM, e1, e2 and flux ratio of a pixel-free PSF image (module docstring)."""
    img = galsim.Image(np.ascontiguousarray(image, dtype=np.float64), scale=scale)
    mom = galsim.hsm.FindAdaptiveMom(img, strict=False)
    if mom.moments_status != 0:
        return PSFShape(float("nan"), float("nan"), float("nan"), float("nan"))
    e1, e2 = float(mom.observed_shape.e1), float(mom.observed_shape.e2)
    fwhm = half_max_fwhm(image, scale)
    # two Moffats sharing the FWHM, sheared by (e1, e2) (area-preserving)
    yy, xx = np.indices(image.shape, dtype=np.float64)
    dx = (xx + 1 - mom.moments_centroid.x) * scale
    dy = (yy + 1 - mom.moments_centroid.y) * scale
    e2sum = e1 * e1 + e2 * e2
    r2 = ((1 - e1) * dx**2 - 2 * e2 * dx * dy + (1 + e1) * dy**2) / math.sqrt(
        max(1.0 - e2sum, 1e-6)
    )
    m2, m5 = _moffat(r2, fwhm, PSF_BETAS[0]), _moffat(r2, fwhm, PSF_BETAS[1])
    data = image / image.sum()
    diff = m2 - m5
    ratio = float(np.sum((data - m5) * diff) / np.sum(diff * diff))
    return PSFShape(fwhm, e1, e2, min(max(ratio, 0.0), 1.0))


# ------------------------------------------------------------------ far wings


def wing_image(
    flux: float,
    offset: tuple[float, float],
    half: int,
    fwhm_arcsec: float,
    spike_angles_deg: np.ndarray,
    spike_weights: np.ndarray,
) -> np.ndarray:
    """Aureole and diffraction spikes of a star, (2 half + 1)^2 pixels (ADU).

    The star sits at ``offset`` (pixels) from the stamp's central pixel; each
    spike angle (one per visit, or binned) carries its share of the spike flux.
    """
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    dx, dy = xx - np.float32(offset[0]), yy - np.float32(offset[1])
    r2 = dx * dx + dy * dy
    r0 = AUREOLE_CORE_ARCSEC / PIXEL_SCALE_ARCSEC
    rmax = AUREOLE_MAX_ARCSEC / PIXEL_SCALE_ARCSEC
    norm = flux * AUREOLE_FRACTION / (math.pi * math.log1p(rmax**2 / r0**2))
    out = np.where(r2 < rmax**2, norm / (r2 + r0**2), 0.0).astype(np.float32)
    sigma_t = fwhm_arcsec / PIXEL_SCALE_ARCSEC / 2.3548
    s0 = fwhm_arcsec / PIXEL_SCALE_ARCSEC
    smax = float(half)
    per_spike = flux * SPIKE_FRACTION / 4.0 * s0 / math.atan(smax / s0)
    total_w = float(np.sum(spike_weights))
    for angle, weight in zip(spike_angles_deg, spike_weights, strict=True):
        if weight <= 0:
            continue
        for k in range(4):
            theta = math.radians(angle + 90.0 * k)
            s = dx * math.cos(theta) + dy * math.sin(theta)
            t = -dx * math.sin(theta) + dy * math.cos(theta)
            near = (s > 0) & (np.abs(t) < 5 * sigma_t)
            amp = per_spike * weight / total_w / (math.sqrt(2 * math.pi) * sigma_t)
            out[near] += (
                amp * np.exp(-0.5 * (t[near] / sigma_t) ** 2) / (s[near] ** 2 + s0**2)
            )
    return out


def binned_spike_angles(
    angles_deg: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Spike angles (mod 90 deg) binned to 2.5 deg, with their summed weights."""
    bins = np.floor((angles_deg % 90.0) / SPIKE_ANGLE_BIN_DEG).astype(int)
    summed = np.bincount(bins, weights=weights, minlength=int(90 / SPIKE_ANGLE_BIN_DEG))
    keep = summed > 0
    centres = (np.arange(len(summed)) + 0.5) * SPIKE_ANGLE_BIN_DEG
    return centres[keep], summed[keep]


def kolmogorov_tail(
    epsf: np.ndarray, offset: tuple[float, float], half: int
) -> np.ndarray:
    """Continuation of a unit-flux core stamp (33 x 33) outside it with the
    Kolmogorov slope r^(-11/3), matched to the stamp's mean at 11-16 pixels;
    zero inside the core stamp. Shape (2 half + 1)^2."""
    c = epsf.shape[0] // 2
    yy, xx = np.indices(epsf.shape)
    r = np.hypot(xx - c, yy - c)
    ring = (r >= 11) & (r <= 16)
    amp = float(np.mean(epsf[ring] * r[ring] ** (-ATM_WING_SLOPE)))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    dx, dy = xx - np.float32(offset[0]), yy - np.float32(offset[1])
    rr = np.hypot(dx, dy)
    inside = (np.abs(xx) <= c) & (np.abs(yy) <= c)
    tail = amp * np.maximum(rr, 1.0) ** ATM_WING_SLOPE
    return np.where(inside, 0.0, tail).astype(np.float32)
