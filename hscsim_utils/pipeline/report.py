"""The run's ``report.html``: a summary page, then every executed stage.

The summary says what was simulated (DEMO or REAL tile, band, seeds, posterior
sample), with which package versions and when; it tables every number of
``metrics.json`` by section and simulation, the stages' wall time and peak memory
(and which stages are stale or failed), shows the key figures and links to each
stage.

Each stage follows with its outputs only (the code stays in the executed notebooks
under ``RUN/notebooks/``). What the libraries print for a terminal does not reach
the report: progress bars, PyCosmo's configuration dumps, per-file loading lines,
timing tables. Warnings (``...Warning:`` lines and the loggers' ``WARNING``/``WAR``
lines) are taken out of the stages and listed once, with the stages that raised
them, at the end.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from hscsim_utils.metrics import (
    BLOCK_KEYS,
    STAGE_SECTIONS,
    closure_verdict,
    read_metrics,
)
from hscsim_utils.runfolder import METRICS_FILE, RunFolder

__all__ = ["clean_stream", "import_in_background", "metric_rows", "write_report"]

#: Figures shown on the summary page, when the run made them.
KEY_FIGURES = (
    ("07_images.png", "data and simulation side by side"),
    ("09_background_histograms.png", "background pixels"),
    ("07_triangle.png", "detected objects: magnitude, size, ellipticity"),
    ("05_psf_fwhm_e1_e2.png", "PSF model across the patch"),
    ("07_colours.png", "colours of simulation and data (several bands)"),
    ("06_bands_psf_fwhm.png", "PSF model FWHM of every band (several bands)"),
)
VERSIONS = ("galsbi", "ufig", "numpy", "scipy", "astropy", "photutils")

_PROGRESS = re.compile(r"\d+%\|.*\|.*\]|\|\s*\d+/\d+ \[")
_WARNING = re.compile(r"\b\w*Warning\b:|\bWARNING\b|\bWAR\b")
_IGNORED_WARNINGS = re.compile(r"TqdmWarning|DeprecationWarning")
_CHATTER = re.compile(
    r"^\d\d-\d\d-\d\d \d\d:\d\d:\d\d \w+ INF"  # ufig/galsbi loggers at INFO
    r"|^Parameters updated$"
    r"|^== Ivy run took"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOGGER_STAMP = re.compile(r"^\d\d-\d\d-\d\d \d\d:\d\d:\d\d (\w+) WAR\s+")
_SITE_PACKAGES = re.compile(r"^\S*site-packages/")
#: PyCosmo prints its whole configuration ('[main]' ... ) on every build.
_CONFIG_DUMP = re.compile(r"^\[main\]\n", re.M)


def _lines(text: str) -> list[str]:
    """Lines as a terminal shows them: after the last carriage return, no colour."""
    return [_ANSI.sub("", raw.rsplit("\r", 1)[-1]).rstrip() for raw in text.split("\n")]


def _normalise_warning(line: str) -> str:
    line = _LOGGER_STAMP.sub(r"\1: ", line.strip())
    return _SITE_PACKAGES.sub("", line)


def clean_stream(text: str, name: str = "stdout") -> tuple[str, list[str]]:
    """Text of a stream output for the report, and the warnings taken out of it.

    Standard error never reaches the report body: its warnings (with their
    continuation lines, without the echoed source line) are returned, the rest
    is dropped. Standard output loses progress bars and library chatter.
    """
    if _CONFIG_DUMP.match(text) or text.startswith("== Ivy run took"):
        return "", []
    kept, warnings = [], []
    current = None  # index of the warning that continuation lines extend
    for line in _lines(text):
        if not line.strip() or _PROGRESS.search(line) or _CHATTER.search(line):
            continue
        if _WARNING.search(line):
            current = None
            if not _IGNORED_WARNINGS.search(line):
                warnings.append(_normalise_warning(line))
                current = len(warnings) - 1
        elif name == "stderr":
            if current is not None and not line[0].isspace():
                warnings[current] += " " + line.strip()
        else:
            kept.append(line)
    return ("\n".join(kept) + "\n") if kept else "", warnings


def _clean_cell(cell, warnings: dict[str, list[str]], stage: str) -> None:
    outputs = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text, found = clean_stream("".join(out["text"]), out.get("name", ""))
            for line in found:
                warnings.setdefault(line, [])
                if stage not in warnings[line]:
                    warnings[line].append(stage)
            if not text:
                continue
            out["text"] = text
        elif "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
            continue  # a progress widget
        outputs.append(out)
    cell["outputs"] = outputs


def _sextractor_version() -> str:
    import subprocess

    from hscsim_utils.errors import ToolError
    from hscsim_utils.stages.source_extraction import find_sextractor

    try:
        done = subprocess.run(
            [find_sextractor(), "--version"], capture_output=True, text=True
        )
    except (ToolError, OSError):
        return "not installed"
    match = re.search(r"version (\S+)", done.stdout)
    return match.group(1) if match else "unknown"


def _versions() -> dict[str, str]:
    from hscsim_utils import __version__

    found = {"hscsim": __version__, "python": sys.version.split()[0]}
    for name in VERSIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found | {"SExtractor": _sextractor_version()}


def _table(rows: list[tuple], head: tuple[str, ...], links: bool = False) -> str:
    """HTML table; ``links``: the first column is HTML already (anchors)."""

    def cell(i: int, value) -> str:
        text = str(value) if links and i == 0 else html.escape(str(value))
        return f"<td>{text}</td>"

    cells = "".join(
        "<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)[:120]
    return str(value)


def _where(block: dict, where: str) -> str:
    """What a block of numbers describes: its simulation (against which data)."""
    if "simulation" not in block:
        return where
    data = block.get("data")
    return f"{block['simulation']} vs {data} data" if data else block["simulation"]


def _expanded(value, top: bool) -> bool:
    """Whether a dict gets a row per entry: a block naming its simulation or its
    band, blocks of several simulations or bands, or plain numbers at the top of
    a section (such as ``closure``)."""
    if not isinstance(value, dict) or not value:
        return False
    if "simulation" in value or "band" in value:  # a simulation's or a band's
        return True
    entries = value.values()
    if all(isinstance(v, dict) and ("simulation" in v or "band" in v)
           for v in entries):  # fmt: skip
        return True  # blocks of simulations, or of bands
    return top and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool))
        for v in entries
    )


def _block_rows(section: str, name: str, block: dict, where: str) -> list[tuple]:
    """Rows (section, simulation, metric, value) of one block of a section: its
    numbers, the dicts of :func:`_expanded` row by row, any other dict or list
    as JSON."""
    where = _where(block, where)
    rows = []
    judged = block.get("statistics")
    judged = judged if isinstance(judged, dict) else {}
    for key, value in block.items():
        if key in BLOCK_KEYS or key in judged:  # shown with its floor below
            continue
        metric = f"{name}.{key}" if name else key
        if name == "closure" and (verdict := closure_verdict(key, value)):
            rows.append((section, where, metric, f"{_fmt(value)} ({verdict})"))
        elif key == "statistics" and isinstance(value, dict):
            rows += [(section, where, f"{metric}.{k}", _statistic_text(v))
                     for k, v in value.items() if isinstance(v, dict)]  # fmt: skip
        elif key == "truth" and not name and isinstance(value, dict):
            rows += _truth_rows(section, value)
        elif name == "redshifts" and key in ("limits", "z_edges"):
            if key == "limits" and isinstance(value, dict):
                rows += [(section, where, f"{metric}.{k}", _redshift_text(v))
                         for k, v in value.items()]  # fmt: skip
        elif _expanded(value, not name):
            rows += _block_rows(section, metric, value, where)
        else:
            rows.append((section, where, metric, _fmt(value)))
    return rows


def _statistic_text(a: dict) -> str:
    """A realism statistic in one cell: value, noise floor, significance."""
    verdict = {True: "significant", False: "within noise", None: "no verdict"}
    floor = _fmt(a.get("floor"))
    if a.get("kind") == "ratio":
        floor = f"1 +- {floor}"
    dof = f", dof {a['dof']}" if a.get("dof") else ""
    return (f"{_fmt(a.get('value'))} (floor {floor}{dof}: "
            f"{verdict[a.get('significant')]})")  # fmt: skip


def _redshift_text(row: dict) -> str:
    """n(z) below one magnitude limit in one cell (the counts per 0.1 in z are
    in metrics.json and the figure)."""

    def pm(key: str) -> str:
        value, err = row.get(key), row.get(f"{key}_err")
        return "-" if value is None else f"{value:.3f} +- {err:.3f}"

    counts = f"{row.get('n_galaxies')} galaxies of {row.get('n_detected')} detections"
    return f"{counts}, median z {pm('z_median')}, mean z {pm('z_mean')}"


def _truth_rows(section: str, truth: dict) -> list[tuple]:
    """Completeness, purity and MAG_AUTO - mag (all detections) per magnitude
    range, of the simulation and the data, and their photometric comparison."""
    rows = []
    for side in ("simulation", "data"):
        summary = truth.get(side, {}).get("summary", {}).get("all", {})
        for mags, r in summary.items():
            text = ", ".join(
                f"{label} {format(r[k], spec) if r.get(k) is not None else '-'}"
                for label, k, spec in (("completeness", "completeness", ".3f"),
                                       ("purity", "purity", ".3f"),
                                       ("MAG_AUTO - mag", "mag_offset_median", "+.3f"))
            )  # fmt: skip
            rows.append((section, "-", f"truth.{side}.{mags}", text))
    for name in ("mag_offset_chi2", "mag_offset_shift"):
        if isinstance(truth.get(name), dict):
            rows.append((section, "-", f"truth.{name}", _statistic_text(truth[name])))
    return rows


def metric_rows(metrics: dict) -> list[tuple]:
    """The summary's metrics table: every stage section of ``metrics.json``, each
    row saying its section and the simulation it describes ("-": none)."""
    rows = []
    for section in STAGE_SECTIONS:
        rows += _block_rows(section, "", metrics.get(section, {}), "-")
    return rows


def _tile_rows(tile_file: Path | None) -> tuple[str, list[tuple]]:
    from hscsim_utils.errors import InputError
    from hscsim_utils.hsc.tile import load_tile

    if tile_file is None:
        return "tile unknown", []
    try:
        spec = load_tile(tile_file)
    except InputError as err:
        return "tile file unreadable", [("tile file", str(err))]
    rows = [
        ("data", "DEMO tile (simulated, not real HSC data)" if spec.is_demo
         else "REAL HSC data"),
        ("tile", spec.tile_name), ("tile file", str(tile_file)), ("band", spec.band),
        ("galaxy model", spec.galaxy_model),
        ("posterior sample", spec.posterior_index),
        ("simulation seed", spec.seed),
    ]  # fmt: skip
    return spec.label, rows


def _simulation_rows(run: RunFolder) -> list[tuple]:
    """How stage 06 turned magnitudes into photons (ufig's ``exp_time_type``)."""
    from hscsim_utils.errors import InputError
    from hscsim_utils.stages.simulate import load_simulation

    try:
        parameters = load_simulation(run.sim_baseline).parameters
    except (InputError, OSError, ValueError, KeyError, TypeError):
        return []  # no simulation yet, or a manifest it cannot read
    counts = parameters.get("exp_time_type")
    return [("magnitudes to photons (06)", counts)] if counts else []


def _band_run_rows(run: RunFolder) -> list[tuple]:
    """Band, stage, status, wall time and peak memory of every band run (the
    per-band stages of a tile's other bands, ``RUN/bands/<band>/``)."""
    return [
        (band, name, *(done.get(k, "-") for k in ("status", "wall_s", "peak_rss_mb")))
        for band, state in run.band_run_states().items()
        for name, done in sorted(state.items())
    ]


def _figures(run: RunFolder) -> str:
    parts = []
    for name, caption in KEY_FIGURES:
        path = run.root / "notebooks" / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{name}" '
                f'style="max-width:100%"><figcaption>{html.escape(caption)} '
                f"({name})</figcaption></figure>"
            )
    return "".join(parts)


