"""The ``hscsim`` command line: one sub-command per job, heavy imports deferred."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from pathlib import Path

from hscsim_utils import __version__
from hscsim_utils.errors import HscsimError, InputError


class _Formatter(argparse.HelpFormatter):
    """Help that states each option's default (unless none, or already said)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or action.default in (None, False, argparse.SUPPRESS):
            return text
        if "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _cmd_data(args: argparse.Namespace) -> None:
    from hscsim_utils.compat.pycosmo import ensure_pycosmo_extension
    from hscsim_utils.data import provision

    root = Path(args.cache) if args.cache else provision.default_cache_root()
    provision.provision(cache_root=root, force=args.force)
    provision.provision_ufig_resources(root)
    ensure_pycosmo_extension(root, force=args.force)


def _cmd_demo_tile(args: argparse.Namespace) -> None:
    from hscsim_utils.demo.generate import build_tile
    from hscsim_utils.hsc.tile import load_tile
    from hscsim_utils.pipeline.runner import MIN_DEMO_SIZE

    path = build_tile(
        args.out, tuple(args.size), args.seed, args.generator, args.preset,
        bands=args.bands,
    )  # fmt: skip
    print(f"demo tile (simulated, not real HSC data) written to {path}")
    spec = load_tile(path)
    print(
        f"{spec.tile_name}: observation seed {args.seed}; the simulation of this "
        f"tile uses its own seed, {spec.seed} ('seed' in {path.name})"
    )
    if min(args.size) < MIN_DEMO_SIZE:
        print(
            f"note: stages 05-09 need at least {MIN_DEMO_SIZE} x {MIN_DEMO_SIZE} px; "
            "run this tile with --stages 01-04"
        )


def _check_inputs(tile: Path, bands: str | None = None) -> None:
    """Check every input of ``tile`` (of ``bands``): one line per problem, then
    fail."""
    import time

    from hscsim_utils.pipeline.check_tile import check_tile

    start = time.perf_counter()
    problems = check_tile(tile, bands)
    if problems:  # main() prints one line per problem
        raise HscsimError("\n".join(problems))
    print(f"{tile}: inputs checked in {time.perf_counter() - start:.1f} s")


def _cmd_archive(args: argparse.Namespace) -> None:
    from hscsim_utils.pipeline.archive import patch_request, write_request

    req = patch_request(args.tract, args.patch, args.bands, args.release)
    readme = write_request(req, args.out)
    for band in req.bands:
        print(f"-- band {band}: frames (save as {band}/frames.csv)")
        print(req.frames_sql(band))
        print(f"-- band {band}: mosaic (save as {band}/mosaic.csv)")
        print(req.mosaic_sql(band))
    for pixel, gal_l, gal_b in req.pixels:
        print(f"Besançon pixel {pixel}: l = {gal_l:.4f}, b = {gal_b:.4f}")
    print(f"what to do, in order: {readme}")


def _cmd_check_tile(args: argparse.Namespace) -> None:
    _check_inputs(args.tile)


def _cmd_run(args: argparse.Namespace) -> None:
    from hscsim_utils.pipeline import runner
    from hscsim_utils.threads import limited_threads

    if not args.no_check:
        _check_inputs(args.tile, args.bands)

    limit = limited_threads(args.threads) if args.threads else contextlib.nullcontext()
    with limit:
        state = runner.run_tile(
            args.tile, args.out, stages=args.stages, start=args.start,
            force=args.force, settings=args.set, bands=args.bands,
        )  # fmt: skip
    failed = [name for name, s in state.items() if s["status"] != "ok"]
    print(f"report: {Path(args.out).resolve() / 'report.html'}")
    if failed:
        raise runner.StageFailed(f"stages failed: {failed}")


