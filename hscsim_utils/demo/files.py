"""The DEMO tile's files in the formats of the real inputs, for every generator.

Both DEMO generators (:mod:`hscsim_utils.demo.build`, rendered with UFig for
closure tests of the pipeline's own engine, and
:mod:`hscsim_utils.demo.independent`, a GalSim forward model) write the same
files: the calexp (HSC PDR3 deepCoadd format), the archive's frame and mosaic
CSVs, a Besancon web-service output, a VizieR Gaia table, ``truth/`` and
``tile.yaml``. Their names, the MASK plane and the archive rows are made here once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from hscsim_utils.demo import observation as obs
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap
from hscsim_utils.hsc.tile import BandFiles, write_tile

__all__ = [
    "SIMULATION_DEFAULTS", "file_names", "mask_plane", "parse_size", "tile_name",
    "write_bands_tile_yaml", "write_coadd_csv", "write_frame_csv", "write_tile_yaml",
    "write_truth_sysmaps",
]  # fmt: skip

#: What the simulation stage uses by default; a DEMO tile uses other values.
SIMULATION_DEFAULTS = {"galaxy_model": "Moser+24", "posterior_index": 0, "seed": 42}


def parse_size(value) -> tuple[int, int]:
    """(NX, NY) from two integers or a string such as '600 600' or '[600, 600]'."""
    if isinstance(value, str):
        value = value.replace("[", " ").replace("]", " ").replace(",", " ").split()
    try:
        nx, ny = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError("size", f"must be (NX, NY), got {value!r}") from None
    return nx, ny


def tile_name(geom: skymap.PatchGeometry, seed: int, kind: str = "demo") -> str:
    """Name of a DEMO tile: generator, patch, size, corner when not centred, seed.

    Tiles of other sizes, areas or seeds get other names (and so other folders
    in a batch), e.g. ``demo-8523-402-2000x2000-seed7``.
    """
    centred = ((skymap.FULL_PATCH - geom.nx) // 2, (skymap.FULL_PATCH - geom.ny) // 2)
    where = "" if geom.offset == centred else "-at{}_{}".format(*geom.offset)
    return f"{kind}-{geom.tract}-{geom.patch_id}-{geom.nx}x{geom.ny}{where}-seed{seed}"


def file_names(geom: skymap.PatchGeometry, band: str = "i") -> dict[str, str]:
    """Names of the files, as the real inputs have them (``band``'s calexp and
    frame and mosaic CSVs, e.g. ``calexp-HSC-G-8523-402.fits``)."""
    stem = f"calexp-HSC-{band.upper()}-{geom.tract}-{geom.patch_id}"
    pixel = f"{demo_stars.BESANCON_PIXEL:04d}"
    return {
        "calexp": f"{stem}.fits",
        "frames": f"{stem}_metadata.csv",
        "coadd": f"{stem}_coadd_metadata.csv",
        "besancon_header": f"besancon/besancon_{pixel}.header",
        "besancon_fits": f"besancon/besancon_{pixel}.fits",
        "gaia": "gaia_dr3_vizier.vot",
    }


def mask_plane(nodata, bright, saturated) -> np.ndarray:
    """The calexp MASK plane: NO_DATA, BRIGHT_OBJECT and SAT (not where no data)."""
    bits = hsc_io.PDR3_MASK_PLANES
    mask = np.zeros(nodata.shape, np.int32)
    mask |= nodata.astype(np.int32) << bits["NO_DATA"]
    mask |= bright.astype(np.int32) << bits["BRIGHT_OBJECT"]
    mask |= (saturated & ~nodata).astype(np.int32) << bits["SAT"]
    return mask


def write_frame_csv(
    path: Path, plan: obs.VisitPlan, frames: obs.FrameTable, seeing: np.ndarray
) -> None:
    """Frame query: one row per CCD frame overlapping the patch (CCD corners);
    ``seeing`` (arcsec) per frame."""
    gains = plan.ccd_gains[frames.ccd]
    data = {}
    for k, corner in enumerate(("ll", "ul", "ur", "lr")):
        data[f"{corner}cra"] = frames.corners_radec[:, k, 0]
        data[f"{corner}cdec"] = frames.corners_radec[:, k, 1]
    data["exptime"] = np.full(len(frames.ccd), obs.EXPTIME_S)
    for a in range(obs.N_AMPS):
        data[f"gain{a + 1}"] = gains[:, a]
    data["seeing"] = np.round(seeing, 4)
    data["visit"] = plan.visit[frames.visit_row]
    hsc_io.write_archive_csv(path, pd.DataFrame(data), hsc_io.FRAME_COLUMNS)


def write_coadd_csv(
    path: Path, geom: skymap.PatchGeometry, seeing: float, e1: float, e2: float
) -> None:
    """Mosaic query: one row for the patch; ``seeing`` (arcsec), ``e1``, ``e2``
    the median coadd PSF."""
    wcs = geom.wcs()
    cx = [0.5, 0.5, geom.nx + 0.5, geom.nx + 0.5]
    cy = [0.5, geom.ny + 0.5, geom.ny + 0.5, 0.5]
    ra, dec = wcs.all_pix2world(cx, cy, 1)
    centre = wcs.all_pix2world([(geom.nx + 1) / 2], [(geom.ny + 1) / 2], 1)
    header = geom.header()
    row: dict[str, list] = {}
    for k, corner in enumerate(("ll", "ul", "ur", "lr")):
        row[f"{corner}cra"] = [float(ra[k])]
        row[f"{corner}cdec"] = [float(dec[k])]
    row.update(
        seeing=[round(float(seeing), 4)],
        zeropt=[hsc_io.ZERO_POINT_AB], zeropt_err=[0.01],
        cd1_1=[header["CD1_1"]], cd1_2=[0.0], cd2_1=[0.0], cd2_2=[header["CD2_2"]],
        crpix1=[geom.crpix[0]], crpix2=[geom.crpix[1]],
        crval1=[geom.crval[0]], crval2=[geom.crval[1]],
        ctype1=["RA---TAN"], ctype2=["DEC--TAN"], cunit1=["deg"], cunit2=["deg"],
        naxis1=[geom.nx], naxis2=[geom.ny],
        ra2000=[float(centre[0][0])], dec2000=[float(centre[1][0])],
        ellipticity=[round(math.hypot(e1, e2), 5)],
        ellipticity_pa=[round(math.degrees(0.5 * math.atan2(e2, e1)), 3)],
    )  # fmt: skip
    hsc_io.write_archive_csv(path, pd.DataFrame(row), hsc_io.COADD_COLUMNS)


def _star_inputs(out: Path, names: dict) -> dict:
    """Tile-file entries of the star inputs, which every band shares."""
    return {
        "besancon_headers": [out / names["besancon_header"]],
        "besancon_catalogs": [out / names["besancon_fits"]],
        "gaia_table": out / names["gaia"],
    }


#: Tile-file entries of every DEMO tile: the simulation's default settings.
DEMO_SETTINGS = {"is_demo": True, **SIMULATION_DEFAULTS}


def write_tile_yaml(out: Path, names: dict, name: str, truth: Path) -> Path:
    """``out/tile.yaml`` of a DEMO tile, with the simulation's default settings."""
    return write_tile(
        out / "tile.yaml",
        {
            "tile_name": name,
            "band": "i",
            "calexp": out / names["calexp"],
            "frame_metadata": out / names["frames"],
            "coadd_metadata": out / names["coadd"],
            **_star_inputs(out, names),
            "truth_dir": truth,
            **DEMO_SETTINGS,
        },
    )


