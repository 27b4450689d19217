#!/usr/bin/env bash
# The GPU check (see dev/gpu_check.py): run on a machine with a CUDA GPU, in under 10 minutes.
#
#   bash dev/gpu_check.sh [--out DIR] [--iters N] [--only WORD ...]
#
# Uses $PY, else the project's .venv (make env), else python3. Refuses (exit code 2) without CUDA.
# Copy the summary table (OUT/gpu.md, default output/gpu_check/gpu.md) to docs/benchmarks/gpu.md.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device is visible to $PY (torch.cuda.is_available() is False)." >&2
    echo "gpu_check: this check needs a CUDA GPU; 'python dev/gpu_check.py --plan' lists its steps." >&2
    exit 2
fi
exec "$PY" dev/gpu_check.py "$@"
