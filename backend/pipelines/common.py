"""What the refinement pipelines share: their input checks and the per-stage clock of report.json."""

from __future__ import annotations

import time

from ...protocol.assets import Asset
from ...protocol.errors import InvalidAsset


def check_refinable(asset: Asset, pipeline: str) -> None:
    """A refinement needs reference photos and the artist's UVs to bake onto; say which is missing."""
    if not asset.references:
        raise InvalidAsset(f"{pipeline} needs at least one reference photo; the asset has none", field="references")
    if asset.mesh.uvs is None:
        raise InvalidAsset(f"mesh.uvs is missing: {pipeline} bakes onto the artist's own UVs (unwrap the mesh first)",
                           field="mesh.uvs")


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
