"""3DreamBooth and 3Dapter training: the flow-matching velocity objective of Wan on one-frame videos.

Every view is a one-frame video (one latent frame): every generated token has temporal index 0, so the
temporal pathways of the video transformer are bypassed and its motion prior is kept (3DreamBooth, 3.1.1).
x_t = (1 - sigma) x_0 + sigma noise at timestep 1000 sigma, target velocity noise - x_0 (Wan's rectified flow;
its schedulers are flow-matching ones, checked by `check_flow_scheduler`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..common.cuda_graphs import GraphedCall
from .joint import BASE, joint_forward, joint_ropes
from .lora import ADAPTER, SUBJECT, lora_parameters

ProgressFn = Callable[[int, int, float], None]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    gen_frames: set = field(default_factory=set)
    """Every temporal index a generated token had during training ({0}: one-frame training)."""
    cond_frames: list | None = None
    """The conditioning views' temporal indices."""
    cuda_graphs: bool = False
    """True when every step's transformer forward and backward were replayed from CUDA graphs."""
    graph_note: str = ""
    """Why not, when `cuda_graphs` is False ("not on CUDA (cpu)", "off (cuda_graph = false)", "capture failed,
    trained eagerly: <error>", ...); "" when the graphs ran."""


def check_flow_scheduler(scheduler) -> None:
    """Wan's objective is flow matching; a scheduler of another kind means a model this stage does not know."""
    cfg = scheduler.config
    flow = "FlowMatch" in type(scheduler).__name__ or cfg.get("prediction_type") == "flow_prediction" or cfg.get("use_flow_sigmas")
    if not flow:
        raise ValueError(f"the video model's scheduler {type(scheduler).__name__} is not a flow-matching one "
                         f"(prediction_type {cfg.get('prediction_type')!r}): the video stages train Wan's velocity objective")


def shifted_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1 + (shift - 1) * u)


def flow_loss(transformer, x0, text, cond, *, gen_branch, cond_branch, shift, generator, noise=None, sigma=None,
              info=None, velocity=None) -> torch.Tensor:
    """One velocity-prediction loss of the transformer on clean latents x0 [B, 16, 1, h, w]. `velocity(xt, t,
    text[, cond])` stands for the joint forward (`Velocity`, possibly replayed from CUDA graphs)."""
    b = x0.shape[0]
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=torch.float32).to(x0.dtype)
    if sigma is None:
        sigma = shifted_sigma(torch.rand(b, generator=generator, device=x0.device), shift)
    sigma = torch.as_tensor(sigma, device=x0.device, dtype=torch.float32).reshape(-1).expand(b)
    s = sigma.view(b, 1, 1, 1, 1).to(x0.dtype)
    xt = (1 - s) * x0 + s * noise
    if velocity is None:
        pred = joint_forward(transformer, xt, sigma * 1000, text, cond, gen_branch=gen_branch, cond_branch=cond_branch,
                             info=info)
    else:
        pred = velocity(xt, sigma * 1000, text, *(() if cond is None else (cond,)))
    return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float())


def why_not_graphed(graphs: bool, device: torch.device) -> str:
    """"" when a training run's joint forward can be replayed from CUDA graphs, else why it runs eagerly."""
    if device.type != "cuda":
        return f"not on CUDA ({device.type})"
    return "" if graphs else "off (cuda_graph = false)"


class Velocity:
    """The joint forward of one training run (fixed shapes, fixed branches), its rotary tables made once; on
    CUDA with `graphs` its forward and backward are replayed from CUDA graphs (`GraphedCall`)."""

    def __init__(self, transformer, x0_shape, cond, *, gen_branch, cond_branch, graphs: bool):
        self.ropes = joint_ropes(transformer, x0_shape, None if cond is None else cond.shape)

        def run(xt, t, text, *c):
            return joint_forward(transformer, xt, t, text, c[0] if c else None, gen_branch=gen_branch,
                                 cond_branch=cond_branch, ropes=self.ropes)

        self.graphed = None
        self.note = why_not_graphed(graphs, next(transformer.parameters()).device)
        if not self.note:
            self.graphed = GraphedCall(run, lambda: [p for p in transformer.parameters() if p.requires_grad])
            self.graphed.what = "the video transformer"
        self.run = run

    def __call__(self, *inputs):
        return self.run(*inputs) if self.graphed is None else self.graphed(*inputs)

    def outcome(self) -> tuple[bool, str]:
        return (False, self.note) if self.graphed is None else self.graphed.outcome()


