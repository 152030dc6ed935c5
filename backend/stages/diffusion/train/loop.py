"""The one training loop of both personalisation methods: the subject LoRA (`lora.train_subject_lora`) and the
full fine-tune (`multimodal.train_full`).

Both run the same step: images drawn in epochs of shuffled order (`Shuffled`), the same augmentation and
masked DreamBooth loss (`objective.subject_loss`, with class images `objective.subject_prior_loss`), fused
AdamW, loss scaling in fp16 on CUDA, gradient clipping, the asynchronous `LossLog`, progress and cancel, and
the UNet's forward and backward replayed from CUDA graphs where they can be captured (`graphed_unet`). They
differ only in a `Trainable`: what is trained (adapter parameters, or the UNet's and optionally the text
encoder's weights in fp32), the learning rate, and how the prompt embeddings are made (`PromptEmbeds`:
encoded once, frozen, or re-encoded with grad every step through the trained text encoder).
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ...common.loss_log import LossLog
from ..config import SubjectLoraConfig
from ..images import as_image_batch, as_mask_batch
from ..text import encode_prompts, tokenize
from ..upload import to_device
from .objective import subject_loss, subject_prior_loss
from .prior import ClassPrior

ProgressFn = Callable[[int, int, str], None]
"""progress(step, total, text), called after every step."""
CancelFn = Callable[[], None]
"""cancel() is called before every step and raises (e.g. `Cancelled`) to stop."""


@dataclass(frozen=True)
class LoraTrainResult:
    """What one training run did (the LoRA's and, under the same name, the full fine-tune's)."""

    adapter_name: str
    """The adapter trained, or "full" for the full fine-tune."""
    steps: int
    losses: tuple[float, ...]
    """The loss of every step, in order (with prior preservation: instance + prior_weight x prior)."""
    seconds: float
    prior_losses: tuple[float, ...] = ()
    """With prior preservation: the class-image term of every step (unweighted); else empty."""
    cuda_graphs: bool = False
    """True when every step's UNet forward and backward were replayed from CUDA graphs."""
    graph_note: str = ""
    """Why not, when `cuda_graphs` is False: "not on CUDA (cpu)", "off (cuda_graph = false)", "gradient
    checkpointing", "capture failed, trained eagerly: <error>", ...; "" when the graphs ran."""


class Shuffled:
    """Indices 0..n-1 in epochs of shuffled order (every item once per epoch), drawn from `generator`."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator
        self.order = torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:  # [k] long
        while self.order.numel() < k:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.generator)])
        idx, self.order = self.order[:k], self.order[k:]
        return idx


@dataclass(frozen=True)
class Trainable:
    """What one run trains: the only difference between the LoRA and the full fine-tune."""

    what: str
    """"subject LoRA" or "full fine-tune": progress text and the loss log's name."""
    name: str
    """The result's `adapter_name`."""
    params: list
    """The parameters AdamW updates (fp32, requires_grad set)."""
    learning_rate: float
    models: tuple
    """The modules put in train mode for the run (the UNet, and the text encoder when it is trained)."""
    restore: Callable[[], None]
    """Called after the run (done, failed or cancelled), after the loop's own clean-up: freeze, cast back."""


class PromptEmbeds:
    """The step's prompt embeddings for images `idx`: encoded once (`trained=False`; in the components' dtype),
    or re-encoded every step through `components.text_encoder` with grad (`trained=True`), so the loss's
    gradient reaches the encoder. With a class prompt (prior preservation), also its embeddings for `batch`
    class images, made the same way (the subject and class prompts through the encoder in one batch)."""

    def __init__(self, components, prompts: Sequence[str], class_prompt: str | None, batch: int, trained: bool):
        self.components, self.trained, self.n = components, trained, len(prompts)
        self.with_class = class_prompt is not None
        every = list(prompts) + ([class_prompt] if self.with_class else [])
        if trained:
            self.ids = tokenize(components, every)  # [N (+ 1), L]
            self.class_ids = self.ids[self.n:].expand(batch, -1) if self.with_class else None
        else:
            self.embeds = encode_prompts(components, every)  # [N (+ 1), L, D]
            self.class_embeds = self.embeds[self.n:].expand(batch, -1, -1) if self.with_class else None

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:  # ([B, L, D], [Bc, L, D] | None)
        if not self.trained:
            return self.embeds[idx], self.class_embeds
        ids = torch.cat([self.ids[idx], self.class_ids]) if self.with_class else self.ids[idx]
        h = self.components.text_encoder(ids)[0]
        B = idx.shape[0]
        return h[:B], (h[B:] if self.with_class else None)


