"""Fill the cosmo_torrent cache so that galsbi and ufig find their data offline.

``cosmo_torrent.data_path(ID)`` returns ``<cache>/ID/`` without network access
when that folder holds the marker file ``.valid``. Each data set is taken, in
this order, from

1. the cache, when its manifest (``.hscsim_manifest.json``: source, version,
   size and sha256 of every file) verifies; a cached folder with ``.valid``
   but no manifest is accepted after a content check;
2. a ``cosmo_torrent`` download (fails quickly without network);
3. the galsbi 0.1.0 source distribution on PyPI, fetched with ``pip download``
   and kept under ``<cache>/_sdists/``; the full-resolution template integral
   table of ``HSC_tables`` is computed (``template_integrals``) for the bands
   of ``Settings.bands`` (default: HSC g, r, i, z, y and SuprimeCam_B).

The manifest of ``HSC_tables`` records the table's bands and grid shape
(``details``); a table lacking a requested band (such as one built for
HSC_i2 and SuprimeCam_B only) or on another grid is rebuilt, never used.

The ufig 1.1.0 sdist is fetched the same way for the real Besancon catalogue and
Gaia table in its ``tests/res`` (:func:`ufig_test_resource`). ``hscsim data`` also
builds PyCosmo's C extension (:mod:`hscsim_utils.compat.pycosmo`).

Every data set is built in a temporary folder beside its target and renamed
into place, so a crash never leaves a half data set marked valid. The fast
path (everything cached) reads and hashes files only: it imports neither
galsbi nor torch.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hscsim_utils import __version__
from hscsim_utils.atomic import atomic_dir, atomic_path, write_json
from hscsim_utils.compat.cosmo_torrent import request_timeout
from hscsim_utils.data.template_integrals import (
    DEFAULT_BANDS,
    FULL_GRID,
    Grid,
    build_integrals_file,
)
from hscsim_utils.errors import InputError, OutputError, ToolError

MARKER = ".valid"
MANIFEST = ".hscsim_manifest.json"
MANIFEST_FORMAT = 1
SDIST_DIR = "_sdists"
GALSBI_010_SHA256 = "d596654bcbcec945d92f9f60d7c053e19c1ccb194ceb632e068279701a33f27e"

TEMPLATES_FILE = "template_spectra_BlantonRoweis07.h5"
FILTERS_FILE = "HSC_filters_collection_yfix.h5"
INTEGRALS_FILE = "HSC_template_integrals_yfix.h5"
POSTERIOR_FILE = "abc_posterior.h5"
POSTERIOR_COLUMNS = ("lum_fct_alpha_blue", "lum_fct_alpha_red")


@dataclass(frozen=True)
class Sdist:
    """A PyPI source distribution and where ``pip download`` looks for it.

    ``find_links`` (a local folder holding the tarball) makes pip use it
    instead of the package index; ``sha256`` (when set) must match;
    ``backend`` is the module pip needs to prepare the sdist's metadata.
    """

    requirement: str = "galsbi==0.1.0"
    sha256: str | None = GALSBI_010_SHA256
    find_links: Path | None = None
    backend: str = "hatchling"  # module of its build backend

    @property
    def name(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def version(self) -> str:
        return self.requirement.split("==")[1]

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    @property
    def label(self) -> str:
        return f"sdist:{self.requirement}"


GALSBI_SDIST = Sdist()
#: ufig 1.1.0's source distribution ships a real Besancon catalogue and Gaia table
#: in ``tests/res`` (the demo tile's stars and the tests' star inputs).
UFIG_SDIST = Sdist(
    "ufig==1.1.0",
    "2ca9b201a0a8f25046daa697771603b4c388e29b3a70b2581bce1d405c258357",
    backend="setuptools_scm",
)
UFIG_RESOURCES = ("besancon_HSC.h5", "gaiadr3.cat")


@dataclass(frozen=True)
class Settings:
    """What ``provision`` needs besides the cache root."""

    bands: tuple[str, ...] = DEFAULT_BANDS
    grid: Grid = FULL_GRID
    sdist: Sdist = GALSBI_SDIST
    download: bool = True
    torrent_url: str | None = None
    timeout: tuple[float, float] = (10.0, 60.0)
    progress: bool = True


@dataclass(frozen=True)
class DataSet:
    """One cosmo_torrent data set: its files, sdist members and content check."""

    name: str
    files: tuple[str, ...]
    check: Callable[[Path, Settings], dict]
    members: Mapping[str, str] = field(default_factory=dict)
    derive: Callable[[Path, Path, Settings], dict] | None = None
    satisfies: Callable[[dict, Settings], str | None] | None = None
    unavailable: str = ""


@dataclass(frozen=True)
class DataSetStatus:
    """Outcome of provisioning one data set."""

    name: str
    status: str  # verified | accepted | downloaded | built | missing
    source: str
    path: Path


# ---------------------------------------------------------------- content checks
def _read_h5(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Read datasets ``names`` from ``path``; any problem is an ``InputError``."""
    try:
        with h5py.File(path, "r") as fh:
            return {name: np.asarray(fh[name]) for name in names}
    except KeyError as err:
        raise InputError(path, f"dataset missing ({err})") from err
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file ({err})") from err


