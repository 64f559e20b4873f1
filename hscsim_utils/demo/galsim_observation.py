"""Photons, detector and coadd of the independent DEMO tile (simulated).

The noise, the VARIANCE plane, the saturation and the effective gain of the
SIMULATED coadd follow from a model of the individual visits:

- photometry: a visit of 270 s collects K = 270 s x 10^(0.4 (ZP_e - 27))
  electrons per coadd ADU (zero point 27 AB), ZP_e = 28.5 the HSC-i2 magnitude
  giving 1 e-/s (NAOJ, HSC filters and sensitivities page), minus an extinction
  of 0.05 mag per airmass above one (Buton et al. 2013, A&A 549, A8: ~0.04-0.05
  at 770 nm on Maunakea) and a cloud loss |N(0, 0.03)| mag: K ~ 1000 e-/ADU
  (the i band; the other bands' ZP_e and extinction are in
  :mod:`hscsim_utils.demo.galsim_bands`).
  Airmass and parallactic angle follow from an hour angle drawn in +-2 h at
  Maunakea (latitude 19.83 deg);
- sky and read-out: the single-visit background rms sigma_v of the visit plan
  (:mod:`hscsim_utils.demo.observation`, in coadd ADU) fixes the sky level
  B = (sigma_v K)^2 - r^2 - g^2 / 12 electrons per pixel (~3.6e4 e-, i.e. ~19.3
  mag/arcsec^2), r ~ N(4.5, 0.3) e- the read noise (Miyazaki et al. 2018, PASJ 70,
  S1), g the mean amplifier gain of the visit's CCDs (e-/ADU) whose digitisation
  adds g^2 / 12;
- a visit pixel counts N ~ Poisson(K S + B) + N(0, r^2 + g^2 / 12) electrons (S
  the source signal in coadd ADU); the calibrated, sky-subtracted visit pixel is
  (N - B) / K; saturation: charge above the full well of 150,000 e- (NAOJ HSC
  instrument pages) spills along the row (x, the read-out direction taken for the
  coadd) to both sides until it is absorbed;
- coadd: visits are resampled onto the patch grid with a normalised Lanczos-3
  kernel and averaged with weights w = 1 / sigma_v^2 (the coverage truth of
  :func:`hscsim_utils.demo.observation.coverage_maps`); SAT is set where the
  saturated visits carry at least 10% of the weight (hscPipe's
  ``maskPropagationThresholds = {"SAT": 0.1}``).

Scheme (exact where it matters, cheap where it does not):

- the source signal S of the coadd is rendered ONCE with the true coadd PSF (the
  weighted sum of the visit PSFs, :mod:`hscsim_utils.demo.galsim_psf`); Lanczos-3
  interpolation of the well-sampled signal (FWHM ~3.6 pixels) is the identity to
  <1e-3, so it is not applied to S;
- saturation and bleeding are computed per visit: K S + B in electrons on the
  affected rows, bled, clipped, converted back and averaged with the coadd
  weights (the coadd PSF stands for each visit's PSF there);
- the noise is drawn per GROUP of visits. Every visit's pixel grid is, on the
  patch, the integer lattice of native coordinates u~ = c + A (p - p0)
  (A ~ identity: the focal plane has the coadd pixel scale and the rotator sits
  at multiples of 90 deg; the small rotation, ~5e-4 rad, from the different
  tangent points is kept). Visits whose sub-pixel phase c mod 1 falls in the
  same of 4 x 4 bins form a group, whose grid is the weight-averaged affine map
  of its members. A group pixel gets the weighted sum of its members' noise,
  Z = sum_v w_v (N_v - mean) / K_v over the members covering it, drawn as one
  scaled Poisson variate a (Poisson(L) - L) whose a, L match the mean
  sum_v w_v (K_v S + B_v) / K_v and the variance sum_v w_v^2 (K_v S + B_v) / K_v^2
  of the members' photons (exact for one visit) plus their read-out and
  digitisation variance (<0.1% of the sky's, carried by the same variate); each
  native row has its own seeded stream, so results do not depend on the number
  of threads. Z is resampled with Lanczos-3 onto the patch (separably: along y
  per native column, then along x; the grids' rotation moves a tap by <0.005
  pixel), the groups are summed and divided by the total weight. The per-pixel
  variance, its Lanczos reduction (a factor 0.62-1 depending on the sub-pixel
  phases), the correlation of neighbouring pixels and the photon noise of the
  sources therefore come from the visits. The VARIANCE plane is the exact
  variance of this process (squared kernel weights applied to the groups'
  variances), source photons included, as hscPipe's variance after its
  rescaling to the measured noise. Within a group the members' phases differ by
  <1/8 pixel at the tile centre (up to ~0.3 pixel at the corners of a full
  patch), which changes the pixel variance by a few per cent at most (tested
  against a per-visit brute-force coadd in ``tests/test_independent_demo.py``);
- the effective gain, electrons per coadd ADU of the source photon noise, is
  G = W^2 / sum_v c_v w_v^2 / K_v (W = sum_v c_v w_v): ~1e5 e-/ADU for 100-150
  visits, not the mean amplifier gain times the number of exposures (~450).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from hscsim_utils.demo.observation import (
    EXPTIME_S,
    CoverageMaps,
    FrameTable,
    VisitPlan,
)
from hscsim_utils.hsc.files import ZERO_POINT_AB
from hscsim_utils.hsc.skymap import PatchGeometry

__all__ = [
    "EXTINCTION_PER_AIRMASS", "FULL_WELL_E", "LANCZOS_ORDER", "NoiseResult",
    "PHASE_BINS", "READ_NOISE_E", "SAT_PROPAGATION", "VisitGrids", "VisitGroup",
    "VisitPhotometry", "ZP_ELECTRONS", "coadd_noise", "draw_visit_photometry",
    "effective_gain", "group_visits", "hour_angle_geometry", "saturate",
    "single_visit_groups", "visit_grids", "visit_word_bit",
]  # fmt: skip

ZP_ELECTRONS = 28.5
MAUNAKEA_LAT_DEG = 19.8253
HOUR_ANGLE_MAX_H = 2.0
EXTINCTION_PER_AIRMASS = 0.05
READ_NOISE_E = 4.5
FULL_WELL_E = 150_000.0
SAT_PROPAGATION = 0.1
LANCZOS_ORDER = 3
PHASE_BINS = 4


@dataclass(frozen=True)
class VisitPhotometry:
    """Electrons per coadd ADU, sky, read noise and gain of every visit."""

    k_e_per_adu: np.ndarray
    sky_e: np.ndarray  # sky electrons per pixel
    read_noise_e: np.ndarray
    gain: np.ndarray  # mean amplifier gain (e-/ADU) of the visit's CCDs
    airmass: np.ndarray
    zp_e: np.ndarray  # magnitude for 1 e-/s
    weight: np.ndarray  # coadd weight 1 / sigma_v^2 (coadd ADU^-2)

    @property
    def read_var_e(self) -> np.ndarray:
        """Read-out variance plus digitisation, e-^2."""
        return self.read_noise_e**2 + self.gain**2 / 12.0


def hour_angle_geometry(
    hour_angle_h: np.ndarray, dec_deg: np.ndarray, lat_deg: float = MAUNAKEA_LAT_DEG
) -> tuple[np.ndarray, np.ndarray]:
    """Airmass (sec z) and parallactic angle (deg) at hour angles (hours)."""
    h = np.radians(15.0 * np.asarray(hour_angle_h, dtype=float))
    d, phi = np.radians(dec_deg), math.radians(lat_deg)
    cos_z = math.sin(phi) * np.sin(d) + math.cos(phi) * np.cos(d) * np.cos(h)
    q = np.arctan2(np.sin(h), math.tan(phi) * np.cos(d) - np.sin(d) * np.cos(h))
    return 1.0 / cos_z, np.degrees(q)


def draw_visit_photometry(
    rng: np.random.Generator,
    plan: VisitPlan,
    frames: FrameTable,
    airmass: np.ndarray,
    zp_electrons: float = ZP_ELECTRONS,
    extinction: float = EXTINCTION_PER_AIRMASS,
) -> VisitPhotometry:
    """Photometry of every visit of ``plan``; sky from the plan's noise.

    ``zp_electrons`` (1 e-/s at airmass 1) and ``extinction`` (mag per airmass)
    are the i band's by default (:mod:`hscsim_utils.demo.galsim_bands` has
    every band's)."""
    n = plan.n_visits
    zp_e = zp_electrons - extinction * (airmass - 1.0)
    zp_e = zp_e - np.abs(rng.normal(0.0, 0.03, n))
    k = EXPTIME_S * 10 ** (0.4 * (zp_e - ZERO_POINT_AB))
    read = rng.normal(READ_NOISE_E, 0.3, n)
    gain = np.full(n, float(np.mean(plan.ccd_gains)))
    for v in np.unique(frames.visit_row):
        gain[v] = float(np.mean(plan.ccd_gains[frames.ccd[frames.visit_row == v]]))
    sky = (plan.sky_sigma * k) ** 2 - read**2 - gain**2 / 12.0
    return VisitPhotometry(k, sky, read, gain, airmass, zp_e, plan.sky_sigma**-2.0)


