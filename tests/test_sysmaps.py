"""Stage 01 systematic maps: pixel convention, rasterisation, bitmaps, files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.pipeline import runner
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import sky_and_sysmaps as sysmaps
from hscsim_utils.stages import sky_and_sysmaps_plots as plots
from tests.run_products import written_products
from tests.synthetic import (
    demo_tile_for_tests,
    frame_table,
    make_wcs,
    rectangle,
    rotated_rectangle,
    true_coverage,
    write_synthetic_calexp,
    write_synthetic_frames,
    write_synthetic_tile,
)

REPO = Path(__file__).resolve().parent.parent


def _maps_from_csv(path, wcs, shape):
    frames = hsc_io.read_frame_metadata(path)
    return sysmaps.exposure_maps(frames, wcs, shape, source=path)


def _true_bitmaps(cover, visit_number, shape):
    """Five uint64 words per pixel from per-frame coverage, built bit by bit."""
    index = np.unique(visit_number, return_inverse=True)[1]
    words = np.zeros((5, *shape), np.uint64)
    for f, v in enumerate(index):
        word, bit = divmod(int(v), 64)
        words[word][cover[f]] |= np.uint64(1 << bit)
    return words


def test_hand_placed_frame_covers_the_pixel_centres_inside(tmp_path):
    shape = (12, 14)
    wcs = make_wcs(shape, rotation_deg=30.0)
    corners = rectangle(1.7, 3.6, 9.3, 7.2)  # centres x = 2..9, y = 4..7 inside
    write_synthetic_frames(tmp_path / "f.csv", wcs, corners[None], exptime=100.0)
    maps = _maps_from_csv(tmp_path / "f.csv", wcs, shape)
    expected = np.zeros(shape, bool)
    expected[4:8, 2:10] = True
    np.testing.assert_array_equal(maps.expt > 0, expected)
    assert maps.expt[expected].min() == 100.0 and maps.nexp.sum() == expected.sum()
    # the tutorial's convention (origin 1, centres at index + 0.5) misses column 2
    frames = hsc_io.read_frame_metadata(tmp_path / "f.csv")
    x1, _ = wcs.all_world2pix(frames["llcra"], frames["llcdec"], 1)
    assert np.ceil(x1[0] - 0.5) == 3


def test_maps_match_independent_point_in_polygon(tmp_path):
    shape = (60, 80)
    wcs = make_wcs(shape, ra0=35.0, dec0=-4.5, rotation_deg=-12.0)
    rng = np.random.default_rng(3)
    corners = [
        rotated_rectangle(*rng.uniform(-10, 90, 2), *rng.uniform(20, 70, 2), a)
        for a in rng.uniform(-40, 40, 30)
    ]
    corners.append(rotated_rectangle(-5.0, 30.0, 30.0, 40.0, 10.0))  # partly off
    corners.append(rectangle(200.0, 10.0, 260.0, 50.0))  # entirely off
    corners = np.array(corners)
    n = len(corners)
    exptime = 8000.0 + 0.5 * rng.integers(0, 2000, n)  # sums exceed uint16
    gain = rng.uniform(2.8, 3.6, (n, 4))
    write_synthetic_frames(
        tmp_path / "f.csv", wcs, corners, exptime=exptime, gain=gain, visit=np.arange(n)
    )
    maps = _maps_from_csv(tmp_path / "f.csv", wcs, shape)
    cover = true_coverage(corners, shape)
    assert cover[-2].any() and not cover[-1].any()
    np.testing.assert_array_equal(maps.nexp, cover.sum(axis=0))
    spans = sysmaps.polygon_row_spans(maps.corners, shape)
    in_blocks = sysmaps.span_sum_map(spans, np.ones(n), shape, block=9)
    np.testing.assert_array_equal(in_blocks, cover.sum(axis=0))
    true_expt = np.tensordot(exptime, cover, axes=1)
    assert true_expt.max() > 65535
    np.testing.assert_array_equal(maps.expt, true_expt.astype(np.float32))
    true_gain = np.tensordot(gain.mean(axis=1), cover, axes=1)
    np.testing.assert_allclose(maps.gain, true_gain, rtol=1e-6)
    assert maps.expt.dtype == np.float32 and maps.nexp.dtype == np.uint16


def test_row_spans_ignore_orientation_and_skip_unusable_frames():
    shape = (25, 35)
    quad = rotated_rectangle(17.2, 11.9, 20.0, 14.0, 33.0)
    flat = np.array([[2.0, 3.0], [6.0, 3.0], [12.0, 3.0], [8.0, 3.0]])  # no area
    nan = np.full((4, 2), np.nan)
    corners = np.array([quad, quad[::-1], np.roll(quad, 2, axis=0), flat, nan])
    spans = sysmaps.polygon_row_spans(corners, shape)
    maps = [
        sysmaps.span_sum_map(spans, np.eye(len(corners), dtype=np.int64)[f], shape)
        for f in range(len(corners))
    ]
    truth = true_coverage(quad[None], shape)[0]
    for f in range(3):
        np.testing.assert_array_equal(maps[f], truth)
    assert not maps[3].any() and not maps[4].any()


def test_visit_bitmaps_beyond_128_visits(tmp_path):
    shape = (30, 40)
    wcs = make_wcs(shape)
    rng = np.random.default_rng(11)
    n_visits = 150
    corners = [
        rotated_rectangle(*rng.uniform(0, 40, 2), *rng.uniform(15, 40, 2), a)
        for a in rng.uniform(-30, 30, n_visits)
    ]
    visit = list(5000 + 3 * rng.permutation(n_visits))  # not contiguous, not sorted
    corners.append(corners[0] + [3.0, 2.0])  # a second frame of frame 0's visit
    visit.append(visit[0])
    corners, visit = np.array(corners), np.array(visit)
    write_synthetic_frames(tmp_path / "f.csv", wcs, corners, visit=visit)
    maps = _maps_from_csv(tmp_path / "f.csv", wcs, shape)
    cover = true_coverage(corners, shape)
    assert (cover[0] & cover[-1]).any()  # overlapping: bits must be OR-ed
    words = _true_bitmaps(cover, visit, shape)
    assert words[2].any() and not words[3].any()  # bit3 in use, bit4 not
    for w in range(5):
        np.testing.assert_array_equal(maps.pointings[f"bit{w + 1}"], words[w])
    for first, stop, rows in maps.pointings_blocks(block=7):  # several row blocks
        for w in range(5):
            np.testing.assert_array_equal(rows[f"bit{w + 1}"], words[w, first:stop])
    assert maps.n_visits == n_visits
    np.testing.assert_array_equal(maps.nexp, cover.sum(axis=0))  # frames, not visits
    # visit index 64 * w + k (rank of the visit number) is bit k of word w
    f70 = int(np.flatnonzero(np.argsort(np.argsort(visit[:n_visits])) == 70)[0])
    assert cover[f70].any()
    assert (maps.pointings["bit2"][cover[f70]] & np.uint64(1 << 6)).all()
    assert not (maps.pointings["bit2"][~cover[f70]] & np.uint64(1 << 6)).any()


def test_patch_straddling_ra_zero(tmp_path):
    shape = (50, 400)
    wcs = make_wcs(shape, ra0=0.0, dec0=1.0)
    corners = np.array([rectangle(120.3, -20.0, 279.7, 70.0)])
    df = write_synthetic_frames(tmp_path / "f.csv", wcs, corners)
    ras = df[["llcra", "ulcra", "urcra", "lrcra"]].to_numpy()
    assert (ras > 359.99).any() and (ras < 0.01).any()
    maps = _maps_from_csv(tmp_path / "f.csv", wcs, shape)
    expected = np.zeros(shape, bool)
    expected[:, 121:280] = True
    np.testing.assert_array_equal(maps.nexp == 1, expected)
    assert maps.nexp.max() == 1


def test_more_than_320_visits_is_an_input_error_and_writes_nothing(tmp_path):
    shape = (20, 30)
    n = 321
    corners = np.repeat(rectangle(-1, -1, 31, 21)[None], n, axis=0)
    st = write_synthetic_tile(
        tmp_path / "in", shape, corners_xy=corners, visit=np.arange(n)
    )
    run = resolve_run(tmp_path / "run")
    with pytest.raises(InputError, match="321 distinct visits") as err:
        sysmaps.make_sky_and_sysmaps(load_tile(st.tile_file), run)
    assert str(tmp_path / "in" / "frames.csv") in str(err.value)
    assert not any(p.is_file() for p in run.root.rglob("*"))


def _drop_variance_hdu(path):
    with fits.open(path, memmap=False) as hdul:
        hdus = [type(h)(data=h.data, header=h.header) for h in hdul[:3]]
    fits.HDUList(hdus).writeto(path, overwrite=True)


def _drop_crval(path):
    with fits.open(path, mode="update") as hdul:
        del hdul[1].header["CRVAL1"]


def _wrong_columns(path):
    head, rest = path.read_text().split("\n", 1)
    path.write_text(head.replace(",visit", ",visit_id") + "\n" + rest)


def _negative_exptime(path):
    df = hsc_io.read_frame_metadata(path)
    df.loc[1, "exptime"] = -270.0
    hsc_io.write_archive_csv(path, df, hsc_io.FRAME_COLUMNS)


def _no_rows(path):
    path.write_text(path.read_text().splitlines()[0] + "\n")


@pytest.mark.parametrize(
    "target, corrupt, fragment",
    [
        ("calexp.fits", _drop_variance_hdu, "HDUs"),
        ("calexp.fits", _drop_crval, "WCS keywords"),
        ("frames.csv", _wrong_columns, "wrong columns"),
        ("frames.csv", _no_rows, "no rows"),
        ("frames.csv", _negative_exptime, "exptime values outside 0..1e"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path, target, corrupt, fragment):
    st = write_synthetic_tile(tmp_path / "in", (20, 30), n_visits=2)
    corrupt(tmp_path / "in" / target)
    run = resolve_run(tmp_path / "run")
    with pytest.raises(InputError, match=fragment) as err:
        sysmaps.make_sky_and_sysmaps(load_tile(st.tile_file), run)
    assert str(tmp_path / "in" / target) in str(err.value)
    assert not run.sysmaps.exists()


def test_background_rms_within_5_percent_with_no_data_masked(tmp_path):
    shape = (512, 640)
    sigma = np.broadcast_to(np.linspace(0.7, 1.3, shape[0])[:, None], shape)
    mask = np.zeros(shape, np.int32)
    mask[:, :200] = 1 << hsc_io.PDR3_MASK_PLANES["NO_DATA"]  # image 0 there
    cal = write_synthetic_calexp(
        tmp_path / "c.fits", shape, noise_sigma=sigma, n_sources=40, mask=mask, seed=5
    )
    calexp = hsc_io.read_calexp(cal.path)
    no_data = mask > 0
    bkg = sysmaps.background_maps(calexp.image, no_data)
    clean = ~cal.source_mask & ~no_data
    ratio = bkg.rms[clean] / cal.noise_sigma[clean]
    assert abs(np.median(ratio) - 1) < 0.05
    near_edge = clean[:, 200:328]  # next to the NO_DATA columns
    edge_ratio = bkg.rms[:, 200:328][near_edge] / cal.noise_sigma[:, 200:328][near_edge]
    assert abs(np.median(edge_ratio) - 1) < 0.05
    unmasked = sysmaps.background_maps(calexp.image, np.zeros(shape, bool))
    assert np.median(unmasked.rms[:, 200:256] / cal.noise_sigma[:, 200:256]) < 0.8
    assert bkg.rms_median == pytest.approx(np.median(bkg.rms[~no_data]))
    assert abs(bkg.level_median) < 0.05


def test_masking_sources_removes_their_light_from_the_rms(tmp_path):
    shape = (512, 512)
    cal = write_synthetic_calexp(tmp_path / "c.fits", shape, n_sources=300, seed=3)
    no_data = np.zeros(shape, bool)
    plain = sysmaps.background_maps(cal.image, no_data, mask_sources=False)
    masked = sysmaps.background_maps(cal.image, no_data)
    assert plain.rms_median > 1.05  # true noise RMS is 1
    assert masked.rms_median == pytest.approx(1.0, abs=0.03)
    first = sysmaps._background2d(cal.image, no_data, "c.fits", 128, 10.0)
    sources = sysmaps.source_mask(cal.image, no_data, first)
    assert sources[~cal.source_mask].mean() < 0.01  # noise is rarely masked


def test_background_of_an_all_no_data_image_is_an_input_error():
    image = np.zeros((256, 256), np.float32)
    with pytest.raises(InputError, match="img.fits: background"):
        sysmaps.background_maps(image, np.ones(image.shape, bool), source="img.fits")


def test_inverse_variance_is_zero_where_variance_is_unusable():
    var = np.array([[4.0, 0.0, np.nan], [np.inf, -1.0, 0.5]], np.float32)
    invv = sysmaps.inverse_variance(var)
    np.testing.assert_array_equal(invv, [[0.25, 0, 0], [0, 0, 2.0]])
    assert invv.dtype == np.float32


def test_sysmaps_file_layout_is_what_ufig_reads(tmp_path):
    from ufig import sysmaps_util
    from ufig.plugins import background_noise, single_band_setup

    shape = (40, 50)
    st = write_synthetic_tile(tmp_path / "in", shape, n_visits=70, seed=2)
    run = resolve_run(tmp_path / "run")
    result = sysmaps.make_sky_and_sysmaps(load_tile(st.tile_file), run)
    dtypes = {
        "map_bsig": np.float32,
        "map_expt": np.float32,
        "map_nexp": np.uint16,
        "map_gain": np.float32,
        "map_invv": np.float32,
        "map_pointings": sysmaps.POINTINGS_DTYPE,
    }
    with h5py.File(run.sysmaps) as fh5:
        assert set(fh5) == set(dtypes)
        for name, dtype in dtypes.items():
            assert fh5[name].shape == shape and fh5[name].dtype == dtype, name
            expected = None if name in ("map_bsig", "map_invv") else "lzf"
            assert fh5[name].compression == expected, name
        assert fh5["map_pointings"].attrs["n_pointings"] == 70
    par = SimpleNamespace(
        sysmaps_type="sysmaps_hdf_combined",
        filepath_sysmaps=str(run.sysmaps),
        maps_remote_dir="",
    )
    x, y = np.array([0.2, 25.7, 49.9, 80.0]), np.array([0.1, 12.3, 39.9, 5.0])
    texp = single_band_setup.get_texp_per_object(par, x, y)
    ix, iy = np.minimum(x.astype(int), 49), np.minimum(y.astype(int), 39)
    np.testing.assert_array_equal(texp, result.maps.expt[iy, ix])
    assert sysmaps_util.get_hdf_location_gain(par) == (str(run.sysmaps), "map_gain")
    par.__dict__.update(
        bkg_amp_variation_sigma=0.0, bkg_noise_variation_sigma=0.0, gain=1.0,
        bkg_noise_multiply_gain=False, bkg_noise_scale=1.0, bkg_noise_amp=0.0,
    )  # fmt: skip
    ctx = SimpleNamespace(parameters=par, image=np.zeros(shape))
    background_noise.add_from_map(ctx)
    assert ctx.image_mask.all() and np.std(ctx.image) > 0


def test_visit_bitmaps_read_by_ufig_psf_weights(tmp_path):
    from ufig.psf_estimation import psf_utils

    shape = (20, 30)
    left, right = rectangle(-1, -1, 14.5, 21), rectangle(15.5, -1, 31, 21)
    visit = np.arange(70)  # 53..63 cover the right part, all others the left one
    on_right = (visit >= 53) & (visit < 64)
    corners = np.where(on_right[:, None, None], right, left)
    wcs = make_wcs(shape)
    maps = sysmaps.exposure_maps(frame_table(wcs, corners, visit=visit), wcs, shape)
    path = tmp_path / "s.h5"
    sysmaps.write_sysmaps(path, maps, np.ones(shape), np.ones(shape))
    with h5py.File(path) as fh5:
        weights = psf_utils.get_position_weights(
            np.array([5.0, 25.0]), np.array([5.0, 5.0]), fh5["map_pointings"]
        )
    assert weights.shape == (2, 128)
    np.testing.assert_allclose(weights[0, :70], np.where(on_right, 0, 1 / 59))
    np.testing.assert_allclose(weights[1, :70], np.where(on_right, 1 / 11, 0))
    assert not weights[:, 70:].any()


def test_plots_have_the_data_label(tmp_path):
    corners = np.array([rotated_rectangle(10, 10, 30, 20, 15)])
    fig = plots.plot_frames(corners, (20, 30), "DEMO tile (simulated): x")
    assert "DEMO tile (simulated): x" in fig.axes[0].get_title()
    xs, ys = plots.coadd_outline((20, 30))
    assert max(xs) == 29.5 and max(ys) == 19.5  # y uses NAXIS2, not NAXIS1
    fig = plots.plot_map(np.ones((20, 30)), "REAL HSC data: y", "exposure", "s")
    assert fig.axes[0].get_title().startswith("REAL HSC data: y")


def test_run_writes_exactly_the_declared_products(tmp_path):
    st = write_synthetic_tile(tmp_path / "in", (40, 50), n_visits=3, seed=1)
    run = resolve_run(tmp_path / "run")
    before = set(run.root.rglob("*"))
    result = sysmaps.run(load_tile(st.tile_file), run, sysmaps.Params())
    assert written_products(run, before) == set(sysmaps.STAGE.writes)
    assert result.info["NAXIS1"] == 50 and "seeing_i" in result.info


def test_params_validate_themselves(tmp_path):
    assert sysmaps.Params() == sysmaps.Params(band="", mask_sources=True)
    with pytest.raises(InputError, match=r"^sky_and_sysmaps\.band: .*'i'"):
        sysmaps.Params(band="i, r")
    with pytest.raises(InputError, match=r"sky_and_sysmaps\.mask_sources"):
        sysmaps.Params(mask_sources="yes")
    st = write_synthetic_tile(tmp_path / "in", (40, 50), n_visits=2, seed=1)
    run = resolve_run(tmp_path / "run")
    with pytest.raises(InputError, match="expected band 'r'"):  # the band is used
        sysmaps.run(load_tile(st.tile_file), run, sysmaps.Params(band="r"))
    tile = load_tile(st.tile_file)
    two = dataclasses.replace(tile, bands={**tile.bands, "g": tile.bands["i"]})
    with pytest.raises(InputError, match="has bands g, i: each runs with its own"):
        sysmaps.run(two, run, sysmaps.Params(band="g"))


@pytest.mark.slow
def test_notebook_01_runs_under_papermill(tmp_path):
    import papermill

    st = write_synthetic_tile(tmp_path / "in", (150, 180), n_visits=3, n_sources=4)
    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(REPO / "notebooks" / "01_sky_and_sysmaps.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"tile_file": str(st.tile_file), "run_dir": str(run_dir)},
        cwd=str(REPO / "notebooks"),
        kernel_name=runner.KERNEL_NAME,
        progress_bar=False,
    )
    run = resolve_run(run_dir)
    assert run.sysmaps.is_file() and run.skymapinfo_npy.is_file()
    assert run.plot("01_frames.png").is_file()
    assert run.plot("01_exposure_time.png").is_file()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Stage 01 on the small demo tile (simulated) and the truth behind it."""
    tile = load_tile(demo_tile_for_tests())
    run = resolve_run(tmp_path_factory.mktemp("demo_run"))
    result = sysmaps.make_sky_and_sysmaps(tile, run)
    with h5py.File(tile.truth_dir / "sysmaps.h5") as fh5:
        truth = {name: fh5[name][...] for name in fh5}
    return tile, run, result, truth


