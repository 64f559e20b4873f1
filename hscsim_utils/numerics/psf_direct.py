"""Direct PSF estimator: fit ufig's own PSF model to each star stamp.

Each stamp is fitted with the two-Moffat flexion profile of
:mod:`hscsim_utils.numerics.psf_model` (exactly the profile ufig renders) plus a star
position, two component amplitudes and a constant background, 12 parameters in
all. The fit is Levenberg-Marquardt with the analytic Jacobian, compiled with
numba and run over stars in parallel, started from moments of the stamp.
Pixels of neighbouring sources are masked (by the star's point symmetry before
the first fit, by their excess over the fitted model after it) and the stamp
refitted, so that stars SExtractor flags for neighbours remain usable.

:class:`DirectPSFPredictor` has the interface of
``ufig.psf_estimation.cnn_util.CNNPredictor`` (``config["param_names"]`` and
``__call__(cube, batchsize)`` returning an (n, 8) array), so ufig's
``PSFEstimationPipeline`` can use it in place of the pretrained CNN.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from hscsim_utils.numerics.psf_model import (
    N_SHAPE,
    PARAM_NAMES,
    StampRenderer,
    render_components,
)

#: Columns of the full fit result (shape parameters, amplitudes, background).
FIT_NAMES: tuple[str, ...] = (
    "x0", "y0", "fwhm", "e1", "e2", "f1", "f2", "g1", "g2",
    "amp1", "amp2", "background",
)  # fmt: skip
N_FIT = len(FIT_NAMES)
#: Status codes of a fit.
STATUS_OK, STATUS_MAX_ITER, STATUS_FAILED = 0, 1, 2
_FWHM_MIN, _E_MAX, _FLEX_MAX = 0.5, 0.9, 1.0


@nb.njit(cache=True)
def _valid(theta, ny, nx):
    if not (_FWHM_MIN < theta[2] < 0.6 * max(ny, nx)):
        return False
    if theta[3] ** 2 + theta[4] ** 2 >= _E_MAX**2:
        return False
    for n in range(5, 9):
        if abs(theta[n]) > _FLEX_MAX:
            return False
    return 0.0 <= theta[0] <= nx and 0.0 <= theta[1] <= ny


@nb.njit(cache=True)
def _model(theta, comp):
    return theta[11] + theta[9] * comp[0] + theta[10] * comp[1]


@nb.njit(cache=True)
def _chi2(stamp, weight, theta, rule_args):
    (betas, supp, n_in, w_in, n_out, w_out, r_in) = rule_args
    ny, nx = stamp.shape
    comp = np.empty((betas.shape[0], ny, nx))
    render_components(
        theta[:N_SHAPE], betas, supp, n_in, w_in, n_out, w_out, r_in, False, comp,
        np.empty((1, 1, 1, 1)),
    )  # fmt: skip
    res = (stamp - _model(theta, comp)) * np.sqrt(weight)
    return np.sum(res * res)


@nb.njit(cache=True)
def _normal_equations(stamp, weight, theta, rule_args):
    """Return chi2, J^T W J and J^T W r at ``theta``."""
    (betas, supp, n_in, w_in, n_out, w_out, r_in) = rule_args
    ny, nx = stamp.shape
    comp = np.empty((betas.shape[0], ny, nx))
    grad = np.empty((betas.shape[0], N_SHAPE, ny, nx))
    render_components(
        theta[:N_SHAPE], betas, supp, n_in, w_in, n_out, w_out, r_in, True, comp, grad
    )
    jac = np.empty((N_FIT, ny * nx))
    for n in range(N_SHAPE):
        jac[n] = (theta[9] * grad[0, n] + theta[10] * grad[1, n]).ravel()
    jac[9] = comp[0].ravel()
    jac[10] = comp[1].ravel()
    jac[11] = 1.0
    w = weight.ravel()
    res = stamp.ravel() - _model(theta, comp).ravel()
    jw = jac * w
    return np.sum(res * res * w), jw @ jac.T, jw @ res


@nb.njit(cache=True)
def fit_stamp(stamp, weight, theta0, rule_args, max_iter, out):
    """Levenberg-Marquardt fit of one stamp; writes theta into ``out``.

    Returns (chi2, n_iter, status).
    """
    ny, nx = stamp.shape
    theta = theta0.copy()
    if not _valid(theta, ny, nx):
        out[:] = np.nan
        return np.nan, 0, STATUS_FAILED
    chi2, a, g = _normal_equations(stamp, weight, theta, rule_args)
    scale = np.max(np.diag(a))
    if not (np.isfinite(chi2) and np.isfinite(scale) and scale > 0):
        out[:] = np.nan
        return np.nan, 0, STATUS_FAILED
    lam = 1e-3
    status = STATUS_MAX_ITER
    n_iter = 0
    chi2_trial = chi2
    step = np.zeros(N_FIT)
    for it in range(1, max_iter + 1):
        n_iter = it
        improved = False
        while lam < 1e8:
            lhs = a.copy()
            for n in range(N_FIT):  # Marquardt damping, kept positive definite
                lhs[n, n] += lam * a[n, n] + 1e-12 * scale
            step = np.linalg.solve(lhs, g)
            trial = theta + step
            if _valid(trial, ny, nx):
                chi2_trial = _chi2(stamp, weight, trial, rule_args)
                if chi2_trial < chi2:
                    improved = True
                    break
            lam *= 8.0
        if not improved:
            status = STATUS_OK  # no downhill step left: at the minimum
            break
        rel = (chi2 - chi2_trial) / max(chi2_trial, 1e-300)
        small = abs(step[2]) < 1e-6 * theta[2] and abs(step[3]) < 1e-7
        small = small and abs(step[4]) < 1e-7
        theta = trial
        lam = max(lam * 0.2, 1e-9)
        chi2, a, g = _normal_equations(stamp, weight, theta, rule_args)
        if rel < 1e-9 or small:
            status = STATUS_OK
            break
    out[:] = theta
    return chi2, n_iter, status


@nb.njit(cache=True, parallel=True)
def _fit_all(cube, weights, theta0, rule_args, max_iter, out, chi2, n_iter, status):
    for i in nb.prange(cube.shape[0]):
        c, n, s = fit_stamp(cube[i], weights[i], theta0[i], rule_args, max_iter, out[i])
        chi2[i] = c
        n_iter[i] = n
        status[i] = s


@nb.njit(cache=True, parallel=True)
def _model_all(theta, rule_args, out):
    (betas, supp, n_in, w_in, n_out, w_out, r_in) = rule_args
    for i in nb.prange(theta.shape[0]):
        comp = np.empty((betas.shape[0], out.shape[1], out.shape[2]))
        render_components(
            theta[i, :N_SHAPE], betas, supp, n_in, w_in, n_out, w_out, r_in, False,
            comp, np.empty((1, 1, 1, 1)),
        )  # fmt: skip
        out[i] = _model(theta[i], comp)


def model_stamps(theta: np.ndarray, renderer: StampRenderer) -> np.ndarray:
    """Model stamps (n, ny, nx) for fit results ``theta`` (FIT_NAMES order)."""
    theta = np.nan_to_num(np.asarray(theta, dtype=np.float64))
    out = np.zeros((len(theta),) + renderer.shape)
    ok = np.array([_valid(t, *renderer.shape) for t in theta], dtype=bool)
    if ok.any():
        sub = np.empty((ok.sum(),) + renderer.shape)
        _model_all(theta[ok], renderer.rule, sub)
        out[ok] = sub
    return out


def neighbour_mask(
    cube: np.ndarray,
    weights: np.ndarray,
    theta: np.ndarray,
    models: np.ndarray,
    n_sigma: float = 5.0,
    model_error: float = 0.1,
    r_core: float = 1.0,
    grow: int = 1,
) -> np.ndarray:
    """Pixels of other sources: excess over the star model outside its core.

    A pixel counts when data - model exceeds ``n_sigma`` times the sky noise
    combined with ``model_error`` times the star's model there (room for the
    star's own photon noise), and lies beyond ``r_core`` FWHM from the star;
    the mask extends through adjacent pixels above 1.5 sigma and grows by
    ``grow`` pixels.
    """
    sky = _sky_sigma(weights)
    star = models - theta[:, 11, None, None]
    excess = (cube - models - model_error * np.abs(star)) / sky
    excess = np.where(weights > 0, excess, -np.inf)
    return _hysteresis(excess, n_sigma, 1.5, theta, r_core, grow)


def symmetry_mask(
    cube: np.ndarray,
    weights: np.ndarray,
    theta: np.ndarray,
    n_sigma: float = 5.0,
    asymmetry: float = 0.25,
    r_core: float = 1.0,
    grow: int = 1,
) -> np.ndarray:
    """Pixels of other sources, found before any fit by the star's symmetry.

    A PSF is nearly point-symmetric about the star: a pixel beyond ``r_core``
    FWHM counts as another source's when it exceeds its mirror image (bilinear
    interpolation at the point reflected about the star) by ``n_sigma`` sky
    noise plus ``asymmetry`` times the mirror value. ``theta`` holds the start
    values (position, FWHM, background).
    """
    n, ny, nx = cube.shape
    img = np.where(weights > 0, cube, np.nan) - theta[:, 11, None, None]
    yy, xx = np.mgrid[0:ny, 0:nx] + 0.5
    mx = 2 * theta[:, 0, None, None] - xx - 0.5  # mirror, in pixel-index units
    my = 2 * theta[:, 1, None, None] - yy - 0.5
    inside = (mx >= 0) & (mx <= nx - 1) & (my >= 0) & (my <= ny - 1)
    j0 = np.clip(np.floor(mx).astype(int), 0, nx - 2)
    i0 = np.clip(np.floor(my).astype(int), 0, ny - 2)
    fx, fy = np.clip(mx - j0, 0, 1), np.clip(my - i0, 0, 1)
    rows = np.arange(n)[:, None, None]
    mirror = (
        img[rows, i0, j0] * (1 - fx) * (1 - fy)
        + img[rows, i0, j0 + 1] * fx * (1 - fy)
        + img[rows, i0 + 1, j0] * (1 - fx) * fy
        + img[rows, i0 + 1, j0 + 1] * fx * fy
    )
    sky = _sky_sigma(weights)
    with np.errstate(invalid="ignore"):  # difference of two pixels: sqrt(2) sky
        excess = (img - mirror - asymmetry * np.maximum(mirror, 0)) / (np.sqrt(2) * sky)
    excess = np.where(inside & np.isfinite(excess), excess, -np.inf)
    return _hysteresis(excess, n_sigma, 1.5, theta, r_core, grow)


def _sky_sigma(weights: np.ndarray) -> np.ndarray:
    """Noise sigma per pixel from the weights (inf where the weight is 0)."""
    safe = np.where(weights > 0, weights, 1.0)
    return np.where(weights > 0, 1.0 / np.sqrt(safe), np.inf)


def _dilate(mask: np.ndarray) -> np.ndarray:
    pad = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    out = pad[:, 1:-1, 1:-1] | pad[:, :-2, 1:-1] | pad[:, 2:, 1:-1]
    return out | pad[:, 1:-1, :-2] | pad[:, 1:-1, 2:]


def _hysteresis(excess, high, low, theta, r_core, grow, max_steps=8):
    """Pixels above ``high`` sigma, extended through pixels above ``low`` sigma,
    grown by ``grow``; never within ``r_core`` FWHM of the star."""
    ny, nx = excess.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx] + 0.5
    r2 = (xx - theta[:, 0, None, None]) ** 2 + (yy - theta[:, 1, None, None]) ** 2
    outside = r2 > (r_core * theta[:, 2, None, None]) ** 2
    bad = (excess > high) & outside
    allowed = (excess > low) & outside
    for _ in range(max_steps):
        more = _dilate(bad) & allowed
        if np.array_equal(more, bad):
            break
        bad = more
    for _ in range(grow):
        bad = _dilate(bad)
    return bad & outside


def initial_guess(cube: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Start values (FIT_NAMES order) from moments of each stamp, vectorised.

    Pixels with zero weight (or not finite) are ignored.
    """
    cube = np.asarray(cube, dtype=np.float64)
    if weights is not None:
        cube = np.where(np.asarray(weights) > 0, cube, np.nan)
    n, ny, nx = cube.shape
    border = np.concatenate(
        [cube[:, 0, :], cube[:, -1, :], cube[:, 1:-1, 0], cube[:, 1:-1, -1]], axis=1
    )
    bkg = _nan_median(border)
    img = np.nan_to_num(cube - bkg[:, None, None])
    flux = img.sum(axis=(1, 2))
    flat = img.reshape(n, -1)
    ipk = np.argmax(flat, axis=1)
    py, px = np.divmod(ipk, nx)
    py = np.clip(py, 1, ny - 2)
    px = np.clip(px, 1, nx - 2)
    rows = np.arange(n)
    peak = img[rows, py, px]
    x0 = px + 0.5 + _parabola_offset(img[rows, py, px - 1], peak, img[rows, py, px + 1])
    y0 = py + 0.5 + _parabola_offset(img[rows, py - 1, px], peak, img[rows, py + 1, px])
    n_half = np.sum(img > 0.5 * peak[:, None, None], axis=(1, 2))
    fwhm = np.clip(2.0 * np.sqrt(np.maximum(n_half, 1) / np.pi), 1.0, 0.4 * nx)
    e1, e2 = _weighted_ellipticity(img, x0, y0, fwhm)
    theta = np.zeros((n, len(FIT_NAMES)))
    theta[:, 0], theta[:, 1], theta[:, 2] = x0, y0, fwhm
    theta[:, 3], theta[:, 4] = e1, e2
    theta[:, 9] = theta[:, 10] = 0.5 * flux
    theta[:, 11] = bkg
    return theta


