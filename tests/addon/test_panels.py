"""The panels' draw code in each state of the add-on.

Background Blender has no window, so no UILayout can exist; the draw functions run against a recorder
that checks every property, operator, UI list and icon they name against Blender's real RNA, and keeps
what they would show so the test can read it."""

import types

import bpy
import numpy as np

from likeness3d.addon import jobs, panels
from scenes import subject_scene

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class Recorder:
    """Stands in for bpy.types.UILayout: validates names against RNA and records texts."""

    def __init__(self, shown):
        self.shown = shown
        self.scale_y = 1.0

    def _icon(self, icon):
        assert icon in ICONS, f"unknown icon {icon!r}"

    def row(self, **_kw):
        return Recorder(self.shown)

    column = box = row

    def label(self, text="", icon="NONE", **_kw):
        self._icon(icon)
        self.shown.append(text)

    def prop(self, data, name, text=None, icon="NONE", **_kw):
        self._icon(icon)
        assert name in data.bl_rna.properties, f"{type(data).__name__} has no property {name!r}"
        self.shown.append(f"{name}={getattr(data, name)!r}")

    def operator(self, idname, text=None, icon="NONE", **_kw):
        self._icon(icon)
        module, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, module)), f"no operator {idname}"
        self.shown.append(f"[{text or idname}]")

    def template_list(self, listtype, listid, data, propname, active_data, active_propname, **_kw):
        ul = getattr(bpy.types, listtype)
        assert propname in data.bl_rna.properties and active_propname in active_data.bl_rna.properties
        for index, item in enumerate(getattr(data, propname)):
            ul.draw_item(ul, bpy.context, self, data, item, 0, active_data, active_propname, index)

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0 and type in ("BAR", "RING")
        self.shown.append(f"progress {factor:.2f} {text}")

    def template_icon(self, icon_value=0, scale=1.0):
        assert icon_value >= 0
        self.shown.append(f"icon {icon_value}")


def draw_all() -> list[str]:
    shown = []
    for cls in panels.CLASSES:
        if issubclass(cls, bpy.types.Panel):
            cls.draw(types.SimpleNamespace(layout=Recorder(shown)), bpy.context)
    return shown


def test_panels_disconnected_and_empty():
    shown = draw_all()
    assert "Disconnected" in shown and "[Connect]" in shown
    assert "target=None" in shown and "pipeline='inspect'" in shown


def test_panels_connected_with_a_running_job_and_a_preview():
    subject_scene(n_refs=2)
    rt = bpy.context.window_manager.likeness
    rt.state, rt.version, rt.gpus, rt.pipelines, rt.models = "connected", "likeness3d 0.1.0", "cuda:0", "inspect", "none"
    props = bpy.context.scene.likeness
    item = props.jobs.add()
    item.job_id, item.pipeline, item.state = "feedbeef01", "inspect", "RUNNING"
    item.stage, item.step, item.total, item.eta, item.text = "inspect", 2, 4, 75.0, "reference photo1"
    props.active_job = item.job_id
    jobs.show_preview(bpy.context.scene, np.full((16, 16, 4), 200, np.uint8))
    shown = draw_all()
    assert "GPUs: cuda:0" in shown and "[Reconnect]" not in shown and "[Connect]" in shown  # no client: Connect
    assert "progress 0.50 inspect: 2/4  ETA 1:15" in shown
    assert "reference photo1" in shown and any(s.startswith("icon ") for s in shown)
    assert "inspect feedbeef" in shown  # the job list row


def test_panels_show_a_failed_job_message():
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    item = props.jobs.add()
    item.job_id, item.state, item.message = "abad1dea", "FAILED", "UnknownPipeline: no pipeline 'x'"
    props.active_job = item.job_id
    assert "Failed: UnknownPipeline: no pipeline 'x'" in draw_all()


def test_format_seconds():
    assert panels.format_seconds(-1) == "--"
    assert panels.format_seconds(75) == "1:15"
    assert panels.format_seconds(3725) == "1:02:05"
