"""A splat sequence whose Gaussians turn and stretch over the frames (as a posed 4D sequence does): the
frame-change handler shows each frame's rotations and scales too, not only its centres; a sequence whose
rotations and scales never change caches its positions alone."""

import bpy
import numpy as np

from files import random_splats, write_ply
from likeness3d.addon.importers import import_result
from likeness3d.addon.importers.sequence import CACHE_NAME, PROP


def _write(folder, frames):
    """frame_NNNN.ply files: the same random Gaussians with each frame's (centres, wxyz rotations, log scales)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame, (centres, rots, scales) in frames.items():
        fields = random_splats(len(centres), sh_degree=0, seed=0)
        for k, axis in enumerate("xyz"):
            fields[axis] = centres[:, k].astype(np.float32)
        for k in range(4):
            fields[f"rot_{k}"] = rots[:, k].astype(np.float32)
        for k in range(3):
            fields[f"scale_{k}"] = scales[:, k].astype(np.float32)
        paths.append(write_ply(folder / f"frame_{frame:04d}.ply", fields))
    return paths


def _attr(mesh, name, width, key):
    out = np.empty(len(mesh.vertices) * width, np.float32)
    mesh.attributes[name].data.foreach_get(key, out)
    return out.reshape(-1, width)


def test_rotations_and_scales_follow_the_frame(tmp_path):
    rng = np.random.default_rng(1)
    n = 30
    frames = {}
    for f in (1, 4, 8):
        q = rng.normal(size=(n, 4))
        frames[f] = (rng.normal(size=(n, 3)), q / np.linalg.norm(q, axis=1, keepdims=True), rng.normal(-3, 0.5, (n, 3)))
    paths = _write(tmp_path / "splats", frames)
    bpy.context.scene.frame_set(1)
    (obj,) = import_result(paths, None)
    assert list(obj[PROP]["fields"]) == ["position", "rotation", "scale"]
    for scene_frame, shown in ((4, 4), (6, 4), (8, 8), (1, 1)):
        bpy.context.scene.frame_set(scene_frame)
        centres, rots, scales = frames[shown]
        co = np.empty(n * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        np.testing.assert_allclose(co.reshape(-1, 3), centres, atol=1e-6)
        np.testing.assert_allclose(_attr(obj.data, "rotation", 4, "value"), rots, atol=1e-6)
        np.testing.assert_allclose(_attr(obj.data, "scale", 3, "vector"), scales, atol=1e-6)
        radius = _attr(obj.data, "splat_radius", 1, "value")[:, 0]
        np.testing.assert_allclose(radius, np.exp(scales.mean(axis=1)), rtol=1e-5)


def test_a_sequence_that_only_moves_caches_positions_alone(tmp_path):
    rng = np.random.default_rng(2)
    n = 20
    q = rng.normal(size=(n, 4))
    rot, scale = q / np.linalg.norm(q, axis=1, keepdims=True), rng.normal(-3, 0.5, (n, 3))
    frames = {f: (rng.normal(size=(n, 3)), rot, scale) for f in (1, 2)}
    paths = _write(tmp_path / "splats", frames)
    (obj,) = import_result(paths, None)
    assert list(obj[PROP]["fields"]) == ["position"]
    assert sorted(p.name for p in (tmp_path / "splats").glob("*.npy")) == [CACHE_NAME]
    bpy.context.scene.frame_set(2)
    co = np.empty(n * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(co.reshape(-1, 3), frames[2][0], atol=1e-6)
