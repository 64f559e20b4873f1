"""The ``hscsim`` command line as a user meets it: help, version, bad arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hscsim_utils import __version__
from tests.synthetic import write_tile_file

HSCSIM = Path(sys.executable).with_name("hscsim")


def _hscsim(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HSCSIM, *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def test_version():
    done = _hscsim("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"hscsim {__version__}"


@pytest.mark.parametrize(
    "command, shown",
    [
        ("demo-tile", ["(default: (4200, 4200))", "(default: 20240611)"]),
        ("batch", ["(default: local)", "(default: 2)", "Dask cluster"]),
        ("run", ["--threads", "(default: all)"]),
    ],
)
def test_help_states_defaults(command, shown):
    done = _hscsim(command, "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())  # argparse wraps lines
    for fragment in shown:
        assert fragment in text, (fragment, done.stdout)
    assert "(default: None)" not in text and "(default: False)" not in text


def test_demo_tile_defaults_are_the_builders():
    import inspect

    from hscsim_utils.demo.build import build_demo_tile
    from hscsim_utils.pipeline.cli import build_parser

    args = build_parser().parse_args(["demo-tile", "--out", "x"])
    params = inspect.signature(build_demo_tile).parameters
    assert args.seed == params["seed"].default
    assert tuple(args.size) == params["size"].default


def _bad_cases(tmp_path: Path) -> dict[str, tuple[list, str]]:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    (tmp_path / "calexp.fits").write_bytes(b"x")
    tile = write_tile_file(tmp_path, "t")
    batch = tmp_path / "batch.yaml"
    batch.write_text("tiles: []\n")
    run_args = ["run", "--tile", tile, "--out", tmp_path / "r", "--no-check"]
    return {
        "data-cache-is-a-file": (["data", "--cache", a_file], "not a folder"),
        "demo-out-is-a-file": (
            ["demo-tile", "--out", a_file / "x"],
            f"{a_file / 'x'}: cannot be a folder: {a_file} is a file (--out)",
        ),
        "run-missing-tile": (
            ["run", "--tile", tmp_path / "none.yaml", "--out", tmp_path / "r"],
            "none.yaml",
        ),
        "run-out-is-a-file": (
            ["run", "--tile", tile, "--out", a_file],
            f"{a_file}: is a file, not a folder (--out)",
        ),
        "run-zero-threads": (
            ["run", "--tile", tile, "--out", tmp_path / "r", "--threads", "0"],
            "--threads: must be at least 1",
        ),
        "run-bad-bands": (
            [*run_args, "--bands", "iq"],
            "--bands: unknown bands ['q']; HSC bands: grizy, e.g. gri",
        ),
        "run-absent-band": (
            [*run_args, "--bands", "gi"],
            f"{tile}: has no bands ['g'] (--bands); its bands: i",
        ),
        "batch-missing-file": (
            ["batch", tmp_path / "none.yaml", "--out", tmp_path / "b"],
            "none.yaml",
        ),
        "batch-no-tiles": (["batch", batch, "--out", tmp_path / "b"], "batch.yaml"),
        "batch-zero-workers": (
            ["batch", batch, "--out", tmp_path / "b", "--workers", "0"],
            "--workers: must be at least 1",
        ),
    }


CASES = [
    "data-cache-is-a-file", "demo-out-is-a-file", "run-missing-tile",
    "run-out-is-a-file", "run-zero-threads", "run-bad-bands", "run-absent-band",
    "batch-missing-file", "batch-no-tiles",
    "batch-zero-workers",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_arguments_give_one_line_and_status_2(tmp_path, case):
    cases = _bad_cases(tmp_path)
    assert sorted(cases) == sorted(CASES)
    args, fragment = cases[case]
    done = _hscsim(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"hscsim {args[0]}: error: ") and fragment in lines[0]


@pytest.mark.slow
def test_demo_tile_says_its_name_both_seeds_and_the_minimum(tmp_path):
    done = _hscsim("demo-tile", "--out", tmp_path / "d", "--size", 300, 300,
                   "--seed", 3)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "demo-galsim-ud-8523-402-300x300-seed3: observation seed 3" in done.stdout
    assert "the simulation of this tile uses its own seed, 42" in done.stdout
    assert "stages 05-09 need at least 2000 x 2000 px" in done.stdout
