"""The package's shape: layers import downward only, no import cycle, and the
architecture page lists the stages as the registry declares them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hscsim_utils.runfolder import PRODUCTS
from hscsim_utils.stages.registry import RUNNER_PRODUCTS, STAGES

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hscsim_utils"

#: Layer of each sub-package; modules directly in the package are the base (0).
LAYERS = {
    "compat": 1,
    "data": 2, "numerics": 2,
    "hsc": 3,
    "stages": 4, "demo": 4,
    "pipeline": 5,
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_nodes(tree: ast.Module, top_level_only: bool) -> list[ast.AST]:
    """Nodes that run: not under ``if TYPE_CHECKING:`` (annotations only)."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo += node.orelse
            continue
        out.append(node)
        if not top_level_only:
            todo += list(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    nodes = _runtime_nodes(ast.parse(path.read_text()), top_level_only)
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")
                if path.name != "__init__.py":
                    pkg = pkg[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _resolve(names: set[str], modules: dict[str, Path]) -> set[str]:
    return {n for n in names if n in modules and n != "hscsim_utils"}


def _layer(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) == 2:
        return 0, "base"
    return LAYERS[parts[1]], parts[1]


def test_every_subpackage_has_a_layer():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(LAYERS)


def test_layers_import_downward_only():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        if name == "hscsim_utils":
            continue
        layer, group = _layer(name)
        for target in _resolve(_imports(path, name, False), modules):
            t_layer, t_group = _layer(target)
            if t_layer > layer or (t_layer == layer and t_group != group):
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module", "any"])
def test_no_import_cycle(top_level_only):
    modules = _modules()
    graph = {
        name: _resolve(_imports(path, name, top_level_only), modules) - {name}
        for name, path in modules.items()
    }
    # a package's __init__ importing its own modules is not a cycle
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    assert _find_cycle(graph) is None, f"import cycle: {_find_cycle(graph)}"


def _architecture_table() -> dict[str, tuple[set[str], set[str]]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d\d) `(\w+)`\s*\|([^|]*)\|([^|]*)\|", line)
        if m:
            rows[f"{m[1]}_{m[2]}"] = (
                set(re.findall(r"`([^`]+)`", m[3])),
                set(re.findall(r"`([^`]+)`", m[4])),
            )
    return rows


def test_architecture_page_lists_what_each_stage_declares():
    table = _architecture_table()
    assert set(table) == {f"{s.number}_{s.name}" for s in STAGES}
    for s in STAGES:
        reads, writes = table[f"{s.number}_{s.name}"]
        assert reads == set(s.reads), f"stage {s.name}: reads differ"
        assert writes == set(s.writes), f"stage {s.name}: writes differ"


def test_declared_products_exist_and_every_product_has_one_writer():
    writers: dict[str, list[str]] = {}
    for s in STAGES:
        for entry in s.reads + s.writes:
            if ":" not in entry:
                assert entry in PRODUCTS, f"stage {s.name}: unknown product {entry}"
        for entry in s.writes:
            writers.setdefault(entry, []).append(s.name)
    assert {k: v for k, v in writers.items() if len(v) > 1} == {}
    assert set(PRODUCTS) - set(RUNNER_PRODUCTS) <= set(writers), (
        "a product nobody writes"
    )
    assert not set(RUNNER_PRODUCTS) & set(writers)
    for s in STAGES:  # a stage reads only what an earlier stage (or the runner
        # before any stage after the per-band ones) wrote
        earlier = {w for t in STAGES if t.number < s.number for w in t.writes}
        if all(t.number < s.number for t in STAGES if t.per_band):
            earlier |= set(RUNNER_PRODUCTS)
        products = {r for r in s.reads if ":" not in r}
        assert products <= earlier, f"stage {s.name} reads {products - earlier}"


@pytest.mark.parametrize("spec", STAGES, ids=lambda s: s.name)
def test_stage_params_are_the_notebook_parameters(spec):
    import dataclasses
    import importlib

    from hscsim_utils.pipeline.parameters import RUNNER_PARAMETERS, notebook_defaults

    module = importlib.import_module(spec.module)
    assert module.STAGE == spec
    assert callable(module.run)
    cell = notebook_defaults(ROOT / "notebooks" / spec.notebook)
    cell = {k: v for k, v in cell.items() if k not in RUNNER_PARAMETERS}
    fields = {f.name: f.default for f in dataclasses.fields(module.Params)}
    assert fields == cell


def test_a_plot_module_is_in_its_own_stage_code_only():
    from hscsim_utils.pipeline.fingerprint import code_files

    closures = {
        s.name: {p.name for p in code_files(ROOT / "notebooks" / s.notebook)}
        for s in STAGES
    }
    for s in STAGES:
        plots = f"{s.name}_plots.py"
        assert plots in closures[s.name], f"{s.notebook} does not use {plots}"
        others = [n for n, files in closures.items() if n != s.name and plots in files]
        assert not others, (
            f"{plots} is in the code of {others}: a plot edit re-runs them"
        )
