"""Reference Gaussian rasteriser in plain torch: the CPU path, and the yardstick for gsplat's CUDA path.

`rasterization` takes the arguments of `gsplat.rendering.rasterization` that we use, with the same
meaning, shapes and pixel convention (gsplat evaluates pixel (i, j) at (i + 0.5, j + 0.5), so its K puts
the top-left pixel corner at 0), and returns the same (colours, alphas, meta). It follows gsplat's maths:
EWA projection with the Jacobian clamped to 1.3x the field of view, a 0.3 px^2 low-pass blur, radii of
min(3.33, sqrt(2 ln(255 opacity))) standard deviations, alpha = min(0.999, o exp(-sigma)), fragments with
alpha < 1/255 skipped, a pixel finished once its transmittance would fall to 1e-4. Compositing is dense
and depth-sorted inside 8 x 8 tiles (every Gaussian overlapping a tile is evaluated at each of its
pixels), differentiable through autograd. Memory grows with (tile, Gaussian) pairs x 64 pixels: meant for
small images and a few thousand Gaussians.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .gaussians import quat_to_rotation

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4

# Real SH constants of bands 0-3, the 3DGS ordering and signs.
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """[..., (degree+1)^2] real SH basis at unit directions `dirs` [..., 3] (degree <= 3)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"degree must be in [0, 3], got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, _C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [_C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * x * y * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_color(sh: Tensor, degree: int, means: Tensor, campos: Tensor) -> Tensor:
    """[C, N, 3] colours of SH coefficients `sh` [N, K, 3] seen from camera centres `campos` [C, 3].

    As gsplat: evaluate the first (degree+1)^2 bands along (mean - camera), add 0.5, clamp below at 0.
    """
    k = (degree + 1) ** 2
    if sh.shape[-2] < k:
        raise ValueError(f"sh_degree {degree} needs {k} SH coefficients, colors has {sh.shape[-2]}")
    dirs = torch.nn.functional.normalize(means[None] - campos[:, None], dim=-1)  # [C, N, 3]
    basis = sh_basis(degree, dirs)  # [C, N, k]
    return torch.clamp_min((basis[..., None] * sh[None, :, :k]).sum(-2) + 0.5, 0.0)


