"""Stage 03: SExtractor runs, catalogue layout, failures and stamp flags."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from hscsim_utils.errors import InputError, ToolError
from hscsim_utils.hsc.files import PDR3_MASK_PLANES, read_calexp, write_calexp
from hscsim_utils.hsc.tile import BandFiles, TileSpec, load_tile
from hscsim_utils.pipeline import runner
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import source_extraction as extraction
from hscsim_utils.stages import source_extraction_plots as plots
from tests.run_products import written_products
from tests.synthetic import write_tile_file

NO_DATA = 1 << PDR3_MASK_PLANES["NO_DATA"]
SETTINGS = extraction.ExtractionSettings(
    seeing_arcsec=0.67, saturation=1e5, magzero=27.0, gain=100.0, pixscale=0.168
)


def wcs_header(nx: int, ny: int, ra: float = 34.0, dec: float = -5.0) -> fits.Header:
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"] = nx / 2 + 0.5, ny / 2 + 0.5
    h["CRVAL1"], h["CRVAL2"] = ra, dec
    h["CD1_1"], h["CD2_2"] = -0.168 / 3600, 0.168 / 3600
    h["CD1_2"] = h["CD2_1"] = 0.0
    return h


def add_moffat_stars(image, x, y, flux, fwhm=4.0, beta=3.0, r=12):
    """Add Moffat stars (one stamp per star) to ``image`` in place."""
    ny, nx = image.shape
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    for xi, yi, fi in zip(x, y, flux, strict=True):
        ix, iy = int(round(xi)), int(round(yi))
        prof = (1 + ((dx + ix - xi) ** 2 + (dy + iy - yi) ** 2) / alpha**2) ** -beta
        ys, xs = slice(iy - r, iy + r + 1), slice(ix - r, ix + r + 1)
        image[ys, xs] += fi * prof / prof.sum()


def synthetic_calexp(path, nx=400, ny=300, n=50, seed=1, no_data_cols=60, edge=False):
    """Calexp with Moffat stars (i 18..23), a NO_DATA strip on the left (NaN).

    ``edge=True`` makes the noise rise steeply towards the strip, as at the
    border of a coadd where fewer exposures overlap.
    """
    rng = np.random.default_rng(seed)
    # jittered grid: stars at least ~20 px apart, so blends do not hide any
    cols = int(np.ceil(np.sqrt(n * (nx - no_data_cols) / ny)))
    gx, gy = np.meshgrid(
        np.linspace(no_data_cols + 20, nx - 20, cols),
        np.linspace(20, ny - 20, int(np.ceil(n / cols))),
    )
    x = gx.ravel()[:n] + rng.uniform(-4, 4, n)
    y = gy.ravel()[:n] + rng.uniform(-4, 4, n)
    mag = rng.uniform(18, 23, n)
    sigma = np.full((ny, nx), 0.05)
    if edge:
        dist = np.clip(np.arange(nx) - no_data_cols, 0, None)
        sigma *= 1 + 3 * np.exp(-dist / 30.0)
    image = rng.normal(size=(ny, nx)) * sigma
    add_moffat_stars(image, x, y, 10 ** (-0.4 * (mag - 27)))
    variance = sigma**2
    mask = np.zeros((ny, nx), np.int32)
    image[:, :no_data_cols] = np.nan
    variance[:, :no_data_cols] = np.nan
    mask[:, :no_data_cols] = NO_DATA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HIERARCH cards for long MP_* names
        write_calexp(path, image, mask, variance, wcs_header(nx, ny))
    return x, y, mag


def match(cat, x, y, radius=1.0):
    """For each true star: is there a detection within ``radius`` pixels."""
    d = np.hypot(
        cat["XWIN_IMAGE"][:, None] - 1 - x[None], cat["YWIN_IMAGE"][:, None] - 1 - y
    )
    return d.min(axis=0) < radius, d.min(axis=1)


def outputs(tmp_path):
    folder = tmp_path / "sextractor"
    return folder / "cat.h5", folder / "seg.fits", folder / "bkg.fits"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic") / "calexp.fits"
    truth = synthetic_calexp(path)
    return read_calexp(path), truth


def test_detects_stars_at_their_positions_and_nothing_in_no_data(synthetic, tmp_path):
    calexp, (x, y, mag) = synthetic
    cat_path, seg_path, bkg_path = outputs(tmp_path)
    summary = extraction.run_sextractor(calexp, SETTINGS, cat_path, seg_path, bkg_path)
    cat = extraction.read_catalog(cat_path)
    assert summary["n_sources"] == len(cat) > 0
    found, _ = match(cat, x, y)
    bright = mag < 22
    assert found[bright].mean() >= 0.95
    assert cat["X_IMAGE"].min() > 60  # NO_DATA strip: columns 1..60
    seg = fits.getdata(seg_path)
    assert seg.shape == calexp.shape and not seg[:, :60].any()
    assert fits.getdata(bkg_path).shape == calexp.shape
    # ufig's layout: one dataset per column, float64 stored as float32
    with h5py.File(cat_path) as fh5:
        assert fh5["MAG_AUTO"].dtype == np.float32
        assert fh5["FLUX_APER"].shape == (len(cat), 2)
    assert sorted(p.name for p in cat_path.parent.iterdir()) == sorted(
        p.name for p in (cat_path, seg_path, bkg_path)
    )


def test_magnitudes_follow_the_zero_point(synthetic, tmp_path):
    calexp, (x, y, mag) = synthetic
    cat_path, seg_path, bkg_path = outputs(tmp_path)
    extraction.run_sextractor(calexp, SETTINGS, cat_path, seg_path, bkg_path)
    cat = extraction.read_catalog(cat_path)
    d = np.hypot(cat["XWIN_IMAGE"][:, None] - 1 - x, cat["YWIN_IMAGE"][:, None] - 1 - y)
    nearest = d.argmin(axis=0)
    ok = (d.min(axis=0) < 1) & (mag < 21)
    offset = np.median(cat["MAG_AUTO"][nearest[ok]] - mag[ok])
    assert abs(offset) < 0.1  # MAG_AUTO misses a few per cent of a Moffat's flux


def test_variance_weights_avoid_junk_at_a_noisy_coadd_edge(tmp_path):
    path = tmp_path / "edge.fits"
    x, y, _ = synthetic_calexp(path, nx=700, ny=500, n=80, seed=5, edge=True)
    calexp = read_calexp(path)
    junk = {}
    for weighting in ("variance", "none"):
        cat_path, seg_path, bkg_path = outputs(tmp_path / weighting)
        extraction.run_sextractor(
            calexp, SETTINGS, cat_path, seg_path, bkg_path, weighting=weighting
        )
        _, nearest = match(extraction.read_catalog(cat_path), x, y)
        junk[weighting] = int((nearest > 3).sum())
    assert junk["variance"] == 0 and junk["none"] > 3


def test_missing_binary_raises_tool_error_and_writes_nothing(synthetic, tmp_path):
    calexp, _ = synthetic
    paths = outputs(tmp_path)
    with pytest.raises(ToolError, match="no-such-sextractor-binary"):
        extraction.run_sextractor(
            calexp, SETTINGS, *paths, binary="no-such-sextractor-binary"
        )
    assert not any(p.exists() for p in paths)


def test_failing_run_raises_with_stderr_and_keeps_old_outputs(synthetic, tmp_path):
    calexp, _ = synthetic
    paths = outputs(tmp_path)
    paths[0].parent.mkdir(parents=True)
    paths[0].write_text("previous catalogue")
    bad = tmp_path / "bad.config"
    bad.write_text("BACK_TYPE BOGUS\n")
    with pytest.raises(ToolError) as err:
        extraction.run_sextractor(calexp, SETTINGS, *paths, config=str(bad))
    message = str(err.value)
    assert "exit code" in message and str(bad) in message  # the command
    assert "BACK_TYPE set to an unknown keyword" in message  # SExtractor's stderr
    assert paths[0].read_text() == "previous catalogue"
    assert sorted(p.name for p in paths[0].parent.iterdir()) == [paths[0].name]


def test_unknown_config_and_weighting_are_input_errors(synthetic, tmp_path):
    calexp, _ = synthetic
    with pytest.raises(InputError, match="no_such.config"):
        extraction.run_sextractor(
            calexp, SETTINGS, *outputs(tmp_path), config="no_such.config"
        )
    with pytest.raises(InputError, match="weighting"):
        extraction.prepare_inputs(calexp, weighting="rms")


def test_named_mask_planes_are_blanked(synthetic):
    import dataclasses

    shared, _ = synthetic
    calexp = dataclasses.replace(
        shared, image=shared.image.copy(), mask=shared.mask.copy()
    )  # the fixture is shared by the module
    bit = calexp.mask_bit("BRIGHT_OBJECT")
    calexp.mask[:10, :10] = 1 << bit  # and no other plane
    calexp.image[:10, :10] = 5.0
    default, _ = extraction.prepare_inputs(calexp)
    assert (default[:10, :10] == 5.0).all()  # the tutorial blanks NO_DATA only
    blanked, _ = extraction.prepare_inputs(
        calexp, blank_planes=("NO_DATA", "BRIGHT_OBJECT")
    )
    assert (blanked[:10, :10] == 0).all()
    assert (blanked[10:, 10:] == default[10:, 10:]).all()
    with pytest.raises(InputError, match="MP_GHOST not in the MASK header"):
        extraction.prepare_inputs(calexp, blank_planes=("GHOST",))


def test_ldac_conversion_matches_ufig(synthetic, tmp_path):
    from ufig.plugins.run_sextractor_forced_photometry import convert_fits_to_hdf

    calexp, _ = synthetic
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.nan_to_num(calexp.image)).writeto(image)
    ldac = tmp_path / "cat.ldac"
    cmd = extraction.build_command(
        extraction.find_sextractor(), image, None, ldac,
        (tmp_path / "s.fits", tmp_path / "b.fits"), SETTINGS,
    )  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    ours = extraction.read_catalog(_converted(ldac, tmp_path / "ours.h5"))
    shutil.copy(ldac, tmp_path / "ufig.cat")
    convert_fits_to_hdf(str(tmp_path / "ufig.cat"))
    theirs = extraction.read_catalog(tmp_path / "ufig.cat")
    assert ours.dtype == theirs.dtype and len(ours) > 10
    for name in ours.dtype.names:
        np.testing.assert_array_equal(ours[name], theirs[name])


def _converted(ldac, out):
    extraction.ldac_to_hdf(ldac, out)
    return out


def test_settings_from_skymapinfo_use_effective_gain(tmp_path):
    info = dict(pixscale=0.168, seeing_i=0.6, satur_i=900.0, magzero_i=27.0)
    info.update(gain_i=3.0, nexp_i=40.0)
    path = tmp_path / "skymapinfo.json"
    path.write_text(json.dumps(info))
    settings = extraction.read_settings(path, "i")
    assert settings.gain == pytest.approx(120.0)
    assert settings.seeing_arcsec == 0.6 and settings.saturation == 900.0
    del info["nexp_i"]
    path.write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"skymapinfo.json: missing keys \['nexp_i'\]"):
        extraction.read_settings(path, "i")
    path.write_text(json.dumps({**info, "nexp_i": 0.0}))
    with pytest.raises(InputError, match="skymapinfo.json.*gain"):
        extraction.read_settings(path, "i")
    with pytest.raises(InputError, match="run stage 01"):
        extraction.read_settings(tmp_path / "absent.json")


def test_stamp_flags_mark_masked_and_overlap_sources(synthetic, tmp_path):
    from ufig.plugins.add_generic_stamp_flags import add_all_stamp_flags

    calexp, _ = synthetic
    cat_path, seg_path, bkg_path = outputs(tmp_path)
    extraction.run_sextractor(calexp, SETTINGS, cat_path, seg_path, bkg_path)
    cat = extraction.read_catalog(cat_path)
    ny, nx = calexp.shape
    mask = np.zeros((ny, nx), np.int32)
    mask[:, 250:] |= 1 << 1  # bright-star mask (ufig flag bit 1)
    mask[:150, :] |= 1 << 2  # survey mask (ufig flag bit 2)
    mask[300:, 100:180] |= 1  # delta weight (ufig flag bit 0)
    overlap = np.zeros((ny, nx), np.int8)
    overlap[:, :200] = 1
    with h5py.File(tmp_path / "mask.h5", "w") as fh5:
        fh5["mask"] = mask
    with h5py.File(tmp_path / "overlap.h5", "w") as fh5:
        fh5["img_mask"] = overlap
    ufig_cat = tmp_path / "ufig_flags.cat"  # ufig's own code, on a copy
    shutil.copyfile(cat_path, ufig_cat)
    add_all_stamp_flags(
        str(ufig_cat), str(tmp_path / "overlap.h5"), str(tmp_path / "mask.h5"), 1.0
    )
    flags = extraction.add_stamp_flags(
        cat_path, tmp_path / "mask.h5", tmp_path / "overlap.h5", calexp.shape
    )
    stored = extraction.read_catalog(cat_path)["FLAGS_STAMP"]
    np.testing.assert_array_equal(flags, stored)
    with h5py.File(ufig_cat, "r") as fh5:  # the bit operations: ufig's flags
        np.testing.assert_array_equal(flags, fh5["FLAGS_STAMP"][()])
    assert len(np.unique(flags)) >= 4
    x, y = cat["XWIN_IMAGE"] - 1, cat["YWIN_IMAGE"] - 1
    r = np.where(cat["FLUX_RADIUS"] < 0, 5, cat["FLUX_RADIUS"])  # as ufig does
    bit = lambda b: (stored >> b) & 1 == 1  # noqa: E731
    np.testing.assert_array_equal(bit(1), cat["X_IMAGE"].astype(int) - 1 < 200)
    assert bit(5)[x > 250 + r + 1].all() and not bit(5)[x < 249 - r - 1].any()
    assert bit(6)[y < 149 - r - 1].all() and not bit(6)[y > 150 + r + 1].any()


def test_stamp_flags_reject_wrong_shape_and_leave_catalogue(synthetic, tmp_path):
    calexp, _ = synthetic
    cat_path, seg_path, bkg_path = outputs(tmp_path)
    extraction.run_sextractor(calexp, SETTINGS, cat_path, seg_path, bkg_path)
    before = cat_path.read_bytes()
    with h5py.File(tmp_path / "mask.h5", "w") as fh5:
        fh5["mask"] = np.zeros((10, 10), np.int32)
    with h5py.File(tmp_path / "overlap.h5", "w") as fh5:
        fh5["img_mask"] = np.zeros(calexp.shape, np.int8)
    with pytest.raises(InputError, match="mask.h5: mask has shape"):
        extraction.add_stamp_flags(
            cat_path, tmp_path / "mask.h5", tmp_path / "overlap.h5", calexp.shape
        )
    assert cat_path.read_bytes() == before


def test_plots_carry_the_label(synthetic, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    calexp, _ = synthetic
    cat_path, seg_path, bkg_path = outputs(tmp_path)
    extraction.run_sextractor(calexp, SETTINGS, cat_path, seg_path, bkg_path)
    label = "DEMO tile (simulated): test"
    fig = plots.plot_checkimages(
        calexp.image, fits.getdata(seg_path), fits.getdata(bkg_path), label
    )
    assert label in fig._suptitle.get_text()
    fig = plots.plot_catalog_triangle(extraction.read_catalog(cat_path), label)
    assert label in fig._suptitle.get_text()


def write_small_tile(folder, label_seed=1):
    """Synthetic tile YAML plus the stage-01/02 outputs stage 03 reads."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = synthetic_calexp(folder / "calexp.fits", seed=label_seed)
    tile = write_tile_file(folder, is_demo=True)
    return tile, truth


