"""ufig's coadd PSF profile, evaluated on pixel stamps.

ufig draws a star photon by photon (``ufig.plugins.render_stars_photon`` ->
``ufig.rendering_util.draw_photon_psf``); galaxies are convolved with the same
draw (``render_galaxies_flexion``). With the parameters of ``grid_psf``
(``psf_type="coadd_moffat_cnn_read"`` in ``ufig.plugins.add_psf``) a photon of
Moffat component k (``psf_beta = [2, 5]``) lands at

    d = fwhm * (M(e1, e2) u + exp(c_k |u|^2) T(u)),
    c_k = psf_flexion_suppression / beta_k^2

- ``u`` is drawn from a circular Moffat profile of unit FWHM, i.e.
  ``alpha_k = 1 / (2 sqrt(2^(1/beta_k) - 1))`` (``rendering_util.moffat_cdf_factors``
  and ``draw_photon_psf_radial``: ``dr = alpha * sqrt((1 - cdf)^(1/(1-beta)) - 1)``);
  both components thus share the FWHM and so does their sum;
- ``M`` is ufig's ellipticity matrix (``rendering_util.compute_ellip_matrices``,
  used as ``dx = M00 x - M01 y``, ``dy = M10 x + M11 y``); ``M M^T =
  [[1 + e1, e2], [e2, 1 - e1]]``, so e1, e2 are second-moment ellipticities;
- ``T`` is the flexion displacement (``rendering_util.compute_flexion_tensors``,
  tensor times ``-fwhm / 2``), quadratic in u and added after the ellipticity;
- the first component gets ``round(flux_ratio * nphot)`` photons
  (``rendering_util.distribute_photons_psf_profiles``); kurtosis and the
  per-component offsets are zero for this PSF type;
- a photon at ``x + dx`` falls in pixel ``int(x + dx)`` (``rendering_util.add_photon``):
  pixel j covers [j, j + 1), so X_IMAGE = x + 0.5.

The expected image is the density of d integrated over each pixel. The density is
``q_k(u) / |det J(u)| / fwhm^2`` at the u solving the mapping above (Newton
iterations; J is the mapping's Jacobian); pixels are integrated with a
Gauss-Legendre rule, finer near the core. Against ufig's photon renderer
(tests/test_psf_direct.py) the profiles agree to the photon noise of 3e6
photons.

A property of ufig's parameterisation: M is a shear times the rotation by half
the position angle of (e1, e2), and the flexion acts before that rotation, so
the image-plane flexion pattern turns with the direction of the ellipticity
(discontinuously at e = 0). For nearly round PSFs the measured f1, f2, g1, g2
therefore scatter more than FWHM and ellipticity do.

The compiled functions keep IEEE arithmetic (no ``fastmath``): with it, a
function freshly compiled and the same function loaded from numba's disk cache
gave PSF fits that differed by up to 4e-11 (the first run of a new checkout
against every later one), because LLVM may reorder the sums differently in each
compilation; without it both agree bit for bit, at the same speed (1500 stamps
fitted in 5.5-6.0 s either way). ``tests/test_psf_direct.py`` checks both.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hscsim_utils.compat.ufig_psf import ERR_VAL

#: Parameter names of the PSF as ufig stores them (``grid_psf`` with ``_ipt``).
PARAM_NAMES: tuple[str, ...] = (
    "psf_fwhm",
    "psf_flux_ratio",
    "psf_e1",
    "psf_e2",
    "psf_f1",
    "psf_f2",
    "psf_g1",
    "psf_g2",
)
#: Moffat betas of the two components (tutorial config: ``psf_beta = [2.0, 5.0]``).
PSF_BETAS: tuple[float, float] = (2.0, 5.0)
#: ufig's default ``psf_flexion_suppression`` (``ufig.config.common``).
FLEXION_SUPPRESSION = -5.0

#: Index of each shape parameter in the vectors used by the kernels below:
#: x0, y0 (star centre in stamp coordinates), fwhm, e1, e2, f1, f2, g1, g2.
SHAPE_NAMES: tuple[str, ...] = ("x0", "y0", "fwhm", "e1", "e2", "f1", "f2", "g1", "g2")
N_SHAPE = len(SHAPE_NAMES)


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [0, 1] and weights (summing to 1) of an n-point rule."""
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (x + 1.0), 0.5 * w