def _cmd_lab(args: argparse.Namespace) -> None:
    from hscsim_utils.pipeline.lab import run_lab
    from hscsim_utils.runfolder import default_run_dir

    extra = [f"--ServerApp.port={args.port}"] if args.port else []
    extra += ["--no-browser"] if args.no_browser else []
    status = run_lab(args.run or default_run_dir(), args.tile, extra)
    if status not in (0, -2, 130):  # stopped with Ctrl-C is fine
        raise HscsimError(f"JupyterLab exited with status {status}")


def _cmd_batch(args: argparse.Namespace) -> None:
    from hscsim_utils.pipeline import batch, runner

    runner.check_settings(args.set)

    if args.collect:
        rows = batch.collect(args.tiles, args.out)
        failed = [r["tile"] for r in rows if r["status"] != "ok"]
        if failed:
            raise batch.HscsimError(f"{len(failed)} tile(s) not ok: {failed}")
        return
    if args.slurm_script:
        options = batch.SlurmOptions(
            cpus=args.threads or 2, mem=args.mem, time=args.time,
            partition=args.partition, account=args.account,
        )  # fmt: skip
        script = batch.slurm_script(args.tiles, args.out, options, tuple(args.set),
                                    args.bands)  # fmt: skip
        path = Path(args.out) / "hscsim_array.slurm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(script)
        print(f"SLURM job-array script written to {path}: sbatch {path}")
        return
    rows = batch.run_batch(
        args.tiles, args.out, executor=args.executor, workers=args.workers,
        scheduler=args.scheduler, threads=args.threads, settings=tuple(args.set),
        bands=args.bands,
    )  # fmt: skip
    failed = [r["tile"] for r in rows if r["status"] != "ok"]
    if failed:
        raise batch.HscsimError(f"{len(failed)} tile(s) failed: {failed}")


def _add_bands_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bands",
        default=None,
        help="run these of the tile's bands, e.g. gri (the detection band "
        "among them; default: all)",
    )


