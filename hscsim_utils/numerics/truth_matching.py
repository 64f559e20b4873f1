"""Detections against the true objects of an image: completeness, purity,
photometry and size recovery.

Both a ufig simulation and the DEMO tile know what they rendered: ufig writes
its intrinsic galaxy and star catalogues beside the image, the DEMO builder
writes them into the tile's ``truth/`` folder. :func:`true_objects` brings them
to one table: positions in SExtractor's convention (1-based, the first pixel's
centre at 1.0: ``X = x + 0.5`` for ufig's ``x``, whose first pixel's centre is
at 0.5), the apparent (lensed) magnitude ``mag``, the half-light radius
``r50`` in pixels (ufig's ``r50``, of the galaxy before the PSF; ``r50_arcsec
= 0.168 r50``; 0 for stars) and ``is_star``.

Matching (:func:`match`): one-to-one within ``radius`` (default 3 pixels,
about one PSF FWHM), nearest pairs first: every pair of a detection and a
true object closer than ``radius`` (``scipy.spatial.cKDTree``) is taken in
order of increasing distance and kept when neither member is taken yet.

Per bin of magnitude (:func:`diagnostics`, 0.5 mag bins of :data:`MAG_BINS`):

- completeness: true objects in the bin (true ``mag``) on unmasked pixels
  with a selected matched detection, over all true objects of the bin on
  unmasked pixels; binomial error ``sqrt(c (1 - c) / n)``;
- purity: selected detections in the bin (``MAG_AUTO``) matched to a true
  object, over all selected detections of the bin;
- photometry: ``MAG_AUTO - mag`` of the matched pairs by true magnitude:
  median, ``NMAD = 1.4826 median |d - median(d)|`` and the standard error of
  the median ``1.2533 NMAD / sqrt(n)``;
- size recovery: median ``FLUX_RADIUS / r50`` of matched galaxies (pixels over
  pixels). ``FLUX_RADIUS`` (SExtractor's half-flux radius) measures the galaxy
  convolved with the PSF, so the ratio exceeds 1 for small galaxies and tends
  to 1 for large ones; it compares simulation and data, it is not a bias.

A spurious detection still finds a true object within ``r`` by chance with
probability ``1 - exp(-n pi r^2)`` for ``n`` true objects per pixel (0.054 for
the DEMO tile's 7928 objects down to 28 mag on 2000 x 2000 pixels and r = 3),
so purity is overestimated by at most that fraction of its shortfall.

Each for the detections with ``FLAGS == 0`` (``"flags0"``) and for all
detections (``"all"``): matching is done once with all detections, then a true
object counts as found for ``flags0`` when its match has ``FLAGS == 0``.
Its ``summary`` gives the same numbers over wider magnitude ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hscsim_utils.errors import InputError
from hscsim_utils.numerics import halves
from hscsim_utils.numerics.realism_stats import MAD_TO_STD, MEDIAN_SE_FACTOR

MATCH_RADIUS_PX = 3.0
MAG_BINS = np.arange(16.0, 28.01, 0.5)
#: Magnitude ranges of :func:`summary`.
SUMMARY_RANGES = ((18.0, 22.0), (22.0, 24.0), (24.0, 25.0), (25.0, 26.0),
                  (26.0, 27.0), (27.0, 28.0))  # fmt: skip
SELECTIONS = ("flags0", "all")
TRUE_DTYPE = np.dtype([("X", "f8"), ("Y", "f8"), ("mag", "f8"), ("r50", "f8"),
                       ("is_star", "?")])  # fmt: skip


def true_objects(
    galaxies: np.ndarray | None,
    stars: np.ndarray | None,
    first_centre: float = halves.UFIG_FIRST_CENTRE,
    pixel_scale_arcsec: float | None = None,
) -> np.ndarray:
    """One table of true galaxies and stars, positions in SExtractor's convention
    (first pixel's centre at 1.0).

    Positions are ``X_IMAGE``, ``Y_IMAGE`` (already in that convention: the
    DEMO truth tables) or ufig's ``x``, ``y`` (first pixel's centre at
    ``first_centre``); magnitudes ``mag``; galaxy sizes ``r50`` in pixels or
    ``r50_arcsec`` (divided by ``pixel_scale_arcsec``).
    """
    parts = []
    for cat, is_star in ((galaxies, False), (stars, True)):
        if cat is None or len(cat) == 0:
            continue
        names = cat.dtype.names or ()
        if "X_IMAGE" in names and "Y_IMAGE" in names:
            x, y = cat["X_IMAGE"], cat["Y_IMAGE"]
        elif "x" in names and "y" in names:
            shift = halves.FITS_FIRST_CENTRE - first_centre
            x, y = cat["x"] + shift, cat["y"] + shift
        else:
            raise InputError("true catalogue", "lacks positions (X_IMAGE or x)")
        if "mag" not in names:
            raise InputError("true catalogue", "lacks column mag")
        part = np.zeros(len(cat), TRUE_DTYPE)
        part["X"], part["Y"] = x, y
        part["mag"] = cat["mag"]
        if not is_star and "r50" in names:
            part["r50"] = cat["r50"]
        elif not is_star and "r50_arcsec" in names and pixel_scale_arcsec:
            part["r50"] = cat["r50_arcsec"] / pixel_scale_arcsec
        part["is_star"] = is_star
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0, TRUE_DTYPE)


def match(
    det_x: np.ndarray,
    det_y: np.ndarray,
    true_x: np.ndarray,
    true_y: np.ndarray,
    radius: float = MATCH_RADIUS_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching, nearest pairs first, within ``radius``.

    Returns ``(true_of_det, det_of_true)``: for every detection the index of
    its true object and for every true object the index of its detection,
    -1 where unmatched.
    """
    from scipy.spatial import cKDTree

    det = np.c_[np.asarray(det_x, np.float64), np.asarray(det_y, np.float64)]
    true = np.c_[np.asarray(true_x, np.float64), np.asarray(true_y, np.float64)]
    true_of_det = np.full(len(det), -1, np.int64)
    det_of_true = np.full(len(true), -1, np.int64)
    if len(det) == 0 or len(true) == 0:
        return true_of_det, det_of_true
    ok_det = np.all(np.isfinite(det), axis=1)
    ok_true = np.all(np.isfinite(true), axis=1)
    i_det, i_true = np.flatnonzero(ok_det), np.flatnonzero(ok_true)
    pairs = cKDTree(det[i_det]).sparse_distance_matrix(
        cKDTree(true[i_true]), radius, output_type="ndarray"
    )
    for k in np.argsort(pairs["v"], kind="stable"):
        d, t = i_det[pairs["i"][k]], i_true[pairs["j"][k]]
        if true_of_det[d] < 0 and det_of_true[t] < 0:
            true_of_det[d], det_of_true[t] = t, d
    return true_of_det, det_of_true


