"""The dual-branch forward of 3Dapter on diffusers' `WanTransformer3DModel`.

Two token streams pass through every block with the transformer's own modules:
- the generated tokens (noisy latents at timestep t): projections with the 3DreamBooth LoRA (`gen_branch`),
  self-attention, cross-attention to the prompt, feed-forward, as Wan's block computes them;
- the conditioning tokens (clean latents of the conditioning views, each one latent frame, at timestep 0):
  projections with the 3Dapter LoRA (`cond_branch`), self-attention and feed-forward; they carry the views,
  not the prompt, so they skip the cross-attention.
In self-attention the two streams' queries, keys and values are concatenated along the sequence (OminiControl,
EasyControl, 3DreamBooth eq. 4-5): every token attends to all. Each LoRA acts on its own stream only: a peft
LoRA layer is called with `adapter_names` (peft's per-input adapter routing), so the generated tokens' q/k/v do
not depend on the 3Dapter weights at all. Temporal RoPE: generated frames 0 .. F-1, conditioning view k at
F + k (`rope.conditioning_indices`). With no conditioning this is exactly Wan's forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .rope import conditioning_indices, install, rotate

BASE = "__base__"
"""Branch name for "no LoRA": the frozen weights alone."""


def lin(layer, x: torch.Tensor, branch: str) -> torch.Tensor:
    """`layer(x)` with only LoRA adapter `branch` (or none for BASE) of a peft LoRA layer; a plain layer as is.

    What peft computes for `layer(x, adapter_names=[branch] * B)` (its mixed-batch routing), without the
    routing: that path gathers and scatters the batch by Python index lists in every layer (extra kernels, and
    host-to-device copies that a CUDA graph cannot capture). A merged layer or a LoRA variant (DoRA, ...)
    goes through peft itself."""
    if not hasattr(layer, "lora_A"):
        return layer(x)
    if layer.merged or branch in layer.lora_variant:
        return layer(x, adapter_names=[branch] * x.shape[0])
    out = layer.base_layer(x)
    if branch == BASE or branch not in layer.lora_A:
        return out
    a, b = layer.lora_A[branch], layer.lora_B[branch]
    delta = b(a(layer.lora_dropout[branch](x.to(a.weight.dtype)))) * layer.scaling[branch]
    return out + delta.to(out.dtype)


def _modulation(block, proj: torch.Tensor):
    return (block.scale_shift_table + proj.float()).chunk(6, dim=1)


def _qkv(attn, n, branch, rope):
    q = attn.norm_q(lin(attn.to_q, n, branch)).unflatten(2, (attn.heads, -1))
    k = attn.norm_k(lin(attn.to_k, n, branch)).unflatten(2, (attn.heads, -1))
    v = lin(attn.to_v, n, branch).unflatten(2, (attn.heads, -1))
    raw = (q, k, v)
    return rotate(q, *rope), rotate(k, *rope), v, raw


def _sdpa(q, k, v):
    """[B, L, heads, d] attention (no mask), back to [B, L, heads * d]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2, 3).type_as(q)


def _out(attn, h, branch):
    return attn.to_out[1](lin(attn.to_out[0], h, branch))


def _ffn(ffn, n, branch):
    act = ffn.net[0]
    h = F.gelu(lin(act.proj, n, branch), approximate=getattr(act, "approximate", "none"))
    for module in ffn.net[1:]:
        h = lin(module, h, branch) if isinstance(module, torch.nn.Linear) or hasattr(module, "lora_A") else module(h)
    return h


def _block(block, x, c, text, mod_x, mod_c, rope_x, rope_c, gen_branch, cond_branch, record):
    sx, scx, gx, csx, cscx, cgx = mod_x
    attn = block.attn1
    nx = (block.norm1(x.float()) * (1 + scx) + sx).type_as(x)
    qx, kx, vx, raw_x = _qkv(attn, nx, gen_branch, rope_x)
    lx = x.shape[1]
    if c is not None:
        sc, scc, gc, csc, cscc, cgc = mod_c
        nc = (block.norm1(c.float()) * (1 + scc) + sc).type_as(c)
        qc, kc, vc, raw_c = _qkv(attn, nc, cond_branch, rope_c)
        h = _sdpa(torch.cat([qx, qc], 1), torch.cat([kx, kc], 1), torch.cat([vx, vc], 1))
        hx, hc = h[:, :lx], h[:, lx:]
    else:
        raw_c = None
        hx = _sdpa(qx, kx, vx)
    if record is not None:
        record.append({"gen": raw_x, "cond": raw_c})
    x = (x.float() + _out(attn, hx, gen_branch) * gx).type_as(x)
    # cross-attention to the prompt: generated tokens only
    a2 = block.attn2
    n2 = block.norm2(x.float()).type_as(x)
    q = a2.norm_q(lin(a2.to_q, n2, gen_branch)).unflatten(2, (a2.heads, -1))
    k = a2.norm_k(lin(a2.to_k, text, gen_branch)).unflatten(2, (a2.heads, -1))
    v = lin(a2.to_v, text, gen_branch).unflatten(2, (a2.heads, -1))
    x = x + _out(a2, _sdpa(q, k, v), gen_branch)
    n3 = (block.norm3(x.float()) * (1 + cscx) + csx).type_as(x)
    x = (x.float() + _ffn(block.ffn, n3, gen_branch).float() * cgx).type_as(x)
    if c is not None:
        c = (c.float() + _out(attn, hc, cond_branch) * gc).type_as(c)
        n3c = (block.norm3(c.float()) * (1 + cscc) + csc).type_as(c)
        c = (c.float() + _ffn(block.ffn, n3c, cond_branch).float() * cgc).type_as(c)
    return x, c