# ----------------------------------------------------------------- visit grids


@dataclass(frozen=True)
class VisitGrids:
    """Native pixel grids on the patch: u~ = c + A (p - p0), lattice at integers.

    p are FITS (1-based) patch positions, p0 the tile centre.
    """

    c: np.ndarray  # (n, 2)
    a: np.ndarray  # (n, 2, 2)
    p0: np.ndarray  # (2,)


def visit_grids(plan: VisitPlan, geom: PatchGeometry, visits: np.ndarray) -> VisitGrids:
    """Affine native grids of ``visits`` (plan rows) linearised at the tile centre.

    CCD pixel centres lie at focal-plane positions (Z + 1/2)^2 for every CCD (CCD
    centres at integer positions, even CCD sizes); the signed permutation P
    closest to the focal-plane Jacobian J turns them into a lattice aligned with
    the patch axes: u~ = P^-1 ((u, v) - 1/2).
    """
    p0 = np.array([(geom.nx + 1) / 2.0, (geom.ny + 1) / 2.0])
    c = np.zeros((plan.n_visits, 2))
    a = np.tile(np.eye(2), (plan.n_visits, 1, 1))
    for v in visits:
        g = plan.focal_matrix(int(v), geom)
        h = g @ np.array([p0[0], p0[1], 1.0])
        uv = h[:2] / h[2]
        jac = (g[:2, :2] - np.outer(uv, g[2, :2])) / h[2]
        perm = np.round(jac)
        if abs(abs(np.linalg.det(perm)) - 1.0) > 1e-9:
            raise ValueError(f"visit row {v}: focal plane not aligned with the patch")
        inv = np.linalg.inv(perm)
        c[v] = inv @ (uv - 0.5)
        a[v] = inv @ jac
    return VisitGrids(c, a, p0)