def _loop(transformer, params, steps, lr, wd, clip, sample, progress, cancel, result: TrainResult):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    was_training = transformer.training
    transformer.train()
    start = time.perf_counter()
    try:
        for step in range(steps):
            if cancel is not None:
                cancel()
            loss = sample(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            result.losses.append(float(loss.detach()))
            if progress is not None:
                progress(step + 1, steps, result.losses[-1])
    finally:
        transformer.train(was_training)
        opt.zero_grad(set_to_none=True)
    result.seconds = time.perf_counter() - start
    return result


def train_subject(
    components,
    views: torch.Tensor,  # [N, 16, 1, h, w] latents of the subject's views (one-frame videos)
    text: torch.Tensor,  # [1, L, D] the universal prompt's embedding
    config,  # DreamBoothVideoConfig
    *,
    cond: torch.Tensor | None = None,  # [1, 16, K, h, w] the conditioning views' clean latents, or None
    adapter: bool = False,
    seed: int = 0,
    steps: int | None = None,
    fixed_noise: torch.Tensor | None = None,
    fixed_sigma: float | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], None] | None = None,
) -> TrainResult:
    """Optimise the 3DreamBooth LoRA (adapter `SUBJECT`, already added) and, with `adapter`, the 3Dapter LoRA
    (`ADAPTER`) jointly: the main branch reconstructs a sampled view while 3Dapter conditions on `cond`.
    `fixed_noise` / `fixed_sigma` pin the noise and the noise level (a diagnostic: the loss must then fall)."""
    check_flow_scheduler(components.scheduler)
    tr = components.transformer
    params = lora_parameters(tr, SUBJECT, trainable=True)
    if adapter:
        params += lora_parameters(tr, ADAPTER, trainable=True)
    gen = torch.Generator(device=views.device).manual_seed(seed)
    result = TrainResult()
    c = cond if adapter else None
    velocity = Velocity(tr, (1, *views.shape[1:]), c, gen_branch=SUBJECT, cond_branch=ADAPTER if adapter else BASE,
                        graphs=config.cuda_graph)
    result.gen_frames.update(velocity.ropes["gen_frames"])
    result.cond_frames = velocity.ropes["cond_frames"]

    def sample(step):
        i = int(torch.randint(len(views), (1,), generator=gen, device=views.device))
        return flow_loss(tr, views[i:i + 1], text, c, gen_branch=SUBJECT, cond_branch=ADAPTER if adapter else BASE,
                         shift=config.timestep_shift, generator=gen, noise=fixed_noise, sigma=fixed_sigma,
                         velocity=velocity)

    _loop(tr, params, steps or config.steps, config.learning_rate, config.weight_decay, config.max_grad_norm,
          sample, progress, cancel, result)
    result.cuda_graphs, result.graph_note = velocity.outcome()
    return result


def pretrain_adapter(
    components,
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],  # (reference [1,16,1,h,w], target [1,16,1,h',w'], text [1,L,D])
    config,  # AdapterConfig
    *,
    shift: float = 3.0,
    seed: int = 0,
    steps: int | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], None] | None = None,
) -> TrainResult:
    """3Dapter's single-view pre-training: the frozen model (no subject LoRA) denoises a target in context
    while the clean reference joins through the 3Dapter branch; only the `ADAPTER` LoRA is optimised."""
    check_flow_scheduler(components.scheduler)
    tr = components.transformer
    params = lora_parameters(tr, ADAPTER, trainable=True)
    gen = torch.Generator(device=pairs[0][0].device).manual_seed(seed)
    result = TrainResult()
    info: dict = {}

    def sample(step):
        ref, target, text = pairs[int(torch.randint(len(pairs), (1,), generator=gen, device=pairs[0][0].device))]
        loss = flow_loss(tr, target, text, ref, gen_branch=BASE, cond_branch=ADAPTER, shift=shift, generator=gen, info=info)
        result.gen_frames.update(info["gen_frames"])
        result.cond_frames = info["cond_frames"]
        return loss

    return _loop(tr, params, steps or config.pretrain_steps, config.pretrain_learning_rate, 1e-2, 1.0, sample,
                 progress, cancel, result)
