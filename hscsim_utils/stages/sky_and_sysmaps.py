"""Stage 01: per-pixel systematic maps of a coadd patch.

Reads the tile's ``calexp`` (of its ``band``), ``frame_metadata`` and
``coadd_metadata``; writes the products ``sysmaps`` (ufig's
``sysmaps_hdf_combined`` layout), ``skymapinfo_json`` and ``skymapinfo_npy``
(:mod:`hscsim_utils.stages.skymapinfo`). Entry point: :func:`run`; the figures
are in :mod:`hscsim_utils.stages.sky_and_sysmaps_plots`.

Pixel convention. Frame corners are converted with the calexp WCS by
``all_world2pix(ra, dec, 0)``: 0-based pixel coordinates in which array element
``[j, i]`` has its centre at ``(x, y) = (i, j)`` and covers ``[i - 0.5, i + 0.5]``.
A pixel belongs to a frame when its centre lies inside or on the border of the
frame's quadrilateral (corners ll, ul, ur, lr). The tutorial converts with origin 1
and then tests ``index + 0.5``, i.e. the lower-left corner of each pixel: half a
pixel off in x and y.

Rasterisation. For every frame and image row the covered columns form one
interval (the quadrilateral is convex). The intervals are added to difference
arrays at their start and one past their end; one cumulative sum along x turns
them into the maps. Exposure times and gains are summed in integer fixed point,
so the maps are exact and independent of the frame order. Visit bitmaps add
disjoint per-visit intervals, which is the same as OR-ing the visit's bit.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from astropy.stats import SigmaClip, mad_std
from astropy.wcs import WCS
from photutils.background import Background2D, SExtractorBackground
from scipy import ndimage
from tqdm.auto import tqdm

from hscsim_utils.atomic import atomic_path
from hscsim_utils.calltimes import floor_call
from hscsim_utils.errors import InputError
from hscsim_utils.hsc.files import read_calexp, read_coadd_metadata, read_frame_metadata
from hscsim_utils.hsc.tile import TileSpec
from hscsim_utils.runfolder import RunFolder
from hscsim_utils.stages import registry, skymapinfo

STAGE = registry.spec("sky_and_sysmaps")

CORNERS = ("ll", "ul", "ur", "lr")
BITS_PER_WORD = 64
N_WORDS = 5
MAX_VISITS = BITS_PER_WORD * N_WORDS
POINTINGS_DTYPE = np.dtype([(f"bit{w + 1}", np.uint64) for w in range(N_WORDS)])
EXPT_QUANTUM = 2.0**-20  # seconds; fixed-point unit of the exposure-time sum
GAIN_QUANTUM = 2.0**-32  # e-/ADU; fixed-point unit of the gain sum
MAX_EXPTIME = 1e6  # s per frame; keeps the fixed-point sums far from overflow
MAX_GAIN = 1e4  # e-/ADU per frame
ROW_BLOCK = 256  # rows per block of the difference arrays
#: Maps of per-pixel noise, stored without compression: LZF shrinks them by 2-4%
#: (full DEMO patch: ``map_bsig`` 67.7 MB and ``map_invv`` 69.0 MB of 70.6 MB)
#: at about 3 times the writing and 4 times the reading time (0.45 against
#: 1.23 s to write both, 0.18 against 0.69 s to read them); every simulation
#: reads them. The smooth maps (exposure time, gain, visits) shrink 10-20 times.
UNCOMPRESSED_MAPS = frozenset({"map_bsig", "map_invv"})
BKG_BOX = 128
BKG_FILTER = (3, 3)
BKG_EXCLUDE_PERCENTILE = 10.0  # photutils' default, as in the tutorial
BKG_EXCLUDE_MASKED = 50.0  # with sources masked, boxes keep fewer pixels


@dataclass(frozen=True)
class Params:
    """Settings of stage 01: the parameters of its notebook."""

    band: str = ""  # empty: the band of the tile file
    mask_sources: bool = True  # False: background RMS with sigma clipping only

    def __post_init__(self) -> None:
        if not (isinstance(self.band, str) and re.fullmatch(r"\w*", self.band)):
            raise InputError(
                f"{STAGE.name}.band",
                f"must be a band name such as 'i', or empty for the tile's band; "
                f"got {self.band!r}",
            )
        if not isinstance(self.mask_sources, bool):
            raise InputError(
                f"{STAGE.name}.mask_sources",
                f"must be True or False, got {self.mask_sources!r}",
            )


@dataclass
class RowSpans:
    """Covered column intervals ``[start, stop)`` of one frame in one row each."""

    frame: np.ndarray
    row: np.ndarray
    start: np.ndarray
    stop: np.ndarray


@dataclass
class ExposureMaps:
    """Maps built from the frame metadata, all of shape (NAXIS2, NAXIS1).

    The visit bitmaps are kept as per-visit covered intervals and turned into
    ufig's structured map block by block (``pointings_blocks``) or at once
    (``pointings``).
    """

    expt: np.ndarray  # float32, summed exposure time [s]
    nexp: np.ndarray  # uint16, number of frames
    gain: np.ndarray  # float32, summed mean gain of the frames
    visit_spans: RowSpans  # disjoint per visit and row; ``frame`` = visit index
    n_visits: int
    corners: np.ndarray  # (n_frames, 4, 2) pixel x, y of ll, ul, ur, lr

    def pointings_blocks(
        self, block: int = ROW_BLOCK
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first, stop, rows first:stop of the structured visit bitmaps)."""
        return pointings_blocks(self.visit_spans, self.n_visits, self.expt.shape, block)

    @property
    def pointings(self) -> np.ndarray:
        """The visit bitmaps as ufig's structured map (POINTINGS_DTYPE)."""
        out = np.empty(self.expt.shape, POINTINGS_DTYPE)
        for first, stop, rows in self.pointings_blocks():
            out[first:stop] = rows
        return out


