"""One GalSBI/UFig run in two bands: one galaxy population, forced photometry.

A fabricated patch in g and r (g: broader PSF, lower noise), simulated once with
detection in r. The colours SExtractor measures in the two images must be the
colours GalSBI drew for the same galaxies, within the photometric errors: that
holds only if both images render one population and both catalogues measure the
same objects in the same apertures (dual-image mode).
"""

from __future__ import annotations

import numpy as np
import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.stages import simulate
from tests.fabricated_run import make_run_folder, make_tile

pytestmark = pytest.mark.slow

SHAPE = (1000, 1000)
SEED = 11
BANDS = {"g": {"bsig": 0.02, "fwhm_px": 4.4}, "r": {"bsig": 0.03, "fwhm_px": 3.6}}
MAG_LIMIT = 25.0  # intrinsic r magnitude of the galaxies whose colours are compared


@pytest.fixture(scope="module")
def two_bands(tmp_path_factory):
    root = tmp_path_factory.mktemp("gr")
    runs = {
        band: make_run_folder(root / band, SHAPE, band=band, **values)
        for band, values in BANDS.items()
    }
    tile = make_tile(root, seed=SEED, band="r")
    sim = simulate.run_simulation(
        tile, runs["r"], out=root / "sim", measure_psf="none", band_runs=runs
    )
    return runs, sim


def _catalogs(sim: simulate.Simulation) -> dict[str, np.ndarray]:
    return {b: sim.for_band(b).load_catalogs()["sextractor"] for b in BANDS}


def test_every_band_has_its_image_and_catalogue(two_bands):
    _, sim = two_bands
    assert sim.settings.bands == ("g", "r") and sim.settings.band == "r"
    loaded = simulate.load_simulation(sim.directory)
    assert loaded.settings.bands == ("g", "r")
    for band in BANDS:
        assert loaded.for_band(band).image_path.is_file()
    with pytest.raises(InputError, match="has no band 'z'"):
        loaded.for_band("z")
    cats = _catalogs(sim)
    # dual-image mode: one detection list, the same objects in the same order
    assert len(cats["g"]) == len(cats["r"]) > 100
    np.testing.assert_array_equal(cats["g"]["X_IMAGE"], cats["r"]["X_IMAGE"])


def test_each_band_has_its_own_noise(two_bands):
    runs, sim = two_bands
    seg = sim.for_band("r").load_images()["segmentation"]
    sky = seg == 0
    sigma = {}
    for band in BANDS:
        pixels = sim.for_band(band).load_images()["image"][sky]
        q16, q84 = np.percentile(pixels, [16, 84])
        sigma[band] = (q84 - q16) / 2
    # the rendered noise follows each band's map_bsig (0.02 and 0.03 ADU)
    assert sigma["g"] / sigma["r"] == pytest.approx(0.02 / 0.03, rel=0.1)


def test_measured_colours_are_the_populations_colours(two_bands):
    """g - r of matched galaxies (r < 25) agrees with GalSBI's within the errors."""
    _, sim = two_bands
    cats = _catalogs(sim)
    g, r = cats["g"], cats["r"]
    keep = (
        (r["star_gal"] == 0)
        & (r["mag"] < MAG_LIMIT)
        & (g["FLAGS"] == 0)
        & (r["FLAGS"] == 0)
        & (g["MAG_AUTO"] < 90)
    )
    assert keep.sum() >= 100
    measured = g["MAG_AUTO"][keep] - r["MAG_AUTO"][keep]
    intrinsic = g["mag"][keep] - r["mag"][keep]
    error = np.hypot(g["MAGERR_AUTO"][keep], r["MAGERR_AUTO"][keep])
    residual = measured - intrinsic
    # the galaxies span a real range of colours, so a zero or swapped colour fails
    assert np.ptp(intrinsic) > 0.5
    # Kron apertures from the r image hold a slightly smaller share of the
    # broader g profile: a small common offset, far below the colours' spread
    offset = np.median(residual)
    assert abs(offset) < 0.06
    pull = (residual - offset) / error
    within = np.mean(np.abs(pull) < 3)
    # a few neighbours' light adds outliers; Gaussian errors alone give 0.997
    assert within > 0.9, (within, offset)
    assert 0.7 < 1.4826 * np.median(np.abs(pull)) < 1.5


