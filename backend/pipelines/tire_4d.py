"""TIRE on an animated mesh (DESIGN.md section 5.3): what the static run does differently, step by step.

The texture is refined once, on the rest pose the UVs belong to: each reference photo observes the surface
where it stood at the photo's frame (the fidelity stage and the track see the mesh posed there, and carry what
they see back to the rest pose by surface identity: triangle + barycentric); the orbit of target views, the
inpainting and the resplat run on the rest pose. The Gaussians are then bound to the surface and posed at
every frame; the per-frame positions are written as a PC2 point cache.
"""

from __future__ import annotations

import numpy as np
import torch

from ..export.ply import write_ply
from ...protocol.pc2 import pc2_bytes
from ..stages.animation.binding import bind
from ..stages.animation.poses import Animation
from ..stages.animation.track import track_over_frames


def frames_of(references) -> list[int | None]:
    """The scene frame of each reference (None: the rest pose)."""
    return [r.frame for r in references]


def fidelity_poses(animation: Animation, references):
    """prepare_fidelity's `posed`: reference i's caster and the used texels' points and normals at its frame."""
    def posed(i, surface):
        frame = references[i].frame
        tri = surface.tri[surface.rows, surface.cols]
        bary = _texel_bary(animation, surface, tri)
        pts = torch.as_tensor(animation.points(frame, tri, bary), dtype=torch.float32)
        nrm = torch.as_tensor(animation.face_normals(frame, tri), dtype=torch.float32)
        return animation.caster(frame), pts, nrm
    return posed


def _texel_bary(animation: Animation, surface, tri: np.ndarray) -> np.ndarray:
    """[T, 3] barycentrics of the used texels' rest points in their triangles (cached on the surface)."""
    cached = getattr(surface, "_bary", None)
    if cached is None:
        from ..stages.views.mesh_passes import barycentric

        rest = animation.vertices(None)
        cached = barycentric(rest[animation.faces[tri]], surface.points.double().numpy())
        surface._bary = cached
    return cached


def seen_by_sources(surface, sources, frames, animation: Animation, min_cosine: float) -> torch.Tensor:
    """[T] bool: texels some reference sees at its own frame (the coverage plan's starting point)."""
    from ..stages.views.plan import seen_mask

    tri = surface.tri[surface.rows, surface.cols]
    bary = _texel_bary(animation, surface, tri)
    out = torch.zeros(len(surface), dtype=torch.bool)
    for s, frame in zip(sources, frames):
        pts = torch.as_tensor(animation.points(frame, tri, bary), dtype=torch.float32)
        nrm = torch.as_tensor(animation.face_normals(frame, tri), dtype=torch.float32)
        out |= seen_mask(pts, nrm, s.camera, s.depth[None], (s.depth > 0)[None], min_cosine)
    return out


def track(tp, sources, frames, animation: Animation, config):
    """Step 2 for an animated mesh: the target pixels' surface points tracked into each photo at its frame."""
    return track_over_frames(tp.tri, tp.bary, tp.mask, sources, frames, animation, config)


def export_animation(ctx, animation: Animation, gaussians) -> dict:
    """animation.pc2, splats.ply (rest pose, with the binding) and splats/frame_NNNN.ply (one per frame)."""
    numbers = animation.numbers
    steps = sorted(set(np.diff(numbers).tolist())) or [1]
    ctx.add_artifact("animation.pc2", pc2_bytes(animation.mesh.frames, numbers[0], steps[0]))
    arrays = gaussians.to_arrays()
    binding = bind(arrays["means"], arrays["quats"], arrays["log_scales"], animation.vertices(None), animation.faces)
    ctx.add_artifact("splats.ply", write_ply(None, **arrays, extra=binding.to_extra()))
    for i, number in enumerate(numbers):
        centre, rot, scale = binding.pose(animation.vertices(number), animation.faces)
        ctx.add_artifact(f"splats/frame_{number:04d}.ply", write_ply(None, **(arrays | {"means": centre, "quats": rot})))
        ctx.progress("export", i + 1, len(numbers), f"splats posed at frame {number}", cancel_point=False)
    note = None if len(steps) == 1 else (f"frames are not evenly spaced (steps {steps}); animation.pc2 holds them in "
                                         f"order with sampling {steps[0]}")
    return {"frames": numbers, "fps": animation.mesh.fps, "pc2_sampling": steps[0],
            "bound_splats": len(binding.face), **({"pc2_note": note} if note else {})}
