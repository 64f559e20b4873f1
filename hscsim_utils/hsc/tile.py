"""Per-tile parameters: the tile YAML file that names a patch's input files.

A tile file (see ``params/tile_template.yaml``) lists the real-format inputs of
one patch. Its band files come in one of two forms, never both:

- one band: top-level ``band`` (default ``i``), ``calexp``, ``frame_metadata``
  and ``coadd_metadata``;
- several bands: ``bands``, a mapping of HSC band letters (any of g, r, i, z, y)
  to ``{calexp, frame_metadata, coadd_metadata}``, plus ``detection_band``
  (default ``i``), one of them. A DEMO tile's band entries may each name their
  own ``truth_dir`` (the truth of that band), all or none of them; then the
  file has no top-level ``truth_dir``. ``band`` may be given too: the band the
  tile is seen from (default the detection band), as in the files the runner
  writes for the runs of the other bands.

Either way :class:`TileSpec` holds every band in ``bands`` (in the order g r i z
y), and its ``band``, ``calexp``, ``frame_metadata`` and ``coadd_metadata`` are
those of the detection band, so single-band stages read ``tile.calexp``;
:meth:`TileSpec.for_band` gives the tile seen from another of its bands.
Relative paths are taken relative to the YAML file's folder. Notebooks receive
``tile_file`` and ``run_dir`` as papermill parameters plus optional overrides of
single entries; an empty ``tile_file`` means the demo tile.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hscsim_utils.bands import HSC_BANDS, parse_bands
from hscsim_utils.errors import InputError
from hscsim_utils.runfolder import REPO_ROOT

DEMO_DIR_ENV = "HSCSIM_DEMO_DIR"
TILE_FILE_ENV = "HSCSIM_TILE_FILE"
DEMO_LABEL = "DEMO tile (simulated)"
REAL_LABEL = "REAL HSC data"


@dataclass(frozen=True)
class BandFiles:
    """The input files of one band of a patch."""

    calexp: Path
    frame_metadata: Path
    coadd_metadata: Path
    #: The band's own truth folder (DEMO tiles); None: the tile's ``truth_dir``.
    truth_dir: Path | None = None

    def fields(self) -> dict[str, Path]:
        """The files as TileSpec fields (``truth_dir`` only when the band has
        one of its own)."""
        out = dataclasses.asdict(self)
        if out["truth_dir"] is None:
            del out["truth_dir"]
        return out


_BAND_FILE_KEYS = ("calexp", "frame_metadata", "coadd_metadata")
_OPTIONAL_BAND_KEYS = ("truth_dir",)
_SINGLE_BAND_KEYS = ("band", *_BAND_FILE_KEYS)
_MULTI_BAND_KEYS = ("bands", "detection_band")


@dataclass(frozen=True)
class TileSpec:
    """Inputs and simulation settings of one patch.

    ``band``, ``calexp``, ``frame_metadata`` and ``coadd_metadata`` are the files
    of the band the tile is seen from (the detection band, unless from
    :meth:`for_band`); ``bands[band]`` always holds them too. Constructed without
    ``bands``, the tile has that one band, which is also its detection band.
    """

    tile_name: str
    calexp: Path
    frame_metadata: Path
    coadd_metadata: Path
    besancon_headers: list[Path]
    besancon_catalogs: list[Path]
    band: str = "i"
    #: Every band of the tile, in the order g r i z y.
    bands: dict[str, BandFiles] = field(default_factory=dict)
    detection_band: str = "i"
    gaia_table: Path | None = None
    truth_dir: Path | None = None
    is_demo: bool = False
    galaxy_model: str = "Moser+24"
    posterior_index: int = 0
    seed: int = 42
    #: Stage parameters, ``{stage: {parameter: value}}`` (``hscsim run`` applies
    #: them; ``--set`` overrides them).
    stages: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bands:
            object.__setattr__(self, "detection_band", self.band)
        own = self.bands.get(self.band)
        files = BandFiles(self.calexp, self.frame_metadata, self.coadd_metadata,
                          own.truth_dir if own else None)  # fmt: skip
        object.__setattr__(self, "bands", _hsc_order({**self.bands, self.band: files}))
        if self.detection_band not in self.bands:
            raise ValueError(
                f"detection band {self.detection_band!r} is not among the bands "
                f"{self.band_names} of tile {self.tile_name}"
            )

    @property
    def label(self) -> str:
        """Text for plot titles: says whether the data is simulated or real (and
        which band, on a tile of several bands)."""
        kind = DEMO_LABEL if self.is_demo else REAL_LABEL
        band = f", {self.band} band" if len(self.bands) > 1 else ""
        return f"{kind}: {self.tile_name}{band}"

    @property
    def detection_calexp(self) -> Path:
        """The calexp of the detection band (the one SExtractor detects on)."""
        return self.bands[self.detection_band].calexp

    @property
    def band_names(self) -> tuple[str, ...]:
        """The tile's bands, in the order g r i z y."""
        return tuple(self.bands)

    def with_bands(self, bands: str | Sequence[str], source: str = "") -> TileSpec:
        """The same tile with ``bands`` of its bands only (``--bands``, e.g.
        ``"gri"``), the detection band among them; a band it lacks is an
        :class:`InputError` naming ``source`` (its tile file)."""
        chosen = parse_bands(bands, "--bands")
        source = source or self.tile_name
        absent = [b for b in chosen if b not in self.bands]
        if absent:
            raise InputError(source, f"has no bands {absent} (--bands); its "
                             f"bands: {''.join(self.bands)}")  # fmt: skip
        if self.detection_band not in chosen:
            raise InputError(
                "--bands", f"{''.join(chosen)!r} lacks the detection band "
                f"{self.detection_band} of {source}",
            )  # fmt: skip
        return dataclasses.replace(self, bands={b: self.bands[b] for b in chosen})

    def for_band(self, band: str) -> TileSpec:
        """The same tile seen from ``band``: that band's calexp, frame and mosaic
        CSVs (and truth folder, when the bands have their own); everything
        else, ``detection_band`` included, unchanged."""
        if band not in self.bands:
            raise InputError(
                self.tile_name,
                f"no band {band!r} in this tile; its bands: {', '.join(self.bands)}",
            )
        return dataclasses.replace(self, band=band, **self.bands[band].fields())


