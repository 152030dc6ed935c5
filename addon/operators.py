"""Operators: thin wrappers that read properties, call one function, and report.

Interactively nothing here waits on the network: requests go to the worker thread and the timer finishes
them. In background mode (`blender -b`), where timers never fire, Refine, Connect and Fetch block and poll.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..protocol.errors import ProtocolError
from . import importers, jobs, preferences, session
from .gather import GatherError, background_image_of, background_user_of
from .gather_anim import still_of_shown_frame
from .images import ImageError
from .presets import ConfigError
from .request import build_asset, build_job_config, quality_note

# the failures a user can cause and fix: reported as they are, never as a traceback
USER_ERRORS = (ProtocolError, GatherError, ImageError, ConfigError, session.ConnectError, ValueError,
               FileNotFoundError, KeyError)

WAIT_MODES = [
    ("AUTO", "Auto", "Block in background mode (no timers there), return at once interactively"),
    ("BLOCK", "Block", "Wait for the job to end (and its results to be imported)"),
    ("ASYNC", "Async", "Return at once; the timer (or session.tick) follows the job"),
]


def _blocking(mode: str) -> bool:
    return mode == "BLOCK" or (mode == "AUTO" and bpy.app.background)


def _job_item(context, job_id: str):
    props = context.scene.likeness
    if job_id:
        return jobs.find(job_id)[1]
    if 0 <= props.job_index < len(props.jobs):
        return props.jobs[props.job_index]
    return None


class LIKENESS_OT_connect(bpy.types.Operator):
    """Connect to the Likeness3D backend at the address in the preferences"""

    bl_idname = "likeness.connect"
    bl_label = "Connect"

    address: StringProperty(name="Address", description="Override the preferences' address (optional)")
    mode: EnumProperty(name="Wait", items=WAIT_MODES, default="AUTO")

    def execute(self, context):
        try:
            session.connect(context, self.address or None, on_ready=jobs.reattach_all)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not _blocking(self.mode):
            return {"FINISHED"}
        session.wait_until(lambda: not session.busy())
        rt = context.window_manager.likeness
        if rt.state != "connected":
            self.report({"ERROR"}, f"Likeness3D: {rt.state}: {rt.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Likeness3D: {rt.message} ({rt.version}; GPUs: {rt.gpus})")
        return {"FINISHED"}


class LIKENESS_OT_disconnect(bpy.types.Operator):
    """Disconnect from the backend (its jobs keep running; connecting again follows them)"""

    bl_idname = "likeness.disconnect"
    bl_label = "Disconnect"

    @classmethod
    def poll(cls, context):
        return session.client() is not None

    def execute(self, context):
        session.close()
        return {"FINISHED"}


class LIKENESS_OT_reference_add(bpy.types.Operator):
    """Add a reference: the active camera (or the scene camera) with its background image or a chosen file"""

    bl_idname = "likeness.reference_add"
    bl_label = "Add Reference from Active Camera"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Image File", subtype="FILE_PATH",
                             description="The photo; empty: the camera's background image")
    camera: StringProperty(name="Camera", description="Camera object name; empty: the active or scene camera")
    use_file: BoolProperty(name="Choose a File", description="Pick a file even when the camera has a background image")
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    @staticmethod
    def _camera(context, name: str):
        if name:
            return bpy.data.objects.get(name)
        obj = context.active_object
        return obj if obj is not None and obj.type == "CAMERA" else context.scene.camera

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        return (obj is not None and obj.type == "CAMERA") or context.scene.camera is not None

    def invoke(self, context, event):
        image, _ = background_image_of(self._camera(context, self.camera))
        if image is None or self.use_file:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        cam = self._camera(context, self.camera)
        if cam is None or cam.type != "CAMERA":
            self.report({"ERROR"}, f"no camera: {self.camera!r} is not a camera object" if self.camera
                        else "no camera: make a camera active or set the scene camera")
            return {"CANCELLED"}
        background, frame_method = background_image_of(cam)
        if self.filepath:
            try:
                image = bpy.data.images.load(bpy.path.abspath(self.filepath), check_existing=True)
            except RuntimeError as exc:
                self.report({"ERROR"}, f"cannot read image {self.filepath!r}: {exc}")
                return {"CANCELLED"}
        elif background is not None:
            image = background
        else:
            self.report({"ERROR"}, f"camera {cam.name!r} has no background image: choose an image file")
            return {"CANCELLED"}
        if image is background and image.source in ("MOVIE", "SEQUENCE"):
            try:  # the frame of the video the camera shows now becomes the reference's photo
                image = still_of_shown_frame(image, background_user_of(cam), context.scene.frame_current)
            except GatherError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            background = image
        props = context.scene.likeness
        ref = props.references.add()
        ref.image, ref.camera, ref.frame_method = image, cam, frame_method if background is image else "FIT"
        ref.frame = context.scene.frame_current
        props.reference_index = len(props.references) - 1
        return {"FINISHED"}


class LIKENESS_OT_reference_remove(bpy.types.Operator):
    """Remove the selected reference"""

    bl_idname = "likeness.reference_remove"
    bl_label = "Remove Reference"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Index", default=-1, description="Reference to remove; -1: the selected one")

    @classmethod
    def poll(cls, context):
        return len(context.scene.likeness.references) > 0

    def execute(self, context):
        props = context.scene.likeness
        index = props.reference_index if self.index < 0 else self.index
        if not 0 <= index < len(props.references):
            self.report({"ERROR"}, f"no reference {index}: there are {len(props.references)}")
            return {"CANCELLED"}
        props.references.remove(index)
        props.reference_index = max(0, min(index, len(props.references) - 1))
        return {"FINISHED"}


class LIKENESS_OT_refine(bpy.types.Operator):
    """Send the target mesh and its references to the backend and run the chosen pipeline"""

    bl_idname = "likeness.refine"
    bl_label = "Refine"

    mode: EnumProperty(name="Wait", items=WAIT_MODES, default="AUTO")
    timeout: FloatProperty(name="Timeout", min=0.0, description="Seconds to wait when blocking; 0: preferences")

    @classmethod
    def poll(cls, context):
        target = context.scene.likeness.target
        return target is not None and target.type == "MESH"

    def execute(self, context):
        scene = context.scene
        props = scene.likeness
        blocking = _blocking(self.mode)
        try:
            asset = build_asset(context, scene)  # 1. gather on the main thread (bpy)
            if session.client() is None:
                session.connect(context, on_ready=jobs.reattach_all)
            if props.quality == "AUTO" and session.backend_has_gpu() is None:  # Auto needs the backend's hello
                session.wait_until(lambda: session.backend_has_gpu() is not None or session.runtime().state == "error",
                                   preferences.get(context).timeout)
            config = build_job_config(scene)
            note = quality_note(scene)
            if note:
                self.report({"INFO"}, f"Likeness3D: {note}")
            key = jobs.submit(scene, asset, props.pipeline, config)  # 2. send from the worker thread
        except USER_ERRORS as exc:
            self.report({"ERROR"}, str(exc) if not isinstance(exc, ProtocolError) else jobs.describe(exc))
            return {"CANCELLED"}
        if not blocking:
            self.report({"INFO"}, f"Likeness3D: {props.pipeline} job submitted")
            return {"FINISHED"}

        # 3. background mode: block and poll until the job ends and its results are imported
        jobs.report_outcome_here(key)
        timeout = self.timeout or preferences.get(context).job_timeout or None
        if not jobs.wait(key, timeout):
            self.report({"ERROR"}, f"Likeness3D: the job did not finish within {timeout} s (it keeps running)")
            return {"CANCELLED"}
        _, item = jobs.find(key)
        if item is None or item.state != "DONE":
            message = item.message if item is not None else "the job item was removed"
            state = item.state.lower() if item is not None else "gone"
            self.report({"ERROR"}, f"Likeness3D job {item.job_id if item else key} {state}: {message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Likeness3D job {item.job_id} done: {item.text}")
        return {"FINISHED"}


class LIKENESS_OT_cancel(bpy.types.Operator):
    """Cancel the running job"""

    bl_idname = "likeness.cancel"
    bl_label = "Cancel"

    job_id: StringProperty(name="Job", description="Job to cancel; empty: the panel's active job")

    @classmethod
    def poll(cls, context):
        props = context.scene.likeness
        _, item = jobs.find(props.active_job) if props.active_job else (None, None)
        return session.client() is not None and item is not None and not item.finished

    def execute(self, context):
        job_id = self.job_id or context.scene.likeness.active_job
        _, item = jobs.find(job_id)
        if item is None or item.job_id.startswith("pending-"):
            self.report({"ERROR"}, f"no job {job_id!r} to cancel (not accepted yet, or not in this file)")
            return {"CANCELLED"}
        try:
            jobs.cancel(item.job_id)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, jobs.describe(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Likeness3D: cancelling {item.job_id}")
        return {"FINISHED"}


class LIKENESS_OT_job_fetch(bpy.types.Operator):
    """Download the selected job's results (again) from the backend"""

    bl_idname = "likeness.job_fetch"
    bl_label = "Fetch"

    job_id: StringProperty(name="Job", description="Empty: the job selected in the list")
    mode: EnumProperty(name="Wait", items=WAIT_MODES, default="AUTO")

    @classmethod
    def poll(cls, context):
        item = _job_item(context, "")
        return session.client() is not None and item is not None and not item.job_id.startswith("pending-")

    def execute(self, context):
        item = _job_item(context, self.job_id)
        if item is None:
            self.report({"ERROR"}, f"no job {self.job_id!r} in this file")
            return {"CANCELLED"}
        job_id = item.job_id
        item.imported = False  # fetching again imports again
        try:
            jobs.fetch(job_id)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, jobs.describe(exc))
            return {"CANCELLED"}
        if _blocking(self.mode):
            session.wait_until(lambda: not session.busy())
            _, item = jobs.find(job_id)
            if item is None or item.state != "DONE":
                self.report({"ERROR"}, f"Likeness3D: fetching {job_id} failed: {item.message if item else ''}")
                return {"CANCELLED"}
        return {"FINISHED"}


