"""Every operator's poll and execute on a built scene (those that need a backend run in test_end_to_end)."""

import bpy
import numpy as np
import pytest

from files import grid_mesh, png_bytes, random_splats, write_glb, write_ply
from likeness3d.addon import session
from scenes import camera, cube, photo, subject_scene


def _png_file(path, width=6, height=4):
    path.write_bytes(png_bytes(np.full((height, width, 4), 128, np.uint8)))
    return path


def test_reference_add_takes_the_cameras_background_image():
    cam = camera("Shot")
    bg = cam.data.background_images.new()
    bg.image, bg.frame_method = photo("front.jpg", 32, 24), "CROP"
    bpy.context.view_layer.objects.active = cam
    assert bpy.ops.likeness.reference_add.poll()
    assert bpy.ops.likeness.reference_add() == {"FINISHED"}
    ref = bpy.context.scene.likeness.references[0]
    assert ref.image.name == "front.jpg" and ref.camera == cam and ref.frame_method == "CROP"


def test_reference_add_from_a_file_and_the_scene_camera(tmp_path):
    cam = camera("SceneCam")
    bpy.context.scene.camera = cam
    path = _png_file(tmp_path / "side.png")
    assert bpy.ops.likeness.reference_add(filepath=str(path)) == {"FINISHED"}
    ref = bpy.context.scene.likeness.references[0]
    assert ref.camera == cam and tuple(ref.image.size) == (6, 4) and ref.frame_method == "FIT"


def test_reference_add_reports_what_is_missing(tmp_path):
    assert not bpy.ops.likeness.reference_add.poll()  # no camera at all
    camera("Bare")
    bpy.context.scene.camera = bpy.data.objects["Bare"]
    with pytest.raises(RuntimeError, match="camera 'Bare' has no background image"):
        bpy.ops.likeness.reference_add()
    with pytest.raises(RuntimeError, match="cannot read image"):
        bpy.ops.likeness.reference_add(filepath=str(tmp_path / "missing.png"))
    with pytest.raises(RuntimeError, match="'Nope' is not a camera"):
        bpy.ops.likeness.reference_add(camera="Nope")


def test_reference_remove():
    subject_scene(n_refs=3)
    props = bpy.context.scene.likeness
    props.reference_index = 1
    assert bpy.ops.likeness.reference_remove.poll()
    assert bpy.ops.likeness.reference_remove() == {"FINISHED"}
    assert [r.image.name for r in props.references] == ["photo0", "photo2"]
    with pytest.raises(RuntimeError, match="no reference 5: there are 2"):
        bpy.ops.likeness.reference_remove(index=5)
    props.references.clear()
    assert not bpy.ops.likeness.reference_remove.poll()


def test_refine_poll_needs_a_mesh_target_and_reports_bad_input():
    assert not bpy.ops.likeness.refine.poll()
    subject_scene(n_refs=1)
    assert bpy.ops.likeness.refine.poll()
    bpy.context.scene.likeness.references[0].image = None
    with pytest.raises(RuntimeError, match="reference 1 has no image"):
        bpy.ops.likeness.refine()


def test_connect_refuses_a_remote_backend_without_online_access():
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="not on this machine and Blender's online access is off"):
        bpy.ops.likeness.connect(address="tcp://192.0.2.7:5555")
    assert session.client() is None


def test_cancel_fetch_import_poll_false_without_jobs():
    subject_scene(n_refs=1)
    assert not bpy.ops.likeness.cancel.poll()
    assert not bpy.ops.likeness.job_fetch.poll()
    assert not bpy.ops.likeness.job_import.poll()
    assert not bpy.ops.likeness.job_remove.poll()
    assert not bpy.ops.likeness.disconnect.poll()


def test_job_import_and_remove_on_a_listed_job(tmp_path):
    source = cube("Chair")
    props = bpy.context.scene.likeness
    item = props.jobs.add()
    item.job_id, item.pipeline, item.state, item.source = "0123abcd", "tire", "DONE", source
    vertices, faces, uv = grid_mesh(3)
    write_glb(tmp_path / "mesh.glb", vertices, faces, uv)
    item.result_dir, item.artifacts = str(tmp_path), "mesh.glb"
    assert bpy.ops.likeness.job_import.poll()
    assert bpy.ops.likeness.job_import() == {"FINISHED"}
    assert len(bpy.data.objects["Chair_refined"].data.polygons) == len(faces) and props.jobs[0].imported
    assert source.hide_get()
    (tmp_path / "mesh.glb").unlink()
    with pytest.raises(RuntimeError, match="fetched files are gone"):
        bpy.ops.likeness.job_import()
    assert bpy.ops.likeness.job_remove() == {"FINISHED"}
    assert len(props.jobs) == 0


def test_import_file_operator(tmp_path):
    glb = write_glb(tmp_path / "cli_result.glb", *grid_mesh(2))
    before = set(bpy.data.objects)
    assert bpy.ops.likeness.import_file(filepath=str(glb)) == {"FINISHED"}
    (mesh_obj,) = set(bpy.data.objects) - before
    assert mesh_obj.type == "MESH" and sum(len(p.vertices) - 2 for p in mesh_obj.data.polygons) == 8  # 2 x 2 quads
    ply = write_ply(tmp_path / "cli_splats.ply", random_splats(20))
    assert bpy.ops.likeness.import_file(filepath=str(ply)) == {"FINISHED"}
    assert len(bpy.data.objects["cli_splats"].data.vertices) == 20
    with pytest.raises(RuntimeError, match="no such file"):
        bpy.ops.likeness.import_file(filepath=str(tmp_path / "nothing.glb"))
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nend_header\n1\n")
    with pytest.raises(RuntimeError, match="cannot import broken.ply"):
        bpy.ops.likeness.import_file(filepath=str(tmp_path / "broken.ply"))


def test_report_operator_reaches_blenders_reports():
    assert bpy.ops.likeness.report(level="INFO", message="hello") == {"FINISHED"}
    with pytest.raises(RuntimeError, match="went wrong"):
        bpy.ops.likeness.report(level="ERROR", message="went wrong")