_PATH_FIELDS = {"calexp", "frame_metadata", "coadd_metadata", "gaia_table", "truth_dir"}
_PATH_LIST_FIELDS = {"besancon_headers", "besancon_catalogs"}


def _hsc_order(bands: Mapping) -> dict:
    """``bands`` with the HSC bands in the order g r i z y (others after them)."""
    return {b: bands[b] for b in HSC_BANDS if b in bands} | dict(bands)


def _field_types() -> dict[str, typing.Any]:
    hints = typing.get_type_hints(TileSpec)
    return {f.name: hints[f.name] for f in dataclasses.fields(TileSpec)}


def _path(source: str, key: str, value: typing.Any, base: Path) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise InputError(source, f"{key} must be a path, got {value!r}")
    return (base / Path(value)).resolve()


def _coerce(source: str, key: str, value: typing.Any, base: Path) -> typing.Any:
    if key in _PATH_FIELDS:
        if value is None or value == "":
            return None
        return _path(source, key, value, base)
    if key in _PATH_LIST_FIELDS:
        items = [value] if isinstance(value, str | os.PathLike) else value
        if not isinstance(items, list) or not all(
            isinstance(v, str | os.PathLike) for v in items
        ):
            raise InputError(source, f"{key} must be a path or a list of paths")
        return [(base / Path(v)).resolve() for v in items]
    expected = _field_types()[key]
    if isinstance(expected, types.UnionType):
        expected = tuple(a for a in typing.get_args(expected) if a is not type(None))
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise InputError(
            source,
            f"{key} must be of type {getattr(expected, '__name__', expected)}"
            f", got {value!r}",
        )
    return value


def _band_entry(source: str, band: str, entry: typing.Any, base: Path) -> BandFiles:
    """The files of ``bands.<band>``: a mapping with the three keys (and
    optionally ``truth_dir``)."""
    where = f"bands.{band}"
    keys = ", ".join(_BAND_FILE_KEYS)
    if not isinstance(entry, dict):
        raise InputError(source, f"{where} must be a mapping with keys {keys}")
    unknown = sorted(set(entry) - set(_BAND_FILE_KEYS) - set(_OPTIONAL_BAND_KEYS))
    if unknown:
        raise InputError(source, f"{where} has unknown keys {unknown}; keys: {keys}")
    missing = [k for k in _BAND_FILE_KEYS if entry.get(k) in (None, "")]
    if missing:
        raise InputError(source, f"{where} lacks the keys {missing}")
    given = [k for k in (*_BAND_FILE_KEYS, *_OPTIONAL_BAND_KEYS)
             if entry.get(k) not in (None, "")]  # fmt: skip
    return BandFiles(
        **{k: _path(source, f"{where}.{k}", entry[k], base) for k in given}
    )


