"""The simulated HSC observation behind the DEMO tile: patch WCS, focal plane, visits.

Everything here describes a SIMULATED observation that imitates an HSC-SSP
UltraDeep i-band data set; nothing is real HSC data.

- Sky geometry: the HSC "rings" sky map (120 rings, TAN tracts of 9 x 9 patches of
  4000 x 4000 pixels plus a 100-pixel border, 0.168"/pixel); tract centres follow the
  rings layout (tract 9813 lands on COSMOS at RA 150.25, Dec 2.23, as in PDR3).
- Focal plane: the 104 science CCDs of HSC, 2048 x 4176 pixels each, at the
  offsets and rotations of the HSC camera geometry (obs_subaru hsc/camera), so the
  gaps of ~12" (between columns) and ~53" (between rows) quoted by NAOJ for HSC
  are reproduced; at position angle 0 the CCD long axis points along Dec. Optical
  distortion is neglected: a CCD maps onto the tangent plane of its visit with the
  coadd pixel scale, so every CCD footprint is a convex quadrilateral on the sky
  (gnomonic projections map great circles to straight lines) and the four frame
  corners describe it exactly.
- Visits: 150 i-band exposures of 270 s in circular dither sequences of five
  (steps of 120"-288"; NAOJ recommends at least 120") at a few rotator angles,
  around a UD pointing placed 0.16 deg north-east of the SXDS centre so that the
  patch reaches the edge of the footprint (the UFig-rendered DEMO; the GalSim
  DEMO's presets choose their own number of visits and pointing). Each CCD has
  four amplifiers with gains near the nominal 3.0 e-/ADU of HSC (NAOJ instrument page).

Coverage truth is computed here in each visit's focal plane: patch pixels map to
focal-plane coordinates by an exact projective transformation, and a pixel centre
counts when its focal-plane position lies on a CCD (solved row by row). Nothing
rasterises the RA/Dec frame corners, so comparing these maps with a rasteriser of
the frame table is a real closure test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.skymap import (
    PIXEL_SCALE_ARCSEC,
    PIXEL_SCALE_RAD,
    PatchGeometry,
    patch_geometry,
    ray_to_radec,
    tangent_basis,
)

CCD_NX, CCD_NY = 2048, 4176
N_AMPS = 4
N_BIT_WORDS = 5
EXPTIME_S = 270.0

#: HSC science CCDs (detector id = position in the list): focal-plane centre
#: (x, y) in pixels and rotation in degrees (HSC camera geometry, obs_subaru).
_HSC_CCDS = """
    14861 -6629 180, 14861 -2151 180, 14862 2324 180, 14861 6802 180, 12737 -11104 180,
    12737 -6628 180, 12738 -2152 180, 12741 2323 180, 12738 6802 180, 12738 11278 180,
    10614 -11103 180, 10616 -6629 180, 10614 -2148 180, 10614 2325 180, 10618 6800 180,
    10615 11277 180, 8489 -10882 0, 8490 -6402 0, 8491 -1928 0, 8493 2324 180,
    8491 6802 180, 8495 11275 180, 6366 -15353 0, 6370 -10879 0, 6370 -6402 0,
    6369 -1925 0, 6370 2324 180, 6371 6801 180, 6373 11276 180, 6369 15754 180,
    4246 -15354 0, 4244 -10880 0, 4243 -6403 0, 4248 -1926 0, 4246 2324 180,
    4245 6801 180, 4247 11276 180, 4246 15754 180, 2122 -15354 0, 2120 -10877 0,
    2122 -6402 0, 2123 -1924 0, 2125 2324 180, 2124 6802 180, 2124 11278 180,
    2124 15754 180, -2 -15354 0, -3 -10878 0, -1 -6403 0, 0 -1926 0,
    1 2325 180, 2 6801 180, -0 11280 180, 1 15753 180, -2124 -15355 0,
    -2125 -10878 0, -2123 -6401 0, -2124 -1927 0, -2122 2325 180, -2122 6803 180,
    -2120 11279 180, -2122 15754 180, -4245 -15354 0, -4248 -10878 0, -4247 -6400 0,
    -4246 -1925 0, -4245 2325 180, -4245 6804 180, -4244 11277 180, -4244 15754 180,
    -6373 -15353 0, -6370 -10878 0, -6368 -6401 0, -6371 -1927 0, -6368 2326 180,
    -6368 6804 180, -6369 11280 180, -6367 15755 180, -8491 -10880 0, -8491 -6400 0,
    -8492 -1924 0, -8493 2328 180, -8492 6802 180, -8491 11278 180, -10614 -10878 0,
    -10615 -6401 0, -10616 -1922 0, -10618 2550 0, -10616 7028 0, -10614 11504 0,
    -12738 -10876 0, -12739 -6401 0, -12738 -1923 0, -12740 2552 0, -12737 7030 0,
    -12737 11504 0, -14862 -6401 0, -14862 -1923 0, -14863 2553 0, -14863 7031 0,
    9588 -14289 270, 9592 14690 270, -9592 -14290 90, -9588 14689 90,
