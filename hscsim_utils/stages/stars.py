"""Stage 04: star catalogues for the simulation (Besançon model and Gaia DR3).

Besançon: the web service returns, per HEALPix pixel (nside 8) around the tile,
a header text (with the galactic ``l``, ``b`` of the line of sight and the solid
angle simulated) and a FITS table with ``r`` and the colours ``r-g``, ``r-i``,
``r-z``, ``r-u``. They are combined into the HDF5 file ufig's
``draw_stars_besancon_map`` reads::

    nside             int64 scalar (8)
    simulation_area   float64 scalar, deg^2 the stored stars stand for
    healpix_mask      float64 (12 nside^2,), stars stored per pixel, UNSEEN elsewhere
    healpix_list/NNNN structured float64 g, r, i, z, y; one per pixel, RING order

ufig looks pixels up with ``healpy.ang2pix`` in RING order (theta, phi from RA,
Dec), so every pixel index here is RING. Pixels without a catalogue get an empty
``healpix_list`` dataset, so that ufig's whole-map loader finds every pixel.

Gaia: ufig's ``besancon_gaia_splice`` places the brightest simulated stars at
Gaia positions; it reads the dataset ``data`` with fields ``ra``, ``dec``,
``phot_g_mean_mag``, ``id``.

Reads the tile's ``calexp`` (of its ``band``), ``besancon_headers``,
``besancon_catalogs``, ``gaia_table``, ``is_demo`` (which Gaia source) and
``seed`` (of the subsampling); writes the products ``besancon`` and ``gaia``.
Entry point: :func:`run`; the figures are in
:mod:`hscsim_utils.stages.stars_plots`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import healpy as hp
import numpy as np
from astropy.wcs import WCS

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError, ToolError
from hscsim_utils.hsc.files import Calexp, read_calexp
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import registry

if TYPE_CHECKING:
    from astropy.table import Table

STAGE = registry.spec("stars")
NSIDE_BESANCON = 8
BESANCON_BANDS = ("g", "r", "i", "z", "y")
BESANCON_COLUMNS = ("r", "r-g", "r-i", "r-z")
GAIA_CATALOG = "I/355/gaiadr3"
VIZIER_COLUMNS = ("Source", "RAJ2000", "DEJ2000", "Gmag")
GAIA_DTYPE = np.dtype(
    [("ra", "f8"), ("dec", "f8"), ("phot_g_mean_mag", "f4"), ("id", "i8")]
)
#: Values of ``gaia_source``; empty: ``local`` for the demo tile, else ``auto``.
GAIA_SOURCES = ("", "auto", "vizier", "local")
_BESANCON_DTYPE = np.dtype([(b, "f8") for b in BESANCON_BANDS])
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_HEADER_PATTERNS = {
    "l": re.compile(rf"(?<![\w.])l\s*=\s*{_NUM}", re.IGNORECASE),
    "b": re.compile(rf"(?<![\w.])b\s*=\s*{_NUM}", re.IGNORECASE),
    "solid angle": re.compile(
        rf"solid\s*angle\s*(?:\([^)]*\))?\s*[:=]?\s*{_NUM}", re.IGNORECASE
    ),
}


@dataclass(frozen=True)
class Params:
    """Settings of stage 04: the parameters of its notebook."""

    area_store: float = 2.0  # deg^2 of stars stored per HEALPix pixel (tutorial: 2)
    gaia_source: str = ""  # auto, vizier or local; empty: local for the demo, else auto
    gaia_table: str = ""  # local Gaia table; empty: the gaia_table of the tile file
    gaia_timeout: float = 10.0  # seconds before VizieR counts as unreachable

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> InputError:
            value = getattr(self, name)
            return InputError(f"{STAGE.name}.{name}", f"{allowed}, got {value!r}")

        for name in ("area_store", "gaia_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "must be a number")
            if not (np.isfinite(value) and value > 0):
                raise bad(name, "must be finite and positive")
        if self.gaia_source not in GAIA_SOURCES:
            raise bad("gaia_source", "must be auto, vizier, local or empty")
        if not isinstance(self.gaia_table, str):
            raise bad("gaia_table", "must be a path or empty")


@dataclass(frozen=True)
class BesanconField:
    """Line of sight of one Besançon simulation."""

    l: float  # noqa: E741 (galactic longitude, deg)
    b: float  # galactic latitude, deg
    solid_angle: float  # deg^2


def parse_besancon_header(path: str | os.PathLike) -> BesanconField:
    """Galactic l, b and solid angle from a Besançon output header.

    Values are found by pattern (``l = 170.0``, ``b = -60.0``, ``Solid angle
    5.0``), wherever they sit in the text, not by token position.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Besançon header not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    values = {}
    for name, pattern in _HEADER_PATTERNS.items():
        match = pattern.search(text)
        if match is None:
            raise InputError(path, f"Besançon header has no {name} value")
        values[name] = float(match.group(1))
    field = BesanconField(values["l"], values["b"], values["solid angle"])
    if not (-90 <= field.b <= 90 and -360 <= field.l <= 360 and field.solid_angle > 0):
        raise InputError(path, f"implausible line of sight {field}")
    return field


