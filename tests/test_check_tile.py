"""``hscsim check-tile``: every input checked up front, one line per problem."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hscsim_utils.data.provision import ufig_test_resource
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import load_tile, write_tile
from hscsim_utils.pipeline.check_tile import check_tile
from tests import synthetic

HSCSIM = Path(sys.executable).with_name("hscsim")
#: In the XMM-LSS field, where the real Besançon pixel 403 and Gaia stars of ufig's
#: source distribution lie.
RA0, DEC0 = 34.2, -5.57


@pytest.fixture
def good(tmp_path) -> Path:
    """A small tile in real formats whose every input is right."""
    folder = tmp_path / "in"
    wcs = synthetic.make_wcs((120, 160), ra0=RA0, dec0=DEC0)
    made = synthetic.write_synthetic_tile(folder, shape=(120, 160), wcs=wcs)
    cat, area = demo_stars.load_besancon_pixel(ufig_test_resource("besancon_HSC.h5"))
    demo_stars.write_besancon(folder / "b.header", folder / "b.fits", cat, area)
    gaia = demo_stars.load_gaia(ufig_test_resource("gaiadr3.cat"))
    demo_stars.write_gaia_votable(folder / "gaia.vot", gaia)
    fields = load_tile(made.tile_file).__dict__ | {
        "besancon_headers": [folder / "b.header"],
        "besancon_catalogs": [folder / "b.fits"],
        "gaia_table": folder / "gaia.vot",
        "truth_dir": None,
    }
    fields.pop("extra")
    return write_tile(made.tile_file, fields)


def _edit(tile_file: Path, **values) -> Path:
    fields = load_tile(tile_file).__dict__ | values
    fields.pop("extra")
    return write_tile(tile_file, fields)


def test_a_good_tile_has_no_problem(good):
    assert check_tile(good) == []


def test_every_problem_is_one_line_and_all_are_reported_at_once(good):
    spec = load_tile(good)
    frames = hsc_io.read_frame_metadata(spec.frame_metadata)
    for col in ("llcra", "ulcra", "urcra", "lrcra"):
        frames[col] += 5.0  # the frames of another patch
    hsc_io.write_archive_csv(spec.frame_metadata, frames, hsc_io.FRAME_COLUMNS)
    coadd = hsc_io.read_coadd_metadata(spec.coadd_metadata)
    coadd["ra2000"] += 5.0
    hsc_io.write_archive_csv(spec.coadd_metadata, coadd, hsc_io.COADD_COLUMNS)
    spec.gaia_table.write_text("not a VOTable")
    _edit(good, galaxy_model="Foo+99", besancon_headers=[], besancon_catalogs=[])
    problems = check_tile(good)
    expected = [
        "galaxy_model: 'Foo+99' is not one of",
        f"{spec.frame_metadata}: none of its",
        f"{spec.coadd_metadata}: its patch centre",
        "besancon_headers: no Besançon output covers HEALPix (nside 8) pixel 403",
        f"{spec.gaia_table}:",
    ]
    assert len(problems) == len(expected), problems
    for line, start in zip(problems, expected, strict=True):
        assert line.startswith(start) and "\n" not in line, line


@pytest.mark.parametrize(
    "break_it, fragment",
    [
        (lambda spec: spec.calexp.write_bytes(spec.calexp.read_bytes()[:-5000]),
         "is truncated"),
        (lambda spec: spec.calexp.unlink(), "file not found"),
        (lambda spec: _edit(spec.path, band="g"), "FILTER is 'HSC-I'"),
    ],
    ids=["truncated", "missing", "other-band"],
)  # fmt: skip
def test_calexp_problems(good, break_it, fragment):
    spec = load_tile(good)
    object.__setattr__(spec, "extra", {})
    spec.__dict__["path"] = good
    break_it(spec)
    problems = check_tile(good)
    assert len(problems) == 1 and str(spec.calexp) in problems[0], problems
    assert fragment in problems[0]


def test_run_refuses_a_bad_tile_in_seconds_before_stage_01(good, tmp_path):
    _edit(good, galaxy_model="Foo+99")
    out = tmp_path / "run"
    start = time.perf_counter()
    done = subprocess.run(
        [HSCSIM, "run", "--tile", good, "--out", out], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 2 and seconds < 5, (seconds, done.stderr)
    assert "galaxy_model: 'Foo+99' is not one of" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.slow
def test_the_demo_tile_passes():
    assert check_tile(synthetic.demo_tile_for_tests()) == []
