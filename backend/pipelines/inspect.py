"""`inspect`: validate an asset and report its statistics (bounds, area, counts, UVs, texture, and for each
reference whether and where its camera sees the mesh) as `inspect.json`, with a preview per reference that
overlays the projected mesh on the photo, and `reference_NN.png`: the photo | the mesh rendered from its
camera | the two blended, so a misaligned camera shows at once."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ...protocol.assets import Asset, Mesh, Reference
from ..config import number, require, whole
from ..stages.common.images import to_u8, unit_float

DESCRIPTION = "validate an asset and report its statistics and which references see the mesh (inspect.json)"


@dataclass(frozen=True)
class InspectConfig:
    overlay_points: int = 20000
    """Vertices drawn on each reference's preview (a random subset when the mesh has more)."""
    min_alpha: float = 0.5
    """Alpha above which a reference pixel counts as the subject."""
    render_max_side: int = 256
    """Renders of the mesh from each reference camera are at most this many pixels on a side (0: none)."""

    def __post_init__(self) -> None:
        require(
            self,
            (self.render_max_side == 0 or whole(self.render_max_side, 8, 4096), "render_max_side", "must be 0 or in [8, 4096]"),
            (whole(self.overlay_points, 0, 10_000_000), "overlay_points", "must be an integer in [0, 1e7]"),
            (number(self.min_alpha, 0.0, 1.0), "min_alpha", "must be in [0, 1]"),
        )


def mesh_stats(mesh: Mesh) -> dict:
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    lo, hi = v.min(0), v.max(0)
    stats = {
        "vertices": int(len(v)),
        "faces": int(len(f)),
        "bounds_min": lo.tolist(),
        "bounds_max": hi.tolist(),
        "size": (hi - lo).tolist(),
        "center": ((lo + hi) / 2).tolist(),
        "surface_area": float(areas.sum()),
        "degenerate_faces": int((areas <= 1e-12 * max(1.0, float(np.max(hi - lo)) ** 2)).sum()),
        "boundary_edges": int((counts == 1).sum()),
        "non_manifold_edges": int((counts > 2).sum()),
        "unused_vertices": int(len(v) - len(np.unique(f))),
        "has_uvs": mesh.uvs is not None,
        "has_texture": mesh.texture is not None,
    }
    if mesh.uvs is not None:
        uv = mesh.uvs.reshape(-1, 2)
        stats["uv_min"] = uv.min(0).tolist()
        stats["uv_max"] = uv.max(0).tolist()
        stats["uv_outside_unit_square"] = float(np.mean(np.any((uv < 0) | (uv > 1), axis=1)))
    if mesh.texture is not None:
        h, w = mesh.texture.shape[:2]
        stats["texture"] = {"width": int(w), "height": int(h), "dtype": str(mesh.texture.dtype)}
    return stats


