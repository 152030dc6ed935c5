"""TIRE's `inpaint.batch_views`: a ring's views inpainted several per pipeline call give what one view per call
gives (each view's noise is its own), in fewer UNet calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from likeness3d.backend.config import config_from_dict
from likeness3d.backend.stages.diffusion.config import DiffusionInpaintConfig
from likeness3d.backend.stages.diffusion.sample.inpaint import build_inpainter
from likeness3d.backend.stages.diffusion.sample.subject import DiffusionInpainter
from likeness3d.protocol.errors import BadMessage


def test_views_batched_per_call_match_one_at_a_time(inpaint_components, views, one_thread):
    images, masks = views(3)
    x, m = torch.from_numpy(images), torch.from_numpy(masks)
    pipe = build_inpainter(inpaint_components)
    out, unet_calls = {}, {}
    for batch in (1, 3):
        calls = []
        handle = inpaint_components.unet.register_forward_hook(lambda mod, args, res: calls.append(args[0].shape[0]))
        try:
            inp = DiffusionInpainter(pipe, "a photo of sks cat", "tiny", DiffusionInpaintConfig(num_inference_steps=10,
                                     batch_size=batch), seed=3)
            out[batch] = inp(x, m, 0.3).numpy()
        finally:
            handle.remove()
        unet_calls[batch] = calls
    assert unet_calls[1] == [2] * 9 and unet_calls[3] == [6] * 3  # 3 steps; guidance doubles the batch
    np.testing.assert_allclose(out[3], out[1], atol=1e-4)
    assert np.array_equal(out[3][~masks], images[~masks])
    assert np.abs(out[3][masks] - images[masks]).mean() > 1e-3


def test_batch_views_is_a_tire_setting():
    from likeness3d.backend.pipelines.tire import TireConfig

    assert TireConfig().inpaint.batch_views == 8
    assert config_from_dict(TireConfig, {"inpaint": {"batch_views": 16}}).inpaint.batch_views == 16
    with pytest.raises(BadMessage, match=r"config.inpaint.batch_views must be an integer in \[1, 256\], got 0"):
        config_from_dict(TireConfig, {"inpaint": {"batch_views": 0}})