def subject_batch(components, images, masks, prior: ClassPrior | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked training images [N, 3, H, W] and valid foreground [N, 1, H, W], float32 on the components'
    device; every mask must have a foreground pixel, and class images must be the images' size. Called
    before anything is set up for training, so bad inputs leave the models as they were."""
    imgs = as_image_batch(images, "images").to(components.device)
    valid = as_mask_batch(masks, "masks", like=imgs).to(components.device)
    empty = [i for i in range(valid.shape[0]) if valid[i].sum() == 0]
    if empty:
        raise ValueError(f"masks[{empty[0]}] has no foreground pixel: nothing to learn from that image")
    if prior is not None:
        prior.check_size(imgs.shape[-2:])
    return imgs, valid


def why_not_graphed(config: SubjectLoraConfig, device: torch.device) -> str:
    """"" when the UNet call can be captured in CUDA graphs, else why it runs eagerly."""
    if device.type != "cuda":
        return f"not on CUDA ({device.type})"
    if not config.cuda_graph:
        return "off (cuda_graph = false)"
    if config.gradient_checkpointing:
        return "gradient checkpointing (recomputation is not captured)"
    return ""


def training_optimizer(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW for the training loop; on CUDA torch's fused kernel, which applies the GradScaler's unscaling and
    inf check on the device (the default implementation makes the scaler read the inf flag back, a sync every
    step)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def loss_text(log: LossLog) -> str:
    """", loss 0.1234" for progress text: the mean of the newest window of losses read back (none before the
    first window has arrived: the loss is read asynchronously)."""
    return f", loss {log.shown:.4f}" if math.isfinite(log.shown) else ""


def train(
    components,
    imgs: torch.Tensor,  # [N, 3, H, W] from `subject_batch`
    valid: torch.Tensor,  # [N, 1, H, W]
    embed: PromptEmbeds,
    trainable: Trainable,
    config: SubjectLoraConfig,
    *,
    seed: int,
    prior: ClassPrior | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> LoraTrainResult:
    """Run `config.steps` steps of `config.batch_size` images (and as many class images with `prior`),
    optimising `trainable.params` at `trainable.learning_rate`; every random draw comes from one host
    generator seeded `seed`, in this order: the image order, the class order, then each step's draws
    (`objective._denoising`). Whatever happens, the models are left in eval mode with their gradients
    cleared, then `trainable.restore()` runs."""
    from diffusers import DDPMScheduler

    dev, unet = components.device, components.unet
    B, params = config.batch_size, trainable.params
    mixed = dev.type == "cuda" and components.dtype == torch.float16
    graph_note = why_not_graphed(config, dev)
    graphs, optimizer, denoise, checkpointing = False, None, None, False
    try:  # from here on the models are restored whatever happens
        noise_scheduler = DDPMScheduler.from_config(components.scheduler.config)
        optimizer = training_optimizer(params, trainable.learning_rate, config.weight_decay, dev)
        scaler = torch.amp.GradScaler("cuda", enabled=mixed)
        gen = torch.Generator().manual_seed(seed)
        order = Shuffled(imgs.shape[0], gen)
        class_order = Shuffled(len(prior), gen) if prior is not None else None
        log = LossLog(dev, f"{trainable.what} loss", finite=False)
        if not graph_note:
            from .graphed_unet import GraphedDenoiser

            denoise = GraphedDenoiser(unet, components.vae)
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            checkpointing = True
        for m in trainable.models:
            m.train()
        start = time.perf_counter()
        for step in range(config.steps):
            if cancel is not None:
                cancel()
            idx = to_device(order.take(B), dev)  # epochs of shuffled images
            # no autocast cache with graphs: a graph must cast its weights itself at every replay
            with torch.autocast("cuda", dtype=torch.float16, enabled=mixed, cache_enabled=denoise is None):
                embeds, class_embeds = embed(idx)  # frozen, or through the trained text encoder
                if prior is None:
                    loss = subject_loss(components, noise_scheduler, imgs[idx], valid[idx], embeds, config, gen, denoise)
                    row = loss.detach().view(1)
                else:
                    classes = prior.batch(class_order.take(B), dev)
                    loss, prior_loss = subject_prior_loss(components, noise_scheduler, imgs[idx], valid[idx], embeds,
                                                          classes, class_embeds, config, gen, denoise)
                    loss = loss + prior.weight * prior_loss
                    row = torch.stack([loss.detach(), prior_loss.detach()])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            scaler.step(optimizer)  # no sync: the fused AdamW skips a step with inf gradients on the device
            scaler.update()
            log.record(row, step + 1, config.steps)
            if progress is not None:
                progress(step + 1, config.steps, f"{trainable.what} step {step + 1}/{config.steps}{loss_text(log)}")
    finally:
        for m in trainable.models:
            m.eval()
        if checkpointing:
            unet.disable_gradient_checkpointing()
        for p in params:
            p.grad = None  # a full fine-tune's gradients are the size of the model
        # the optimizer state goes before `restore` casts the models back, and so does the last step's autograd
        # graph: its replay node holds the captured graphs
        optimizer = loss = prior_loss = embeds = class_embeds = None
        if denoise is not None:  # the graphs' memory pool goes now, not at some later garbage collection
            graphs, graph_note = denoise.outcome()
            denoise = None
            gc.collect()
        trainable.restore()
    prior_losses = tuple(r[1] for r in log.rows) if prior is not None else ()
    return LoraTrainResult(trainable.name, config.steps, tuple(log.values), time.perf_counter() - start,
                           prior_losses, cuda_graphs=graphs, graph_note=graph_note)
