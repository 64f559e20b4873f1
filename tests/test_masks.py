"""Stage 02: ufig mask and overlap files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from hscsim_utils.errors import InputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.pipeline import runner
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import masks, masks_plots
from tests.run_products import written_products
from tests.synthetic import (
    demo_tile_for_tests,
    write_synthetic_calexp,
    write_synthetic_tile,
)

REPO = Path(__file__).resolve().parent.parent

#: Unusual bit numbers: the conversion must read them from the MP_* keywords.
PLANES = {"SAT": 0, "NO_DATA": 3, "BRIGHT_OBJECT": 12, "EDGE": 9, "CLIPPED": 31}


def _random_mask(shape, seed=0):
    rng = np.random.default_rng(seed)
    bits = rng.random((len(PLANES), *shape)) < 0.3
    mask = np.zeros(shape, np.int64)
    for bit, on in zip(PLANES.values(), bits, strict=True):
        mask |= on.astype(np.int64) << bit
    return mask.astype(np.uint32).view(np.int32)  # bit 31 makes values negative


def test_mask_bits_follow_the_mp_keywords(tmp_path):
    shape = (30, 40)
    raw = _random_mask(shape)
    assert (raw < 0).any()
    cal = write_synthetic_calexp(
        tmp_path / "c.fits", shape, mask=raw, mask_planes=PLANES
    )
    calexp = hsc_io.read_calexp(cal.path)
    out = masks.ufig_mask(calexp)
    star = (raw.view(np.uint32) >> 12) & 1
    survey = (raw.view(np.uint32) >> 3) & 1
    np.testing.assert_array_equal(out, 2 * star + 4 * survey)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 2, 4, 6}
    clipped = masks.ufig_mask(calexp, star_planes=["CLIPPED"], survey_planes=[])
    np.testing.assert_array_equal(clipped, 2 * ((raw.view(np.uint32) >> 31) & 1))


@pytest.mark.slow
def test_demo_mask_equals_truth(tmp_path):
    tile = load_tile(demo_tile_for_tests())
    result = masks.make_masks(tile, resolve_run(tmp_path / "run"))
    with h5py.File(tile.truth_dir / "mask.h5") as fh5:
        truth = fh5["mask"][...]
    np.testing.assert_array_equal(result.mask, truth)
    assert (truth & 2).any()  # the demo tile has bright-star masks


def test_missing_mask_plane_names_the_calexp(tmp_path):
    planes = {k: v for k, v in PLANES.items() if k != "BRIGHT_OBJECT"}
    cal = write_synthetic_calexp(tmp_path / "c.fits", (10, 12), mask_planes=planes)
    with pytest.raises(InputError, match="MP_BRIGHT_OBJECT") as err:
        masks.ufig_mask(hsc_io.read_calexp(cal.path))
    assert str(cal.path) in str(err.value)


def test_files_are_what_ufig_add_all_stamp_flags_reads(tmp_path):
    from ufig.plugins.add_generic_stamp_flags import add_all_stamp_flags

    shape = (40, 50)
    raw = np.zeros(shape, np.int32)
    raw[5:15, 5:15] |= 1 << PLANES["BRIGHT_OBJECT"]
    raw[25:35, 30:45] |= 1 << PLANES["NO_DATA"]
    st = write_synthetic_tile(
        tmp_path / "in", shape, n_visits=2, mask=raw, mask_planes=PLANES
    )
    run = resolve_run(tmp_path / "run")
    result = masks.make_masks(load_tile(st.tile_file), run)
    with h5py.File(run.mask) as fh5:
        assert fh5["mask"].dtype == np.uint8 and fh5["mask"].shape == shape
        np.testing.assert_array_equal(fh5["mask"][...], result.mask)
    with h5py.File(run.overlap) as fh5:
        assert fh5["img_mask"].dtype == bool and fh5["img_mask"].shape == shape
        assert not fh5["img_mask"][...].any()
    # a SExtractor-like catalogue: star-masked, survey-masked and clean objects
    cat = tmp_path / "cat.h5"
    x = np.array([10.0, 38.0, 25.0]) + 1  # SExtractor positions are 1-based
    y = np.array([10.0, 30.0, 20.0]) + 1
    with h5py.File(cat, "w") as fh5:
        for name, values in dict(
            X_IMAGE=x, Y_IMAGE=y, XWIN_IMAGE=x, YWIN_IMAGE=y, FLUX_RADIUS=np.ones(3)
        ).items():
            fh5.create_dataset(name, data=values)
    add_all_stamp_flags(str(cat), str(run.overlap), str(run.mask), off_mask_radius=1)
    with h5py.File(cat) as fh5:
        flags = fh5["FLAGS_STAMP"][...]
    nearby_star, survey_mask, duplicate = 1 << 5, 1 << 6, 1 << 1
    np.testing.assert_array_equal(flags, [nearby_star, survey_mask, 0])
    assert not (flags & duplicate).any()


def test_run_writes_exactly_the_declared_products(tmp_path):
    shape = (40, 50)
    raw = np.zeros(shape, np.int32)
    raw[5:15, 5:15] |= 1 << PLANES["EDGE"]
    raw[25:35, 30:45] |= 1 << PLANES["SAT"]
    st = write_synthetic_tile(
        tmp_path / "in", shape, n_visits=2, mask=raw, mask_planes=PLANES
    )
    run = resolve_run(tmp_path / "run")
    before = set(run.root.rglob("*"))
    params = masks.Params(star_planes="EDGE", survey_planes=" SAT, NO_DATA ")
    result = masks.run(load_tile(st.tile_file), run, params)
    assert written_products(run, before) == set(masks.STAGE.writes)
    assert (result.mask == 2).sum() == 100 and (result.mask == 4).sum() == 150
    masks.run(load_tile(st.tile_file), run, masks.Params())  # the defaults work too


def test_params_validate_themselves():
    assert masks.Params().star_planes == "BRIGHT_OBJECT"
    assert masks.Params(survey_planes="").survey_planes == ""  # no survey flag
    with pytest.raises(InputError, match=r"^masks\.star_planes: .*comma-separated"):
        masks.Params(star_planes="BRIGHT OBJECT")
    with pytest.raises(InputError, match=r"masks\.survey_planes"):
        masks.Params(survey_planes=["NO_DATA"])


def test_bad_calexp_writes_no_mask(tmp_path):
    st = write_synthetic_tile(tmp_path / "in", (10, 12), n_visits=1)
    (tmp_path / "in" / "calexp.fits").write_bytes(b"not a fits file")
    run = resolve_run(tmp_path / "run")
    with pytest.raises(InputError, match="calexp.fits"):
        masks.make_masks(load_tile(st.tile_file), run)
    assert not run.mask.exists() and not run.overlap.exists()


def test_plot_title_says_what_the_data_is(tmp_path):
    image = np.random.default_rng(0).normal(size=(20, 30))
    fig = masks_plots.plot_mask(image, np.zeros((20, 30), np.uint8), "REAL HSC data: t")
    assert fig._suptitle.get_text() == "REAL HSC data: t"


@pytest.mark.slow
def test_notebook_02_runs_under_papermill(tmp_path):
    import papermill

    raw = np.zeros((120, 150), np.int32)
    raw[10:40, 20:60] = 1 << hsc_io.PDR3_MASK_PLANES["BRIGHT_OBJECT"]
    st = write_synthetic_tile(tmp_path / "in", (120, 150), n_visits=2, mask=raw)
    papermill.execute_notebook(
        str(REPO / "notebooks" / "02_masks.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"tile_file": str(st.tile_file), "run_dir": str(tmp_path / "run")},
        cwd=str(REPO / "notebooks"),
        kernel_name=runner.KERNEL_NAME,
        progress_bar=False,
    )
    run = resolve_run(tmp_path / "run")
    with h5py.File(run.mask) as fh5:
        assert (fh5["mask"][...] == 2).sum() == 30 * 40
    assert run.overlap.is_file() and run.plot("02_mask.png").is_file()