def _band_files(source: str, bands: typing.Any, base: Path) -> dict[str, BandFiles]:
    """``bands`` of a tile file, in the order g r i z y."""
    if not isinstance(bands, dict):
        raise InputError(source, "bands must be a mapping of band letters to files")
    if not bands:
        raise InputError(source, "bands is empty: give the files of at least one band")
    unknown = sorted(str(b) for b in set(bands) - set(HSC_BANDS))
    if unknown:
        raise InputError(
            source,
            f"bands has unknown bands {unknown}; HSC bands: {', '.join(HSC_BANDS)}",
        )
    files = {b: _band_entry(source, b, bands[b], base) for b in HSC_BANDS if b in bands}
    own = [b for b, f in files.items() if f.truth_dir is not None]
    if own and len(own) != len(files):
        raise InputError(
            source,
            f"bands {own} name a truth_dir of their own and "
            f"{[b for b in files if b not in own]} do not: give it for all or none",
        )
    return files


def _detection_view(source: str, raw: dict, base: Path) -> dict[str, typing.Any]:
    """``bands``, ``detection_band`` and the detection band's files as TileSpec
    fields, from a tile file's ``bands`` and ``detection_band``."""
    bands = _band_files(source, raw["bands"], base)
    detection = raw.get("detection_band", "i")
    if detection not in bands:
        raise InputError(
            source,
            f"detection band {detection!r} is not among the bands "
            f"{list(bands)}: set detection_band to one of them",
        )
    if "truth_dir" in raw and bands[detection].truth_dir is not None:
        raise InputError(
            source,
            "gives truth_dir both at the top level and in the bands: give it once",
        )
    seen = raw.get("band", detection)
    if seen not in bands:
        raise InputError(
            source, f"band {seen!r} (the band the tile is seen from) is not among "
            f"the bands {list(bands)}",
        )  # fmt: skip
    files = bands[seen].fields()
    return {"bands": bands, "detection_band": detection, "band": seen, **files}


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "tile file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise InputError(path, "must be a mapping of keys to values")
    return raw


