"""Every input of a tile checked up front, in seconds, before any stage runs.

Without this, a problem surfaces only when its stage runs: a missing Gaia table
after stage 04, an unknown galaxy model after five stages, a frame CSV of another
patch as a WCS convergence error in stage 01. :func:`check_tile` reads each input
with the stages' own readers and checks that the inputs belong together:

- for each band of the tile, its calexp's headers (its pixels are stage 01's to
  read): complete, HSC, the IMAGE/MASK/VARIANCE layout, ``MP_*`` planes,
  ``FILTER`` of that band, and on the same patch as the detection band's calexp;
- for each band, its frame CSV: readable, and at least one of its CCD frames on
  the band's calexp (a CSV of another patch has none);
- for each band, its mosaic CSV: readable, and its patch centre (``ra2000``,
  ``dec2000``) on the band's calexp;
- the Besançon outputs: each header and catalogue readable, and their lines of
  sight covering every HEALPix pixel (nside 8) the simulation reads for the patch;
- the Gaia table (when given): readable, with stars on the patch;
- the galaxy model: known to the simulation config, its posterior in the cache.

It returns one line per problem, those of one band's files starting with
``band <letter>:``; ``hscsim check-tile`` prints them and exits with status 2 when
there is any, and ``hscsim run`` runs it first.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hscsim_utils.errors import InputError

__all__ = ["check_tile"]


def _try(problems: list[str], check: Callable, *args):
    """Run one check; an :class:`InputError` becomes a problem line."""
    try:
        return check(*args)
    except InputError as err:
        problems.append(str(err))
        return None


def _frames_on_patch(path: Path, wcs, shape: tuple[int, int]) -> None:
    from hscsim_utils.hsc.files import read_frame_metadata

    frames = read_frame_metadata(path)
    ny, nx = shape
    corners = [("llcra", "llcdec"), ("ulcra", "ulcdec"), ("urcra", "urcdec"),
               ("lrcra", "lrcdec")]  # fmt: skip
    ra = np.stack([frames[a].to_numpy(float) for a, _ in corners], axis=1)
    dec = np.stack([frames[d].to_numpy(float) for _, d in corners], axis=1)
    x, y = wcs.wcs_world2pix(ra.ravel(), dec.ravel(), 0)  # TAN: no iteration
    x, y = x.reshape(ra.shape), y.reshape(ra.shape)
    overlap = (x.max(1) >= 0) & (x.min(1) < nx) & (y.max(1) >= 0) & (y.min(1) < ny)
    if not overlap.any():
        raise InputError(
            path,
            f"none of its {len(frames)} frames lies on the calexp (frames of "
            "another patch or band?)",
        )


def _mosaic_on_patch(path: Path, wcs, shape: tuple[int, int]) -> None:
    from hscsim_utils.hsc.files import read_coadd_metadata

    row = read_coadd_metadata(path).iloc[0]
    x, y = wcs.wcs_world2pix(float(row["ra2000"]), float(row["dec2000"]), 0)
    ny, nx = shape
    if not (0 <= x < nx and 0 <= y < ny):
        raise InputError(
            path,
            f"its patch centre (ra2000, dec2000) = ({row['ra2000']:.4f}, "
            f"{row['dec2000']:.4f}) is not on the calexp (another patch?)",
        )


def _besancon_covers(spec, wcs, shape: tuple[int, int]) -> None:
    from hscsim_utils.stages import stars

    have = {}
    for header, catalog in zip(
        spec.besancon_headers, spec.besancon_catalogs, strict=True
    ):
        field = stars.parse_besancon_header(header)
        stars.read_besancon_table(catalog)
        have[stars.galactic_to_pixel(field.l, field.b)] = header
    needed = stars.required_pixels(wcs, shape)
    missing = sorted(set(int(p) for p in needed) - set(have))
    if missing:
        sight = stars.lines_of_sight(np.array(missing))
        where = ", ".join(
            f"pixel {p['pixel']} (l = {p['l']:.3f}, b = {p['b']:.3f})" for p in sight
        )
        raise InputError(
            "besancon_headers",
            f"no Besançon output covers HEALPix (nside 8) {where}: request it from "
            "the Besançon service with these (l, b) and add it to the tile file",
        )


def _gaia_on_patch(path: Path, wcs, shape: tuple[int, int]) -> None:
    from hscsim_utils.stages import stars

    cat, _ = stars.clean_gaia(stars.read_gaia_table(path))
    if not stars.in_patch(cat, wcs, shape).any():
        raise InputError(path, "no Gaia star with complete values lies on the patch")


def _galaxy_model_known(spec) -> None:
    from hscsim_utils.data.provision import available_galaxy_models
    from hscsim_utils.stages.simulate import DEFAULT_CONFIG, known_galaxy_models

    known = known_galaxy_models(DEFAULT_CONFIG)
    if spec.galaxy_model not in known:
        raise InputError("galaxy_model", f"{spec.galaxy_model!r} is not one of {known}")
    if spec.galaxy_model not in available_galaxy_models():
        raise InputError(
            "galaxy_model",
            f"the posterior of {spec.galaxy_model} is not in the data cache: run "
            "`hscsim data` (offline, only Moser+24 can be built)",
        )


def _same_patch(wcs, shape: tuple[int, int], detection, path: Path) -> None:
    """The calexp at ``path`` (``wcs``, ``shape``) covers the same pixels as the
    detection band's calexp (``detection``: its WCS and shape)."""
    det_wcs, det_shape = detection
    ny, nx = shape
    ra, dec = wcs.wcs_pix2world([0, nx - 1], [0, ny - 1], 0)
    x, y = det_wcs.wcs_world2pix(ra, dec, 0)
    if shape != det_shape or np.hypot(x - [0, nx - 1], y - [0, ny - 1]).max() > 0.5:
        raise InputError(
            path,
            f"its {nx} x {ny} px do not lie on the pixels of the detection band's "
            "calexp (another patch?)",
        )


