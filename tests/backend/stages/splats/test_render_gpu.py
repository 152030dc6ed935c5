"""gsplat's CUDA rasteriser against our plain-torch reference on fresh random scenes (GPU only).

Tolerance, and why: both follow the same maths in float32, so they differ by rounding (gsplat uses
__expf and a running float32 product for transmittance; we sum log(1 - alpha) in float64), except where
a fragment sits on a threshold (alpha = 1/255, T = 1e-4) and one side keeps it: such a flip moves a pixel
by at most alpha x colour < 1/255. So per pixel |delta| <= 5e-3 in colour and alpha, and the mean over
all pixels <= 1e-4; expected depth (where alpha > 0.5) within 1% per pixel. Gradients of a random linear
loss agree in direction (cosine >= 0.99) and norm (within 2%) for every parameter.
"""

import pytest
import torch

from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.splats.gaussians import Gaussians, from_mesh, random_gaussians
from likeness3d.backend.stages.splats.render import render

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def leaf(g: Gaussians) -> Gaussians:
    return g.map(lambda t: t.detach().clone().cuda().requires_grad_(True))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gsplat_matches_reference(seed):
    sh_degree = seed % 4
    g = random_gaussians(3000, extent=0.6, scale=0.02 + 0.02 * seed, sh_degree=sh_degree, seed=100 + seed)
    cams = orbit((0, 0, 0), 1.0, [seed * 37.0, 120 + seed * 11.0, 250.0], [-15.0, 30.0], 96, 64).to("cuda")
    bg = torch.rand(len(cams), 3, generator=torch.Generator().manual_seed(seed)).cuda()
    weights = torch.rand(len(cams), 64, 96, 4, generator=torch.Generator().manual_seed(seed + 50)).cuda()

    outs, grads = {}, {}
    for backend in ("gsplat", "reference"):
        params = leaf(g)
        out = render(params, cams, background=bg, backend=backend)
        loss = (out.rgb * weights[..., :3]).sum() + (out.alpha * weights[..., 3]).sum()
        loss.backward()
        outs[backend] = out
        grads[backend] = {k: v.grad.detach().clone() for k, v in params.fields().items()}

    a, b = outs["gsplat"], outs["reference"]
    assert a.alpha.max() > 0.9  # the scene is in view
    assert (a.rgb - b.rgb).abs().max() <= 5e-3 and (a.rgb - b.rgb).abs().mean() <= 1e-4
    assert (a.alpha - b.alpha).abs().max() <= 5e-3 and (a.alpha - b.alpha).abs().mean() <= 1e-4
    solid = (a.alpha > 0.5) & (b.alpha > 0.5)
    rel = ((a.depth - b.depth).abs() / b.depth.abs().clamp_min(1e-6))[solid]
    assert rel.max() <= 1e-2
    same_culling = (a.meta["radii"] > 0).all(-1) == (b.meta["radii"] > 0).all(-1)
    assert same_culling.float().mean() > 0.999
    for name, ga in grads["gsplat"].items():
        gb = grads["reference"][name]
        cos = torch.nn.functional.cosine_similarity(ga.flatten(), gb.flatten(), dim=0)
        ratio = ga.norm() / gb.norm().clamp_min(1e-12)
        assert cos >= 0.99 and abs(ratio - 1) <= 0.02, (name, float(cos), float(ratio))


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_fit_on_cuda_with_gsplat_strategies(strategy):
    from likeness3d.backend.stages.splats.fit import FitConfig, fit
    from likeness3d.backend.stages.views.mesh_passes import mesh_rgba
    from likeness3d.backend.synthetic.shapes import uv_sphere

    mesh = uv_sphere(1.0, 48, 24, texture_size=64, seed=3)
    cams = orbit((0, 0, 0), 1.0, [0, 60, 120, 180, 240, 300], [-20, 35], 64, 64)
    images = mesh_rgba(mesh, cams, supersample=2)
    g = from_mesh(mesh, count=2000, color=(0.5, 0.5, 0.5)).to("cuda")
    cfg = FitConfig(steps=300, refine_start=100, refine_every=50, strategy=strategy, cap_max=4000)
    result = fit(g, images, cams, config=cfg)
    # the default paths: MCMC keeps the loss graph, its Adam eager (foreach); the default strategy graphs both
    assert result.paths.loss_graph and result.paths.update == ("foreach" if strategy == "mcmc" else "graph")
    assert result.graphs_captured >= (1 if strategy == "mcmc" else 2)
    first, last = sum(result.losses[:20]) / 20, sum(result.losses[-20:]) / 20
    assert last < 0.5 * first
    assert result.gaussians.device.type == "cuda"
    assert len(result.gaussians) != 2000  # the strategy grew or relocated the set


