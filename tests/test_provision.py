"""Offline provisioning of the cosmo_torrent cache (``hscsim data``).

The build path runs on a small fake galsbi source distribution made here
(same member paths as the real one), fetched by the real ``pip download``
from a local folder; cosmo_torrent downloads go to a server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits

from hscsim_utils.data import provision as pv
from hscsim_utils.data.template_integrals import DEFAULT_BANDS, Grid
from hscsim_utils.errors import InputError, OutputError, ToolError
from hscsim_utils.pipeline.cli import main as cli_main

GRID = Grid(z_max=2.0, z_step=0.1, ebv_max=0.4, ebv_step=0.1)
BANDS = ("HSC_i2", "SuprimeCam_B")  # the table of the module's cache: 2 bands
#: Wavelength range (Angstrom) of each curve in galsbi 0.1.0's filter collection.
FILTER_RANGES = {
    "HSC_g": (3800, 5750),
    "HSC_r2": (5100, 7300),
    "HSC_i2": (6700, 8900),
    "HSC_z": (8100, 9700),
    "HSC_y": (9000, 11000),
    "SuprimeCam_B": (3600, 5480),
}
PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "galsbi"
version = "0.1.0"

[tool.setuptools]
py-modules = []
"""


def _h5_bytes(datasets: dict) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as fh:
        for name, value in datasets.items():
            fh[name] = value
    return buf.getvalue()


def _sfd_bytes(nside: int = 4) -> bytes:
    ebv = np.linspace(0.01, 0.3, 12 * nside**2, dtype=np.float32)
    cols = [
        fits.Column(name="TEMPERATURE", format="E", array=ebv),
        fits.Column(name="N_OBS", format="E", array=np.ones_like(ebv)),
    ]
    table = fits.BinTableHDU.from_columns(cols)
    table.header.update(PIXTYPE="HEALPIX", ORDERING="NESTED", NSIDE=nside)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    return buf.getvalue()


def _filters() -> dict:
    out = {}
    for name, (lo, hi) in FILTER_RANGES.items():
        lam = np.linspace(lo, hi, 40)
        out[f"{name}/lam"] = lam
        out[f"{name}/amp"] = np.sin(np.pi * (lam - lo) / (hi - lo)) ** 2
    return out


def _templates() -> dict:
    lam = np.geomspace(900.0, 1e5, 400)
    return {
        "wavelength": lam,
        "amplitudes": np.array([(lam / 5000) ** -s * 1e-6 for s in range(5)]),
    }


def _posterior(n: int = 20) -> dict:
    rng = np.random.default_rng(0)
    return {c: rng.normal(size=n) for c in (*pv.POSTERIOR_COLUMNS, "time_sim")}


MEMBERS = {
    "tests/data/template_BlantonRoweis07/template_spectra_BlantonRoweis07.h5": (
        _h5_bytes(_templates())
    ),
    "tests/data/lambda_sfd_ebv/lambda_sfd_ebv.fits": _sfd_bytes(),
    "tests/data/Moser+24_abc_posterior/abc_posterior.h5": _h5_bytes(_posterior()),
    "tests/data/HSC_tables/HSC_filters_collection_yfix.h5": _h5_bytes(_filters()),
    "tests/data/HSC_tables/HSC_template_integrals_yfix.h5": b"subsampled: never used",
    "pyproject.toml": PYPROJECT.encode(),
    "PKG-INFO": b"Metadata-Version: 2.1\nName: galsbi\nVersion: 0.1.0\n",
}