def _h5_keys(path: Path, group: str = "/") -> list[str]:
    try:
        with h5py.File(path, "r") as fh:
            return list(fh[group].keys()) if group in fh else []
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file ({err})") from err


def _require(ok: bool, path: Path, problem: str) -> None:
    if not ok:
        raise InputError(path, problem)


def _check_templates(folder: Path, settings: Settings) -> dict:
    path = folder / TEMPLATES_FILE
    data = _read_h5(path, ["wavelength", "amplitudes"])
    lam, amp = data["wavelength"], data["amplitudes"]
    _require(lam.ndim == 1 and lam.size > 1, path, "wavelength is not a 1-d array")
    _require(
        amp.ndim == 2 and amp.shape[1] == lam.size and amp.shape[0] > 0,
        path,
        f"amplitudes shape {amp.shape} does not match {lam.size} wavelengths",
    )
    _require(bool(np.all(np.diff(lam) > 0)), path, "wavelength is not increasing")
    _require(bool(np.isfinite(amp).all()), path, "amplitudes are not finite")
    return {"n_templates": int(amp.shape[0]), "n_wavelength": int(lam.size)}


def _check_sfd(folder: Path, settings: Settings) -> dict:
    from astropy.io import fits

    path = folder / "lambda_sfd_ebv.fits"
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[1].header
            nside = int(header["NSIDE"])
            values = np.asarray(hdul[1].data["TEMPERATURE"])
            kind = (header.get("PIXTYPE"), header.get("ORDERING"))
    except (OSError, KeyError, IndexError, TypeError, ValueError) as err:
        raise InputError(path, f"not a HEALPix E(B-V) map ({err})") from err
    _require(kind == ("HEALPIX", "NESTED"), path, f"PIXTYPE/ORDERING is {kind}")
    _require(
        values.size == 12 * nside**2, path, f"{values.size} pixels for nside {nside}"
    )
    _require(bool(np.isfinite(values).all()), path, "E(B-V) values are not finite")
    return {"nside": nside}


def _check_posterior(folder: Path, settings: Settings) -> dict:
    path = folder / POSTERIOR_FILE
    columns = _read_h5(path, _h5_keys(path))
    missing = [c for c in POSTERIOR_COLUMNS if c not in columns]
    _require(not missing, path, f"posterior columns {missing} missing")
    lengths = {v.shape for v in columns.values()}
    _require(
        len(lengths) == 1 and len(next(iter(lengths))) == 1,
        path,
        f"columns are not 1-d of one length: {sorted(lengths)}",
    )
    n = next(iter(lengths))[0]
    _require(n > 0, path, "posterior has no samples")
    return {"n_samples": int(n)}


def _check_filters(path: Path, bands: Sequence[str]) -> None:
    available = _h5_keys(path)
    missing = [b for b in bands if b not in available]
    _require(not missing, path, f"filters {missing} missing")
    data = _read_h5(path, [f"{b}/{k}" for b in bands for k in ("lam", "amp")])
    for b in bands:
        lam, amp = data[f"{b}/lam"], data[f"{b}/amp"]
        _require(
            lam.ndim == 1 and lam.shape == amp.shape and lam.size > 1,
            path,
            f"filter {b}: lam/amp are not 1-d arrays of one length",
        )
        _require(
            bool(np.all(np.diff(lam) > 0)), path, f"filter {b}: lam not increasing"
        )