def reference_stats(ref: Reference, mesh: Mesh, min_alpha: float) -> tuple[dict, np.ndarray, np.ndarray]:
    """Statistics of one reference, plus the projected vertices ([N, 2] pixels) and a mask of those in view."""
    cam = ref.camera
    uv, z = cam.project(mesh.vertices.astype(np.float64))
    in_front = z > 1e-6
    inside = in_front & (uv[:, 0] >= -0.5) & (uv[:, 0] <= cam.width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= cam.height - 0.5)
    alpha = unit_float(ref.image[..., 3])
    subject = alpha > min_alpha
    centre = np.asarray(mesh.bounds.mean(0), np.float64)
    cam_pos = cam.c2w[:3, 3]
    stats = {
        "name": ref.name,
        "width": cam.width,
        "height": cam.height,
        "camera_position": cam_pos.tolist(),
        "distance_to_center": float(np.linalg.norm(cam_pos - centre)),
        "fx": float(cam.K[0, 0]),
        "fy": float(cam.K[1, 1]),
        "vertices_in_front": float(in_front.mean()),
        "vertices_in_image": float(inside.mean()),
        "sees_mesh": bool(inside.any()),
        "subject_fraction": float(subject.mean()),
    }
    if inside.any():
        p = uv[inside]
        box = [float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())]
        stats["mesh_bbox_px"] = box
        if subject.any():
            rows, cols = np.nonzero(subject)
            sbox = [float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())]
            stats["subject_bbox_px"] = sbox
            stats["bbox_iou"] = _iou(box, sbox)
            # of the projected vertices, the share that falls on the subject: low means misaligned
            px = np.clip(np.round(p).astype(np.int64), 0, [cam.width - 1, cam.height - 1])
            stats["vertices_on_subject"] = float(subject[px[:, 1], px[:, 0]].mean())
    return stats, uv, inside


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def overlay(ref: Reference, uv: np.ndarray, inside: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """[H, W, 4] uint8: the reference composited on grey with the projected vertices in magenta."""
    img = unit_float(ref.image)
    rgb = img[..., :3] * img[..., 3:] + 0.25 * (1.0 - img[..., 3:])
    idx = np.flatnonzero(inside)
    if len(idx) > max_points:
        idx = np.random.default_rng(seed).choice(idx, max_points, replace=False)
    px = np.clip(np.round(uv[idx]).astype(np.int64), 0, [ref.camera.width - 1, ref.camera.height - 1])
    rgb[px[:, 1], px[:, 0]] = (1.0, 0.0, 1.0)
    out = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=2)
    return to_u8(out)


def comparison_png(ref: Reference, caster, config: InspectConfig) -> tuple[bytes, float]:
    """PNG of one row, the photo | the mesh rendered from its camera | both blended, and their silhouette IoU."""
    from ..export.sheet import grid_sheet
    from ..stages.views.alignment import reference_view

    view = reference_view(caster, ref.image, ref.camera, config.render_max_side, min_alpha=config.min_alpha)
    grey = np.float32(0.25)
    over = [v[..., :3] * v[..., 3:] + grey * (1 - v[..., 3:]) for v in (view.reference, view.render)]
    row = np.stack([over[0], over[1], 0.5 * (over[0] + over[1])])
    return grid_sheet([row], [ref.name]), view.silhouette_iou


def run(ctx, asset: Asset, config: InspectConfig) -> None:
    # 1. The mesh
    total = 1 + len(asset.references)
    report = {"name": asset.name, "class_word": asset.class_word, "mesh": mesh_stats(asset.mesh), "references": []}
    ctx.progress("inspect", 1, total, f"mesh: {report['mesh']['vertices']} vertices, {report['mesh']['faces']} faces")
    caster = None
    if asset.references and config.render_max_side:
        import importlib.util

        missing = [m for m in ("torch", "trimesh", "embreex") if importlib.util.find_spec(m) is None]
        if missing:  # a light backend (no torch) still inspects; it says what it skipped
            report["renders_skipped"] = f"this backend lacks {missing}: no renders from the reference cameras"
            ctx.log(report["renders_skipped"])
        else:
            from ..stages.views.mesh_passes import Raycaster

            caster = Raycaster(asset.mesh)
    # 2. Each reference: where its camera sees the mesh, with an overlay preview, and the mesh rendered
    #    from its camera beside it
    for i, ref in enumerate(asset.references):
        stats, uv, inside = reference_stats(ref, asset.mesh, config.min_alpha)
        if caster is not None:
            png, iou = comparison_png(ref, caster, config)
            stats["render"] = f"reference_{i:02d}.png"
            stats["silhouette_iou"] = iou
            ctx.add_artifact(stats["render"], png)
        report["references"].append(stats)
        preview = overlay(ref, uv, inside, config.overlay_points)
        ctx.progress("inspect", 2 + i, total, f"reference {ref.name}: sees mesh {stats['sees_mesh']}", preview)
    report["references_seeing_mesh"] = [r["name"] for r in report["references"] if r["sees_mesh"]]
    report["renders"] = [r["render"] for r in report["references"] if "render" in r]
    # 3. The artifact
    ctx.add_artifact("inspect.json", json.dumps(report, indent=1).encode())
