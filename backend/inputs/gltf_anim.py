"""A glTF 2.0 animation evaluator: node TRS (or matrix), linear blend skinning, morph-target weights, and the
LINEAR / STEP / CUBICSPLINE samplers (rotations interpolated per component and normalised, as Blender plays them), evaluated per
frame at time = frame / fps. Positions come out in the Blender frame (x, -z, y), as Blender's importer puts them.

The rest pose (what the UVs and texture belong to) is the file's pose with no animation applied: default node
transforms and default morph weights, skinned meshes in their bind pose."""

from __future__ import annotations

import numpy as np

from ...protocol.assets import Mesh
from .gltf_file import GltfFile


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / max(np.linalg.norm(q), 1e-20)  # glTF quaternions are x y z w
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _nlerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Rotation keys interpolated as Blender plays an imported glTF: its importer turns the keys into one
    F-curve per quaternion component, interpolated linearly and normalised in the pose (the spec's slerp gives
    the same rotations at the keys and half way, and differs by up to ~0.1 degree between keys 40 degrees apart)."""
    if float(np.dot(a, b)) < 0:
        b = -b
    q = a + s * (b - a)
    return q / np.linalg.norm(q)


def sample(times: np.ndarray, values: np.ndarray, interpolation: str, t: float, rotation: bool) -> np.ndarray:
    """The value of a glTF sampler at time t (clamped to its keys). values: [K, D], or [3K, D] for CUBICSPLINE
    (in-tangent, value, out-tangent per key: the spec's Hermite spline with the file's tangents; Blender's importer
    drops the tangents for automatic Bezier handles, so its playback of a CUBICSPLINE file differs between keys)."""
    cubic = interpolation == "CUBICSPLINE"
    key = (lambda k: values[3 * k + 1]) if cubic else (lambda k: values[k])
    near = t + 1e-6  # key times are float32: a frame that lands on a key (8 / 24 vs 0.33333334) takes that key
    if near <= times[0] or len(times) == 1:
        return key(0)
    if near >= times[-1]:
        return key(len(times) - 1)
    k = int(np.searchsorted(times, near, side="right") - 1)
    t0, t1 = times[k], times[k + 1]
    dt = t1 - t0
    s = min(max((t - t0) / dt, 0.0), 1.0)
    if interpolation == "STEP":
        return key(k)
    if cubic:
        p0, m0 = values[3 * k + 1], values[3 * k + 2] * dt
        p1, m1 = values[3 * (k + 1) + 1], values[3 * (k + 1)] * dt
        s2, s3 = s * s, s * s * s
        v = (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1
        return v / np.linalg.norm(v) if rotation else v
    if rotation:
        return _nlerp(values[k], values[k + 1], s)
    return values[k] + s * (values[k + 1] - values[k])


class GltfAnimation:
    """The meshes of a glTF scene, evaluated at any time."""

    def __init__(self, gltf: GltfFile, animation: int | None = None):
        self.g, doc = gltf, gltf.json
        self.nodes = doc.get("nodes", [])
        self.parent = {c: i for i, n in enumerate(self.nodes) for c in n.get("children", [])}
        anims = doc.get("animations", [])
        if animation is None:
            chosen = anims
        else:
            chosen = [anims[animation]]
        self.channels = []
        for a in chosen:
            for ch in a.get("channels", []):
                target = ch.get("target", {})
                if "node" not in target:
                    continue
                smp = a["samplers"][ch["sampler"]]
                times = gltf.accessor(smp["input"])[:, 0]
                values = gltf.accessor(smp["output"])
                self.channels.append((target["node"], target["path"], times, values, smp.get("interpolation", "LINEAR")))
        self.duration = max((float(c[2][-1]) for c in self.channels), default=0.0)
        scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {"nodes": list(range(len(self.nodes)))}
        order, stack = [], list(scene.get("nodes", []))
        while stack:
            n = stack.pop()
            order.append(n)
            stack.extend(self.nodes[n].get("children", []))
        self.mesh_nodes = [n for n in order if "mesh" in self.nodes[n]]
        if not self.mesh_nodes:
            raise gltf.error("holds no mesh in its scene")

    def _locals(self, t: float | None) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
        trs = []
        for n in self.nodes:
            trs.append({"translation": np.array(n.get("translation", [0, 0, 0]), float),
                        "rotation": np.array(n.get("rotation", [0, 0, 0, 1]), float),
                        "scale": np.array(n.get("scale", [1, 1, 1]), float)})
        weights: dict[int, np.ndarray] = {}
        if t is not None:
            for node, path, times, values, interp in self.channels:
                if path == "weights":
                    n_targets = values.size // (len(times) * (3 if interp == "CUBICSPLINE" else 1))
                    v = sample(times, values.reshape(-1, n_targets), interp, t, False)
                    weights[node] = v
                elif path in trs[node]:
                    trs[node][path] = sample(times, values, interp, t, path == "rotation")
        mats = []
        for i, n in enumerate(self.nodes):
            animated = t is not None and any(c[0] == i and c[1] != "weights" for c in self.channels)
            if "matrix" in n and not animated:
                mats.append(np.array(n["matrix"], float).reshape(4, 4).T)  # column-major
                continue
            m = np.eye(4)
            m[:3, :3] = _quat_matrix(trs[i]["rotation"]) * trs[i]["scale"]
            m[:3, 3] = trs[i]["translation"]
            mats.append(m)
        return mats, weights

    def _world(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        world: dict[int, np.ndarray] = {}

        def get(i: int) -> np.ndarray:
            if i not in world:
                world[i] = get(self.parent[i]) @ mats[i] if i in self.parent else mats[i]
            return world[i]
        return [get(i) for i in range(len(self.nodes))]

    def positions(self, t: float | None) -> np.ndarray:
        """[V, 3] float64 glTF-frame positions of every triangle primitive of the scene's meshes at time t (None:
        the rest pose), in `topology()`'s vertex order."""
        mats, weights = self._locals(t)
        world = self._world(mats)
        out = []
        for node in self.mesh_nodes:
            n = self.nodes[node]
            mesh = self.g.json["meshes"][n["mesh"]]
            w = weights.get(node, np.array(n.get("weights", mesh.get("weights", [])), float))
            skin = self.g.json["skins"][n["skin"]] if "skin" in n else None
            if skin is not None:
                ibm = (self.g.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
                       if "inverseBindMatrices" in skin else np.broadcast_to(np.eye(4), (len(skin["joints"]), 4, 4)))
                joint_mats = np.stack([world[j] for j in skin["joints"]]) @ ibm
            for prim in self._triangles(mesh):
                a = prim["attributes"]
                p = self.g.accessor(a["POSITION"])[:, :3].copy()
                for k, target in enumerate(prim.get("targets", [])):
                    if k < len(w) and w[k] != 0 and "POSITION" in target:
                        p += w[k] * self.g.accessor(target["POSITION"])[:, :3]
                ph = np.concatenate([p, np.ones((len(p), 1))], 1)
                if skin is not None:
                    joints, wts = self.g.accessor(a["JOINTS_0"]), self.g.accessor(a["WEIGHTS_0"])
                    wts = wts / np.maximum(wts.sum(1, keepdims=True), 1e-20)
                    skinned = np.zeros_like(ph)
                    for c in range(joints.shape[1]):
                        skinned += wts[:, c:c + 1] * np.einsum("nij,nj->ni", joint_mats[joints[:, c]], ph)
                    out.append(skinned[:, :3])
                else:
                    out.append(ph @ world[node].T[:, :3])
        return np.concatenate(out)

    def _triangles(self, mesh: dict) -> list[dict]:
        return [p for p in mesh.get("primitives", []) if p.get("mode", 4) == 4]

    def topology(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(faces [F, 3] int32, per-corner UVs [F, 3, 2] in Blender's convention or None, base-colour texture)."""
        faces, uvs, texture, image, offset = [], [], None, None, 0
        for node in self.mesh_nodes:
            for prim in self._triangles(self.g.json["meshes"][self.nodes[node]["mesh"]]):
                count = int(self.g.json["accessors"][prim["attributes"]["POSITION"]]["count"])
                idx = (self.g.accessor(prim["indices"])[:, 0] if "indices" in prim else np.arange(count)).reshape(-1, 3)
                faces.append(idx + offset)
                uv = prim["attributes"].get("TEXCOORD_0")
                uvs.append(None if uv is None else self.g.accessor(uv)[idx] * [1, -1] + [0, 1])
                src, pixels = self.g.base_colour_image(prim.get("material"))
                if pixels is not None:
                    if texture is not None and src != image:
                        raise self.g.error("has more than one base-colour image; a refinement keeps one texture on one "
                                           "UV layout: bake the materials into one image", "mesh.texture")
                    texture, image = pixels, src
                offset += count
        all_uvs = None if any(u is None for u in uvs) else np.concatenate(uvs).astype(np.float32)
        return np.concatenate(faces).astype(np.int32), all_uvs, texture


def _to_blender(p: np.ndarray) -> np.ndarray:
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1)


def has_animation(gltf: GltfFile) -> bool:
    return bool(gltf.json.get("animations"))


def read_animated_gltf(path, frames: tuple[int, int, int] | None = None, fps: float = 24.0) -> Mesh:
    """An animated glTF as an animated Mesh: the rest pose, and every frame START:END:STEP (default: frame 0 to
    the last key) evaluated at time frame / fps."""
    g = GltfFile(path)
    anim = GltfAnimation(g)
    faces, uvs, texture = anim.topology()
    rest = _to_blender(anim.positions(None))
    if frames is None:
        last = int(np.ceil(anim.duration * fps - 1e-6))
        frames = (0, max(last, 0), 1)
    start, end, step = frames
    numbers = np.arange(start, end + 1, step, dtype=np.int32)
    posed = np.stack([_to_blender(anim.positions(n / fps)) for n in numbers]).astype(np.float32)
    return Mesh(rest.astype(np.float32), faces, uvs, texture, posed, numbers, float(fps))
