"""Stage 04: Besançon map and Gaia catalogue in ufig's layouts, bad inputs."""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import h5py
import healpy as hp
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from hscsim_utils.errors import InputError, ToolError
from hscsim_utils.hsc.files import write_calexp
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.pipeline import runner
from hscsim_utils.runfolder import REPO_ROOT, RunFolder
from hscsim_utils.stages import stars, stars_plots
from tests.run_products import written_products
from tests.synthetic import write_tile_file

RA, DEC = 34.0, -5.0  # XMM-LSS, RING pixel 403 at nside 8
SHAPE = (300, 400)


def patch_wcs(nx=SHAPE[1], ny=SHAPE[0], ra=RA, dec=DEC) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [nx / 2 + 0.5, ny / 2 + 0.5]
    w.wcs.crval = [ra, dec]
    w.wcs.cd = [[-0.168 / 3600, 0], [0, 0.168 / 3600]]
    return w


def header_text(l, b, area=5.0):  # noqa: E741
    """A header like the service's, with the values where the tutorial expects."""
    return (
        "# Besancon Model of stellar population synthesis of the Galaxy\n"
        "# Model version 1603, run 12345\n"
        f"#   Galactic coordinates (l = {l:.3f}, b = {b:.3f}) "
        f"Solid angle {area:.3f} deg^2\n"
        "# Photometric system: SDSS + JHK, reference band r, 10 < r < 30\n"
    )


def write_besancon_pair(folder, name, l, b, n=2000, area=5.0, seed=0, drop=None):  # noqa: E741
    rng = np.random.default_rng(seed)
    cols = {"r": rng.uniform(15, 30, n)}
    for band in ("g", "i", "z", "u"):
        cols[f"r-{band}"] = rng.normal(0.3, 0.5, n)
    if drop:
        del cols[drop]
    head = folder / f"{name}.header"
    head.write_text(header_text(l, b, area))
    table = folder / f"{name}.fits"
    fits.BinTableHDU(Table(cols)).writeto(table)
    return head, table, cols


def galactic_of(ra, dec):
    gal = SkyCoord(ra, dec, unit="deg").galactic
    return gal.l.deg, gal.b.deg


@pytest.mark.parametrize(
    "text",
    [
        "  Galactic coordinates (l = 170.000, b = -59.500) Solid angle 5.000\n",
        "l=170.0 b=-59.5\nSolid angle (deg^2): 5\n",
        "# L = 1.7e2 , B = -59.5 ;  solid angle = 5.0e0 square degrees\n",
    ],
)
def test_header_values_are_found_by_pattern(tmp_path, text):
    path = tmp_path / "h.header"
    path.write_text("# model output\n# Nstars total = 12345\n" + text)
    field = stars.parse_besancon_header(path)
    assert (field.l, field.b, field.solid_angle) == (170.0, -59.5, 5.0)


@pytest.mark.parametrize(
    "text, missing",
    [
        ("(b = -59.5) Solid angle 5.0", "no l value"),
        ("(l = 170.0) Solid angle 5.0", "no b value"),
        ("(l = 170.0, b = -59.5) area 5.0", "no solid angle value"),
    ],
)
def test_header_without_a_value_is_an_input_error(tmp_path, text, missing):
    path = tmp_path / "bad.header"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        stars.parse_besancon_header(path)
    assert str(path) in str(err.value) and missing in str(err.value)


def test_table_without_a_colour_is_an_input_error(tmp_path):
    _, table, _ = write_besancon_pair(tmp_path, "p", 170, -60, drop="r-i")
    with pytest.raises(InputError) as err:
        stars.read_besancon_table(table)
    assert str(table) in str(err.value) and "['r-i']" in str(err.value)


def test_magnitudes_from_colours_and_y_from_z(tmp_path):
    _, table, cols = write_besancon_pair(tmp_path, "p", 170, -60, n=50)
    cat = stars.read_besancon_table(table)
    np.testing.assert_allclose(cat["g"], cols["r"] - cols["r-g"])
    np.testing.assert_allclose(cat["i"], cols["r"] - cols["r-i"])
    np.testing.assert_allclose(cat["z"], cols["r"] - cols["r-z"])
    np.testing.assert_array_equal(cat["y"], cat["z"])


