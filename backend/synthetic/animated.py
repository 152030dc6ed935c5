"""The bundled animated example (`likeness3d demo --4d`): the painted pebble of `example`, swaying and twisting
over a few frames; its true texture, an initial asset wrong on the hidden side, photos from a camera that moves
around the front while the subject moves, and held-out views from fixed cameras at every frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...protocol.assets import Camera, Mesh, Reference
from .example import RADII, damaged_texture, ellipsoid_mesh, orbit_camera, render_references, true_texture

FRAMES = tuple(range(1, 9))
"""Scene frames 1..8 at 24 fps."""
FPS = 24.0


def deform(rest: np.ndarray, frame: int) -> np.ndarray:
    """[V, 3] positions at `frame`: a twist about Z growing with height and a sideways sway (a function of the
    rest position, so any vertex order of the same surface deforms alike)."""
    v = np.asarray(rest, np.float64)
    h = np.clip(v[:, 2] / (2 * RADII[2]), 0, 1)
    phase = 2 * np.pi * (frame - FRAMES[0]) / len(FRAMES)
    angle = np.radians(30.0) * np.sin(phase) * h
    c, s = np.cos(angle), np.sin(angle)
    x, y = c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]
    x = x + 0.08 * np.sin(phase) * h**2
    return np.stack([x, y, v[:, 2] * (1 + 0.04 * np.cos(phase))], 1).astype(np.float32)


def animate(mesh: Mesh, texture: np.ndarray) -> Mesh:
    """`mesh` with `texture` and the example's animation over FRAMES."""
    frames = np.stack([deform(mesh.vertices, f) for f in FRAMES])
    return Mesh(mesh.vertices, mesh.faces, mesh.uvs, texture, frames, np.array(FRAMES, np.int32), FPS)


@dataclass(frozen=True)
class AnimatedCase:
    initial: Mesh
    """The animated mesh with the damaged texture."""
    truth: Mesh
    references: tuple[Reference, ...]
    """Photos, each with the frame it was taken at."""
    eval_views: tuple[Reference, ...]
    """Fixed held-out cameras, each at every other frame (flicker needs a camera at consecutive frames)."""
    class_word: str = "pebble"


def _posed(mesh: Mesh, frame: int) -> Mesh:
    row = list(FRAMES).index(frame)
    return Mesh(mesh.frames[row], mesh.faces, mesh.uvs, mesh.texture)


def _views(mesh: Mesh, shots: list[tuple[str, int, Camera]]) -> tuple[Reference, ...]:
    out = []
    for name, frame, cam in shots:
        (ref,) = render_references(_posed(mesh, frame), [cam], [name])
        out.append(Reference(ref.name, ref.image, ref.camera, frame))
    return tuple(out)


def animated_case(image_size: int = 96, texture_size: int = 192) -> AnimatedCase:
    """References: a camera sweeping the front (azimuths -45..50) while the pebble moves, one photo per 2 frames;
    held-out: 4 fixed cameras around the subject at frames 1, 3, 5, 7."""
    tex = true_texture(texture_size)
    base = ellipsoid_mesh(tex, rings=24, segments=48)
    truth = animate(base, tex)
    initial = animate(base, damaged_texture(tex))
    sweep = [("sweep_f1", 1, -45.0, 20.0), ("sweep_f3", 3, -10.0, 10.0), ("sweep_f5", 5, 20.0, 5.0), ("sweep_f7", 7, 50.0, 0.0)]
    refs = _views(truth, [(n, f, orbit_camera(a, e, image_size)) for n, f, a, e in sweep])
    evals = _views(truth, [(f"eval_{int(a)}_f{f}", f, orbit_camera(a, 25.0, image_size))
                           for a in (22.5, 112.5, 202.5, 292.5) for f in (1, 3, 5, 7)])
    return AnimatedCase(initial, truth, refs, evals)
