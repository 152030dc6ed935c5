"""The fit's photometric loss and its gradient in four Triton kernels (CUDA, where Triton is installed).

loss = (1 - lambda) mean(w |x - y|) + lambda mean(w (1 - SSIM(x, y))), means over pixels and channels,
SSIM as `metrics.ssim_map` (11 x 11 Gaussian window, sigma 1.5, zero padding, C1 = 0.01^2, C2 = 0.03^2).
In plain torch this is about a hundred kernels and, at 512 px, 0.5 ms of GPU time a step, most of it the
window's blur as dense matrix products; here it is four memory-bound passes over planar [B, 3, H, W] copies:

1. blur x, y, x^2, y^2, xy along rows;
2. blur them along columns, then per pixel SSIM, the loss (one atomic add per block) and the weighted
   partial derivatives of SSIM with respect to the blurred mean mu_x, E[x^2] and E[xy];
3. blur those three maps along rows;
4. along columns, then dLoss/dx = G*d_mu + 2 x G*d_xx + y G*d_xy + the L1 term.

The Gaussian is symmetric, so the backward blur is the same blur. For the fit's CUDA graph
(`fit_graph.GraphedLoss`, `FitLossKernels`) a prologue kernel also looks up the step's views and
background, composites the raw render over that background and adds the alpha term, and pass 4 returns the
gradients with respect to the raw colour and alpha and keeps the step counter and loss log: a memset and
five kernels a step, no autograd. For autograd callers `fused_l1_dssim` makes the gradient in the forward
call (a loss is always differentiated) and scales it in backward.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

WINDOW = 11
SIGMA = 1.5
BLOCK = 128
"""Columns per program of the blurs (one row each). Tiles of 8-32 rows x 128 columns, so that a column blur
reads each source row once, measured 4-9x slower on an H200 (bench/gpu_fit_trace.py --loss-tiles)."""
WARPS = 4
"""Warps per program of the blurs."""
PBLOCK = 1024
"""Pixels per program of the prologue."""


@triton.jit
def _hblur_moments(x_ptr, y_ptr, out_ptr, g_ptr, W, plane, BLOCK: tl.constexpr, R: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    base = row * W
    mx = tl.zeros([BLOCK], dtype=tl.float32)
    my = tl.zeros([BLOCK], dtype=tl.float32)
    exx = tl.zeros([BLOCK], dtype=tl.float32)
    eyy = tl.zeros([BLOCK], dtype=tl.float32)
    exy = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(2 * R + 1):
        gk = tl.load(g_ptr + k)
        c = cols + (k - R)
        m = (c >= 0) & (c < W)
        xv = tl.load(x_ptr + base + c, mask=m, other=0.0)
        yv = tl.load(y_ptr + base + c, mask=m, other=0.0)
        mx += gk * xv
        my += gk * yv
        exx += gk * xv * xv
        eyy += gk * yv * yv
        exy += gk * xv * yv
    om = cols < W
    tl.store(out_ptr + base + cols, mx, mask=om)
    tl.store(out_ptr + plane + base + cols, my, mask=om)
    tl.store(out_ptr + 2 * plane + base + cols, exx, mask=om)
    tl.store(out_ptr + 3 * plane + base + cols, eyy, mask=om)
    tl.store(out_ptr + 4 * plane + base + cols, exy, mask=om)


@triton.jit
def _vblur_ssim(mom_ptr, x_ptr, y_ptr, w_ptr, d_ptr, loss_ptr, g_ptr, H, W, plane, lam, inv_n,
                HAS_W: tl.constexpr, CH: tl.constexpr, BLOCK: tl.constexpr, R: tl.constexpr):
    row = tl.program_id(0)
    p = row // H
    h = row % H
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    om = cols < W
    mx = tl.zeros([BLOCK], dtype=tl.float32)
    my = tl.zeros([BLOCK], dtype=tl.float32)
    exx = tl.zeros([BLOCK], dtype=tl.float32)
    eyy = tl.zeros([BLOCK], dtype=tl.float32)
    exy = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(2 * R + 1):
        gk = tl.load(g_ptr + k)
        hh = tl.zeros([BLOCK], dtype=tl.int32) + (h + (k - R))  # the source row, as a vector for the mask
        m = om & (hh >= 0) & (hh < H)
        off = (p * H + hh) * W + cols
        mx += gk * tl.load(mom_ptr + off, mask=m, other=0.0)
        my += gk * tl.load(mom_ptr + plane + off, mask=m, other=0.0)
        exx += gk * tl.load(mom_ptr + 2 * plane + off, mask=m, other=0.0)
        eyy += gk * tl.load(mom_ptr + 3 * plane + off, mask=m, other=0.0)
        exy += gk * tl.load(mom_ptr + 4 * plane + off, mask=m, other=0.0)
    c1 = 0.0001
    c2 = 0.0009
    a1 = 2.0 * mx * my + c1
    a2 = 2.0 * (exy - mx * my) + c2
    b1 = mx * mx + my * my + c1
    b2 = (exx - mx * mx) + (eyy - my * my) + c2
    s = a1 * a2 / (b1 * b2)
    # partial derivatives of s in (mu_x, E[x^2], E[xy]) (mu_y and E[y^2] belong to the target)
    ds_dmx = 2.0 * my * (a2 - a1) / (b1 * b2) - 2.0 * mx * s * (1.0 / b1 - 1.0 / b2)
    ds_dexx = -s / b2
    ds_dexy = 2.0 * a1 / (b1 * b2)
    here = row * W + cols
    xv = tl.load(x_ptr + here, mask=om, other=0.0)
    yv = tl.load(y_ptr + here, mask=om, other=0.0)
    if HAS_W:
        wv = tl.load(w_ptr + ((p // CH) * H + h) * W + cols, mask=om, other=0.0)
    else:
        wv = tl.where(om, 1.0, 0.0)
    contrib = wv * (lam * (1.0 - s) + (1.0 - lam) * tl.abs(xv - yv))
    tl.atomic_add(loss_ptr, tl.sum(tl.where(om, contrib, 0.0), axis=0) * inv_n)
    a = -lam * wv * inv_n
    tl.store(d_ptr + here, a * ds_dmx, mask=om)
    tl.store(d_ptr + plane + here, a * ds_dexx, mask=om)
    tl.store(d_ptr + 2 * plane + here, a * ds_dexy, mask=om)


@triton.jit
def _hblur3(d_ptr, out_ptr, g_ptr, W, plane, BLOCK: tl.constexpr, R: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    base = row * W
    d0 = tl.zeros([BLOCK], dtype=tl.float32)
    d1 = tl.zeros([BLOCK], dtype=tl.float32)
    d2 = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(2 * R + 1):
        gk = tl.load(g_ptr + k)
        c = cols + (k - R)
        m = (c >= 0) & (c < W)
        d0 += gk * tl.load(d_ptr + base + c, mask=m, other=0.0)
        d1 += gk * tl.load(d_ptr + plane + base + c, mask=m, other=0.0)
        d2 += gk * tl.load(d_ptr + 2 * plane + base + c, mask=m, other=0.0)
    om = cols < W
    tl.store(out_ptr + base + cols, d0, mask=om)
    tl.store(out_ptr + plane + base + cols, d1, mask=om)
    tl.store(out_ptr + 2 * plane + base + cols, d2, mask=om)


@triton.jit
def _vblur_grad(e_ptr, x_ptr, y_ptr, w_ptr, bg_ptr, grad_ptr, ga_ptr, g_ptr, loss_ptr, log_ptr, step_ptr,
                H, W, plane, lam, inv_n, COMPOSITE: tl.constexpr, HAS_W: tl.constexpr, LOG: tl.constexpr,
                BLOCK: tl.constexpr, R: tl.constexpr):
    """Rows b, h of all three channels: dLoss/dx = G*d_mu + 2 x G*d_xx + y G*d_xy + the L1 term, stored as
    dLoss/drgb [B, H, W, 3]; with COMPOSITE also dLoss/dalpha += -sum_c bg_c dLoss/dx_c."""
    row = tl.program_id(0)  # b * H + h
    b = row // H
    h = row % H
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    om = cols < W
    if HAS_W:
        wv = tl.load(w_ptr + row * W + cols, mask=om, other=0.0)
    else:
        wv = tl.where(om, 1.0, 0.0)
    ga = tl.zeros([BLOCK], dtype=tl.float32)
    for c in tl.static_range(3):
        p = b * 3 + c
        d0 = tl.zeros([BLOCK], dtype=tl.float32)
        d1 = tl.zeros([BLOCK], dtype=tl.float32)
        d2 = tl.zeros([BLOCK], dtype=tl.float32)
        for k in tl.static_range(2 * R + 1):
            gk = tl.load(g_ptr + k)
            hh = tl.zeros([BLOCK], dtype=tl.int32) + (h + (k - R))  # the source row, as a vector for the mask
            m = om & (hh >= 0) & (hh < H)
            off = (p * H + hh) * W + cols
            d0 += gk * tl.load(e_ptr + off, mask=m, other=0.0)
            d1 += gk * tl.load(e_ptr + plane + off, mask=m, other=0.0)
            d2 += gk * tl.load(e_ptr + 2 * plane + off, mask=m, other=0.0)
        here = (p * H + h) * W + cols
        xv = tl.load(x_ptr + here, mask=om, other=0.0)
        yv = tl.load(y_ptr + here, mask=om, other=0.0)
        sign = tl.where(xv > yv, 1.0, tl.where(xv < yv, -1.0, 0.0))
        gx = d0 + 2.0 * xv * d1 + yv * d2 + (1.0 - lam) * wv * inv_n * sign
        tl.store(grad_ptr + (row * W + cols) * 3 + c, gx, mask=om)
        if COMPOSITE:
            ga -= tl.load(bg_ptr + c) * gx
    if COMPOSITE:
        tl.store(ga_ptr + row * W + cols, tl.load(ga_ptr + row * W + cols, mask=om, other=0.0) + ga, mask=om)
    if LOG:  # the fit graph's bookkeeping: the loss is complete (pass 2 has finished), no one reads the step
        if (tl.program_id(0) == 0) & (tl.program_id(1) == 0):
            step = tl.load(step_ptr)
            tl.store(log_ptr + step, tl.load(loss_ptr))
            tl.store(step_ptr, step + 1)


@functools.lru_cache(maxsize=8)
def _taps(device: torch.device) -> Tensor:
    x = torch.arange(WINDOW, dtype=torch.float64) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).float().to(device)


def l1_dssim(rgb: Tensor, target: Tensor, weights: Tensor | None, ssim_weight: float) -> tuple[Tensor, Tensor]:
    """rgb, target [B, H, W, 3], weights [B, H, W] or None -> (loss [], dloss/drgb [B, H, W, 3]), no autograd."""
    B, H, W, C = rgb.shape
    if C != 3:
        raise ValueError(f"rgb must have 3 channels, got {C}")
    dev = rgb.device
    x = rgb.detach().float().permute(0, 3, 1, 2).contiguous()  # planar [B, 3, H, W]: rows are contiguous
    y = target.detach().float().permute(0, 3, 1, 2).contiguous()
    has_w = weights is not None
    w = weights.detach().float().contiguous() if has_w else x  # x: a placeholder the kernels do not read
    plane = B * C * H * W
    g, R, lam = _taps(dev), WINDOW // 2, float(ssim_weight)
    loss = torch.zeros(1, device=dev)
    grid = (B * C * H, triton.cdiv(W, BLOCK))
    moments = torch.empty(5, plane, device=dev)
    _hblur_moments[grid](x, y, moments, g, W, plane, BLOCK=BLOCK, R=R, num_warps=WARPS)
    partials = torch.empty(3, plane, device=dev)
    _vblur_ssim[grid](moments, x, y, w, partials, loss, g, H, W, plane, lam, 1.0 / plane,
                      HAS_W=has_w, CH=C, BLOCK=BLOCK, R=R, num_warps=WARPS)
    blurred = moments[:3]  # reuse: the moments are no longer needed
    _hblur3[grid](partials, blurred, g, W, plane, BLOCK=BLOCK, R=R, num_warps=WARPS)
    grad = torch.empty(B, H, W, C, device=dev)
    _vblur_grad[(B * H, triton.cdiv(W, BLOCK))](
        blurred, x, y, w, x, grad, x, g, loss, x, x, H, W, plane, lam, 1.0 / plane,
        COMPOSITE=False, HAS_W=has_w, LOG=False, BLOCK=BLOCK, R=R, num_warps=WARPS)
    return loss[0], grad


@triton.jit
def _prologue(rgb_ptr, alpha_ptr, img_ptr, batches_ptr, step_ptr, bgs_ptr, w_ptr, x_ptr, y_ptr, wb_ptr,
                  ga_ptr, bg_cur_ptr, loss_ptr, HW, n_pix, B, alpha_weight, inv_pix, RGBA: tl.constexpr,
                  USE_ALPHA: tl.constexpr, HAS_W: tl.constexpr, BLOCK: tl.constexpr):
    """Per pixel of the fit graph's batch: this step's views, background and targets looked up on the device
    (the step counter, the [steps, B] view table, the [steps, 3] backgrounds, the [C, H, W, 3|4] images); the
    render over the background and the target into planar [B, 3, H, W] images; the weights gathered for
    passes 2 and 4; the alpha term's loss and its gradient; the step's background kept for pass 4."""
    step = tl.load(step_ptr)
    pix = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = pix < n_pix
    b = pix // HW
    hw = pix % HW
    view = tl.load(batches_ptr + step * B + b, mask=m, other=0)
    a = tl.load(alpha_ptr + pix, mask=m, other=1.0)
    if RGBA:
        src = (view * HW + hw) * 4
        ia = tl.load(img_ptr + src + 3, mask=m, other=0.0)
    else:
        src = (view * HW + hw) * 3
    for c in tl.static_range(3):
        bgc = tl.load(bgs_ptr + step * 3 + c)
        if tl.program_id(0) == 0:
            tl.store(bg_cur_ptr + c, bgc)
        xv = tl.load(rgb_ptr + pix * 3 + c, mask=m, other=0.0) + (1.0 - a) * bgc
        iv = tl.load(img_ptr + src + c, mask=m, other=0.0)
        if RGBA:
            yv = iv * ia + bgc * (1.0 - ia)  # straight alpha over this step's background
        else:
            yv = iv
        tl.store(x_ptr + (b * 3 + c) * HW + hw, xv, mask=m)
        tl.store(y_ptr + (b * 3 + c) * HW + hw, yv, mask=m)
    if HAS_W:
        wv = tl.load(w_ptr + view * HW + hw, mask=m, other=0.0)
        tl.store(wb_ptr + pix, wv, mask=m)
    else:
        wv = tl.where(m, 1.0, 0.0)
    if USE_ALPHA:
        d = a - ia
        scale = alpha_weight * wv * inv_pix
        tl.atomic_add(loss_ptr, tl.sum(tl.where(m, scale * tl.abs(d), 0.0), axis=0))
        tl.store(ga_ptr + pix, scale * tl.where(d > 0, 1.0, tl.where(d < 0, -1.0, 0.0)), mask=m)
    else:
        tl.store(ga_ptr + pix, tl.zeros([BLOCK], dtype=tl.float32), mask=m)


class FitLossKernels:
    """The fit graph's loss: buffers made once, five kernels and a memset a step, no host-side work.

    rgb [B, H, W, 3] and alpha [B, H, W]: the static render (no background) the graph reads; images
    [C, H, W, 3|4], weights [C, H, W] or None, batches [steps, B] (int64), backgrounds [steps, 3], step []
    (int64, advanced by the kernels), log [>= steps] (each step's loss is written at its index)."""

    def __init__(self, rgb: Tensor, alpha: Tensor, images: Tensor, weights: Tensor | None, batches: Tensor,
                 backgrounds: Tensor, step: Tensor, log: Tensor, ssim_weight: float, alpha_weight: float,
                 use_alpha: bool):
        B, H, W, _ = rgb.shape
        dev = rgb.device
        self.rgb, self.alpha, self.images, self.weights = rgb, alpha, images.contiguous(), weights
        self.batches, self.backgrounds, self.step, self.log = batches.contiguous(), backgrounds.contiguous(), step, log
        self.rgba = images.shape[-1] == 4
        self.use_alpha = use_alpha and self.rgba
        self.lam, self.alpha_weight = float(ssim_weight), float(alpha_weight)
        self.shape = (B, H, W)
        plane = B * 3 * H * W
        self.x, self.y = torch.empty(B, 3, H, W, device=dev), torch.empty(B, 3, H, W, device=dev)
        self.wb = torch.empty(B, H, W, device=dev) if weights is not None else None
        self.moments, self.partials = torch.empty(5, plane, device=dev), torch.empty(3, plane, device=dev)
        self.loss, self.bg = torch.zeros(1, device=dev), torch.zeros(3, device=dev)
        self.grad_rgb, self.grad_alpha = torch.empty(B, H, W, 3, device=dev), torch.empty(B, H, W, device=dev)
        self.taps = _taps(dev)

    def __call__(self) -> None:
        B, H, W = self.shape
        plane, n_pix = B * 3 * H * W, B * H * W
        R, g = WINDOW // 2, self.taps
        has_w = self.weights is not None
        w, wb = (self.weights, self.wb) if has_w else (self.x, self.x)
        self.loss.zero_()
        _prologue[(triton.cdiv(n_pix, PBLOCK),)](
            self.rgb, self.alpha, self.images, self.batches, self.step, self.backgrounds, w, self.x, self.y, wb,
            self.grad_alpha, self.bg, self.loss, H * W, n_pix, B, self.alpha_weight, 1.0 / n_pix,
            RGBA=self.rgba, USE_ALPHA=self.use_alpha, HAS_W=has_w, BLOCK=PBLOCK)
        grid = (B * 3 * H, triton.cdiv(W, BLOCK))
        _hblur_moments[grid](self.x, self.y, self.moments, g, W, plane, BLOCK=BLOCK, R=R, num_warps=WARPS)
        _vblur_ssim[grid](self.moments, self.x, self.y, wb, self.partials, self.loss, g, H, W, plane, self.lam,
                          1.0 / plane, HAS_W=has_w, CH=3, BLOCK=BLOCK, R=R, num_warps=WARPS)
        blurred = self.moments[:3]
        _hblur3[grid](self.partials, blurred, g, W, plane, BLOCK=BLOCK, R=R, num_warps=WARPS)
        _vblur_grad[(B * H, triton.cdiv(W, BLOCK))](
            blurred, self.x, self.y, wb, self.bg, self.grad_rgb, self.grad_alpha, g, self.loss, self.log,
            self.step, H, W, plane, self.lam, 1.0 / plane, COMPOSITE=True, HAS_W=has_w, LOG=True, BLOCK=BLOCK, R=R,
            num_warps=WARPS)


class _L1DSSIM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rgb, target, weights, ssim_weight):
        loss, grad = l1_dssim(rgb, target, weights, ssim_weight)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None


def fused_l1_dssim(rgb: Tensor, target: Tensor, weights: Tensor | None, ssim_weight: float) -> Tensor:
    """(1 - ssim_weight) weighted L1 + ssim_weight weighted D-SSIM of [B, H, W, C] images; differentiable in rgb.

    Equal, to float32 rounding, to `step.photometric_loss` without its alpha term."""
    if rgb.shape != target.shape or rgb.ndim != 4:
        raise ValueError(f"rgb and target must both have shape [B, H, W, C], got {tuple(rgb.shape)} and {tuple(target.shape)}")
    if weights is not None and tuple(weights.shape) != tuple(rgb.shape[:3]):
        raise ValueError(f"weights must have shape {tuple(rgb.shape[:3])}, got {tuple(weights.shape)}")
    if not math.isfinite(ssim_weight):
        raise ValueError(f"ssim_weight must be finite, got {ssim_weight!r}")
    return _L1DSSIM.apply(rgb, target, weights, ssim_weight)
