#!/usr/bin/env bash
# Create (or refresh) the virtual environment .venv with qgen and its test tools.
#   QGEN_VENV         where to put the environment (default: .venv)
#   QGEN_CONSTRAINTS  pip constraints file (default: scripts/constraints-cpu.txt,
#                     which pins the CPU build of torch); set it empty to let pip choose.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${QGEN_VENV:-.venv}"
constraints="${QGEN_CONSTRAINTS-scripts/constraints-cpu.txt}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
args=(-q --disable-pip-version-check)
if [ -n "$constraints" ]; then
  args+=(-c "$constraints")
fi
"$venv/bin/python" -m pip install "${args[@]}" -e ".[test]"
"$venv/bin/python" -c "import qgen, torch; print(f'qgen {qgen.__version__} with torch {torch.__version__} in $venv')"
