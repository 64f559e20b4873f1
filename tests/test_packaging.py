"""The project's shape: pinned dependencies agree, notebooks are paired and clean."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _pyproject_deps() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_every_direct_dependency_is_pinned():
    deps = _pyproject_deps()
    assert deps and all("==" in d for d in deps), deps


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == _pins(_pyproject_deps())
    assert "python=3.11" in env["dependencies"]
    assert "astromatic-source-extractor" in env["dependencies"]


def test_constraints_pin_the_same_versions():
    lock = _pins((ROOT / "constraints.txt").read_text().splitlines())
    for name, version in _pins(_pyproject_deps()).items():
        assert lock.get(name) == version, f"constraints.txt: {name}"


def test_torch_is_the_cpu_build_pin():
    assert _pins(_pyproject_deps())["torch"] == "2.13.0"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks in notebooks/"


def _cells(nb) -> list[tuple[str, str, tuple]]:
    return [
        (c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ())))
        for c in nb.cells
    ]


@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_pair_in_sync(script: Path):
    ipynb = script.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{script.name} has no paired .ipynb"
    assert _cells(jupytext.read(script)) == _cells(jupytext.read(ipynb)), (
        f"{script.name} and {ipynb.name} differ: run `jupytext --sync {script}`"
    )


@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_hscsim_kernel(script: Path):
    """JupyterLab and nbval start the kernel a notebook names: the project's own."""
    from hscsim_utils.interpreter import KERNEL_NAME

    for path in (script, script.with_suffix(".ipynb")):
        assert jupytext.read(path).metadata["kernelspec"]["name"] == KERNEL_NAME


@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_ipynb_has_no_outputs(script: Path):
    nb = json.loads(script.with_suffix(".ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{script.stem}.ipynb carries outputs"
            assert cell.get("execution_count") is None


@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_parameters_cell(script: Path):
    nb = jupytext.read(script)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", ())]
    assert len(tagged) == 1, f"{script.name}: needs exactly one parameters cell"


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


@pytest.mark.parametrize(
    "script", [p for p in NOTEBOOKS if p.name[:2] != "00"], ids=lambda p: p.stem
)
def test_papermill_sees_the_chain_parameters(script: Path):
    """papermill must parse every parameter line (a quote or '=' in a comment breaks
    it), and every chain stage takes the tile file and the run folder."""
    import papermill

    declared = papermill.inspect_notebook(str(script.with_suffix(".ipynb")))
    source = next(
        c.source
        for c in jupytext.read(script).cells
        if "parameters" in c.metadata.get("tags", ())
    )
    names = [
        line.split("=")[0].strip()
        for line in source.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert list(declared) == names
    assert {"tile_file", "run_dir"} <= set(declared)


@pytest.mark.parametrize("script", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_is_used(script: Path):
    """A parameter that no later cell reads would be silently ignored by papermill."""
    cells = jupytext.read(script).cells
    index = next(
        i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", ())
    )
    code = "\n".join(c.source for c in cells[index + 1 :] if c.cell_type == "code")
    names = re.findall(r"^(\w+)\s*=", cells[index].source, re.M)
    unused = [n for n in names if not re.search(rf"\b{n}\b", code)]
    assert not unused, f"{script.name}: parameters never used: {unused}"


#: An absolute path under a machine's temporary or home folders.
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:tmp|root|home)/")


def _tracked_files() -> list[Path]:
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / name for name in out.split("\0") if name]


def _machine_paths(path: Path) -> list[str]:
    """Lines of ``path`` naming a machine path; docs may name documented defaults."""
    try:
        lines = path.read_text().splitlines()
    except (UnicodeDecodeError, IsADirectoryError):
        return []
    is_doc = path.suffix in {".md", ".rst", ".txt"}
    return [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if MACHINE_PATH.search(line) and not (is_doc and "default" in line.lower())
    ]


def test_machine_path_pattern():
    for top in ("tmp", "root", "home"):  # written so that this file holds none
        assert MACHINE_PATH.search(f'RES = Path("/{top}/sdists/x/ufig")')
        assert MACHINE_PATH.search(f"cache /{top}/_cache/cosmo-torrent")
    assert not MACHINE_PATH.search("~/_cache/cosmo-torrent and $HOME/_cache")
    assert not MACHINE_PATH.search("runs/demo/tmp/x and src/home/page")


def test_no_tracked_file_holds_a_path_of_this_machine():
    hits = [hit for path in _tracked_files() for hit in _machine_paths(path)]
    assert not hits, "tracked files name paths of one machine:\n" + "\n".join(hits)
