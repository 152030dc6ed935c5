"""Scene data of the add-on (saved in the .blend): the subject, its references, the pipeline choice, the jobs;
and the window manager's runtime state (not saved): the connection."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import presets

JOB_STATES = [
    ("SUBMITTING", "Submitting", "Sending the asset to the backend"),
    ("QUEUED", "Queued", "Waiting for a free worker"),
    ("RUNNING", "Running", "The backend works on it"),
    ("FETCHING", "Fetching", "Downloading the results"),
    ("DONE", "Done", "Finished; results fetched"),
    ("FAILED", "Failed", "The backend reported an error"),
    ("CANCELLED", "Cancelled", "Cancelled"),
]
FINAL_STATES = {"DONE", "FAILED", "CANCELLED"}
FRAME_METHODS = [
    ("STRETCH", "Stretch", "The image fills the camera frame exactly"),
    ("FIT", "Fit", "The image fits inside the camera frame, keeping its aspect"),
    ("CROP", "Crop", "The image covers the camera frame, keeping its aspect"),
]


def _is_mesh(_self, obj) -> bool:
    return obj.type == "MESH"


def _is_camera(_self, obj) -> bool:
    return obj.type == "CAMERA"


def _pipeline_search(_self, _context, _text):
    from . import session

    return session.pipelines()


class LikenessReference(bpy.types.PropertyGroup):
    """A photo of the real subject and the camera (aligned to it) that took it."""

    image: PointerProperty(name="Image", type=bpy.types.Image, description="The reference photo (RGBA)")
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_is_camera,
                            description="The camera aligned to the photo")
    frame_method: EnumProperty(name="Frame", items=FRAME_METHODS, default="FIT",
                               description="How the photo sits in the camera frame (as a camera background image)")
    frame: IntProperty(name="Scene Frame", default=1,
                       description="The scene frame at which the photo was seen (for an animated target): the "
                                   "camera's pose and the target's shape at that frame")


class LikenessJob(bpy.types.PropertyGroup):
    """A job of this file, kept in the scene so that reopening the .blend reattaches to it."""

    job_id: StringProperty(name="Job")
    pipeline: StringProperty(name="Pipeline")
    source: PointerProperty(name="Source", type=bpy.types.Object)
    animated: BoolProperty(name="Animated", description="The job was sent with the target's frames (4D)")
    state: EnumProperty(name="State", items=JOB_STATES, default="SUBMITTING")
    stage: StringProperty(name="Stage")
    step: IntProperty(name="Step", min=0)
    total: IntProperty(name="Total", min=0)
    text: StringProperty(name="Text")
    elapsed: FloatProperty(name="Elapsed", unit="TIME_ABSOLUTE")
    eta: FloatProperty(name="ETA", description="Seconds left, estimated from the pace so far; -1 unknown",
                       default=-1.0, unit="TIME_ABSOLUTE")
    message: StringProperty(name="Message", description="The backend's error, for a failed job")
    error_code: StringProperty(name="Error Code", description="The typed error's wire code (invalid_asset, ...)")
    result_dir: StringProperty(name="Results", subtype="DIR_PATH")
    artifacts: StringProperty(name="Artifacts", description="Fetched artifact names, comma separated")
    imported: BoolProperty(name="Imported")
    created: FloatProperty(name="Created")

    @property
    def progress(self) -> float:
        return self.step / self.total if self.total else 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class LikenessSceneProperties(bpy.types.PropertyGroup):
    target: PointerProperty(name="Target", type=bpy.types.Object, poll=_is_mesh,
                            description="The mesh to refine (its evaluated shape, modifiers applied)")
    animated: BoolProperty(name="Animated", default=False,
                           description="Send the target's evaluated shape at every frame of the range (4D): "
                                       "armature, shape keys, modifiers and constraints; references carry their frame")
    use_scene_range: BoolProperty(name="Scene Range", default=True,
                                  description="Use the scene's frame range (Start..End); off: the range below")
    frame_start: IntProperty(name="Start", default=1, description="First frame sent (with Scene Range off)")
    frame_end: IntProperty(name="End", default=250, description="Last frame sent (with Scene Range off)")
    frame_step: IntProperty(name="Step", default=1, min=1, soft_max=10,
                            description="Send every n-th frame of the range")
    class_word: StringProperty(name="Class", default="object",
                               description='What the subject is, in one word ("cat", "sneaker")')
    references: CollectionProperty(type=LikenessReference)
    reference_index: IntProperty(name="Reference", min=0)
    pipeline: StringProperty(name="Pipeline", default="inspect", search=_pipeline_search,
                             description="The backend pipeline to run")
    quality: EnumProperty(name="Quality", items=presets.QUALITY_ITEMS, default="AUTO",
                          description="A preset of the pipeline's settings")
    config_json: StringProperty(name="Extra Settings",
                                description='JSON object merged over the preset, e.g. {"overlay_points": 500}')
    jobs: CollectionProperty(type=LikenessJob)
    job_index: IntProperty(name="Job", min=0)
    active_job: StringProperty(name="Active Job", description="The job whose progress the panel shows")
    preview: PointerProperty(name="Preview", type=bpy.types.Image, description="The latest preview image")

    def job(self, job_id: str) -> LikenessJob | None:
        return next((j for j in self.jobs if j.job_id == job_id), None)


class LikenessRuntime(bpy.types.PropertyGroup):
    """Connection state for the panel; lives on the window manager, so it is never saved."""

    state: StringProperty(name="State", default="disconnected")
    version: StringProperty(name="Server")
    gpus: StringProperty(name="GPUs")
    pipelines: StringProperty(name="Pipelines")
    models: StringProperty(name="Models")
    message: StringProperty(name="Message")


CLASSES = (LikenessReference, LikenessJob, LikenessSceneProperties, LikenessRuntime)


def register_pointers() -> None:
    bpy.types.Scene.likeness = PointerProperty(type=LikenessSceneProperties)
    bpy.types.WindowManager.likeness = PointerProperty(type=LikenessRuntime)


def unregister_pointers() -> None:
    del bpy.types.WindowManager.likeness
    del bpy.types.Scene.likeness