"""

#: Centre of the simulated UD pointing: 0.16 deg north-east of the SXDS field centre
#: (02:18:00 -05:00:00), so that the demo patch reaches the edge of the simulated UD
#: footprint (full UD depth in most of it, an exposure gradient and a NO_DATA corner).
UD_SXDS_CENTER = (34.58, -4.86)
#: Pointing of the GalSim DEMO's ultra-deep preset: 0.2 deg north-east of the
#: centre of patch 8523-4,2 (34.2149, -5.5799), so that the patch lies inside the
#: fully covered UD footprint with a gentle exposure gradient that falls towards
#: its south-west corner, as in the exposure map of the real UD-COSMOS patch
#: shown by the tutorial (48,000-64,500 s, docs/HSC_DUD/output_15_1.png).
UD_PATCH_POINTING = (34.3570, -5.4385)
DEMO_TRACT = 8523
DEMO_PATCH = (4, 2)
N_VISITS = 150
DITHER_PER_SEQUENCE = 5
FIRST_VISIT = 7288  # visit numbers start above it, even and increasing


def hsc_ccds() -> np.ndarray:
    """(104, 3): focal-plane centre x, y (pixels) and rotation (deg) of each CCD."""
    return np.array(_HSC_CCDS.replace(",", " ").split(), dtype=float).reshape(-1, 3)


@dataclass(frozen=True)
class VisitPlan:
    """Pointing, rotator angle, sky noise and amplifier gains of every visit."""

    visit: np.ndarray  # archive visit ids (even integers, increasing)
    ra: np.ndarray  # boresight (deg)
    dec: np.ndarray
    pa_deg: np.ndarray  # rotation of the focal plane on the sky
    sky_sigma: np.ndarray  # single-visit background rms in coadd ADU (zp 27)
    ccd_gains: np.ndarray  # (104, 4) e-/ADU, fixed per amplifier

    @property
    def n_visits(self) -> int:
        return len(self.visit)

    def focal_matrix(self, i: int, geom: PatchGeometry) -> np.ndarray:
        """3x3 G: focal-plane (u, v) = G[:2] @ p / G[2] @ p, p = (x, y, 1) 1-based."""
        c, s = (
            math.cos(math.radians(self.pa_deg[i])),
            math.sin(math.radians(self.pa_deg[i])),
        )
        rot = np.array([[-c, s, 0.0], [s, c, 0.0], [0.0, 0.0, PIXEL_SCALE_RAD]])
        rot /= PIXEL_SCALE_RAD
        return rot @ tangent_basis(self.ra[i], self.dec[i]) @ geom.pixel_to_ray()

    def focal_to_radec(
        self, i: int, u: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """RA, Dec of focal-plane positions (pixels) of visit ``i``."""
        c, s = (
            math.cos(math.radians(self.pa_deg[i])),
            math.sin(math.radians(self.pa_deg[i])),
        )
        big_x = PIXEL_SCALE_RAD * (-c * u + s * v)
        big_y = PIXEL_SCALE_RAD * (s * u + c * v)
        east, north, centre = tangent_basis(self.ra[i], self.dec[i])
        ray = centre + big_x[..., None] * east + big_y[..., None] * north
        return ray_to_radec(ray)


def single_visit_sigma(depth_5sigma: float, n_visits: float) -> float:
    """Single-visit pixel rms (zp 27) for a 5-sigma 2" aperture depth of n visits."""
    aperture_px = math.pi * (1.0 / PIXEL_SCALE_ARCSEC) ** 2
    sigma_aperture = 10 ** (-0.4 * (depth_5sigma - 27.0)) / 5.0
    return sigma_aperture / math.sqrt(aperture_px) * math.sqrt(n_visits)