def test_demo_exposure_maps_equal_truth(demo):
    _, run, result, truth = demo
    with h5py.File(run.sysmaps) as fh5:
        np.testing.assert_array_equal(fh5["map_expt"][...], truth["map_expt"])
        np.testing.assert_array_equal(fh5["map_nexp"][...], truth["map_nexp"])
        for w in range(1, 6):
            field = f"bit{w}"
            got, want = fh5["map_pointings"][field], truth["map_pointings"][field]
            np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(fh5["map_gain"][...], truth["map_gain"], rtol=1e-6)
    assert result.maps.nexp.min() > 0 and truth["map_pointings"]["bit1"].any()


def test_demo_background_rms_within_5_percent(demo):
    tile, _, result, truth = demo
    calexp = hsc_io.read_calexp(tile.calexp)
    occupied = np.zeros(calexp.shape, bool)
    for name in ("galaxies.h5", "stars.h5"):
        with h5py.File(tile.truth_dir / name) as fh5:
            cat = fh5["data"][...]
        x = np.round(cat["X_IMAGE"] - 1).astype(int)
        y = np.round(cat["Y_IMAGE"] - 1).astype(int)
        inside = (x >= 0) & (y >= 0) & (x < calexp.shape[1]) & (y < calexp.shape[0])
        occupied[y[inside], x[inside]] = True
    source_free = (ndimage.distance_transform_edt(~occupied) > 10) & (calexp.mask == 0)
    assert source_free.mean() > 0.2
    ratio = result.background.rms[source_free] / truth["map_rms_realised"][source_free]
    assert abs(np.median(ratio) - 1) < 0.05


def test_demo_skymapinfo_matches_truth(demo):
    tile, run, result, truth = demo
    facts = json.loads((tile.truth_dir / "truth.json").read_text())
    info = result.info
    assert info["satur_i"] == pytest.approx(facts["saturation_adu"], rel=1e-3)
    covered = truth["map_nexp"] > 0
    mean_gain = truth["map_gain"][covered].mean() / truth["map_nexp"][covered].mean()
    assert info["gain_i"] == pytest.approx(mean_gain, rel=1e-6)
    assert info["exptime_i"] == pytest.approx(truth["map_expt"][covered].mean())
    record = np.load(run.skymapinfo_npy, allow_pickle=True)[0]
    assert (record["NAXIS1"], record["NAXIS2"]) == (512, 512)
