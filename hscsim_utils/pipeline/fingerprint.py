"""What a stage's result depends on, as one hash: its code, parameters and inputs.

A stage runs again when its fingerprint differs from the one it last ran with,
or when one of its declared outputs is missing. The fingerprint covers

- code: the stage's notebook and every module of ``hscsim_utils`` that the
  notebook imports, directly or through other modules of the package (imports
  inside functions included), found by reading the sources (:func:`code_files`).
  Editing a plot module that only one notebook imports re-runs that stage alone;
  editing a module every stage imports re-runs them all;
- parameters: the values the runner passes to the notebook;
- inputs: what the stage declares it reads (:mod:`hscsim_utils.stages.registry`),
  by content: the files a tile field names, repository files, run-folder products,
  another stage's section of ``metrics.json`` (or one block of it).

Content hashes of large files are remembered by (size, modification time), so
an unchanged 70 MB simulation image is hashed once; so are the imports found in
a module's source (a run computes 18 fingerprints over the same ~35 modules:
parsing them every time took 4.7 s of the runner's ~10 s on the full DEMO
chain, 0.3 s once). A repository file that is Python (the simulation config)
counts with the package modules it imports (its plugin lists).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import read_section
from hscsim_utils.runfolder import METRICS_FILE, REPO_ROOT
from hscsim_utils.stages.registry import RUNNER_PRODUCTS, StageSpec

__all__ = ["DigestCache", "code_files", "fingerprint", "missing_outputs"]

PACKAGE = "hscsim_utils"
PACKAGE_DIR = REPO_ROOT / PACKAGE


class DigestCache:
    """sha256 of files, remembered by path, size and modification time."""

    def __init__(self, known: Mapping[str, list] | None = None) -> None:
        self.known: dict[str, list] = dict(known or {})

    def file(self, path: Path) -> str:
        stat = path.stat()
        key = str(path)
        hit = self.known.get(key)
        if hit and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
            return hit[2]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        self.known[key] = [stat.st_size, stat.st_mtime_ns, h.hexdigest()]
        return h.hexdigest()

    def path(self, path: Path | None) -> str:
        """Digest of a file, of every file in a folder, or ``missing``."""
        if path is None:
            return "none"
        path = Path(path)
        if path.is_file():
            return self.file(path)
        if path.is_dir():
            h = hashlib.sha256()
            for p in sorted(q for q in path.rglob("*") if q.is_file()):
                h.update(f"{p.relative_to(path)}:{self.file(p)}".encode())
            return h.hexdigest()
        return "missing"


def _module_file(dotted: str, package_dir: Path) -> Path | None:
    parts = dotted.split(".")[1:]
    base = package_dir.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(source: str, module: str, is_package: bool) -> set[str]:
    """Dotted names of the package's modules a source imports (may include names
    that are attributes, not modules; those resolve to nothing)."""
    names = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


@functools.lru_cache(maxsize=4096)
def _file_imports(
    path: Path, size: int, mtime_ns: int, module: str, is_package: bool
) -> frozenset[str]:
    """:func:`_imports` of a file, parsed once per version of the file."""
    return frozenset(_imports(path.read_text(), module, is_package))


def _module_imports(path: Path, module: str, is_package: bool) -> frozenset[str]:
    stat = path.stat()
    return _file_imports(path, stat.st_size, stat.st_mtime_ns, module, is_package)


def _notebook_source(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    lines = []
    for cell in cells:
        if cell.get("cell_type") == "code":
            for line in "".join(cell["source"]).splitlines():
                lines.append("" if line.lstrip().startswith(("%", "!")) else line)
    return "\n".join(lines)


def code_files(source: Path, package_dir: Path | None = None) -> list[Path]:
    """The notebook (or Python file) ``source`` and every package module it
    imports, transitively, sorted."""
    package_dir = package_dir or PACKAGE_DIR
    if source.suffix == ".ipynb":
        first = _imports(_notebook_source(source), "", False)
    else:
        first = _module_imports(source, "", False)
    todo = [(name, None) for name in first]
    seen: dict[str, Path] = {}
    while todo:
        name, _ = todo.pop()
        parts = name.split(".")
        # a package's __init__ runs before any of its modules
        for i in range(1, len(parts) + 1):
            dotted = ".".join(parts[:i])
            if dotted in seen:
                continue
            path = _module_file(dotted, package_dir)
            if path is None:
                continue
            seen[dotted] = path
            is_pkg = path.name == "__init__.py"
            todo += [(n, None) for n in _module_imports(path, dotted, is_pkg)]
    return [source, *sorted(set(seen.values()))]


def _value_digest(value: Any, cache: DigestCache) -> str:
    """A tile field's value: paths by content, also inside lists, mappings (such
    as ``bands``) and dataclasses (:class:`~hscsim_utils.hsc.tile.BandFiles`);
    anything else by ``repr``."""
    if isinstance(value, Path):
        return cache.path(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return ",".join(f"{k}={_value_digest(v, cache)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(_value_digest(v, cache) for v in value)
    return repr(value)


def _read_digest(
    entry: str, tile: TileSpec, products: Mapping[str, str], run_root: Path,
    cache: DigestCache, band_products: Collection[str] = (),
) -> str:  # fmt: skip
    kind, _, name = entry.partition(":")
    if kind == "tile" and name:
        return _value_digest(getattr(tile, name), cache)
    if kind == "repo" and name:
        path = REPO_ROOT / name
        if path.suffix != ".py" or not path.is_file():
            return cache.path(path)
        return _code_digest(path, cache)
    if entry in RUNNER_PRODUCTS:  # the products of the tile's other bands' runs
        others = [b for b in tile.bands if b != tile.band]
        return _band_runs_digest(run_root / products[entry].rstrip("/"), others,
                                 band_products, products, cache)  # fmt: skip
    if kind == "metrics" and name:  # another stage's section (or block), by content
        section, *keys = name.split(".")
        value = read_section(run_root / METRICS_FILE, section)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    return cache.path(run_root / products[entry].rstrip("/"))


def _band_runs_digest(
    root: Path,
    bands: list[str],
    names: Collection[str],
    products: Mapping[str, str],
    cache: DigestCache,
) -> str:
    """Digest of the products ``names`` (those of the per-band stages) in the
    runs of ``bands`` below ``root`` (not the runs' notebooks or timings, nor
    what the detection band's fine-tuning stages write there: a band run that
    comes back with the same products changes nothing; the runs of bands the
    tile no longer has, e.g. after ``--bands``, do not count)."""
    counted = [name for name in products if name in names]
    h = hashlib.sha256()
    for folder in (root / band for band in sorted(bands)):
        for name in counted:
            digest = cache.path(folder / products[name].rstrip("/"))
            h.update(f"{folder.name}/{name}:{digest}".encode())
    return h.hexdigest()


def _code_digest(source: Path, cache: DigestCache, package_dir: Path | None = None
                 ) -> str:  # fmt: skip
    """One hash of ``source`` and the package modules it imports."""
    code = hashlib.sha256()
    for path in code_files(source, package_dir):
        code.update(f"{path.name}:{cache.file(path)}".encode())
    return code.hexdigest()


def fingerprint(
    spec: StageSpec,
    notebook: Path,
    params: Mapping[str, Any],
    tile: TileSpec,
    products: Mapping[str, str],
    run_root: Path,
    cache: DigestCache,
    package_dir: Path | None = None,
    *,
    band_products: Collection[str],
) -> dict[str, str]:
    """The stage's fingerprint: ``key`` (one hash) and its parts, so that a
    re-run can say what changed. ``band_products`` are the products of the
    per-band stages: what counts of the band runs."""
    parts = {
        "code": _code_digest(notebook, cache, package_dir),
        "params": hashlib.sha256(
            json.dumps(dict(params), sort_keys=True, default=str).encode()
        ).hexdigest(),
    }
    for entry in spec.reads:
        parts[entry] = _read_digest(entry, tile, products, run_root, cache,
                                    band_products)  # fmt: skip
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return {"key": key, **parts}


def missing_outputs(
    spec: StageSpec, products: Mapping[str, str], run_root: Path, metrics: dict
) -> list[str]:
    """Declared outputs of ``spec`` that are not there (an empty folder counts
    as missing)."""
    missing = []
    for entry in spec.writes:
        kind, _, name = entry.partition(":")
        if kind == "metrics" and name:
            if name not in metrics:
                missing.append(entry)
            continue
        path = run_root / products[entry].rstrip("/")
        if not (path.is_file() or (path.is_dir() and any(path.iterdir()))):
            missing.append(entry)
    return missing


def changed_parts(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Names of the fingerprint parts that differ (``code``, ``params``, inputs)."""
    return [k for k in new if k != "key" and old.get(k) != new[k]]