def _nan_median(values: np.ndarray) -> np.ndarray:
    """Median per row ignoring NaN; 0 for rows without any finite value."""
    finite = np.isfinite(values).any(axis=1)
    out = np.zeros(len(values))
    if finite.any():
        out[finite] = np.nanmedian(values[finite], axis=1)
    return out


def _parabola_offset(left, mid, right):
    den = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (left - right) / den, 0.0)
    return np.clip(np.nan_to_num(off), -0.5, 0.5)


def _weighted_ellipticity(img, x0, y0, fwhm):
    ny, nx = img.shape[1:]
    yy, xx = np.mgrid[0:ny, 0:nx] + 0.5
    dx = xx[None] - x0[:, None, None]
    dy = yy[None] - y0[:, None, None]
    sig = fwhm[:, None, None] / 2.355 * 1.5
    w = img * np.exp(-0.5 * (dx**2 + dy**2) / sig**2)
    qxx = np.sum(w * dx * dx, axis=(1, 2))
    qyy = np.sum(w * dy * dy, axis=(1, 2))
    qxy = np.sum(w * dx * dy, axis=(1, 2))
    tr = qxx + qyy
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where(tr > 0, (qxx - qyy) / tr, 0.0)
        e2 = np.where(tr > 0, 2.0 * qxy / tr, 0.0)
    # weighted moments of a Moffat understate the ellipticity
    e1, e2 = 1.5 * np.nan_to_num(e1), 1.5 * np.nan_to_num(e2)
    e = np.hypot(e1, e2)
    scale = np.where(e > 0.5, 0.5 / np.maximum(e, 1e-12), 1.0)
    return e1 * scale, e2 * scale