def peak_pixel_fraction(fwhm: float, beta: float, n: int = 16) -> float:
    """Fraction of a circular Moffat star's flux (FWHM ``fwhm`` pixels, index
    ``beta``) in its brightest pixel when the star sits on a pixel corner, the
    placement with the lowest peak. The Moffat profile is
    ``(beta - 1) / (pi alpha^2) (1 + r^2 / alpha^2)^-beta`` with
    ``alpha = fwhm / (2 sqrt(2^(1/beta) - 1))``; the pixel [0, 1)^2 is integrated
    with an n x n Gauss-Legendre rule."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    x, w = _gauss_legendre(n)
    r2 = (x[:, None] ** 2 + x[None, :] ** 2) / alpha**2
    density = (beta - 1.0) / (np.pi * alpha**2) * (1.0 + r2) ** -beta
    return float(w @ density @ w)


@nb.njit(cache=True)
def _ellip_matrix(e1, e2, m):
    """ufig's effective ellipticity matrix: dx = m0 x + m1 y, dy = m2 x + m3 y."""
    e = np.sqrt(e1 * e1 + e2 * e2)
    if e <= 1e-7:
        m[0], m[1], m[2], m[3] = 1.0, 0.0, 0.0, 1.0
        return
    sign = np.copysign(1.0, e2)
    m[0] = np.sqrt((1.0 + e) * (1.0 + e1 / e) / 2.0) * sign
    m[1] = -np.sqrt((1.0 - e) * (1.0 - e1 / e) / 2.0)
    m[2] = np.sqrt((1.0 + e) * (1.0 - e1 / e) / 2.0)
    m[3] = np.sqrt((1.0 - e) * (1.0 + e1 / e) / 2.0) * sign


@nb.njit(cache=True)
def _ellip_matrix_grad(e1, e2, dm):
    """d(m)/d(e1) into dm[0:4] and d(m)/d(e2) into dm[4:8] (central differences).

    The step stays well below |e| so that it never crosses e2 = 0 or e = 0,
    where ufig's matrix jumps between equivalent rotations.
    """
    e = np.sqrt(e1 * e1 + e2 * e2)
    h = min(1e-6, 0.05 * max(e, 1e-9))
    if e2 != 0.0:
        h = min(h, 0.5 * abs(e2))
    mp = np.empty(4)
    mm = np.empty(4)
    _ellip_matrix(e1 + h, e2, mp)
    _ellip_matrix(e1 - h, e2, mm)
    for i in range(4):
        dm[i] = (mp[i] - mm[i]) / (2.0 * h)
    _ellip_matrix(e1, e2 + h, mp)
    _ellip_matrix(e1, e2 - h, mm)
    for i in range(4):
        dm[4 + i] = (mp[i] - mm[i]) / (2.0 * h)


#: d(t)/d(f1, f2, g1, g2) of the six flexion coefficients (see _flexion_coeffs).
_FLEX_DERIV = np.array(
    [
        [-1.5, 0.0, -0.5, 0.0],
        [0.0, -1.0, 0.0, -1.0],
        [-0.5, 0.0, 0.5, 0.0],
        [0.0, -0.5, 0.0, -0.5],
        [-1.0, 0.0, 1.0, 0.0],
        [0.0, -1.5, 0.0, 0.5],
    ]
)