def test_feature_splats_match_reference_and_keep_their_pixel_size():
    """Point splats (zero 3D scale, footprint from eps2d) through gsplat vs the reference, 19 channels, 3
    cameras in one call; the splat's spread in pixels is the same near and far (it does not scale with depth)."""
    from likeness3d.backend.stages.customize.deferred import splat_features

    gen = torch.Generator().manual_seed(7)
    points = (torch.rand(4000, 3, generator=gen) - 0.5) * 0.8
    feats = torch.rand(4000, 19, generator=gen)
    cams = orbit((0, 0, 0), 1.0, [0.0, 90.0, 200.0], [10.0], 80, 64)
    out = {}
    for backend in ("gsplat", "reference"):
        f = feats.clone().cuda().requires_grad_(True)
        img, alpha = splat_features(points.cuda(), f, cams.to("cuda"), radius_px=2.0, backend=backend)
        (img * torch.linspace(0, 1, 19, device="cuda")).sum().backward()
        out[backend] = (img.detach(), alpha.detach(), f.grad)
    (ia, aa, ga), (ib, ab, gb) = out["gsplat"], out["reference"]
    assert ia.shape == (3, 64, 80, 19) and aa.max() > 0.9
    assert (ia - ib).abs().max() <= 5e-3 and (aa - ab).abs().max() <= 5e-3
    assert torch.nn.functional.cosine_similarity(ga.flatten(), gb.flatten(), dim=0) >= 0.99
    # one point near and one far: the same footprint in pixels (sigma = radius / 2 = 1 px)
    cam = orbit((0, 0, 0), 1.0, [0.0], [0.0], 65, 65).to("cuda")
    near = cam.centers[0] * 0.6  # on the axis through the image centre
    far = -cam.centers[0] * 0.6
    for pt in (near, far):
        img, alpha = splat_features(pt[None].float(), torch.ones(1, 1, device="cuda"), cam, radius_px=2.0)
        row = alpha[0, 32]
        width = int((row > 0.45 * row.max()).sum())  # pixels above half maximum (FWHM 2.35 px)
        assert 2 <= width <= 3 and row.max() > 0.5, (pt, row[28:37])


FIT_VARIANTS = {  # FitConfig fields -> the paths the fit must run (with Triton)
    "graph+fused, update graph (the default)": ({}, ("fused", True, "graph")),
    "graph+fused, update fused": (dict(update="fused"), ("fused", True, "fused")),
    "graph+fused, update foreach": (dict(update="foreach"), ("fused", True, "foreach")),
    "fused eager, update fused": (dict(cuda_graph=False), ("fused", False, "fused")),
    "graph+torch, update graph": (dict(fused_loss=False), ("torch", True, "graph")),
}


@pytest.mark.parametrize("rgba", [False, True])
@pytest.mark.parametrize("variant", list(FIT_VARIANTS))
def test_fast_fits_follow_the_plain_step(variant, rgba):
    """Each fast step of fit() (CUDA graphs, Triton loss, fused or graphed Adam) against the plain step (torch
    loss, `adam_step`) on CUDA: the same losses and Gaussians, with densification."""
    import importlib.util

    from likeness3d.backend.stages.splats.fit import FitConfig, fit
    from likeness3d.backend.stages.splats.step import StepPaths

    fields, paths = FIT_VARIANTS[variant]
    if paths[0] == "fused" and importlib.util.find_spec("triton") is None:
        pytest.skip("needs Triton")
    g = random_gaussians(2000, extent=0.5, scale=0.03, sh_degree=1, seed=5).to("cuda")
    cams = orbit((0, 0, 0), 1.0, [0.0, 60.0, 150.0, 260.0], [10.0], 48, 40).to("cuda")
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(4, 40, 48, 4 if rgba else 3, generator=gen).cuda()
    weights = 0.5 + torch.rand(4, 40, 48, generator=gen).cuda()
    runs = {}
    plain = dict(cuda_graph=False, fused_loss=False, compile_loss=False, update="foreach")
    for name, extra in (("plain", plain), ("fast", fields)):
        cfg = FitConfig(steps=60, refine_start=20, refine_every=20, batch_size=2, **extra)
        runs[name] = fit(g, images, cams, weights=weights, config=cfg)
    a, b = runs["plain"], runs["fast"]
    assert a.paths == StepPaths() and a.graphs_captured == 0
    assert b.paths == StepPaths(*paths), b.paths
    # the graphs really ran: the loss graph, and for the update at least one (one per parameter set)
    assert b.graphs_captured >= (1 if paths[1] else 0) + (1 if paths[2] == "graph" else 0), b.graphs_captured
    if not paths[1]:
        assert b.graphs_captured == 0
    assert len(a.losses) == len(b.losses) == 60
    # the first step sees identical inputs; later ones drift apart only by gsplat's atomic-add rounding
    assert abs(a.losses[0] - b.losses[0]) <= 1e-5 * a.losses[0]
    assert abs(sum(a.losses[-10:]) - sum(b.losses[-10:])) <= 0.01 * sum(a.losses[-10:])
    assert sum(b.losses[-10:]) < sum(b.losses[:10])  # and the fast fit does fit
    assert abs(len(a.gaussians) - len(b.gaussians)) <= 0.05 * len(a.gaussians)