@dataclass
class BackgroundMaps:
    """Background2D results: the RMS map and two medians."""

    rms: np.ndarray  # float32
    level_median: float  # of the low-resolution background mesh
    rms_median: float  # of the RMS map over pixels with data


@dataclass
class Stage01Result:
    """Everything stage 01 computed (the files are already written)."""

    maps: ExposureMaps
    background: BackgroundMaps
    info: dict
    shape: tuple[int, int]


def frame_corners_pixels(frames: pd.DataFrame, wcs: WCS) -> np.ndarray:
    """Pixel (x, y) of the frame corners ll, ul, ur, lr: shape (n, 4, 2).

    RA/Dec are passed to the WCS as they are, so a patch straddling RA = 0 works.
    Corners the projection cannot map (far side of the sky) become NaN.
    """
    ra = frames[[f"{c}cra" for c in CORNERS]].to_numpy(float)
    dec = frames[[f"{c}cdec" for c in CORNERS]].to_numpy(float)
    x, y = wcs.all_world2pix(ra.ravel(), dec.ravel(), 0)
    return np.stack([x, y], axis=-1).reshape(len(frames), len(CORNERS), 2)


def polygon_row_spans(corners: np.ndarray, shape: tuple[int, int]) -> RowSpans:
    """Per frame and row, the columns whose pixel centres lie in the quadrilateral.

    Vectorised over all (frame, row) pairs; rows and columns outside the patch
    are clipped; frames with non-finite corners or no area are skipped. The spans
    come sorted by row.
    """
    ny, nx = shape
    offset, slope, side = _edge_lines(corners)
    usable = (side != 0).any(axis=1)
    ys = np.where(usable[:, None], corners[..., 1], 0.0)
    first = np.clip(np.ceil(ys.min(axis=1)), 0, ny)
    last = np.clip(np.floor(ys.max(axis=1)), -1, ny - 1)
    n_rows = np.where(usable, last - first + 1, 0).clip(0).astype(np.int64)
    frame = np.repeat(np.arange(len(corners)), n_rows)
    row_offset = np.arange(n_rows.sum()) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    row = first.astype(np.int64)[frame] + row_offset
    x_at = offset[frame] + slope[frame] * row[:, None].astype(float)
    x_lo = np.where(side[frame] > 0, x_at, -np.inf).max(axis=1)
    x_hi = np.where(side[frame] < 0, x_at, np.inf).min(axis=1)
    start = np.clip(np.ceil(x_lo), 0, nx).astype(np.int64)
    stop = np.clip(np.floor(x_hi) + 1, 0, nx).astype(np.int64)
    keep = start < stop
    return _by_row(RowSpans(frame[keep], row[keep], start[keep], stop[keep]))


