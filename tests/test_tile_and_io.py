"""Tile files, HSC-format readers and atomic writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hscsim_utils.atomic import atomic_path, write_json
from hscsim_utils.errors import InputError, OutputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap
from hscsim_utils.hsc.tile import load_tile, write_tile
from hscsim_utils.runfolder import resolve_run


def _tile_values(tmp_path):
    return dict(
        tile_name="t1",
        calexp=tmp_path / "c.fits",
        frame_metadata=tmp_path / "f.csv",
        coadd_metadata=tmp_path / "m.csv",
        besancon_headers=[tmp_path / "b.header"],
        besancon_catalogs=[tmp_path / "b.fits"],
        is_demo=True,
        seed=7,
    )


def test_tile_round_trip_resolves_relative_paths(tmp_path):
    path = write_tile(tmp_path / "sub" / "tile.yaml", _tile_values(tmp_path))
    assert "c.fits" in path.read_text() and str(tmp_path) not in path.read_text()
    tile = load_tile(path)
    assert tile.calexp == (tmp_path / "c.fits").resolve()
    assert tile.seed == 7 and tile.band == "i" and tile.galaxy_model == "Moser+24"
    assert "simulated" in tile.label


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("tile_nme: x\n", "unknown keys ['tile_nme']"),
        ("tile_name: 3\n", "tile_name must be of type str"),
        ("tile_name: x\nseed: true\n", "seed must be of type int"),
        ("tile_name: x\n", "missing required keys"),
        ("- a\n- b\n", "must be a mapping"),
        ("tile_name: [\n", "not valid YAML"),
    ],
)
def test_bad_tile_file_names_file_and_problem(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_tile(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot create run folder"):
        resolve_run(blocker / "run")


def _wcs_header(n=64):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [34.2, -5.5]
    w.wcs.crpix = [n / 2, n / 2]
    w.wcs.cd = np.array([[-1, 0], [0, 1]]) * skymap.PIXEL_SCALE_ARCSEC / 3600
    return w.to_header()


def _write(tmp_path, **kw):
    img = np.random.default_rng(1).normal(size=(64, 64)).astype(np.float32)
    args = dict(
        image=img,
        mask=np.zeros((64, 64), np.int32),
        variance=np.ones((64, 64), np.float32),
        wcs_header=_wcs_header(),
    )
    args.update(kw)
    return hsc_io.write_calexp(tmp_path / "calexp.fits", **args)


def test_calexp_round_trip(tmp_path):
    path = _write(tmp_path)
    cal = hsc_io.read_calexp(path, band="i")
    assert cal.shape == (64, 64)
    assert cal.mask_bit("NO_DATA") == 8 and cal.mask_bit("BRIGHT_OBJECT") == 9
    assert cal.wcs.wcs.ctype[0] == "RA---TAN"
    with pytest.raises(InputError, match="expected band 'g'"):
        hsc_io.read_calexp(path, band="g")


def test_calexp_errors_name_the_file(tmp_path):
    path = _write(tmp_path)
    with fits.open(path) as hdul:
        fits.HDUList(hdul[:3]).writeto(tmp_path / "short.fits")
        del hdul[1].header["CRVAL1"]
        hdul.writeto(tmp_path / "nowcs.fits")
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all" * 10)
    cases = {
        "short.fits": "has 3 HDUs",
        "nowcs.fits": "lacks WCS keywords ['CRVAL1']",
        "junk.fits": "not a readable FITS file",
        "absent.fits": "file not found",
    }
    for name, fragment in cases.items():
        with pytest.raises(InputError) as err:
            hsc_io.read_calexp(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and fragment in str(err.value)
    nan = _write(tmp_path / "nan", image=np.full((64, 64), np.nan, np.float32))
    with pytest.raises(InputError, match="no finite pixel"):
        hsc_io.read_calexp(nan)


def test_archive_csv_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        rng.normal(size=(5, len(hsc_io.FRAME_COLUMNS))), columns=hsc_io.FRAME_COLUMNS
    )
    path = hsc_io.write_archive_csv(tmp_path / "f.csv", df, hsc_io.FRAME_COLUMNS)
    back = hsc_io.read_frame_metadata(path)
    np.testing.assert_allclose(back.to_numpy(), df.to_numpy(), rtol=1e-9)
    # as the archive may serve it: no '#', other column order, one more column
    served = df.iloc[:, ::-1].assign(airmass=1.2)
    (tmp_path / "served.csv").write_text(
        ",".join(served.columns) + "\n" + served.to_csv(header=False, index=False)
    )
    np.testing.assert_allclose(
        hsc_io.read_frame_metadata(tmp_path / "served.csv").to_numpy(), df.to_numpy()
    )
    # an earlier schema's names: declinations spelt "decl" (llcdecl, ...)
    old = df.rename(columns={v: k for k, v in hsc_io.COLUMN_ALIASES.items()})
    assert "llcdecl" in old.columns and "llcdec" not in old.columns
    (tmp_path / "pdr1.csv").write_text(
        "# " + ",".join(old.columns) + "\n" + old.to_csv(header=False, index=False)
    )
    np.testing.assert_allclose(
        hsc_io.read_frame_metadata(tmp_path / "pdr1.csv").to_numpy(), df.to_numpy()
    )
    text = path.read_text().splitlines()
    (tmp_path / "extra.csv").write_text(text[0] + ",foo\n" + "\n".join(text[1:]))
    (tmp_path / "empty.csv").write_text(text[0] + "\n")
    (tmp_path / "nohead.csv").write_text("\n".join(text[1:]))
    for name, fragment in [
        ("extra.csv", "header names 16 columns, its rows have 15"),
        ("empty.csv", "has no rows"),
        ("nohead.csv", "wrong columns: missing ['llcra'"),
    ]:
        with pytest.raises(InputError) as err:
            hsc_io.read_frame_metadata(tmp_path / name)
        assert name in str(err.value) and fragment in str(err.value)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": np.float32(1.5)})
    assert target.read_text().strip().startswith("{") and [*tmp_path.iterdir()] == [
        target
    ]


def _rewrite(path, edit) -> None:
    with fits.open(path) as hdul:
        hdus = [hdu.copy() for hdu in hdul]
    fits.HDUList(edit(hdus)).writeto(path, overwrite=True)


def test_calexp_as_hscpipe_writes_it(tmp_path):
    """Compressed IMAGE, archive tables after VARIANCE, LTV offsets: read the same."""
    from tests.synthetic import write_synthetic_calexp

    path = tmp_path / "calexp.fits"
    write_synthetic_calexp(path, (60, 80), n_sources=3)
    plain = hsc_io.read_calexp(path, band="i")

    def hscpipe(hdus):
        image = hdus[1]
        image.header["LTV1"], image.header["LTV2"] = -27900.0, -7900.0
        compressed = fits.CompImageHDU(
            image.data, header=image.header, name="IMAGE",
            compression_type="GZIP_2", quantize_level=0.0,  # lossless
        )  # fmt: skip
        table = fits.BinTableHDU.from_columns(
            [fits.Column(name="id", format="K", array=np.arange(3))], name="ARCHIVE_ID"
        )
        return [hdus[0], compressed, hdus[2], hdus[3], table]

    _rewrite(path, hscpipe)
    again = hsc_io.read_calexp(path, band="i")
    np.testing.assert_array_equal(again.image, plain.image)
    np.testing.assert_array_equal(again.mask, plain.mask)
    assert again.mask_planes == plain.mask_planes
    np.testing.assert_allclose(  # LTV moves LSST's parent origin, not the WCS
        again.wcs.all_pix2world([[10, 20]], 0), plain.wcs.all_pix2world([[10, 20]], 0)
    )


def test_calexp_of_another_zero_point_is_refused(tmp_path):
    from tests.synthetic import write_synthetic_calexp

    path = tmp_path / "calexp.fits"
    write_synthetic_calexp(path, (60, 80))

    def zero_point_31(hdus):
        hdus[0].header["FLUXMAG0"] = 10 ** (0.4 * 31.4)
        return hdus

    _rewrite(path, zero_point_31)
    with pytest.raises(InputError, match=r"FLUXMAG0 = .* is zero point 31.400, not 27"):
        hsc_io.read_calexp(path, band="i")