def test_fused_loss_kernels_equal_the_torch_loss_on_cuda():
    """The compiled Triton kernels: loss and gradient as the torch loss at 512 x 384, with and without weights."""
    from likeness3d.backend.stages.splats.step import photometric_loss
    from likeness3d.backend.stages.splats.fast.fused_loss import fused_l1_dssim

    gen = torch.Generator().manual_seed(11)
    a = torch.rand(2, 384, 512, 3, generator=gen).cuda()
    b = (a + 0.2 * torch.randn(2, 384, 512, 3, generator=gen).cuda()).clamp(0, 1)
    for w in (None, torch.rand(2, 384, 512, generator=gen).cuda()):
        x1, x2 = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
        ref = photometric_loss(x1, b, None, None, w, 0.2, 0.1)
        ref.backward()
        out = fused_l1_dssim(x2, b, w, 0.2)
        out.backward()
        assert abs(float(ref) - float(out)) <= 1e-5 * float(ref)
        assert float((x1.grad - x2.grad).abs().max()) <= 1e-4 * float(x1.grad.abs().max())


def test_fit_loss_kernels_on_cuda():
    """The fit graph's kernels on CUDA: views and background looked up from the step counter, raw render +
    alpha over the background, alpha term, both gradients, log and counter; against the torch loss."""
    from likeness3d.backend.stages.splats.step import photometric_loss
    from likeness3d.backend.stages.splats.fast.fused_loss import FitLossKernels

    gen = torch.Generator().manual_seed(12)
    images = torch.rand(5, 256, 320, 4, generator=gen).cuda()
    weights = torch.rand(5, 256, 320, generator=gen).cuda()
    batches = torch.tensor([[0, 1], [4, 2], [3, 0]]).cuda()
    backgrounds, step, log = torch.rand(3, 3, generator=gen).cuda(), torch.tensor(1).cuda(), torch.zeros(3).cuda()
    raw = (torch.rand(2, 256, 320, 3, generator=gen) * 0.5).cuda()
    alpha = torch.rand(2, 256, 320, generator=gen).cuda()
    kernels = FitLossKernels(raw, alpha, images, weights, batches, backgrounds, step, log, 0.2, 0.1, True)
    kernels()
    idx, bg = batches[1], backgrounds[1]
    target = images[idx, ..., :3] * images[idx, ..., 3:] + bg * (1 - images[idx, ..., 3:])
    r1, a1 = raw.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
    ref = photometric_loss(r1 + (1 - a1)[..., None] * bg, target, a1, images[idx, ..., 3], weights[idx], 0.2, 0.1)
    ref.backward()
    assert int(step) == 2 and float(log[0]) == 0 and float(log[2]) == 0
    assert abs(float(ref) - float(log[1])) <= 1e-5 * float(ref)
    assert float((kernels.grad_rgb - r1.grad).abs().max()) <= 1e-4 * float(r1.grad.abs().max())
    assert float((kernels.grad_alpha - a1.grad).abs().max()) <= 1e-4 * float(a1.grad.abs().max())


