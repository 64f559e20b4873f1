"""Per-tile parameters: the tile YAML file that names a patch's input files.

A tile file (see ``params/tile_template.yaml``) lists the real-format inputs of
one patch. Relative paths are taken relative to the YAML file's folder. Notebooks
receive ``tile_file`` and ``run_dir`` as papermill parameters plus optional
overrides of single entries; an empty ``tile_file`` means the demo tile.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hscsim_utils.errors import InputError
from hscsim_utils.runfolder import REPO_ROOT

DEMO_DIR_ENV = "HSCSIM_DEMO_DIR"
TILE_FILE_ENV = "HSCSIM_TILE_FILE"
DEMO_LABEL = "DEMO tile (simulated)"
REAL_LABEL = "REAL HSC data"


@dataclass(frozen=True)
class TileSpec:
    """Inputs and simulation settings of one patch."""

    tile_name: str
    calexp: Path
    frame_metadata: Path
    coadd_metadata: Path
    besancon_headers: list[Path]
    besancon_catalogs: list[Path]
    band: str = "i"
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

    @property
    def label(self) -> str:
        """Text for plot titles: says whether the data is simulated or real."""
        return (
            f"{DEMO_LABEL}: {self.tile_name}"
            if self.is_demo
            else (f"{REAL_LABEL}: {self.tile_name}")
        )


_PATH_FIELDS = {"calexp", "frame_metadata", "coadd_metadata", "gaia_table", "truth_dir"}
_PATH_LIST_FIELDS = {"besancon_headers", "besancon_catalogs"}


def _field_types() -> dict[str, typing.Any]:
    hints = typing.get_type_hints(TileSpec)
    return {f.name: hints[f.name] for f in dataclasses.fields(TileSpec)}


def _coerce(source: str, key: str, value: typing.Any, base: Path) -> typing.Any:
    if key in _PATH_FIELDS:
        if value is None or value == "":
            return None
        if not isinstance(value, str | os.PathLike):
            raise InputError(source, f"{key} must be a path, got {value!r}")
        return (base / Path(value)).resolve()
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


def load_tile(path: str | os.PathLike, **overrides: typing.Any) -> TileSpec:
    """Read a tile YAML; unknown keys, wrong types and missing keys are errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "tile file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise InputError(path, "must be a mapping of keys to values")
    raw.update({k: v for k, v in overrides.items() if v not in ("", None)})
    known = {f.name for f in dataclasses.fields(TileSpec)} - {"extra"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InputError(path, f"unknown keys {unknown}; known keys: {sorted(known)}")
    values = {k: _coerce(str(path), k, v, path.parent) for k, v in raw.items()}
    required = [
        f.name
        for f in dataclasses.fields(TileSpec)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if values.get(k) is None]
    if missing:
        raise InputError(path, f"missing required keys {missing}")
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


def write_tile(path: str | os.PathLike, values: dict) -> Path:
    """Write a tile YAML (paths relative to its folder where possible)."""
    from hscsim_utils.atomic import atomic_path

    path = Path(path)
    out = {}
    for key, value in values.items():
        if isinstance(value, Path):
            value = os.path.relpath(value, path.parent)
        elif isinstance(value, list):
            value = [
                os.path.relpath(v, path.parent) if isinstance(v, Path) else v
                for v in value
            ]
        out[key] = value
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(out, sort_keys=False))
    return path
