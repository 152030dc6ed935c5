#!/usr/bin/env bash
# Install the backend (and the dev tools) into .venv at the repo root. Idempotent; safe to re-run.
#   TORCH_SPEC   torch requirement to install first (default torch==2.13.0; on a machine without a local
#                CPU wheel this comes from PyPI, with CUDA on Linux)
#   PYTHON       interpreter for the venv (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
.venv/bin/python -c "import torch" 2>/dev/null || pip install "$TORCH_SPEC"
pip install -c scripts/constraints.txt -e ".[backend,dev,ray]"  # ray: serve --executor ray and its tests
echo "backend installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