def test_pixel_of_header_is_the_pixel_ufig_looks_up():
    from ufig.coordinate_util import radec2pix

    for ra, dec in [(RA, DEC), (150.1, 2.2), (0.5, -30.0)]:
        l, b = galactic_of(ra, dec)  # noqa: E741
        theta, phi = np.radians(90 - dec), np.radians(ra)
        expected = hp.ang2pix(8, theta, phi)  # as draw_stars_besancon_map
        assert stars.galactic_to_pixel(l, b) == expected == radec2pix(ra, dec, 8)
    assert stars.galactic_to_pixel(*galactic_of(RA, DEC)) == 403


def _besancon_inputs(tmp_path, pixels, n=2000):
    headers, tables = [], []
    for k, pix in enumerate(pixels):
        ra, dec = hp.pix2ang(8, pix, lonlat=True)
        head, table, _ = write_besancon_pair(
            tmp_path, f"besancon_{pix:04d}", *galactic_of(ra, dec), n=n, seed=k
        )
        headers.append(head)
        tables.append(table)
    return headers, tables


def test_besancon_map_layout_subsampling_and_ufig_loader(tmp_path):
    from ufig.plugins.draw_stars_besancon_map import (
        load_besancon_map,
        load_besancon_map_info,
        load_besancon_map_pixels,
    )

    pixels = stars.tile_pixels(RA, DEC)
    assert 403 in pixels and len(pixels) == 9
    headers, tables = _besancon_inputs(tmp_path, pixels)
    out = tmp_path / "run" / "besancon.h5"
    required = stars.required_pixels(patch_wcs(), SHAPE)
    summary = stars.build_besancon_map(
        headers, tables, out, area_store=2.0, seed=3, required=required
    )
    assert summary["pixels"] == sorted(pixels)
    assert set(summary["n_stars"].values()) == {int(2000 * 2.0 / 5.0)}
    with h5py.File(out) as fh5:
        assert fh5["nside"][()] == 8 and fh5["simulation_area"][()] == 2.0
        assert len(fh5["healpix_list"]) == hp.nside2npix(8)
        mask = fh5["healpix_mask"][()]
    assert (mask[pixels] == 800).all() and (np.delete(mask, pixels) == hp.UNSEEN).all()
    par = types.SimpleNamespace(besancon_map_path=str(out), maps_remote_dir="")
    ctx = types.SimpleNamespace(parameters=par)
    assert load_besancon_map_info(ctx) == {"simulation_area": 2.0, "nside": 8}
    loaded = load_besancon_map_pixels(ctx, [403])["0403"]
    assert loaded.dtype.names == ("g", "r", "i", "z", "y") and len(loaded) == 800
    full = load_besancon_map(ctx)
    assert sum(c is not None for c in full["healpix_list"]) == len(pixels)


def test_besancon_map_is_reproducible_and_order_independent(tmp_path):
    pixels = stars.tile_pixels(RA, DEC)[:3]
    headers, tables = _besancon_inputs(tmp_path, pixels, n=300)
    stars.build_besancon_map(headers, tables, tmp_path / "a.h5", seed=5)
    stars.build_besancon_map(headers[::-1], tables[::-1], tmp_path / "b.h5", seed=5)
    stars.build_besancon_map(headers, tables, tmp_path / "c.h5", seed=6)
    a, b, c = (stars.read_besancon_map(tmp_path / f"{k}.h5") for k in "abc")
    for pix in pixels:
        np.testing.assert_array_equal(a["catalogs"][pix], b["catalogs"][pix])
    assert any(not np.array_equal(a["catalogs"][p], c["catalogs"][p]) for p in pixels)


def test_besancon_map_needs_the_tile_pixel_and_leaves_no_file(tmp_path):
    neighbour = [p for p in stars.tile_pixels(RA, DEC) if p != 403][:1]
    headers, tables = _besancon_inputs(tmp_path, neighbour, n=100)
    out = tmp_path / "besancon.h5"
    with pytest.raises(
        InputError, match=r"no Besançon catalogue for HEALPix pixels \[403\]"
    ):
        stars.build_besancon_map(
            headers, tables, out, required=stars.required_pixels(patch_wcs(), SHAPE)
        )
    assert list(tmp_path.glob("*.h5")) == []


def test_bad_header_stops_the_map_naming_the_file(tmp_path):
    headers, tables = _besancon_inputs(tmp_path, [403], n=100)
    headers[0].write_text("(l = 170.0, b = -59.5)\n")
    with pytest.raises(InputError, match=f"{headers[0]}: .*no solid angle"):
        stars.build_besancon_map(headers, tables, tmp_path / "besancon.h5")
    assert not (tmp_path / "besancon.h5").exists()


