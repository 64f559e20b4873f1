"""``hscsim archive``: queries, paths, Besançon pixels and tile file of a patch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hscsim_utils.demo.observation import demo_geometry
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.pipeline import archive
from hscsim_utils.pipeline.check_tile import check_tile
from tests import synthetic

TUTORIAL = Path(__file__).resolve().parents[2] / "shared/reference/hsc_dud_tutorial.rst"


def _squash(sql: str) -> str:
    return re.sub(r"\s+", "", sql)


def _tutorial_sql() -> list[str]:
    text = TUTORIAL.read_text()
    blocks = re.findall(r"\.\. code:: sql\n\n((?:   .*\n|\n)+)", text)
    # the tutorial's mosaic query has its FROM and WHERE lines commented out ('#')
    return [b.replace("#", "") for b in blocks]


@pytest.mark.skipif(not TUTORIAL.is_file(), reason="../shared/reference not present")
def test_queries_of_9813_7_2_are_the_tutorials():
    req = archive.patch_request(9813, "7,2", "i")
    frames, mosaic = _tutorial_sql()
    assert _squash(req.frames_sql("i")) == _squash(frames)
    assert _squash(req.mosaic_sql("i")) == _squash(mosaic)
    assert req.skymap_id == "98130702"


def test_patch_9813_7_2_geometry_and_paths():
    req = archive.patch_request(9813, "7,2", "g,i")
    # rings sky map: tract 9813 is centred at (150.2479, +2.2314); the centre of
    # patch 7,2 is 12000 px (0.56 deg) towards lower RA and 8000 px (0.37 deg)
    # south of the tract centre
    assert req.centre == pytest.approx((149.68767, 1.85799), abs=2e-5)
    assert req.calexp_path("i") == (
        "pdr3_dud/deepCoadd-results/HSC-I/9813/7,2/calexp-HSC-I-9813-7,2.fits"
    )
    assert archive.FILE_TREE + req.calexp_path("i") == (
        "https://hsc-release.mtk.nao.ac.jp/archive/filetree/pdr3_dud/"
        "deepCoadd-results/HSC-I/9813/7,2/calexp-HSC-I-9813-7,2.fits"
    )
    assert "frm.filter01 = 'HSC-G')" in req.frames_sql("g")
    assert "band = 'HSC-G'" in req.mosaic_sql("g")
    assert [p for p, _, _ in req.pixels] == [381]


def test_demo_patch_needs_the_demos_besancon_pixel():
    req = archive.patch_request(8523, "4,2", "i")
    assert [p for p, _, _ in req.pixels] == [403]  # the demo's Besançon pixel
    geom = demo_geometry((4200, 4200))
    ra, dec = geom.wcs().all_pix2world(2099.5, 2099.5, 0)
    assert req.centre == pytest.approx((float(ra), float(dec)), abs=1e-9)


@pytest.mark.parametrize(
    "args, fragment",
    [((9813, "7;2", "i"), "is not 'x,y'"), ((9813, "9,2", "i"), "run from 0 to 8"),
     ((9813, "7,2", "i,u"), "choose among g, r, i, z, y"),
     ((9813, "7,2", "i", "pdr9"), "is not one of")],
)  # fmt: skip
def test_bad_requests(args, fragment):
    with pytest.raises(InputError, match=re.escape(fragment)):
        archive.patch_request(*args)


@pytest.mark.slow
def test_written_tile_file_passes_check_tile_once_files_are_in_place(tmp_path):
    demo = load_tile(synthetic.demo_tile_for_tests())  # a cut of patch 8523-4,2
    done = subprocess.run(
        [Path(sys.executable).with_name("hscsim"), "archive", "8523", "4,2",
         "--out", tmp_path / "req"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "SELECT frm.llcra" in done.stdout and "README.txt" in done.stdout
    tile_file = tmp_path / "req" / "tile_i.yaml"
    expected = load_tile(tile_file)
    assert check_tile(tile_file)[0].endswith("file not found")  # nothing there yet
    for key in ("calexp", "frame_metadata", "coadd_metadata", "gaia_table"):
        shutil.copyfile(getattr(demo, key), getattr(expected, key))
    for key in ("besancon_headers", "besancon_catalogs"):
        expected_paths = getattr(expected, key)
        expected_paths[0].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(getattr(demo, key)[0], expected_paths[0])
    assert check_tile(tile_file) == []
