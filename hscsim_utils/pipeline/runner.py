"""Run a tile's numbered notebooks in order with papermill.

Each stage is one notebook ``notebooks/NN_name.ipynb``; it receives the tile file
and the run folder as papermill parameters. A stage is skipped when its recorded
key (content hashes of the tile's input files, its parameters, its notebook, the
package code and the previous stage's key) is unchanged. A failing stage stops
the chain, leaves its executed notebook for inspection and names the failing
cell.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hscsim_utils.atomic import TMP_PREFIX, sweep_temporaries, write_json
from hscsim_utils.errors import HscsimError, InputError
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.metrics import update_metrics
from hscsim_utils.pipeline.report import write_report
from hscsim_utils.runfolder import REPO_ROOT, RunFolder

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
STATE_FILE = ".hscsim_state.json"
#: The notebooks' kernel, installed into the environment by ``make setup``.
KERNEL_NAME = "hscsim"
KERNEL_DISPLAY = "Python 3 (hscsim)"
#: Smallest DEMO tile (pixels per side) for the PSF stage and the stages after it:
#: a 1000 x 1000 cut of the demo patch holds 8 usable Gaia stars where the PSF
#: model needs 10; 2000 x 2000 is the size the notebook tests run the chain on.
MIN_DEMO_SIZE = 2000
PSF_STAGE = "05"
FIRST_STAGE = "01"  # 00 builds the demo tile; it is not part of a tile's chain


class StageFailed(HscsimError):
    """A notebook raised; the message names the stage, cell and error."""


@dataclass(frozen=True)
class Stage:
    """One numbered notebook."""

    number: str
    notebook: Path

    @property
    def name(self) -> str:
        return self.notebook.stem


def discover_stages(notebook_dir: Path = NOTEBOOK_DIR) -> list[Stage]:
    """All numbered notebooks of the chain, in order."""
    stages = [
        Stage(p.name[:2], p)
        for p in sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))
        if p.name[:2] >= FIRST_STAGE
    ]
    if not stages:
        raise InputError(notebook_dir, "no numbered notebooks found")
    return stages


def select_stages(
    stages: list[Stage], spec: str | None = None, start: str | None = None
) -> list[Stage]:
    """Stages within ``spec`` ("01-09", "03", "01,05") and from ``start`` on."""
    chosen = stages
    if spec:
        wanted: set[str] = set()
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            hi = hi or lo
            if not (lo.isdigit() and hi.isdigit()):
                raise InputError("--stages", f"cannot read {spec!r}; use e.g. 01-09")
            wanted |= {f"{i:02d}" for i in range(int(lo), int(hi) + 1)}
        chosen = [s for s in chosen if s.number in wanted]
    if start:
        if not start.isdigit():
            raise InputError("--from", f"cannot read {start!r}; use e.g. 05")
        chosen = [s for s in chosen if int(s.number) >= int(start)]
    if not chosen:
        raise InputError("--stages", "selects no stage")
    return chosen


def _hash_file(h, path: Path) -> None:
    h.update(str(path).encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)


def inputs_digest(tile_file: Path) -> str:
    """Hash of the tile file, every input file it names and the package code."""
    tile = load_tile(tile_file)
    h = hashlib.sha256()
    _hash_file(h, tile_file)
    files = [tile.calexp, tile.frame_metadata, tile.coadd_metadata, tile.gaia_table]
    files += tile.besancon_headers + tile.besancon_catalogs
    for path in files:
        if path is not None and path.is_file():
            _hash_file(h, path)
    for path in sorted((REPO_ROOT / "hscsim_utils").glob("*.py")):
        _hash_file(h, path)
    for path in sorted((REPO_ROOT / "params").glob("*.py")):
        _hash_file(h, path)
    return h.hexdigest()


def stage_key(stage: Stage, params: dict, previous: str) -> str:
    """Key of a stage run: its notebook, parameters and everything before it."""
    h = hashlib.sha256(previous.encode())
    _hash_file(h, stage.notebook)
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


class PeakMemory:
    """Peak resident memory of this process's children, sampled in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _notebook_params(stage: Stage, tile_file: Path, run: RunFolder) -> dict:
    """Parameters every stage notebook receives."""
    return {"tile_file": str(tile_file), "run_dir": str(run.root)}


class StageProgress:
    """File-like sink of a kernel's output that shows its progress bars.

    papermill hands every stream output of the running notebook to it as it
    arrives; the last tqdm line (for example ``simulate: 1/3 GalSBI Moser+24 +
    UFig``) becomes the postfix of the chain's own progress bar, so that a long
    stage (06, 08, 09) shows where it is. Nothing else is printed.
    """

    _BAR = re.compile(
        r"(?P<desc>[^\r\n|]*?):?\s*\d+%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)"
        r"\s*\[(?P<info>[^\]]*)\]"
    )

    def __init__(self, bar, stage: str) -> None:
        self.bar, self.stage = bar, stage

    def write(self, text: str) -> int:
        last = None
        for match in self._BAR.finditer(text):
            last = match
        if last is not None:
            self.bar.set_postfix_str(f"{self.stage}: {self.describe(last)}")
        return len(text)

    def flush(self) -> None:
        pass

    @staticmethod
    def describe(match: re.Match) -> str:
        """``desc n/total postfix`` of one tqdm line."""
        postfix = ", ".join(match["info"].split(", ")[2:]).strip()
        desc = match["desc"].strip()
        return " ".join(
            p for p in (desc, f"{match['n']}/{match['total']}", postfix) if p
        )


