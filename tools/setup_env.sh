#!/usr/bin/env bash
# Create .venv and install hscsim with its pinned dependencies.
# Called by `make setup`; make re-runs it only when pyproject.toml or
# constraints.txt change, so a second `make` costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" - <<'PY'
import sys
if sys.version_info[:2] != (3, 11):
    sys.exit(f"hscsim needs Python 3.11, found {sys.version.split()[0]}")
PY
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# pip warns about every package absent from this machine's local indexes; hide that noise.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }; }
echo "installing hscsim and its pinned dependencies into .venv (a few minutes the first time)"
quiet .venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
quiet .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
# The notebooks' kernel: this environment's interpreter under a name of its own, so
# that no "python3" kernel of the user's (~/.local/share/jupyter) can stand in.
.venv/bin/python -m ipykernel install --sys-prefix --name hscsim \
    --display-name "Python 3 (hscsim)" >/dev/null
