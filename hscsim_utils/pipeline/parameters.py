"""Stage parameters: the notebook's defaults, the tile file's ``stages:`` section
and ``--set STAGE.NAME=VALUE`` on the command line, in that order of precedence.

A stage's parameters are the variables of its notebook's ``parameters`` cell
(papermill's convention), less ``tile_file`` and ``run_dir``, which the runner
sets. Each stage module's ``Params`` dataclass has the same fields and defaults
(a test keeps them equal). A value from the tile file or the command line must
name a known stage and parameter and fit the type of its default; anything else
is one clear :class:`~hscsim_utils.errors.InputError`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hscsim_utils.errors import InputError
from hscsim_utils.stages.registry import StageSpec

__all__ = [
    "RUNNER_PARAMETERS",
    "notebook_defaults",
    "parse_assignments",
    "stage_parameters",
]

#: Set by the runner for every stage; not settable.
RUNNER_PARAMETERS = ("tile_file", "run_dir")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def notebook_defaults(notebook: Path) -> dict[str, Any]:
    """Variables and literal values of the notebook's ``parameters`` cell."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            break
    else:
        return {}
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                values[target.id] = ast.literal_eval(node.value)
    return values


def _convert(source: str, key: str, value: Any, default: Any) -> Any:
    """``value`` (a string from the command line or a YAML value) as the type of
    ``default``."""
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            if text not in _TRUE | _FALSE:
                raise InputError(source, f"{key} must be true or false, got {value!r}")
            return text in _TRUE
        try:
            return kind(value)
        except ValueError:
            raise InputError(
                source, f"{key} must be a {kind.__name__}, got {value!r}"
            ) from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(source, f"{key} must be a {kind.__name__}, got {value!r}")
    return value


def parse_assignments(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["psf.estimator=direct", ...]`` as ``{"psf": {"estimator": "direct"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, name = key.strip().partition(".")
        if not (sep and dot and stage and name):
            raise InputError(
                "--set", f"cannot read {item!r}; use STAGE.PARAMETER=VALUE"
            )
        out.setdefault(stage, {})[name.strip()] = value.strip()
    return out


def _check_stages(
    source: str, values: Mapping[str, Any], specs: Sequence[StageSpec]
) -> None:
    names = {s.name for s in specs} | {s.number for s in specs}
    for stage, params in values.items():
        if stage not in names:
            known = ", ".join(s.name for s in specs)
            raise InputError(source, f"unknown stage {stage!r}; the stages are {known}")
        if not isinstance(params, Mapping):
            raise InputError(source, f"stages: {stage} must map parameters to values")


def stage_parameters(
    spec: StageSpec,
    notebook: Path,
    specs: Sequence[StageSpec],
    tile_stages: Mapping[str, Any] | None = None,
    cli: Mapping[str, Mapping[str, str]] | None = None,
    tile_source: str = "tile file",
) -> dict[str, Any]:
    """The parameters of ``spec`` that differ from the notebook's defaults.

    ``tile_stages`` is the tile file's ``stages:`` section and ``cli`` the parsed
    ``--set`` values (both keyed by stage name or number); the command line wins.
    """
    defaults = notebook_defaults(notebook)
    settable = {k: v for k, v in defaults.items() if k not in RUNNER_PARAMETERS}
    chosen: dict[str, Any] = {}
    for source, values in ((tile_source, tile_stages or {}), ("--set", cli or {})):
        _check_stages(source, values, specs)
        for stage in (spec.name, spec.number):
            for name, value in values.get(stage, {}).items():
                key = f"{spec.name}.{name}"
                if name not in settable:
                    known = ", ".join(settable) or "none"
                    raise InputError(
                        source,
                        f"stage {spec.name} has no parameter {name!r}; "
                        f"its parameters are {known}",
                    )
                chosen[name] = _convert(source, key, value, settable[name])
    return {k: v for k, v in chosen.items() if v != settable[k]}


def check_assignments(
    specs: Sequence[StageSpec],
    notebook_dir: Path,
    tile_stages: Mapping[str, Any] | None,
    cli: Mapping[str, Mapping[str, str]] | None,
    tile_source: str = "tile file",
) -> None:
    """Validate every assignment against every stage before anything runs."""
    for spec in specs:
        notebook = notebook_dir / spec.notebook
        if notebook.is_file():
            stage_parameters(spec, notebook, specs, tile_stages, cli, tile_source)