@nb.njit(cache=True)
def _flexion_coeffs(f1, f2, g1, g2, t):
    """Coefficients of T(u) = (t0 x^2 + t1 x y + t2 y^2, t3 x^2 + t4 x y + t5 y^2).

    ufig's flexion tensor times -1/2 (``compute_flexion_tensors``), with the
    mixed terms of ``draw_photon_psf`` (d[0,1,0] x y and d[1,1,0] x y).
    """
    t[0] = -0.5 * (3.0 * f1 + g1)
    t[1] = -(f2 + g2)
    t[2] = -0.5 * (f1 - g1)
    t[3] = -0.5 * (f2 + g2)
    t[4] = -(f1 - g1)
    t[5] = -0.5 * (3.0 * f2 - g2)


@nb.njit(cache=True)
def _inv_pow(y, beta):
    """y ** -beta, by multiplication for small integer beta."""
    n = int(beta)
    if n == beta and 0 < n <= 8:
        acc = y
        for _ in range(n - 1):
            acc *= y
        return 1.0 / acc
    return y ** (-beta)


@nb.njit(cache=True)
def _solve_u(vx, vy, m, t, supp):
    """Circular-frame position u with m u + exp(supp |u|^2) T(u) = v (Newton)."""
    det_m = m[0] * m[3] - m[1] * m[2]
    ux = (m[3] * vx - m[1] * vy) / det_m
    uy = (-m[2] * vx + m[0] * vy) / det_m
    if t[0] == 0.0 and t[1] == 0.0 and t[2] == 0.0:
        if t[3] == 0.0 and t[4] == 0.0 and t[5] == 0.0:
            return ux, uy
    for _ in range(20):
        s = np.exp(supp * (ux * ux + uy * uy))
        tx = t[0] * ux * ux + t[1] * ux * uy + t[2] * uy * uy
        ty = t[3] * ux * ux + t[4] * ux * uy + t[5] * uy * uy
        sx = 2.0 * supp * s * ux
        sy = 2.0 * supp * s * uy
        jxx = m[0] + s * (2.0 * t[0] * ux + t[1] * uy) + tx * sx
        jxy = m[1] + s * (t[1] * ux + 2.0 * t[2] * uy) + tx * sy
        jyx = m[2] + s * (2.0 * t[3] * ux + t[4] * uy) + ty * sx
        jyy = m[3] + s * (t[4] * ux + 2.0 * t[5] * uy) + ty * sy
        hx = m[0] * ux + m[1] * uy + s * tx - vx
        hy = m[2] * ux + m[3] * uy + s * ty - vy
        det = jxx * jyy - jxy * jyx
        dux = (jyy * hx - jxy * hy) / det
        duy = (-jyx * hx + jxx * hy) / det
        ux -= dux
        uy -= duy
        if dux * dux + duy * duy < 1e-18:
            break
    return ux, uy


