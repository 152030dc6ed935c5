#!/usr/bin/env bash
# The add-on's test environment: the bpy wheel (Blender as a Python module) in .venv-blender.
# bpy 5.0.x needs Python 3.11 and pins numpy < 2, so it cannot share .venv with the backend.
set -euo pipefail
cd "$(dirname "$0")/.."
PY311=${PY311:-$(command -v python3.11 || command -v python3)}
"$PY311" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"bpy 5.0 needs Python 3.11, found {sys.version}"'
if [ ! -x .venv-blender/bin/python ]; then
  "$PY311" -m venv .venv-blender
fi
pip() { .venv-blender/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "^WARNING: Location" >&2); }
pip install "bpy==5.0.*" pyzmq msgpack pytest pillow
pip install --no-deps -e .
if ! .venv-blender/bin/python -c "import bpy" 2>/dev/null; then
  # the bpy wheel links a few X11/GL libraries that minimal images lack
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq libx11-6 libxrender1 libxi6 libxkbcommon0 libsm6 libgl1 libegl1 >/dev/null
  fi
  .venv-blender/bin/python -c "import bpy" || { echo "bpy does not import: see the error above" >&2; exit 1; }
fi
echo "Blender test environment ready in .venv-blender ($(.venv-blender/bin/python -c 'import bpy; print("bpy", bpy.app.version_string)'))"
