"""The run folder's ``metrics.json``: one section per producer, merged atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hscsim_utils.atomic import write_json

#: Keys that stage 07 must write (the schema test checks them).
REALISM_KEYS = (
    "bkg_std_ratio", "bkg_ks", "mag_auto_ks", "flux_radius_ks", "ellipticity_ks",
    "n_detect_ratio", "psf_fwhm_max_abs_diff",
)  # fmt: skip
CLOSURE_KEYS = (
    "expt_map_max_abs_diff", "pointings_mismatch_pixels", "bsig_median_rel_err",
    "mask_mismatch_pixels", "star_detect_frac", "psf_fwhm_bias_frac",
    "psf_fwhm_rms_frac", "psf_e1_rms", "psf_e2_rms", "psf_flux_ratio_rms",
)  # fmt: skip


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    """Contents of ``metrics.json`` (empty when absent)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else {}


def update_metrics(path: str | os.PathLike, section: str, values: dict) -> dict:
    """Merge ``values`` into ``section`` of ``metrics.json`` and write it atomically."""
    data = read_metrics(path)
    data.setdefault(section, {}).update(values)
    write_json(path, data)
    return data
