"""The glTF animation evaluator: samplers by the spec, skinned and morph-target files against Blender's own glTF
importer at every frame (the bpy wheel), and the GLB written back keeping skins and animations."""

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

from gltf_build import morph_glb, skinned_glb
from likeness3d.backend.export.gltf_replace import replace_base_colour
from likeness3d.backend.inputs.gltf_anim import read_animated_gltf, sample
from likeness3d.backend.inputs.gltf_file import GltfFile
from likeness3d.backend.inputs.mesh import read_mesh

BLENDER = os.environ.get("LIKENESS3D_BLENDER_PYTHON")
needs_blender = pytest.mark.skipif(not BLENDER, reason="set LIKENESS3D_BLENDER_PYTHON to a Python with the bpy wheel")

BLENDER_FRAMES = textwrap.dedent("""
    import sys, bpy, numpy as np
    path, out, last = sys.argv[-3], sys.argv[-2], int(sys.argv[-1])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
    scene = bpy.context.scene
    obj = [o for o in scene.objects if o.type == "MESH"][0]
    res = []
    for f in range(0, last + 1):
        scene.frame_set(f)
        ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        me = ev.to_mesh()
        co = np.zeros(len(me.vertices) * 3)
        me.vertices.foreach_get("co", co)
        mw = np.array(ev.matrix_world)
        res.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
        ev.to_mesh_clear()
    np.save(out, np.stack(res))
    arm = [o for o in scene.objects if o.type == "ARMATURE"]
    keys = obj.data.shape_keys
    print("SUMMARY", len(arm), len(bpy.data.actions), 0 if keys is None else len(keys.key_blocks),
          [tuple(i.size) for i in bpy.data.images])
""")


def test_samplers_follow_the_spec():
    times = np.array([0.0, 1.0, 3.0])
    lin = np.array([[0.0], [2.0], [4.0]])
    assert sample(times, lin, "LINEAR", 0.5, False)[0] == pytest.approx(1.0)
    assert sample(times, lin, "LINEAR", 2.0, False)[0] == pytest.approx(3.0)
    assert sample(times, lin, "LINEAR", -1.0, False)[0] == 0.0 and sample(times, lin, "LINEAR", 9.0, False)[0] == 4.0
    assert sample(times, lin, "STEP", 0.99, False)[0] == 0.0 and sample(times, lin, "STEP", 1.0, False)[0] == 2.0
    # CUBICSPLINE: (in-tangent, value, out-tangent) per key; Hermite with tangents scaled by the key interval
    a, v, b = np.array([0.3, 1.0, -2.0]), np.array([1.0, 3.0, 0.0]), np.array([0.5, -1.0, 0.7])
    cubic = np.stack([a, v, b], 1).reshape(-1, 1)
    s, dt = 0.25, 2.0  # between keys 1 and 2
    h = [2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2]
    want = h[0] * v[1] + h[1] * dt * b[1] + h[2] * v[2] + h[3] * dt * a[2]
    assert sample(times, cubic, "CUBICSPLINE", 1.0 + s * dt, False)[0] == pytest.approx(want, abs=1e-5)
    # rotations come back unit length
    q = np.array([[0, 0, 0, 1.0], [0, 0, 0.7071068, 0.7071068]])
    r = sample(np.array([0.0, 1.0]), q, "LINEAR", 0.3, True)
    assert np.linalg.norm(r) == pytest.approx(1.0)


def test_animated_glb_reads_as_an_animated_mesh(tmp_path):
    path = tmp_path / "skin.glb"
    path.write_bytes(skinned_glb())
    mesh = read_mesh(path)
    assert mesh.frame_numbers.tolist() == list(range(0, 25)) and mesh.fps == 24.0
    assert mesh.uvs.shape == (len(mesh.faces), 3, 2) and mesh.texture.shape == (8, 8, 4)
    part = read_mesh(path, (4, 12, 4))
    assert part.frame_numbers.tolist() == [4, 8, 12]
    np.testing.assert_allclose(part.frames, mesh.frames[[4, 8, 12]], atol=1e-6)
    assert not np.allclose(mesh.frames[0], mesh.frames[12])  # the joint bends


def _blender_frames(tmp_path, path, last):
    script = tmp_path / "frames.py"
    script.write_text(BLENDER_FRAMES)
    run = subprocess.run([BLENDER, str(script), str(path), str(tmp_path / "b.npy"), str(last)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = next(line for line in run.stdout.splitlines() if line.startswith("SUMMARY"))
    return np.load(tmp_path / "b.npy"), summary


@needs_blender
@pytest.mark.parametrize("build,interpolation", [(skinned_glb, "LINEAR"), (skinned_glb, "STEP"),
                                                 (morph_glb, "LINEAR"), (morph_glb, "STEP")])
def test_evaluator_matches_blenders_importer(tmp_path, build, interpolation):
    """Every frame within 1e-4 of the bounding box (vertices matched by position at frame 0; Blender's importer
    drops CUBICSPLINE tangents, so that sampler is held to the spec above instead)."""
    from scipy.spatial import cKDTree

    path = tmp_path / "anim.glb"
    path.write_bytes(build(interpolation))
    ours = read_animated_gltf(path, (0, 25, 1))
    theirs, _ = _blender_frames(tmp_path, path, 25)
    assert theirs.shape[1] <= ours.frames.shape[1]
    _, match = cKDTree(theirs[0]).query(ours.frames[0])
    for f in range(26):
        extent = float(np.linalg.norm(theirs[f].max(0) - theirs[f].min(0)))
        err = np.abs(ours.frames[f] - theirs[f][match]).max()
        assert err <= 1e-4 * extent, (f, err, extent)
    assert np.abs(ours.frames[12] - ours.frames[0]).max() > 0.05 * extent  # the file does move


@needs_blender
def test_glb_written_back_keeps_skins_and_animations(tmp_path):
    from PIL import Image
    import io

    src = tmp_path / "skin.glb"
    src.write_bytes(skinned_glb())
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 4), (10, 200, 30, 255), np.uint8)).save(buf, format="PNG")
    out = tmp_path / "mesh.glb"
    out.write_bytes(replace_base_colour(src, buf.getvalue()))
    a, b = GltfFile(src).json, GltfFile(out).json
    for key in ("nodes", "skins", "animations", "meshes", "scenes", "accessors"):
        assert a[key] == b[key], key
    assert [m["name"] for m in a["materials"]] == [m["name"] for m in b["materials"]]
    assert np.all(GltfFile(out).base_colour_image(0)[1] == (10, 200, 30, 255))
    np.testing.assert_allclose(read_animated_gltf(out).frames, read_animated_gltf(src).frames, atol=0)
    theirs, summary = _blender_frames(tmp_path, out, 24)
    armatures, actions, _, images = summary.split(" ", 4)[1:]
    assert int(armatures) == 1 and int(actions) >= 1, summary  # Blender re-imports the rig and its animation
    assert "(8, 8)" in images
    np.testing.assert_allclose(theirs[[0, 12, 24]][:, :, :].mean(1), _blender_frames(tmp_path, src, 24)[0][[0, 12, 24]].mean(1), atol=1e-6)
