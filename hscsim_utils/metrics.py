"""The run folder's ``metrics.json``: one section per producer, never shared.

Sections and who writes them:

- ``quality`` (stage 07): ``realism``, the baseline simulation against the data
  on the scoring half (every statistic with its noise floor in ``statistics``),
  ``truth``, the detections of simulation and (DEMO) data against their true
  objects, and, for a DEMO tile, ``closure``, every stage's product against the
  truth;
- ``psf_finetune`` (stage 08): the PSF measured on a simulation minus its input
  over the stars of the scoring half, ``before`` (baseline simulation, no
  adjustment) and ``after`` (the simulation with the improved PSF model,
  adjustment applied), and the adjustment (fitted on the tuning half);
- ``background_finetune`` (stage 09): ``realism`` of every simulation of its
  steps, side by side (scoring half);
- ``timing`` (the chain runner): wall time and peak memory of every stage.

A stage writes its own section whole (:func:`write_section`: no key of an earlier
run survives) and never touches another's. Every block of numbers that describes a
simulation says which one (``simulation``: its folder relative to the run folder,
e.g. ``sim/baseline``) and, for realism, what it is compared with (``data``:
``"DEMO"`` or ``"REAL"``); see :func:`realism_block`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hscsim_utils.atomic import write_json

#: Sections written by the stages (by stage name); ``timing`` is the runner's.
STAGE_SECTIONS = ("quality", "psf_finetune", "background_finetune")
TIMING_SECTION = "timing"
#: Keys of a realism block besides its numbers.
BLOCK_KEYS = ("simulation", "data")
#: Numbers of a realism block (the schema test checks them).
REALISM_KEYS = (
    "bkg_std_ratio", "bkg_ks", "mag_auto_ks", "flux_radius_ks", "ellipticity_ks",
    "n_detect_ratio", "psf_fwhm_max_abs_diff",
)  # fmt: skip
CLOSURE_KEYS = (
    "expt_map_max_abs_diff", "pointings_mismatch_pixels", "bsig_median_rel_err",
    "bsig_rms_rel_err",
    "mask_mismatch_pixels", "star_detect_frac", "psf_fwhm_bias_frac",
    "psf_fwhm_rms_frac", "psf_e1_rms", "psf_e2_rms", "psf_flux_ratio_rms",
)  # fmt: skip


#: Targets of the DEMO closure metrics (stage 07): ``key: (kind, target)`` with
#: kind "abs" (|value| at most target) or "min" (value at least target). Exact
#: maps and masks, the background noise map within 3% per pixel, 95% of the true
#: stars found, and the PSF within 1% (FWHM bias), 2% (FWHM rms) and 0.01 (e1,
#: e2 rms) of the truth.
CLOSURE_TARGETS: dict[str, tuple[str, float]] = {
    "expt_map_max_abs_diff": ("abs", 0.0),
    "pointings_mismatch_pixels": ("abs", 0),
    "mask_mismatch_pixels": ("abs", 0),
    "bsig_median_rel_err": ("abs", 0.01),
    "bsig_rms_rel_err": ("abs", 0.03),
    "star_detect_frac": ("min", 0.95),
    "psf_fwhm_bias_frac": ("abs", 0.01),
    "psf_fwhm_rms_frac": ("abs", 0.02),
    "psf_e1_rms": ("abs", 0.01),
    "psf_e2_rms": ("abs", 0.01),
}


def closure_verdict(key: str, value: float | None) -> str | None:
    """``target ...: met`` or ``missed`` for a closure metric; None without a
    target or a value."""
    if key not in CLOSURE_TARGETS or value is None:
        return None
    kind, target = CLOSURE_TARGETS[key]
    if kind == "min":
        return f"target >= {target}: {'met' if value >= target else 'missed'}"
    return f"target |x| <= {target}: {'met' if abs(value) <= target else 'missed'}"


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Contents of ``metrics.json`` (empty when absent)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def read_section(path: str | os.PathLike, section: str) -> dict[str, Any]:
    """One section of ``metrics.json`` (empty when absent)."""
    return dict(read_metrics(path).get(section, {}))


def write_section(
    path: str | os.PathLike, section: str, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Replace ``section`` of ``metrics.json`` by ``values``, atomically.

    The other sections are kept as they are. Returns the whole file's contents.
    """
    data = read_metrics(path)
    data[section] = dict(values)
    write_json(path, data)
    return data


def update_metrics(path: str | os.PathLike, section: str, values: dict) -> dict:
    """Merge ``values`` into ``section`` of ``metrics.json`` and write it atomically.

    For a section that gathers entries one by one (the runner's ``timing``, one
    entry per stage); a stage writes its section whole with :func:`write_section`.
    """
    data = read_metrics(path)
    data.setdefault(section, {}).update(values)
    write_json(path, data)
    return data


def realism_block(
    run_root: str | os.PathLike,
    simulation: str | os.PathLike,
    is_demo: bool,
    values: Mapping[str, Any],
) -> dict[str, Any]:
    """Realism numbers with what they compare: ``simulation`` (the folder of the
    simulation, relative to the run folder ``run_root``) against the ``data``
    (``"DEMO"`` or ``"REAL"``)."""
    return {
        "simulation": relative_path(run_root, simulation),
        "data": "DEMO" if is_demo else "REAL",
        **values,
    }


def relative_path(run_root: str | os.PathLike, path: str | os.PathLike) -> str:
    """``path`` relative to the run folder (POSIX form); absolute when outside."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(run_root).resolve()).as_posix()
    except ValueError:
        return str(path)


def lookup(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value at ``keys`` (e.g. ``("quality", "realism", "bkg_ks")``) or None."""
    value: Any = metrics
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value
