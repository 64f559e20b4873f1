"""``hscsim check-tile``: every input checked up front, one line per problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hscsim_utils.data.provision import ufig_test_resource
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import BandFiles, load_tile, write_tile
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
    fields = _fields(made.tile_file) | {
        "besancon_headers": [folder / "b.header"],
        "besancon_catalogs": [folder / "b.fits"],
        "gaia_table": folder / "gaia.vot",
        "truth_dir": None,
    }
    return write_tile(made.tile_file, fields)


def _fields(tile_file: Path) -> dict:
    """The tile's fields in the single-band form of the file."""
    fields = dict(load_tile(tile_file).__dict__)
    for key in ("extra", "bands", "detection_band"):
        fields.pop(key)
    return fields


def _edit(tile_file: Path, **values) -> Path:
    return write_tile(tile_file, _fields(tile_file) | values)


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
        f"band i: {spec.frame_metadata}: none of its",
        f"band i: {spec.coadd_metadata}: its patch centre",
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


def _add_band_g(good: Path, **calexp_kwargs) -> Path:
    """``good`` as a tile of bands g and i, band g's files in ``in/g``."""
    spec = load_tile(good)
    wcs = WCS(fits.getheader(spec.calexp, 1))
    folder = good.parent / "g"
    synthetic.write_synthetic_tile(
        folder, shape=(120, 160), wcs=wcs, band="HSC-G", seed=5, **calexp_kwargs
    )
    g = BandFiles(folder / "calexp.fits", folder / "frames.csv", folder / "coadd.csv")
    fields = _fields(good) | {"bands": {"g": g, "i": spec.bands["i"]}}
    for key in ("band", "calexp", "frame_metadata", "coadd_metadata"):
        fields.pop(key)
    return write_tile(good, fields)


def test_every_band_is_checked_and_named(good):
    tile_file = _add_band_g(good)
    spec = load_tile(tile_file)
    assert spec.band_names == ("g", "i") and check_tile(tile_file) == []
    g = spec.bands["g"]
    g.calexp.write_bytes(spec.calexp.read_bytes())  # band i's calexp under g
    coadd = hsc_io.read_coadd_metadata(g.coadd_metadata)
    coadd["ra2000"] += 5.0
    hsc_io.write_archive_csv(g.coadd_metadata, coadd, hsc_io.COADD_COLUMNS)
    problems = check_tile(tile_file)
    assert problems == [f"band g: {g.calexp}: FILTER is 'HSC-I', expected band 'g'"], (
        problems
    )
    synthetic.write_synthetic_calexp(
        g.calexp, (120, 160), wcs=synthetic.make_wcs((120, 160), RA0 + 0.01, DEC0),
        band="HSC-G",
    )  # fmt: skip
    problems = check_tile(tile_file)
    assert problems[0].startswith(f"band g: {g.calexp}: its 160 x 120 px do not lie")
    assert problems[-1].startswith(f"band g: {g.coadd_metadata}: its patch centre")


def test_run_refuses_a_bad_tile_before_stage_01(good, tmp_path):
    """The tile is checked before any stage starts: one line, exit 2, and no
    stage product (not even stage 01's) in the run folder."""
    _edit(good, galaxy_model="Foo+99")
    out = tmp_path / "run"
    done = subprocess.run(
        [HSCSIM, "run", "--tile", good, "--out", out], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "galaxy_model: 'Foo+99' is not one of" in done.stderr
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == [], written
    assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.slow
def test_the_demo_tile_passes():
    assert check_tile(synthetic.demo_tile_for_tests()) == []


def test_check_of_some_bands_only(good):
    """``--bands``: the bands named are checked (a broken band left out is not),
    a band the tile lacks or a choice without the detection band is one line."""
    tile_file = _add_band_g(good)
    for bands, fragment in [("gz", "has no bands ['z'] (--bands)"),
                            ("g", "lacks the detection band i")]:  # fmt: skip
        problems = check_tile(tile_file, bands)
        assert len(problems) == 1 and fragment in problems[0], problems
    load_tile(tile_file).bands["g"].calexp.unlink()
    assert check_tile(tile_file, "i") == [] and len(check_tile(tile_file, "gi")) == 1
