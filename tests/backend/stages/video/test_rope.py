"""Temporal RoPE indices: Wan's own for the generated frames, distinct ones for every conditioning view."""

import torch

from likeness3d.backend.stages.video.joint import joint_forward
from likeness3d.backend.stages.video.rope import FrameIndexedRope, conditioning_indices, install


def test_frame_indexed_rope_is_wans_rope_on_a_plain_latent(comps):
    original = comps.transformer.rope
    replaced = FrameIndexedRope(original)
    latents = torch.zeros(1, 16, 3, 8, 6)
    for a, b in zip(original(latents), replaced(latents)):
        assert torch.equal(a, b)
    assert install(comps.transformer) is comps.transformer.rope and isinstance(comps.transformer.rope, FrameIndexedRope)


def test_conditioning_views_get_distinct_temporal_indices_beyond_the_generated_frames(comps):
    tr = comps.transformer
    info = {}
    latents, cond = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 16, 4, 4, 4)
    joint_forward(tr, latents, torch.tensor([500.0]), torch.randn(1, 8, 32), cond, info=info)
    gen, views = info["gen_frames"], info["cond_frames"]
    assert gen == [0, 1, 2]
    assert len(set(views)) == 4 and not set(views) & set(gen)
    assert views == conditioning_indices(3, 4).tolist()
    # every token of view k carries the table's row for index views[k] in its temporal part, and only that
    rope = tr.rope
    cos, _ = rope.frames(torch.tensor(views), 2, 2)
    t_part = cos[0, :, 0, : rope.t_dim].reshape(4, 4, -1)  # [view, token, t_dim]
    for k, index in enumerate(views):
        assert torch.equal(t_part[k], rope.freqs_cos[index, : rope.t_dim].expand(4, -1))
    assert len({tuple(t_part[k, 0].tolist()) for k in range(4)}) == 4


def test_an_index_past_the_table_is_refused(comps):
    rope = install(comps.transformer)
    try:
        rope.frames(torch.tensor([rope.max_seq_len]), 2, 2)
    except ValueError as e:
        assert "rope_max_seq_len" in str(e)
    else:
        raise AssertionError("an index past the table was accepted")