@nb.njit(cache=True)
def _point(vx, vy, m, dm, t, supp, alpha, beta, want_grad, grad):
    """Density of one component at v = d / fwhm (per unit v-area).

    With ``want_grad`` the derivatives with respect to (vx, vy, e1, e2, f1, f2,
    g1, g2) are written into ``grad`` (implicit differentiation of the mapping).
    """
    ux, uy = _solve_u(vx, vy, m, t, supp)
    r2 = ux * ux + uy * uy
    s = np.exp(supp * r2)
    tx = t[0] * ux * ux + t[1] * ux * uy + t[2] * uy * uy
    ty = t[3] * ux * ux + t[4] * ux * uy + t[5] * uy * uy
    txx = 2.0 * t[0] * ux + t[1] * uy  # dTx/dux
    txy = t[1] * ux + 2.0 * t[2] * uy  # dTx/duy
    tyx = 2.0 * t[3] * ux + t[4] * uy
    tyy = t[4] * ux + 2.0 * t[5] * uy
    sx = 2.0 * supp * s * ux
    sy = 2.0 * supp * s * uy
    jxx = m[0] + s * txx + tx * sx
    jxy = m[1] + s * txy + tx * sy
    jyx = m[2] + s * tyx + ty * sx
    jyy = m[3] + s * tyy + ty * sy
    det = jxx * jyy - jxy * jyx
    a2 = alpha * alpha
    q = (beta - 1.0) / (np.pi * a2) * _inv_pow(1.0 + r2 / a2, beta)
    p = q / abs(det)
    if not want_grad:
        return p
    # inverse Jacobian
    ixx = jyy / det
    ixy = -jxy / det
    iyx = -jyx / det
    iyy = jxx / det
    # grad_u log q
    gx = -2.0 * beta * ux / (a2 + r2)
    gy = -2.0 * beta * uy / (a2 + r2)
    # second derivatives of S: S_ab = S (2 c delta_ab + 4 c^2 u_a u_b)
    c2 = 4.0 * supp * supp * s
    sxx = 2.0 * supp * s + c2 * ux * ux
    sxy = c2 * ux * uy
    syy = 2.0 * supp * s + c2 * uy * uy
    # dJ/du_x and dJ/du_y, then tau_k = tr(J^-1 dJ/du_k)
    dxjxx = s * 2.0 * t[0] + sx * txx + sx * txx + tx * sxx
    dxjxy = s * t[1] + sx * txy + sy * txx + tx * sxy
    dxjyx = s * 2.0 * t[3] + sx * tyx + sx * tyx + ty * sxx
    dxjyy = s * t[4] + sx * tyy + sy * tyx + ty * sxy
    dyjxx = s * t[1] + sy * txx + sx * txy + tx * sxy
    dyjxy = s * 2.0 * t[2] + sy * txy + sy * txy + tx * syy
    dyjyx = s * t[4] + sy * tyx + sx * tyy + ty * sxy
    dyjyy = s * 2.0 * t[5] + sy * tyy + sy * tyy + ty * syy
    taux = ixx * dxjxx + ixy * dxjyx + iyx * dxjxy + iyy * dxjyy
    tauy = ixx * dyjxx + ixy * dyjyx + iyx * dyjxy + iyy * dyjyy
    hx = gx - taux
    hy = gy - tauy
    # z = J^-T h: derivative of log p with respect to v
    zx = ixx * hx + iyx * hy
    zy = ixy * hx + iyy * hy
    grad[0] = p * zx
    grad[1] = p * zy
    for i in range(2):
        o = 4 * i
        rx = -(dm[o] * ux + dm[o + 1] * uy)
        ry = -(dm[o + 2] * ux + dm[o + 3] * uy)
        tr = ixx * dm[o] + ixy * dm[o + 2] + iyx * dm[o + 1] + iyy * dm[o + 3]
        grad[2 + i] = p * (zx * rx + zy * ry - tr)
    for j in range(4):
        l0 = _FLEX_DERIV[0, j]
        l1 = _FLEX_DERIV[1, j]
        l2 = _FLEX_DERIV[2, j]
        l3 = _FLEX_DERIV[3, j]
        l4 = _FLEX_DERIV[4, j]
        l5 = _FLEX_DERIV[5, j]
        qx = l0 * ux * ux + l1 * ux * uy + l2 * uy * uy
        qy = l3 * ux * ux + l4 * ux * uy + l5 * uy * uy
        qxx = 2.0 * l0 * ux + l1 * uy
        qxy = l1 * ux + 2.0 * l2 * uy
        qyx = 2.0 * l3 * ux + l4 * uy
        qyy = l4 * ux + 2.0 * l5 * uy
        djxx = s * qxx + qx * sx
        djxy = s * qxy + qx * sy
        djyx = s * qyx + qy * sx
        djyy = s * qyy + qy * sy
        tr = ixx * djxx + ixy * djyx + iyx * djxy + iyy * djyy
        grad[4 + j] = p * (-(zx * s * qx + zy * s * qy) - tr)
    return p


