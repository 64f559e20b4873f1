"""Screenshot of a run's report.html (its summary page) in headless Chromium.

    .venv/bin/python tools/report_screenshot.py RUN/report.html [--out PNG]

Needs Chromium (Debian: ``apt-get install chromium``). Writes the PNG beside the
report unless ``--out`` says otherwise and prints its path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
    "--no-first-run", "--disable-background-networking", "--disable-sync",
    "--disable-component-update", "--window-size=1280,2000",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("Chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"{args.report}: report not found", file=sys.stderr)
        return 2
    out = (args.out or args.report.with_name("report_summary.png")).resolve()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
             args.report.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