def _add_set_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.PARAM=VALUE",
        help="a stage parameter, e.g. psf.estimator=direct or simulate.seed=7 "
        "(repeatable; over the tile file's stages: section)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``hscsim``."""
    parser = argparse.ArgumentParser(
        prog="hscsim", description="Simulate an HSC deep coadd patch."
    )
    parser.add_argument("--version", action="version", version=f"hscsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, formatter_class=_Formatter)

    p = add("data", help="fill the data cache, build PyCosmo (offline)")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache root (default: cosmo_torrent's, ~/_cache/cosmo-torrent)",
    )
    p.add_argument("--force", action="store_true", help="rebuild every data set")
    p.set_defaults(func=_cmd_data)

    p = add("demo-tile", help="build the simulated demo tile with truth")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(4200, 4200),
        metavar=("NX", "NY"),
        help="patch size in pixels (stages 05-09 need at least 2000 x 2000)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=20240611,
        help="seed of the DEMO observation (its galaxies, stars and noise); the "
        "simulation of a tile has its own seed, 'seed' in tile.yaml (42)",
    )
    p.add_argument(
        "--generator",
        choices=("galsim", "ufig"),
        default="galsim",
        help="galsim: an independent forward model (realism means what it would "
        "on real data); ufig: the simulation's own renderer (plumbing closure)",
    )
    p.add_argument(
        "--preset",
        choices=("ud", "deep"),
        default="ud",
        help="depth of the galsim tile: UltraDeep or Deep layer",
    )
    p.add_argument(
        "--bands",
        default="i",
        help="HSC bands of the galsim tile, letters of grizy (e.g. grizy); "
        "detection band i when among them, else the first",
    )
    p.set_defaults(func=_cmd_demo_tile)

    p = add("run", help="run the numbered notebooks on one tile")
    p.add_argument("--tile", type=Path, required=True, help="tile YAML file")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--stages", default=None, help="e.g. 01-09 or 01,03 (default: all)")
    p.add_argument("--from", dest="start", default=None, help="first stage, e.g. 05")
    p.add_argument("--force", action="store_true", help="rerun unchanged stages")
    p.add_argument(
        "--threads", type=int, default=None, help="threads (default: all cores)"
    )
    p.add_argument(
        "--no-check", action="store_true", help="skip the up-front input check"
    )
    _add_bands_argument(p)
    _add_set_argument(p)
    p.set_defaults(func=_cmd_run)

    p = add("archive", help="what to download from the HSC archive for a patch")
    p.add_argument("tract", type=int, help="tract, e.g. 9813")
    p.add_argument("patch", help="patch x,y, e.g. 7,2")
    p.add_argument("--bands", default="i", help="comma-separated, of g,r,i,z,y")
    p.add_argument(
        "--release", choices=("pdr3_dud", "pdr3_wide"), default="pdr3_dud",
        help="data release (schema of the SQL tables)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=_cmd_archive)

    p = add("check-tile", help="check every input of a tile, in seconds")
    p.add_argument("tile", type=Path, help="tile YAML file")
    p.set_defaults(func=_cmd_check_tile)

    p = add("lab", help="JupyterLab on the notebooks, for one run and tile")
    p.add_argument(
        "--run", type=Path, default=None, help="run folder (default: runs/demo/run)"
    )
    p.add_argument(
        "--tile", type=Path, default=None, help="tile YAML (default: the demo tile)"
    )
    p.add_argument("--port", type=int, default=None, help="server port")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.set_defaults(func=_cmd_lab)

    p = add("batch", help="run many tiles (process pool or Dask)")
    p.add_argument("tiles", type=Path, help="batch YAML with a 'tiles:' list")
    p.add_argument("--out", type=Path, required=True, help="folder of the runs")
    p.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="local: a process pool on this machine; dask: a Dask cluster "
        "(a LocalCluster, or the one at --scheduler)",
    )
    _add_set_argument(p)
    _add_bands_argument(p)
    p.add_argument("--scheduler", default=None, help="address of a Dask scheduler")
    p.add_argument("--workers", type=int, default=2, help="tiles run at once")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per tile (default: the cores divided by --workers)",
    )
    p.add_argument(
        "--slurm-script",
        action="store_true",
        help="only write a SLURM job-array script into --out",
    )
    from hscsim_utils.pipeline.batch import SlurmOptions

    slurm = SlurmOptions()
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--time", default=slurm.time, help="SLURM time limit per tile")
    p.add_argument("--mem", default=slurm.mem, help="SLURM memory per tile")
    p.add_argument(
        "--collect",
        action="store_true",
        help="only gather summary.csv from the run folders under --out "
        "(after a SLURM array)",
    )
    p.set_defaults(func=_cmd_batch)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hscsim`` console script."""
    args = build_parser().parse_args(argv)
    try:
        _check_counts(args)
        _check_output_folder(args)
        args.func(args)
    except (HscsimError, OSError) as err:
        # OSError: a path the user gave that exists as a file, cannot be written...
        for line in str(err).splitlines() or [type(err).__name__]:
            print(f"hscsim {args.command}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hscsim {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _check_output_folder(args: argparse.Namespace) -> None:
    """``--out`` (and ``--cache``) must be a folder or creatable as one."""
    for name in ("out", "cache", "run"):
        path = getattr(args, name, None)
        if path is None:
            continue
        for folder in (path, *path.parents):
            if folder.exists():
                if folder == path and not folder.is_dir():
                    raise InputError(path, f"is a file, not a folder (--{name})")
                if not folder.is_dir():
                    raise InputError(
                        path, f"cannot be a folder: {folder} is a file (--{name})"
                    )
                break


def _check_counts(args: argparse.Namespace) -> None:
    """Counts the user gives must be positive."""
    for name in ("threads", "workers"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise InputError(f"--{name}", f"must be at least 1, got {value}")


if __name__ == "__main__":
    sys.exit(main())