@pytest.fixture(scope="module")
def fake_sdist(tmp_path_factory) -> pv.Sdist:
    """A folder holding a small galsbi-0.1.0.tar.gz, as pip's --find-links."""
    folder = tmp_path_factory.mktemp("index")
    tarball = folder / "galsbi-0.1.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in MEMBERS.items():
            info = tarfile.TarInfo(f"galsbi-0.1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    return pv.Sdist("galsbi==0.1.0", digest, find_links=folder, backend="setuptools")


def _run(root, sdist, **kw):
    kw.setdefault("download", False)
    kw.setdefault("bands", BANDS)
    return pv.provision(root, grid=GRID, sdist=sdist, progress=False, **kw)


def _by_name(statuses):
    return {s.name: s for s in statuses}


@pytest.fixture(scope="module")
def built(tmp_path_factory, fake_sdist):
    """A cache built once from the fake sdist; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("built") / "cache"
    return root, _by_name(_run(root, fake_sdist))


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_build_from_sdist_fills_every_required_data_set(built):
    root, status = built
    umask = os.umask(0)
    os.umask(umask)
    for ds in pv.REQUIRED:
        assert status[ds.name].status == "built"
        folder = root / ds.name
        assert (folder / pv.MARKER).is_file()
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
        manifest = json.loads((folder / pv.MANIFEST).read_text())
        assert manifest["source"] == "sdist:galsbi==0.1.0"
        assert manifest["version"] == "0.1.0"
        for name in ds.files:
            data = (folder / name).read_bytes()
            assert manifest["files"][name]["size"] == len(data)
            assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    member = "tests/data/lambda_sfd_ebv/lambda_sfd_ebv.fits"
    assert (root / "lambda_sfd_ebv/lambda_sfd_ebv.fits").read_bytes() == MEMBERS[member]
    assert (root / pv.SDIST_DIR / "galsbi-0.1.0.tar.gz").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_hsc_tables_integrals_are_computed_not_copied(built):
    root, _ = built
    with h5py.File(root / "HSC_tables" / pv.INTEGRALS_FILE, "r") as fh:
        assert sorted(fh["integrals"]) == sorted(BANDS)
        assert fh["z"].shape == (GRID.shape()[0],)
        table = np.asarray(fh["integrals/HSC_i2/template_0"])
    assert table.shape == GRID.shape() and np.all(table[:, 0] > 0)
    details = json.loads((root / "HSC_tables" / pv.MANIFEST).read_text())["details"]
    assert details["bands"] == sorted(BANDS) and details["n_z"] == GRID.shape()[0]


def test_optional_data_sets_print_their_offline_alternative(built, capsys):
    root, status = built
    assert status["Fischbacher+24_abc_posterior"].status == "missing"
    assert status["psf_cnn"].status == "missing"
    assert pv.available_galaxy_models(root) == ["Moser+24"]
    assert pv.cnn_weights_path(root) is None


def test_second_run_verifies_without_rebuilding_or_importing_galsbi(
    built, tmp_path, fake_sdist
):
    root = _copy(built[0], tmp_path / "cache")
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    code = (
        "import sys; from hscsim_utils.data import provision as pv;"
        "from hscsim_utils.data.template_integrals import Grid;"
        f"s = pv.provision({str(root)!r}, bands={BANDS!r}, grid={GRID!r},"
        " download=False, sdist=pv.Sdist(find_links=None));"
        "assert [x.status for x in s[:4]] == ['verified'] * 4, s;"
        "assert 'galsbi' not in sys.modules and 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stdout and "rejected" not in out.stdout
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_file_is_detected_and_rebuilt(
    built, tmp_path, fake_sdist, capsys, damage
):
    root = _copy(built[0], tmp_path / "cache")
    path = root / "Moser+24_abc_posterior" / pv.POSTERIOR_FILE
    good = path.read_bytes()
    bad = (
        good[:-100]
        if damage == "truncate"
        else good[:-5] + bytes([good[-5] ^ 1]) + good[-4:]
    )
    path.write_bytes(bad)
    status = _by_name(_run(root, fake_sdist))
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if "rejected" in x]
    assert len(lines) == 1 and "Moser+24_abc_posterior" in lines[0]
    assert ("bytes" if damage == "truncate" else "sha256") in lines[0]
    assert status["Moser+24_abc_posterior"].status == "built"
    assert status["lambda_sfd_ebv"].status == "verified"
    assert path.read_bytes() == good


def test_marker_without_manifest_is_accepted_after_content_check(
    built, tmp_path, fake_sdist
):
    root = _copy(built[0], tmp_path / "cache")
    for ds in pv.REQUIRED:
        (root / ds.name / pv.MANIFEST).unlink()
    data = (root / "HSC_tables" / pv.INTEGRALS_FILE).read_bytes()
    status = _by_name(_run(root, fake_sdist))
    assert {s.status for n, s in status.items() if s.status != "missing"} == {
        "accepted"
    }
    manifest = json.loads((root / "HSC_tables" / pv.MANIFEST).read_text())
    assert manifest["source"] == "cache"
    assert (root / "HSC_tables" / pv.INTEGRALS_FILE).read_bytes() == data
    assert _by_name(_run(root, fake_sdist))["HSC_tables"].status == "verified"


def test_subsampled_or_broken_cache_without_manifest_is_rebuilt(
    built, tmp_path, fake_sdist, capsys
):
    root = _copy(built[0], tmp_path / "cache")
    for ds in pv.REQUIRED:
        (root / ds.name / pv.MANIFEST).unlink()
    with h5py.File(root / "HSC_tables" / pv.INTEGRALS_FILE, "r+") as fh:
        z = np.asarray(fh["z"])
        del fh["z"]
        fh["z"] = z[::10]  # like galsbi's z-subsampled test copy
    (root / "lambda_sfd_ebv" / "lambda_sfd_ebv.fits").write_bytes(b"SIMPLE  = no")
    status = _by_name(_run(root, fake_sdist))
    out = capsys.readouterr().out
    assert status["HSC_tables"].status == "built"
    assert status["lambda_sfd_ebv"].status == "built"
    assert status["template_BlantonRoweis07"].status == "accepted"
    assert "subsampled" in out
    with h5py.File(root / "HSC_tables" / pv.INTEGRALS_FILE, "r") as fh:
        assert fh["z"].shape == (GRID.shape()[0],)


def test_missing_band_in_verified_table_triggers_rebuild(built, tmp_path, fake_sdist):
    root = _copy(built[0], tmp_path / "cache")
    status = pv.provision(
        root,
        bands=("HSC_i2",),
        grid=GRID,
        sdist=fake_sdist,
        download=False,
        progress=False,
    )
    assert _by_name(status)["HSC_tables"].status == "verified"  # subset is fine
    details = {"bands": ["HSC_i2"], "n_z": GRID.shape()[0], "n_ebv": GRID.shape()[1]}
    settings = pv.Settings(bands=BANDS, grid=GRID)
    assert "SuprimeCam_B" in pv._hsc_satisfies(details, settings)


def test_two_band_manifest_does_not_satisfy_the_default_bands():
    # details of a table for an i-band simulation only (i and the B band)
    details = {"bands": ["HSC_i2", "SuprimeCam_B"], "n_z": 7463, "n_ebv": 401}
    assert pv.Settings().bands == DEFAULT_BANDS
    problem = pv._hsc_satisfies(details, pv.Settings())
    assert problem == "bands ['HSC_g', 'HSC_r2', 'HSC_y', 'HSC_z'] not in the table"
    six = {**details, "bands": list(DEFAULT_BANDS)}
    assert pv._hsc_satisfies(six, pv.Settings()) is None
    assert pv._hsc_satisfies({"n_z": 7463, "n_ebv": 401}, pv.Settings())  # no list
    full = {**details, "bands": sorted([*DEFAULT_BANDS, "GenericBessel_B"])}
    assert pv._hsc_satisfies(full, pv.Settings()) is None


@pytest.mark.parametrize("manifest", [True, False])
def test_two_band_cache_is_rebuilt_with_the_default_bands(
    built, tmp_path, fake_sdist, capsys, manifest
):
    root = _copy(built[0], tmp_path / "cache")
    if not manifest:
        (root / "HSC_tables" / pv.MANIFEST).unlink()
    capsys.readouterr()
    status = _by_name(_run(root, fake_sdist, bands=DEFAULT_BANDS))
    out = capsys.readouterr().out
    assert status["HSC_tables"].status == "built"
    assert status["template_BlantonRoweis07"].status == "verified"
    rejected = [x for x in out.splitlines() if "rejected" in x]
    assert len(rejected) == 1 and rejected[0].startswith("HSC_tables")
    assert all(b in rejected[0] for b in ("HSC_g", "HSC_r2", "HSC_z", "HSC_y"))
    with h5py.File(root / "HSC_tables" / pv.INTEGRALS_FILE, "r") as fh:
        assert sorted(fh["integrals"]) == sorted(DEFAULT_BANDS)
    details = json.loads((root / "HSC_tables" / pv.MANIFEST).read_text())["details"]
    assert details["bands"] == sorted(DEFAULT_BANDS)
    again = _by_name(_run(root, fake_sdist, bands=DEFAULT_BANDS))
    assert again["HSC_tables"].status == "verified"
    assert _by_name(_run(root, fake_sdist))["HSC_tables"].status == "verified"


def test_force_rebuilds_from_the_cached_sdist_without_pip(built, tmp_path, fake_sdist):
    root = _copy(built[0], tmp_path / "cache")
    empty = tmp_path / "empty-index"
    empty.mkdir()
    offline = pv.Sdist(fake_sdist.requirement, fake_sdist.sha256, empty, "setuptools")
    status = _by_name(_run(root, offline, force=True))
    assert all(status[ds.name].status == "built" for ds in pv.REQUIRED)
    (root / pv.SDIST_DIR / "galsbi-0.1.0.tar.gz").unlink()
    with pytest.raises(pv.ToolError, match="pip download galsbi==0.1.0 failed"):
        _run(root, offline, force=True)
    assert (root / "HSC_tables" / pv.MARKER).is_file()  # old data set kept


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def torrent_server(tmp_path):
    """A cosmo_torrent-like server on 127.0.0.1 serving ID.zip and ID.md5."""
    folder = tmp_path / "torrent"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _publish(folder: Path, identifier: str, files: dict[str, bytes]) -> None:
    archive = folder / f"{identifier}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    (folder / f"{identifier}.md5").write_text(
        hashlib.md5(archive.read_bytes()).hexdigest()
    )


def test_cosmo_torrent_download_is_used_when_reachable(
    tmp_path, fake_sdist, torrent_server, capsys
):
    folder, url = torrent_server
    posterior = _h5_bytes(_posterior(7))
    _publish(folder, "Fischbacher+24_abc_posterior", {"abc_posterior.h5": posterior})
    _publish(
        folder,
        "psf_cnn",
        {"pretrained.h5": _h5_bytes({"x": [1]}), "pretrained.index": b"idx"},
    )
    root = tmp_path / "cache"
    status = _by_name(_run(root, fake_sdist, download=True, torrent_url=url))
    out = capsys.readouterr().out
    assert status["Fischbacher+24_abc_posterior"].status == "downloaded"
    assert status["psf_cnn"].source == "cosmo_torrent"
    assert status["lambda_sfd_ebv"].status == "built"  # 404 there: sdist
    assert "lambda_sfd_ebv: cosmo_torrent download failed" in out
    assert pv.available_galaxy_models(root) == ["Fischbacher+24", "Moser+24"]
    assert pv.cnn_weights_path(root) == root / "psf_cnn" / "pretrained"
    manifest = json.loads((root / "psf_cnn" / pv.MANIFEST).read_text())
    assert manifest["source"] == "cosmo_torrent"
    assert "not available" not in out


def test_bad_download_falls_back_and_unreachable_server_is_quick(
    tmp_path, fake_sdist, torrent_server, capsys
):
    folder, url = torrent_server
    _publish(folder, "Moser+24_abc_posterior", {"abc_posterior.h5": b"not hdf5"})
    root = tmp_path / "cache"
    status = _by_name(_run(root, fake_sdist, download=True, torrent_url=url))
    assert status["Moser+24_abc_posterior"].status == "built"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    capsys.readouterr()
    status = _by_name(
        _run(
            tmp_path / "c2", fake_sdist, download=True, torrent_url="http://127.0.0.1:9"
        )
    )
    out = capsys.readouterr().out.splitlines()
    assert "Fischbacher+24 posterior not available: the Moser+24 model is used" in out
    assert "psf_cnn weights not available: the direct PSF estimator is used" in out
    assert sum("not available" in line for line in out) == 2
    assert status["HSC_tables"].status == "built"


def test_unwritable_cache_root_names_the_folder(tmp_path, fake_sdist, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    root = blocker / "cache"  # a folder below a regular file cannot be created
    with pytest.raises(OutputError, match="cannot create the cache folder") as err:
        _run(root, fake_sdist)
    assert err.value.path == str(root)
    with pytest.raises(InputError, match="not a folder"):
        _run(blocker, fake_sdist)
    assert cli_main(["data", "--cache", str(root)]) == 2
    assert str(root) in capsys.readouterr().err


def test_read_only_folder_is_reported(tmp_path, fake_sdist, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(root))

    monkeypatch.setattr(pv.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="not writable") as err:
        pv.ensure_writable(root)
    assert str(root) in str(err.value)


def test_truncated_sdist_is_a_tool_error(tmp_path):
    tarball = tmp_path / "galsbi-0.1.0.tar.gz"
    tarball.write_bytes(b"\x1f\x8b" + os.urandom(50))
    with pytest.raises(ToolError, match="cannot read the source distribution"):
        pv.extract_members(tarball, {tmp_path / "x": "tests/data/x"})