def write_stage01_02(run, shape, band="i"):
    info = {"pixscale": 0.168, f"seeing_{band}": 0.67, f"satur_{band}": 1e5,
            f"magzero_{band}": 27.0, f"gain_{band}": 2.5, f"nexp_{band}": 40.0,
            "NAXIS1": shape[1], "NAXIS2": shape[0]}  # fmt: skip
    (run / "skymapinfo.json").write_text(json.dumps(info))
    mask = np.zeros(shape, np.int32)
    mask[:, :60] = 4  # survey mask where there is no data
    with h5py.File(run / "mask.h5", "w") as fh5:
        fh5["mask"] = mask
    with h5py.File(run / "overlap.h5", "w") as fh5:
        fh5["img_mask"] = np.zeros(shape, bool)


def test_run_writes_exactly_the_declared_products(tmp_path):
    tile_file, (x, y, mag) = write_small_tile(tmp_path / "input")
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    write_stage01_02(run.root, (300, 400))
    before = set(run.root.rglob("*"))
    result = extraction.run(load_tile(tile_file), run, extraction.Params())
    assert written_products(run, before) == set(extraction.STAGE.writes)
    assert result.detected_in is None  # one band: detected in itself
    found, _ = match(result.catalog, x, y)
    assert (
        found[mag < 22].mean() >= 0.95 and "FLAGS_STAMP" in result.catalog.dtype.names
    )