def _by_row(spans: RowSpans) -> RowSpans:
    """The spans in the order of their rows (stable)."""
    order = np.argsort(spans.row, kind="stable")
    return RowSpans(*(a[order] for a in vars(spans).values()))


def _edge_lines(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each edge as x = offset + slope * y and the side of the interior, (n, 4) each.

    ``side`` is +1 where the interior lies at larger x (the edge bounds x from
    below), -1 where it lies at smaller x, 0 for horizontal edges (the row range
    handles those) and for unusable frames.
    """
    a = corners
    b = np.roll(corners, -1, axis=1)
    dx, dy = b[..., 0] - a[..., 0], b[..., 1] - a[..., 1]
    area2 = (a[..., 0] * b[..., 1] - b[..., 0] * a[..., 1]).sum(axis=1)
    ok = np.isfinite(area2) & (np.abs(area2) > 1e-9)
    orientation = np.where(ok, np.sign(area2), 0.0)
    side = np.where(ok[:, None], -np.sign(dy) * orientation[:, None], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(dy != 0, dx / dy, 0.0)
    offset = a[..., 0] - slope * a[..., 1]
    return offset, slope, side.astype(np.int8)


def visit_indices(
    visits: np.ndarray, source: str | os.PathLike
) -> tuple[np.ndarray, int]:
    """Rank of each frame's visit among the unique visits, and their number."""
    unique, index = np.unique(np.asarray(visits), return_inverse=True)
    if len(unique) > MAX_VISITS:
        raise InputError(
            source,
            f"{len(unique)} distinct visits; "
            f"the visit bitmaps hold at most {MAX_VISITS}",
        )
    return index.astype(np.int64), len(unique)


def row_block_sums(
    spans: RowSpans,
    at_start: np.ndarray,
    at_stop: np.ndarray,
    shape: tuple[int, int],
    dtype: type = np.int64,
    block: int = ROW_BLOCK,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (first, stop, rows first:stop) of a map summed from row-sorted spans.

    Each span adds ``at_start`` from its first column on and ``at_stop`` from one
    past its last: a difference array per block of rows, then a cumulative sum
    along x. The yielded rows are overwritten by the next block.
    """
    ny, nx = shape
    edges = np.searchsorted(spans.row, np.append(np.arange(0, ny, block), ny))
    buffer = np.empty((min(block, ny), nx + 1), dtype)
    for b, first in enumerate(range(0, ny, block)):
        stop = min(first + block, ny)
        lo, hi = edges[b], edges[b + 1]
        rows = buffer[: stop - first]
        rows.fill(0)
        flat = rows.reshape(-1)
        base = (spans.row[lo:hi] - first) * (nx + 1)
        np.add.at(flat, base + spans.start[lo:hi], at_start[lo:hi])
        np.add.at(flat, base + spans.stop[lo:hi], at_stop[lo:hi])
        np.cumsum(rows, axis=1, out=rows)
        yield first, stop, rows[:, :nx]


def span_sum_map(
    spans: RowSpans,
    values: np.ndarray,
    shape: tuple[int, int],
    convert: Callable[[np.ndarray], np.ndarray] = lambda rows: rows,
    dtype: type = np.int64,
    block: int = ROW_BLOCK,
) -> np.ndarray:
    """Map of ``convert(sum of values[frame] over the frames covering a pixel)``.

    ``values`` are int64 (fixed point); the sums are exact.
    """
    weight = np.asarray(values, np.int64)[spans.frame]
    out = np.empty(shape, dtype)
    sums = row_block_sums(spans, weight, -weight, shape, np.int64, block)
    for first, stop, rows in sums:
        out[first:stop] = convert(rows)
    return out


def _merge_visit_spans(spans: RowSpans, visit: np.ndarray, nx: int) -> RowSpans:
    """Union of the intervals of each (visit, row), sorted by row; ``frame`` = visit."""
    if len(spans.frame) == 0:
        return spans
    v = visit[spans.frame]
    order = np.lexsort((spans.start, spans.row, v))
    v, row = v[order], spans.row[order]
    start, stop = spans.start[order], spans.stop[order]
    group = v * (row.max(initial=0) + 1) + row
    stride = nx + 2  # > any stop: keeps the running maximum inside its group
    running = np.maximum.accumulate(group * stride + stop)
    prev_stop = np.concatenate([[-1], running[:-1]]) - group * stride
    new_group = np.concatenate([[True], group[1:] != group[:-1]])
    begins = np.flatnonzero(new_group | (start > prev_stop))
    merged_stop = np.maximum.reduceat(stop, begins)
    return _by_row(RowSpans(v[begins], row[begins], start[begins], merged_stop))


def pointings_blocks(
    visit_spans: RowSpans,
    n_visits: int,
    shape: tuple[int, int],
    block: int = ROW_BLOCK,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (first, stop, structured rows): bit k of word w set = visit 64 w + k.

    ``visit_spans`` are disjoint per visit, so adding a visit's bit over its spans
    sets it; unsigned sums wrap modulo 2**64, so adding 2**64 - bit subtracts bit.
    Only the words that hold visits are computed; the others stay 0. The yielded
    rows are overwritten by the next block.
    """
    ny, nx = shape
    words = []
    for word in range(-(-n_visits // BITS_PER_WORD)):
        sel = visit_spans.frame // BITS_PER_WORD == word
        spans_w = RowSpans(*(a[sel] for a in vars(visit_spans).values()))
        bit = np.left_shift(
            np.uint64(1), (spans_w.frame % BITS_PER_WORD).astype(np.uint64)
        )
        sums = row_block_sums(
            spans_w, bit, ~bit + np.uint64(1), shape, np.uint64, block
        )
        words.append(sums)
    buffer = np.zeros((min(block, ny), nx), POINTINGS_DTYPE)
    for first in range(0, ny, block):
        stop = min(first + block, ny)
        rows = buffer[: stop - first]
        for w, sums in enumerate(words):
            rows[f"bit{w + 1}"] = next(sums)[2]
        yield first, stop, rows


def to_fixed_point(values: np.ndarray, quantum: float) -> np.ndarray:
    """int64 multiples of ``quantum`` nearest to ``values``."""
    return np.round(np.asarray(values, float) / quantum).astype(np.int64)


def from_fixed_point(counts: np.ndarray, quantum: float) -> np.ndarray:
    """float32 of counts * quantum (a power of two: rounding happens once)."""
    out = counts.astype(np.float32)
    out *= np.float32(quantum)
    return out


def exposure_maps(
    frames: pd.DataFrame,
    wcs: WCS,
    shape: tuple[int, int],
    source: str | os.PathLike = "frame metadata",
) -> ExposureMaps:
    """Exposure time, number of exposures, summed gain and visit bitmaps."""
    gain = frames[["gain1", "gain2", "gain3", "gain4"]].to_numpy(float).mean(axis=1)
    for name, values, limit in [
        ("exptime", frames["exptime"].to_numpy(float), MAX_EXPTIME),
        ("gain", gain, MAX_GAIN),
    ]:
        if ((values < 0) | (values > limit)).any():
            raise InputError(source, f"{name} values outside 0..{limit:g}")
    visit, n_visits = visit_indices(frames["visit"].to_numpy(), source)
    corners = frame_corners_pixels(frames, wcs)
    spans = polygon_row_spans(corners, shape)

    def count(rows: np.ndarray) -> np.ndarray:
        if rows.max(initial=0) > np.iinfo(np.uint16).max:
            raise InputError(source, "more than 65535 frames cover one pixel")
        return rows

    return ExposureMaps(
        expt=span_sum_map(
            spans, to_fixed_point(frames["exptime"], EXPT_QUANTUM), shape,
            lambda rows: from_fixed_point(rows, EXPT_QUANTUM), np.float32,
        ),
        nexp=span_sum_map(spans, np.ones(len(frames)), shape, count, np.uint16),
        gain=span_sum_map(
            spans, to_fixed_point(gain, GAIN_QUANTUM), shape,
            lambda rows: from_fixed_point(rows, GAIN_QUANTUM), np.float32,
        ),
        visit_spans=_merge_visit_spans(spans, visit, shape[1]),
        n_visits=n_visits,
        corners=corners,
    )  # fmt: skip


def background_maps(
    image: np.ndarray,
    no_data: np.ndarray,
    source: str | os.PathLike = "image",
    box_size: int = BKG_BOX,
    mask_sources: bool = True,
) -> BackgroundMaps:
    """Background2D (SExtractor estimator, 3-sigma clipping) without NO_DATA pixels.

    With ``mask_sources`` a second pass also leaves out the pixels of detected
    sources (see ``source_mask``): the light of galaxies raises the sigma-clipped
    RMS of a deep field by ~10 % above the noise. If no box keeps enough pixels,
    the first pass is used. The whole estimate is one floor call (``calltimes``).
    """
    with floor_call("background2d"):
        bkg = _background2d(image, no_data, source, box_size, BKG_EXCLUDE_PERCENTILE)
        if mask_sources:
            sources = source_mask(image, no_data, bkg, box_size)
            try:
                bkg = _background2d(
                    image, no_data | sources, source, box_size, BKG_EXCLUDE_MASKED
                )
            except InputError:
                pass
        rms = np.asarray(bkg.background_rms, np.float32)
    good = ~no_data & np.isfinite(image)
    return BackgroundMaps(
        rms=rms,
        level_median=float(bkg.background_median),
        rms_median=float(np.median(rms[good])),
    )


def _background2d(
    image: np.ndarray,
    mask: np.ndarray,
    source: str | os.PathLike,
    box_size: int,
    exclude_percentile: float,
) -> Background2D:
    try:
        return Background2D(
            image,
            box_size,
            mask=mask,
            filter_size=BKG_FILTER,
            sigma_clip=SigmaClip(sigma=3.0),
            bkg_estimator=SExtractorBackground(),
            exclude_percentile=exclude_percentile,
        )
    except ValueError as err:
        raise InputError(source, f"background estimation failed: {err}") from None


def source_mask(
    image: np.ndarray,
    no_data: np.ndarray,
    bkg: Background2D,
    box_size: int = BKG_BOX,
    nsigma: float = 3.0,
    grow: int = 3,
) -> np.ndarray:
    """Pixels of detected sources, grown by ``grow`` pixels.

    Detected: the 3 x 3 mean of the normalised image (image - background) / RMS
    exceeds ``nsigma`` times its own robust scatter (which includes the noise
    correlation of the coadd). Background and RMS are the box values of ``bkg``.
    """
    ny, nx = image.shape

    def per_pixel(mesh: np.ndarray) -> np.ndarray:
        mesh = np.asarray(mesh, np.float32)
        return np.repeat(np.repeat(mesh, box_size, 0), box_size, 1)[:ny, :nx]

    level, rms = per_pixel(bkg.background_mesh), per_pixel(bkg.background_rms_mesh)
    good = ~no_data & np.isfinite(image) & (rms > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(good, (image - level) / rms, np.float32(0))
    smooth = ndimage.uniform_filter(z, 3)
    scatter = mad_std(smooth[good][:: max(1, good.sum() // 1_000_000)])
    detected = smooth > nsigma * scatter
    return ndimage.maximum_filter(detected, size=2 * grow + 1)


def inverse_variance(variance: np.ndarray) -> np.ndarray:
    """float32 1/variance; 0 where the variance is not finite and positive."""
    var = np.asarray(variance, np.float64)
    ok = np.isfinite(var) & (var > 0)
    invv = np.zeros(var.shape, np.float32)
    with np.errstate(over="ignore"):
        invv[ok] = (1.0 / var[ok]).astype(np.float32)
    invv[~np.isfinite(invv)] = 0.0
    return invv


def write_sysmaps(
    path: str | os.PathLike,
    maps: ExposureMaps,
    bsig: np.ndarray,
    invv: np.ndarray,
) -> Path:
    """Write the sysmaps HDF5 file ufig reads (``sysmaps_hdf_combined``), atomically."""
    datasets = {
        "map_bsig": np.asarray(bsig, np.float32),
        "map_expt": maps.expt,
        "map_nexp": maps.nexp,
        "map_gain": maps.gain,
        "map_invv": np.asarray(invv, np.float32),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh5:
            for name, data in datasets.items():
                fh5.create_dataset(name, data=data, compression=map_compression(name))
            _write_pointings(fh5, maps)
    return path


def map_compression(name: str) -> str | None:
    """HDF5 compression of the sysmaps dataset ``name`` (see ``UNCOMPRESSED_MAPS``)."""
    return None if name in UNCOMPRESSED_MAPS else "lzf"


def pointings_chunks(shape: tuple[int, int]) -> tuple[int, int]:
    """HDF5 chunks of ``map_pointings``: the stage's and the DEMO truth's are the
    same, so that stage 07 compares them chunk by chunk without decompressing."""
    return (min(ROW_BLOCK, shape[0]), min(512, shape[1]))


def _write_pointings(fh5: h5py.File, maps: ExposureMaps) -> None:
    """``map_pointings`` (+ attribute ``n_pointings``), written in row blocks."""
    shape = maps.expt.shape
    dset = fh5.create_dataset(
        "map_pointings", shape=shape, dtype=POINTINGS_DTYPE, compression="lzf",
        chunks=pointings_chunks(shape),
    )  # fmt: skip
    for first, stop, rows in maps.pointings_blocks():
        dset[first:stop] = rows
    dset.attrs["n_pointings"] = maps.n_visits


def make_sky_and_sysmaps(
    tile: TileSpec, run: RunFolder, mask_sources: bool = True
) -> Stage01Result:
    """Stage 01: read the tile's inputs, write sysmaps and skymapinfo (json, npy).

    ``mask_sources=False`` measures the background RMS as the tutorial does
    (sigma clipping only); see ``background_maps``.
    """
    with tqdm(total=4, desc="stage 01", leave=False) as steps:
        calexp = read_calexp(tile.calexp, band=tile.band)
        frames = read_frame_metadata(tile.frame_metadata)
        coadd = read_coadd_metadata(tile.coadd_metadata)
        steps.update()
        with floor_call("exposure maps"):
            maps = exposure_maps(frames, calexp.wcs, calexp.shape, tile.frame_metadata)
        steps.update()
        no_data = calexp.plane("NO_DATA")
        background = background_maps(
            calexp.image, no_data, tile.calexp, mask_sources=mask_sources
        )
        info = skymapinfo.build_skymapinfo(
            calexp, coadd, maps, background, tile.band,
            tile.coadd_metadata, tile.frame_metadata,
        )  # fmt: skip
        steps.update()
        invv = inverse_variance(calexp.variance)
        write_sysmaps(run.sysmaps, maps, background.rms, invv)
        skymapinfo.write_skymapinfo(info, run.skymapinfo_json, run.skymapinfo_npy)
        steps.update()
    return Stage01Result(maps, background, info, calexp.shape)


def run(tile: TileSpec, run: RunFolder, params: Params) -> Stage01Result:
    """Stage 01: sysmaps and skymapinfo of the tile (``params.band`` replaces the
    band of a tile of one band when given; a tile of several bands names each
    band's files, and ``hscsim run`` runs the stage for each)."""
    if params.band and len(tile.bands) > 1:
        raise InputError(
            f"{STAGE.name}.band",
            f"tile {tile.tile_name} has bands {', '.join(tile.bands)}: each runs "
            "with its own files; leave band empty",
        )
    if params.band:
        tile = dataclasses.replace(tile, band=params.band)
    return make_sky_and_sysmaps(tile, run, mask_sources=params.mask_sources)
