"""What to download from the HSC archive for one patch, computed offline.

``hscsim archive TRACT PATCH`` writes, for each band, the two SQL queries of the
tutorial (the CCD frames of the coadd with their mosaic join, and the mosaic row)
ready to paste into the archive's SQL search, the calexp's path in the archive's
file tree, the (l, b) of exactly the HEALPix pixels (nside 8, RING) whose Besançon
catalogues the simulation reads for the patch, with the web-service settings of
the tutorial, and a tile file per band that points at where each download is
expected; ``README.txt`` says what to do in which order.

The file-tree URL is ``FILE_TREE + <release>/deepCoadd-results/<filter>/<tract>/
<x>,<y>/calexp-<filter>-<tract>-<x>,<y>.fits``: the layout the HSC archives give
for coadds ("deepCoadd-results/[filter]/[tract]/[patch]/calexp-[filter]-[tract]-
[patch].fits, if you follow the file tree", HSC Legacy Archive data page) under
the PDR3 file tree at ``https://hsc-release.mtk.nao.ac.jp/archive/filetree/
pdr3_dud/deepCoadd-results/HSC-I/...`` (the prefix public download scripts use).

All of it follows from the geometry of the HSC rings sky map (120 declination
rings of tracts, 9 x 9 patches of 4000 px plus a 100 px border, 0.168"/px; see
:mod:`hscsim_utils.hsc.skymap`), so it needs no network. ``skymap_id`` is
``tract * 10000 + x * 100 + y`` (``'98130702'`` for tract 9813, patch 7,2).
Downloading needs an HSC-SSP archive account.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hscsim_utils.errors import InputError
from hscsim_utils.hsc.skymap import PatchGeometry

__all__ = ["PatchRequest", "patch_request", "write_request"]

RELEASES = ("pdr3_dud", "pdr3_wide")
FILE_TREE = "https://hsc-release.mtk.nao.ac.jp/archive/filetree/"
#: Frame filters (``filter01``) of each band: HSC's i and r have two generations.
FRAME_FILTERS = {
    "g": ("HSC-G",), "r": ("HSC-R", "HSC-R2"), "i": ("HSC-I", "HSC-I2"),
    "z": ("HSC-Z",), "y": ("HSC-Y",),
}  # fmt: skip
#: Band of the coadd (mosaic table and file names).
COADD_FILTER = {b: f"HSC-{b.upper()}" for b in FRAME_FILTERS}
#: Besançon web-service settings of the tutorial (besides the (l, b) per pixel).
BESANCON_SETTINGS = """\
Besançon model web service (model 2016), one simulation per (l, b) below:
  - photometric system: SDSS + JHK; output format: FITS
  - distance: 0 to 50 kpc; solid angle: 5 square degrees
  - reference band r, limiting magnitude 30; all other magnitude ranges -99 to 99
  - colours r-g, r-i, r-z, r-u each from -10 to 99
  - photometric errors: all zero
Save each result as besancon/besancon_PPPP.header (the text header, with the
"Solid angle" line) and besancon/besancon_PPPP.fits (the table), PPPP the pixel."""


@dataclass(frozen=True)
class PatchRequest:
    """Everything to fetch for one patch in one release."""

    geometry: PatchGeometry  # the full patch and its WCS
    release: str
    bands: tuple[str, ...]
    centre: tuple[float, float]  # RA, Dec (deg) of the patch centre
    pixels: list[tuple[int, float, float]]  # HEALPix pixel, l, b

    @property
    def tract(self) -> int:
        return self.geometry.tract

    @property
    def patch(self) -> tuple[int, int]:
        return self.geometry.patch

    @property
    def skymap_id(self) -> str:
        return str(self.geometry.skymap_id)

    @property
    def patch_name(self) -> str:
        return f"{self.patch[0]},{self.patch[1]}"

    def frames_sql(self, band: str) -> str:
        from hscsim_utils.hsc.files import FRAME_COLUMNS

        columns = ",".join(f"frm.{c}" for c in FRAME_COLUMNS)
        filters = " OR ".join(f"frm.filter01 = '{f}'" for f in FRAME_FILTERS[band])
        return (
            f"SELECT {columns}\n"
            f"FROM {self.release}.frame as frm\n"
            f"JOIN {self.release}.mosaicframe as mosfrm USING (frame_num)\n"
            f"WHERE skymap_id = '{self.skymap_id}' AND ({filters})\n"
        )

    def mosaic_sql(self, band: str) -> str:
        from hscsim_utils.hsc.files import COADD_COLUMNS

        return (
            f"SELECT {', '.join(COADD_COLUMNS)}\n"
            f"FROM {self.release}.mosaic\n"
            f"WHERE skymap_id = '{self.skymap_id}' AND band = '{COADD_FILTER[band]}'\n"
        )

    def calexp_name(self, band: str) -> str:
        return f"calexp-{COADD_FILTER[band]}-{self.tract}-{self.patch_name}.fits"

    def calexp_path(self, band: str) -> str:
        """Path of the calexp in the archive's file tree."""
        return (
            f"{self.release}/deepCoadd-results/{COADD_FILTER[band]}/{self.tract}/"
            f"{self.patch_name}/{self.calexp_name(band)}"
        )