def test_params_validate_themselves():
    assert extraction.Params().sextractor_config == extraction.DEFAULT_CONFIG
    assert extraction.plane_names(" NO_DATA, SAT ,") == ("NO_DATA", "SAT")
    for bad, fragment in [
        (dict(weighting="inverse"), r"^source_extraction\.weighting: .*none, variance"),
        (dict(off_mask_radius=-1.0), r"source_extraction\.off_mask_radius"),
        (dict(off_mask_radius=float("nan")), r"source_extraction\.off_mask_radius"),
        (dict(blank_planes="NO DATA"), r"source_extraction\.blank_planes"),
        (dict(sextractor_config=""), r"source_extraction\.sextractor_config"),
    ]:
        with pytest.raises(InputError, match=fragment):
            extraction.Params(**bad)


@pytest.mark.slow
def test_notebook_03_runs_under_papermill(tmp_path):
    import papermill

    from hscsim_utils.runfolder import REPO_ROOT, RunFolder

    tile, (x, y, mag) = write_small_tile(tmp_path / "input")
    run = tmp_path / "run"
    run.mkdir()
    write_stage01_02(run, (300, 400))
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "03_source_extraction.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters=dict(tile_file=str(tile), run_dir=str(run)),
        kernel_name=runner.KERNEL_NAME,
        cwd=str(REPO_ROOT / "notebooks"),
        progress_bar=False,
    )
    cat = extraction.read_catalog(run / "sextractor" / "data_se.cat")
    found, _ = match(cat, x, y)
    assert found[mag < 22].mean() >= 0.95 and "FLAGS_STAMP" in cat.dtype.names
    for name in ("03_checkimages.png", "03_catalog_triangle.png"):
        assert RunFolder(run).plot(name).stat().st_size > 10_000


