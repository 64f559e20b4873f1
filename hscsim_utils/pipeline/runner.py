"""Run a tile's numbered notebooks in order with papermill.

Each stage is one notebook ``notebooks/NN_name.ipynb`` with its module in
:mod:`hscsim_utils.stages` (see :mod:`hscsim_utils.stages.registry`); it receives
the tile file, the run folder and any parameters set in the tile file's
``stages:`` section or with ``--set`` as papermill parameters. A stage runs again
when its fingerprint changed (its code, its parameters or the content of what it
declares it reads, :mod:`hscsim_utils.pipeline.fingerprint`) or when one of its
declared outputs is missing; otherwise it is skipped. A failing stage stops the
chain, leaves its executed notebook for inspection and names the failing cell.
The stages of a run share one kernel, which each finds as a new one would be
(:mod:`hscsim_utils.pipeline.kernel`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hscsim_utils import calltimes
from hscsim_utils.atomic import TMP_PREFIX, sweep_temporaries, write_json
from hscsim_utils.errors import InputError, StageFailed
from hscsim_utils.hsc.tile import TileSpec, load_tile, tile_text, write_tile
from hscsim_utils.interpreter import KERNEL_NAME
from hscsim_utils.memory import PeakMemory
from hscsim_utils.metrics import read_metrics, update_metrics
from hscsim_utils.pipeline import fingerprint as fp
from hscsim_utils.pipeline.kernel import KERNEL_ARGUMENTS, StageKernel
from hscsim_utils.pipeline.parameters import parse_assignments, stage_parameters
from hscsim_utils.pipeline.report import import_in_background, write_report
from hscsim_utils.runfolder import PRODUCTS, REPO_ROOT, STATE_FILE, RunFolder
from hscsim_utils.stages.registry import RUNNER_PRODUCTS, STAGES, StageSpec
from hscsim_utils.threads import limited_threads, n_threads

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
DIGEST_FILE = ".hscsim_digests.json"
#: Per-stage logs of the floor calls (:mod:`hscsim_utils.calltimes`).
CALLS_DIR = ".hscsim_calls"
#: Smallest DEMO tile (pixels per side) for the PSF stage and the stages after it:
#: a 1000 x 1000 cut of the demo patch holds 8 usable Gaia stars where the PSF
#: model needs 10; 2000 x 2000 is the size the notebook tests run the chain on.
MIN_DEMO_SIZE = 2000
#: Memory a band run may take (its largest stage, 4200 x 4200 pixels: ~2.3 GB).
BAND_RUN_MEMORY_GB = 3.0
PSF_STAGE = "05"


@dataclass(frozen=True)
class Stage:
    """One stage of the chain: its declaration and its notebook."""

    spec: StageSpec
    notebook: Path

    @property
    def number(self) -> str:
        return self.spec.number

    @property
    def name(self) -> str:
        """``NN_name``, the notebook's stem (the stage's name in state and report)."""
        return self.notebook.stem


def discover_stages(
    notebook_dir: Path = NOTEBOOK_DIR, specs: Sequence[StageSpec] = STAGES
) -> list[Stage]:
    """Every declared stage with its notebook, in order."""
    stages = []
    for spec in specs:
        notebook = Path(notebook_dir) / spec.notebook
        if not notebook.is_file():
            raise InputError(notebook, f"notebook of stage {spec.name} not found")
        stages.append(Stage(spec, notebook))
    if not stages:
        raise InputError(notebook_dir, "no stages declared")
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
    stage: Stage, params: dict, run: RunFolder, progress: StageProgress | None = None,
    kernel: StageKernel | None = None,
) -> Path:  # fmt: skip
    """Execute the stage's notebook into the run's notebooks folder, in a kernel
    of its own or in ``kernel`` (prepared for it with the call log of
    ``os.environ``, :func:`_call_log`)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = run.notebooks_dir / stage.notebook.name
    # papermill writes the executed notebook once it has finished, successfully or
    # not (not after every cell: each save re-encodes the notebook and its figures
    # while the kernel waits, 2-3 s over the chain): under a temporary name, then
    # renamed.
    partial = out.with_name(f"{TMP_PREFIX}{out.name}")
    km = None if kernel is None else kernel.manager(os.environ.get(calltimes.ENV))
    try:
        papermill.execute_notebook(
            str(stage.notebook),
            str(partial),
            parameters=params,
            cwd=str(run.notebooks_dir),
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            extra_arguments=KERNEL_ARGUMENTS,
            stdout_file=progress,
            stderr_file=progress,
            km=km,
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
    finally:
        if kernel is not None:
            kernel.release()
    os.replace(partial, out)
    return out


@contextlib.contextmanager
def _call_log(path: Path) -> Iterator[None]:
    """Let the stage's kernel log its floor calls to ``path`` (a fresh file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    before = os.environ.get(calltimes.ENV)
    os.environ[calltimes.ENV] = str(path)  # the kernel inherits it at start
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(calltimes.ENV, None)
        else:
            os.environ[calltimes.ENV] = before


def _sum_calls(path: Path) -> dict[str, float]:
    """Seconds spent in each kind of floor call (``calltimes``) of one stage."""
    totals: dict[str, float] = {}
    for call in calltimes.read_calls(path):
        totals[call["call"]] = round(totals.get(call["call"], 0.0) + call["wall_s"], 3)
    return totals


def _load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass
class _Chain:
    """Everything one invocation of :func:`run_tile` needs to decide and run."""

    tile_file: Path
    tile: TileSpec
    run: RunFolder
    stages: list[Stage]
    products: Mapping[str, str]
    cli: Mapping[str, Mapping[str, str]]
    state: dict
    cache: fp.DigestCache
    prefix: str

    def params(self, stage: Stage) -> dict:
        """Papermill parameters of a stage: the runner's and the chosen ones."""
        specs = [s.spec for s in self.stages]
        chosen = stage_parameters(
            stage.spec, stage.notebook, specs, self.tile.stages, self.cli,
            str(self.tile_file),
        )  # fmt: skip
        return {"tile_file": str(self.tile_file), "run_dir": str(self.run.root),
                **chosen}  # fmt: skip

    def fingerprint(self, stage: Stage) -> dict[str, str]:
        chosen = {k: v for k, v in self.params(stage).items()
                  if k not in ("tile_file", "run_dir")}  # fmt: skip
        per_band = {w for s in self.stages if s.spec.per_band for w in s.spec.writes}
        return fp.fingerprint(
            stage.spec, stage.notebook, chosen, self.tile, self.products,
            self.run.root, self.cache, band_products=per_band,
        )  # fmt: skip

    def missing(self, stage: Stage) -> list[str]:
        return fp.missing_outputs(
            stage.spec, self.products, self.run.root, read_metrics(self.run.metrics)
        )

    def why_run(self, stage: Stage, new: dict[str, str]) -> str | None:
        """Why the stage must run, or None when its result is up to date."""
        done = self.state.get(stage.name, {})
        if done.get("status") != "ok":
            return "no result yet" if not done else f"last run {done.get('status')}"
        if done.get("key") != new["key"]:
            changed = fp.changed_parts(done.get("fingerprint", {}), new)
            return "changed: " + (", ".join(changed) or "fingerprint")
        missing = self.missing(stage)
        if missing:
            return "outputs missing: " + ", ".join(missing)
        return None


def run_tile(
    tile_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    stages: str | None = None,
    start: str | None = None,
    force: bool = False,
    report: bool = True,
    notebook_dir: Path = NOTEBOOK_DIR,
    label: str | None = None,
    settings: Sequence[str] = (),
    specs: Sequence[StageSpec] = STAGES,
    products: Mapping[str, str] = PRODUCTS,
    bands: str | None = None,
) -> dict:
    """Run the chain for one tile; return the state of every stage.

    ``settings`` are ``STAGE.PARAMETER=VALUE`` assignments (``--set``), applied
    over the tile file's ``stages:`` section. ``label`` (the tile's name in a
    batch) prefixes every console line, so that the lines of tiles run side by
    side can be told apart. ``bands`` (``--bands``, e.g. ``gri``) runs those of
    the tile's bands only (:func:`tile_of_bands`).
    """
    from tqdm.auto import tqdm

    run = RunFolder(Path(out_dir))
    tile_file = tile_of_bands(Path(tile_file).resolve(), bands, run.root)
    all_stages = discover_stages(notebook_dir, specs)
    chosen = {s.number for s in select_stages(all_stages, stages, start)}
    check_demo_size(tile_file, chosen)
    chain = _Chain(
        tile_file, load_tile(tile_file), run, all_stages, products,
        parse_assignments(settings), _load_json(run.root / STATE_FILE),
        fp.DigestCache(_load_json(run.root / DIGEST_FILE)),
        f"[{label}] " if label else "",
    )  # fmt: skip
    for stage in all_stages:  # every assignment checked before anything runs
        chain.params(stage)
    sweep_temporaries(run.root)  # leftovers of a killed earlier run
    if report:
        import_in_background()
    bar = tqdm(all_stages, desc=f"{chain.prefix}stages", unit="stage",
               file=sys.stdout)  # fmt: skip
    try:
        jobs = _band_jobs(chain, chosen, force, notebook_dir, specs)
        with (
            BandRuns(jobs, chain.prefix) as band_runs,
            StageKernel(run.notebooks_dir) as kernel,
        ):
            _run_stages(bar, chain, chosen, force, band_runs, kernel)
    finally:  # a failed run reports too: what ran and where it failed
        stale = stale_stages(chain)
        write_json(run.root / DIGEST_FILE, chain.cache.known)
        for name, why in stale.items():
            tqdm.write(f"{chain.prefix}{name}: STALE, {why}")
        if report:
            write_report(run, stale, tile_file, chain.state)
    return chain.state


def tile_of_bands(tile_file: Path, bands: str | None, folder: Path) -> Path:
    """The tile file to run: ``tile_file`` itself, or, for ``bands`` fewer than
    its own, ``folder/tile-<bands>.yaml``, the same tile with those bands
    (:meth:`TileSpec.with_bands`; paths as in ``tile_file``)."""
    if not bands:
        return tile_file
    tile = load_tile(tile_file)
    chosen = tile.with_bands(bands, str(tile_file))
    if chosen.band_names == tile.band_names:
        return tile_file
    name = f"tile-{''.join(chosen.band_names)}.yaml"
    return _write_if_changed(folder / name, _tile_values(chosen))


def band_tile_file(tile: TileSpec, band: str, folder: Path) -> Path:
    """``folder/tile.yaml``: the tile seen from ``band`` (every band listed, so
    that its source extraction can detect on the detection band; written only
    when its content changes)."""
    return _write_if_changed(folder / "tile.yaml", _tile_values(tile.for_band(band)))


def _tile_values(tile: TileSpec) -> dict:
    return {f.name: getattr(tile, f.name) for f in dataclasses.fields(tile)
            if f.name != "extra"}  # fmt: skip


def _write_if_changed(path: Path, values: dict) -> Path:
    """A tile file of ``values`` at ``path``, written only when its text changes
    (so that its time stamp says when the tile last changed)."""
    text = tile_text(path, values)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tile(path, values)
    return path


def _band_jobs(
    chain: _Chain, chosen: set[str], force: bool, notebook_dir: Path,
    specs: Sequence[StageSpec],
) -> list[dict]:  # fmt: skip
    """The :func:`run_tile` arguments of every band other than the detection
    band: its per-band stages as a run of their own in ``RUN/bands/<band>/``, on
    the tile seen from that band (the several-band stages read their products
    there). The chosen per-band stages run, or all of them (each skipped when
    up to date) when a chosen stage reads the band runs, so that it never reads
    stale ones. None (an empty list) for a tile of one band or seen from
    another band."""
    tile = chain.tile
    if tile.band != tile.detection_band:
        return []
    per_band = {s.number for s in specs if s.per_band}
    if not any(p in s.reads for s in specs if s.number in chosen
               for p in RUNNER_PRODUCTS):  # fmt: skip
        per_band &= chosen
    if not per_band:
        return []
    settings = [f"{stage}.{name}={value}" for stage, values in chain.cli.items()
                for name, value in values.items()]  # fmt: skip
    jobs = []
    for band in (b for b in tile.bands if b != tile.band):
        folder = chain.run.band_run(band).root
        jobs.append({
            "tile_file": band_tile_file(tile, band, folder), "out_dir": folder,
            "stages": ",".join(sorted(per_band)), "force": force, "report": False,
            "notebook_dir": notebook_dir,
            "label": f"{chain.prefix.strip(' []')} band {band}".strip(),
            "settings": settings, "specs": specs, "products": chain.products,
        })  # fmt: skip
    return jobs


def band_workers(n_runs: int) -> int:
    """Processes for ``n_runs`` band runs, beside this process, which runs the
    detection band's stages meanwhile: one per thread this run may use (all
    cores, or its share in a batch: :func:`hscsim_utils.threads.n_threads`; the
    kernels start, read and write much of the time, so this process and the
    workers together may outnumber the cores by one), and per
    :data:`BAND_RUN_MEMORY_GB` of the machine's memory beyond this process's
    own, at most one per band run."""
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    by_memory = int(memory_gb // BAND_RUN_MEMORY_GB) - 1
    return max(1, min(n_runs, n_threads(), by_memory))


def _run_band_job(job: dict, threads: int) -> None:
    with limited_threads(threads):
        run_tile(**job)


class BandRuns:
    """The band runs of a tile of several bands, run in worker processes while
    this process runs the detection band's stages (:func:`band_workers` of
    them, the cores shared among all: each kernel limited to its share of
    threads until :meth:`wait`). :meth:`wait` returns when every band run has
    finished, raising the first failure; leaving the block waits too. In a
    daemonic process (a Dask worker), which may not start processes, the band
    runs run one after the other when the block starts, as they did before."""

    def __init__(self, jobs: list[dict], prefix: str = "") -> None:
        self.jobs, self.prefix = jobs, prefix
        self._pool = self._futures = self._threads = None

    def __enter__(self) -> BandRuns:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        for job in self.jobs:
            print(f"{self.prefix}band run {job['label'].split()[-1]}: stages "
                  f"{job['stages']} in {job['out_dir']}", flush=True)  # fmt: skip
        if not self.jobs:
            return self
        if multiprocessing.current_process().daemon:
            for job in self.jobs:
                run_tile(**job)
            return self
        workers = band_workers(len(self.jobs))
        share = max(1, n_threads() // (workers + 1))
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        try:
            self._futures = [self._pool.submit(_run_band_job, job, share)
                             for job in self.jobs]  # fmt: skip
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._threads = limited_threads(share)
        self._threads.__enter__()
        return self

    def pids(self) -> list[int]:
        """Process ids of the workers (their trees are the band runs' kernels)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return list(processes) if self._futures is not None else []

    def wait(self) -> None:
        """Block until every band run has finished; raise the first failure."""
        from concurrent.futures import FIRST_EXCEPTION
        from concurrent.futures import wait as wait_for

        if self._futures is None:
            return
        futures, self._futures = self._futures, None
        try:
            done, _ = wait_for(futures, return_when=FIRST_EXCEPTION)
            for future in done:  # the first failure, if any, stops the others
                if future.exception() is not None:
                    for other in futures:
                        other.cancel()
                    raise future.exception()
        finally:
            self._threads.__exit__(None, None, None)
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __exit__(self, exc_type, *_) -> None:
        if self._futures is None:
            return
        if exc_type is not None:  # this process failed: stop what has not begun
            for future in self._futures:
                future.cancel()
        with contextlib.suppress(Exception):  # the first error is this block's
            self.wait()


def check_settings(
    settings: Sequence[str],
    notebook_dir: Path = NOTEBOOK_DIR,
    specs: Sequence[StageSpec] = STAGES,
) -> None:
    """Refuse an assignment (``--set``) to an unknown stage or parameter, or of a
    value of the wrong type, before anything runs."""
    stages = discover_stages(notebook_dir, specs)
    cli = parse_assignments(settings)
    for stage in stages:
        stage_parameters(stage.spec, stage.notebook, specs, None, cli)


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


def _whole(entry: str) -> str:
    """A read or write as the product that holds it: ``metrics:quality.realism``
    (a block) is in ``metrics:quality`` (the section its stage writes)."""
    return entry.split(".", 1)[0] if entry.startswith("metrics:") else entry


def stale_stages(chain: _Chain) -> dict[str, str]:
    """Stages whose recorded result no longer matches their inputs, with why.

    For example after ``--stages 01-03`` with a changed seed, or a product
    deleted by hand: the report then shows old or incomplete results. A stage
    that reads a product of a stale stage is stale too.
    """
    stale: dict[str, str] = {}
    stale_products: dict[str, str] = {}
    for stage in chain.stages:
        done = chain.state.get(stage.name)
        if not done or done.get("status") != "ok":
            continue
        why = chain.why_run(stage, chain.fingerprint(stage))
        reads = {_whole(r) for r in stage.spec.reads}
        upstream = sorted({stale_products[r] for r in reads
                           if r in stale_products})  # fmt: skip
        if not why and upstream:
            why = f"reads results of stale {', '.join(upstream)}"
        if why:
            stale[stage.name] = f"{why}; rerun with --from {stage.number}"
            stale_products.update(dict.fromkeys(stage.spec.writes, stage.name))
    return stale


def _run_stages(
    bar, chain: _Chain, chosen: set[str], force: bool, band_runs: BandRuns,
    kernel: StageKernel,
) -> None:  # fmt: skip
    """Run the chosen stages in order in ``kernel``; before the first that
    reads the band runs, wait for them (each stage's peak memory leaves them
    out)."""
    from tqdm.auto import tqdm

    run, prefix = chain.run, chain.prefix
    for stage in bar:
        if stage.number not in chosen:
            continue
        if any(p in stage.spec.reads for p in RUNNER_PRODUCTS):
            band_runs.wait()
        bar.set_postfix_str(stage.name)
        params = chain.params(stage)
        new = chain.fingerprint(stage)
        why = "--force" if force else chain.why_run(stage, new)
        if why is None:
            tqdm.write(f"{prefix}{stage.name}: unchanged, skipped")
            continue
        t0 = time.perf_counter()
        status = "failed"
        mem = PeakMemory(exclude=band_runs.pids)
        log = run.root / CALLS_DIR / f"{stage.name}.jsonl"
        try:
            with mem, _call_log(log):
                _run_notebook(stage, params, run, StageProgress(bar, stage.name),
                              kernel)  # fmt: skip
            status = "ok"
        finally:
            wall = time.perf_counter() - t0
            chain.state[stage.name] = {
                "key": new["key"], "fingerprint": new, "status": status,
                "reason": why, "wall_s": round(wall, 2),
                "peak_rss_mb": round(mem.peak / 2**20, 1),
                "calls_s": _sum_calls(log),
            }  # fmt: skip
            write_json(run.root / STATE_FILE, chain.state)
            update_metrics(
                run.metrics, "timing",
                {stage.name: {"wall_s": chain.state[stage.name]["wall_s"],
                              "peak_rss_mb": chain.state[stage.name]["peak_rss_mb"]}},
            )  # fmt: skip
        tqdm.write(f"{prefix}{stage.name}: {status} in {wall:.1f} s ({why})")
