"""Camera batches (OpenCV axes) and the view samplers: orbits, ordering and rings by angular distance.

Conventions (DESIGN.md section 4): world = Blender world (Z up, metres); a camera is OpenCV (x right,
y down, z forward), world-to-camera `viewmats` [C, 4, 4] and pixel intrinsics `Ks` [C, 3, 3] whose pixel
centres sit at integer coordinates ((0, 0) = centre of the top-left pixel), as on the wire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Cameras:
    """C pinhole cameras sharing one image size."""

    Ks: Tensor
    """[C, 3, 3] float32 pixel intrinsics, pixel centres at integer coordinates."""
    viewmats: Tensor
    """[C, 4, 4] float32 world-to-camera, OpenCV axes (x right, y down, z forward)."""
    width: int
    height: int

    def __post_init__(self) -> None:
        Ks, viewmats = self.Ks, self.viewmats
        if not isinstance(Ks, Tensor) or Ks.ndim != 3 or Ks.shape[1:] != (3, 3):
            raise ValueError(f"Ks must be a tensor of shape [C, 3, 3], got {_shape(Ks)}")
        if not isinstance(viewmats, Tensor) or viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
            raise ValueError(f"viewmats must be a tensor of shape [C, 4, 4], got {_shape(viewmats)}")
        if len(Ks) != len(viewmats):
            raise ValueError(f"Ks has {len(Ks)} cameras but viewmats has {len(viewmats)}")
        if int(self.width) != self.width or self.width <= 0:
            raise ValueError(f"width must be a positive integer, got {self.width}")
        if int(self.height) != self.height or self.height <= 0:
            raise ValueError(f"height must be a positive integer, got {self.height}")
        # Values are checked where cameras are built, on the CPU; copies and slices on a GPU skip it, since
        # reading a CUDA tensor's values would stall the device on every step of a fit.
        if Ks.device.type == "cpu":
            if not (torch.isfinite(Ks).all() and torch.isfinite(viewmats).all()):
                raise ValueError("Ks and viewmats must be finite")
            if (Ks[:, 0, 0] <= 0).any() or (Ks[:, 1, 1] <= 0).any():
                raise ValueError(f"focal lengths must be > 0, got fx={Ks[:, 0, 0].tolist()}")

    def __len__(self) -> int:
        return len(self.Ks)

    def __getitem__(self, index) -> "Cameras":
        """A sub-batch: an int, a slice, a list or a tensor of indices, or a boolean mask."""
        if isinstance(index, int):
            index = [index]
        return Cameras(self.Ks[index], self.viewmats[index], self.width, self.height)

    def to(self, device) -> "Cameras":
        return Cameras(self.Ks.to(device), self.viewmats.to(device), self.width, self.height)

    @property
    def device(self) -> torch.device:
        return self.Ks.device

    @property
    def centers(self) -> Tensor:
        """[C, 3] camera centres in world space."""
        R, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -(R.transpose(1, 2) @ t[..., None])[..., 0]

    @property
    def forwards(self) -> Tensor:
        """[C, 3] unit optical axes (camera +z) in world space."""
        return torch.nn.functional.normalize(self.viewmats[:, 2, :3], dim=-1)

    def resized(self, width: int, height: int) -> "Cameras":
        """The same cameras at another resolution (intrinsics scaled; integer pixel-centre convention)."""
        sx, sy = width / self.width, height / self.height
        Ks = self.Ks.clone()
        Ks[:, 0, 0] *= sx
        Ks[:, 1, 1] *= sy
        Ks[:, 0, 1] *= sx
        Ks[:, 0, 2] = (Ks[:, 0, 2] + 0.5) * sx - 0.5
        Ks[:, 1, 2] = (Ks[:, 1, 2] + 0.5) * sy - 0.5
        return Cameras(Ks, self.viewmats.clone(), width, height)

    @staticmethod
    def cat(batches: Sequence["Cameras"]) -> "Cameras":
        if not batches:
            raise ValueError("batches must hold at least one Cameras")
        sizes = {(b.width, b.height) for b in batches}
        if len(sizes) != 1:
            raise ValueError(f"all batches must share one image size, got {sorted(sizes)}")
        w, h = sizes.pop()
        return Cameras(torch.cat([b.Ks for b in batches]), torch.cat([b.viewmats for b in batches]), w, h)

    @staticmethod
    def from_protocol(cameras: Iterable) -> "Cameras":
        """From objects with `K` [3,3], `w2c` [4,4], `width`, `height` (the protocol's `Camera`)."""
        cameras = list(cameras)
        if not cameras:
            raise ValueError("cameras must hold at least one camera")
        sizes = {(int(c.width), int(c.height)) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cameras must share one image size, got {sorted(sizes)}; resize first")
        w, h = sizes.pop()
        Ks = torch.as_tensor(np.stack([np.asarray(c.K) for c in cameras]), dtype=torch.float32)
        viewmats = torch.as_tensor(np.stack([np.asarray(c.w2c) for c in cameras]), dtype=torch.float32)
        return Cameras(Ks, viewmats, w, h)


def _shape(x) -> str:
    return str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__


def intrinsics(fov_deg: float, width: int, height: int) -> Tensor:
    """[3, 3] K with a horizontal field of view `fov_deg`, square pixels, centred principal point."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=torch.float32)


def look_at(eyes: Tensor, targets: Tensor, up: Sequence[float] = (0.0, 0.0, 1.0)) -> Tensor:
    """[C, 4, 4] world-to-camera (OpenCV) for cameras at `eyes` [C, 3] looking at `targets` [C, 3] or [3].

    The image's up is world `up` (Blender +Z) projected on the image plane; looking straight along `up`
    the camera's up falls back to world +Y.
    """
    eyes = torch.as_tensor(eyes, dtype=torch.float32)
    targets = torch.as_tensor(targets, dtype=torch.float32, device=eyes.device).expand_as(eyes)
    z = targets - eyes
    if (z.norm(dim=-1) < 1e-9).any():
        raise ValueError("look_at: an eye coincides with its target")
    z = torch.nn.functional.normalize(z, dim=-1)
    up_t = torch.as_tensor(up, dtype=torch.float32, device=eyes.device).expand_as(z)
    x = torch.cross(z, up_t, dim=-1)
    degenerate = x.norm(dim=-1) < 1e-6
    if degenerate.any():
        alt = torch.tensor([0.0, 1.0, 0.0], device=eyes.device).expand_as(z)
        x = torch.where(degenerate[:, None], torch.cross(z, alt, dim=-1), x)
    x = torch.nn.functional.normalize(x, dim=-1)
    y = torch.cross(z, x, dim=-1)  # OpenCV y points down the image
    R = torch.stack([x, y, z], dim=1)  # rows: camera axes in world coordinates
    viewmats = torch.eye(4).repeat(len(eyes), 1, 1)
    viewmats[:, :3, :3] = R
    viewmats[:, :3, 3] = -(R @ eyes[..., None])[..., 0]
    return viewmats


def bounding_sphere(vertices) -> tuple[Tensor, float]:
    """Centre [3] (of the bounding box) and radius enclosing every vertex of `vertices` [V, 3]."""
    v = torch.as_tensor(np.asarray(vertices), dtype=torch.float32)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must have shape [V, 3], got {tuple(v.shape)}")
    center = 0.5 * (v.min(0).values + v.max(0).values)
    return center, float((v - center).norm(dim=-1).max())


def orbit(
    center: Sequence[float] | Tensor,
    radius: float,
    azimuths_deg: Sequence[float],
    elevations_deg: Sequence[float],
    width: int,
    height: int,
    fov_deg: float = 40.0,
    margin: float = 1.1,
) -> Cameras:
    """Cameras on a sphere around `center`, all looking at it, sized so a sphere of `radius` fills the view.

    Grid order: elevation-major, C = len(elevations_deg) * len(azimuths_deg). Azimuth 0 looks from -Y
    toward +Y (Blender's front view), azimuth 90 from +X (right view); elevation 90 is straight above.
    The distance is margin * radius / sin(half the narrower field of view).
    """
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if not azimuths_deg or not elevations_deg:
        raise ValueError(f"azimuths_deg and elevations_deg must be non-empty, got {azimuths_deg}, {elevations_deg}")
    K = intrinsics(fov_deg, width, height)
    half_fov = math.atan(0.5 * min(width, height) / K[0, 0].item())
    distance = margin * radius / math.sin(half_fov)
    az = torch.tensor(azimuths_deg, dtype=torch.float32).deg2rad()
    el = torch.tensor(elevations_deg, dtype=torch.float32).deg2rad()
    el, az = torch.meshgrid(el, az, indexing="ij")
    dirs = torch.stack([az.sin() * el.cos(), -az.cos() * el.cos(), el.sin()], dim=-1).reshape(-1, 3)
    center_t = torch.as_tensor(center, dtype=torch.float32).reshape(3)
    eyes = center_t + distance * dirs
    viewmats = look_at(eyes, center_t)
    return Cameras(K.expand(len(eyes), 3, 3).clone(), viewmats, width, height)


def turntable(center, radius: float, n: int, width: int, height: int, elevation_deg: float = 15.0,
              fov_deg: float = 40.0) -> Cameras:
    """`n` views evenly spaced in azimuth at one elevation, starting at the front (azimuth 0)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return orbit(center, radius, [360.0 * i / n for i in range(n)], [elevation_deg], width, height, fov_deg)


def angular_distance(a: Cameras, b: Cameras, center: Tensor | Sequence[float] | None = None) -> Tensor:
    """[Ca, Cb] angles in degrees between the views of `a` and `b`.

    With `center`, the angle between the directions from `center` to the camera centres (how far apart
    two cameras sit around the object); without, the angle between the optical axes.
    """
    if center is None:
        da, db = a.forwards, b.forwards.to(a.device)
    else:
        c = torch.as_tensor(center, dtype=torch.float32, device=a.device).reshape(3)
        da = torch.nn.functional.normalize(a.centers - c, dim=-1)
        db = torch.nn.functional.normalize(b.centers.to(a.device) - c, dim=-1)
    return torch.rad2deg(torch.acos((da @ db.T).clamp(-1.0, 1.0)))


def order_by_sources(targets: Cameras, sources: Cameras, center=None) -> tuple[Tensor, Tensor]:
    """Target views sorted nearest-source first.

    Returns (order [C] long indices into `targets`, nearest [C] degrees to the nearest source, in that
    order).
    """
    nearest = angular_distance(targets, sources, center).min(dim=1).values
    order = torch.argsort(nearest, stable=True)
    return order, nearest[order]


def rings(
    targets: Cameras,
    sources: Cameras,
    bounds_deg: Sequence[float] = (20.0, 90.0, 180.0),
    center=None,
) -> list[Tensor]:
    """Group target views into rings by angular distance to the nearest source (TIRE's progressive order).

    Ring k holds the views whose nearest source lies in (bounds_deg[k-1], bounds_deg[k]] (ring 0 from 0),
    each ring ordered nearest first. Returns one long tensor of indices into `targets` per bound (empty
    rings included); views further than the last bound belong to no ring.
    """
    bounds = list(bounds_deg)
    if not bounds or any(b <= 0 for b in bounds) or any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
        raise ValueError(f"bounds_deg must be positive and increasing, got {tuple(bounds_deg)}")
    order, nearest = order_by_sources(targets, sources, center)
    out, low = [], -1.0
    for high in bounds:
        sel = (nearest > low) & (nearest <= high + 1e-4)
        out.append(order[sel])
        low = high + 1e-4
    return out