def _time(transformer, t: torch.Tensor, dtype):
    ce = transformer.condition_embedder
    emb = ce.timesteps_proj(t)
    te_dtype = next(iter(ce.time_embedder.parameters())).dtype
    temb = ce.time_embedder(emb.to(te_dtype)).to(dtype)
    return temb, ce.time_proj(ce.act_fn(temb)).unflatten(1, (6, -1))


def joint_ropes(transformer, latents_shape, cond_shape=None) -> dict:
    """The rotary tables of a joint forward for these shapes: generated frames 0 .. F-1, conditioning view k at
    F + k. Computed once outside a captured call (making them synchronises with the host)."""
    rope = install(transformer)
    _, _, nf, h, w = latents_shape
    p_t, p_h, p_w = transformer.config.patch_size
    if p_t != 1:
        raise ValueError(f"the video pipeline needs a temporal patch size of 1, got {p_t}")
    gen_frames = torch.arange(nf)
    out = {"x": rope.frames(gen_frames, h // p_h, w // p_w), "c": None, "gen_frames": gen_frames.tolist(),
           "cond_frames": None}
    if cond_shape is not None and cond_shape[2] > 0:
        cond_frames = conditioning_indices(nf, cond_shape[2])
        out["c"] = rope.frames(cond_frames, cond_shape[3] // p_h, cond_shape[4] // p_w)
        out["cond_frames"] = cond_frames.tolist()
    return out


def joint_forward(
    transformer,
    latents: torch.Tensor,  # [B, 16, F, h, w] noisy latents of the generated video
    timestep: torch.Tensor,  # [B] in [0, 1000]
    text: torch.Tensor,  # [B, L, text_dim] prompt embeddings
    cond: torch.Tensor | None = None,  # [B, 16, K, hc, wc] clean latents, one latent frame per conditioning view
    *,
    gen_branch: str = BASE,
    cond_branch: str = BASE,
    record: list | None = None,
    info: dict | None = None,
    ropes: dict | None = None,
) -> torch.Tensor:
    """The transformer's prediction (flow velocity) for `latents`, [B, 16, F, h, w], with the conditioning
    views' tokens in every self-attention. `record` collects each block's raw (pre-RoPE) q/k/v per stream;
    `info` receives the temporal indices used (`gen_frames`, `cond_frames`); `ropes` (`joint_ropes` for these
    shapes) skips making the rotary tables, so the call makes no host synchronisation (CUDA-graph capture)."""
    if transformer.condition_embedder.image_embedder is not None or transformer.blocks[0].attn2.add_k_proj is not None:
        raise ValueError("the video pipeline takes a text-to-video Wan model; this one has an image encoder branch (I2V)")
    has_cond = cond is not None and cond.shape[2] > 0
    if ropes is None:
        ropes = joint_ropes(transformer, latents.shape, cond.shape if has_cond else None)
    b, _, nf, h, w = latents.shape
    p_t, p_h, p_w = transformer.config.patch_size
    rope_x = ropes["x"]
    x = transformer.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
    temb, proj_x = _time(transformer, timestep.flatten(), x.dtype)
    text_e = transformer.condition_embedder.text_embedder(text)
    c = rope_c = proj_c = None
    if has_cond:
        rope_c = ropes["c"]
        c = transformer.patch_embedding(cond.to(latents.dtype)).flatten(2).transpose(1, 2).contiguous()
        _, proj_c = _time(transformer, torch.zeros(b, device=latents.device), x.dtype)
    if info is not None:
        info["gen_frames"] = ropes["gen_frames"]
        info["cond_frames"] = ropes["cond_frames"] if has_cond else None
    for block in transformer.blocks:
        mod_x = _modulation(block, proj_x)
        mod_c = _modulation(block, proj_c) if c is not None else None
        x, c = _block(block, x, c, text_e, mod_x, mod_c, rope_x, rope_c, gen_branch, cond_branch, record)
    shift, scale = (transformer.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
    x = (transformer.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
    x = transformer.proj_out(x)
    x = x.reshape(b, nf // p_t, h // p_h, w // p_w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
