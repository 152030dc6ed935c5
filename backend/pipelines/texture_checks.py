"""Input checks of the texture a refinement keeps (beside `common.check_refinable`): the base-colour image and
the UVs it is looked up through. Each failure is an `invalid_asset` naming the field, the value and the fix."""

from __future__ import annotations

import numpy as np

from ...protocol.assets import Asset
from ...protocol.errors import InvalidAsset

UV_SLACK = 1e-3
"""UVs this far outside [0, 1] are taken as rounding of an edge at 0 or 1."""


def check_texturable(asset: Asset, pipeline: str) -> dict:
    """The texture must exist, the UVs must lie in the 0-1 tile and the mesh must have some area. Returns the
    counts report.json shows (`input`): degenerate faces are allowed (they have no surface to refine: their
    texels, if any, are filled from their 3D neighbours) unless every face is one."""
    mesh = asset.mesh
    if mesh.texture is None:
        raise InvalidAsset(
            f"mesh.texture is missing: {pipeline} keeps the artist's base-colour texture where the references agree "
            "with it and refines it elsewhere; give the mesh a base-colour image (Blender: a Principled BSDF whose "
            "Base Color is an Image Texture using the UVs), or bake one first", field="mesh.texture")
    if mesh.uvs is not None:
        uv = np.asarray(mesh.uvs)
        outside = ((uv < -UV_SLACK) | (uv > 1 + UV_SLACK)).any(axis=(1, 2))
        if outside.any():
            first = np.flatnonzero(outside)[:5].tolist()
            raise InvalidAsset(
                f"mesh.uvs: {int(outside.sum())} of {len(uv)} faces have UVs outside the 0-1 tile (range "
                f"u [{uv[..., 0].min():.3g}, {uv[..., 0].max():.3g}], v [{uv[..., 1].min():.3g}, {uv[..., 1].max():.3g}]; "
                f"first faces {first}); {pipeline} bakes onto one image, so tiled (UDIM) or repeating UVs cannot "
                "be refined: pack the islands into the 0-1 tile (Blender: UV > Pack Islands) and bake the texture to "
                "that layout", field="mesh.uvs")
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    scale = float(np.ptp(v, axis=0).max()) ** 2 if len(v) else 0.0
    degenerate = area <= 1e-12 * max(scale, 1e-30)
    if degenerate.all():
        raise InvalidAsset(f"mesh.faces: all {len(f)} faces are degenerate (zero area): there is no surface to "
                           "refine; export the mesh with its real geometry", field="mesh.faces")
    return {"faces": int(len(f)), "degenerate_faces": int(degenerate.sum())}
