"""ufig's ``gain_map`` photons: the defect on ufig's own code, then the mend."""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from hscsim_utils.compat.ufig_counts import gain_map_photons, unbiased_gain_map_counts

GAIN = 600.0  # par.gain: photons per ADU of the rendered image
SHAPE = (40, 80)
N = 40_000
MAG = 24.0


@pytest.fixture
def par(tmp_path):
    """Gain map 2 x the mean gain on the left half, 0.5 x on the right."""
    gain_map = np.full(SHAPE, 0.5 * GAIN, np.float32)
    gain_map[:, : SHAPE[1] // 2] = 2.0 * GAIN
    path = tmp_path / "sysmaps.h5"
    with h5py.File(path, "w") as fh5:
        fh5["map_gain"] = gain_map
        fh5["map_expt"] = np.full(SHAPE, 20 * 270.0, np.float32)
    return SimpleNamespace(
        magzero=27.0, gain=GAIN, n_exp=20, exposure_time=270.0,
        sysmaps_type="sysmaps_hdf_combined", filepath_sysmaps=str(path),
        maps_remote_dir="",
    )  # fmt: skip


def _objects(half: str) -> dict:
    rng = np.random.default_rng(1)
    x0 = 0 if half == "left" else SHAPE[1] // 2
    x = rng.uniform(x0, x0 + SHAPE[1] // 2, N)
    return {"mag": np.full(N, MAG), "x": x, "y": rng.uniform(0, SHAPE[0], N)}


def _flux_ratio(photons: np.ndarray) -> float:
    """Mean rendered flux (photons / par.gain) over the true flux."""
    return float(photons.mean() / GAIN / 10 ** (0.4 * (27.0 - MAG)))


def test_ufig_gain_map_gives_objects_the_flux_times_local_over_mean_gain(par):
    from ufig.plugins.single_band_setup import (
        convert_magnitude_to_nphot_variable_texp,
        convert_magnitude_to_nphot_with_gain_map,
    )

    np.random.seed(0)  # noqa: NPY002 (ufig draws photons from the global RNG)
    left = convert_magnitude_to_nphot_with_gain_map(**_objects("left"), par=par)
    right = convert_magnitude_to_nphot_with_gain_map(**_objects("right"), par=par)
    assert _flux_ratio(left) == pytest.approx(2.0, rel=0.01)  # 0.75 mag too bright
    assert _flux_ratio(right) == pytest.approx(0.5, rel=0.01)  # 0.75 mag too faint
    # ufig's exposure-time conversion keeps the flux
    variable = convert_magnitude_to_nphot_variable_texp(**_objects("left"), par=par)
    assert _flux_ratio(variable) == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize(
    ("half", "local"), [("left", 2.0 * GAIN), ("right", 0.5 * GAIN)]
)
def test_mended_gain_map_keeps_the_flux_and_the_local_photon_noise(par, half, local):
    np.random.seed(0)  # noqa: NPY002 (ufig draws photons from the global RNG)
    photons = gain_map_photons(**_objects(half), par=par)
    assert _flux_ratio(photons) == pytest.approx(1.0, rel=0.01)
    flux = 10 ** (0.4 * (27.0 - MAG))
    relative_scatter = photons.std() / photons.mean()
    assert relative_scatter == pytest.approx(1.0 / np.sqrt(flux * local), rel=0.05)


def test_no_exposure_no_photons(par):
    with h5py.File(par.filepath_sysmaps, "r+") as fh5:
        fh5["map_gain"][:, :10] = 0.0
    objects = _objects("left")
    photons = gain_map_photons(**objects, par=par)
    x = objects["x"]
    assert (photons[x < 10] == 0).all() and (photons[x >= 10] > 0).all()


def test_the_mend_is_in_place_only_inside_its_context():
    from ufig.plugins import single_band_setup

    original = single_band_setup.NPHOT_GENERATOR["gain_map"]
    with unbiased_gain_map_counts():
        assert single_band_setup.NPHOT_GENERATOR["gain_map"] is gain_map_photons
    assert single_band_setup.NPHOT_GENERATOR["gain_map"] is original