def _binned(values: np.ndarray, bins: np.ndarray) -> np.ndarray:
    idx = np.digitize(values, bins) - 1
    idx[(idx < 0) | (idx >= len(bins) - 1) | ~np.isfinite(values)] = -1
    return idx


def _fraction(hit: np.ndarray, total: np.ndarray) -> tuple[list, list]:
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, hit / np.maximum(total, 1), np.nan)
        err = np.where(total > 0, np.sqrt(frac * (1 - frac) / np.maximum(total, 1)),
                       np.nan)  # fmt: skip
    return _list(frac), _list(err)


def _list(values: np.ndarray) -> list:
    """JSON-ready: NaN becomes None."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, float)]


def _median_stats(values: np.ndarray) -> tuple[float, float, float, int]:
    n = values.size
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    med = float(np.median(values))
    nmad = float(MAD_TO_STD * np.median(np.abs(values - med)))
    return med, nmad, MEDIAN_SE_FACTOR * nmad / np.sqrt(n), n


def _selection_diagnostics(
    det: np.ndarray,
    truth: np.ndarray,
    det_sel: np.ndarray,
    true_sel: np.ndarray,
    true_of_det: np.ndarray,
    det_of_true: np.ndarray,
    bins: np.ndarray,
) -> dict:
    nb = len(bins) - 1
    found = det_of_true >= 0
    found[found] = det_sel[det_of_true[found]]
    matched = (true_of_det >= 0) & det_sel
    t_idx, d_idx = _binned(truth["mag"], bins), _binned(det["MAG_AUTO"], bins)
    n_true = np.bincount(t_idx[true_sel & (t_idx >= 0)], minlength=nb)
    n_found = np.bincount(t_idx[true_sel & found & (t_idx >= 0)], minlength=nb)
    n_det = np.bincount(d_idx[det_sel & (d_idx >= 0)], minlength=nb)
    n_match = np.bincount(d_idx[matched & (d_idx >= 0)], minlength=nb)
    completeness, completeness_err = _fraction(n_found, n_true)
    purity, purity_err = _fraction(n_match, n_det)
    # photometry and sizes of the found true objects, by true magnitude
    pairs = np.flatnonzero(true_sel & found)
    d_of = det_of_true[pairs]
    dmag = det["MAG_AUTO"][d_of] - truth["mag"][pairs]
    galaxy = ~truth["is_star"][pairs] & (truth["r50"][pairs] > 0)
    r50 = np.where(galaxy, truth["r50"][pairs], 1.0)
    size = np.where(galaxy, det["FLUX_RADIUS"][d_of] / r50, np.nan)
    out = {k: [] for k in ("mag_offset_median", "mag_offset_nmad", "mag_offset_err",
                           "n_matched", "size_ratio_median", "n_galaxies")}  # fmt: skip
    bin_of = t_idx[pairs]
    for i in range(nb):
        here = bin_of == i
        med, nmad, err, n = _median_stats(dmag[here & np.isfinite(dmag)])
        out["mag_offset_median"].append(med)
        out["mag_offset_nmad"].append(nmad)
        out["mag_offset_err"].append(err)
        out["n_matched"].append(n)
        sizes = size[here & galaxy & np.isfinite(size)]
        out["size_ratio_median"].append(
            float(np.median(sizes)) if sizes.size else np.nan
        )
        out["n_galaxies"].append(int(sizes.size))
    for key in ("mag_offset_median", "mag_offset_nmad", "mag_offset_err",
                "size_ratio_median"):  # fmt: skip
        out[key] = _list(out[key])
    return {
        "completeness": completeness, "completeness_err": completeness_err,
        "purity": purity, "purity_err": purity_err,
        "n_true": n_true.tolist(), "n_found": n_found.tolist(),
        "n_detected": n_det.tolist(), "n_detected_matched": n_match.tolist(),
        **out,
    }  # fmt: skip


def _check(detections, truth, det_keep, true_keep) -> tuple[np.ndarray, np.ndarray]:
    names = detections.dtype.names or ()
    need = ("XWIN_IMAGE", "YWIN_IMAGE", "MAG_AUTO", "FLUX_RADIUS", "FLAGS")
    missing = [c for c in need if c not in names]
    if missing:
        raise InputError("catalogue", f"lacks columns {missing}")
    det_keep = np.asarray(det_keep, bool)
    true_keep = np.asarray(true_keep, bool)
    if det_keep.shape != (len(detections),) or true_keep.shape != (len(truth),):
        raise InputError("selection", "one flag per detection and per true object")
    return det_keep, true_keep


def _per_selection(detections, truth, det_keep, true_keep, matches, bins) -> dict:
    out = {}
    for name in SELECTIONS:
        sel = det_keep & (detections["FLAGS"] == 0) if name == "flags0" else det_keep
        out[name] = _selection_diagnostics(detections, truth, sel, true_keep,
                                           *matches, bins)  # fmt: skip
    return out


def diagnostics(
    detections: np.ndarray,
    truth: np.ndarray,
    det_keep: np.ndarray,
    true_keep: np.ndarray,
    bins: np.ndarray = MAG_BINS,
    radius: float = MATCH_RADIUS_PX,
    ranges: Sequence[tuple[float, float]] = SUMMARY_RANGES,
) -> dict:
    """Completeness, purity, photometry and sizes per magnitude bin.

    ``detections``: the SExtractor catalogue (``XWIN_IMAGE``, ``YWIN_IMAGE``,
    ``MAG_AUTO``, ``FLUX_RADIUS``, ``FLAGS``), all rows (every detection takes
    part in the matching); ``det_keep``: the detections that count (measured,
    off masked pixels, in the half compared); ``truth``: :func:`true_objects`;
    ``true_keep``: the true objects that count (on unmasked pixels, in the
    half). Returns ``{"mag_bins": edges, "match_radius_px": radius,
    "flags0": {...}, "all": {...}, "summary": {...}}``: lists per bin (see the
    module docstring) and, in ``summary``, the same numbers over each range of
    ``ranges`` (``{"flags0": {"24-25": {"completeness": ...}}}``).
    """
    det_keep, true_keep = _check(detections, truth, det_keep, true_keep)
    matches = match(detections["XWIN_IMAGE"], detections["YWIN_IMAGE"],
                    truth["X"], truth["Y"], radius)  # fmt: skip
    out: dict = {"mag_bins": [float(b) for b in bins], "match_radius_px": radius}
    out.update(_per_selection(detections, truth, det_keep, true_keep, matches, bins))
    summary: dict = {name: {} for name in SELECTIONS}
    for lo, hi in ranges:
        one = _per_selection(detections, truth, det_keep, true_keep, matches,
                             np.array([lo, hi]))  # fmt: skip
        for name in SELECTIONS:
            summary[name][f"{lo:g}-{hi:g}"] = {k: v[0] for k, v in one[name].items()}
    out["summary"] = summary
    return out


def mag_offsets(
    detections: np.ndarray,
    truth: np.ndarray,
    det_keep: np.ndarray,
    true_keep: np.ndarray,
    radius: float = MATCH_RADIUS_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """(true magnitude, ``MAG_AUTO - mag``) of the matched pairs of selected
    ``FLAGS == 0`` detections and selected true objects: the input of
    :func:`hscsim_utils.numerics.realism_stats.median_relation`."""
    _, det_of_true = match(detections["XWIN_IMAGE"], detections["YWIN_IMAGE"],
                           truth["X"], truth["Y"], radius)  # fmt: skip
    keep = np.asarray(det_keep, bool) & (detections["FLAGS"] == 0)
    found = np.flatnonzero(np.asarray(true_keep, bool) & (det_of_true >= 0))
    found = found[keep[det_of_true[found]]]
    d = det_of_true[found]
    true_mag = np.asarray(truth["mag"][found], np.float64)
    return true_mag, np.asarray(detections["MAG_AUTO"][d], np.float64) - true_mag
