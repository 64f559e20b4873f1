"""Time stage 01 (sysmaps) on a full-size patch and compare with a per-frame loop.

Usage::

    .venv/bin/python -m benchmarks.bench_sysmaps [--tile TILE_YAML] [--out DIR]
        [--size NX NY] [--seed S]

Input: ``--tile`` if given; else the demo tile (built once with
``hscsim_utils.demo.build`` into ``OUT/demo_tile`` and reused); else, when the demo
builder is not available, synthetic real-format inputs with HSC-like CCD frames
(2048 x 4176 pixels, 150 dithered visits at four rotator angles).

Prints wall and CPU seconds of the whole stage (read inputs, exposure and visit
maps, Background2D, write sysmaps.h5 and skymapinfo), of the exposure and visit
maps alone, and of a per-frame loop in the tutorial's style on the same frames
(bounding box + point-in-polygon test of the pixel centres, maps updated frame
by frame); the speed-up; whether both give identical maps; and, for a demo tile,
the comparison with its truth maps. The loop uses the same pixel convention
(0-based centres, closed borders), fixed-point sums and OR-ed visit bits as the
stage, so its maps must agree bit for bit. Exit status 0 when the targets
(stage <= 15 s wall, speed-up >= 20, identical maps) are met.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from hscsim_utils.hsc import files as hsc_io
from hscsim_utils.hsc.tile import load_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import sky_and_sysmaps as sysmaps

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 15.0
TARGET_SPEEDUP = 20.0


def timed(func, *args):
    """Result, wall seconds and CPU seconds of ``func(*args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = func(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def all_maps(frames, wcs, shape: tuple[int, int]) -> sysmaps.ExposureMaps:
    """The stage's maps, with every block of the visit bitmaps computed too."""
    maps = sysmaps.exposure_maps(frames, wcs, shape)
    for _ in maps.pointings_blocks():
        pass
    return maps


def per_frame_loop(
    corners: np.ndarray,
    expt_q: np.ndarray,
    gain_q: np.ndarray,
    visit: np.ndarray,
    shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """The tutorial's approach: per frame, test every pixel centre of its box."""
    ny, nx = shape
    centre_x, centre_y = np.meshgrid(
        np.arange(nx, dtype=float), np.arange(ny, dtype=float)
    )
    expt = np.zeros(shape, np.int64)
    nexp = np.zeros(shape, np.int64)
    gain = np.zeros(shape, np.int64)
    words = np.zeros((sysmaps.N_WORDS, ny, nx), np.uint64)
    for f, poly in enumerate(tqdm(corners, desc="per-frame loop")):
        box = _bounding_box(poly, shape)
        if box is None:
            continue
        (y0, y1), (x0, x1) = box
        inside = _inside_convex(poly, centre_x[y0:y1, x0:x1], centre_y[y0:y1, x0:x1])
        expt[y0:y1, x0:x1][inside] += expt_q[f]
        nexp[y0:y1, x0:x1][inside] += 1
        gain[y0:y1, x0:x1][inside] += gain_q[f]
        word, bit = divmod(int(visit[f]), sysmaps.BITS_PER_WORD)
        words[word, y0:y1, x0:x1][inside] |= np.uint64(1 << bit)
    return {"expt": expt, "nexp": nexp, "gain": gain, "words": words}


def _bounding_box(poly: np.ndarray, shape: tuple[int, int]):
    """Rows and columns of the pixel centres within the frame's bounding box."""
    if not np.isfinite(poly).all():
        return None
    ny, nx = shape
    x0 = max(int(np.ceil(poly[:, 0].min())), 0)
    x1 = min(int(np.floor(poly[:, 0].max())) + 1, nx)
    y0 = max(int(np.ceil(poly[:, 1].min())), 0)
    y1 = min(int(np.floor(poly[:, 1].max())) + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return None
    return (y0, y1), (x0, x1)


def _inside_convex(poly: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Closed point-in-convex-polygon test by the sign of edge cross products."""
    nxt = np.roll(poly, -1, axis=0)
    orientation = np.sign(np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1]))
    inside = np.full(px.shape, orientation != 0)
    for (ax, ay), (bx, by) in zip(poly, nxt, strict=True):
        inside &= orientation * ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) >= 0
    return inside


def hsc_like_frames(
    shape: tuple[int, int], n_visits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel corners of CCD frames (2048 x 4176) of dithered visits over the patch."""
    from tests.synthetic import rotated_rectangle

    ny, nx = shape
    corners, visits = [], []
    for v in range(n_visits):
        cx, cy = nx / 2 + rng.uniform(-2500, 2500), ny / 2 + rng.uniform(-2500, 2500)
        angle = rng.choice([0.0, 90.0, 180.0, 270.0]) + rng.uniform(-0.5, 0.5)
        c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
        for i in range(-4, 5):
            for j in (-1.5, -0.5, 0.5, 1.5):
                ox, oy = i * (2048 + 70), j * (4176 + 300)
                quad = rotated_rectangle(
                    cx + c * ox - s * oy, cy + s * ox + c * oy, 2048, 4176, angle
                )
                lo, hi = quad.min(axis=0), quad.max(axis=0)
                if (hi > -1).all() and lo[0] < nx and lo[1] < ny:
                    corners.append(quad)
                    visits.append(1000 + 2 * v)
    return np.array(corners), np.array(visits)


def synthetic_tile(out: Path, shape: tuple[int, int], seed: int) -> Path:
    """Real-format inputs with HSC-like frames (when no demo builder exists)."""
    from tests.synthetic import write_synthetic_tile

    rng = np.random.default_rng(seed)
    corners, visits = hsc_like_frames(shape, 150, rng)
    tile = write_synthetic_tile(
        out, shape, corners_xy=corners, visit=visits, n_sources=300, seed=seed
    )
    return tile.tile_file


def input_tile(args: argparse.Namespace) -> tuple[Path, str]:
    """Tile YAML to benchmark and a description of where it comes from."""
    if args.tile:
        return Path(args.tile), "given tile"
    demo_dir = args.out / "demo_tile"
    if (demo_dir / "tile.yaml").is_file():
        return demo_dir / "tile.yaml", "demo tile (reused)"
    try:
        from hscsim_utils.demo.build import build_demo_tile
    except ImportError:
        path = synthetic_tile(args.out / "synthetic_tile", tuple(args.size[::-1]), 1)
        return path, "synthetic inputs (demo builder not available)"
    build_demo_tile(demo_dir, size=tuple(args.size), seed=args.seed)
    return demo_dir / "tile.yaml", "demo tile (built now)"


def print_closure(tile, result: sysmaps.Stage01Result) -> None:
    """Compare the stage's maps with the demo tile's truth maps."""
    with h5py.File(tile.truth_dir / "sysmaps.h5") as fh5:
        truth = {name: fh5[name][...] for name in fh5}
    maps = result.maps
    n_expt = int((maps.expt != truth["map_expt"]).sum())
    n_bits = sum(
        int((maps.pointings[f] != truth["map_pointings"][f]).sum())
        for f in sysmaps.POINTINGS_DTYPE.names
    )  # all five words, the unused ones must be zero
    gain_rel = np.abs(maps.gain - truth["map_gain"]) / np.maximum(truth["map_gain"], 1)
    calexp = hsc_io.read_calexp(tile.calexp)
    data = (truth["map_nexp"] > 0) & (calexp.mask == 0)
    rms = truth["map_rms_realised"]
    quiet = data & (np.abs(calexp.image) < 3 * rms)  # away from bright source light
    ratio = np.median(result.background.rms[quiet] / rms[quiet])
    print("closure with the demo truth:")
    print(
        f"  map_expt pixels differing: {n_expt}; visit-word values differing: {n_bits}"
    )
    print(f"  map_gain max relative difference: {gain_rel.max():.2e}")
    print(f"  background RMS / true realised noise RMS (median): {ratio:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", default="", help="tile YAML (default: demo tile)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--size", type=int, nargs=2, default=(4200, 4200))
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()

    tile_file, origin = input_tile(args)
    tile = load_tile(tile_file)
    run = resolve_run(args.out / "sysmaps_run")
    print(f"input: {origin}: {tile_file}")
    load = os.getloadavg()[0]

    result, stage_s, stage_cpu = timed(sysmaps.make_sky_and_sysmaps, tile, run)
    ny, nx = result.shape
    frames = hsc_io.read_frame_metadata(tile.frame_metadata)
    calexp = hsc_io.read_calexp(tile.calexp)
    maps, maps_s, maps_cpu = timed(all_maps, frames, calexp.wcs, result.shape)
    corners = sysmaps.frame_corners_pixels(frames, calexp.wcs)
    visit, _ = sysmaps.visit_indices(frames["visit"].to_numpy(), tile.frame_metadata)
    gain = frames[["gain1", "gain2", "gain3", "gain4"]].to_numpy(float).mean(axis=1)
    ref, loop_s, loop_cpu = timed(
        per_frame_loop,
        corners,
        sysmaps.to_fixed_point(frames["exptime"], sysmaps.EXPT_QUANTUM),
        sysmaps.to_fixed_point(gain, sysmaps.GAIN_QUANTUM),
        visit,
        result.shape,
    )

    same = {
        "map_expt": np.array_equal(
            maps.expt, sysmaps.from_fixed_point(ref["expt"], sysmaps.EXPT_QUANTUM)
        ),
        "map_nexp": np.array_equal(maps.nexp, ref["nexp"]),
        "map_gain": np.array_equal(
            maps.gain, sysmaps.from_fixed_point(ref["gain"], sysmaps.GAIN_QUANTUM)
        ),
        "map_pointings": all(
            np.array_equal(rows[f"bit{w + 1}"], ref["words"][w, first:stop])
            for first, stop, rows in maps.pointings_blocks()
            for w in range(sysmaps.N_WORDS)
        ),
    }
    n_diff = int((maps.nexp != ref["nexp"]).sum())
    print(f"patch {nx} x {ny}, {len(frames)} frames, {maps.n_visits} visits")
    cores = os.cpu_count()
    print(f"wall / CPU seconds (load average at start {load:.1f}, {cores} cores)")
    print(
        f"stage 01 (read, maps, Background2D, write): {stage_s:6.2f} / "
        f"{stage_cpu:6.2f} s (target <= {TARGET_SECONDS:.0f} s wall)"
    )
    print(f"exposure + visit maps (vectorised): {maps_s:6.2f} / {maps_cpu:6.2f} s")
    print(f"per-frame loop (tutorial style):    {loop_s:6.2f} / {loop_cpu:6.2f} s")
    speedup = loop_s / maps_s
    print(
        f"speed-up of the maps: {speedup:.1f} x wall, {loop_cpu / maps_cpu:.1f} x CPU"
        f" (target >= {TARGET_SPEEDUP:.0f})"
    )
    print("identical maps: " + ", ".join(f"{k} {v}" for k, v in same.items()))
    print(f"pixels with a different number of exposures: {n_diff}")
    if tile.truth_dir is not None and (tile.truth_dir / "sysmaps.h5").is_file():
        print_closure(tile, result)
    ok = all(same.values()) and stage_s <= TARGET_SECONDS
    ok &= speedup >= TARGET_SPEEDUP
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
