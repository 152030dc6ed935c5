"""The N-panel tab "Likeness3D" in the 3D view: connection, subject, refine with progress, and the job list."""

from __future__ import annotations

import bpy

from . import jobs, preferences, request, session

STATE_ICONS = {"connected": "CHECKMARK", "connecting": "SORTTIME", "lost": "ERROR", "error": "CANCEL",
               "disconnected": "UNLINKED"}
JOB_ICONS = {"SUBMITTING": "EXPORT", "QUEUED": "SORTTIME", "RUNNING": "PLAY", "FETCHING": "IMPORT",
             "DONE": "CHECKMARK", "FAILED": "ERROR", "CANCELLED": "X"}


def format_seconds(seconds: float) -> str:
    if seconds < 0:
        return "--"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LIKENESS_UL_references(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.prop(item, "image", text="", emboss=False, icon="IMAGE_DATA")
        row.prop(item, "camera", text="", emboss=False, icon="CAMERA_DATA")


class LIKENESS_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=f"{item.pipeline} {item.job_id[:8]}", icon=JOB_ICONS.get(item.state, "DOT"))
        row.label(text=item.state.title())


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Likeness3D"


class LIKENESS_PT_main(_Panel, bpy.types.Panel):
    bl_label = "Likeness3D"
    bl_idname = "LIKENESS_PT_main"

    def draw(self, context):
        rt = context.window_manager.likeness
        row = self.layout.row()
        row.label(text=rt.message or "Refine a mesh from photos of the real subject", icon="INFO")


class LIKENESS_PT_connection(_Panel, bpy.types.Panel):
    bl_label = "Connection"
    bl_parent_id = "LIKENESS_PT_main"

    def draw(self, context):
        layout = self.layout
        rt = context.window_manager.likeness
        prefs = preferences.get(context)
        if isinstance(prefs, bpy.types.AddonPreferences):
            layout.prop(prefs, "address", text="")
        else:
            layout.label(text=prefs.address)
        row = layout.row(align=True)
        row.label(text=rt.state.title(), icon=STATE_ICONS.get(rt.state, "QUESTION"))
        if session.client() is None:
            row.operator("likeness.connect", text="Connect", icon="LINKED")
        else:
            row.operator("likeness.connect", text="Reconnect", icon="FILE_REFRESH")
            row.operator("likeness.disconnect", text="", icon="UNLINKED")
        if rt.state == "connected":
            col = layout.column(align=True)
            col.label(text=f"Server: {rt.version}")
            col.label(text=f"GPUs: {rt.gpus}")
            col.label(text=f"Pipelines: {rt.pipelines}")
            col.label(text=f"Models: {rt.models}")


class LIKENESS_PT_subject(_Panel, bpy.types.Panel):
    bl_label = "Subject"
    bl_parent_id = "LIKENESS_PT_main"

    def draw(self, context):
        layout = self.layout
        props = context.scene.likeness
        layout.prop(props, "target")
        layout.prop(props, "class_word")
        layout.label(text="References")
        row = layout.row()
        row.template_list("LIKENESS_UL_references", "", props, "references", props, "reference_index", rows=3)
        col = row.column(align=True)
        col.operator("likeness.reference_add", text="", icon="ADD")
        col.operator("likeness.reference_remove", text="", icon="REMOVE")
        if 0 <= props.reference_index < len(props.references):
            ref = props.references[props.reference_index]
            col = layout.column(align=True)
            col.prop(ref, "image")
            col.prop(ref, "camera")
            col.prop(ref, "frame_method")
        layout.operator("likeness.reference_add", icon="OUTLINER_OB_CAMERA")


class LIKENESS_PT_animation(_Panel, bpy.types.Panel):
    """The 4D settings: the "Animated" toggle in the header, the frame range, each reference's frame."""

    bl_label = "Animated"
    bl_parent_id = "LIKENESS_PT_subject"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(context.scene.likeness, "animated", text="")

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        props = scene.likeness
        layout.active = props.animated
        layout.prop(props, "use_scene_range")
        col = layout.column(align=True)
        if props.use_scene_range:
            col.label(text=f"Frames {scene.frame_start}..{scene.frame_end} (the scene's range)")
        else:
            col.prop(props, "frame_start")
            col.prop(props, "frame_end")
        col.prop(props, "frame_step")
        if 0 <= props.reference_index < len(props.references):
            ref = props.references[props.reference_index]
            layout.prop(ref, "frame", text=f"{ref.image.name if ref.image else 'Reference'} at Frame")


class LIKENESS_PT_refine(_Panel, bpy.types.Panel):
    bl_label = "Refine"
    bl_parent_id = "LIKENESS_PT_main"

    def draw(self, context):
        layout = self.layout
        props = context.scene.likeness
        layout.prop(props, "pipeline")
        layout.prop(props, "quality")
        note = request.quality_note(context.scene)
        if note:
            layout.label(text=note, icon="INFO")
        layout.prop(props, "config_json")
        row = layout.row(align=True)
        row.scale_y = 1.5
        row.operator("likeness.refine", icon="SHADERFX")
        row.operator("likeness.cancel", text="", icon="CANCEL")

        _, item = jobs.find(props.active_job) if props.active_job else (None, None)
        if item is None:
            return
        box = layout.box()
        if item.state in ("FAILED", "CANCELLED"):
            box.label(text=f"{item.state.title()}: {item.message}", icon=JOB_ICONS[item.state])
        else:
            stage = f"{item.stage}: " if item.stage else ""
            box.progress(factor=item.progress, type="BAR",
                         text=f"{stage}{item.step}/{item.total}  ETA {format_seconds(item.eta)}")
            box.label(text=item.text or item.state.title(), icon=JOB_ICONS.get(item.state, "DOT"))
        image = props.preview
        if image is not None:
            image.preview_ensure()
            box.template_icon(icon_value=image.preview.icon_id, scale=8.0)


class LIKENESS_PT_jobs(_Panel, bpy.types.Panel):
    bl_label = "Jobs"
    bl_parent_id = "LIKENESS_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        props = context.scene.likeness
        row = layout.row()
        row.template_list("LIKENESS_UL_jobs", "", props, "jobs", props, "job_index", rows=3)
        row.operator("likeness.job_remove", text="", icon="X")
        row = layout.row(align=True)
        row.operator("likeness.job_import", icon="IMPORT")
        row.operator("likeness.job_fetch", icon="FILE_REFRESH")
        if 0 <= props.job_index < len(props.jobs):
            item = props.jobs[props.job_index]
            col = layout.column(align=True)
            col.label(text=f"Job {item.job_id}")
            col.label(text=item.message or item.text)
            if item.result_dir:
                col.label(text=item.result_dir, icon="FILE_FOLDER")
        layout.operator("likeness.import_file", icon="FILEBROWSER")


CLASSES = (
    LIKENESS_UL_references,
    LIKENESS_UL_jobs,
    LIKENESS_PT_main,
    LIKENESS_PT_connection,
    LIKENESS_PT_subject,
    LIKENESS_PT_animation,
    LIKENESS_PT_refine,
    LIKENESS_PT_jobs,
)
