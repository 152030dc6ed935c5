"""Baking views onto the mesh's UVs: true renders bake back to the true texture; visibility; seams."""

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.texture.bake import BakeConfig, bake, dilate, texel_surface
from likeness3d.backend.stages.views.cameras import Cameras, intrinsics, look_at, orbit
from likeness3d.backend.stages.views.mesh_passes import mesh_passes
from likeness3d.protocol.assets import Mesh
from likeness3d.backend.stages.views.meshes import sample_texture, texture_float
from likeness3d.backend.stages.quality.metrics import psnr
from likeness3d.backend.synthetic.shapes import procedural_texture, uv_cube, uv_sphere


def all_around(width=128):
    return orbit((0, 0, 0), 1.3, list(range(0, 360, 45)), [-50.0, 0.0, 50.0], width, width)


@pytest.mark.parametrize("shape", ["sphere", "cube"])
def test_true_renders_bake_back_to_the_true_texture(shape):
    mesh = uv_sphere(1.0, 48, 24, texture_size=64, seed=3) if shape == "sphere" else uv_cube(1.5, 2, 64, seed=4)
    views = all_around()
    images = mesh_passes(mesh, views).rgb
    black = np.zeros((64, 64, 4), np.uint8)
    result = bake(mesh, images, views, base_texture=black)
    truth = torch.as_tensor(texture_float(mesh.texture))
    assert result.texture.shape == (64, 64, 3)
    assert result.seen.float().mean() > 0.5
    assert psnr(result.texture, truth, result.seen) >= 30.0
    assert torch.equal(result.unseen, result.covered & ~result.seen)


def test_texels_no_view_sees_are_reported_and_keep_the_base():
    mesh = uv_sphere(1.0, 48, 24, texture_size=64, seed=3)
    views = orbit((0, 0, 0), 1.3, list(range(0, 360, 60)), [60.0], 96, 96)  # only from above
    images = mesh_passes(mesh, views).rgb
    base = procedural_texture(64, seed=9)
    result = bake(mesh, images, views, base_texture=base)
    assert result.unseen.any() and result.seen.any()
    # Texel rows run from the north pole (row 0) to the south pole: unseen texels are all in the south.
    rows = torch.arange(64)[:, None].expand(64, 64)
    # Texel row r >= 32 is south of the equator; the cameras at 60 degrees see a little past it.
    assert rows[result.unseen].min() >= 32 and rows[result.seen].max() < 48
    assert torch.allclose(result.texture[result.unseen], torch.as_tensor(texture_float(base))[result.unseen])


def two_cubes() -> Mesh:
    """A big cube and a small one 1.2 m in front of it (toward -Y), each in half of the UV space."""
    big, small = uv_cube(2.0, 4, 64, seed=1), uv_cube(0.6, 2, 64, center=(0.0, -2.2, 0.0), seed=2)
    uvs = np.concatenate([big.uvs * [0.5, 1.0], small.uvs * [0.5, 1.0] + [0.5, 0.0]])
    texture = np.concatenate([procedural_texture(64, seed=1)[:, ::2], procedural_texture(64, seed=2)[:, ::2]], 1)
    return Mesh(
        vertices=np.concatenate([big.vertices, small.vertices]),
        faces=np.concatenate([big.faces, small.faces + len(big.vertices)]),
        uvs=uvs.astype(np.float32),
        texture=texture,
    )


def test_depth_test_keeps_occluded_texels_unseen():
    mesh = two_cubes()
    eye = torch.tensor([[0.0, -6.0, 0.0]])
    view = Cameras(intrinsics(40, 96, 96)[None], look_at(eye, torch.zeros(3)), 96, 96)
    images = mesh_passes(mesh, view).rgb
    result = bake(mesh, images, view, base_texture=np.zeros((64, 64, 4), np.uint8))
    tri, bary = texel_surface(mesh, 64, 64)
    covered = tri >= 0
    pts = np.zeros((64, 64, 3))
    pts[covered] = (mesh.vertices[mesh.faces[tri[covered]]] * bary[covered][..., None]).sum(1)
    # Texels on the big cube's front face (y = -1) behind the small cube (|x|, |z| < 0.25) are hidden.
    front = covered & (np.abs(pts[..., 1] + 1.0) < 1e-4)
    hidden = front & (np.abs(pts[..., 0]) < 0.25) & (np.abs(pts[..., 2]) < 0.25)
    open_ = front & ((np.abs(pts[..., 0]) > 0.45) | (np.abs(pts[..., 2]) > 0.45))
    assert hidden.sum() >= 4 and open_.sum() > 50
    assert not result.seen[torch.as_tensor(hidden)].any()
    assert result.seen[torch.as_tensor(open_)].all()
    truth = torch.as_tensor(texture_float(mesh.texture))
    assert psnr(result.texture, truth, result.seen) >= 30.0  # nothing of the small cube leaked in


def test_gutters_are_dilated_so_seams_sample_island_colours():
    mesh = uv_cube(1.5, 2, 64, seed=4, margin=0.06)
    views = all_around()
    images = mesh_passes(mesh, views).rgb
    truth = texture_float(mesh.texture)
    # Bilinear lookups exactly on the island borders (the UV corners) reach into the gutter: without
    # dilation they pull in the empty gutter (black), with it they stay close to the island's colours.
    corners = mesh.uvs.reshape(-1, 2).astype(np.float64)
    errors = {}
    for px in (0, 4):
        result = bake(mesh, images, views, config=BakeConfig(dilate_px=px))
        errors[px] = np.abs(sample_texture(result.texture.numpy(), corners) - sample_texture(truth, corners))
    assert errors[0].mean() > 0.2
    assert errors[4].mean() < 0.03 and errors[4].max() < 0.15
    # Far from every island the gutter stays empty (dilation is bounded).
    assert not result.covered[0:2, 0:2].any()


def test_dilate_grows_one_ring_per_iteration():
    values = torch.zeros(7, 7, 1)
    values[3, 3] = 2.0
    valid = torch.zeros(7, 7, dtype=torch.bool)
    valid[3, 3] = True
    out, grown = dilate(values, valid, 2)
    assert grown.sum() == 25 and torch.allclose(out[grown], torch.full((25, 1), 2.0))


def test_bake_rejects_bad_input():
    mesh = uv_cube(1.0, 1, 16)
    views = orbit((0, 0, 0), 0.9, [0, 90], [0], 16, 16)
    with pytest.raises(ValueError, match="images"):
        bake(mesh, torch.rand(2, 16, 15, 3), views)
    with pytest.raises(ValueError, match="uvs"):
        bake(Mesh(mesh.vertices, mesh.faces), torch.rand(2, 16, 16, 3), views)
    with pytest.raises(ValueError, match="view_weights"):
        bake(mesh, torch.rand(2, 16, 16, 3), views, view_weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="min_cosine"):
        BakeConfig(min_cosine=1.5)
