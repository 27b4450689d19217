#!/usr/bin/env bash
# Lint as Detectron2's dev/linter.sh does: isort, black (line length 100), flake8; their settings
# are in setup.cfg.
#   dev/linter.sh           format in place (isort, black), then flake8
#   dev/linter.sh --check   change nothing; fail on any difference or flake8 finding (CI)
# PYTHON: the interpreter that has the linters (default .venv/bin/python; `make env` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PATHS=(libra_d2 projects dev tests datasets configs setup.py)
if [[ "${1:-}" == "--check" ]]; then
    "$PY" -m isort --check-only --diff --quiet "${PATHS[@]}"
    "$PY" -m black --check --quiet -l 100 "${PATHS[@]}"
else
    "$PY" -m isort --quiet "${PATHS[@]}"
    "$PY" -m black --quiet -l 100 "${PATHS[@]}"
fi
"$PY" -m flake8 "${PATHS[@]}"
echo "lint: isort, black -l 100, flake8 clean"