def _check_integrals(path: Path, bands: Sequence[str], grid: Grid) -> dict:
    axes = _read_h5(path, ["z", "E(B-V)"])
    n_z, n_e = grid.shape()
    z, ebv = axes["z"], axes["E(B-V)"]
    _require(
        z.shape == (n_z,) and ebv.shape == (n_e,),
        path,
        f"grid is {z.size} z x {ebv.size} E(B-V), expected {n_z} x {n_e} "
        "(a subsampled table?)",
    )
    _require(
        np.allclose(z, np.arange(n_z) * grid.z_step, rtol=0, atol=1e-9)
        and np.allclose(ebv, np.arange(n_e) * grid.ebv_step, rtol=0, atol=1e-9),
        path,
        "z or E(B-V) values differ from the expected grid",
    )
    groups = _h5_keys(path, "integrals")
    missing = [b for b in bands if b not in groups]
    _require(not missing, path, f"integrals of {missing} missing")
    n_t = len(_h5_keys(path, f"integrals/{bands[0]}"))
    _require(n_t > 0, path, f"integrals/{bands[0]} holds no templates")
    names = [f"integrals/{b}/template_{i}" for b in bands for i in range(n_t)]
    for name, table in _read_h5(path, names).items():
        _require(table.shape == (n_z, n_e), path, f"{name} has shape {table.shape}")
        _require(bool(np.isfinite(table).all()), path, f"{name} is not finite")
    available = [b for b in groups if b in _h5_keys(path.parent / FILTERS_FILE)]
    return {"bands": sorted(available), "n_z": n_z, "n_ebv": n_e, "n_templates": n_t}


def _check_hsc_tables(folder: Path, settings: Settings) -> dict:
    _check_filters(folder / FILTERS_FILE, settings.bands)
    return _check_integrals(folder / INTEGRALS_FILE, settings.bands, settings.grid)


def _hsc_satisfies(details: dict, settings: Settings) -> str | None:
    """Why a table with manifest ``details`` cannot serve ``settings``; None if it can.

    A table holding more bands than requested serves; one lacking a band does not.
    """
    bands = details.get("bands")
    if not isinstance(bands, list):
        return f"{MANIFEST} records no band list for the table"
    missing = sorted(set(settings.bands) - set(bands))
    if missing:
        return f"bands {missing} not in the table"
    shape = (details.get("n_z"), details.get("n_ebv"))
    if shape != settings.grid.shape():
        return f"table grid {shape} differs from {settings.grid.shape()}"
    return None


def _check_cnn(folder: Path, settings: Settings) -> dict:
    for name in ("pretrained.h5", "pretrained.index"):
        _require((folder / name).is_file(), folder / name, "file missing")
    _h5_keys(folder / "pretrained.h5")
    return {}


def _derive_integrals(folder: Path, root: Path, settings: Settings) -> dict:
    """Compute the full template integral table into ``folder``."""
    templates = root / TEMPLATES.name / TEMPLATES_FILE
    seconds = build_integrals_file(
        folder / FILTERS_FILE,
        templates,
        folder / INTEGRALS_FILE,
        bands=settings.bands,
        grid=settings.grid,
        progress=settings.progress,
    )
    print(
        f"{HSC_TABLES.name}: template integrals for {', '.join(settings.bands)} "
        f"computed in {seconds:.1f} s"
    )
    return {"integrals_seconds": round(seconds, 2)}


TEMPLATES = DataSet(
    "template_BlantonRoweis07",
    (TEMPLATES_FILE,),
    _check_templates,
    {TEMPLATES_FILE: f"tests/data/template_BlantonRoweis07/{TEMPLATES_FILE}"},
)
SFD = DataSet(
    "lambda_sfd_ebv",
    ("lambda_sfd_ebv.fits",),
    _check_sfd,
    {"lambda_sfd_ebv.fits": "tests/data/lambda_sfd_ebv/lambda_sfd_ebv.fits"},
)
MOSER24 = DataSet(
    "Moser+24_abc_posterior",
    (POSTERIOR_FILE,),
    _check_posterior,
    {POSTERIOR_FILE: f"tests/data/Moser+24_abc_posterior/{POSTERIOR_FILE}"},
)
HSC_TABLES = DataSet(
    "HSC_tables",
    (FILTERS_FILE, INTEGRALS_FILE),
    _check_hsc_tables,
    {FILTERS_FILE: f"tests/data/HSC_tables/{FILTERS_FILE}"},
    derive=_derive_integrals,
    satisfies=_hsc_satisfies,
)
FISCHBACHER24 = DataSet(
    "Fischbacher+24_abc_posterior",
    (POSTERIOR_FILE,),
    _check_posterior,
    unavailable="Fischbacher+24 posterior not available: the Moser+24 model is used",
)
PSF_CNN = DataSet(
    "psf_cnn",
    ("pretrained.h5", "pretrained.index"),
    _check_cnn,
    unavailable="psf_cnn weights not available: the direct PSF estimator is used",
)
REQUIRED = (TEMPLATES, SFD, MOSER24, HSC_TABLES)  # templates before HSC_tables
OPTIONAL = (FISCHBACHER24, PSF_CNN)