def _check_band(problems: list[str], spec, detection) -> tuple | None:
    """Problems with the files of the band ``spec`` is seen from, each line
    starting with ``band <letter>:``; its calexp's (WCS, shape) or ``None``."""
    from hscsim_utils.hsc.files import calexp_geometry

    found: list[str] = []
    geometry = _try(found, calexp_geometry, spec.calexp, spec.band)
    if geometry is not None:
        if detection is not None:
            _try(found, _same_patch, *geometry, detection, spec.calexp)
        _try(found, _frames_on_patch, spec.frame_metadata, *geometry)
        _try(found, _mosaic_on_patch, spec.coadd_metadata, *geometry)
    problems += [f"band {spec.band}: {line}" for line in found]
    return geometry


def check_tile(tile_file: str | os.PathLike, bands: str | None = None) -> list[str]:
    """Problems with the inputs of ``tile_file``, one line each (empty: all
    fine); ``bands`` (``--bands``): of those bands only."""
    from hscsim_utils.hsc.tile import load_tile

    problems: list[str] = []
    spec = _try(problems, load_tile, tile_file)
    if spec is None:
        return problems
    if bands:
        spec = _try(problems, spec.with_bands, bands, str(tile_file))
        if spec is None:
            return problems
    _try(problems, _galaxy_model_known, spec)
    detection = _check_band(problems, spec, None)
    for band in spec.band_names:
        if band != spec.detection_band:
            _check_band(problems, spec.for_band(band), detection)
    if detection is None:
        return problems  # the other inputs are checked against the calexp
    wcs, shape = detection
    _try(problems, _besancon_covers, spec, wcs, shape)
    if spec.gaia_table is not None:
        _try(problems, _gaia_on_patch, spec.gaia_table, wcs, shape)
    if spec.is_demo and spec.truth_dir is not None and not spec.truth_dir.is_dir():
        problems.append(f"{spec.truth_dir}: truth folder of the DEMO tile not found")
    return problems