@nb.njit(cache=True)
def render_components(
    shape_par, betas, suppression, nodes_in, weights_in, nodes_out, weights_out,
    r_in, want_grad, out, grad_out,
):  # fmt: skip
    """Unit-flux images of the Moffat components, integrated over pixels.

    ``shape_par`` = (x0, y0, fwhm, e1, e2, f1, f2, g1, g2); pixel (i, j) covers
    [j, j + 1) x [i, i + 1). Pixels whose centre lies within ``r_in`` FWHM of the
    star use the ``nodes_in`` rule per axis, the others ``nodes_out``.
    ``out`` (n_beta, ny, nx) is overwritten; with ``want_grad`` so is
    ``grad_out`` (n_beta, 9, ny, nx) with the derivatives by ``shape_par``.
    """
    ny, nx = out.shape[1], out.shape[2]
    x0, y0, fwhm = shape_par[0], shape_par[1], shape_par[2]
    m = np.empty(4)
    dm = np.zeros(8)
    _ellip_matrix(shape_par[3], shape_par[4], m)
    if want_grad:
        _ellip_matrix_grad(shape_par[3], shape_par[4], dm)
    t = np.empty(6)
    _flexion_coeffs(shape_par[5], shape_par[6], shape_par[7], shape_par[8], t)
    inv_f = 1.0 / fwhm
    norm = inv_f * inv_f
    r_in2 = (r_in * fwhm) ** 2
    g = np.empty(8)
    acc_g = np.empty(9)
    for k in range(betas.shape[0]):
        beta = betas[k]
        alpha = 1.0 / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        supp = suppression / (beta * beta)
        for i in range(ny):
            for j in range(nx):
                dxc = j + 0.5 - x0
                dyc = i + 0.5 - y0
                if dxc * dxc + dyc * dyc < r_in2:
                    nodes = nodes_in
                    weights = weights_in
                else:
                    nodes = nodes_out
                    weights = weights_out
                acc = 0.0
                acc_g[:] = 0.0
                for a in range(nodes.shape[0]):
                    vy = (i + nodes[a] - y0) * inv_f
                    for b in range(nodes.shape[0]):
                        vx = (j + nodes[b] - x0) * inv_f
                        w = weights[a] * weights[b]
                        p = _point(vx, vy, m, dm, t, supp, alpha, beta, want_grad, g)
                        acc += w * p
                        if want_grad:
                            acc_g[0] -= w * g[0]
                            acc_g[1] -= w * g[1]
                            acc_g[2] -= w * (g[0] * vx + g[1] * vy + 2.0 * p)
                            for n in range(2, 8):
                                acc_g[n + 1] += w * g[n]
                out[k, i, j] = acc * norm
                if want_grad:
                    grad_out[k, 0, i, j] = acc_g[0] * norm * inv_f
                    grad_out[k, 1, i, j] = acc_g[1] * norm * inv_f
                    grad_out[k, 2, i, j] = acc_g[2] * norm * inv_f
                    for n in range(3, 9):
                        grad_out[k, n, i, j] = acc_g[n] * norm
    return out


