"""Bad input across the stages and the command line.

Every case expects an error that names the file or parameter and what is wrong,
and checks that no output (not even a temporary one) was left behind.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from hscsim_utils.errors import InputError, OutputError, ToolError
from hscsim_utils.hsc import tile
from hscsim_utils.runfolder import RunFolder, resolve_run
from hscsim_utils.stages import masks, simulate, stars
from hscsim_utils.stages import sky_and_sysmaps as sysmaps
from hscsim_utils.stages import source_extraction as extraction
from tests import synthetic


def _files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


@pytest.fixture
def case(tmp_path):
    """A small synthetic tile in real formats and an empty run folder."""
    made = synthetic.write_synthetic_tile(tmp_path / "in", shape=(120, 160))
    return tile.load_tile(made.tile_file), RunFolder(tmp_path / "run")


def _expect(exc, fragments, run, func, *args, **kwargs):
    with pytest.raises(exc) as err:
        func(*args, **kwargs)
    for fragment in fragments:
        assert str(fragment) in str(err.value), str(err.value)
    assert _files(run.root) == [], "output left behind"
    return err.value


def _replace(spec, **values):
    return tile.TileSpec(**{**spec.__dict__, **values})


# ---- calexp -------------------------------------------------------------


def test_truncated_calexp(case):
    spec, run = case
    data = spec.calexp.read_bytes()
    spec.calexp.write_bytes(data[: len(data) // 3])
    _expect(InputError, [spec.calexp, "is truncated"], run,
            sysmaps.make_sky_and_sysmaps, spec, run)  # fmt: skip
    spec.calexp.write_bytes(data[:-100])  # a few bytes short: still a cut download
    _expect(InputError, [spec.calexp, "is truncated"], run,
            sysmaps.make_sky_and_sysmaps, spec, run)  # fmt: skip


REAL_SUPRIMECAM = (
    Path(__file__).resolve().parents[2] / "shared/realdata/subaru_calexp/act-img.fits"
)


@pytest.mark.skipif(
    not REAL_SUPRIMECAM.is_file(),
    reason="../shared/realdata (real Subaru files) is not beside this checkout",
)
def test_real_suprimecam_calexp_is_refused(tmp_path):
    """A real LSST-pipeline calexp of Suprime-Cam (not HSC) is not read as HSC."""
    from hscsim_utils.hsc import files as hsc_io

    with pytest.raises(InputError) as err:
        hsc_io.read_calexp(REAL_SUPRIMECAM, band="i")
    assert str(REAL_SUPRIMECAM) in str(err.value)
    assert "INSTRUME is 'SuprimeCam': not a Hyper Suprime-Cam image" in str(err.value)


def test_calexp_that_is_not_fits(case):
    spec, run = case
    spec.calexp.write_text("SIMPLE? no, a text file\n" * 100)
    _expect(
        InputError,
        [spec.calexp, "not a readable FITS"],
        run,
        sysmaps.make_sky_and_sysmaps,
        spec,
        run,
    )


@pytest.mark.parametrize("drop, what", [(2, "MASK"), (3, "VARIANCE")])
def test_calexp_missing_plane(case, drop, what):
    spec, run = case
    with fits.open(spec.calexp) as hdul:
        keep = [h.copy() for i, h in enumerate(hdul) if i != drop]
    fits.HDUList(keep).writeto(spec.calexp, overwrite=True)
    _expect(InputError, [spec.calexp], run, masks.make_masks, spec, run)


def test_image_full_of_nan(case):
    spec, run = case
    with fits.open(spec.calexp) as hdul:
        hdul[1].data[:] = np.nan
        hdul.writeto(spec.calexp, overwrite=True)
    _expect(
        InputError,
        [spec.calexp, "no finite pixel"],
        run,
        sysmaps.make_sky_and_sysmaps,
        spec,
        run,
    )


def test_wrong_band_in_header(case):
    spec, run = case
    _expect(
        InputError,
        [spec.calexp, "expected band 'g'"],
        run,
        masks.make_masks,
        _replace(spec, band="g"),
        run,
    )


# ---- archive CSVs -------------------------------------------------------


def _edit_csv(path: Path, header=None, keep_rows=True):
    lines = path.read_text().splitlines()
    head = header(lines[0]) if header else lines[0]
    path.write_text("\n".join([head] + (lines[1:] if keep_rows else [])) + "\n")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (dict(header=lambda h: h.replace(",seeing", "")), "missing ['seeing']"),
        (
            dict(header=lambda h: h + ",airmass"),
            "header names 16 columns, its rows have 15",
        ),
        (dict(keep_rows=False), "has no rows"),
    ],
    ids=["missing-column", "extra-column", "no-rows"],
)
def test_frame_csv(case, edit, fragment):
    spec, run = case
    _edit_csv(spec.frame_metadata, **edit)
    _expect(
        InputError,
        [spec.frame_metadata, fragment],
        run,
        sysmaps.make_sky_and_sysmaps,
        spec,
        run,
    )


def test_coadd_csv_missing_column(case):
    spec, run = case
    _edit_csv(spec.coadd_metadata, header=lambda h: h.replace("zeropt,", ""))
    _expect(
        InputError,
        [spec.coadd_metadata, "missing ['zeropt']"],
        run,
        sysmaps.make_sky_and_sysmaps,
        spec,
        run,
    )


def _sysmaps_with_frames(tmp_path, corners, problem):
    """Stage 01 on a 60 x 60 patch whose frames have ``corners``: an InputError
    naming frames.csv and ``problem``, and no output."""
    made = synthetic.write_synthetic_tile(
        tmp_path / "in", shape=(60, 60), corners_xy=corners,
        visit=np.arange(len(corners)),
    )  # fmt: skip
    run = RunFolder(tmp_path / "run")
    _expect(
        InputError,
        [made.tile_file.parent / "frames.csv", problem],
        run,
        sysmaps.make_sky_and_sysmaps,
        tile.load_tile(made.tile_file),
        run,
    )


def test_more_than_320_visits(tmp_path):
    corners = np.array([synthetic.rectangle(0, 0, 50, 50)] * 321)
    _sysmaps_with_frames(tmp_path, corners, "320")


def test_frames_entirely_off_the_patch(tmp_path):
    corners = np.array([synthetic.rectangle(5000, 5000, 6000, 6000)] * 2)
    _sysmaps_with_frames(tmp_path, corners, "no frame")


# ---- stars --------------------------------------------------------------


def test_besancon_header_without_solid_angle(tmp_path):
    path = tmp_path / "b.header"
    path.write_text(
        "# Besancon model output\n# Galactic coordinates l = 170.1 b = -58.2\n"
    )
    _expect(
        InputError,
        [path],
        RunFolder(tmp_path / "run"),
        stars.parse_besancon_header,
        path,
    )


def test_besancon_header_in_unknown_format(tmp_path):
    path = tmp_path / "b.header"
    path.write_bytes(bytes(range(256)) * 4)
    _expect(
        InputError,
        [path],
        RunFolder(tmp_path / "run"),
        stars.parse_besancon_header,
        path,
    )


def test_gaia_table_with_no_star_in_the_patch(case):
    spec, run = case
    far = Table(
        {
            "Source": [1, 2],
            "RAJ2000": [120.0, 121.0],
            "DEJ2000": [40.0, 41.0],
            "Gmag": [15.0, 16.0],
        }
    )
    path = spec.calexp.parent / "gaia.vot"
    far.write(path, format="votable")
    from hscsim_utils.hsc.files import read_calexp

    calexp = read_calexp(spec.calexp)
    _expect(
        InputError,
        [path],
        run,
        stars.make_gaia_catalog,
        _replace(spec, gaia_table=path),
        run,
        calexp,
        source="local",
    )


# ---- run folder and writing ---------------------------------------------


def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot create run folder"):
        resolve_run(blocker / "run")


def test_disk_full_while_writing_hdf5(case, monkeypatch):
    import h5py

    spec, run = case

    def full(self, *args, **kwargs):
        raise OSError(
            "Can't write data (file write failed: errno = 28, "
            "error message = 'No space left on device')"
        )

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    _expect(
        OutputError,
        [run.sysmaps, "No space left"],
        run,
        sysmaps.make_sky_and_sysmaps,
        spec,
        run,
    )


# ---- simulation parameters ----------------------------------------------


def test_unknown_galaxy_model(case):
    spec, run = case
    config = simulate.load_config()
    _expect(
        InputError,
        ["galaxy_model", "Euclid+30", "Moser+24"],
        run,
        simulate.resolve_settings,
        spec,
        config,
        galaxy_model="Euclid+30",
    )


def test_posterior_index_out_of_range(case):
    spec, run = case
    config = simulate.load_config()
    _expect(
        InputError,
        ["posterior_index", "out of range"],
        run,
        simulate.resolve_settings,
        spec,
        config,
        posterior_index=10**6,
    )


# ---- SExtractor ---------------------------------------------------------


def test_missing_sextractor(tmp_path):
    with pytest.raises(ToolError, match="no-such-sextractor"):
        extraction.find_sextractor("no-such-sextractor")


def test_sextractor_crash(case, tmp_path):
    spec, run = case
    sysmaps.make_sky_and_sysmaps(spec, run)
    masks.make_masks(spec, run)
    before = _files(run.root)
    broken = tmp_path / "broken.config"
    broken.write_text("DETECT_MINAREA -5\n")  # SExtractor: keyword out of range
    with pytest.raises(ToolError) as err:
        extraction.extract_sources(spec, run, config=str(broken))
    assert "stderr" in str(err.value) and "out of range" in str(err.value)
    assert _files(run.root) == before, "SExtractor crash left output behind"


# ---- command line -------------------------------------------------------


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("tile_name: x\ncolour: red\n", "unknown keys ['colour']"),
        ("tile_name: 5\n", "tile_name must be of type str"),
    ],
    ids=["unknown-key", "wrong-type"],
)
def test_cli_run_with_bad_tile_file(tmp_path, text, fragment):
    bad = tmp_path / "tile.yaml"
    bad.write_text(text)
    out = tmp_path / "run"
    proc = subprocess.run(
        [Path(sys.executable).with_name("hscsim"), "run", "--tile", bad, "--out", out],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and fragment in proc.stderr
    assert _files(out) == []


def test_cli_demo_tile_with_bad_size(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            Path(sys.executable).with_name("hscsim"),
            "demo-tile",
            "--out",
            out,
            "--size",
            "0",
            "10",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "size" in proc.stderr
    assert not out.exists() or _files(out) == []