@dataclass(frozen=True)
class VisitGroup:
    """Visits (plan rows) sharing one native grid u~ = c + A (p - p0)."""

    members: np.ndarray
    c: np.ndarray
    a: np.ndarray


def group_visits(
    grids: VisitGrids, weight: np.ndarray, visits: np.ndarray, n_bins: int = PHASE_BINS
) -> list[VisitGroup]:
    """Groups of visits whose sub-pixel phases at the tile centre share a bin of
    ``n_bins`` x ``n_bins``; each group's grid is the weighted mean of its
    members' (phases unwrapped around the bin centre)."""
    visits = np.asarray(visits)
    phase = grids.c[visits] - np.floor(grids.c[visits])
    bins = np.minimum((phase * n_bins).astype(int), n_bins - 1)
    label = bins[:, 0] * n_bins + bins[:, 1]
    groups = []
    for lab in np.unique(label):
        members = visits[label == lab]
        centre = (bins[label == lab][0] + 0.5) / n_bins
        ph = phase[label == lab]
        unwrapped = centre + ((ph - centre + 0.5) % 1.0 - 0.5)
        w = weight[members][:, None]
        c = (w * unwrapped).sum(axis=0) / w.sum()
        a = (w[:, :, None] * grids.a[members]).sum(axis=0) / w.sum()
        groups.append(VisitGroup(members, c, a))
    return groups