@pytest.fixture(scope="session")
def demo_tile_file():
    """The session's small demo tile (shared with the notebook tests)."""
    import os

    from hscsim_utils.demo.build import build_demo_tile
    from hscsim_utils.hsc.tile import DEMO_DIR_ENV
    from tests.conftest import NOTEBOOK_TILE_SEED, NOTEBOOK_TILE_SIZE

    demo_dir = Path(os.environ[DEMO_DIR_ENV])
    if not (demo_dir / "tile.yaml").is_file():
        build_demo_tile(demo_dir, size=NOTEBOOK_TILE_SIZE, seed=NOTEBOOK_TILE_SEED)
    return demo_dir / "tile.yaml"


@pytest.mark.slow
def test_demo_stars_brighter_than_22_are_detected(demo_tile_file, tmp_path):
    from scipy.ndimage import maximum_filter

    from hscsim_utils.hsc.tile import load_tile
    from hscsim_utils.runfolder import RunFolder
    from hscsim_utils.stages import masks
    from hscsim_utils.stages import sky_and_sysmaps as sysmaps

    tile = load_tile(demo_tile_file)
    run = RunFolder(tmp_path / "run")
    sysmaps.make_sky_and_sysmaps(tile, run)  # stage 01: skymapinfo.json
    masks.make_masks(tile, run)  # stage 02: mask.h5, overlap.h5
    result = extraction.extract_sources(tile, run)
    with h5py.File(tile.truth_dir / "stars.h5") as fh5:
        truth = fh5["data"][()]  # X_IMAGE, Y_IMAGE in the FITS convention
    calexp = result.calexp
    ny, nx = calexp.shape
    # stars with data around them: 5 px (about one FWHM) inside the image and
    # away from NO_DATA; a star cut by the edge has a shifted centroid
    no_data = calexp.plane("NO_DATA")
    near_no_data = maximum_filter(no_data, size=11, mode="constant", cval=True)
    ix = np.round(truth["X_IMAGE"] - 1).astype(int)
    iy = np.round(truth["Y_IMAGE"] - 1).astype(int)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    usable = inside.copy()
    usable[inside] = ~near_no_data[iy[inside], ix[inside]]
    sample = truth[usable & (truth["mag"] < 22)]
    assert len(sample) >= 20
    cat = result.catalog
    dist = np.hypot(
        cat["XWIN_IMAGE"][:, None] - sample["X_IMAGE"],
        cat["YWIN_IMAGE"][:, None] - sample["Y_IMAGE"],
    ).min(axis=0)
    assert np.mean(dist < 1.0) >= 0.95