# ---------------------------------------------------------------- manifests
def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _data_files(folder: Path) -> list[str]:
    """Non-hidden regular files below ``folder``, as sorted relative paths."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _write_manifest(
    folder: Path, ds: DataSet, source: str, version: str, details: dict
) -> None:
    files = {
        name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
        for name in _data_files(folder)
    }
    write_json(
        folder / MANIFEST,
        {
            "format": MANIFEST_FORMAT,
            "dataset": ds.name,
            "source": source,
            "version": version,
            "written_by": f"hscsim {__version__}",
            "created": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
            "files": files,
            "details": details,
        },
    )


def _verify_manifest(
    folder: Path, ds: DataSet, settings: Settings
) -> tuple[dict, str | None]:
    """Return ``(manifest, problem)``; ``problem`` is None when every file verifies."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return {}, f"{MANIFEST} unreadable ({err})"
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) for e in files.values()
    ):
        return {}, f"{MANIFEST} has no valid file list"
    for name in ds.files:
        if name not in files:
            return manifest, f"{name} not in {MANIFEST}"
    if ds.satisfies is not None:  # before hashing: an outdated table costs no reads
        details = manifest.get("details")
        problem = ds.satisfies(details if isinstance(details, dict) else {}, settings)
        if problem:
            return manifest, problem
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return manifest, f"{name} missing"
        size = path.stat().st_size
        if size != entry.get("size"):
            return (
                manifest,
                f"{name} has {size} bytes, manifest says {entry.get('size')}",
            )
        if _sha256(path) != entry.get("sha256"):
            return manifest, f"{name} sha256 differs from the manifest (corrupted)"
    return manifest, None


@dataclass(frozen=True)
class _Verdict:
    kind: str  # verified | acceptable | absent | rejected
    source: str = ""
    reason: str = ""
    details: dict = field(default_factory=dict)


def _inspect(ds: DataSet, folder: Path, settings: Settings) -> _Verdict:
    """Judge a cached data set folder without changing it."""
    if not folder.exists():
        return _Verdict("absent")
    if not (folder / MARKER).is_file():
        return _Verdict("rejected", reason=f"no {MARKER} marker")
    if (folder / MANIFEST).exists():
        manifest, problem = _verify_manifest(folder, ds, settings)
        if problem:
            return _Verdict("rejected", reason=problem)
        return _Verdict("verified", source=manifest.get("source", "?"))
    try:
        details = ds.check(folder, settings)
    except InputError as err:
        return _Verdict("rejected", reason=f"content check failed: {err}")
    return _Verdict("acceptable", source="cache", details=details)