def test_adam_kernel_in_a_cuda_graph_is_torch_adam():
    """`adam_kernel.adam_` captured once and replayed: torch.optim.Adam's parameters, step by step."""
    from likeness3d.backend.stages.splats.fast.adam_kernel import adam_, warm_up

    gen = torch.Generator().manual_seed(13)
    ref = torch.nn.Parameter(torch.randn(300_001, generator=gen).cuda())
    opt = torch.optim.Adam([ref], lr=0.05, eps=1e-15)
    p, g = ref.detach().clone(), torch.zeros_like(ref)
    m, v, step, lr = torch.zeros_like(p), torch.zeros_like(p), torch.zeros((), device="cuda"), torch.tensor(0.05).cuda()
    warm_up(p.device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        adam_(p, g, m, v, step, lr, 0.9, 0.999, 1e-15)
        step.add_(1)
    for _ in range(5):
        grad = torch.randn(300_001, generator=gen).cuda()
        ref.grad = grad.clone()
        opt.step()
        g.copy_(grad)
        graph.replay()
    assert int(step) == 5
    err = float((p - ref.detach()).abs().max())  # float32 rounding of |p| up to about 5
    assert err <= 1e-5, err


@pytest.mark.parametrize("max_in_place", [0, 4])
def test_graphed_update_is_eager_adam_and_reads_gradients_in_place(max_in_place):
    """`fit_graph.GraphedUpdate` against the eager multi-tensor Adam and the strategy's sums, over steps with
    fresh gradients each, a replaced parameter set midway; with in-place graphs allowed, steady steps use them."""
    from likeness3d.backend.stages.splats.step import adam_step
    from likeness3d.backend.stages.splats.fast.fit_graph import GraphedUpdate

    gen = torch.Generator().manual_seed(14)
    shapes = {"means": (500, 3), "opacities": (500,), "shN": (500, 15, 3)}
    start = {k: torch.randn(*s, generator=gen).cuda() for k, s in shapes.items()}
    steps = 20
    weights = [{k: torch.randn(*s, generator=gen).cuda() for k, s in shapes.items()} for _ in range(steps)]
    radii = [(torch.rand(1, 500, 2, generator=gen) > 0.2).int().cuda() for _ in range(steps)]
    scale = torch.tensor([32.0, 24.0], device="cuda")
    runs = {}
    for graphed in (False, True):
        params = {k: torch.nn.Parameter(v.clone()) for k, v in start.items()}
        opts = {k: torch.optim.Adam([{"params": [p], "lr": 0.01 * (i + 1)}], eps=1e-15)
                for i, (k, p) in enumerate(params.items())}
        state = {"grad2d": None, "count": None}
        updater = GraphedUpdate("means", 0.99, strategy_sums=True)
        updater.max_in_place = max_in_place
        sums = [torch.zeros(500, device="cuda"), torch.zeros(500, device="cuda")]
        for step in range(steps):
            if step == steps // 2:  # as a strategy does: new parameter objects, the Adam state carried over
                for k in list(params):
                    new = torch.nn.Parameter(params[k].detach().clone())
                    opts[k].state[new] = opts[k].state.pop(params[k])
                    opts[k].param_groups[0]["params"] = [new]
                    params[k] = new
            means2d = params["means"][None, :, :2] * 2.0  # [C, N, 2], as the rasteriser's
            means2d.retain_grad()
            loss = sum((p * weights[step][k]).sum() for k, p in params.items()) + (means2d**2).sum()
            loss.backward()
            # the rasteriser's radii are a new tensor each step, like the gradients
            info = {"means2d": means2d, "radii": radii[step].clone(), "width": 64, "height": 48, "n_cameras": 1}
            if graphed:
                updater.step(params, opts, state, info)
            else:
                seen = (radii[step] > 0).all(-1)
                sums[0] += (torch.linalg.vector_norm(means2d.grad * scale, dim=-1) * seen).sum(0)
                sums[1] += seen.sum(0)
                adam_step(opts)
                for group in opts["means"].param_groups:
                    group["lr"] *= 0.99
            del means2d, loss, info
        runs[graphed] = (params, state["grad2d"] if graphed else sums[0], state["count"] if graphed else sums[1])
        if graphed:
            stats = (updater.captures, updater.in_place_steps)
            assert updater.captures <= 2 + 2 * max_in_place, stats
            assert (updater.in_place_steps > 0) == (max_in_place > 0), stats
    (pa, ga, ca), (pb, gb, cb) = runs[False], runs[True]
    for k in shapes:
        err = float((pa[k] - pb[k]).abs().max())
        assert err <= 1e-5, (k, err)
    assert float((ga - gb).abs().max()) <= 1e-5 * float(ga.abs().max()) and torch.equal(ca, cb)