def _summary_html(
    run: RunFolder,
    stages: list[str],
    state: dict,
    stale: dict[str, str],
    tile_file: Path | None,
) -> str:
    label, tile_rows = _tile_rows(tile_file)
    tile_rows += _simulation_rows(run)
    data = "DEMO (simulated)" if label.startswith("DEMO") else "REAL"
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    rows = metric_rows(read_metrics(run.root / METRICS_FILE))
    stage_rows = []
    for name in stages:
        done = state.get(name, {})
        status = done.get("status", "not run")
        if name in stale:
            status = "STALE"
        stage_rows.append(
            (f'<a href="#stage-{name}">{name}</a>', status, done.get("wall_s", "-"),
             done.get("peak_rss_mb", "-"))
        )  # fmt: skip
    stage_table = _table(stage_rows, ("stage", "status", "wall s", "peak MB"), True)
    band_rows = _band_run_rows(run)
    if band_rows:
        stage_table += "<h3>Band runs (the other bands' per-band stages)</h3>" + _table(
            band_rows, ("band", "stage", "status", "wall s", "peak MB")
        )
    versions = _table(sorted(_versions().items()), ("package", "version"))
    return (
        f"<h1>hscsim run report: {html.escape(label)}</h1>"
        f"<p>Run folder {html.escape(str(run.root))}, report written {now}.</p>"
        f"<h2>What was simulated</h2>{_table(tile_rows, ('', ''))}"
        f"<h2>Metrics</h2>"
        f"<p>Every number of <code>metrics.json</code> in the section of the "
        f"stage that wrote it (quality: stage 07, psf_finetune: 08, "
        f"background_finetune: 09), with the simulation it describes: realism "
        f"compares that simulation with the {data} data; psf_finetune compares "
        f"the PSF measured on it with its input; closure compares the pipeline's "
        f"estimates with the DEMO tile's truth.</p>"
        f"{_table(rows, ('section', 'simulation', 'metric', 'value'))}"
        f"<h2>Stages</h2>{stage_table}"
        f"<h2>Key figures</h2>{_figures(run) or '<p>none made yet</p>'}"
        f"<h2>Versions</h2>{versions}"
    )


