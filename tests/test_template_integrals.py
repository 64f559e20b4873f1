"""The vectorised template integral table against galsbi's direct calculation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hscsim_utils.data import provision
from hscsim_utils.data import template_integrals as ti
from hscsim_utils.errors import InputError

BANDS = ti.DEFAULT_BANDS
#: Wavelength range (Angstrom) and sample count of each curve in galsbi 0.1.0's
#: HSC_filters_collection_yfix.h5; GenericBessel_B is in the file, not requested.
FILTER_RANGES = {
    "HSC_g": (3800.0, 5750.0, 196),
    "HSC_r2": (5100.0, 7300.0, 221),
    "HSC_i2": (6700.0, 8900.0, 221),
    "HSC_z": (8100.0, 9700.0, 161),
    "HSC_y": (9000.0, 11000.0, 192),
    "SuprimeCam_B": (3600.0, 5480.0, 190),
    "GenericBessel_B": (3600.0, 5600.0, 21),
}
SMALL_GRID = ti.Grid(z_max=6.0, z_step=0.03, ebv_max=0.4, ebv_step=0.05)


def _bump(lam, lo, hi):
    """A smooth filter curve, zero at both ends, on ``lam`` (Angstrom)."""
    return np.sin(np.pi * (lam - lo) / (hi - lo)) ** 2


def write_inputs(folder, seed=3):
    """Synthetic filter collection (7 curves) and 5 templates in galsbi's formats."""
    rng = np.random.default_rng(seed)
    filters = folder / "filters.h5"
    with h5py.File(filters, "w") as fh:
        for name, (lo, hi, n) in FILTER_RANGES.items():
            lam = np.linspace(lo, hi, n)
            fh[f"{name}/lam"] = lam
            fh[f"{name}/amp"] = _bump(lam, lo, hi) * (0.8 + 0.2 * rng.random(n))
    templates = folder / "templates.h5"
    lam = np.unique(np.geomspace(1000.0, 3e5, 2500).round(2))
    slopes = rng.uniform(-2.5, 0.5, 5)
    amp = np.array([(lam / 5000.0) ** s * 1e-6 for s in slopes])
    amp *= 1 + 0.3 * rng.random(amp.shape)  # jagged, like real templates
    with h5py.File(templates, "w") as fh:
        fh["wavelength"] = lam
        fh["amplitudes"] = amp
    return filters, templates


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("integrals")
    filters, templates = write_inputs(folder)
    out = folder / "integrals.h5"
    ti.build_integrals_file(
        filters, templates, out, bands=BANDS, grid=SMALL_GRID, progress=False
    )
    return filters, templates, out


def test_random_cells_match_galsbi_direct_calculation(table):
    filters, templates, out = table
    diffs = ti.spot_check(out, filters, templates, bands=BANDS, n_cells=50, seed=7)
    assert len(diffs) == 6 * 5
    assert max(diffs.values()) <= 1e-10


def test_file_layout_is_galsbis_and_galsbi_reads_it(table):
    from galsbi.ucat.magnitude_calculator import MagCalculatorTable

    filters, templates, out = table
    n_z, n_e = SMALL_GRID.shape()
    with h5py.File(out, "r") as fh:
        assert sorted(fh["integrals"]) == sorted(BANDS)  # GenericBessel_B is not
        dset = fh["integrals/HSC_i2/template_4"]
        assert dset.shape == (n_z, n_e)
        assert dset.compression == "lzf" and dset.shuffle
        z, ebv = np.asarray(fh["z"]), np.asarray(fh["E(B-V)"])
        expected = np.asarray(fh["integrals/SuprimeCam_B/template_2"])
    calc = MagCalculatorTable(["SuprimeCam_B"], str(out))
    coeffs = np.zeros((4, 5))
    coeffs[:, 2] = 1.0
    iz, ie = np.array([0, 5, 40, n_z - 1]), np.array([0, 3, 1, n_e - 1])
    got = calc(z[iz], ebv[ie], coeffs, ["SuprimeCam_B"], return_fluxes=True)
    np.testing.assert_array_equal(
        got["SuprimeCam_B"], np.clip(expected[iz, ie], 0, None)
    )


def test_no_extinction_cell_equals_plain_trapezoid(table):
    filters, templates, out = table
    flt, tpl = ti.load_inputs(filters, templates, BANDS)
    z = 0.9
    x = tpl["lam"] * (1 + z)
    filt = np.interp(x, flt["HSC_i2"]["lam"], flt["HSC_i2"]["amp"], left=0, right=0)
    expected = np.trapezoid(x * tpl["amp"][1] * filt, x) / (
        3e14 * flt["HSC_i2"]["integ"]
    )
    got = ti.compute_template_integrals(
        flt, tpl, np.array([z]), np.array([0.0]), ["HSC_i2"], progress=False
    )
    assert got["HSC_i2"][1, 0, 0] == pytest.approx(expected, rel=1e-12)