def test_stage07_colours_compare_simulation_and_data_alike(two_bands, tmp_path):
    """Stage 07's colour comparison, reading both sides from their files: a
    second realisation (another seed) as the data gives no significant colour
    difference; the same data with every g magnitude 0.3 mag fainter gives a
    g - r median shift of -0.3 beyond its floor (on this small patch the floor
    of the median shift is ~0.05 mag; the full DEMO patch has 17 times the
    area)."""
    import shutil

    from cosmic_toolbox import arraytools as at

    from hscsim_utils.hsc.tile import BandFiles
    from hscsim_utils.runfolder import RunFolder
    from hscsim_utils.stages.quality_colours import BandSide, colour_comparison
    from hscsim_utils.stages.source_extraction import read_catalog

    runs, sim = two_bands
    other = make_tile(tmp_path, seed=SEED + 1, band="r")
    data = simulate.run_simulation(other, runs["r"], out=tmp_path / "data",
                                   measure_psf="none", band_runs=runs)  # fmt: skip
    run = RunFolder(tmp_path / "run")  # the data's stage 03 catalogues
    for band in BANDS:
        target = run if band == "r" else run.band_run(band)
        target.sextractor_cat.parent.mkdir(parents=True, exist_ok=True)
        at.save_hdf_cols(
            str(target.sextractor_cat),  # stage 03's layout
            data.for_band(band).load_catalogs()["sextractor"],
        )
        if band != "r":
            shutil.copyfile(runs[band].mask, target.mask)
    files = BandFiles(tmp_path / "g.fits", tmp_path / "g.csv", tmp_path / "gm.csv")
    tile = make_tile(tmp_path, seed=SEED, band="r", bands={"g": files},
                     detection_band="r")  # fmt: skip

    def sides():  # what stage 07 reads of every band, from the files
        return {
            b: BandSide(np.zeros(SHAPE, bool),
                        sim.for_band(b).load_catalogs()["sextractor"],
                        read_catalog(band_run.sextractor_cat))
            for b, band_run in run.band_runs(BANDS, "r").items()
        }  # fmt: skip

    same = colour_comparison(tile, run, sim.directory, sides())
    stats = same.block["statistics"]
    assert same.block["bands"] == ["g", "r"] and same.block["data"] == "DEMO"
    assert set(stats) == {"g-r_ks", "g-r_median_shift"}
    for stat in stats.values():  # one population model, two realisations
        assert stat["floor"] > 0 and abs(stat["value"]) < 3 * stat["floor"]
    n_sim, n_data = stats["g-r_ks"]["n"]
    assert n_sim > 100 and n_data > 100
    # the same data, g fainter by 0.3 mag
    import h5py

    with h5py.File(run.band_run("g").sextractor_cat, "r+") as fh5:
        fh5["MAG_AUTO"][...] = fh5["MAG_AUTO"][()] + np.float32(0.3)
    shifted = colour_comparison(tile, run, sim.directory, sides()).block["statistics"]
    moved = shifted["g-r_median_shift"]
    assert moved["value"] == pytest.approx(
        stats["g-r_median_shift"]["value"] - 0.3, abs=0.03
    )
    assert moved["significant"], (moved, stats)
    # a g catalogue that does not list the r detections row for row is refused
    cat = at.load_hdf_cols(str(run.band_run("g").sextractor_cat))
    at.save_hdf_cols(str(run.band_run("g").sextractor_cat), cat[1:])
    with pytest.raises(InputError, match="not the r band's detections row for row"):
        colour_comparison(tile, run, sim.directory, sides())
    import matplotlib

    matplotlib.use("Agg")
    from hscsim_utils.stages.quality_plots import plot_colours

    fig = plot_colours(same, "DEMO tile (simulated): gr")
    assert "SIMULATION versus DEMO data, colours" in fig._suptitle.get_text()
    assert "g-r: KS" in fig.axes[0].get_title()
