"""Joint flips/rotations, random inpainting masks, latent-resolution weights and the masked loss."""

from __future__ import annotations

import torch

from likeness3d.backend.stages.diffusion.train.augment import flip_rotate, random_flip_rotate
from likeness3d.backend.stages.diffusion.train.masks import latent_weights, masked_mse, random_inpaint_masks


def _dot(h=9, w=9, row=4, col=8):
    img = torch.zeros(1, 3, h, w)
    img[0, :, row, col] = 1
    return img


def test_rotation_turns_counter_clockwise_and_flip_mirrors():
    ones = torch.ones(1, 1, 9, 9)
    out, _ = flip_rotate(_dot(), ones, torch.tensor([False]), torch.tensor([90.0]), torch.zeros(3))
    assert (out[0, 0] > 0.5).nonzero().tolist() == [[0, 4]]  # right of centre -> top
    out, m = flip_rotate(_dot(), ones, torch.tensor([True]), torch.tensor([0.0]), torch.zeros(3))
    assert (out[0, 0] > 0.5).nonzero().tolist() == [[4, 0]] and torch.equal(m, ones)


def test_identity_and_double_flip():
    img = torch.rand(2, 3, 16, 24)
    mask = (torch.rand(2, 1, 16, 24) > 0.5).float()
    same, m = flip_rotate(img, mask, torch.tensor([False, False]), torch.zeros(2), torch.zeros(3))
    assert torch.allclose(same, img, atol=1e-5) and torch.allclose(m, mask, atol=1e-5)
    once, m1 = flip_rotate(img, mask, torch.tensor([True, True]), torch.zeros(2), torch.zeros(3))
    twice, m2 = flip_rotate(once, m1, torch.tensor([True, True]), torch.zeros(2), torch.zeros(3))
    assert torch.allclose(twice, img, atol=1e-5) and torch.allclose(m2, mask, atol=1e-5)


def test_rotated_in_corners_are_background_and_invalid():
    img = torch.zeros(1, 3, 32, 48)
    fill = torch.tensor([1.0, 0.5, 0.25])
    out, m = flip_rotate(img, torch.ones(1, 1, 32, 48), torch.tensor([False]), torch.tensor([15.0]), fill)
    assert m[0, 0, 0, 0] == 0 and m[0, 0, 16, 24] > 0.99
    assert torch.allclose(out[0, :, 0, 0], fill) and torch.allclose(out[0, :, 16, 24], torch.zeros(3), atol=1e-6)


def test_random_flip_rotate_is_seeded_and_bounded():
    img, mask = torch.rand(4, 3, 16, 16), torch.ones(4, 1, 16, 16)
    a = random_flip_rotate(img, mask, 15.0, 0.5, torch.zeros(3), torch.Generator().manual_seed(3))
    b = random_flip_rotate(img, mask, 15.0, 0.5, torch.zeros(3), torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # at most 15 degrees: the centre region of the mask stays valid
    assert (a[1][:, 0, 6:10, 6:10] > 0.99).all()


def test_random_inpaint_masks():
    g = torch.Generator().manual_seed(0)
    m = random_inpaint_masks(16, 32, 24, 0.0, g)
    assert m.shape == (16, 1, 32, 24) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert len({float(x.mean()) for x in m}) > 8  # varied shapes and sizes
    assert (random_inpaint_masks(3, 8, 8, 1.0, g) == 1).all()


def test_latent_weights_are_area_fractions():
    valid = torch.zeros(1, 1, 8, 8)
    valid[..., :4, :] = 1
    valid[..., 4:6, :2] = 1
    w = latent_weights(valid, (2, 2))
    assert torch.allclose(w[0, 0], torch.tensor([[1.0, 1.0], [0.25, 0.0]]))


def test_masked_mse_ignores_zero_weight_cells():
    pred = torch.randn(2, 4, 4, 4, requires_grad=True)
    target = torch.randn(2, 4, 4, 4)
    w = torch.zeros(2, 1, 4, 4)
    w[:, :, :2] = 1
    loss = masked_mse(pred, target, w)
    assert torch.allclose(loss, ((pred - target) ** 2)[:, :, :2].mean())
    loss.backward()
    assert (pred.grad[:, :, 2:] == 0).all() and (pred.grad[:, :, :2] != 0).any()