#: UD i band as designed (Aihara et al. 2018a, PASJ 70 S4): 840 min to 27.4 mag
#: (5 sigma, 2" aperture); PDR3 (Aihara et al. 2022) has ~80% of the planned time.
UD_I_PLANNED_MIN = 840.0
UD_I_PLANNED_DEPTH = 27.4
SINGLE_VISIT_SIGMA = single_visit_sigma(
    UD_I_PLANNED_DEPTH, UD_I_PLANNED_MIN * 60.0 / EXPTIME_S
)


def plan_visits(
    rng: np.random.Generator,
    n_visits: int = N_VISITS,
    pointing: tuple[float, float] = UD_SXDS_CENTER,
    sky_sigma: float = SINGLE_VISIT_SIGMA,
    first_visit: int = FIRST_VISIT,
) -> VisitPlan:
    """Dithered visits around ``pointing`` (RA, Dec in deg): circular 5-point
    dithers at a few position angles; single-visit background rms ``sky_sigma``
    (coadd ADU, the i band's by default) within a log-normal scatter of 0.12."""
    n_seq = -(-n_visits // DITHER_PER_SEQUENCE)
    radius = rng.uniform(0.033, 0.08, n_seq)  # deg: 120" (NAOJ minimum) .. 288"
    phase = rng.uniform(0.0, 2 * np.pi, n_seq)
    pa_seq = rng.choice([0.0, 90.0, 180.0, 270.0], n_seq, p=[0.55, 0.15, 0.15, 0.15])
    k = np.arange(n_visits)
    seq, pos = k // DITHER_PER_SEQUENCE, k % DITHER_PER_SEQUENCE
    angle = phase[seq] + 2 * np.pi * pos / DITHER_PER_SEQUENCE
    cos_dec = math.cos(math.radians(pointing[1]))
    ra = pointing[0] + radius[seq] * np.cos(angle) / cos_dec
    dec = pointing[1] + radius[seq] * np.sin(angle)
    visit = first_visit + 2 * np.cumsum(rng.integers(1, 40, n_visits))
    sky = sky_sigma * np.exp(rng.normal(0.0, 0.12, n_visits))
    ccd_gain = rng.normal(3.05, 0.12, len(hsc_ccds()))
    amp_gain = ccd_gain[:, None] * (1.0 + rng.normal(0.0, 0.015, (len(ccd_gain), 4)))
    return VisitPlan(
        visit.astype(np.int64), ra, dec, pa_seq[seq], sky, np.round(amp_gain, 4)
    )


def ccd_local_corners() -> np.ndarray:
    """(4, 2) CCD corners (ll, ul, ur, lr) relative to the CCD centre, unrotated."""
    hx, hy = CCD_NX / 2.0, CCD_NY / 2.0
    return np.array([[-hx, -hy], [-hx, hy], [hx, hy], [hx, -hy]])


def ccd_focal_corners() -> np.ndarray:
    """(104, 4, 2) focal-plane corners (ll, ul, ur, lr) of every CCD."""
    ccds = hsc_ccds()
    ang = np.radians(ccds[:, 2])
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    loc = ccd_local_corners()
    u = ccds[:, :1] + c * loc[:, 0] - s * loc[:, 1]
    v = ccds[:, 1:2] + s * loc[:, 0] + c * loc[:, 1]
    return np.stack([u, v], axis=-1)


@dataclass(frozen=True)
class FrameTable:
    """CCD frames overlapping the patch: visit row, CCD and sky corners."""

    visit_row: np.ndarray  # index into the VisitPlan
    ccd: np.ndarray
    corners_radec: np.ndarray  # (n, 4, 2): ll, ul, ur, lr corners, RA/Dec (deg)
    corners_pix: np.ndarray  # (n, 4, 2): the same in patch pixels (1-based)


def _convex_overlaps_rect(poly: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Separating-axis test of convex quads (n, 4, 2) against a rectangle."""
    overlap = (poly[..., 0].max(-1) >= lo[0]) & (poly[..., 0].min(-1) <= hi[0])
    overlap &= (poly[..., 1].max(-1) >= lo[1]) & (poly[..., 1].min(-1) <= hi[1])
    rect = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]], [hi[0], lo[1]]])
    for k in range(4):
        edge = poly[:, (k + 1) % 4] - poly[:, k]
        normal = np.stack([-edge[:, 1], edge[:, 0]], axis=-1)
        p_poly = np.einsum("nkd,nd->nk", poly, normal)
        p_rect = np.einsum("kd,nd->nk", rect, normal)
        overlap &= (p_poly.max(-1) >= p_rect.min(-1)) & (
            p_poly.min(-1) <= p_rect.max(-1)
        )
    return overlap


def _project(g: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply homography g (3x3) to points (..., 2)."""
    hom = pts @ g[:, :2].T + g[:, 2]
    return hom[..., :2] / hom[..., 2:]


def overlapping_frames(plan: VisitPlan, geom: PatchGeometry) -> FrameTable:
    """All (visit, CCD) frames whose footprint overlaps the patch, visit-ordered."""
    focal = ccd_focal_corners()
    lo, hi = np.array([0.5, 0.5]), np.array([geom.nx + 0.5, geom.ny + 0.5])
    rows, ccds, pix, sky = [], [], [], []
    for i in range(plan.n_visits):
        g_inv = np.linalg.inv(plan.focal_matrix(i, geom))
        corners = _project(g_inv, focal)
        hit = np.nonzero(_convex_overlaps_rect(corners, lo, hi))[0]
        if hit.size == 0:
            continue
        ra, dec = plan.focal_to_radec(i, focal[hit, :, 0], focal[hit, :, 1])
        rows.append(np.full(hit.size, i))
        ccds.append(hit)
        pix.append(corners[hit])
        sky.append(np.stack([ra, dec], axis=-1))
    if not rows:
        raise InputError("size", "no CCD frame of the demo visits overlaps the patch")
    return FrameTable(
        np.concatenate(rows), np.concatenate(ccds), np.concatenate(sky),
        np.concatenate(pix),
    )  # fmt: skip


@dataclass
class CoverageMaps:
    """Per-pixel truth of the coadd inputs, shape (NY, NX)."""

    expt: np.ndarray  # uint32, seconds
    nexp: np.ndarray  # uint16, number of frames
    gain_sum: np.ndarray  # float32, sum of frame-mean gains (tutorial's map_gain)
    gain_amp_sum: np.ndarray  # float32, sum of the covering amplifier's gain
    invvar: np.ndarray  # float64, sum of 1 / sky_sigma**2 (inverse-variance weights)
    bits: np.ndarray  # uint64 (NY, NX, 5): visit index v sets bit v % 64 of word v//64
    visit_ids: np.ndarray  # visit id of each visit index (sorted)


@nb.njit(cache=True)
def _centre_range(a, b, lo, hi, strict):
    """Narrow the 0-based range [lo, hi] of pixels with centre x = i + 1 to
    a * x + b >= 0 (or > 0 if strict)."""
    if a == 0.0:
        ok = b > 0.0 if strict else b >= 0.0
        return (lo, hi) if ok else (1, 0)
    t = -b / a - 1.0  # threshold on the 0-based index i
    if a > 0.0:
        first = math.floor(t) + 1 if strict else math.ceil(t)
        return max(lo, first), hi
    last = math.ceil(t) - 1 if strict else math.floor(t)
    return lo, min(hi, last)


@nb.njit(parallel=True, cache=True)
def _accumulate_frames(
    g, ccd_xy, rot, bbox, gains, word, bit, inv_var, out_nexp, out_gain,
    out_gain_amp, out_invvar, out_bits,
):  # fmt: skip
    """Add every frame to the maps, row by row.

    A pixel centre (x, y) lies on amplifier k of a CCD when its focal-plane
    position, CCD-local (lx, ly), has 512 k <= lx < 512 (k + 1) and
    0 <= ly < 4176. Along a row these are linear inequalities in x (the map is
    projective with a positive denominator), so the covered centres form one
    range per amplifier; sums and bit sums are accumulated with difference arrays
    (a visit covers a pixel at most once, so adding 2**bit equals setting it).
    """
    ny, nx = out_nexp.shape
    amp_width = CCD_NX / N_AMPS
    for y in nb.prange(ny):
        yf = y + 1.0
        d_nexp = np.zeros(nx + 1, np.int64)
        d_gain = np.zeros(nx + 1)
        d_amp = np.zeros(nx + 1)
        d_ivar = np.zeros(nx + 1)
        d_bits = np.zeros((nx + 1, N_BIT_WORDS), np.uint64)
        for k in range(g.shape[0]):
            if y < bbox[k, 2] or y >= bbox[k, 3]:
                continue
            c = (1.0, 0.0, -1.0, 0.0)[rot[k]]
            s = (0.0, 1.0, 0.0, -1.0)[rot[k]]
            den_a, den_b = g[k, 2, 0], g[k, 2, 1] * yf + g[k, 2, 2]
            du_a = g[k, 0, 0] - ccd_xy[k, 0] * den_a
            du_b = g[k, 0, 1] * yf + g[k, 0, 2] - ccd_xy[k, 0] * den_b
            dv_a = g[k, 1, 0] - ccd_xy[k, 1] * den_a
            dv_b = g[k, 1, 1] * yf + g[k, 1, 2] - ccd_xy[k, 1] * den_b
            lx_a, lx_b = c * du_a + s * dv_a, c * du_b + s * dv_b
            ly_a, ly_b = -s * du_a + c * dv_a, -s * du_b + c * dv_b
            lx_a += CCD_NX / 2.0 * den_a
            lx_b += CCD_NX / 2.0 * den_b
            ly_a += CCD_NY / 2.0 * den_a
            ly_b += CCD_NY / 2.0 * den_b
            lo, hi = _centre_range(ly_a, ly_b, bbox[k, 0], bbox[k, 1] - 1, False)
            lo, hi = _centre_range(
                CCD_NY * den_a - ly_a, CCD_NY * den_b - ly_b, lo, hi, True
            )
            mask = np.uint64(1) << np.uint64(bit[k])
            gain_mean = (gains[k, 0] + gains[k, 1] + gains[k, 2] + gains[k, 3]) / 4
            for amp in range(N_AMPS):
                edge0, edge1 = amp * amp_width, (amp + 1) * amp_width
                a0, a1 = _centre_range(
                    lx_a - edge0 * den_a, lx_b - edge0 * den_b, lo, hi, False
                )
                a0, a1 = _centre_range(
                    edge1 * den_a - lx_a, edge1 * den_b - lx_b, a0, a1, True
                )
                if a0 > a1:
                    continue
                d_nexp[a0] += 1
                d_nexp[a1 + 1] -= 1
                d_gain[a0] += gain_mean
                d_gain[a1 + 1] -= gain_mean
                d_amp[a0] += gains[k, amp]
                d_amp[a1 + 1] -= gains[k, amp]
                d_ivar[a0] += inv_var[k]
                d_ivar[a1 + 1] -= inv_var[k]
                d_bits[a0, word[k]] += mask
                d_bits[a1 + 1, word[k]] -= mask
        n, gsum, asum, ivar = 0, 0.0, 0.0, 0.0
        for x in range(nx):
            n += d_nexp[x]
            gsum += d_gain[x]
            asum += d_amp[x]
            ivar += d_ivar[x]
            out_nexp[y, x] = n
            out_gain[y, x] = gsum if n > 0 else 0.0
            out_gain_amp[y, x] = asum if n > 0 else 0.0
            out_invvar[y, x] = ivar if n > 0 else 0.0
        for w in range(N_BIT_WORDS):
            acc = np.uint64(0)
            for x in range(nx):
                acc += d_bits[x, w]
                out_bits[y, x, w] = acc


def coverage_maps(
    plan: VisitPlan, geom: PatchGeometry, frames: FrameTable
) -> CoverageMaps:
    """Truth maps from each visit's focal-plane position of every pixel centre."""
    shape = (geom.ny, geom.nx)
    visit_ids = np.unique(plan.visit[frames.visit_row])
    if len(visit_ids) > 64 * N_BIT_WORDS:
        raise ValueError(f"visits: {len(visit_ids)} visits exceed 320 bits")
    ccds = hsc_ccds()
    index = np.searchsorted(visit_ids, plan.visit[frames.visit_row])
    g = np.stack([plan.focal_matrix(i, geom) for i in frames.visit_row])
    nexp = np.zeros(shape, np.uint16)
    gain, gain_amp = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    invvar = np.zeros(shape, np.float64)
    bits = np.zeros((*shape, N_BIT_WORDS), np.uint64)
    _accumulate_frames(
        g, ccds[frames.ccd, :2].copy(),
        np.round(ccds[frames.ccd, 2] / 90.0).astype(np.int64) % 4,
        _frame_bboxes(frames.corners_pix, geom), plan.ccd_gains[frames.ccd],
        (index // 64).astype(np.int64), (index % 64).astype(np.int64),
        1.0 / plan.sky_sigma[frames.visit_row] ** 2,
        nexp, gain, gain_amp, invvar, bits,
    )  # fmt: skip
    expt = nexp.astype(np.uint32) * np.uint32(EXPTIME_S)
    return CoverageMaps(expt, nexp, gain, gain_amp, invvar, bits, visit_ids)


def _frame_bboxes(corners_pix: np.ndarray, geom: PatchGeometry) -> np.ndarray:
    """(n, 4) int64 [x0, x1, y0, y1) 0-based pixel ranges around each footprint."""
    lo = np.floor(corners_pix.min(axis=1)).astype(np.int64) - 2
    hi = np.ceil(corners_pix.max(axis=1)).astype(np.int64) + 1
    x0, y0 = np.clip(lo[:, 0], 0, geom.nx), np.clip(lo[:, 1], 0, geom.ny)
    x1, y1 = np.clip(hi[:, 0], 0, geom.nx), np.clip(hi[:, 1], 0, geom.ny)
    return np.stack([x0, x1, y0, y1], axis=1)


def focal_positions(
    plan: VisitPlan, geom: PatchGeometry, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Focal-plane u, v (n_visits, n) of 1-based patch points and the CCD hit (-1)."""
    pts = np.stack([x, y], axis=-1).astype(float)
    ccds = hsc_ccds()
    rot = np.radians(ccds[:, 2])
    u = np.empty((plan.n_visits, len(x)))
    v = np.empty_like(u)
    hit = np.full(u.shape, -1, np.int64)
    for i in range(plan.n_visits):
        uv = _project(plan.focal_matrix(i, geom), pts)
        u[i], v[i] = uv[:, 0], uv[:, 1]
        du = uv[:, None, 0] - ccds[None, :, 0]
        dv = uv[:, None, 1] - ccds[None, :, 1]
        lx = np.cos(rot) * du + np.sin(rot) * dv + CCD_NX / 2.0
        ly = -np.sin(rot) * du + np.cos(rot) * dv + CCD_NY / 2.0
        inside = (lx >= 0) & (lx < CCD_NX) & (ly >= 0) & (ly < CCD_NY)
        any_in = inside.any(axis=1)
        hit[i, any_in] = np.argmax(inside[any_in], axis=1)
    return u, v, hit


def demo_geometry(
    size: tuple[int, int], centre: tuple[float, float] | None = None
) -> PatchGeometry:
    """Geometry of ``size`` pixels of the demo patch (tract 8523, patch 4,2)."""
    return patch_geometry(size, DEMO_TRACT, DEMO_PATCH, centre)
