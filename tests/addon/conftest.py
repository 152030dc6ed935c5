"""Add-on tests run in real Blender (the bpy wheel). From any other environment this folder is skipped:
no test module is collected, so nothing here imports bpy there."""

import importlib.util
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("bpy") is None:
    collect_ignore_glob = ["test_*.py"]

    def pytest_report_header(config):
        return "tests/addon: bpy is not installed here, the Blender add-on tests are not collected"

else:

    @pytest.fixture(autouse=True)
    def blender():
        """A fresh empty factory scene with the add-on (and the glTF importer) enabled, per test."""
        import addon_utils
        import bpy

        bpy.ops.wm.read_factory_settings(use_empty=True)
        addon_utils.enable("io_scene_gltf2", default_set=True)
        mod = addon_utils.enable("likeness3d", default_set=True)
        assert mod is not None, "the likeness3d add-on failed to enable"
        yield bpy
        from likeness3d.addon import session

        session.shutdown()


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


sys.path.insert(0, str(Path(__file__).resolve().parent))