def gaia_table(n=40, seed=0, nan_rows=3, outside=5):
    """VizieR-like table: stars in the patch, some outside, some with NaN."""
    rng = np.random.default_rng(seed)
    w = patch_wcs()
    x = rng.uniform(0, SHAPE[1], n)
    y = rng.uniform(0, SHAPE[0], n)
    x[:outside] += 3000  # far outside the patch
    ra, dec = w.all_pix2world(x, y, 0)
    gmag = rng.uniform(14, 21, n)
    gmag[outside : outside + nan_rows] = np.nan
    source = np.arange(n, dtype=np.int64) + 4_000_000_000_000_000_000
    return Table({"Source": source, "RAJ2000": ra, "DEJ2000": dec, "Gmag": gmag})


def test_gaia_from_local_votable_cleaned_and_cut_to_patch(tmp_path):
    table = gaia_table()
    path = tmp_path / "gaia.vot"
    table.write(path, format="votable")
    cat, origin = stars.gaia_stars(patch_wcs(), SHAPE, table=path, source="local")
    assert origin == str(path) and len(cat) == 40 - 5 - 3
    out = stars.write_gaia(tmp_path / "stars" / "gaia.h5", cat)
    stored = stars.read_gaia(out)
    assert stored.dtype == stars.GAIA_DTYPE
    keep = np.isfinite(table["Gmag"]) & (np.arange(40) >= 5)
    np.testing.assert_array_equal(stored["id"], table["Source"][keep])
    np.testing.assert_allclose(stored["ra"], table["RAJ2000"][keep])
    np.testing.assert_allclose(stored["phot_g_mean_mag"], table["Gmag"][keep], 1e-6)


def test_gaia_falls_back_to_local_table_when_vizier_fails(
    tmp_path, monkeypatch, capsys
):
    def unreachable(*args, **kwargs):
        raise ConnectionError("name resolution failed")

    monkeypatch.setattr(stars, "query_gaia_vizier", unreachable)
    path = tmp_path / "gaia.ecsv"
    gaia_table().write(path)
    cat, origin = stars.gaia_stars(patch_wcs(), SHAPE, table=path, source="auto")
    assert origin == str(path) and len(cat) == 32
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1 and "VizieR unreachable" in line
    with pytest.raises(InputError, match="gaia_table: VizieR .* no local table given"):
        stars.gaia_stars(patch_wcs(), SHAPE, table=None, source="auto")
    with pytest.raises(ToolError, match="name resolution failed"):
        stars.gaia_stars(patch_wcs(), SHAPE, table=path, source="vizier")


def test_gaia_uses_vizier_result_when_reachable(tmp_path, monkeypatch):
    seen = {}

    def fake(ra, dec, radius, timeout):
        seen.update(ra=ra, dec=dec, radius=radius, timeout=timeout)
        return gaia_table(seed=1)

    monkeypatch.setattr(stars, "query_gaia_vizier", fake)
    cat, origin = stars.gaia_stars(patch_wcs(), SHAPE, table=None, timeout=3)
    assert origin.startswith("VizieR I/355/gaiadr3") and len(cat) == 32
    assert seen["ra"] == pytest.approx(RA) and seen["dec"] == pytest.approx(DEC)
    assert seen["radius"] == pytest.approx(np.hypot(*SHAPE) * 0.168 / 3600)
    assert seen["timeout"] == 3


def test_empty_gaia_result_is_an_input_error(tmp_path):
    path = tmp_path / "gaia.vot"
    gaia_table(n=6, nan_rows=1, outside=5).write(path, format="votable")
    with pytest.raises(InputError) as err:
        stars.gaia_stars(patch_wcs(), SHAPE, table=path, source="local")
    assert str(path) in str(err.value) and "no Gaia star" in str(err.value)


def test_gaia_table_in_ufig_layout_and_missing_columns(tmp_path):
    cat, _ = stars.clean_gaia(gaia_table(nan_rows=0, outside=0))
    ufig_file = stars.write_gaia(tmp_path / "g.h5", cat)
    again, _ = stars.gaia_stars(patch_wcs(), SHAPE, table=ufig_file, source="local")
    np.testing.assert_array_equal(again, cat)
    bad = tmp_path / "bad.ecsv"
    Table({"RAJ2000": [34.0], "DEJ2000": [-5.0]}).write(bad)
    with pytest.raises(InputError, match=r"lacks columns \['Source', 'Gmag'\]"):
        stars.read_gaia_table(bad)


