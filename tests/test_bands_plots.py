"""Every band's products side by side (stage 06), read where the runner puts them."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from hscsim_utils.hsc.tile import BandFiles
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import (
    bands_plots,
)
from tests.fabricated_run import make_run_folder, make_tile

matplotlib.use("Agg")
SHAPE = (300, 300)


@pytest.fixture()
def two_band_run(tmp_path):
    run = make_run_folder(tmp_path / "run", SHAPE, bsig=0.03, fwhm_px=3.6)
    make_run_folder(run.band_run("g").root, SHAPE, bsig=0.02, fwhm_px=4.4, band="g")
    files = BandFiles(tmp_path / "g.fits", tmp_path / "g.csv", tmp_path / "gm.csv")
    tile = make_tile(tmp_path, bands={"g": files}, detection_band="i")
    return tile, run


@pytest.mark.parametrize(
    "product, reader, expected",
    [("sysmaps", bands_plots.background_rms_map, {"g": 0.02, "i": 0.03}),
     ("psf_model", bands_plots.psf_fwhm_map, {"g": 4.4 * 0.168, "i": 3.6 * 0.168}),
     ("mask", bands_plots.masked_map, {"g": 0.0, "i": 0.0})],
)  # fmt: skip
def test_every_band_read_where_the_runner_puts_it(two_band_run, product, reader,
                                                  expected):  # fmt: skip
    tile, run = two_band_run
    maps = bands_plots.band_maps(tile, run, product, reader)
    assert list(maps) == ["g", "i"]  # g r i z y order
    for band, (data, _) in maps.items():
        assert np.nanmedian(data) == pytest.approx(expected[band], rel=1e-3, abs=1e-6)
    fig = bands_plots.plot_bands(maps, tile.label, "what", "unit")
    assert [ax.get_title().split()[0] for ax in fig.axes[:2]] == ["g", "i"]
    assert tile.label in fig._suptitle.get_text()


def test_nothing_side_by_side_for_one_band_or_inside_a_band_run(two_band_run):
    tile, run = two_band_run
    read = bands_plots.background_rms_map
    assert bands_plots.band_maps(tile.for_band("g"), run.band_run("g"), "sysmaps",
                                 read) == {}  # fmt: skip
    one = make_tile(run.root)
    assert bands_plots.band_maps(one, run, "sysmaps", read) == {}
    missing = RunFolder(run.root / "elsewhere")  # band runs not run: none shown
    assert bands_plots.band_maps(tile, missing, "sysmaps", read) == {}