def galactic_to_pixel(l: float, b: float, nside: int = NSIDE_BESANCON) -> int:  # noqa: E741
    """RING HEALPix pixel (equatorial) of a galactic position."""
    from astropy.coordinates import SkyCoord
    from ufig.coordinate_util import radec2pix

    icrs = SkyCoord(l, b, frame="galactic", unit="deg").icrs
    return int(radec2pix(icrs.ra.deg, icrs.dec.deg, nside))


def read_besancon_table(path: str | os.PathLike) -> np.ndarray:
    """Besançon FITS table as g, r, i, z, y magnitudes (rows with NaN dropped).

    The service gives ``r`` and colours ``r-X``, so ``X = r - (r-X)``. There is
    no y band among its SDSS filters: y is set to z as the closest available
    proxy (the tutorial does the same, silently, by reusing ``r-z``).
    """
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Besançon catalogue not found")
    try:
        data = fits.getdata(path, ext=1)
    except (OSError, IndexError, ValueError) as err:
        raise InputError(path, f"not a FITS table ({err})") from None
    names = {n.lower(): n for n in (data.dtype.names or ())}
    missing = [c for c in BESANCON_COLUMNS if c not in names]
    if missing:
        raise InputError(path, f"Besançon table lacks columns {missing}")
    col = {c: np.asarray(data[names[c]], float) for c in BESANCON_COLUMNS}
    cat = np.empty(len(data), _BESANCON_DTYPE)
    cat["r"] = col["r"]
    for band in ("g", "i", "z"):
        cat[band] = col["r"] - col[f"r-{band}"]
    cat["y"] = cat["z"]  # no y band in the SDSS set: z is the nearest proxy
    finite = np.all([np.isfinite(cat[b]) for b in BESANCON_BANDS], axis=0)
    return cat[finite]


def subsample(
    cat: np.ndarray, area_store: float, solid_angle: float, rng: np.random.Generator
) -> np.ndarray:
    """Keep ``area_store / solid_angle`` of the stars (the stored area's share)."""
    n_keep = int(len(cat) * area_store / solid_angle)
    index = rng.choice(len(cat), n_keep, replace=n_keep > len(cat))
    return cat[index]


def tile_pixels(ra: float, dec: float, nside: int = NSIDE_BESANCON) -> np.ndarray:
    """RING pixel of the tile centre and its (up to 8) neighbours, as the tutorial."""
    from ufig.coordinate_util import radec2pix

    centre = int(radec2pix(ra, dec, nside))
    neighbours = hp.get_all_neighbours(nside, centre)
    return np.unique(np.concatenate([[centre], neighbours[neighbours >= 0]]))


def lines_of_sight(pixels: np.ndarray, nside: int = NSIDE_BESANCON) -> np.ndarray:
    """Galactic (l, b) of pixel centres: the positions to request from the service."""
    from astropy.coordinates import SkyCoord
    from ufig.coordinate_util import thetaphi2radec

    ra, dec = thetaphi2radec(*hp.pix2ang(nside, np.asarray(pixels)))
    gal = SkyCoord(ra, dec, unit="deg", frame="icrs").galactic
    out = np.empty(len(ra), [("pixel", "i8"), ("l", "f8"), ("b", "f8")])
    out["pixel"], out["l"], out["b"] = pixels, gal.l.deg, gal.b.deg
    return out