def write_bands_tile_yaml(
    out: Path, band_names: dict[str, dict], name: str, truth: dict[str, Path],
    detection_band: str,
) -> Path:  # fmt: skip
    """``out/tile.yaml`` of a DEMO tile of several bands (the multi-band form):
    ``band_names[band]`` are :func:`file_names` of the band, ``truth[band]`` its
    truth folder."""
    bands = {
        b: BandFiles(out / n["calexp"], out / n["frames"], out / n["coadd"], truth[b])
        for b, n in band_names.items()
    }
    return write_tile(
        out / "tile.yaml",
        {
            "tile_name": name, "bands": bands, "detection_band": detection_band,
            **_star_inputs(out, band_names[detection_band]), **DEMO_SETTINGS,
        },
    )  # fmt: skip


#: HDF5 chunks of the truth's ``map_pointings``: those of stage 01's
#: (``sky_and_sysmaps.pointings_chunks``), so that stage 07 compares the two
#: maps chunk by chunk without decompressing equal chunks.
POINTINGS_CHUNKS = (256, 512)


def write_truth_sysmaps(
    path: Path, datasets: dict, visit_ids: np.ndarray, label: str
) -> Path:
    """``truth/sysmaps.h5``: ``datasets`` maps a name to (array, description);
    ``map_pointings`` holds the visit bitmaps of ``visit_ids``."""
    import h5py

    from hscsim_utils.atomic import atomic_path

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh:
        for name, (data, description) in datasets.items():
            chunks = True
            if name == "map_pointings":
                chunks = tuple(int(c) for c in np.minimum(POINTINGS_CHUNKS, data.shape))
            ds = fh.create_dataset(name, data=data, compression="lzf", chunks=chunks)
            ds.attrs["description"] = description
        fh["map_pointings"].attrs["n_pointings"] = len(visit_ids)
        fh.create_dataset("visit_ids", data=visit_ids)
        fh.attrs["description"] = f"{label}: true systematics maps"
    return path
