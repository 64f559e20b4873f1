"""Tile files, HSC-format readers and atomic writes."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits
from astropy.wcs import WCS

from hscsim_utils.atomic import atomic_path, write_json
from hscsim_utils.errors import InputError, OutputError
from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc import skymap
from hscsim_utils.hsc.tile import BandFiles, TileSpec, load_tile, write_tile
from hscsim_utils.runfolder import REPO_ROOT, resolve_run


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


# ---- multi-band tile files ---------------------------------------------------

PARAMS = (REPO_ROOT / "params").resolve()


def _band_entry(band: str) -> dict:
    return {
        "calexp": f"calexp-{band}.fits",
        "frame_metadata": f"frames-{band}.csv",
        "coadd_metadata": f"mosaic-{band}.csv",
    }


def _multi_band_text(bands, **top) -> str:
    """A tile file of ``bands`` (in the given order) with files in its folder."""
    values = {
        "tile_name": "five",
        "besancon_headers": [],
        "besancon_catalogs": [],
        "bands": {b: _band_entry(b) for b in bands},
        **top,
    }
    return yaml.safe_dump(values, sort_keys=False)


def _load_text(tmp_path, text: str):
    path = tmp_path / "tile.yaml"
    path.write_text(text)
    return load_tile(path)


def test_five_band_tile_in_hsc_order_seen_from_the_detection_band(tmp_path):
    tile = _load_text(tmp_path, _multi_band_text("yzirg"))
    assert tile.band_names == ("g", "r", "i", "z", "y") == tuple(tile.bands)
    assert tile.detection_band == tile.band == "i"
    for band, files in tile.bands.items():
        assert files == BandFiles(
            (tmp_path / f"calexp-{band}.fits").resolve(),
            (tmp_path / f"frames-{band}.csv").resolve(),
            (tmp_path / f"mosaic-{band}.csv").resolve(),
        )
    assert (tile.calexp, tile.frame_metadata, tile.coadd_metadata) == (
        tile.bands["i"].calexp,
        tile.bands["i"].frame_metadata,
        tile.bands["i"].coadd_metadata,
    )


def test_explicit_detection_band(tmp_path):
    tile = _load_text(tmp_path, _multi_band_text("gr", detection_band="r"))
    assert tile.band_names == ("g", "r")
    assert tile.detection_band == tile.band == "r"
    assert tile.calexp == (tmp_path / "calexp-r.fits").resolve()


def test_for_band_gives_that_bands_files_and_keeps_the_rest(tmp_path):
    tile = _load_text(tmp_path, _multi_band_text("griz", seed=9))
    g = tile.for_band("g")
    assert (g.band, g.calexp) == ("g", (tmp_path / "calexp-g.fits").resolve())
    assert g.frame_metadata == tile.bands["g"].frame_metadata
    assert g.coadd_metadata == tile.bands["g"].coadd_metadata
    assert (g.bands, g.detection_band, g.seed) == (tile.bands, "i", 9)
    assert g.for_band("i") == tile
    with pytest.raises(InputError) as err:
        tile.for_band("y")
    assert str(err.value) == "five: no band 'y' in this tile; its bands: g, r, i, z"


def test_single_band_file_gives_the_values_it_always_gave():
    """params/tile_template.yaml, read as before multi-band files existed."""
    tile = load_tile(PARAMS / "tile_template.yaml")
    data = PARAMS / "data"
    files = BandFiles(
        data / "calexp-HSC-I-9813-7,2.fits",
        data / "calexp-HSC-I-9813-7,2_metadata.csv",
        data / "calexp-HSC-I-9813-7,2_coadd_metadata.csv",
    )
    expected = dict(
        tile_name="9813-7,2",
        besancon_headers=[data / "besancon" / "besancon_0403.header"],
        besancon_catalogs=[data / "besancon" / "besancon_0403.fits"],
        band="i",
        gaia_table=data / "gaia_dr3_vizier.vot",
        truth_dir=None,
        is_demo=False,
        galaxy_model="Moser+24",
        posterior_index=0,
        seed=42,
        stages={},
        extra={},
        **files.fields(),
    )
    assert {k: getattr(tile, k) for k in expected} == expected
    assert (tile.bands, tile.detection_band) == ({"i": files}, "i")
    assert tile.band_names == ("i",) and tile.for_band("i") == tile


def test_template_example_of_several_bands_loads(tmp_path):
    """The commented multi-band example of params/tile_template.yaml, switched
    on in place of the single-band keys, is a valid tile file."""
    lines = (PARAMS / "tile_template.yaml").read_text().splitlines()
    start = lines.index("# A file gives one form or the other, never both. For example")
    example = []
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        example.append(line.removeprefix("#   "))
    raw = yaml.safe_load((PARAMS / "tile_template.yaml").read_text())
    for key in ("band", "calexp", "frame_metadata", "coadd_metadata"):
        raw.pop(key)
    raw |= yaml.safe_load("\n".join(example))
    tile = _load_text(tmp_path, yaml.safe_dump(raw))
    assert tile.band_names == ("g", "i") and tile.detection_band == "i"
    assert tile.bands["g"].calexp == (tmp_path / raw["bands"]["g"]["calexp"]).resolve()


_MULTI = "tile_name: x\nbesancon_headers: []\nbesancon_catalogs: []\n"
_ENTRY = "{calexp: c.fits, frame_metadata: f.csv, coadd_metadata: m.csv}"


@pytest.mark.parametrize(
    "text, fragment",
    [
        (_MULTI + f"calexp: c.fits\nbands:\n  i: {_ENTRY}\n",
         "gives both the single-band keys ['calexp'] and the multi-band keys "
         "['bands']: give either"),
        (_MULTI + f"band: z\nbands:\n  i: {_ENTRY}\ndetection_band: i\n",
         "band 'z' (the band the tile is seen from) is not among the bands ['i']"),
        (_MULTI + "calexp: c.fits\nframe_metadata: f.csv\ncoadd_metadata: m.csv\n"
         "detection_band: i\n",
         "gives both the single-band keys"),
        (_MULTI + "detection_band: i\n", "detection_band is given without bands"),
        (_MULTI + f"bands:\n  u: {_ENTRY}\n  i: {_ENTRY}\n",
         "bands has unknown bands ['u']; HSC bands: g, r, i, z, y"),
        (_MULTI + f"bands:\n  I: {_ENTRY}\n", "bands has unknown bands ['I']"),
        (_MULTI + "bands:\n  i: c.fits\n",
         "bands.i must be a mapping with keys calexp, frame_metadata, coadd_metadata"),
        (_MULTI + "bands:\n  i: {calexp: c.fits, frame_metadata: f.csv}\n",
         "bands.i lacks the keys ['coadd_metadata']"),
        (_MULTI + "bands:\n  i: {calexp: c.fits, frame_metadata: f.csv, "
         "coadd_metadata: null}\n",
         "bands.i lacks the keys ['coadd_metadata']"),
        (_MULTI + "bands:\n  i: {calexp: c.fits, frame_metadata: f.csv, "
         "coadd_metadata: m.csv, psf: p.fits}\n",
         "bands.i has unknown keys ['psf']; keys: calexp, frame_metadata, "
         "coadd_metadata"),
        (_MULTI + "bands:\n  i: {calexp: 3, frame_metadata: f.csv, "
         "coadd_metadata: m.csv}\n",
         "bands.i.calexp must be a path, got 3"),
        (_MULTI + f"bands:\n  g: {_ENTRY}\n  r: {_ENTRY}\n",
         "detection band 'i' is not among the bands ['g', 'r']: set detection_band"),
        (_MULTI + f"bands:\n  g: {_ENTRY}\ndetection_band: z\n",
         "detection band 'z' is not among the bands ['g']"),
        (_MULTI + "bands: {}\n",
         "bands is empty: give the files of at least one band"),
        (_MULTI + "bands: null\n", "bands must be a mapping of band letters"),
        (_MULTI + "bands: [g, i]\n", "bands must be a mapping of band letters"),
        (_MULTI, "missing required keys ['calexp', 'frame_metadata', "
         "'coadd_metadata']; a tile of several bands gives bands instead"),
    ],
    ids=["mixed-calexp", "seen-from-absent-band", "mixed-detection", "detection-alone",
         "unknown-band", "capital-band", "entry-not-mapping", "entry-lacks-key",
         "entry-null-path", "entry-unknown-key", "entry-not-path",
         "default-detection-absent", "detection-absent", "empty", "null", "list",
         "no-band-files"],
)  # fmt: skip
def test_bad_band_files_name_file_and_problem(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_tile(path)
    assert str(err.value).startswith(f"{path}: ") and fragment in str(err.value)


def test_multi_band_round_trip_writes_the_nested_form(tmp_path):
    values = _tile_values(tmp_path)
    for key in ("calexp", "frame_metadata", "coadd_metadata"):
        values.pop(key)
    bands = {
        b: BandFiles(tmp_path / f"c{b}.fits", tmp_path / f"f{b}.csv",
                     tmp_path / f"m{b}.csv")
        for b in "zgr"
    }  # fmt: skip
    path = write_tile(
        tmp_path / "sub" / "tile.yaml", values | {"bands": bands, "detection_band": "r"}
    )
    text = path.read_text()
    assert str(tmp_path) not in text and "calexp: ../cg.fits" in text
    raw = yaml.safe_load(text)
    assert list(raw["bands"]) == ["g", "r", "z"] and raw["detection_band"] == "r"
    assert not {"band", "calexp", "frame_metadata", "coadd_metadata"} & set(raw)
    tile = load_tile(path)
    assert tile.bands == bands and tile.band_names == ("g", "r", "z")
    assert (tile.band, tile.calexp) == ("r", tmp_path / "cr.fits")
    assert tile.seed == 7 and tile.besancon_headers == [tmp_path / "b.header"]


def test_tilespec_fields_round_trip_in_both_forms(tmp_path):
    single = load_tile(write_tile(tmp_path / "one.yaml", _tile_values(tmp_path)))
    assert "bands" not in yaml.safe_load((tmp_path / "one.yaml").read_text())
    multi = _load_text(tmp_path, _multi_band_text("gri", detection_band="g"))
    for tile in (single, multi, multi.for_band("r")):
        fields = dict(tile.__dict__)
        fields.pop("extra")
        again = load_tile(write_tile(tmp_path / "again.yaml", fields))
        assert again == tile  # the band it is seen from included


def test_tile_seen_from_another_band_names_it(tmp_path):
    """The file of the tile seen from band r (as the runner writes for r's own
    run) keeps every band and the detection band: r's files, i's calexp to
    detect on."""
    tile = _load_text(tmp_path, _multi_band_text("gri")).for_band("r")
    fields = {k: v for k, v in tile.__dict__.items() if k != "extra"}
    raw = yaml.safe_load(write_tile(tmp_path / "r.yaml", fields).read_text())
    assert raw["band"] == "r" and "detection_band" in raw and len(raw["bands"]) == 3
    again = load_tile(tmp_path / "r.yaml")
    assert again == tile and again.calexp == tile.bands["r"].calexp
    assert again.detection_calexp == tile.bands["i"].calexp != again.calexp


def test_write_tile_refuses_single_band_keys_that_disagree_with_bands(tmp_path):
    tile = _load_text(tmp_path, _multi_band_text("gi"))
    fields = dict(tile.__dict__) | {"calexp": tmp_path / "other.fits"}
    with pytest.raises(ValueError, match="disagree with bands"):
        write_tile(tmp_path / "w.yaml", fields)
    with pytest.raises(ValueError, match="disagree with bands"):
        write_tile(tmp_path / "w.yaml", dict(tile.__dict__) | {"band": "r"})


def _own_truth_text(bands, **top) -> str:
    raw = yaml.safe_load(_multi_band_text(bands, **top))
    for band, entry in raw["bands"].items():
        entry["truth_dir"] = f"truth/{band}"
    return yaml.safe_dump(raw, sort_keys=False)


def test_bands_with_truth_of_their_own(tmp_path):
    """A DEMO of several bands gives each band its truth folder: the tile seen
    from a band reads that band's truth, also after a round trip through the
    file (both forms: the runner writes one-band files of a band's view)."""
    tile = _load_text(tmp_path, _own_truth_text("gri"))
    assert tile.truth_dir == (tmp_path / "truth" / "i").resolve()
    assert tile.for_band("g").truth_dir == (tmp_path / "truth" / "g").resolve()
    assert tile.for_band("g").for_band("i") == tile
    fields = {k: v for k, v in tile.__dict__.items() if k != "extra"}
    raw = yaml.safe_load(write_tile(tmp_path / "w" / "t.yaml", fields).read_text())
    assert "truth_dir" not in raw and raw["bands"]["r"]["truth_dir"] == "../truth/r"
    assert load_tile(tmp_path / "w" / "t.yaml") == tile
    view = tile.for_band("r").__dict__
    single = {k: v for k, v in view.items()
              if k not in ("bands", "detection_band", "extra")}  # fmt: skip
    one = load_tile(write_tile(tmp_path / "r.yaml", single))
    assert one.truth_dir == (tmp_path / "truth" / "r").resolve() and one.band == "r"


@pytest.mark.parametrize(
    "mend, fragment",
    [(lambda raw: raw["bands"]["g"].pop("truth_dir"), "give it for all or none"),
     (lambda raw: raw.update(truth_dir="truth"), "give it once")],
    ids=["some-bands", "also-top-level"],
)  # fmt: skip
def test_truth_of_the_bands_given_once(tmp_path, mend, fragment):
    raw = yaml.safe_load(_own_truth_text("gi"))
    mend(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=fragment) as err:
        load_tile(path)
    assert str(err.value).startswith(f"{path}: ")


def test_tilespec_keeps_its_band_in_bands():
    """Constructed with one band's files (as tests and replace() do), the tile
    holds them in ``bands``; replacing a file replaces it there too."""
    tile = TileSpec("t", Path("/c.fits"), Path("/f.csv"), Path("/m.csv"), [], [],
                    band="r")  # fmt: skip
    assert tile.bands == {"r": BandFiles(Path("/c.fits"), Path("/f.csv"),
                                         Path("/m.csv"))}  # fmt: skip
    assert tile.detection_band == "r"
    other = dataclasses.replace(tile, calexp=Path("/d.fits"))
    assert other.bands["r"].calexp == Path("/d.fits") == other.for_band("r").calexp


def test_fingerprint_counts_every_band_file_by_content(tmp_path):
    from hscsim_utils.pipeline.fingerprint import DigestCache, _read_digest

    tile = _load_text(tmp_path, _multi_band_text("gi"))
    for files in tile.bands.values():
        for path in files.fields().values():
            path.write_text(path.name)
    before = _read_digest("tile:bands", tile, {}, tmp_path, DigestCache())
    assert str(tmp_path) not in before
    tile.bands["g"].frame_metadata.write_text("changed")
    after = _read_digest("tile:bands", tile, {}, tmp_path, DigestCache())
    assert after != before
    assert _read_digest("tile:calexp", tile, {}, tmp_path, DigestCache()) == (
        DigestCache().path(tile.calexp)
    )


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


@pytest.mark.parametrize(
    "reader",
    [hsc_io.read_calexp, hsc_io.calexp_geometry,
     functools.partial(hsc_io.read_mask_plane, name="NO_DATA")],
)  # fmt: skip
def test_calexp_errors_name_the_file(tmp_path, reader):
    """The pixels' reader, the headers' (the input check) and the mask plane's
    refuse the same files with the same line."""
    path = _write(tmp_path)
    with fits.open(path) as hdul:
        fits.HDUList(hdul[:3]).writeto(tmp_path / "short.fits")
        cube = fits.HDUList([h.copy() for h in hdul])
        cube[3] = fits.ImageHDU(np.ones((2, 64, 64), np.float32), name="VARIANCE")
        cube.writeto(tmp_path / "cube.fits")
        other = fits.HDUList([h.copy() for h in hdul])
        other[2] = fits.ImageHDU(hdul[2].data[:32], hdul[2].header, name="MASK")
        other.writeto(tmp_path / "other.fits")
        del hdul[1].header["CRVAL1"]
        hdul.writeto(tmp_path / "nowcs.fits")
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all" * 10)
    cases = {
        "short.fits": "has 3 HDUs",
        "cube.fits": "VARIANCE is not a 2-d image (NAXIS = 3)",
        "other.fits": "IMAGE, MASK, VARIANCE shapes differ",
        "nowcs.fits": "lacks WCS keywords ['CRVAL1']",
        "junk.fits": "not a readable FITS file",
        "absent.fits": "file not found",
    }
    for name, fragment in cases.items():
        with pytest.raises(InputError) as err:
            reader(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and fragment in str(err.value)
    with pytest.raises(InputError, match="expected band 'g'"):
        reader(path, band="g")


def test_calexp_geometry_is_the_calexps_without_its_pixels(tmp_path):
    path = _write(tmp_path, image=np.ones((64, 80), np.float32),
                  mask=np.zeros((64, 80), np.int32),
                  variance=np.ones((64, 80), np.float32))  # fmt: skip
    wcs, shape = hsc_io.calexp_geometry(path, band="i")
    cal = hsc_io.read_calexp(path, band="i")
    assert shape == cal.shape == (64, 80)
    assert wcs.to_header() == cal.wcs.to_header()
    mask = np.zeros((64, 80), np.int32)
    mask[3:9, 5:7] = 1 << 8  # NO_DATA
    mask[20:30, 40:50] |= 1 << 9  # BRIGHT_OBJECT
    path = _write(tmp_path, image=np.ones((64, 80), np.float32), mask=mask,
                  variance=np.ones((64, 80), np.float32))  # fmt: skip
    cal = hsc_io.read_calexp(path)
    for plane in ("NO_DATA", "BRIGHT_OBJECT"):
        assert np.array_equal(hsc_io.read_mask_plane(path, plane), cal.plane(plane))
    assert hsc_io.read_mask_plane(path, "NO_DATA").sum() == 12
    with pytest.raises(InputError, match="mask plane MP_GHOST not in the MASK"):
        hsc_io.read_mask_plane(path, "GHOST")
    # an image without a finite pixel is the pixels' reader's to refuse
    nan = _write(tmp_path / "nan", image=np.full((64, 64), np.nan, np.float32))
    assert hsc_io.calexp_geometry(nan)[1] == (64, 64)
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
