"""The subject-video pipeline in the panel: its settings (prompts, frames, size, 3Dapter) on the scene
(`scene.likeness_video`, saved in the .blend), a sub-panel shown when the pipeline is `video`, and the config
map they make (merged under the quality preset and the extra settings)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, IntProperty, PointerProperty, StringProperty

from ..protocol.config_maps import merge_config

PIPELINE = "video"
IDENTIFIER = "sks"


class LikenessVideoProperties(bpy.types.PropertyGroup):
    prompts: StringProperty(
        name="Prompts", default="",
        description='More videos, one prompt each, separated by "|"; each names the subject as "sks" '
                    '("a video of a sks sneaker on a beach")')
    turntable: BoolProperty(name="Turntable", default=True,
                            description="Also make the turntable video of the subject (always the first)")
    frames: IntProperty(name="Frames", default=81, min=1, max=1025,
                        description="Frames per video; Wan needs 4k + 1 (81 = 5 s at 16 fps)")
    width: IntProperty(name="Width", default=832, min=16, max=2048, step=16, description="Frame width (multiple of 16)")
    height: IntProperty(name="Height", default=480, min=16, max=2048, step=16, description="Frame height (multiple of 16)")
    use_3dapter: BoolProperty(name="3Dapter", default=True,
                              description="Condition on the reference views (needs 2 or more references)")
    mesh_views: IntProperty(name="Asset Views", default=0, min=0, max=64,
                            description="Renders of the target mesh (its own texture) added to the reference views, "
                                        "evenly around it; 0: the references alone")


def prompts_of(props: LikenessVideoProperties) -> list[str]:
    return [p.strip() for p in props.prompts.split("|") if p.strip()]


def video_config(scene: bpy.types.Scene) -> dict:
    """The `video` pipeline's config map from the scene's video settings (the backend validates every value)."""
    props = scene.likeness_video
    config: dict = {"generate": {"frames": props.frames, "width": props.width, "height": props.height,
                                 "turntable": props.turntable}}
    prompts = prompts_of(props)
    if prompts:
        config["prompts"] = prompts
    if not props.use_3dapter:
        config["adapter"] = {"enabled": False}
    if props.mesh_views:
        config["views"] = {"mesh_views": props.mesh_views}
    return config


def scene_config(scene: bpy.types.Scene, pipeline: str, config: dict) -> dict:
    """`config` (the preset and extra settings) over the scene's video settings when the pipeline is `video`."""
    return merge_config(video_config(scene), config) if pipeline == PIPELINE else config


def problems(props: LikenessVideoProperties, n_references: int) -> list[str]:
    """What the backend would refuse, said in the panel before submitting."""
    out = []
    if props.frames % 4 != 1:
        out.append(f"Frames {props.frames}: Wan needs 4k + 1 (e.g. {props.frames // 4 * 4 + 1})")
    if props.width % 16 or props.height % 16:
        out.append(f"Size {props.width} x {props.height}: both must be multiples of 16")
    bad = [p for p in prompts_of(props) if IDENTIFIER not in p.split()]
    if bad:
        out.append(f'Prompt "{bad[0][:40]}" does not name the subject as "{IDENTIFIER}"')
    if props.use_3dapter and n_references < 2:
        out.append(f"3Dapter needs 2 or more references ({n_references} now)")
    return out


class LIKENESS_PT_video(bpy.types.Panel):
    bl_label = "Subject Video"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Likeness3D"
    bl_parent_id = "LIKENESS_PT_main"

    @classmethod
    def poll(cls, context):
        return context.scene.likeness.pipeline == PIPELINE

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        props = scene.likeness_video
        layout.label(text=f'Prompts say "a video of a {IDENTIFIER} {scene.likeness.class_word}"')
        layout.prop(props, "turntable")
        layout.prop(props, "prompts")
        row = layout.row(align=True)
        row.prop(props, "frames")
        row = layout.row(align=True)
        row.prop(props, "width")
        row.prop(props, "height")
        layout.prop(props, "use_3dapter")
        layout.prop(props, "mesh_views")
        for text in problems(props, len(scene.likeness.references)):
            layout.label(text=text, icon="ERROR")


CLASSES = (LikenessVideoProperties, LIKENESS_PT_video)


def register_pointers() -> None:
    bpy.types.Scene.likeness_video = PointerProperty(type=LikenessVideoProperties)


def unregister_pointers() -> None:
    del bpy.types.Scene.likeness_video