def _run_notebook(
    stage: Stage, params: dict, run: RunFolder, progress: StageProgress | None = None
) -> Path:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = run.notebooks_dir / stage.notebook.name
    # papermill rewrites its output after every cell: write a temporary name and
    # rename it once the notebook has finished, successfully or not.
    partial = out.with_name(f"{TMP_PREFIX}{out.name}")
    try:
        papermill.execute_notebook(
            str(stage.notebook),
            str(partial),
            parameters=params,
            cwd=str(run.notebooks_dir),
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            log_output=False,
            # the kernel's own start-up log (e.g. "running over TCP without
            # encryption" on every stage); the notebook's output is unaffected
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
            stdout_file=progress,
            stderr_file=progress,
        )
    except PapermillExecutionError as err:
        os.replace(partial, out)
        raise StageFailed(
            f"stage {stage.name} failed in cell {err.exec_count}: "
            f"{err.ename}: {err.evalue}\nexecuted notebook kept at {out}"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    return out


def _load_state(run: RunFolder) -> dict:
    path = run.root / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def run_tile(
    tile_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    stages: str | None = None,
    start: str | None = None,
    force: bool = False,
    report: bool = True,
    notebook_dir: Path = NOTEBOOK_DIR,
    label: str | None = None,
) -> dict:
    """Run the chain for one tile; return the state of every stage.

    ``label`` (the tile's name in a batch) prefixes every console line, so that
    the lines of tiles run side by side can be told apart.
    """
    from tqdm.auto import tqdm

    prefix = f"[{label}] " if label else ""

    tile_file = Path(tile_file).resolve()
    run = RunFolder(Path(out_dir))
    all_stages = discover_stages(notebook_dir)
    chosen = {s.number for s in select_stages(all_stages, stages, start)}
    check_demo_size(tile_file, chosen)
    sweep_temporaries(run.root)  # leftovers of a killed earlier run
    state = _load_state(run)
    keys = stage_keys(all_stages, tile_file, run)
    bar = tqdm(all_stages, desc=f"{prefix}stages", unit="stage", file=sys.stdout)
    try:
        _run_stages(bar, tile_file, run, chosen, state, keys, force, prefix)
    finally:  # a failed run reports too: what ran and where it failed
        stale = stale_stages(state, keys)
        for name, why in stale.items():
            tqdm.write(f"{prefix}{name}: STALE, {why}")
        if report:
            write_report(run, stale, tile_file, state)
    return state


def check_demo_size(tile_file: Path, chosen: set[str]) -> None:
    """Refuse, before anything runs, a DEMO tile too small for the PSF stage."""
    from astropy.io import fits

    if all(number < PSF_STAGE for number in chosen):
        return
    spec = load_tile(tile_file)
    if not spec.is_demo:
        return
    try:
        header = fits.getheader(spec.calexp, 1)
    except (OSError, IndexError, ValueError):
        return  # stage 01 reports an unreadable calexp with its reason
    nx, ny = int(header.get("NAXIS1", 0)), int(header.get("NAXIS2", 0))
    if min(nx, ny) < MIN_DEMO_SIZE:
        raise InputError(
            tile_file,
            f"this DEMO tile is {nx} x {ny} px: stages {PSF_STAGE}-09 need at least "
            f"{MIN_DEMO_SIZE} x {MIN_DEMO_SIZE} px (enough Gaia stars for the PSF "
            f"model); build it with `hscsim demo-tile --size {MIN_DEMO_SIZE} "
            f"{MIN_DEMO_SIZE}` or run --stages 01-04",
        )


def stage_keys(
    stages: list[Stage], tile_file: Path, run: RunFolder
) -> dict[Stage, str]:
    """Each stage's key: its notebook and parameters chained on every upstream key,
    starting from the tile's inputs."""
    key = inputs_digest(tile_file)
    keys = {}
    for stage in stages:
        key = stage_key(stage, _notebook_params(stage, tile_file, run), key)
        keys[stage] = key
    return keys


def stale_stages(state: dict, keys: dict[Stage, str]) -> dict[str, str]:
    """Stages whose recorded result no longer matches their inputs, with why.

    A stage is stale when its key (see :func:`stage_keys`) differs from the key
    it ran with, for example after ``--stages 01-03`` with a changed seed: stages
    04-09 then show old results.
    """
    stale = {}
    for stage, key in keys.items():
        done = state.get(stage.name)
        if done and done.get("status") == "ok" and done.get("key") != key:
            stale[stage.name] = (
                "its inputs or an upstream stage changed since it ran; rerun with "
                f"--from {stage.number}"
            )
    return stale


def _run_stages(bar, tile_file, run, chosen, state, keys, force, prefix) -> None:
    from tqdm.auto import tqdm

    for stage in bar:
        params = _notebook_params(stage, tile_file, run)
        key = keys[stage]
        if stage.number not in chosen:
            continue
        bar.set_postfix_str(stage.name)
        done = state.get(stage.name, {})
        if not force and done.get("key") == key and done.get("status") == "ok":
            tqdm.write(f"{prefix}{stage.name}: unchanged, skipped")
            continue
        t0 = time.perf_counter()
        status = "failed"
        mem = PeakMemory()
        try:
            with mem:
                _run_notebook(stage, params, run, StageProgress(bar, stage.name))
            status = "ok"
        finally:
            wall = time.perf_counter() - t0
            state[stage.name] = {
                "key": key, "status": status, "wall_s": round(wall, 2),
                "peak_rss_mb": round(mem.peak / 2**20, 1),
            }  # fmt: skip
            write_json(run.root / STATE_FILE, state)
            update_metrics(
                run.metrics, "timing",
                {stage.name: {"wall_s": state[stage.name]["wall_s"],
                              "peak_rss_mb": state[stage.name]["peak_rss_mb"]}},
            )  # fmt: skip
        tqdm.write(f"{prefix}{stage.name}: {status} in {wall:.1f} s")