def _parse_patch(patch: str | tuple[int, int]) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in str(patch).strip("() ").split(","))
    except ValueError:
        raise InputError("patch", f"{patch!r} is not 'x,y' (e.g. 7,2)") from None
    if not (0 <= x < 9 and 0 <= y < 9):
        raise InputError("patch", f"{patch!r}: x and y run from 0 to 8")
    return x, y


def patch_request(
    tract: int,
    patch: str | tuple[int, int],
    bands: str | tuple[str, ...] = ("i",),
    release: str = "pdr3_dud",
) -> PatchRequest:
    """The downloads of ``tract``/``patch`` (``"x,y"``) in ``bands`` of ``release``."""
    from hscsim_utils.hsc.skymap import FULL_PATCH, patch_geometry
    from hscsim_utils.stages import stars

    if isinstance(bands, str):
        bands = tuple(b.strip() for b in bands.split(",") if b.strip())
    unknown = [b for b in bands if b not in FRAME_FILTERS]
    if unknown or not bands:
        raise InputError("bands", f"{bands}: choose among g, r, i, z, y")
    if release not in RELEASES:
        raise InputError("release", f"{release!r} is not one of {RELEASES}")
    xy = _parse_patch(patch)
    size = FULL_PATCH
    geom = patch_geometry((size, size), tract=int(tract), patch=xy)
    wcs = geom.wcs()
    ra, dec = wcs.all_pix2world((size - 1) / 2, (size - 1) / 2, 0)
    needed = stars.required_pixels(wcs, (size, size))
    sight = stars.lines_of_sight(needed)
    pixels = [(int(p["pixel"]), float(p["l"]), float(p["b"])) for p in sight]
    return PatchRequest(geom, release, tuple(bands), (float(ra), float(dec)), pixels)


def _tile_fields(req: PatchRequest, band: str) -> dict:
    folder = Path(band)
    return {
        "tile_name": f"{req.release}-{req.tract}-{req.patch_name}-{band}",
        "band": band,
        "calexp": folder / req.calexp_name(band),
        "frame_metadata": folder / "frames.csv",
        "coadd_metadata": folder / "mosaic.csv",
        "besancon_headers": [Path(f"besancon/besancon_{p:04d}.header")
                             for p, _, _ in req.pixels],
        "besancon_catalogs": [Path(f"besancon/besancon_{p:04d}.fits")
                              for p, _, _ in req.pixels],
        "gaia_table": Path("gaia_dr3_vizier.vot"),
        "is_demo": False,
    }  # fmt: skip


def _readme(req: PatchRequest) -> str:
    lines = [
        f"HSC tract {req.tract}, patch {req.patch_name} ({req.release}), "
        f"skymap_id {req.skymap_id}",
        f"patch centre RA {req.centre[0]:.5f}, Dec {req.centre[1]:.5f} (deg)",
        "",
        "The HSC-SSP data archive needs an account (https://hsc-release.mtk.nao.ac.jp/).",
        "Do, in this order, for each band B below:",
        "  1. SQL search: paste B/frames.sql, run it, download the result as CSV to",
        "     B/frames.csv (one row per CCD frame of the coadd).",
        "  2. SQL search: paste B/mosaic.sql, download the CSV to B/mosaic.csv.",
        "  3. File tree: download the calexp named in B/calexp_url.txt into B/.",
        "Then once for all bands:",
        "  4. Besançon: run one simulation per line of besancon_lines_of_sight.txt",
        "     (settings in that file) and save them as it says.",
        "  5. Gaia (optional when online: stage 04 queries VizieR I/355/gaiadr3): a",
        "     VOTable of I/355/gaiadr3 (Source, RAJ2000, DEJ2000, Gmag) around the",
        "     patch centre, radius 0.3 deg, saved as gaia_dr3_vizier.vot.",
        "  6. hscsim check-tile tile_B.yaml   (every input, in seconds)",
        "  7. hscsim run --tile tile_B.yaml --out runs/B",
        "",
        f"bands: {', '.join(req.bands)}",
    ]
    return "\n".join(lines) + "\n"


def write_request(req: PatchRequest, out_dir: str | os.PathLike) -> Path:
    """Write the queries, paths, Besançon lines of sight, tile files and README."""
    from hscsim_utils.atomic import atomic_path
    from hscsim_utils.hsc.tile import write_tile

    out = Path(out_dir).resolve()

    def write(path: Path, text: str) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(text)

    for band in req.bands:
        write(out / band / "frames.sql", req.frames_sql(band))
        write(out / band / "mosaic.sql", req.mosaic_sql(band))
        write(out / band / "calexp_url.txt",
              f"{FILE_TREE}{req.calexp_path(band)}\n")  # fmt: skip
        fields = {
            k: (out / v if isinstance(v, Path) else
                [out / p for p in v] if isinstance(v, list) else v)
            for k, v in _tile_fields(req, band).items()
        }  # fmt: skip
        write_tile(out / f"tile_{band}.yaml", fields)
    sight = "\n".join(
        f"pixel {p:4d}: l = {gl:9.4f}, b = {gb:9.4f}" for p, gl, gb in req.pixels
    )
    write(out / "besancon_lines_of_sight.txt", f"{BESANCON_SETTINGS}\n\n{sight}\n")
    write(out / "README.txt", _readme(req))
    return out / "README.txt"