def required_pixels(
    wcs: WCS,
    shape: tuple[int, int],
    nside: int = NSIDE_BESANCON,
    nside_sampling: int = 1024,
) -> np.ndarray:
    """RING pixels whose catalogues ufig reads for this image.

    ufig's ``besancon_gaia_splice`` samples stars in the nside_sampling pixels
    overlapping the image (``coordinate_util.get_healpix_pixels``) and takes
    each one's catalogue from the Besançon pixel containing its centre.
    """
    from ufig.coordinate_util import get_healpix_pixels

    ny, nx = shape
    sampling = get_healpix_pixels(nside_sampling, wcs, nx, ny)
    theta, phi = hp.pix2ang(nside_sampling, sampling)
    return np.unique(hp.ang2pix(nside, theta, phi))


def build_besancon_map(
    headers: list[Path],
    catalogs: list[Path],
    path: str | os.PathLike,
    area_store: float = 2.0,
    seed: int = 42,
    nside: int = NSIDE_BESANCON,
    required: np.ndarray | None = None,
) -> dict:
    """Write ufig's Besançon HDF5 from header/FITS pairs; return a summary.

    Each pixel's subsample is drawn with a generator seeded by (seed, pixel), so
    it does not depend on the order of the inputs. ``required`` pixels (those the
    tile touches) must each have a catalogue.
    """
    from tqdm import tqdm

    if not headers or len(headers) != len(catalogs):
        raise InputError("besancon_headers", "need one catalogue per header (and >=1)")
    if not (np.isfinite(area_store) and area_store > 0):
        raise InputError("area_store", f"must be positive, got {area_store}")
    stored: dict[int, np.ndarray] = {}
    sources: dict[int, Path] = {}
    for header, table in tqdm(
        list(zip(headers, catalogs, strict=True)), desc="Besançon"
    ):
        field = parse_besancon_header(header)
        ipix = galactic_to_pixel(field.l, field.b, nside)
        if ipix in stored:
            raise InputError(header, f"pixel {ipix} already given by {sources[ipix]}")
        rng = np.random.default_rng([seed, ipix])
        stored[ipix] = subsample(
            read_besancon_table(table), area_store, field.solid_angle, rng
        )
        sources[ipix] = Path(header)
    wanted = [] if required is None else np.atleast_1d(required).tolist()
    missing = sorted(set(wanted) - set(stored))
    if missing:
        raise InputError(
            "besancon_headers",
            f"no Besançon catalogue for HEALPix pixels {missing} (nside {nside}, RING) "
            f"that the tile covers; given pixels {sorted(stored)}; request "
            + ", ".join(
                f"l = {p['l']:.3f}, b = {p['b']:.3f} (pixel {p['pixel']})"
                for p in lines_of_sight(np.array(missing), nside)
            )
            + " from the Besançon service",
        )
    _write_besancon(path, stored, area_store, nside)
    return {"pixels": sorted(stored), "n_stars": {p: len(c) for p, c in stored.items()}}


def _write_besancon(
    path, stored: dict[int, np.ndarray], area: float, nside: int
) -> None:
    npix = hp.nside2npix(nside)
    mask = np.full(npix, hp.UNSEEN)
    for ipix, cat in stored.items():
        mask[ipix] = len(cat)
    empty = np.empty(0, _BESANCON_DTYPE)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh5:
        fh5.create_dataset("nside", data=np.int64(nside))
        fh5.create_dataset("simulation_area", data=np.float64(area))
        fh5.create_dataset("healpix_mask", data=mask)
        group = fh5.create_group("healpix_list")
        for ipix in range(npix):
            group.create_dataset(f"{ipix:04d}", data=stored.get(ipix, empty))


def read_besancon_map(path: str | os.PathLike) -> dict:
    """Read the Besançon HDF5 back: nside, simulation_area, mask, filled pixels."""
    with h5py.File(path, "r") as fh5:
        out = {
            "nside": int(fh5["nside"][()]),
            "simulation_area": float(fh5["simulation_area"][()]),
            "healpix_mask": fh5["healpix_mask"][()],
        }
        group = fh5["healpix_list"]
        out["catalogs"] = {int(k): group[k][()] for k in group if len(group[k])}
    return out


# --- Gaia -----------------------------------------------------------------------