def import_in_background() -> None:
    """Import the HTML exporter in a thread of its own, while the stages run: its
    import (about 1 s) would otherwise hold up the end of the chain."""
    import importlib
    import threading

    threading.Thread(target=importlib.import_module, args=("nbconvert",),
                     name="report-imports", daemon=True).start()  # fmt: skip


def write_report(
    run: RunFolder,
    stale: dict[str, str] | None = None,
    tile_file: Path | None = None,
    state: dict | None = None,
) -> Path:
    """Write ``RUN/report.html``: summary page, cleaned stages, warnings; atomic."""
    import nbformat
    from nbconvert import HTMLExporter

    from hscsim_utils.atomic import atomic_path
    from hscsim_utils.interpreter import KERNEL_DISPLAY, KERNEL_NAME

    stale = stale or {}
    notebooks = sorted(run.notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    stages = [p.stem for p in notebooks]
    merged = nbformat.v4.new_notebook()
    summary = _summary_html(run, stages, state or {}, stale, tile_file)
    merged.cells.append(nbformat.v4.new_markdown_cell(summary))
    warnings: dict[str, list[str]] = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        heading = f'<a id="stage-{path.stem}"></a>\n\n# Stage {path.stem}'
        if path.stem in stale:
            heading += f" (STALE: {stale[path.stem]})"
        merged.cells.append(nbformat.v4.new_markdown_cell(heading))
        for cell in nb.cells:
            if cell.cell_type == "code":
                _clean_cell(cell, warnings, path.stem)
            merged.cells.append(cell)
    rows = [(line, ", ".join(where)) for line, where in warnings.items()]
    merged.cells.append(
        nbformat.v4.new_markdown_cell(
            "<h1>Warnings</h1>"
            + (_table(rows, ("warning", "stages")) if rows else "<p>none</p>")
        )  # fmt: skip
    )
    merged.metadata = {
        "kernelspec": {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY}
    }
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(merged)
    out = run.root / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(body)
    return out