def _check_keys(path: Path, raw: dict) -> None:
    """Unknown keys, and the single-band and multi-band forms mixed."""
    known = {f.name for f in dataclasses.fields(TileSpec)} - {"extra"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(path, f"unknown keys {unknown}; known keys: {sorted(known)}")
    single = [k for k in _BAND_FILE_KEYS if k in raw]
    multi = [k for k in _MULTI_BAND_KEYS if k in raw]
    if single and multi:
        raise InputError(
            path,
            f"gives both the single-band keys {single} and the multi-band keys "
            f"{multi}: give either band, calexp, frame_metadata, coadd_metadata "
            "(one band) or bands and detection_band (several bands)",
        )
    if multi and "bands" not in raw:
        raise InputError(path, "detection_band is given without bands")


def load_tile(path: str | os.PathLike, **overrides: typing.Any) -> TileSpec:
    """Read a tile YAML; unknown keys, wrong types and missing keys are errors."""
    path = Path(path)
    raw = _read_mapping(path)
    raw.update({k: v for k, v in overrides.items() if v not in ("", None)})
    _check_keys(path, raw)
    view = _detection_view(str(path), raw, path.parent) if "bands" in raw else {}
    values = {
        k: _coerce(str(path), k, v, path.parent)
        for k, v in raw.items()
        if k not in _MULTI_BAND_KEYS
    } | view
    required = [
        f.name
        for f in dataclasses.fields(TileSpec)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if values.get(k) is None]
    if missing:
        hint = (
            "; a tile of several bands gives bands instead of "
            + ", ".join(_BAND_FILE_KEYS)
            if set(missing) & set(_BAND_FILE_KEYS)
            else ""
        )
        raise InputError(path, f"missing required keys {missing}{hint}")
    if len(values["besancon_headers"]) != len(values["besancon_catalogs"]):
        raise InputError(path, "besancon_headers and besancon_catalogs differ in size")
    return TileSpec(**values)


def default_demo_dir() -> Path:
    """Demo tile input folder: ``$HSCSIM_DEMO_DIR`` or runs/demo/input."""
    return Path(os.environ.get(DEMO_DIR_ENV, REPO_ROOT / "runs" / "demo" / "input"))


def default_tile_file() -> Path:
    """Tile of a notebook opened without parameters: ``$HSCSIM_TILE_FILE`` or the
    demo tile (``tile.yaml`` in :func:`default_demo_dir`)."""
    value = os.environ.get(TILE_FILE_ENV)
    return Path(value) if value else default_demo_dir() / "tile.yaml"


def resolve_tile(tile_file: str | os.PathLike = "", **overrides) -> TileSpec:
    """Tile spec for a notebook: ``tile_file`` or, if empty, the default tile
    (``$HSCSIM_TILE_FILE``, else the demo tile)."""
    path = Path(tile_file) if tile_file else default_tile_file()
    if not tile_file and not path.is_file() and TILE_FILE_ENV not in os.environ:
        raise InputError(
            path,
            "demo tile not built yet: run `make demo` or "
            "`hscsim demo-tile --out runs/demo/input` first",
        )
    return load_tile(path, **overrides)


def _relative(value: typing.Any, folder: Path) -> typing.Any:
    """``value`` with its paths (also in lists and band files) relative to
    ``folder``."""
    if isinstance(value, Path):
        return os.path.relpath(value, folder)
    if isinstance(value, list):
        return [_relative(v, folder) for v in value]
    if isinstance(value, BandFiles):
        return _relative(value.fields(), folder)
    if isinstance(value, dict):
        return {k: _relative(v, folder) for k, v in value.items()}
    return value


def _check_view(values: dict, bands: Mapping) -> None:
    """The single-band keys in ``values`` (the files of the band a tile is seen
    from) agree with ``bands``."""
    single = {k: values[k] for k in _SINGLE_BAND_KEYS if k in values}
    if not single:
        return
    band = single.pop("band", "i")
    entry = bands.get(band)
    entry = entry.fields() if isinstance(entry, BandFiles) else entry
    if entry is None or any(entry.get(k) != v for k, v in single.items()):
        raise ValueError(
            f"band {band!r} and {sorted(single)} disagree with bands; give "
            "either the single-band keys or bands"
        )


def _file_form(values: dict) -> dict:
    """``values`` in one of the two forms of the file: with a non-empty ``bands``
    the multi-band form (``bands`` after ``tile_name``), else the single-band
    form."""
    bands = values.get("bands")
    if not bands:
        return {k: v for k, v in values.items() if k not in _MULTI_BAND_KEYS}
    _check_view(values, bands)
    multi = {"bands": _hsc_order(bands)}
    if "detection_band" in values:
        multi["detection_band"] = values["detection_band"]
    if "band" in values and values["band"] != values.get("detection_band", "i"):
        multi["band"] = values["band"]  # seen from another band than detection
    own_truth = any(
        (b.truth_dir if isinstance(b, BandFiles) else b.get("truth_dir")) is not None
        for b in bands.values()
    )
    skip = {*_SINGLE_BAND_KEYS, *_MULTI_BAND_KEYS, *(("truth_dir",) * own_truth)}
    rest = {k: v for k, v in values.items() if k not in skip}
    head = {"tile_name": rest.pop("tile_name")} if "tile_name" in rest else {}
    return head | multi | rest


def write_tile(path: str | os.PathLike, values: dict) -> Path:
    """Write a tile YAML (paths relative to its folder where possible).

    ``values`` has the keys of either form of the tile file (or the fields of a
    :class:`TileSpec`, without ``extra``); with a non-empty ``bands`` (of
    :class:`BandFiles` or mappings) the file gets the multi-band form.
    """
    from hscsim_utils.atomic import atomic_path

    path = Path(path)
    text = tile_text(path, values)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def tile_text(path: str | os.PathLike, values: dict) -> str:
    """The YAML text :func:`write_tile` writes to ``path``."""
    folder = Path(path).parent
    out = {k: _relative(v, folder) for k, v in _file_form(values).items()}
    return yaml.safe_dump(out, sort_keys=False)
