"""register/unregister: twice in a row, leaving nothing of the add-on behind."""

import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
import addon_utils
import pytest

from likeness3d.addon import operators, panels, preferences, properties, reports


CLASSES = [c for m in (preferences, properties, reports, operators, panels) for c in m.CLASSES]


def _ours():
    return {
        "classes": [c.__name__ for c in CLASSES if c.is_registered],
        "scene_prop": hasattr(bpy.types.Scene, "likeness"),
        "wm_prop": hasattr(bpy.types.WindowManager, "likeness"),
        "ops": [name for name in dir(bpy.ops.likeness)],
        "handlers": [h.__name__ for h in bpy.app.handlers.load_post if h.__module__.startswith("likeness3d")],
        "frame_handlers": [h.__name__ for h in bpy.app.handlers.frame_change_pre
                           if h.__module__.startswith("likeness3d")],
        "prefs": "likeness3d" in bpy.context.preferences.addons,
    }


def test_register_unregister_twice_leaves_nothing():
    enabled = _ours()  # the fixture enabled the add-on
    assert len(enabled["classes"]) == len(CLASSES) == 24 and enabled["scene_prop"] and enabled["wm_prop"]
    assert {"connect", "refine", "cancel", "reference_add", "import_file", "job_import"} <= set(enabled["ops"])
    assert enabled["handlers"] == ["_on_load_post"] and enabled["prefs"]
    assert enabled["frame_handlers"] == ["on_frame_change"]  # splat sequences follow the scene frame
    for _ in range(2):
        addon_utils.disable("likeness3d", default_set=True)
        gone = _ours()
        assert gone == {"classes": [], "scene_prop": False, "wm_prop": False, "ops": [], "handlers": [],
                        "frame_handlers": [], "prefs": False}
        assert addon_utils.enable("likeness3d", default_set=True) is not None
        assert _ours() == enabled


def test_preferences_and_scene_properties_defaults():
    prefs = preferences.get()
    assert isinstance(prefs, bpy.types.AddonPreferences)
    assert prefs.address == "tcp://127.0.0.1:5555" and prefs.timeout == 30.0
    props = bpy.context.scene.likeness
    assert props.pipeline == "inspect" and props.quality == "AUTO" and props.class_word == "object"
    assert len(props.references) == 0 and len(props.jobs) == 0
    assert bpy.context.window_manager.likeness.state == "disconnected"


def test_root_package_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, likeness3d; heavy = {'bpy', 'torch', 'zmq', 'numpy'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _import_a_splat_file(tmp_path) -> set:
    from files import random_splats, write_ply

    path = write_ply(tmp_path / "cloud.ply", random_splats(20))
    return bpy.ops.likeness.import_file(filepath=str(path))


def test_import_operator_with_the_addon_entry(tmp_path):
    assert isinstance(preferences.get(), bpy.types.AddonPreferences)
    preferences.get().splat_display_cap = 7
    assert _import_a_splat_file(tmp_path) == {"FINISHED"}
    assert preferences.get().splat_display_cap == 7


def test_import_operator_registered_by_likeness3d_register(tmp_path):
    """A script (or another tool) registers the classes with likeness3d.register(), with no add-on entry: the
    preferences are their defaults and the operators that read them work."""
    import likeness3d

    addon_utils.disable("likeness3d", default_set=True)
    try:
        likeness3d.register()
        assert "likeness3d" not in bpy.context.preferences.addons
        prefs = preferences.get()
        assert not isinstance(prefs, bpy.types.AddonPreferences)
        assert {name: getattr(prefs, name) for name in preferences.DEFAULTS} == preferences.DEFAULTS
        assert prefs.address == "tcp://127.0.0.1:5555" and prefs.splat_display_cap == 250_000
        assert _import_a_splat_file(tmp_path) == {"FINISHED"}
        assert any("f_dc" in o.data.attributes for o in bpy.data.objects if o.type == "MESH")
    finally:
        likeness3d.unregister()
        assert addon_utils.enable("likeness3d", default_set=True) is not None


def test_preference_defaults_match_the_properties():
    prefs = preferences.get()
    assert isinstance(prefs, bpy.types.AddonPreferences)
    assert {name: getattr(prefs, name) for name in preferences.DEFAULTS} == pytest.approx(preferences.DEFAULTS)