def query_gaia_vizier(
    ra: float, dec: float, radius_deg: float, timeout: float = 10.0
) -> Table:
    """Gaia DR3 stars from VizieR within ``radius_deg``; raises on network failure."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.table import Table
    from astroquery.vizier import Vizier

    vizier = Vizier(columns=list(VIZIER_COLUMNS), row_limit=-1, timeout=timeout)
    result = vizier.query_region(
        SkyCoord(ra, dec, unit="deg", frame="icrs"),
        radius=radius_deg * u.deg,
        catalog=GAIA_CATALOG,
        cache=False,
    )
    return result[0] if len(result) else Table(names=VIZIER_COLUMNS)


def read_gaia_table(path: str | os.PathLike) -> Table:
    """A local Gaia table with VizieR's columns (VOTable or any astropy format).

    ufig's own HDF5 layout (dataset ``data`` with ra, dec, phot_g_mean_mag, id) is
    accepted too and renamed to VizieR's columns.
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "Gaia table not found")
    if h5py.is_hdf5(path):
        data = read_dataset(path, "data")
        names = dict(
            zip(GAIA_DTYPE.names, ("RAJ2000", "DEJ2000", "Gmag", "Source"), strict=True)
        )
        table = Table(data)
        for old, new in names.items():
            if old in table.colnames:
                table.rename_column(old, new)
    else:
        try:
            table = Table.read(path)
        except Exception as err:  # astropy raises many types for unreadable files
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise InputError(
                path, f"not a readable table ({type(err).__name__}: {reason})"
            ) from None
    missing = [c for c in VIZIER_COLUMNS if c not in table.colnames]
    if missing:
        raise InputError(path, f"Gaia table lacks columns {missing}")
    return table


def clean_gaia(table: Table) -> tuple[np.ndarray, int]:
    """ufig's Gaia layout from a VizieR-column table; rows with NaN removed.

    Returns the catalogue and the number of rows removed.
    """
    cols = {
        c: np.ma.filled(np.ma.asarray(table[c]).astype(float), np.nan)
        for c in VIZIER_COLUMNS
    }
    good = np.all([np.isfinite(v) for v in cols.values()], axis=0)
    cat = np.empty(int(good.sum()), GAIA_DTYPE)
    cat["ra"] = cols["RAJ2000"][good]
    cat["dec"] = cols["DEJ2000"][good]
    cat["phot_g_mean_mag"] = cols["Gmag"][good]
    cat["id"] = np.ma.filled(np.ma.asarray(table["Source"]), -1)[good]
    return cat, int(len(good) - good.sum())


def in_patch(
    cat: np.ndarray, wcs: WCS, shape: tuple[int, int], margin: float = 50.0
) -> np.ndarray:
    """Boolean selection of stars inside the image (plus ``margin`` pixels)."""
    x, y = wcs.all_world2pix(cat["ra"], cat["dec"], 0)
    ny, nx = shape
    return (x >= -margin) & (x < nx + margin) & (y >= -margin) & (y < ny + margin)


def patch_circle(wcs: WCS, shape: tuple[int, int]) -> tuple[float, float, float]:
    """Centre RA, Dec and the query radius (the patch diagonal, as the tutorial)."""
    ny, nx = shape
    ra, dec = wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
    scale = np.sqrt(np.abs(np.linalg.det(wcs.pixel_scale_matrix)))
    return float(ra), float(dec), float(np.hypot(nx, ny) * scale)


def choose_gaia_source(requested: str, is_demo: bool) -> str:
    """``requested`` if given; else ``local`` for the demo tile, ``auto`` otherwise.

    The demo sky is simulated: real Gaia stars at its coordinates would not match
    its stars, so the demo uses the table it ships with.
    """
    return requested or ("local" if is_demo else "auto")


def gaia_stars(
    wcs: WCS,
    shape: tuple[int, int],
    table: str | os.PathLike | None = None,
    source: str = "auto",
    timeout: float = 10.0,
    margin: float = 50.0,
) -> tuple[np.ndarray, str]:
    """Gaia DR3 stars in the patch; returns (catalogue, description of the source).

    ``source``: ``"vizier"`` queries VizieR, ``"local"`` reads ``table``,
    ``"auto"`` queries VizieR and falls back to ``table`` when it is unreachable.
    """
    if source not in ("auto", "vizier", "local"):
        raise InputError(
            "gaia_source", f"must be auto, vizier or local, not {source!r}"
        )
    ra, dec, radius = patch_circle(wcs, shape)
    origin = f"VizieR {GAIA_CATALOG} around ({ra:.4f}, {dec:.4f}), r={radius:.3f} deg"
    result, note = None, ""
    if source in ("auto", "vizier"):
        try:
            result = query_gaia_vizier(ra, dec, radius, timeout)
        except Exception as err:  # any network or service failure: fall back
            if source == "vizier":
                raise ToolError(f"{origin} failed: {err}") from None
            if table is None:
                raise InputError(
                    "gaia_table", f"{origin} failed ({err}) and no local table given"
                ) from None
            note = f" (VizieR unreachable: {type(err).__name__})"
    if result is None:
        if table is None:
            raise InputError("gaia_table", "no local Gaia table given")
        origin = str(table)
        result = read_gaia_table(table)
    cat, n_bad = clean_gaia(result)
    cat = cat[in_patch(cat, wcs, shape, margin)]
    print(
        f"Gaia DR3: {len(cat)} stars in the patch from {origin}{note}; "
        f"{n_bad} rows with missing values removed"
    )
    if len(cat) == 0:
        raise InputError(origin, "no Gaia star with complete values inside the patch")
    return cat, origin


