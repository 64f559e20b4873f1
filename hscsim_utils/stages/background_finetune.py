"""Stage 09: fine-tune the background noise of the simulation.

1. :func:`background_rms_from_background_pixels`: the background RMS of the
   data measured as in stage 01 (Background2D, SExtractor estimator, 3-sigma
   clipping, 128-pixel boxes, 3 x 3 filter, plus stage 01's own source mask)
   with the data's SExtractor segmentation (``segmentation != 0``) and NO_DATA
   masked, written into a copy of the sysmaps (:func:`write_improved_sysmaps`).
2. The simulation's noise against the data's: ufig resamples its noise with a
   Lanczos-3 kernel (the coadd's correlated noise), which lowers the pixel RMS
   below ``map_bsig``, and undetected galaxies add their photon noise.
   :func:`std_correction` is the ratio of the robust standard deviations of the
   background pixels (segmentation 0, not masked: stage 07's selection) of data
   and simulation in the *tuning* half of the patch
   (:mod:`hscsim_utils.numerics.halves`), and ``map_bsig`` is multiplied by it
   (:func:`scale_bsig` does so in place). The shot noise of the undetected
   galaxies' light does not scale with ``map_bsig``; leaving it out of the scaling
   (:func:`photon_variance`) brought the demo tile's width ratio from 0.9955
   (the tutorial's plain ratio) to 0.9989, both measured on the pixels the
   correction was computed from. A correction per region (blocks of 128
   pixels) was tried as well: emulated on the demo tile it changed the
   background KS statistic by 0.0003, so one global factor is kept.

   The tutorial simulates the patch with step 1's map to measure that width.
   The stage does not need to: ufig draws its noise as ``N(0, 1) * map_bsig``
   (``ufig.plugins.background_noise.add_from_map``) before resampling and
   rendering, so with the same seed a simulation with step 1's map differs from
   one with stage 01's map (stage 08's, or stage 06's when stage 08 has not
   run) only by its noise, multiplied pixel by pixel by the ratio of the two
   maps (smooth on the scale of the 7-pixel resampling kernel).
   :func:`emulated_background` applies that ratio to the noise of the
   background pixels of the simulation at hand (the shot noise of undetected
   light left as it is), and the correction is measured on them: one
   simulation of every band less. ``Params(masked_simulation=True)`` runs the
   tutorial's simulation instead (``sim_masked/``) and takes the correction
   from it, with the emulated one beside it in the section
   (``emulated_std_correction``). On the 2000 x 2000 i-band DEMO: 1.08809
   emulated, 1.08787 simulated (the tuned width ratio's noise floor: 0.0018);
   on the full five-band DEMO emulated minus simulated is -0.00006 to +0.0012
   (g), moving the tuned width ratios by at most 0.0009 (floors 0.0017-0.0045).
3. A last simulation with the scaled map.

The simulations use stage 08's improved PSF model when it exists.

On a tile of several bands every band the baseline simulated gets its own map
from its own background pixels (step 1, in its run folder:
``RUN/bands/<band>/background_finetune/``) and its own correction from its own
tuning half (step 2); each simulation is one GalSBI/UFig run of all bands, so
the tuned simulation keeps one galaxy population. Each band is scored
against the floors stage 07 computed for it (block ``bands.<band>`` of
``quality``), and its numbers are in ``bands.<band>`` of the section. On a
2000 x 2000 g r i DEMO the corrections were 1.082 (g), 1.083 (r), 1.088 (i), and
the width ratios on the scoring half went from 0.927 / 0.926 / 0.909 (baseline)
to 1.0008 / 1.0063 / 1.0006 (floors 0.0017-0.0019).

Every realism block (stage 07's
:func:`hscsim_utils.stages.quality.described_realism`) is computed on the *scoring*
half, which the correction never saw, with the noise floors of stage 07 (the data's
halves against each other, read from stage 07's section of ``metrics.json``, so both
stages score against the same floors; the stage therefore reads
``metrics:quality.realism`` and ``metrics:quality.bands``): the tuned simulation's
``bkg_std_ratio`` is then a test of the correction, not its definition. On the 2000
x 2000 DEMO tile the correction from the tuning half (1.094) gives a width ratio of
0.9963 on the scoring half, within its noise floor (threshold ``|r - 1| < 0.011``).

Entry point: :func:`run`. Everything the stage writes is in its product
``background_finetune/`` (besides its section ``background_finetune`` of
``metrics.json``, which holds the realism of every simulation side by side; on a
tile of several bands every other band's sysmaps are in the same product of its
band run, ``bands/<band>/background_finetune/``, and the simulations, of all
bands, only here)::

    background_finetune/
      sysmaps_masked.h5   stage 01's sysmaps, map_bsig from background pixels
      sim_masked/         simulation with it (only with masked_simulation)
      sysmaps.h5          the improved sysmaps: map_bsig scaled by the correction
      sim_tuned/          simulation with it

The figure is in :mod:`hscsim_utils.stages.background_finetune_plots`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hscsim_utils.atomic import atomic_path
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.metrics import relative_path, write_section
from hscsim_utils.numerics.halves import SCORING, TUNING
from hscsim_utils.runfolder import RunFolder, read_dataset
from hscsim_utils.stages import psf_finetune, quality, registry, simulate
from hscsim_utils.stages.sky_and_sysmaps import background_maps, map_compression

STAGE = registry.spec("background_finetune")
#: The simulations compared, in order (names of the realism blocks).
BASELINE = "baseline"  # stage 06
PSF_TUNED = "psf_tuned"  # stage 08, with the improved PSF model
MASKED_SIM = "bkg_masked"  # map_bsig from background pixels
TUNED_SIM = "bkg_tuned"  # map_bsig scaled by the correction
#: Files and folders inside the product ``background_finetune/``.
FILES = {
    MASKED_SIM: ("sysmaps_masked.h5", "sim_masked"),
    TUNED_SIM: ("sysmaps.h5", "sim_tuned"),
}


@dataclass(frozen=True)
class Params:
    """Settings of stage 09: the parameters of its notebook."""

    account_photon_noise: bool = True  # shot noise of undetected light not scaled
    masked_simulation: bool = False  # the tutorial's simulation with step 1's map

    def __post_init__(self) -> None:
        for name in ("account_photon_noise", "masked_simulation"):
            if not isinstance(value := getattr(self, name), bool):
                raise InputError(
                    f"{STAGE.name}.{name}", f"must be True or False, got {value!r}"
                )


def sysmaps_path(run: RunFolder, step: str = TUNED_SIM) -> Path:
    """The sysmaps of ``step`` (``bkg_masked`` or ``bkg_tuned``: the improved
    sysmaps)."""
    return run.background_finetune_dir / FILES[step][0]


def sim_dir(run: RunFolder, step: str) -> Path:
    """The simulation folder of ``step`` (``bkg_masked`` or ``bkg_tuned``)."""
    return run.background_finetune_dir / FILES[step][1]


# --- step 1: RMS from background pixels ---------------------------------------------


def background_rms_from_background_pixels(
    image: np.ndarray,
    no_data: np.ndarray,
    segmentation: np.ndarray,
    source: str | os.PathLike = "image",
) -> np.ndarray:
    """Background RMS map (float32) with sources and NO_DATA pixels masked.

    Stage 01's :func:`hscsim_utils.stages.sky_and_sysmaps.background_maps` with the
    segmentation added to its mask: pixels of detected objects do not enter
    the boxes' sigma-clipped RMS.
    """
    image = np.asarray(image)
    for name, arr in (("no_data", no_data), ("segmentation", segmentation)):
        if np.shape(arr) != image.shape:
            raise InputError(name, f"shape {np.shape(arr)} is not the image's "
                             f"{image.shape}")  # fmt: skip
    mask = np.asarray(no_data, bool) | (np.asarray(segmentation) != 0)
    if mask.all():
        raise InputError(source, "every pixel is masked or part of a source")
    return background_maps(image, mask, source).rms


def data_background_rms(
    tile: TileSpec, run: RunFolder, data: Mapping[str, Any] | None = None
) -> np.ndarray:
    """:func:`background_rms_from_background_pixels` of the tile's calexp.

    ``data``: the data side of this tile and run as read for the realism checks
    (:meth:`~hscsim_utils.stages.quality.QualityInputs.data_side`), whose image
    and segmentation are then not read again (only the calexp's MASK is).
    """
    from hscsim_utils.hsc.files import read_calexp, read_mask_plane

    if data is None:
        calexp = read_calexp(tile.calexp, tile.band)
        image, no_data = calexp.image, calexp.plane("NO_DATA")
        seg = quality.read_segmentation(run.sextractor_seg, calexp.shape)
    else:
        image, seg = data["data_image"], data["data_segmentation"]
        no_data = read_mask_plane(tile.calexp, "NO_DATA", tile.band)
    return background_rms_from_background_pixels(image, no_data, seg, tile.calexp)


def read_bsig(path: str | os.PathLike) -> np.ndarray:
    """``map_bsig`` of a sysmaps file."""
    return read_dataset(path, "map_bsig", "sysmaps not found; run stage 01 first")


def write_improved_sysmaps(
    source: str | os.PathLike, target: str | os.PathLike, bsig: np.ndarray
) -> Path:
    """Copy of the sysmaps file ``source`` with ``map_bsig`` replaced, atomically."""
    source, target = Path(source), Path(target)
    old = read_bsig(source)
    bsig = np.asarray(bsig, np.float32)
    if bsig.shape != old.shape:
        raise InputError(
            "map_bsig", f"shape {bsig.shape} is not {old.shape} of {source}"
        )
    if not np.all(np.isfinite(bsig)) or np.any(bsig < 0):
        raise InputError("map_bsig", "must be finite and non-negative")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "a") as fh5:
            del fh5["map_bsig"]
            fh5.create_dataset(
                "map_bsig", data=bsig, compression=map_compression("map_bsig")
            )
    return target


# --- step 2: the standard-deviation correction --------------------------------------


def std_correction(
    data_bkg: np.ndarray, sim_bkg: np.ndarray, fixed_variance: float = 0.0
) -> float:
    """Factor for ``map_bsig`` that makes the simulation's background pixels
    as wide as the data's (robust standard deviations, 1.4826 MAD).

    ``fixed_variance`` is the part of the simulation's variance that does not
    scale with ``map_bsig``: the factor k solves ``k^2 (s^2 - f) + f = d^2``
    for simulated and data widths s, d. With 0 it is the tutorial's ``d / s``.
    """
    d, s = quality.robust_std(data_bkg), quality.robust_std(sim_bkg)
    if d is None or s is None or s <= 0 or d <= 0:
        raise InputError("background pixels", "no background pixels to compare")
    scaled = s**2 - float(fixed_variance)
    if fixed_variance < 0 or scaled <= 0:
        raise InputError("fixed_variance", f"must be in [0, {s**2:.4g}), got "
                         f"{fixed_variance}")  # fmt: skip
    wanted = d**2 - float(fixed_variance)
    if wanted <= 0:
        raise InputError("fixed_variance", "exceeds the data's background variance")
    return float(np.sqrt(wanted / scaled))


def photon_variance(sim_bkg: np.ndarray, gain: float) -> float:
    """Poisson variance (ADU^2) of the light in the simulated background pixels.

    Background pixels of a simulation hold the light of undetected galaxies
    (their mean level, in ADU); ufig draws its photons in electrons (``gain``
    electrons per ADU), so their shot noise has variance ``level / gain``. It
    does not change when ``map_bsig`` is scaled.
    """
    if not np.isfinite(gain) or gain <= 0:
        raise InputError("gain", f"must be positive, got {gain}")
    values = np.asarray(sim_bkg, np.float64)
    if values.size == 0:
        raise InputError("background pixels", "no simulated background pixels")
    return max(0.0, float(np.mean(values))) / float(gain)


def scale_bsig(path: str | os.PathLike, factor: float | np.ndarray) -> Path:
    """Multiply ``map_bsig`` of a sysmaps file by ``factor``, atomically."""
    factor = np.asarray(factor, np.float64)
    if not np.all(np.isfinite(factor)) or np.any(factor <= 0):
        raise InputError("std_correction", f"must be finite and positive, got {factor}")
    return write_improved_sysmaps(path, path, read_bsig(Path(path)) * factor)


# --- simulations and metrics ------------------------------------------------------


def simulate_with_sysmaps(
    tile: TileSpec,
    run: RunFolder,
    step: str,
    band_runs: Mapping[str, RunFolder] | None = None,
    **sim_kwargs,
) -> simulate.Simulation:
    """Simulate ``step`` in the bands of ``band_runs`` (default the tile's band),
    each with its sysmaps of ``step`` (in its run folder) and its stage 08
    PSF model, if any."""
    band_runs = dict(band_runs or {tile.band: run})
    overrides = psf_finetune.improved_psf_overrides(band_runs)
    maps = {band: sysmaps_path(r, step) for band, r in band_runs.items()}
    for path in maps.values():
        if not path.is_file():
            raise InputError(path, "not found; write it first")
    overrides["filepath_sysmaps_dict"] = {b: str(path) for b, path in maps.items()}
    overrides.update(sim_kwargs.pop("overrides", None) or {})
    return simulate.run_simulation(
        tile, run, out=sim_dir(run, step), overrides=overrides, measure_psf="none",
        band_runs=band_runs, **sim_kwargs,
    )  # fmt: skip


def emulated_background(
    inputs: quality.QualityInputs,
    old_bsig: np.ndarray,
    new_bsig: np.ndarray,
    gain: float,
    half: str | None = None,
) -> np.ndarray:
    """Background pixels of the simulation of ``inputs`` (in ``half``; simulated
    with ``old_bsig``) as they would be had it been simulated with ``new_bsig``
    and the same seed.

    ufig's noise is ``N(0, 1) * map_bsig`` drawn before anything else of the
    band, so only the noise changes with the map; the light of undetected
    galaxies and its shot noise (:func:`photon_variance`, ``f``) stay. A pixel's
    deviation from the median level is scaled by
    ``sqrt((a b_new^2 + f) / (a b_old^2 + f))``, with ``a`` the variance of the
    resampled noise per unit ``map_bsig^2`` (the pixels' robust variance less
    ``f``, over the mean ``b_old^2``).
    """
    image = inputs.sim_image
    for name, bsig in (("old_bsig", old_bsig), ("new_bsig", new_bsig)):
        if np.shape(bsig) != image.shape:
            raise InputError(name, f"shape {np.shape(bsig)} is not the image's "
                             f"{image.shape}")  # fmt: skip
    keep = quality.background_mask(image, inputs.sim_segmentation, inputs.masked, half)
    values = np.asarray(image[keep], np.float64)
    if values.size == 0:
        raise InputError("background pixels", "no simulated background pixels")
    shot = photon_variance(values, gain)
    old = np.asarray(old_bsig, np.float64)[keep] ** 2
    new = np.asarray(new_bsig, np.float64)[keep] ** 2
    a = max(quality.robust_std(values) ** 2 - shot, 0.0) / max(np.mean(old), 1e-300)
    before = a * old + shot
    scale = np.ones_like(values)
    np.divide(a * new + shot, before, out=scale, where=before > 0)
    level = float(np.median(values))
    return level + (values - level) * np.sqrt(scale)


def tuning_correction(
    inputs: quality.QualityInputs,
    gain: float,
    account_photon_noise: bool = True,
    maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float, float, int]:
    """:func:`std_correction` from the background pixels of the tuning half of
    simulation and data (the scoring half is left for the realism numbers);
    with ``maps`` (the simulation's ``map_bsig`` and another), of the
    simulation emulated with the other map (:func:`emulated_background`).

    Returns the correction, the plain ratio of the widths, the variance left
    out of the scaling (:func:`photon_variance`, or 0) and the number of
    simulated background pixels used.
    """
    if maps is None:
        sim_bkg, data_bkg = inputs.background(TUNING)
    else:
        sim_bkg = emulated_background(inputs, *maps, gain, TUNING)
        data_bkg = inputs.data_background(TUNING)
    fixed = photon_variance(sim_bkg, gain) if account_photon_noise else 0.0
    correction = std_correction(data_bkg, sim_bkg, fixed)
    return correction, std_correction(data_bkg, sim_bkg), fixed, int(sim_bkg.size)


def realism_table(blocks: Mapping[str, Mapping[str, object]]) -> str:
    """The realism numbers of every simulation side by side (one column each)."""
    keys = ("bkg_std_ratio", "bkg_ks", "mag_auto_ks", "flux_radius_ks",
            "ellipticity_ks", "n_detect_ratio")  # fmt: skip
    lines = [f"{'metric':>16s}" + "".join(f"{name:>14s}" for name in blocks)]
    for key in keys:
        row = "".join(
            f"{v:14.4f}" if isinstance(v := b.get(key), float | int) else f"{'-':>14s}"
            for b in blocks.values()
        )
        lines.append(f"{key:>16s}{row}")
    return "\n".join(lines)


def significance_table(blocks: Mapping[str, Mapping[str, object]]) -> str:
    """Per statistic: the noise floor and threshold (the data's halves) and,
    per simulation, its value marked ``*`` where significant."""
    names = [k for b in blocks.values() for k in b.get("statistics", {})]
    names = list(dict.fromkeys(names))
    lines = [f"{'statistic':>20s} {'floor':>8s} {'threshold':>9s}"
             + "".join(f"{name:>14s}" for name in blocks)]  # fmt: skip
    for key in names:
        first = next(b["statistics"][key] for b in blocks.values()
                     if key in b.get("statistics", {}))  # fmt: skip
        floor, threshold = first.get("floor"), first.get("threshold")
        prefix = "1+-" if first.get("kind") == "ratio" else ""
        row = f"{key:>20s} {_num(floor, prefix):>8s} {_num(threshold, prefix):>9s}"
        for b in blocks.values():
            a = b.get("statistics", {}).get(key, {})
            mark = "*" if a.get("significant") else " "
            row += f"{_num(a.get('value')) + mark:>14s}"
        lines.append(row)
    lines.append("* significant: beyond twice the floor (chi^2: its 99% point)")
    return "\n".join(lines)


def _num(value, prefix: str = "") -> str:
    return f"{prefix}{value:.4f}" if isinstance(value, int | float) else "-"


@dataclass
class Products:
    """What stage 09 measured, wrote and simulated (its metrics section is
    written): the detection band's numbers, and every other band's section
    block in ``bands``."""

    improved_psf: bool  # the simulations used stage 08's improved PSF model
    realism: dict[str, dict]  # realism block of every simulation, in order
    backgrounds: dict[str, np.ndarray]  # scoring-half background pixels, per sim
    data_bkg: np.ndarray  # scoring-half background pixels of the data
    median_bsig: dict[str, float]  # stage 01's map and from background pixels
    std_correction: float
    plain_std_correction: float  # the tutorial's plain ratio of the widths
    photon_variance: float  # shot noise left out of the scaling (ADU^2)
    sysmaps: Path  # the improved sysmaps
    section: dict  # section ``background_finetune`` of metrics.json
    bands: dict[str, dict] = field(default_factory=dict)  # other bands' blocks

    def realism_table(self) -> str:
        """:func:`realism_table` of the simulations."""
        return realism_table(self.realism)

    def significance_table(self) -> str:
        """:func:`significance_table` of the simulations."""
        return significance_table(self.realism)

    def bands_table(self) -> str:
        """Every band's correction and background width ratio (simulation over
        data, scoring half, with its noise floor) of each simulation."""
        rows = {self.section.get("band", "?"): self.section} | self.bands
        steps = list(self.realism)
        lines = [f"{'band':>5s} {'correction':>10s}" +
                 "".join(f"{name:>22s}" for name in steps)]  # fmt: skip
        for band, block in rows.items():
            cells = []
            for name in steps:
                stat = block["realism"].get(name, {})
                ratio = stat.get("bkg_std_ratio")
                floor = stat.get("statistics", {}).get("bkg_std_ratio", {}).get("floor")
                cells.append(f"{_num(ratio)} (floor {_num(floor)})")
            lines.append(f"{band:>5s} {block['std_correction']:>10.4f}" +
                         "".join(f"{c:>22s}" for c in cells))  # fmt: skip
        return "\n".join(lines)


@dataclass
class _Steps:
    """One band's realism blocks and scoring-half background pixels gathered so
    far, and the data's reference: its sample, built once, and the noise floors
    stage 07 computed (:func:`~hscsim_utils.stages.quality.stage07_floors`).
    ``tile`` and ``band_run`` are the band's; the paths in the blocks are
    relative to ``run``, the detection band's run folder."""

    tile: TileSpec
    run: RunFolder
    band_run: RunFolder
    floors: dict
    keep_backgrounds: bool = True  # the pixels (for the figure): detection band only
    blocks: dict[str, dict] = field(default_factory=dict)
    backgrounds: dict[str, np.ndarray] = field(default_factory=dict)
    data_bkg: np.ndarray | None = None
    data: dict | None = None  # the data side of the inputs (read again after None)
    reference: quality.RealismReference | None = None

    def add(self, folder: Path, name: str) -> quality.QualityInputs:
        """Realism block (scoring half) of the simulation in ``folder``; returns
        its inputs."""
        inputs = quality.load_inputs(
            self.tile, self.band_run, folder, self.data, self.reference
        )
        inputs.reference(self.floors)
        self.blocks[name] = quality.described_realism(self.tile, self.run, inputs)
        if self.keep_backgrounds:  # the data's pixels are the same for every step
            self.backgrounds[name] = inputs.sim_background(SCORING)
            if self.data_bkg is None:
                self.data_bkg = inputs.data_background(SCORING)
        self.data, self.reference = inputs.data_side(), inputs.reference()
        return inputs


@dataclass
class _BandTuning:
    """Stage 09 in one band: its steps, its map from background pixels and the
    correction."""

    steps: _Steps
    account_photon_noise: bool = True
    median: dict[str, float] = field(default_factory=dict)
    emulated: tuple[float, float, float, int] | None = None
    emulated_from: str = ""  # the simulation the emulation scaled
    correction: tuple[float, float, float, int] | None = None
    correction_from: str = ""  # the simulation the correction was measured on

    def write_masked_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Step 1: ``map_bsig`` from background pixels, into the band's sysmaps of
        :data:`MASKED_SIM`; returns stage 01's map and the new one (float32, as
        written)."""
        tile, band_run = self.steps.tile, self.steps.band_run
        bsig = data_background_rms(tile, band_run, self.steps.data)
        write_improved_sysmaps(
            band_run.sysmaps, sysmaps_path(band_run, MASKED_SIM), bsig
        )
        old = read_bsig(band_run.sysmaps)
        good = old > 0
        self.median = {
            "stage_01": float(np.median(old[good])),
            "background_pixels": float(np.median(bsig[good])),
        }
        return old, np.asarray(bsig, np.float32)

    def emulate(
        self,
        inputs: quality.QualityInputs,
        name: str,
        gain: float,
        maps: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Step 2 without a simulation: the correction from the simulation of
        ``inputs`` (called ``name``; simulated with stage 01's map, ``maps[0]``),
        its noise scaled to step 1's map ``maps[1]`` (:func:`emulated_background`)."""
        self.emulated = tuning_correction(inputs, gain, self.account_photon_noise, maps)
        self.emulated_from = name

    def correct(self, masked: simulate.Simulation | None = None) -> None:
        """Step 2: the correction, from the tuning half of the simulation
        ``masked`` with step 1's map or, without it, the emulated one; the band's
        improved sysmaps (:data:`TUNED_SIM`): step 1's map (read back: float32,
        stored losslessly) times the correction."""
        band_run, band = self.steps.band_run, self.steps.tile.band
        if masked is None:
            if self.emulated is None:
                raise RuntimeError(f"band {band}: nothing to take the correction from")
            self.correction, self.correction_from = self.emulated, self.emulated_from
        else:
            inputs = self.steps.add(masked.directory, MASKED_SIM)
            gain = masked.parameters["gain_dict"][band]
            self.correction = tuning_correction(inputs, gain, self.account_photon_noise)
            self.correction_from = MASKED_SIM
            del inputs
        masked_map = sysmaps_path(band_run, MASKED_SIM)
        write_improved_sysmaps(
            masked_map, sysmaps_path(band_run, TUNED_SIM),
            np.asarray(read_bsig(masked_map), np.float64) * self.correction[0],
        )  # fmt: skip

    def section(self, improved_psf: bool) -> dict:
        """The band's block of section ``background_finetune``."""
        if self.correction is None:
            raise RuntimeError(f"band {self.steps.tile.band}: no correction yet")
        correction, plain, fixed, n_tuning = self.correction
        steps = self.steps
        out = {
            "band": steps.tile.band,
            "steps": list(steps.blocks),  # the simulations in order (JSON sorts)
            "realism": steps.blocks,
            "improved_psf": improved_psf,
            "median_bsig": self.median,
            "std_correction": correction,
            "plain_std_correction": plain,
            "photon_variance": fixed,
            "account_photon_noise": self.account_photon_noise,
            "correction_half": TUNING,
            "n_correction_pixels": n_tuning,
            # the simulation measured; "emulated": its noise scaled to step 1's map
            "correction_simulation": self.correction_from,
            "correction_emulated": self.correction_from != MASKED_SIM,
            "sysmaps": relative_path(
                steps.run.root, sysmaps_path(steps.band_run, TUNED_SIM)
            ),
        }
        if self.emulated is not None and self.correction_from == MASKED_SIM:
            out["emulated_std_correction"] = self.emulated[0]
            out["emulated_from"] = self.emulated_from
        return out


def _psf_tuned_bands(run: RunFolder) -> tuple[str, ...]:
    """The bands of stage 08's simulation with the improved PSF models (none
    when stage 08 has not run)."""
    folder = psf_finetune.tuned_sim_dir(run)
    if not (folder / simulate.MANIFEST).is_file():
        return ()
    return simulate.load_simulation(folder).settings.bands


def run(tile: TileSpec, run: RunFolder, params: Params) -> Products:
    """Stage 09 in every band stage 06 simulated: background RMS from background
    pixels, each band's correction of its width (tuning half; emulated on stage
    08's simulation, or measured on a simulation of all bands with the new maps
    with ``params.masked_simulation``), and a last simulation with the corrected
    maps; every simulation's realism on the scoring half, per band, against the
    noise floors stage 07 computed for that band.

    Writes the product ``background_finetune/`` (in the detection band's run
    folder, with the simulations, and the sysmaps in every other band's) and
    section ``background_finetune`` of ``metrics.json`` (the detection band's
    numbers, the others' in ``bands``), nothing else.
    """
    baseline = simulate.load_simulation(run.sim_baseline)
    band_runs = run.band_runs(psf_finetune.tuned_bands(tile, baseline), tile.band)
    improved = {b: psf_finetune.improved_model_path(r).is_file()
                for b, r in band_runs.items()}  # fmt: skip
    tunings = {
        band: _BandTuning(_Steps(psf_finetune.band_tile(tile, band), run, band_run,
                                 quality.stage07_floors(run, band, tile.band),
                                 keep_backgrounds=band == tile.band),
                          params.account_photon_noise)
        for band, band_run in band_runs.items()
    }  # fmt: skip
    psf_tuned = _psf_tuned_bands(run)
    for band, tuning in tunings.items():
        tuned_psf = improved[band] and band in psf_tuned
        if band == tile.band or not tuned_psf:
            # the figure's pixels (detection band), or the emulation's source
            source, name = tuning.steps.add(run.sim_baseline, BASELINE), BASELINE
        else:  # stage 07 scored the baseline on the same half with the same floors
            block = quality.stage07_realism(run, band, tile.band)
            tuning.steps.blocks[BASELINE] = block
        if tuned_psf:
            # stages 06 and 08 simulated with stage 01's map: the emulation's source
            source = None  # freed before the next simulation is read
            source = tuning.steps.add(psf_finetune.tuned_sim_dir(run), PSF_TUNED)
            name = PSF_TUNED
        # 1. map_bsig from background pixels only
        maps = tuning.write_masked_map()
        tuning.emulate(source, name, baseline.parameters["gain_dict"][band], maps)
        del source, maps
        tuning.steps.data = None  # ~160 MB a band: not held while UFig renders
    choices = simulate.baseline_choices(run)  # stage 06's model, seed, noise
    masked_sim = None
    if params.masked_simulation:
        masked_sim = simulate_with_sysmaps(tile, run, MASKED_SIM, band_runs, **choices)
    elif sim_dir(run, MASKED_SIM).exists():  # an earlier run's: not this one's
        shutil.rmtree(sim_dir(run, MASKED_SIM))
    # 2. each band's correction of the width, on the tuning half
    for tuning in tunings.values():
        tuning.correct(masked_sim)
        tuning.steps.data = None
    # 3. the last simulation
    tuned_sim = simulate_with_sysmaps(tile, run, TUNED_SIM, band_runs, **choices)
    sections = {}
    for band, tuning in tunings.items():
        tuning.steps.add(tuned_sim.directory, TUNED_SIM)
        tuning.steps.data = None
        sections[band] = tuning.section(improved[band])
    section = sections.pop(tile.band)
    if sections:
        section["bands"] = sections
    write_section(run.metrics, STAGE.name, section)
    mine = tunings[tile.band]
    correction, plain, fixed, _ = mine.correction
    return Products(improved[tile.band], mine.steps.blocks, mine.steps.backgrounds,
                    mine.steps.data_bkg, mine.median, correction, plain, fixed,
                    sysmaps_path(run, TUNED_SIM), section, sections)  # fmt: skip