def test_thread_count_does_not_change_values(table):
    filters, templates, _ = table
    flt, tpl = ti.load_inputs(filters, templates, BANDS)
    z, ebv = np.linspace(0, 3, 23), np.array([0.0, 0.13, 0.4])
    one = ti.compute_template_integrals(flt, tpl, z, ebv, BANDS, False, workers=1)
    three = ti.compute_template_integrals(flt, tpl, z, ebv, BANDS, False, workers=3)
    for band in BANDS:
        np.testing.assert_array_equal(one[band], three[band])


def test_extinction_dims_and_high_redshift_b_band_vanishes(table):
    _, _, out = table
    with h5py.File(out, "r") as fh:
        z = np.asarray(fh["z"])
        for band in BANDS:
            for t in range(5):
                values = np.asarray(fh[f"integrals/{band}/template_{t}"])
                assert np.all(values >= 0)
                assert np.all(np.diff(values, axis=1) <= 0)  # more dust, less flux
                assert values[0, 0] > 0
        b_band = np.asarray(fh["integrals/SuprimeCam_B/template_0"])
    # B-band light at z > 5480/1000 - 1 would come from below the templates' range
    beyond = z > 5480.0 / 1000.0 - 1
    assert beyond.sum() > 5
    assert np.all(b_band[beyond] == 0)
    assert np.all(b_band[z < 1] > 0)


def test_missing_band_names_file_and_band(tmp_path):
    filters, templates = write_inputs(tmp_path)
    with pytest.raises(InputError, match="HSC_NB921") as err:
        ti.load_inputs(filters, templates, ["HSC_i2", "HSC_NB921"])
    assert str(filters) in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        ti.load_inputs(tmp_path / "nope.h5", templates, ["HSC_i2"])


def test_full_grid_is_galsbis_production_grid():
    assert ti.FULL_GRID.shape() == (7463, 401)
    z, ebv = ti.FULL_GRID.arrays()
    assert z.shape == (7463,) and ebv.shape == (401,)
    assert z[-1] == pytest.approx(7.462) and ebv[-1] == pytest.approx(0.4)


def test_max_relative_difference_treats_double_zero_as_equal():
    assert ti.max_relative_difference([0.0, 2.0], [0.0, 1.0]) == 1.0
    assert ti.max_relative_difference([1.0], [0.0]) == np.inf


def test_default_bands_are_every_filter_the_simulation_config_names():
    """The provisioned table holds exactly the filters params/galsbi_hsc_config.py
    maps its bands to (g r i z y and the luminosity function's B)."""
    import ast

    from hscsim_utils.runfolder import REPO_ROOT

    tree = ast.parse((REPO_ROOT / "params" / "galsbi_hsc_config.py").read_text())
    (names,) = [
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "filters_full_names" for t in node.targets)
    ]  # fmt: skip
    assert set(names) == {"B", "g", "r", "i", "z", "y"}
    assert set(ti.DEFAULT_BANDS) == set(names.values())


@pytest.fixture(scope="module")
def cached_inputs():
    """Filter collection, templates and table of the provisioned cache."""
    root = provision.default_cache_root()
    hsc = root / provision.HSC_TABLES.name
    templates = root / provision.TEMPLATES.name / provision.TEMPLATES_FILE
    paths = hsc / provision.FILTERS_FILE, templates, hsc / provision.INTEGRALS_FILE
    if not all(p.is_file() for p in paths):
        pytest.skip(f"data cache {root} not provisioned (hscsim data)")
    return paths


def test_real_filters_and_templates_match_galsbi_in_every_band(cached_inputs):
    filters_path, templates_path, _ = cached_inputs
    flt, tpl = ti.load_inputs(filters_path, templates_path, BANDS)
    z, ebv = np.array([0.0, 0.37, 1.234, 2.9]), np.array([0.0, 0.051, 0.4])
    tables = ti.compute_template_integrals(flt, tpl, z, ebv, BANDS, progress=False)
    zz, ee = (a.ravel() for a in np.meshgrid(z, ebv, indexing="ij"))
    for band in BANDS:
        for t in (0, 2, 4):
            ref = ti.direct_fluxes(flt, tpl, band, t, zz, ee)
            assert np.all(ref > 0), (band, t)
            got = tables[band][t].ravel()
            assert ti.max_relative_difference(got, ref) <= 1e-10, (band, t)


def test_cached_table_holds_g_and_y_as_galsbi_computes_them(cached_inputs):
    filters_path, templates_path, integrals_path = cached_inputs
    with h5py.File(integrals_path, "r") as fh:
        missing = [b for b in BANDS if b not in fh["integrals"]]
    assert not missing, f"{integrals_path} lacks {missing}: run hscsim data"
    diffs = ti.spot_check(
        integrals_path,
        filters_path,
        templates_path,
        bands=("HSC_g", "HSC_y"),
        n_cells=8,
        seed=11,
    )
    assert len(diffs) == 2 * 5
    assert max(diffs.values()) <= 1e-10
