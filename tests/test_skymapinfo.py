"""Stage 01 sky information: values, saturation, files ufig configs load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import sky_and_sysmaps as sysmaps
from hscsim_utils.stages import skymapinfo
from tests.synthetic import (
    coadd_table,
    make_wcs,
    rectangle,
    true_coverage,
    write_synthetic_tile,
)

FIELDS = (
    "pixscale", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "NAXIS1", "NAXIS2",
    "seeing_i", "magzero_i", "ra2000", "dec2000", "satur_i", "gain_i", "nexp_i",
    "exptime_i", "bkg_mean_i", "bkg_rms_i", "gain_eff_tutorial_i", "gain_eff_i",
    "gain_eff_err_i",
)  # fmt: skip


def _run(tmp_path, **kwargs):
    st = write_synthetic_tile(tmp_path / "in", **kwargs)
    run = resolve_run(tmp_path / "run")
    return st, run, sysmaps.make_sky_and_sysmaps(load_tile(st.tile_file), run)


def test_values_from_header_metadata_and_maps(tmp_path):
    shape = (80, 120)
    corners = np.array(
        [
            rectangle(-5, -5, 70.5, 90),
            rectangle(50.5, -5, 130, 90),
            rectangle(-5, -5, 130, 40.5),
        ]
    )
    st, run, result = _run(
        tmp_path, shape=shape, corners_xy=corners, visit=np.array([1, 1, 2]), seed=4
    )
    info = result.info
    assert tuple(info) == FIELDS
    header = hsc_io.read_calexp(st.calexp.path).header
    assert info["pixscale"] == 0.168
    for key in ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2"):
        assert info[key] == header[key]
    assert (info["NAXIS1"], info["NAXIS2"]) == (120, 80)
    coadd = hsc_io.read_coadd_metadata(tmp_path / "in" / "coadd.csv").iloc[0]
    assert info["seeing_i"] == 0.7 and info["magzero_i"] == 27.0
    assert (info["ra2000"], info["dec2000"]) == (coadd["ra2000"], coadd["dec2000"])
    cover = true_coverage(corners, shape)
    nexp = cover.sum(axis=0)
    gain = st.frames[["gain1", "gain2", "gain3", "gain4"]].to_numpy().mean(axis=1)
    expt = np.tensordot(st.frames["exptime"].to_numpy(), cover, axes=1)
    sum_gain = np.tensordot(gain, cover, axes=1)
    assert info["nexp_i"] == pytest.approx(nexp.mean())
    assert info["exptime_i"] == pytest.approx(expt.mean())
    assert info["gain_i"] == pytest.approx(sum_gain.mean() / nexp.mean(), rel=1e-6)
    assert gain.min() < info["gain_i"] < gain.max()
    assert info["bkg_rms_i"] == pytest.approx(1.0, rel=0.05)  # noise sigma 1
    assert abs(info["bkg_mean_i"]) < 0.05
    assert info["satur_i"] == pytest.approx(np.nanmax(st.calexp.image))
    assert info["gain_eff_tutorial_i"] == pytest.approx(info["gain_i"] * info["nexp_i"])
    # the synthetic VARIANCE is the sky's alone: no gain can be measured, and the
    # JSON says so with null (the record array with NaN)
    assert np.isnan(info["gain_eff_i"])
    assert json.loads(run.skymapinfo_json.read_text())["gain_eff_i"] is None


def test_saturation_from_sat_pixels_not_the_image_maximum(tmp_path):
    st = write_synthetic_tile(
        tmp_path / "in", (60, 70), n_sources=8, saturation=6.5, seed=1
    )
    calexp = hsc_io.read_calexp(st.calexp.path)
    sat = (calexp.mask >> calexp.mask_bit("SAT")) & 1 == 1
    assert sat.any()
    image = calexp.image.copy()
    image[np.unravel_index(np.argmin(np.where(sat, np.inf, image)), image.shape)] = 20
    hsc_io.write_calexp(calexp.path, image, calexp.mask, calexp.variance, calexp.header)
    result = sysmaps.make_sky_and_sysmaps(
        load_tile(st.tile_file), resolve_run(tmp_path / "run")
    )
    assert result.info["satur_i"] == pytest.approx(6.5)
    assert skymapinfo.saturation_level(hsc_io.read_calexp(calexp.path)) == 6.5


def test_gain_and_exposure_averaged_over_covered_pixels(tmp_path):
    corners = np.array([rectangle(-5, -5, 29.5, 50)])  # covers half of (40, 60)
    _, _, result = _run(tmp_path, shape=(40, 60), corners_xy=corners, seed=2)
    assert result.info["nexp_i"] == 1.0
    assert result.info["exptime_i"] in (180.0, 270.0, 300.0)


def test_npy_is_the_record_ufig_configs_load(tmp_path):
    _, run, result = _run(tmp_path, shape=(40, 50), n_visits=2)
    record = np.load(run.skymapinfo_npy, allow_pickle=True)[0]
    assert record.dtype.names == FIELDS
    assert record["NAXIS1"] == 50 and record["NAXIS1"].dtype == np.int64
    assert record["pixscale"] == 0.168
    size_x = record["NAXIS1"]  # as the simulation config uses it
    assert np.zeros((record["NAXIS2"], size_x)).shape == (40, 50)
    as_json = json.loads(run.skymapinfo_json.read_text())
    measured = {k: None if np.isnan(v) else v for k, v in result.info.items()}
    assert as_json == pytest.approx(measured)
    assert skymapinfo.read_skymapinfo(run.skymapinfo_npy)["gain_i"] == record["gain_i"]


def test_coadd_row_is_chosen_by_size_and_crval(tmp_path):
    st, run, _ = _run(tmp_path, shape=(40, 50), n_visits=2)
    calexp = hsc_io.read_calexp(st.calexp.path)
    other = coadd_table(make_wcs((40, 50), ra0=10.0), (40, 50), seeing=1.1)
    mine = coadd_table(st.calexp.wcs, (40, 50), seeing=0.55)
    row = skymapinfo.coadd_row(pd.concat([other, mine]), calexp, "m.csv")
    assert row["seeing"] == 0.55
    with pytest.raises(InputError, match="m.csv: 0 of 2 rows match"):
        skymapinfo.coadd_row(pd.concat([other, other]), calexp, "m.csv")


def test_invalid_coadd_values_name_the_file(tmp_path):
    st = write_synthetic_tile(tmp_path / "in", (30, 40), n_visits=2)
    path = tmp_path / "in" / "coadd.csv"
    df = hsc_io.read_coadd_metadata(path)
    df["seeing"] = np.nan
    hsc_io.write_archive_csv(path, df, hsc_io.COADD_COLUMNS)
    run = resolve_run(tmp_path / "run")
    with pytest.raises(
        InputError, match=r"invalid values in columns \['seeing'\]"
    ) as e:
        sysmaps.make_sky_and_sysmaps(load_tile(st.tile_file), run)
    assert str(path) in str(e.value)
    assert not run.skymapinfo_npy.exists() and not run.sysmaps.exists()


def test_frames_missing_the_patch_are_an_input_error(tmp_path):
    corners = np.array([rectangle(100, 100, 200, 200)])
    st = write_synthetic_tile(tmp_path / "in", (30, 40), corners_xy=corners)
    with pytest.raises(InputError, match="no frame covers the patch") as e:
        sysmaps.make_sky_and_sysmaps(
            load_tile(st.tile_file), resolve_run(tmp_path / "run")
        )
    assert str(tmp_path / "in" / "frames.csv") in str(e.value)


def test_saturation_level_ignores_bleed_trails_and_core_edges(tmp_path):
    """A coadd's SAT plane covers bleed trails and core edges far below saturation
    (SAT where >= 10% of the visits' weight saturated): the level is that of the
    saturated cores, not the lowest SAT value."""
    st = write_synthetic_tile(tmp_path / "in", (80, 90), n_sources=0, seed=2)
    calexp = hsc_io.read_calexp(st.calexp.path)
    image = np.zeros(calexp.shape, np.float32)
    sat = np.zeros(calexp.shape, bool)
    for y0, x0, level in ((20, 20, 110.0), (50, 60, 111.0), (65, 15, 112.0)):
        image[y0 - 1 : y0 + 2, x0 - 1 : x0 + 2] = level  # the saturated core
        sat[y0 - 2 : y0 + 3, x0 - 12 : x0 + 13] = True  # edges and a trail along x
        image[y0, x0 + 3 : x0 + 13] = np.linspace(60.0, 9.0, 10)
    bit = calexp.mask_bit("SAT")
    mask = (calexp.mask & ~np.int32(1 << bit)) | (sat.astype(np.int32) << bit)
    hsc_io.write_calexp(calexp.path, image, mask, calexp.variance, calexp.header)
    calexp = hsc_io.read_calexp(calexp.path)
    assert image[sat].min() == 0.0  # what the lowest SAT value would give
    assert skymapinfo.saturation_level(calexp) == pytest.approx(111.0)
