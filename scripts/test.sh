#!/usr/bin/env bash
# Install everything the tests need and run the whole suite: the backend and protocol tests in .venv,
# the add-on tests in real Blender (the bpy wheel) in .venv-blender. Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
status=0
.venv/bin/python -m pytest tests --ignore=tests/addon -q -p no:randomly "$@" || status=$?
if ls tests/addon/test_*.py >/dev/null 2>&1; then
  bash scripts/install_blender_env.sh || exit 1
  .venv-blender/bin/python -m pytest tests/addon -q "$@" || status=$?
fi
exit $status