def project(
    means: Tensor,  # [N, 3] world
    covars: Tensor,  # [N, 3, 3] world
    viewmats: Tensor,  # [C, 4, 4] world-to-camera, OpenCV axes
    Ks: Tensor,  # [C, 3, 3] gsplat convention (pixel corner at 0)
    width: int,
    height: int,
    opacities: Tensor,  # [N]
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA splatting of 3D Gaussians into C images.

    Returns radii [C, N, 2] int32 (0 = culled), means2d [C, N, 2] px, depths [C, N] camera z, conics
    [C, N, 3] (upper triangle of the blurred 2D covariance's inverse).
    """
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None]  # [C, N, 3]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)  # [C, N, 3, 3]
    tx, ty, tz = means_c.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # Clamp the point where the Jacobian is taken to 1.3x the field of view (3DGS / gsplat).
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    safe_z = torch.where(tz.abs() > 1e-12, tz, torch.full_like(tz, 1e-12))
    u = torch.clamp(tx / safe_z, min=-(cx / fx + 0.3 * tan_x), max=(width - cx) / fx + 0.3 * tan_x)
    v = torch.clamp(ty / safe_z, min=-(cy / fy + 0.3 * tan_y), max=(height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / safe_z, zero, -fx * u / safe_z, zero, fy / safe_z, -fy * v / safe_z], -1)
    J = J.reshape(*tz.shape, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)  # [C, N, 2, 2]
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det = a * c - b * b
    det_safe = det.clamp_min(1e-10)
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * tx / safe_z + cx, fy * ty / safe_z + cy], dim=-1)

    with torch.no_grad():
        extend = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_MIN) / ALPHA_MIN).clamp_min(0.0))
        extend = extend.clamp(max=3.33)[None]  # [1, N]
        radii = torch.stack([torch.ceil(extend * a.sqrt()), torch.ceil(extend * c.sqrt())], dim=-1)
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane) & (radii > 0).all(-1)
        inside = (
            (means2d[..., 0] + radii[..., 0] > 0) & (means2d[..., 0] - radii[..., 0] < width)
            & (means2d[..., 1] + radii[..., 1] > 0) & (means2d[..., 1] - radii[..., 1] < height)
        )
        radii = torch.where((valid & inside)[..., None], radii, torch.zeros_like(radii)).int()
    return radii, means2d, tz, conics


def composite(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    depths: Tensor,  # [N]
    radii: Tensor,  # [N, 2]
    opacities: Tensor,  # [N]
    features: Tensor,  # [N, D]
    width: int,
    height: int,
    tile_size: int = 8,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of one image. Returns features [H, W, D] and alpha [H, W].

    Work is organised as gsplat's: (tile, Gaussian) pairs for every tile a Gaussian's pixel bounding box
    touches, sorted by tile then depth; each pair is evaluated at every pixel of its tile. Transmittance is
    a per-tile running product, computed as a segmented cumulative sum of log(1 - alpha) in float64.
    """
    device, dtype = means2d.device, means2d.dtype
    D = features.shape[-1]
    keep = (radii > 0).all(-1).nonzero()[:, 0]
    if len(keep) == 0:
        return means2d.new_zeros(height, width, D), means2d.new_zeros(height, width)
    keep = keep[torch.argsort(depths[keep].detach(), stable=True)]  # front to back
    n = len(keep)

    # 1. (tile, Gaussian) pairs, sorted by tile then depth.
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    with torch.no_grad():
        m, r = means2d[keep], radii[keep].to(dtype)
        lo = torch.floor((m - r) / tile_size).long()
        hi = torch.floor((m + r) / tile_size).long()
        lo[:, 0].clamp_(0, tiles_x - 1)
        hi[:, 0].clamp_(0, tiles_x - 1)
        lo[:, 1].clamp_(0, tiles_y - 1)
        hi[:, 1].clamp_(0, tiles_y - 1)
        nx, ny = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
        counts = nx * ny
        rank = torch.repeat_interleave(torch.arange(n, device=device), counts)  # depth rank of each pair
        local = torch.arange(len(rank), device=device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        tile = (lo[rank, 1] + local // nx[rank]) * tiles_x + lo[rank, 0] + local % nx[rank]
        order = torch.argsort(tile * n + rank)
        rank, tile = rank[order], tile[order]
        pos = torch.arange(len(tile), device=device)
        is_first = torch.ones_like(tile, dtype=torch.bool)
        is_first[1:] = tile[1:] != tile[:-1]
        first = torch.cummax(torch.where(is_first, pos, torch.zeros_like(pos)), dim=0).values
        # Pixel centres of each pair's tile, (i + 0.5, j + 0.5) as gsplat.
        ar = torch.arange(tile_size, device=device)
        py, px = torch.meshgrid(ar, ar, indexing="ij")
        pix_x = (tile % tiles_x)[:, None] * tile_size + px.reshape(1, -1)  # [M, P]
        pix_y = (tile // tiles_x)[:, None] * tile_size + py.reshape(1, -1)

    # 2. Alpha of every pair at every pixel of its tile.
    g = keep[rank]
    dx = pix_x.to(dtype) + 0.5 - means2d[g, 0:1]
    dy = pix_y.to(dtype) + 0.5 - means2d[g, 1:2]
    con = conics[g]
    sigma = 0.5 * (con[:, 0:1] * dx * dx + con[:, 2:3] * dy * dy) + con[:, 1:2] * dx * dy
    alpha = torch.clamp_max(opacities[g, None] * torch.exp(-sigma), ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))

    # 3. Transmittance before each fragment, per tile; a pixel stops at the fragment that would bring it to
    #    1e-4 or below (that fragment is not added), as gsplat.
    log_keep = torch.log1p(-alpha).double()
    incl = torch.cumsum(log_keep, dim=0)
    excl = incl - log_keep
    base = excl[first]
    weights = alpha * torch.exp(excl - base).to(dtype) * ((incl - base) > math.log(T_MIN)).to(dtype)

    # 4. Accumulate into the tiles, then scatter the tiles into the image.
    n_tiles = tiles_x * tiles_y
    P = tile_size * tile_size
    tile_feat = torch.zeros(n_tiles, P, D, device=device, dtype=dtype).index_add(
        0, tile, weights[..., None] * features[g][:, None, :]
    )
    tile_alpha = torch.zeros(n_tiles, P, device=device, dtype=dtype).index_add(0, tile, weights)
    ti = torch.arange(n_tiles, device=device)
    all_x = (ti % tiles_x)[:, None] * tile_size + px.reshape(1, -1)
    all_y = (ti // tiles_x)[:, None] * tile_size + py.reshape(1, -1)
    inside = (all_x < width) & (all_y < height)
    flat = (all_y * width + all_x)[inside]
    out_feat = means2d.new_zeros(height * width, D).index_put((flat,), tile_feat[inside])
    out_alpha = means2d.new_zeros(height * width).index_put((flat,), tile_alpha[inside])
    return out_feat.reshape(height, width, D), out_alpha.reshape(height, width)


def rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D], [C, N, D], or SH [N, K, 3] with sh_degree
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3] gsplat convention
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,  # [C, D] or [D]
    render_mode: str = "RGB",
    tile_size: int = 8,
) -> tuple[Tensor, Tensor, dict]:
    """The subset of `gsplat.rasterization` (packed=False, classic mode, pinhole) that the stages use.

    Returns render_colors [C, H, W, D] (plus one depth channel for "RGB+ED" / "RGB+D"), render_alphas
    [C, H, W, 1], and meta with means2d [C, N, 2] (retain_grad() works on it), radii [C, N, 2], depths,
    conics, width, height, n_cameras, as gsplat's non-packed meta.
    """
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"render_mode must be one of RGB, D, ED, RGB+D, RGB+ED, got {render_mode!r}")
    C = viewmats.shape[0]
    Rm = quat_to_rotation(quats)
    M = Rm * scales[:, None, :]
    covars = M @ M.transpose(1, 2)
    radii, means2d, depths, conics = project(
        means, covars, viewmats, Ks, width, height, opacities.detach(), eps2d, near_plane, far_plane
    )
    if sh_degree is not None:
        campos = -(viewmats[:, :3, :3].transpose(1, 2) @ viewmats[:, :3, 3:])[..., 0]
        feats = sh_to_color(colors, sh_degree, means, campos)  # [C, N, 3]
    else:
        feats = colors if colors.ndim == 3 else colors[None].expand(C, -1, -1)
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], dim=-1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]

    images, alphas = [], []
    for c in range(C):
        f, a = composite(means2d[c], conics[c], depths[c], radii[c], opacities, feats[c], width, height, tile_size)
        images.append(f)
        alphas.append(a)
    render = torch.stack(images)
    render_alphas = torch.stack(alphas)[..., None]
    if backgrounds is not None:
        bg = backgrounds if backgrounds.ndim == 2 else backgrounds[None].expand(C, -1)
        if render_mode in ("RGB+D", "RGB+ED"):
            bg = torch.cat([bg, bg.new_zeros(C, 1)], dim=-1)
        elif render_mode in ("D", "ED"):
            bg = bg.new_zeros(C, 1)
        render = render + bg[:, None, None, :] * (1.0 - render_alphas)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1)
    meta = {
        "means2d": means2d,
        "radii": radii,
        "depths": depths,
        "conics": conics,
        "width": width,
        "height": height,
        "n_cameras": C,
        "gaussian_ids": None,
    }
    return render, render_alphas, meta