def noise_weights(cube: np.ndarray) -> np.ndarray:
    """Per-pixel weights: 1/sigma^2 of the stamp border (MAD), 0 for bad pixels."""
    cube = np.asarray(cube, dtype=np.float64)
    border = np.concatenate(
        [cube[:, 0, :], cube[:, -1, :], cube[:, 1:-1, 0], cube[:, 1:-1, -1]], axis=1
    )
    med = _nan_median(border)[:, None]
    sigma = 1.4826 * _nan_median(np.abs(border - med))
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 1.0)
    w = np.broadcast_to((1.0 / sigma**2)[:, None, None], cube.shape).copy()
    w[~np.isfinite(cube)] = 0.0
    return w


def fit_stamps(
    cube: np.ndarray,
    renderer: StampRenderer | None = None,
    max_iter: int = 40,
    weights: np.ndarray | None = None,
    mask_rounds: int = 2,
) -> dict[str, np.ndarray]:
    """Fit every stamp of ``cube`` (n, ny, nx); return arrays per result.

    Pixels of neighbouring sources are masked before the fit by the star's
    symmetry (:func:`symmetry_mask`) and after it by their excess over the model
    (:func:`neighbour_mask`), refitting the affected stamps, up to
    ``mask_rounds`` times (0: no masking).
    Keys: ``theta`` (n, 12) in FIT_NAMES order, ``params`` (n, 8) in ufig's
    PARAM_NAMES order (NaN where the fit failed), ``chi2_dof``, ``n_iter``,
    ``status``, ``flux`` (total flux of the two components), ``n_masked``.
    """
    cube = np.asarray(cube, dtype=np.float64)
    if cube.ndim != 3:
        raise ValueError(f"cube must have shape (n, ny, nx), got {cube.shape}")
    n, ny, nx = cube.shape
    renderer = renderer or StampRenderer(shape=(ny, nx))
    if renderer.shape != (ny, nx):
        raise ValueError(f"renderer shape {renderer.shape} != stamp shape {(ny, nx)}")
    weights = noise_weights(cube) if weights is None else np.array(weights, float)
    data = np.where(np.isfinite(cube), cube, 0.0)
    base = weights
    masked = np.zeros(cube.shape, bool)  # pixels of other sources found so far
    weights = base.copy()
    theta = initial_guess(cube, weights)
    if mask_rounds > 0:  # the symmetry mask only guides the first fit
        weights *= ~symmetry_mask(data, weights, theta)
        theta = initial_guess(cube, weights)
    chi2, n_iter = np.zeros(n), np.zeros(n, np.int64)
    status = np.zeros(n, np.int64)
    todo = np.arange(n)
    for round_ in range(mask_rounds + 1):
        out = _fit_subset(data[todo], weights[todo], theta[todo], renderer, max_iter)
        theta[todo], chi2[todo], status[todo] = out[0], out[1], out[3]
        n_iter[todo] += out[2]
        if round_ == mask_rounds:
            break
        models = model_stamps(theta[todo], renderer)
        found = neighbour_mask(data[todo], base[todo], theta[todo], models)
        found &= (status[todo] != STATUS_FAILED)[:, None, None]
        masked[todo] |= found
        new_weights = base[todo] * ~masked[todo]
        changed = np.any(new_weights != weights[todo], axis=(1, 2))
        weights[todo[changed]] = new_weights[changed]
        todo = todo[changed]
        if len(todo) == 0:
            break
    return _results(theta, chi2, n_iter, status, weights)


