"""The reference photos as Customize-It-3D's stages take them (seed 003, step 1): RGB and mask brought to one
size, depth and normal ray cast from the aligned mesh at the same cameras (no monocular estimator), and the
four DreamBooth modalities (mask, depth, normal, rgb) squared to the training resolution."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from ....protocol.errors import InvalidAsset
from ..common.images import area_resize, float_tensor, pad_to_square, to_u8
from ..diffusion.train.multimodal import MODALITIES, modality_images
from ..views.cameras import Cameras
from ..views.mesh_passes import MeshPasses


@dataclass
class ReferenceSet:
    """R reference photos at one size with the mesh's passes at their cameras."""

    rgb: Tensor
    """[R, H, W, 3] float32 in [0, 1]."""
    mask: Tensor
    """[R, H, W] bool: the photo's foreground (alpha > 0.5)."""
    cameras: Cameras
    """R cameras of size W x H."""
    passes: MeshPasses
    """The mesh seen by those cameras (depth, smooth normals, hits)."""
    modalities: dict[str, tuple[np.ndarray, np.ndarray]]
    """{modality: (images [R, S, S, 3] float32, valid [R, S, S] bool)} squared to the DreamBooth size S."""

    def preview(self) -> np.ndarray:
        """[S, 4 S, 3] uint8: the first reference's mask, depth, normal and rgb side by side."""
        return to_u8(np.concatenate([self.modalities[m][0][0] for m in MODALITIES], 1))


def _square(img: np.ndarray, size: int, fill: float, interpolation: int) -> np.ndarray:
    """[H, W, C] -> [size, size, C]: centred on a `fill` canvas, resized."""
    out = cv2.resize(pad_to_square(img, fill), (size, size), interpolation=interpolation)
    return out.reshape(size, size, img.shape[2])


def reference_set(references, caster, size: int) -> ReferenceSet:
    """`references` (protocol `Reference`s) brought to the first photo's size, the mesh ray cast at their cameras
    (`caster`: a `views.mesh_passes.Raycaster`), and the DreamBooth modalities squared to `size` (rgb over
    white, the others over black; valid masks resized nearest)."""
    first = references[0].camera
    W, H = first.width, first.height
    cams = Cameras.cat([Cameras.from_protocol([r.camera]).resized(W, H) for r in references])
    rgba = torch.stack([area_resize(float_tensor(r.image), H, W) for r in references])  # [R, H, W, 4]
    rgb, mask = rgba[..., :3], rgba[..., 3] > 0.5
    if not mask.any():
        raise InvalidAsset("the reference photos have no foreground (alpha is 0 everywhere): give RGBA photos "
                           "(or RGB with a mask_path) whose subject is opaque", field="references")
    passes = caster.passes(cams, normals="smooth")
    squared = {}
    for name, (imgs, valid) in modality_images(rgb.numpy(), mask.numpy(), passes, cams.viewmats.numpy()).items():
        fill = 1.0 if name == "rgb" else 0.0
        sq = np.stack([_square(im, size, fill, cv2.INTER_AREA) for im in imgs])
        sv = np.stack([_square(v[..., None].astype(np.float32), size, 0.0, cv2.INTER_NEAREST)[..., 0] > 0.5 for v in valid])
        squared[name] = (sq, sv)
    return ReferenceSet(rgb, mask, cams, passes, squared)
