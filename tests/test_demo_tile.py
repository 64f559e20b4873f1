"""The DEMO tile (simulated): formats read back with the pipeline's readers, truth."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import h5py
import healpy as hp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.stats import mad_std

from hscsim_utils.data import provision
from hscsim_utils.demo import build as demo_tile
from hscsim_utils.demo import files as demo_files
from hscsim_utils.demo import observation as demo_observation
from hscsim_utils.demo import stars as demo_stars
from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap, tile

#: Every test here builds or reads a rendered demo tile (tens of seconds).
pytestmark = pytest.mark.slow

SIZE = (900, 800)
# Lower-right part of patch 8523-4,2, at the edge of the simulated UD footprint:
# a NO_DATA corner, an exposure gradient and a saturated Gaia star (G = 16.3).
CENTRE = (3420.0, 600.0)
SEED = 7
STEM = "calexp-HSC-I-8523-402"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "input"
    yaml_path = demo_tile.build_demo_tile(out, size=SIZE, seed=SEED, centre=CENTRE)
    spec = tile.load_tile(yaml_path)
    calexp = hsc_io.read_calexp(spec.calexp, band=spec.band)
    with h5py.File(spec.truth_dir / "sysmaps.h5") as fh:
        maps = {k: fh[k][()] for k in fh if k.startswith("map_")}
        n_pointings = fh["map_pointings"].attrs["n_pointings"]
        chunks = fh["map_pointings"].chunks
    truth = json.loads((spec.truth_dir / "truth.json").read_text())
    return {
        "out": out, "spec": spec, "calexp": calexp, "maps": maps,
        "n_pointings": n_pointings, "truth": truth, "chunks": chunks,
    }  # fmt: skip


def test_truth_visit_map_is_chunked_as_stage_01_writes_it(demo):
    """So that stage 07 compares the two visit maps chunk by chunk."""
    from hscsim_utils.stages.sky_and_sysmaps import pointings_chunks

    assert demo["chunks"] == pointings_chunks(demo["calexp"].shape)


def test_folder_layout_and_tile_yaml(demo):
    out, spec = demo["out"], demo["spec"]
    for name in (
        f"{STEM}.fits", f"{STEM}_metadata.csv", f"{STEM}_coadd_metadata.csv",
        "besancon/besancon_0403.header", "besancon/besancon_0403.fits",
        "gaia_dr3_vizier.vot", "tile.yaml", "truth/truth.json", "truth/sysmaps.h5",
        "truth/psf_model.h5", "truth/mask.h5", "truth/galaxies.h5", "truth/stars.h5",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    assert spec.is_demo and "DEMO" in spec.label
    geom = demo_observation.demo_geometry(SIZE, centre=CENTRE)
    corner = "{}_{}".format(*geom.offset)
    assert spec.tile_name == f"demo-8523-402-900x800-at{corner}-seed{SEED}"
    assert (spec.galaxy_model, spec.posterior_index, spec.seed) == ("Moser+24", 0, 42)
    assert demo["truth"]["posterior_index"] != spec.posterior_index
    assert demo["truth"]["ufig_seed"] != spec.seed
    assert not list(out.parent.glob(".input.*")), "temporary folder left behind"


def test_calexp_format(demo):
    calexp = demo["calexp"]
    assert calexp.shape == (SIZE[1], SIZE[0])
    assert calexp.primary_header["FILTER"] == "HSC-I2"
    assert calexp.mask_planes == hsc_io.PDR3_MASK_PLANES
    assert calexp.image.dtype == np.float32 and calexp.mask.dtype == np.int32
    header = calexp.header
    assert "LTV1" not in header and "LTV2" not in header
    scale = skymap.PIXEL_SCALE_ARCSEC / 3600
    assert header["CD1_1"] == pytest.approx(-scale) and header[
        "CD2_2"
    ] == pytest.approx(scale)
    with fits.open(calexp.path) as hdul:
        assert [h.name for h in hdul[1:4]] == ["IMAGE", "MASK", "VARIANCE"]
    # the sub-area sits at the requested place of patch 4,2 of tract 8523
    ra_t, dec_t = skymap.rings_tract_center(8523)
    assert (header["CRVAL1"], header["CRVAL2"]) == pytest.approx((ra_t, dec_t))
    x0 = 4 * 4000 - 100 + CENTRE[0] - SIZE[0] / 2
    assert header["CRPIX1"] == pytest.approx(18000.5 - x0)


def test_frame_metadata_describes_ccd_footprints(demo):
    spec, calexp = demo["spec"], demo["calexp"]
    frames = hsc_io.read_frame_metadata(spec.frame_metadata)
    assert (frames["exptime"] == 270).all()
    gains = frames[["gain1", "gain2", "gain3", "gain4"]].to_numpy()
    assert 2.5 < gains.min() and gains.max() < 3.6
    assert (gains.std(axis=1) > 0).all(), "the four amplifier gains should differ"
    xs, ys = _frame_corners_pix(frames, calexp.wcs)
    sides = np.hypot(
        np.diff(xs, axis=1, append=xs[:, :1]), np.diff(ys, axis=1, append=ys[:, :1])
    )
    # ll-ul and ur-lr are the 4176-pixel sides, ul-ur and lr-ll the 2048-pixel ones
    np.testing.assert_allclose(sides[:, [0, 2]], 4176, rtol=2e-3)
    np.testing.assert_allclose(sides[:, [1, 3]], 2048, rtol=2e-3)
    assert frames["visit"].nunique() == demo["n_pointings"]


def test_coadd_metadata(demo):
    spec, header = demo["spec"], demo["calexp"].header
    meta = hsc_io.read_coadd_metadata(spec.coadd_metadata)
    assert len(meta) == 1
    row = meta.iloc[0]
    assert (row["naxis1"], row["naxis2"]) == SIZE
    assert row["zeropt"] == 27
    assert (row["crpix1"], row["crval2"]) == pytest.approx(
        (header["CRPIX1"], header["CRVAL2"])
    )
    assert 0.5 < row["seeing"] < 0.75


def test_gaia_votable(demo):
    table = parse_single_table(demo["spec"].gaia_table).to_table()
    assert list(table.colnames) == ["Source", "RAJ2000", "DEJ2000", "Gmag"]
    assert len(table) == demo["truth"]["n_gaia_in_query"] > 0
    assert table["Gmag"].min() < 15
    mid = [[(SIZE[0] + 1) / 2, (SIZE[1] + 1) / 2]]
    centre = SkyCoord(*demo["calexp"].wcs.all_pix2world(mid, 1)[0], unit="deg")
    sep = SkyCoord(table["RAJ2000"], table["DEJ2000"], unit="deg").separation(centre)
    assert sep.deg.max() <= math.hypot(*SIZE) * 0.168 / 3600 + 1e-9


def test_demo_tile_names_differ_by_size_area_and_seed():
    names = {
        demo_files.tile_name(demo_observation.demo_geometry(size, centre=c), s)
        for size, c, s in [((4200, 4200), None, 1), ((2000, 2000), None, 1),
                           ((2000, 2000), (1500.0, 1500.0), 1),
                           ((2000, 2000), None, 2)]
    }  # fmt: skip
    assert len(names) == 4
    assert "demo-8523-402-4200x4200-seed1" in names


def test_besancon_files(demo):
    spec = demo["spec"]
    header = spec.besancon_headers[0]
    gal_l, gal_b, area = _tutorial_header_parse(header)
    ra_dec = SkyCoord(gal_l, gal_b, unit="deg", frame="galactic").icrs
    pix = hp.ang2pix(8, ra_dec.ra.deg, ra_dec.dec.deg, lonlat=True)
    assert pix == 403
    shipped, shipped_area = demo_stars.load_besancon_pixel(
        provision.ufig_test_resource("besancon_HSC.h5")
    )
    assert area == shipped_area == 2
    cat = fits.getdata(spec.besancon_catalogs[0], ext=1)
    assert {"r", "r-g", "r-i", "r-z", "r-u"} <= set(cat.names)
    assert len(cat) == len(shipped) == 13521
    np.testing.assert_allclose(cat["r"] - cat["r-i"], shipped["i"], atol=1e-9)
    from hscsim_utils.stages import stars

    parsed = stars.parse_besancon_header(header)
    assert (parsed.l, parsed.b, parsed.solid_angle) == pytest.approx(
        (gal_l, gal_b, area)
    )


def test_same_seed_same_image_other_seed_differs(demo, tmp_path):
    again = demo_tile.build_demo_tile(
        tmp_path / "a", size=SIZE, seed=SEED, centre=CENTRE
    )
    other = demo_tile.build_demo_tile(
        tmp_path / "b", size=SIZE, seed=SEED + 1, centre=CENTRE
    )
    ref = fits.getdata(demo["spec"].calexp, ext=1)
    same = fits.getdata(tile.load_tile(again).calexp, ext=1)
    diff = fits.getdata(tile.load_tile(other).calexp, ext=1)
    assert ref.tobytes() == same.tobytes()
    assert not np.array_equal(ref, diff, equal_nan=True)
    # the observation is fixed: the same frames for every seed
    frames_a = hsc_io.read_frame_metadata(demo["spec"].frame_metadata)
    frames_b = hsc_io.read_frame_metadata(tile.load_tile(other).frame_metadata)
    assert frames_a.equals(frames_b)


def test_no_data_exactly_where_exposure_is_zero(demo):
    calexp, maps = demo["calexp"], demo["maps"]
    nodata = calexp.plane("NO_DATA")
    zero = maps["map_expt"] == 0
    assert 0 < zero.mean() < 0.5, "this test area should contain a NO_DATA corner"
    np.testing.assert_array_equal(nodata, zero)
    np.testing.assert_array_equal(np.isnan(calexp.image), zero)
    assert np.isfinite(calexp.image[~zero]).all()
    np.testing.assert_array_equal(maps["map_bsig"] == 0, zero)


def test_exposure_is_270s_times_frames_covering(demo):
    """Closure: truth exposure is 270 s x frames whose CSV corners contain a pixel."""
    spec, calexp, maps = demo["spec"], demo["calexp"], demo["maps"]
    frames = hsc_io.read_frame_metadata(spec.frame_metadata)
    xs, ys = _frame_corners_pix(frames, calexp.wcs)
    py, px = np.mgrid[0 : SIZE[1] : 3, 0 : SIZE[0] : 3]
    count = np.zeros(px.shape, int)
    for k in range(len(frames)):
        count += _inside_convex(xs[k], ys[k], px + 1.0, py + 1.0)
    np.testing.assert_array_equal(maps["map_expt"][py, px], 270 * count)
    np.testing.assert_array_equal(maps["map_nexp"][py, px], count)


def test_visit_bitmaps_match_frame_count(demo):
    maps, n = demo["maps"], demo["n_pointings"]
    popcount = np.zeros(maps["map_nexp"].shape, int)
    for i in range(5):
        word = np.ascontiguousarray(maps["map_pointings"][f"bit{i + 1}"])
        bits = np.unpackbits(word.view(np.uint8), axis=-1)
        popcount += bits.reshape(*word.shape, 64).sum(-1).astype(int)
        used = int(np.clip(n - 64 * i, 0, 64))
        allowed = np.uint64(2**64 - 1) if used == 64 else np.uint64((1 << used) - 1)
        assert not (word & ~allowed).any(), f"bits beyond visit {n - 1} in word {i}"
    # one frame per visit covers a pixel: distinct visits == frames
    np.testing.assert_array_equal(popcount, maps["map_nexp"])
    assert maps["map_expt"].dtype == np.uint32


def test_bright_object_discs_around_gaia_stars(demo):
    calexp = demo["calexp"]
    table = parse_single_table(demo["spec"].gaia_table).to_table()
    bright = table[table["Gmag"] < 17.5]
    x, y = calexp.wcs.all_world2pix(bright["RAJ2000"], bright["DEJ2000"], 1)
    r = demo_stars.bright_star_radius_arcsec(np.asarray(bright["Gmag"])) / 0.168
    flagged = (calexp.mask >> calexp.mask_bit("BRIGHT_OBJECT")) & 1 == 1
    yy, xx = np.mgrid[1 : SIZE[1] + 1, 1 : SIZE[0] + 1]
    dist = np.min(
        [np.hypot(xx - a, yy - b) / c for a, b, c in zip(x, y, r, strict=True)], axis=0
    )
    assert flagged.any()
    assert flagged[dist < 0.98].all()
    assert not flagged[dist > 1.02].any()
    # Coupon et al. (2018): G = 9.8 gives 200 x 10^-0.7 + 12 x 10^0.31 = 64.41"
    assert demo_stars.bright_star_radius_arcsec(9.8) == pytest.approx(64.41, abs=0.01)


def test_saturated_stars_are_flagged(demo):
    calexp, truth = demo["calexp"], demo["truth"]
    sat = (calexp.mask >> calexp.mask_bit("SAT")) & 1 == 1
    assert sat.any()
    assert (calexp.image[sat] >= truth["saturation_adu"] * 0.999).all()
    assert np.nanmax(calexp.image) <= truth["saturation_adu"] * 1.001


def test_background_noise_matches_realised_rms(demo):
    """Source-free pixels (away from every true object) have the true rms."""
    calexp, maps = demo["calexp"], demo["maps"]
    rms = maps["map_rms_realised"]
    ok = (calexp.mask == 0) & (rms > 0) & ~_near_true_objects(demo["spec"])
    assert ok.mean() > 0.05
    z = calexp.image[ok] / rms[ok]
    assert mad_std(z) == pytest.approx(1.0, abs=0.03)
    # resampling lowers the per-pixel rms by the kernel's L2 norm (0.89)
    ratio = np.median(rms[ok] / maps["map_bsig"][ok])
    assert ratio == pytest.approx(demo["truth"]["lanczos_rms_factor"], abs=0.01)


def test_truth_catalogues_and_psf(demo):
    spec, truth = demo["spec"], demo["truth"]
    with h5py.File(spec.truth_dir / "stars.h5") as fh:
        stars = fh["data"][()]
    with h5py.File(spec.truth_dir / "galaxies.h5") as fh:
        galaxies = fh["data"][()]
    assert len(galaxies) == truth["n_galaxies"] > 100
    assert 14 < np.median(galaxies["mag"]) < 29
    gaia_placed = stars[stars["gaia_id"] >= 0]
    assert len(gaia_placed) > 0
    with h5py.File(spec.truth_dir / "psf_model.h5") as fh:
        grid = fh["grid_psf"][()]
        fwhm = fh["grid/fwhm"][()]
    assert {"X_IMAGE", "Y_IMAGE", "psf_fwhm_ipt", "psf_e1_ipt", "psf_g2_ipt"} <= set(
        grid.dtype.names
    )
    np.testing.assert_allclose(grid["X_IMAGE"] % 100, 0.5)
    fwhm_arcsec = grid["psf_fwhm_ipt"] * 0.168
    assert 0.5 < np.median(fwhm_arcsec) < 0.75
    assert 0.002 < np.std(fwhm) / np.mean(fwhm) < 0.1, (
        "PSF should vary by a few percent"
    )


def test_bad_input_leaves_output_untouched(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(InputError, match="size"):
        demo_tile.build_demo_tile(out, size=(10, 10))
    with pytest.raises(InputError, match="seed"):
        demo_tile.build_demo_tile(out, size=(100, 100), seed=-3)
    assert (out / "keep.txt").read_text() == "old"


def _near_true_objects(spec):
    """Pixels within a magnitude-dependent radius of a true galaxy or star."""
    near = np.zeros((SIZE[1], SIZE[0]), bool)
    yy, xx = np.ogrid[1 : SIZE[1] + 1, 1 : SIZE[0] + 1]
    for name, base in (("galaxies.h5", 24.0), ("stars.h5", 25.0)):
        with h5py.File(spec.truth_dir / name) as fh:
            cat = fh["data"][()]
        size = cat["r50"] if "r50" in cat.dtype.names else np.zeros(len(cat))
        radius = 3 * size + 5 + 10 ** (0.2 * (base - cat["mag"]))
        for x, y, r in zip(cat["X_IMAGE"], cat["Y_IMAGE"], radius, strict=True):
            x0, x1 = max(int(x - r) - 1, 0), min(int(x + r) + 2, SIZE[0])
            y0, y1 = max(int(y - r) - 1, 0), min(int(y + r) + 2, SIZE[1])
            if x0 < x1 and y0 < y1:
                dx, dy = xx[:, x0:x1] - x, yy[y0:y1] - y
                near[y0:y1, x0:x1] |= dx**2 + dy**2 < r**2
    return near


def _frame_corners_pix(frames, wcs):
    xs, ys = [], []
    for corner in ("ll", "ul", "ur", "lr"):
        x, y = wcs.all_world2pix(frames[f"{corner}cra"], frames[f"{corner}cdec"], 1)
        xs.append(x)
        ys.append(y)
    return np.stack(xs, axis=1), np.stack(ys, axis=1)


def _inside_convex(cx, cy, px, py):
    """Point-in-convex-quadrilateral by edge cross products (either orientation)."""
    signs = []
    for k in range(4):
        x0, y0, x1, y1 = cx[k], cy[k], cx[(k + 1) % 4], cy[(k + 1) % 4]
        signs.append((x1 - x0) * (py - y0) - (y1 - y0) * (px - x0))
    signs = np.stack(signs)
    return (signs >= 0).all(axis=0) | (signs <= 0).all(axis=0)


def _tutorial_header_parse(path):
    """The tutorial's ``read_catalog`` header logic: tokens after '(l', 'b', 'angle'."""

    def to_float(text):
        return float("".join(c for c in text if c.isdigit() or c in ".-"))

    for line in open(path).readlines():
        if "l =" in line and "b =" in line and "Solid angle" in line:
            tokens = line.strip().split()
            return (
                to_float(tokens[tokens.index("(l") + 2]),
                to_float(tokens[tokens.index("b") + 2]),
                float(tokens[tokens.index("angle") + 1]),
            )
    raise AssertionError("no l, b, solid angle line")


def test_params_demo_tile_names_the_built_files(demo):
    """params/demo_tile.yaml (used by `make demo`) agrees with what is built."""
    from hscsim_utils.bands import HSC_BANDS

    built = demo["spec"]
    shipped = tile.load_tile(Path(__file__).parents[1] / "params" / "demo_tile.yaml")
    # the i band's files are named as in a tile of the i band alone
    for key in ("calexp", "frame_metadata", "coadd_metadata", "gaia_table"):
        assert getattr(shipped, key).name == getattr(built, key).name
    assert [p.name for p in shipped.besancon_headers] == [
        p.name for p in built.besancon_headers
    ]
    assert (shipped.seed, shipped.posterior_index) == (
        built.seed,
        built.posterior_index,
    )
    # `make demo` builds the full patch in the five bands (the Makefile says
    # --bands grizy) with the default generator, preset and seed
    assert shipped.band_names == HSC_BANDS and shipped.detection_band == "i"
    for band, files in shipped.bands.items():
        assert files.calexp.name == built.calexp.name.replace(
            "-I-", f"-{band.upper()}-"
        )
        assert (files.truth_dir.parent.name, files.truth_dir.name) == (
            built.truth_dir.name, band
        )  # fmt: skip
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "hscsim demo-tile --bands grizy --out $(DEMO)/input" in makefile
    assert f"DEMO_TILE := $(DEMO)/input/{shipped.bands['y'].calexp.name}" in makefile
    from hscsim_utils.demo import generate, independent

    geom = demo_observation.demo_geometry((4200, 4200))
    defaults = inspect.signature(generate.build_tile).parameters
    assert defaults["generator"].default == "galsim"
    name = independent.independent_tile_name(
        geom, defaults["seed"].default, defaults["preset"].default, HSC_BANDS
    )
    assert shipped.tile_name == name


def test_effective_gain_from_the_variance_plane_is_the_rendering_gain(demo):
    """The UFig-rendered DEMO draws source photons at ufig's effective gain and
    writes their variance into VARIANCE: stage 01's measurement recovers it."""
    from hscsim_utils.stages.skymapinfo import measured_gain, saturation_level

    calexp = demo["calexp"]
    est = measured_gain(calexp, saturation_level(calexp))
    assert est.gain == pytest.approx(demo["truth"]["gain_effective_ufig"], rel=0.03)
