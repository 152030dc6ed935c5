"""Adaptive density control for the CPU path: the 3DGS rules in a few lines, gsplat's Strategy interface.

On CUDA the fit uses gsplat's own `DefaultStrategy` / `MCMCStrategy`; gsplat cannot be imported for work
on the CPU, so this is the equivalent of `DefaultStrategy` (Kerbl et al. 2023, section 5): accumulate the
norm of each Gaussian's screen-space mean gradient over the views that see it; every `refine_every` steps
clone the small ones whose average exceeds `grow_grad2d`, split the large ones in two (children drawn from
the parent, scales / 1.6), prune the nearly transparent and (after the first reset) the huge; every
`reset_every` steps lower all opacities to 2 x prune_opa. Adam moments follow the parameters (zero for new
Gaussians). Parameters: a dict of tensors keyed means, scales (log), quats, opacities (logit), sh0, shN,
one single-parameter Adam per key, as gsplat's strategies expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .gaussians import quat_to_rotation


def _edit(params: dict, optimizers: dict, param_fn: Callable[[str, Tensor], Tensor],
          state_fn: Callable[[str, Tensor], Tensor]) -> None:
    """Replace every parameter by param_fn(name, p) and its Adam moments by state_fn(name, moment)."""
    for name in list(params.keys()):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        opt = optimizers[name]
        state = opt.state.pop(old, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key] = state_fn(name, state[key])
        opt.param_groups[0]["params"] = [new]
        if state:
            opt.state[new] = state
        params[name] = new


@dataclass
class SimpleStrategy:
    """3DGS densification and pruning (gsplat DefaultStrategy's defaults), for the CPU reference path."""

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    reset_every: int = 3000
    refine_every: int = 100
    max_gaussians: int = 1_000_000
    """Growth stops once the set holds this many (keeps CPU runs bounded)."""
    seed: int = 0

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        return {"grad2d": None, "count": None, "scene_scale": scene_scale,
                "generator": torch.Generator().manual_seed(self.seed)}

    def step_pre_backward(self, params, optimizers, state, step: int, info: dict) -> None:
        info["means2d"].retain_grad()

    def step_post_backward(self, params, optimizers, state, step: int, info: dict, packed: bool = False) -> None:
        if step >= self.refine_stop_iter:
            return
        self._accumulate(params, state, info)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            self._grow(params, optimizers, state)
            self._prune(params, optimizers, state, step)
            n = len(params["means"])
            state["grad2d"], state["count"] = torch.zeros(n), torch.zeros(n)
        if step % self.reset_every == 0 and step > 0:
            with torch.no_grad():
                cap = torch.logit(torch.tensor(2.0 * self.prune_opa)).item()
                _edit(params, optimizers,
                      lambda k, p: p.clamp_max(cap) if k == "opacities" else p,
                      lambda k, s: torch.zeros_like(s) if k == "opacities" else s)

    def _accumulate(self, params, state, info) -> None:
        n = len(params["means"])
        if state["grad2d"] is None or len(state["grad2d"]) != n:
            state["grad2d"], state["count"] = torch.zeros(n), torch.zeros(n)
        grad = info["means2d"].grad
        if grad is None:
            return
        grad = grad.detach().clone()  # [C, N, 2], normalised to [-1, 1] screen units as gsplat does
        grad[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grad[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        seen = (info["radii"] > 0).all(-1)  # [C, N]
        ids = torch.where(seen)[1]
        state["grad2d"].index_add_(0, ids, grad[seen].norm(dim=-1).cpu())
        state["count"].index_add_(0, ids, torch.ones(len(ids)))

    @torch.no_grad()
    def _grow(self, params, optimizers, state) -> None:
        n = len(params["means"])
        room = self.max_gaussians - n
        if room <= 0:
            return
        high = state["grad2d"] / state["count"].clamp_min(1) > self.grow_grad2d
        small = params["scales"].exp().max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        dup, split = high & small, high & ~small
        # Respect the cap: keep the highest-gradient candidates.
        for mask in (dup, split):
            if mask.sum() > room:
                score = torch.where(mask, state["grad2d"], torch.full_like(state["grad2d"], -1.0))
                keep = torch.topk(score, max(room, 0)).indices
                mask.zero_()
                mask[keep] = True
            room -= int(mask.sum())
        if dup.any():
            _edit(params, optimizers,
                  lambda k, p: torch.cat([p, p[dup]]),
                  lambda k, s: torch.cat([s, torch.zeros_like(s[dup])]))
            split = torch.cat([split, torch.zeros(int(dup.sum()), dtype=torch.bool)])
        if split.any():
            scales = params["scales"][split].exp()  # [S, 3]
            R = quat_to_rotation(params["quats"][split])
            offsets = torch.randn(2, *scales.shape, generator=state["generator"]) * scales  # [2, S, 3]
            child_means = (params["means"][split][None] + torch.einsum("sij,ksj->ksi", R, offsets)).reshape(-1, 3)

            def param_fn(k: str, p: Tensor) -> Tensor:
                if k == "means":
                    child = child_means
                elif k == "scales":
                    child = torch.log(scales / 1.6).repeat(2, 1)
                else:
                    child = p[split].repeat((2,) + (1,) * (p.ndim - 1))
                return torch.cat([p[~split], child])

            _edit(params, optimizers, param_fn,
                  lambda k, s: torch.cat([s[~split], torch.zeros_like(s[split]).repeat((2,) + (1,) * (s.ndim - 1))]))

    @torch.no_grad()
    def _prune(self, params, optimizers, state, step: int) -> None:
        prune = torch.sigmoid(params["opacities"]) < self.prune_opa
        if step > self.reset_every:
            prune |= params["scales"].exp().max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        if prune.all():  # never empty the set
            prune[torch.argmax(params["opacities"])] = False
        if prune.any():
            _edit(params, optimizers, lambda k, p: p[~prune], lambda k, s: s[~prune])


def gsplat_default_strategy(**kwargs):
    """gsplat's DefaultStrategy (CUDA path), with its per-step bookkeeping made free of device syncs.

    gsplat accumulates the screen-space gradients with torch.where(visible) + index_add, and torch.where
    makes the host wait for the whole backward pass every step. For the non-packed layout the same sums
    are a masked reduction over cameras, which needs no sync; growing, splitting, pruning and resets
    are gsplat's own code. Imported lazily: gsplat is for the CUDA path only.
    """
    from gsplat.strategy import DefaultStrategy

    class SyncFreeDefaultStrategy(DefaultStrategy):
        external_sums: bool = False
        """True when the fit's CUDA graph (`fit_graph.GraphedUpdate`) adds the per-step sums itself."""

        def _update_state(self, params, state, info, packed: bool = False) -> None:
            if self.external_sums:
                return
            if packed or self.refine_scale2d_stop_iter > 0:
                return super()._update_state(params, state, info, packed=packed)
            source = info[self.key_for_gradient]
            grads = source.absgrad if self.absgrad else source.grad  # [C, N, 2]
            # gsplat's normalisation of the pixel gradients to NDC, as one product with a [2] tensor
            key = (info["width"], info["height"], info["n_cameras"], grads.device)
            scale = self._scales.get(key) if hasattr(self, "_scales") else None
            if scale is None:  # made once per image size (a host-to-device copy waits for the stream)
                self._scales = getattr(self, "_scales", {})
                scale = self._scales[key] = torch.tensor([key[0] / 2.0 * key[2], key[1] / 2.0 * key[2]]).to(grads.device)
            n = len(params["means"])
            if state["grad2d"] is None:
                state["grad2d"] = torch.zeros(n, device=grads.device)
            if state["count"] is None:
                state["count"] = torch.zeros(n, device=grads.device)
            seen = (info["radii"] > 0).all(dim=-1)  # [C, N]
            norms = torch.linalg.vector_norm(grads * scale, dim=-1) * seen
            state["grad2d"] += norms.sum(dim=0)
            state["count"] += seen.sum(dim=0)

    return SyncFreeDefaultStrategy(**kwargs)