# ---------------------------------------------------------------- sources
def ensure_writable(root: Path) -> None:
    """Create ``root`` if needed; raise ``OutputError`` naming it if not writable
    (``InputError`` if it is a file)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(root, f"cannot create the cache folder ({err})") from err
    if not root.is_dir():
        raise InputError(root, "cache folder is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".hscsim-write-test.", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(root, f"cache folder is not writable ({err})") from err


def _short_reason(err: BaseException) -> str:
    text = str(err)
    if "NameResolution" in text or "Failed to resolve" in text:
        return "host name not resolved: no network"
    if "Connection refused" in text:
        return "connection refused"
    return f"{type(err).__name__}: {text[:150]}"


def _download(ds: DataSet, root: Path, settings: Settings) -> DataSetStatus:
    """Download ``ds`` with cosmo_torrent into a temporary folder, check, rename."""
    import cosmo_torrent.cosmo_torrent as ct

    url = settings.torrent_url or ct.COSMO_TORRENT_BASE_URL
    with atomic_dir(root / ds.name) as tmp, request_timeout(ct, settings.timeout):
        ct.download_data(ds.name, str(tmp), url)
        details = ds.check(tmp, settings)
        version = f"cosmo_torrent {url}"
        _write_manifest(tmp, ds, "cosmo_torrent", version, details)
    return DataSetStatus(ds.name, "downloaded", "cosmo_torrent", root / ds.name)


def _pip_download(sdist: Sdist, dest: Path) -> None:
    """Run ``pip download`` for the sdist; first without, then with build isolation.

    Preparing the metadata needs the sdist's build backend: importable in this
    environment (``--no-build-isolation``) or installed by pip into an isolated
    build environment from the package index.
    """
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest)]
    if sdist.find_links is not None:
        base += ["--no-index", "--find-links", str(sdist.find_links)]
    if importlib.util.find_spec(sdist.backend) is not None:
        first = [*base, "--no-build-isolation", "--no-binary", ":all:"]
        done = subprocess.run([*first, sdist.requirement], capture_output=True)
        if done.returncode == 0:
            return
    print(f"{sdist.requirement}: pip download with an isolated build environment")
    second = [*base, "--no-binary", sdist.name, sdist.requirement]
    result = subprocess.run(second)
    if result.returncode != 0:
        raise ToolError(
            f"pip download {sdist.requirement} failed (exit {result.returncode}); "
            f"command: {' '.join(second)}"
        )


def fetch_sdist(folder: Path, sdist: Sdist = GALSBI_SDIST) -> Path:
    """Return the sdist tarball in ``folder``, downloading it with pip if needed."""
    target = folder / sdist.filename
    if target.is_file():
        if sdist.sha256 is None or _sha256(target) == sdist.sha256:
            return target
        print(f"{target}: sha256 differs from the pinned one; downloading again")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download.", dir=folder) as tmp:
        _pip_download(sdist, Path(tmp))
        got = Path(tmp) / sdist.filename
        if not got.is_file():
            raise ToolError(
                f"pip download {sdist.requirement} wrote no {sdist.filename}"
            )
        digest = _sha256(got)
        if sdist.sha256 is not None and digest != sdist.sha256:
            raise ToolError(
                f"{sdist.requirement}: downloaded sha256 {digest} "
                f"!= pinned {sdist.sha256}"
            )
        with atomic_path(target) as out:
            os.replace(got, out)
    return target


def extract_members(tarball: Path, wanted: Mapping[Path, str]) -> None:
    """Copy archive members (paths below the sdist's top folder) to the given paths."""
    by_member = {member: dest for dest, member in wanted.items()}
    found = set()
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for info in tar:
                inner = info.name.split("/", 1)[-1]
                if inner in by_member and info.isfile():
                    src = tar.extractfile(info)
                    with src, open(by_member[inner], "wb") as out:
                        shutil.copyfileobj(src, out, length=1 << 22)
                    found.add(inner)
    except (OSError, tarfile.TarError, EOFError) as err:
        raise ToolError(
            f"{tarball}: cannot read the source distribution ({err})"
        ) from err
    missing = sorted(set(by_member) - found)
    if missing:
        raise ToolError(f"{tarball}: members missing from the archive: {missing}")


def _build(ds: DataSet, root: Path, settings: Settings) -> DataSetStatus:
    """Build ``ds`` from the source distribution in a temporary folder, rename."""
    tarball = fetch_sdist(root / SDIST_DIR, settings.sdist)
    with atomic_dir(root / ds.name) as tmp:
        extract_members(tarball, {tmp / name: m for name, m in ds.members.items()})
        details = ds.derive(tmp, root, settings) if ds.derive else {}
        details.update(ds.check(tmp, settings))
        (tmp / MARKER).touch()
        _write_manifest(tmp, ds, settings.sdist.label, settings.sdist.version, details)
    return DataSetStatus(ds.name, "built", settings.sdist.label, root / ds.name)


# ---------------------------------------------------------------- driver
def _from_cache(ds: DataSet, root: Path, settings: Settings) -> DataSetStatus | None:
    """Use a cached copy if it verifies (recording a manifest if it has none)."""
    folder = root / ds.name
    verdict = _inspect(ds, folder, settings)
    if verdict.kind == "verified":
        return DataSetStatus(ds.name, "verified", verdict.source, folder)
    if verdict.kind == "acceptable":
        ensure_writable(root)
        _write_manifest(
            folder, ds, "cache", "unknown (found in cache)", verdict.details
        )
        return DataSetStatus(ds.name, "accepted", "cache", folder)
    if verdict.kind == "rejected":
        action = "; rebuilding" if ds.members else ""
        print(f"{ds.name}: cached copy rejected: {verdict.reason}{action}")
    return None


def _try_download(ds: DataSet, root: Path, settings: Settings) -> DataSetStatus | None:
    if not settings.download:
        return None
    try:
        return _download(ds, root, settings)
    except Exception as err:  # any failure falls back to the next source
        if not ds.unavailable:
            print(
                f"{ds.name}: cosmo_torrent download failed ({_short_reason(err)}); "
                f"building from {settings.sdist.label}"
            )
        return None


def _provision_one(
    ds: DataSet, root: Path, settings: Settings, force: bool
) -> DataSetStatus:
    status = None if force else _from_cache(ds, root, settings)
    if status is None:
        if ds.members:  # required: the cache must take it
            ensure_writable(root)
        status = _try_download(ds, root, settings)
    if status is None and ds.members:
        status = _build(ds, root, settings)
    if status is None:
        status = DataSetStatus(ds.name, "missing", ds.unavailable, root / ds.name)
    return status


def default_cache_root() -> Path:
    """cosmo_torrent's cache folder (where galsbi and ufig look)."""
    from cosmo_torrent.cosmo_torrent import _cache_base_folder

    return Path(_cache_base_folder())


def provision(
    cache_root: str | os.PathLike | None = None,
    force: bool = False,
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    grid: Grid = FULL_GRID,
    sdist: Sdist = GALSBI_SDIST,
    download: bool = True,
    torrent_url: str | None = None,
    progress: bool = True,
) -> list[DataSetStatus]:
    """Make every data set galsbi/ufig need available in the cache; print one line each.

    ``force`` rebuilds every data set. ``bands`` are the filters of the
    template integral table, ``grid`` its (z, E(B-V)) grid. ``download=False``
    skips cosmo_torrent; ``torrent_url`` replaces its server.
    """
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    if root.exists() and not root.is_dir():
        raise InputError(root, "cache folder is not a folder")
    settings = Settings(
        bands=tuple(bands),
        grid=grid,
        sdist=sdist,
        download=download,
        torrent_url=torrent_url,
        progress=progress,
    )
    start = time.perf_counter()
    statuses = []
    for ds in (*REQUIRED, *OPTIONAL):
        status = _provision_one(ds, root, settings, force and ds in REQUIRED)
        statuses.append(status)
        if status.status == "missing":
            print(status.source)  # the one line naming the offline alternative
        else:
            print(f"{status.name:<30} {status.status:<10} {status.source}")
    print(f"cache {root} ready in {time.perf_counter() - start:.1f} s")
    return statuses


def ufig_test_resource(name: str, cache_root: str | os.PathLike | None = None) -> Path:
    """Path of ``tests/res/<name>`` of the ufig 1.1.0 sdist, extracted into the cache.

    ``hscsim data`` fetches the sdist and extracts :data:`UFIG_RESOURCES`; later
    calls find them under ``<cache>/_sdists/ufig-1.1.0-tests-res/``.
    """
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    folder = root / SDIST_DIR
    extracted = folder / f"{UFIG_SDIST.name}-{UFIG_SDIST.version}-tests-res" / name
    if not extracted.is_file():
        tarball = fetch_sdist(folder, UFIG_SDIST)
        extracted.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(extracted) as tmp:
            extract_members(tarball, {tmp: f"tests/res/{name}"})
    return extracted


def provision_ufig_resources(cache_root: str | os.PathLike | None = None) -> None:
    """Extract every file of :data:`UFIG_RESOURCES`; print one line."""
    paths = [ufig_test_resource(name, cache_root) for name in UFIG_RESOURCES]
    print(f"{'ufig test resources':<30} {'ready':<10} {paths[0].parent}")


def _valid(folder: Path, *files: str) -> bool:
    return (folder / MARKER).is_file() and all((folder / f).is_file() for f in files)


def available_galaxy_models(cache_root: str | os.PathLike | None = None) -> list[str]:
    """GalSBI models whose ABC posterior is in the cache, preferred first."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    models = {"Fischbacher+24": FISCHBACHER24, "Moser+24": MOSER24}
    return [m for m, ds in models.items() if _valid(root / ds.name, POSTERIOR_FILE)]


def cnn_weights_path(cache_root: str | os.PathLike | None = None) -> Path | None:
    """Checkpoint prefix of the PSF CNN (``.../psf_cnn/pretrained``) or None."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    folder = root / PSF_CNN.name
    return folder / "pretrained" if _valid(folder, *PSF_CNN.files) else None
