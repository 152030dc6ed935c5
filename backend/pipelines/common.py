"""What the refinement pipelines share: their input checks and the per-stage clock of report.json."""

from __future__ import annotations

import time

from ...protocol.assets import Asset
from ...protocol.errors import InvalidAsset


MAX_COORDINATE = 1e5
"""Largest vertex coordinate accepted (metres): beyond it float32 arithmetic loses the surface."""


def check_refinable(asset: Asset, pipeline: str) -> None:
    """A refinement needs reference photos, the artist's UVs to bake onto, a mesh with a size and cameras
    that see it; each problem is `invalid_asset` naming the field and the fix (numpy only: the CLI calls it
    before importing torch)."""
    import numpy as np

    if not asset.references:
        raise InvalidAsset(f"{pipeline} needs at least one reference photo; the asset has none: add a reference "
                           "(a photo and the camera that took it)", field="references")
    if asset.mesh.uvs is None:
        raise InvalidAsset(f"mesh.uvs is missing: {pipeline} bakes onto the artist's own UVs (unwrap the mesh first)",
                           field="mesh.uvs")
    v = np.asarray(asset.mesh.vertices, np.float64)
    reach = float(np.abs(v).max())
    if reach > MAX_COORDINATE:
        raise InvalidAsset(f"mesh.vertices reach {reach:.3g} m from the origin (at most {MAX_COORDINATE:.0e} m): "
                           "apply a scale that brings the mesh to metres and move it near the origin", field="mesh.vertices")
    extent = float(np.linalg.norm(v.max(0) - v.min(0)))
    tri = v[asset.mesh.faces]
    area = float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()) / 2
    if extent < 1e-6 or area < 1e-12 * max(extent, 1e-6) ** 2:
        raise InvalidAsset(f"mesh.vertices span {extent:.3g} m and its faces {area:.3g} m^2: the mesh has no surface "
                           "(all vertices at one point or on one line); export the mesh with its geometry",
                           field="mesh.vertices")
    mesh = asset.mesh
    rows = {int(n): k for k, n in enumerate(mesh.frame_numbers)} if mesh.frames is not None else {}
    for i, ref in enumerate(asset.references):
        cam = ref.camera
        seen = v if ref.frame is None or ref.frame not in rows else np.asarray(mesh.frames[rows[ref.frame]], np.float64)
        uv, z = cam.project(seen)
        inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= cam.width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= cam.height - 0.5)
        if not inside.any():
            where = "behind it" if not (z > 0).any() else "outside its image"
            raise InvalidAsset(f"references[{i}] ({ref.name!r}): its camera sees none of the mesh (every vertex lies {where}): "
                               "aim the camera at the subject, or check that the mesh and the cameras share one world "
                               "frame (Blender's, Z up)", field=f"references[{i}].camera")


def flat_texture_size(side):
    """The flat `texture_size` of the configs before the tree (one side, 0 = the mesh's own) as the
    `bake.texture_size` it now is ((height, width), or None for the mesh's own size)."""
    return None if side in (0, None) else [side, side]


class StageClock:
    """Seconds per stage: `lap(name)` closes the stage that started at the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self._start, 3)
        self._start = now

    def report(self) -> dict[str, float]:
        return {**self.seconds, "total": round(sum(self.seconds.values()), 3)}


def export_textured(ctx, mesh, groups, bake, caster, center, radius: float, turntable_views: int):
    """The refinements' shared export: bake `groups` of views (see stages.texture.bake_views) onto the artist's
    UVs with `bake` (a BakeConfig; its texture_size None keeps the mesh's own height x width), then publish
    mesh.glb, texture.png and sheet.png (`export_texture`). Returns (the refined mesh, [Ht, Wt] texels no view
    saw)."""
    import numpy as np

    from ..stages.common.images import to_u8
    from ..stages.texture.bake_views import bake_views

    texture, unseen = bake_views(mesh, groups, bake, base_texture=mesh.texture)
    tex_u8 = np.concatenate([to_u8(texture), np.full(texture.shape[:2] + (1,), 255, np.uint8)], -1)
    return export_texture(ctx, mesh, tex_u8, caster, center, radius, turntable_views), unseen


def export_texture(ctx, mesh, tex_u8, caster, center, radius: float, turntable_views: int):
    """Publish mesh.glb (the artist's geometry and UVs with `tex_u8` [Ht, Wt, 4] uint8, its size as given),
    texture.png and sheet.png (initial | refined turntable). Returns the refined mesh."""
    import io

    from PIL import Image

    from ..export.glb import write_glb
    from ..export.sheet import turntable_sheet
    from ..stages.views.cameras import turntable
    from ..stages.views.mesh_passes import Raycaster, mesh_rgba
    from ...protocol.assets import Mesh

    refined = Mesh(mesh.vertices, mesh.faces, mesh.uvs, tex_u8)
    ctx.add_artifact("mesh.glb", write_glb(refined))
    buf = io.BytesIO()
    Image.fromarray(tex_u8).save(buf, format="PNG")
    ctx.add_artifact("texture.png", buf.getvalue())
    tt = turntable(center, radius, turntable_views, 192, 192)
    before = mesh_rgba(caster, tt, supersample=2, background=(1.0, 1.0, 1.0))
    after = mesh_rgba(Raycaster(refined), tt, supersample=2, background=(1.0, 1.0, 1.0))
    ctx.add_artifact("sheet.png", turntable_sheet(before, after, labels=("initial", "refined")))
    return refined
