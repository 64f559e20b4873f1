"""Render the DEMO tile (simulated) with GalSBI and ufig.

Runs ``galsbi.GalSBI(model)(mode="config_file", ...)`` with
``hscsim_utils.demo.ufig_config`` in a scratch folder and returns the image and
the input catalogues ufig wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from hscsim_utils.errors import ToolError
from hscsim_utils.hsc.skymap import PatchGeometry
from hscsim_utils.runfolder import read_dataset

CONFIG_MODULE = "hscsim_utils.demo.ufig_config"
RUN_NAME = "demo"


@dataclass
class RenderInputs:
    """Files and numbers ufig needs for one demo rendering."""

    sysmaps: Path
    psf_model: Path
    besancon_map: Path
    gaia: Path
    gain: float  # effective gain (mean gain x mean n_exp), e-/ADU
    n_exp: float
    saturation_adu: float
    seed: int
    posterior_index: int
    galaxy_model: str = "Moser+24"

    @property
    def stars_mag_min(self) -> float:
        """Brightest star magnitude whose photon count fits ufig's int32 counters.

        ufig stores photons per object as int32 (``single_band_setup``); brighter
        stars would wrap around to negative counts. A factor-2 margin is kept.
        """
        return 27.0 - 2.5 * math.log10((2**31 - 1) / (2.0 * self.gain))


@dataclass
class RenderResult:
    """ufig's image (ADU, float64) and its galaxy and star input catalogues."""

    image: np.ndarray
    galaxies: np.ndarray
    stars: np.ndarray


def ufig_parameters(geom: PatchGeometry, inputs: RenderInputs) -> dict:
    """Keyword arguments that adapt the config module to this patch."""
    return {
        "size_x": geom.nx, "size_y": geom.ny,
        "ra0": geom.crval[0], "dec0": geom.crval[1],
        "crpix_ra": geom.crpix[0], "crpix_dec": geom.crpix[1],
        "filepath_sysmaps_dict": {"i": str(inputs.sysmaps)},
        "filepath_psfmodel_input_dict": {"i": str(inputs.psf_model)},
        "besancon_map_path": str(inputs.besancon_map),
        "filepath_gaia": str(inputs.gaia),
        "gain_dict": {"i": float(inputs.gain)},
        "n_exp_dict": {"i": float(inputs.n_exp)},
        "saturation_level_dict": {"i": float(inputs.saturation_adu)},
        "seed": int(inputs.seed),
        "stars_mag_min": max(8.0, inputs.stars_mag_min),
    }  # fmt: skip


def render(geom: PatchGeometry, inputs: RenderInputs, work_dir: Path) -> RenderResult:
    """Run GalSBI + ufig for the patch; read back the image and catalogues."""
    from hscsim_utils.compat.galsbi import import_galsbi
    from hscsim_utils.compat.ufig_psf import import_psf_estimation

    import_galsbi()
    from galsbi import GalSBI

    import_psf_estimation()  # add_psf imports it: keep TensorFlow out

    work_dir.mkdir(parents=True, exist_ok=True)
    name = str(work_dir / RUN_NAME)
    model = GalSBI(inputs.galaxy_model, verbosity="warning")
    model(
        mode="config_file",
        config_file=CONFIG_MODULE,
        model_index=int(inputs.posterior_index),
        file_name=name,
        **ufig_parameters(geom, inputs),
    )
    prefix = f"{name}_{inputs.posterior_index}_i"
    image_path = Path(f"{prefix}_image.fits")
    if not image_path.is_file():
        raise ToolError(f"ufig wrote no image {image_path}")
    image = fits.getdata(image_path).astype(np.float64)
    return RenderResult(
        image,
        _read_catalog(Path(f"{prefix}_ucat.gal.cat")),
        _read_catalog(Path(f"{prefix}_ucat.star.cat")),
    )


def _read_catalog(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ToolError(f"ufig wrote no catalogue {path}")
    return read_dataset(path, "data")
