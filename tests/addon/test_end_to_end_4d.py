"""A 4D TIRE job from an armature-animated Blender object through a real backend process: the frames and the
references' frames go out, the copy of the artist's object and its bound splats come back, and at every frame
the splats Blender evaluates sit where the backend posed them (splats/frame_NNNN.ply)."""

import json
from pathlib import Path

import bpy
import numpy as np

from anim_scenes import rigged_grid
from likeness3d.addon import session
from likeness3d.addon.importers.ply import read_splats
from likeness3d.protocol.pc2 import read_pc2
from scenes import camera, photo
from test_end_to_end import TIRE_SMALL, active_job, backend, connected, pump_recording_states, torch_backend  # noqa: F401
from test_import_4d import _splat_centres, _world


def test_tire_4d_job_from_an_animated_object_to_a_rigged_copy_and_bound_splats(connected):  # noqa: F811
    torch_backend()
    assert "tire" in session.pipelines()
    source = rigged_grid(n=6, frame_start=1, frame_end=3)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    props = scene.likeness
    props.target, props.class_word, props.animated = source, "flag", True
    for i, (frame, x) in enumerate(((1, -1.5), (3, 1.5))):
        cam = camera(f"Shot{frame}", location=(x, -4.0, 2.0))
        ref = props.references.add()
        ref.image, ref.camera, ref.frame = photo(f"shot{frame}", 64, 48, seed=i), cam, frame
    props.pipeline, props.quality, props.config_json = "tire", "DRAFT", json.dumps(TIRE_SMALL)
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    pump_recording_states(900)
    item = active_job()
    assert item.state == "DONE", item.message
    assert item.animated
    names = set(item.artifacts.split(","))
    assert {"mesh.glb", "animation.pc2", "splats.ply", "splats/frame_0001.ply", "splats/frame_0003.ply"} <= names, names
    folder = Path(item.result_dir)
    report = json.loads((folder / "report.json").read_text())
    assert report["frames"] == [1, 2, 3]

    copy, splats = bpy.data.objects[f"{source.name}_refined"], bpy.data.objects[f"{source.name}_splats"]
    assert copy.modifiers["Armature"].object is source.modifiers["Armature"].object
    assert splats["likeness3d_bound_to"] == copy.name
    cache = read_pc2(folder / "animation.pc2")
    for i, frame in enumerate((1, 2, 3)):
        scene.frame_set(frame)
        np.testing.assert_allclose(_world(copy), cache.positions[i], atol=1e-5, err_msg=f"frame {frame}")
        posed = read_splats(folder / "splats" / f"frame_{frame:04d}.ply").positions
        diag = float(np.linalg.norm(cache.positions[i].max(0) - cache.positions[i].min(0)))
        np.testing.assert_allclose(_splat_centres(splats), posed, atol=1e-4 * diag, err_msg=f"frame {frame}")