def test_large_no_data_area_changes_neither_threshold_nor_detections(tmp_path):
    results = {}
    for cols in (0, 700):
        path = tmp_path / f"calexp{cols}.fits"
        x, y, _ = synthetic_calexp(
            path, nx=1000, ny=400, n=30, seed=2, no_data_cols=cols
        )
        cat_path, seg_path, bkg_path = outputs(tmp_path / str(cols))
        extraction.run_sextractor(
            read_calexp(path), SETTINGS, cat_path, seg_path, bkg_path
        )
        cat = extraction.read_catalog(cat_path)
        found, nearest = match(cat, x, y)
        assert found.all() and (nearest < 3).all()  # every star, nothing else
        results[cols] = np.median(cat["THRESHOLD"])
    assert results[700] == pytest.approx(results[0], rel=0.05)


def test_forced_photometry_measures_the_detections_in_another_band(synthetic, tmp_path):
    """Dual-image mode on the data: the i-band detections measured on a g-band
    calexp (broader PSF, other noise), row for row; MAG_AUTO differences are
    the stars' colours."""
    calexp_i, (x, y, mag) = synthetic
    rng = np.random.default_rng(4)
    colour = rng.uniform(-0.5, 1.5, mag.size)
    ny, nx = calexp_i.shape
    image = rng.normal(size=(ny, nx)) * 0.04
    add_moffat_stars(image, x, y, 10 ** (-0.4 * (mag + colour - 27)), fwhm=4.8)
    no_data = ~np.isfinite(calexp_i.image)
    image[no_data] = np.nan
    mask = np.where(no_data, NO_DATA, 0).astype(np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_calexp(tmp_path / "g.fits", image, mask, np.full_like(image, 0.04**2),
                     calexp_i.header, band="HSC-G")  # fmt: skip
    calexp_g = read_calexp(tmp_path / "g.fits")
    paths_i, paths_g = outputs(tmp_path / "i"), outputs(tmp_path / "g")
    extraction.run_sextractor(calexp_i, SETTINGS, *paths_i)
    extraction.run_sextractor(calexp_g, SETTINGS, *paths_g, detection=calexp_i)
    cat_i, cat_g = (extraction.read_catalog(p[0]) for p in (paths_i, paths_g))
    assert len(cat_g) == len(cat_i) > 40
    np.testing.assert_array_equal(cat_g["X_IMAGE"], cat_i["X_IMAGE"])
    np.testing.assert_array_equal(fits.getdata(paths_g[1]), fits.getdata(paths_i[1]))
    d = np.hypot(cat_i["X_IMAGE"][:, None] - 1 - x, cat_i["Y_IMAGE"][:, None] - 1 - y)
    nearest, found = d.argmin(axis=0), d.min(axis=0) < 1
    bright = found & (mag + colour < 21.5)
    measured = cat_g["MAG_AUTO"][nearest] - cat_i["MAG_AUTO"][nearest]
    residual = (measured - colour)[bright]
    assert bright.sum() > 20
    # the g PSF is broader: the i-band Kron apertures hold a little less of it
    assert 0 <= np.median(residual) < 0.08
    assert np.std(residual) < 0.05
    # the stage on the tile seen from g: forced photometry on the i detections
    tile = TileSpec(
        "gi", calexp_g.path, tmp_path / "f.csv", tmp_path / "m.csv", [], [],
        band="g", detection_band="i",
        bands={"i": BandFiles(calexp_i.path, tmp_path / "f.csv", tmp_path / "m.csv")},
    )  # fmt: skip
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    write_stage01_02(run.root, calexp_g.shape, band="g")
    result = extraction.run(tile, run, extraction.Params())
    assert result.detected_in == "i" and "FLAGS_STAMP" in result.catalog.dtype.names
    np.testing.assert_array_equal(result.catalog["X_IMAGE"], cat_i["X_IMAGE"])
    np.testing.assert_array_equal(result.catalog["MAG_AUTO"], cat_g["MAG_AUTO"])
    with pytest.raises(InputError, match="is not the measured calexp's"):
        extraction.run_sextractor(
            calexp_g, SETTINGS, *outputs(tmp_path / "x"),
            detection=_cut(calexp_i, tmp_path / "cut.fits"),
        )  # fmt: skip


def _cut(calexp, path):
    """The calexp's first 100 rows as a calexp of its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_calexp(path, calexp.image[:100], calexp.mask[:100],
                     calexp.variance[:100], calexp.header)  # fmt: skip
    return read_calexp(path)