def write_gaia(path: str | os.PathLike, cat: np.ndarray) -> Path:
    """Write ufig's Gaia HDF5 (dataset ``data``), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as fh5:
        fh5.create_dataset("data", data=np.asarray(cat, GAIA_DTYPE), compression="lzf")
    return path


def read_gaia(path: str | os.PathLike) -> np.ndarray:
    """Read ufig's Gaia HDF5."""
    return read_dataset(path, "data", "Gaia catalogue not found; run stage 04 first")


# --- stage ----------------------------------------------------------------------


def make_besancon_map(
    tile: TileSpec, run: RunFolder, calexp: Calexp, area_store: float = 2.0
) -> dict:
    """Stage 04a: the tile's Besançon HDF5 in the run folder; returns a summary.

    The summary adds ``requested`` (the lines of sight to simulate with the web
    service: exactly the pixels the simulation of this tile reads, not the
    tutorial's centre pixel and its eight neighbours) and ``required`` (those
    pixels).
    """
    ra, dec, _ = patch_circle(calexp.wcs, calexp.shape)
    required = required_pixels(calexp.wcs, calexp.shape)
    summary = build_besancon_map(
        tile.besancon_headers,
        tile.besancon_catalogs,
        run.besancon,
        area_store=area_store,
        seed=tile.seed,
        required=required,
    )
    summary["requested"] = lines_of_sight(required)
    summary["centre_pixel"] = int(hp.ang2pix(NSIDE_BESANCON, ra, dec, lonlat=True))
    summary["required"] = required.tolist()
    return summary


def make_gaia_catalog(
    tile: TileSpec,
    run: RunFolder,
    calexp: Calexp,
    source: str = "",
    timeout: float = 10.0,
    margin: float = 50.0,
) -> np.ndarray:
    """Stage 04b: Gaia DR3 stars of the patch written to the run folder."""
    cat, _ = gaia_stars(
        calexp.wcs,
        calexp.shape,
        table=tile.gaia_table,
        source=choose_gaia_source(source, tile.is_demo),
        timeout=timeout,
        margin=margin,
    )
    write_gaia(run.gaia, cat)
    return cat


def patch_area(calexp: Calexp) -> float:
    """Area of the patch pixels with data, in deg^2."""
    scale = np.sqrt(np.abs(np.linalg.det(calexp.wcs.pixel_scale_matrix)))
    no_data = calexp.plane("NO_DATA", missing_ok=True)
    return float((~no_data).sum() * scale**2)


@dataclass
class Stage04Result:
    """What the stage-04 notebook shows (the files are already written)."""

    calexp: Calexp
    besancon: dict  # summary of make_besancon_map
    gaia: np.ndarray  # the Gaia stars written, in GAIA_DTYPE


def run(tile: TileSpec, run: RunFolder, params: Params) -> Stage04Result:
    """Stage 04: the tile's Besançon map and Gaia catalogue in the run folder.

    ``params.gaia_table`` (absolute, or relative to the working folder) replaces
    the tile's table when given.
    """
    if params.gaia_table:
        table = Path(params.gaia_table).expanduser().resolve()
        tile = dataclasses.replace(tile, gaia_table=table)
    calexp = read_calexp(tile.calexp, band=tile.band)
    besancon = make_besancon_map(tile, run, calexp, area_store=params.area_store)
    gaia = make_gaia_catalog(
        tile, run, calexp, source=params.gaia_source, timeout=params.gaia_timeout
    )
    return Stage04Result(calexp, besancon, gaia)