class StampRenderer:
    """Render ufig's two-Moffat flexion PSF on stamps of a fixed shape."""

    def __init__(
        self,
        shape: tuple[int, int] = (19, 19),
        betas: tuple[float, ...] = PSF_BETAS,
        suppression: float = FLEXION_SUPPRESSION,
        n_inner: int = 3,
        n_outer: int = 2,
        r_inner: float = 1.5,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.betas = np.asarray(betas, dtype=np.float64)
        self.suppression = float(suppression)
        self.nodes_in, self.weights_in = _gauss_legendre(n_inner)
        self.nodes_out, self.weights_out = _gauss_legendre(n_outer)
        self.r_inner = float(r_inner)

    def components(self, shape_par: np.ndarray) -> np.ndarray:
        """(n_beta, ny, nx) unit-flux component images for (x0, y0, fwhm, e..g2)."""
        out = np.empty((len(self.betas),) + self.shape)
        self._run(shape_par, False, out, np.empty((1, 1, 1, 1)))
        return out

    def components_and_grad(self, shape_par: np.ndarray) -> tuple[np.ndarray, ...]:
        """Component images and their derivatives (n_beta, 9, ny, nx)."""
        out = np.empty((len(self.betas),) + self.shape)
        grad = np.empty((len(self.betas), N_SHAPE) + self.shape)
        self._run(shape_par, True, out, grad)
        return out, grad

    def _run(self, shape_par, want_grad, out, grad):
        shape_par = np.asarray(shape_par, dtype=np.float64)
        render_components(shape_par, *self.rule, want_grad, out, grad)

    @property
    def rule(self) -> tuple:
        """Kernel arguments after ``shape_par`` (betas, suppression, rules, r_in)."""
        return (
            self.betas,
            self.suppression,
            self.nodes_in,
            self.weights_in,
            self.nodes_out,
            self.weights_out,
            self.r_inner,
        )

    def render(
        self,
        params: dict | np.ndarray,
        x0: float | None = None,
        y0: float | None = None,
        flux: float = 1.0,
        background: float = 0.0,
    ) -> np.ndarray:
        """Expected stamp of a star with PSF ``params`` (PARAM_NAMES order or dict).

        The star centre (x0, y0) defaults to the middle of the stamp.
        """
        p = _param_vector(params)
        x0 = self.shape[1] / 2.0 if x0 is None else x0
        y0 = self.shape[0] / 2.0 if y0 is None else y0
        shape_par = np.array([x0, y0, p[0], p[2], p[3], p[4], p[5], p[6], p[7]])
        comp = self.components(shape_par)
        ratio = np.array([p[1], 1.0 - p[1]])[: len(self.betas)]
        return background + flux * np.tensordot(ratio, comp, axes=1)


def _param_vector(params: dict | np.ndarray) -> np.ndarray:
    if isinstance(params, dict):
        return np.array([float(params.get(n, 0.0)) for n in PARAM_NAMES])
    p = np.asarray(params, dtype=np.float64)
    if p.shape != (len(PARAM_NAMES),):
        raise ValueError(f"PSF parameters need shape ({len(PARAM_NAMES)},)")
    return p


def render_star_field(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    params: np.ndarray,
    stamp: int = 41,
) -> np.ndarray:
    """Expected image of point sources with per-star PSF ``params`` (n, 8).

    Positions follow ufig (pixel j covers [j, j + 1)); each star is drawn on a
    ``stamp`` x ``stamp`` box around it, which holds all but its far wings.
    """
    ny, nx = shape
    image = np.zeros(shape)
    renderer = StampRenderer(shape=(stamp, stamp), n_inner=3, n_outer=2)
    half = stamp // 2
    for xi, yi, fi, pi in zip(x, y, flux, np.asarray(params), strict=True):
        cx, cy = int(np.floor(xi)), int(np.floor(yi))
        x_lo, y_lo = cx - half, cy - half
        box = renderer.render(pi, xi - x_lo, yi - y_lo, fi)
        sx = slice(max(x_lo, 0), min(x_lo + stamp, nx))
        sy = slice(max(y_lo, 0), min(y_lo + stamp, ny))
        if sx.start >= sx.stop or sy.start >= sy.stop:
            continue
        image[sy, sx] += box[
            sy.start - y_lo : sy.stop - y_lo, sx.start - x_lo : sx.stop - x_lo
        ]
    return image


def grid_image(grid: np.ndarray, column: str) -> tuple[np.ndarray, list[float]]:
    """2-D array of ``column`` on the model grid and its imshow extent (pixels)."""
    xs, ys = np.unique(grid["X_IMAGE"]), np.unique(grid["Y_IMAGE"])
    img = np.full((len(ys), len(xs)), np.nan)
    values = np.where(grid[column] == ERR_VAL, np.nan, grid[column])
    img[np.searchsorted(ys, grid["Y_IMAGE"]), np.searchsorted(xs, grid["X_IMAGE"])] = (
        values
    )
    step = xs[1] - xs[0] if len(xs) > 1 else 100.0
    extent = [xs[0] - step / 2, xs[-1] + step / 2, ys[0] - step / 2, ys[-1] + step / 2]
    return img, extent