class LIKENESS_OT_job_import(bpy.types.Operator):
    """Import the selected job's fetched results into the scene"""

    bl_idname = "likeness.job_import"
    bl_label = "Import"
    bl_options = {"REGISTER", "UNDO"}

    job_id: StringProperty(name="Job", description="Empty: the job selected in the list")

    @classmethod
    def poll(cls, context):
        item = _job_item(context, "")
        return item is not None and bool(item.result_dir)

    def execute(self, context):
        item = _job_item(context, self.job_id)
        if item is None:
            self.report({"ERROR"}, f"no job {self.job_id!r} in this file")
            return {"CANCELLED"}
        try:
            objects = jobs.import_results(item.job_id)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if not objects:
            self.report({"WARNING"}, f"job {item.job_id} has no geometry to import ({item.artifacts})")
            return {"CANCELLED"}
        self.report({"INFO"}, f"imported {', '.join(o.name for o in objects)}")
        return {"FINISHED"}


class LIKENESS_OT_job_remove(bpy.types.Operator):
    """Remove the selected job from this file's list (the backend keeps its results)"""

    bl_idname = "likeness.job_remove"
    bl_label = "Remove Job"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return _job_item(context, "") is not None

    def execute(self, context):
        props = context.scene.likeness
        props.jobs.remove(props.job_index)
        props.job_index = max(0, min(props.job_index, len(props.jobs) - 1))
        return {"FINISHED"}


class LIKENESS_OT_import_file(bpy.types.Operator, ImportHelper):
    """Import a result file the CLI produced: a GLB (Blender's glTF importer) or a PLY (3DGS splats, or a mesh)"""

    bl_idname = "likeness.import_file"
    bl_label = "Import from File"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.glb;*.gltf;*.ply", options={"HIDDEN"})

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if not path.is_file():
            self.report({"ERROR"}, f"no such file: {str(path)!r}")
            return {"CANCELLED"}
        try:
            objects = importers.import_file(path, preferences.get(context).splat_display_cap)
        except (ValueError, RuntimeError, OSError) as exc:
            self.report({"ERROR"}, f"cannot import {path.name}: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"imported {', '.join(o.name for o in objects) or 'nothing'}")
        return {"FINISHED"}


CLASSES = (
    LIKENESS_OT_connect,
    LIKENESS_OT_disconnect,
    LIKENESS_OT_reference_add,
    LIKENESS_OT_reference_remove,
    LIKENESS_OT_refine,
    LIKENESS_OT_cancel,
    LIKENESS_OT_job_fetch,
    LIKENESS_OT_job_import,
    LIKENESS_OT_job_remove,
    LIKENESS_OT_import_file,
)