def _fit_subset(data, weights, theta0, renderer, max_iter):
    n = len(data)
    theta = np.empty_like(theta0)
    chi2, n_iter = np.empty(n), np.empty(n, np.int64)
    status = np.empty(n, np.int64)
    _fit_all(
        data, weights, theta0, renderer.rule, max_iter, theta, chi2, n_iter, status
    )
    return theta, chi2, n_iter, status


def _results(theta, chi2, n_iter, status, weights):
    flux = theta[:, 9] + theta[:, 10]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = theta[:, 9] / flux
    params = np.column_stack([theta[:, 2], ratio, theta[:, 3:9]])
    status = np.where(
        np.isfinite(params).all(axis=1) & (flux > 0), status, STATUS_FAILED
    )
    params[status == STATUS_FAILED] = np.nan
    n_good = np.sum(weights > 0, axis=(1, 2))
    n_dof = np.maximum(n_good - N_FIT, 1)
    return {
        "n_masked": weights[0].size - n_good,
        "theta": theta,
        "params": params,
        "chi2_dof": chi2 / n_dof,
        "n_iter": n_iter,
        "status": status,
        "flux": flux,
    }


class DirectPSFPredictor:
    """Stand-in for ufig's ``CNNPredictor`` that fits each stamp directly.

    ``predictor(cube, batchsize)`` returns the (n, 8) PSF parameters in the order
    of ``predictor.config["param_names"]``; the full fit results of the last
    call are kept in ``predictor.last_fit``.
    """

    def __init__(self, stamp_shape: tuple[int, int] = (19, 19), max_iter: int = 40):
        self.config = {"param_names": list(PARAM_NAMES)}
        self.param_names = self.config["param_names"]
        self.renderer = StampRenderer(shape=stamp_shape)
        self.max_iter = max_iter
        self.last_fit: dict[str, np.ndarray] | None = None

    def __call__(self, cube: np.ndarray, batchsize: int | None = None) -> np.ndarray:
        cube = np.asarray(cube, dtype=np.float64)
        if cube.ndim != 3 or cube.shape[1:] != self.renderer.shape:
            raise ValueError(
                f"expected stamps of shape (n, {self.renderer.shape[0]}, "
                f"{self.renderer.shape[1]}), got {cube.shape}"
            )
        self.last_fit = fit_stamps(cube, self.renderer, self.max_iter)
        return self.last_fit["params"].copy()