def single_visit_groups(grids: VisitGrids, visits: np.ndarray) -> list[VisitGroup]:
    """One group per visit: the brute-force process (every visit on its own grid)."""
    return [
        VisitGroup(np.array([v]), grids.c[v] - np.floor(grids.c[v]), grids.a[v])
        for v in visits
    ]


def visit_word_bit(
    cov: CoverageMaps, plan: VisitPlan, visits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Word and bit of each visit (plan rows) in the coverage bitmaps."""
    index = np.searchsorted(cov.visit_ids, plan.visit[visits])
    if not np.array_equal(cov.visit_ids[np.minimum(index, len(cov.visit_ids) - 1)],
                          plan.visit[visits]):  # fmt: skip
        raise ValueError("visits without coverage bits")
    return (index // 64).astype(np.int64), (index % 64).astype(np.int64)


# --------------------------------------------------------------------- kernels


@nb.njit(cache=True, inline="always")
def _lanczos(x: float) -> float:
    if x == 0.0:
        return 1.0
    if abs(x) >= LANCZOS_ORDER:
        return 0.0
    px = math.pi * x
    return LANCZOS_ORDER * math.sin(px) * math.sin(px / LANCZOS_ORDER) / (px * px)


@nb.njit(cache=True)
def _taps(t: float, out: np.ndarray) -> int:
    """Normalised Lanczos-3 weights of the 6 lattice points around ``t``; returns
    the first lattice index."""
    i0 = math.floor(t) - LANCZOS_ORDER + 1
    s = 0.0
    for k in range(2 * LANCZOS_ORDER):
        out[k] = _lanczos(t - (i0 + k))
        s += out[k]
    for k in range(2 * LANCZOS_ORDER):
        out[k] /= s
    return i0


@nb.njit(parallel=True, cache=True)
def _group_noise(
    signal, bits, word, bit, wk, sky, read_var, weight, ainv, c, p0, n0x, n0y,
    seed, noise, var_tot, var_sky,
):  # fmt: skip
    """Photon and read-out noise of one group on its native grid, and its
    variances (module docstring). Each native row has its own random stream
    (seeded from ``seed`` and the row), so the result does not depend on the
    number of threads."""
    ny, nx = signal.shape
    nny, nnx = noise.shape
    for jy in nb.prange(nny):
        # numba: a legacy stream per thread, seeded per row (no Generator here)
        np.random.seed((seed + jy * 1000003) % 4294967296)  # noqa: NPY002
        for jx in range(nnx):
            ux = n0x + jx - c[0]
            uy = n0y + jy - c[1]
            px = p0[0] + ainv[0, 0] * ux + ainv[0, 1] * uy  # FITS, 1-based
            py = p0[1] + ainv[1, 0] * ux + ainv[1, 1] * uy
            ix = min(max(int(math.floor(px - 0.5)), 0), nx - 1)
            iy = min(max(int(math.floor(py - 0.5)), 0), ny - 1)
            # bilinear signal at (px, py)
            fx, fy = px - 1.0, py - 1.0
            x0 = min(max(int(math.floor(fx)), 0), max(nx - 2, 0))
            y0 = min(max(int(math.floor(fy)), 0), max(ny - 2, 0))
            x1, y1 = min(x0 + 1, nx - 1), min(y0 + 1, ny - 1)
            tx = min(max(fx - x0, 0.0), 1.0)
            ty = min(max(fy - y0, 0.0), 1.0)
            s = (1 - ty) * ((1 - tx) * signal[y0, x0] + tx * signal[y0, x1])
            s += ty * ((1 - tx) * signal[y1, x0] + tx * signal[y1, x1])
            s = max(s, 0.0)
            mean = 0.0
            var = 0.0
            rvar = 0.0
            vsky = 0.0
            for m in range(word.shape[0]):
                if (bits[iy, ix, word[m]] >> np.uint64(bit[m])) & np.uint64(1):
                    lam_e = s * weight[m] / wk[m] + sky[m]  # K S + B, K = w / wk
                    mean += wk[m] * lam_e
                    var += wk[m] * wk[m] * lam_e
                    rvar += wk[m] * wk[m] * read_var[m]
                    vsky += wk[m] * wk[m] * sky[m]
            value = 0.0
            if mean > 0.0:
                # a (Poisson(lam) - lam) with a = total variance / mean: the
                # read-out part (<0.1% of the sky's) rides on the same variate
                total = var + rvar
                lam = mean * mean / total
                count = np.random.poisson(lam)  # noqa: NPY002 (numba, seeded above)
                value = total / mean * (count - lam)
            noise[jy, jx] = value
            var_tot[jy, jx] = var + rvar
            var_sky[jy, jx] = vsky + rvar


#: Normalised Lanczos-3 weights tabulated at 2048 sub-pixel phases.
N_PHASES = 2048


def _weight_table() -> np.ndarray:
    table = np.empty((N_PHASES, 2 * LANCZOS_ORDER))
    for k in range(N_PHASES):
        _taps(k / N_PHASES, table[k])
    return table


_WEIGHTS = _weight_table()


@nb.njit(cache=True, inline="always")
def _phase(t: float) -> tuple[int, int]:
    """First lattice index and table row of coordinate ``t``."""
    i0 = math.floor(t)
    k = int((t - i0) * N_PHASES + 0.5)
    if k == N_PHASES:
        k = 0
        i0 += 1
    return i0 - LANCZOS_ORDER + 1, k


@nb.njit(parallel=True, cache=True)
def _resample_add(
    noise, var_tot, var_sky, a, c, p0, n0x, n0y, table, out, out_var, out_vsky
):  # fmt: skip
    """Add the Lanczos-3 resampled group noise and its variances to the patch.

    Separable: per output row, every native column is first interpolated along
    y at the row's position (evaluated where that column's taps are used; the
    grids are rotated by <1e-3 rad, so this moves a tap by <0.005 pixel), then
    the row is interpolated along x. Variances take the squared weights.
    """
    ny, nx = out.shape
    nny, nnx = noise.shape
    taps = 2 * LANCZOS_ORDER
    for y in nb.prange(ny):
        py = y + 1.0 - p0[1]
        col = np.zeros(nnx)
        col_v = np.zeros(nnx)
        col_s = np.zeros(nnx)
        for jx in range(nnx):
            px = (jx + n0x - c[0] - a[0, 1] * py) / a[0, 0]
            iy0, ky = _phase(c[1] + a[1, 0] * px + a[1, 1] * py - n0y)
            acc = 0.0
            acc_v = 0.0
            acc_s = 0.0
            for j in range(taps):
                jy = iy0 + j
                if 0 <= jy < nny:
                    w = table[ky, j]
                    acc += w * noise[jy, jx]
                    acc_v += w * w * var_tot[jy, jx]
                    acc_s += w * w * var_sky[jy, jx]
            col[jx] = acc
            col_v[jx] = acc_v
            col_s[jx] = acc_s
        for x in range(nx):
            px = x + 1.0 - p0[0]
            ix0, kx = _phase(c[0] + a[0, 0] * px + a[0, 1] * py - n0x)
            acc = 0.0
            acc_v = 0.0
            acc_s = 0.0
            for i in range(taps):
                jx = ix0 + i
                if 0 <= jx < nnx:
                    w = table[kx, i]
                    acc += w * col[jx]
                    acc_v += w * w * col_v[jx]
                    acc_s += w * w * col_s[jx]
            out[y, x] += acc
            out_var[y, x] += acc_v
            out_vsky[y, x] += acc_s


@dataclass
class NoiseResult:
    """Coadd noise (ADU), its variance and the sky-only variance (ADU^2)."""

    noise: np.ndarray
    variance: np.ndarray
    variance_sky: np.ndarray
    n_groups: int


def coadd_noise(
    signal: np.ndarray,
    cov: CoverageMaps,
    plan: VisitPlan,
    phot: VisitPhotometry,
    groups: list[VisitGroup],
    grids: VisitGrids,
    rng: np.random.Generator,
) -> NoiseResult:
    """Noise of the weighted Lanczos-3 coadd of the visit groups (NaN-free; zero
    where no visit covers a pixel)."""
    ny, nx = signal.shape
    num = np.zeros((ny, nx), np.float32)
    var = np.zeros((ny, nx), np.float32)
    vsky = np.zeros((ny, nx), np.float32)
    sig = np.ascontiguousarray(signal, dtype=np.float64)
    streams = rng.spawn(len(groups))
    margin = LANCZOS_ORDER + 2
    for group, stream in zip(groups, streams, strict=True):
        word, bit = visit_word_bit(cov, plan, group.members)
        corners = np.array(
            [[0.5, 0.5], [nx + 0.5, 0.5], [0.5, ny + 0.5], [nx + 0.5, ny + 0.5]]
        )
        native = group.c + (corners - grids.p0) @ group.a.T
        n0 = np.floor(native.min(axis=0)).astype(int) - margin
        n1 = np.ceil(native.max(axis=0)).astype(int) + margin
        shape = (int(n1[1] - n0[1] + 1), int(n1[0] - n0[0] + 1))
        noise, var_t, var_s = (np.empty(shape, np.float32) for _ in range(3))
        m = group.members
        _group_noise(
            sig, cov.bits, word, bit, phot.weight[m] / phot.k_e_per_adu[m],
            phot.sky_e[m], phot.read_var_e[m], phot.weight[m],
            np.linalg.inv(group.a), group.c, grids.p0, int(n0[0]), int(n0[1]),
            int(stream.integers(0, 2**32)), noise, var_t, var_s,
        )  # fmt: skip
        _resample_add(
            noise, var_t, var_s, group.a, group.c, grids.p0, int(n0[0]), int(n0[1]),
            _WEIGHTS, num, var, vsky,
        )  # fmt: skip
    ok = cov.invvar > 0
    inv = np.where(ok, 1.0 / np.where(ok, cov.invvar, 1.0), 0.0).astype(np.float32)
    num *= inv
    inv *= inv
    var *= inv
    vsky *= inv
    return NoiseResult(num, var, vsky, len(groups))


@nb.njit(parallel=True, cache=True)
def _effective_gain(bits, word_of, bit_of, w2_over_k, invvar, out):
    ny, nx = invvar.shape
    for y in nb.prange(ny):
        for x in range(nx):
            if invvar[y, x] <= 0:
                out[y, x] = 0.0
                continue
            h = 0.0
            for m in range(word_of.shape[0]):
                if (bits[y, x, word_of[m]] >> np.uint64(bit_of[m])) & np.uint64(1):
                    h += w2_over_k[m]
            out[y, x] = invvar[y, x] ** 2 / h if h > 0 else 0.0


def effective_gain(
    cov: CoverageMaps, plan: VisitPlan, phot: VisitPhotometry, visits: np.ndarray
) -> np.ndarray:
    """Electrons per coadd ADU of the source photon noise, per pixel (0: no data)."""
    word, bit = visit_word_bit(cov, plan, visits)
    out = np.zeros(cov.invvar.shape, np.float32)
    w2k = phot.weight[visits] ** 2 / phot.k_e_per_adu[visits]
    _effective_gain(cov.bits, word, bit, w2k, cov.invvar, out)
    return out


# ------------------------------------------------------------------ saturation


@nb.njit(cache=True)
def _bleed_row(e: np.ndarray, full_well: float) -> None:
    """Spill the charge above the full well of each saturated run to both sides
    along the row (half each way) until absorbed; charge reaching the row's
    ends is lost."""
    n = e.shape[0]
    x = 0
    while x < n:
        if e[x] <= full_well:
            x += 1
            continue
        start = x
        excess = 0.0
        while x < n and e[x] > full_well:
            excess += e[x] - full_well
            e[x] = full_well
            x += 1
        end = x  # first pixel after the run
        for direction in (-1, 1):
            rem = 0.5 * excess
            j = start - 1 if direction < 0 else end
            while rem > 0.0 and 0 <= j < n:
                room = full_well - e[j]
                if room > 0.0:
                    take = min(room, rem)
                    e[j] += take
                    rem -= take
                j += direction


@nb.njit(parallel=True, cache=True)
def _saturate_rows(
    rows, signal, bits, word, bit, k, sky, weight, full_well, out, sat_frac
):  # fmt: skip
    nx = signal.shape[1]
    for r in nb.prange(rows.shape[0]):
        y = rows[r]
        num = np.zeros(nx)
        den = np.zeros(nx)
        sat = np.zeros(nx)
        e = np.empty(nx)
        for m in range(word.shape[0]):
            covered = False
            for x in range(nx):
                if (bits[y, x, word[m]] >> np.uint64(bit[m])) & np.uint64(1):
                    covered = True
                    break
            if not covered:
                continue
            for x in range(nx):
                e[x] = k[m] * max(signal[y, x], 0.0) + sky[m]
            _bleed_row(e, full_well)
            for x in range(nx):
                if (bits[y, x, word[m]] >> np.uint64(bit[m])) & np.uint64(1):
                    num[x] += weight[m] * (e[x] - sky[m]) / k[m]
                    den[x] += weight[m]
                    if e[x] >= full_well * (1.0 - 1e-9):
                        sat[x] += weight[m]
        for x in range(nx):
            if den[x] > 0.0:
                out[y, x] = num[x] / den[x]
                sat_frac[y, x] = sat[x] / den[x]


def saturate(
    signal: np.ndarray,
    cov: CoverageMaps,
    plan: VisitPlan,
    phot: VisitPhotometry,
    visits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Signal after per-visit saturation and bleeding, and the SAT mask."""
    threshold = float(
        np.min((FULL_WELL_E - phot.sky_e[visits]) / phot.k_e_per_adu[visits])
    )
    rows = np.nonzero((signal > threshold).any(axis=1))[0].astype(np.int64)
    out = np.array(signal, dtype=np.float64)
    sat_frac = np.zeros(signal.shape, np.float32)
    if len(rows):
        word, bit = visit_word_bit(cov, plan, visits)
        _saturate_rows(
            rows, np.ascontiguousarray(signal, np.float64), cov.bits, word, bit,
            phot.k_e_per_adu[visits], phot.sky_e[visits], phot.weight[visits],
            FULL_WELL_E, out, sat_frac,
        )  # fmt: skip
    return out, (sat_frac >= SAT_PROPAGATION) & (cov.invvar > 0)