def test_demo_tile_uses_its_local_gaia_table():
    assert stars.choose_gaia_source("", is_demo=True) == "local"
    assert stars.choose_gaia_source("", is_demo=False) == "auto"
    assert stars.choose_gaia_source("vizier", is_demo=True) == "vizier"


def test_star_plots_carry_the_label(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    headers, tables = _besancon_inputs(tmp_path, [403], n=500)
    stars.build_besancon_map(headers, tables, tmp_path / "b.h5")
    cat, _ = stars.clean_gaia(gaia_table(nan_rows=0, outside=0))
    label = "REAL HSC data: test"
    fig = stars_plots.plot_star_counts(
        stars.read_besancon_map(tmp_path / "b.h5"), cat, 0.01, 403, label
    )
    assert label in fig.axes[0].get_title()
    fig = stars_plots.plot_gaia_on_image(np.zeros(SHAPE), patch_wcs(), cat, label)
    assert label in fig.axes[0].get_title()


def write_stage04_tile(folder: Path) -> Path:
    """A tile with a blank calexp, Besançon outputs around it and a Gaia table."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HIERARCH cards for long MP_* names
        write_calexp(
            folder / "calexp.fits",
            rng.normal(0, 0.05, SHAPE),
            np.zeros(SHAPE, np.int32),
            np.full(SHAPE, 0.0025),
            patch_wcs().to_header(),
        )
    headers, tables = _besancon_inputs(folder, stars.tile_pixels(RA, DEC), n=500)
    gaia_table().write(folder / "gaia.vot", format="votable")
    return write_tile_file(
        folder,
        besancon_headers=headers,
        besancon_catalogs=tables,
        gaia_table=folder / "gaia.vot",
        is_demo=True,
    )


def test_run_writes_exactly_the_declared_products(tmp_path):
    tile = load_tile(write_stage04_tile(tmp_path / "input"))
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    before = set(run.root.rglob("*"))
    result = stars.run(tile, run, stars.Params())
    assert written_products(run, before) == set(stars.STAGE.writes)
    assert len(result.gaia) == 32 and result.besancon["required"] == [403]
    assert np.array_equal(stars.read_gaia(run.gaia), result.gaia)


def test_params_gaia_table_replaces_the_tiles(tmp_path):
    tile = load_tile(write_stage04_tile(tmp_path / "input"))
    other = tmp_path / "other.vot"
    gaia_table(n=20, seed=3).write(other, format="votable")
    run = RunFolder(tmp_path / "run")
    params = stars.Params(gaia_source="local", gaia_table=str(other))
    assert len(stars.run(tile, run, params).gaia) == 12  # 20 - 5 outside - 3 NaN


def test_missing_besancon_pixel_names_the_line_of_sight(tmp_path):
    headers, tables = _besancon_inputs(tmp_path, [402])
    sight = stars.lines_of_sight(np.array([403]))[0]
    text = rf"request l = {sight['l']:.3f}, b = {sight['b']:.3f} \(pixel 403\)"
    with pytest.raises(InputError, match=text):
        stars.build_besancon_map(headers, tables, tmp_path / "b.h5", required=[403])


def test_params_validate_themselves():
    assert stars.Params() == stars.Params(2.0, "", "", 10.0)
    for bad, fragment in [
        (dict(area_store=0.0), r"^stars\.area_store: must be finite and positive"),
        (dict(area_store="2"), r"stars\.area_store: must be a number"),
        (dict(gaia_source="web"), r"stars\.gaia_source: must be auto, vizier"),
        (dict(gaia_timeout=float("inf")), r"stars\.gaia_timeout"),
        (dict(gaia_table=None), r"stars\.gaia_table"),
    ]:
        with pytest.raises(InputError, match=fragment):
            stars.Params(**bad)


@pytest.mark.slow
def test_notebook_04_runs_under_papermill(tmp_path):
    import papermill

    tile = write_stage04_tile(tmp_path / "input")
    run = RunFolder(tmp_path / "run")
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "04_stars.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters=dict(tile_file=str(tile), run_dir=str(run.root)),
        kernel_name=runner.KERNEL_NAME,
        cwd=str(REPO_ROOT / "notebooks"),
        progress_bar=False,
    )
    assert len(stars.read_gaia(run.gaia)) == 32
    assert stars.read_besancon_map(run.besancon)["catalogs"][403].shape == (200,)
    for name in ("04_star_counts.png", "04_gaia_on_image.png"):
        assert run.plot(name).stat().st_size > 10_000
