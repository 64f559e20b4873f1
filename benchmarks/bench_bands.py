"""Five bands against one: the chain on the same DEMO patch, i band and g r i z y.

    .venv/bin/python -m benchmarks.bench_bands                 # full DEMO patch
    .venv/bin/python -m benchmarks.bench_bands --size 2000     # a smaller one

A GalSim DEMO tile is built in the five bands (its build time is printed, not
counted); then, in the same run, the whole chain (stages 01-09, through the
runner as ``hscsim run``) runs on its i band alone (``--bands i``: the i band of
a five-band build is pixel for pixel the i-only build), on all five bands, and
on the i band again (the first chain of a fresh installation also compiles
numba's on-disk caches; the ratio uses the second i-band chain).
Printed: both chains' stage tables (the five-band one with its band runs, which
run beside the detection band's stages), the ratio of the two wall times and
the peak memory of the whole process tree (this script, the runner, its worker
processes and every kernel). Targets (issue, 2 cores, full patch): five-band
chain at most 2.5 times the i-band chain, peak memory at most 8 GB. Everything
is also written to ``DIR/bench_bands.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_chain import chain, print_chain

RATIO_TARGET = 2.5
PEAK_TARGET_GB = 8.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4200)
    parser.add_argument("--bands", default="grizy")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--tile",
        type=Path,
        default=None,
        help="a DEMO tile of these bands built before (not rebuilt)",
    )
    parser.add_argument(
        "--no-repeat",
        dest="repeat",
        action="store_false",
        help="run the i-band chain once, before the other (not again after it)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="hscsim-bench-bands-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"benchmark folder {out}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    from hscsim_utils.demo.generate import build_tile

    n, build_s = args.size, None
    if args.tile is not None:
        tile = args.tile.resolve()
        print(f"the tile {tile} (built before)")
    else:
        print(f"building the DEMO tile of {n} x {n} px in {args.bands} ...",
              flush=True)  # fmt: skip
        t0 = time.perf_counter()
        tile = build_tile(out / "input", (n, n), bands=args.bands)
        build_s = round(time.perf_counter() - t0, 1)
        print(f"built in {build_s:.0f} s")
    first = chain(tile, out / "run_i", bands="i")
    print_chain(f"DEMO {n} x {n}, i band (first run)", first)
    many = chain(tile, out / f"run_{args.bands}")
    print_chain(f"DEMO {n} x {n}, bands {args.bands}", many)
    one = first
    if args.repeat:
        # the first chain of a fresh installation also compiles numba's caches
        one = chain(tile, out / "run_i", bands="i")
        print_chain(f"DEMO {n} x {n}, i band (again, after the {args.bands} chain)",
                    one)  # fmt: skip
        print(f"i chain: first run {first['chain_s']:.1f} s, again "
              f"{one['chain_s']:.1f} s; the ratio uses the second")  # fmt: skip
    ratio = many["chain_s"] / one["chain_s"]
    print(f"\n{args.bands} chain / i chain: {many['chain_s']:.0f} s / "
          f"{one['chain_s']:.0f} s = {ratio:.2f} (<= {RATIO_TARGET}); peak of the "
          f"process tree {many['peak_gb']:.2f} GB (<= {PEAK_TARGET_GB}), i band "
          f"alone {one['peak_gb']:.2f} GB")  # fmt: skip
    report = {"cpu_count": os.cpu_count(), "size": n, "bands": args.bands,
              "build_s": build_s, "i": one, "i_first": first, args.bands: many,
              "ratio": round(ratio, 3)}  # fmt: skip
    (out / "bench_bands.json").write_text(json.dumps(report, indent=2))
    print(f"written {out / 'bench_bands.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
