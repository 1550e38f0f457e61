"""Shared mask and perturbation operators (imports neither methods nor metrics).

Blur kernels and fixed blur baselines, mask upsampling, total variation (TV) and bilateral TV,
grid difference matrices. Method-specific operators (EP's blur pyramid and smooth-max mask generator,
the vecsort area regulariser) live here too, so every method and protocol shares one implementation.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .explanation import check_choice, check_range

__all__ = [
    "gaussian_kernel1d",
    "gaussian_blur",
    "blur_baseline",
    "upsample_mask",
    "tv_norm",
    "bilateral_tv",
    "grid_difference_matrix",
]


def gaussian_kernel1d(sigma: float, radius: int | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian exp(−t²/2σ²)/Z, t = −r..r; r defaults to ⌈4σ⌉ (TorchRay's half-width)."""
    check_range("sigma", sigma, 0.0, low_inclusive=False)
    r = int(math.ceil(4 * sigma)) if radius is None else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int | None = None, pad: str = "zeros") -> torch.Tensor:
    """Separable Gaussian blur of ``x`` ``(N, C, H, W)``, per channel.

    ``pad="zeros"`` pads with 0 (TorchRay's choice, in normalised space borders fade to the mean colour);
    ``"reflect"`` mirrors without repeating the edge (OpenCV's BORDER_REFLECT_101); ``"replicate"``.
    ``sigma == 0`` returns ``x`` unchanged.
    """
    check_choice("pad", pad, ("zeros", "reflect", "replicate"))
    if sigma == 0:
        return x
    k = gaussian_kernel1d(sigma, radius, x.dtype, x.device)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    kh = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    kv = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    if pad == "zeros":
        y = F.conv2d(x, kh, padding=(0, r), groups=c)
        return F.conv2d(y, kv, padding=(r, 0), groups=c)
    mode = "reflect" if pad == "reflect" else "replicate"
    if mode == "reflect" and (r >= x.shape[-1] or r >= x.shape[-2]):
        # reflect padding needs r < size: fold repeatedly (reflect-101 extended periodically)
        y = _reflect_pad_large(x, r)
        y = F.conv2d(y, kh, groups=c)
        return F.conv2d(y, kv, groups=c)
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), kh, groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), kv, groups=c)


def _reflect_pad_large(x: torch.Tensor, r: int) -> torch.Tensor:
    h, w = x.shape[-2:]

    def idx(n: int) -> torch.Tensor:
        i = torch.arange(-r, n + r, device=x.device)
        period = 2 * (n - 1) if n > 1 else 1
        i = torch.remainder(i, period)
        return torch.where(i >= n, period - i, i)

    return x[..., idx(h)[:, None], idx(w)[None, :]]


def blur_baseline(x: torch.Tensor, ksize: int = 51, sigma: float = 50.0, pad: str = "reflect") -> torch.Tensor:
    """Fixed-kernel blur, ``ksize``×``ksize`` Gaussian with std ``sigma`` (I-GOS/iGOS++ baseline: 51, σ 50).

    Matches ``cv2.GaussianBlur(img, (ksize, ksize), sigma)`` with OpenCV's default reflect-101 border when
    ``pad="reflect"``. Applied per channel in whatever space ``x`` lives in (blur is linear, so blurring
    [0, 1] pixels and normalising afterwards equals normalising first).
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize={ksize!r} is not valid; accepted values: an odd int >= 1")
    return gaussian_blur(x, sigma, radius=(ksize - 1) // 2, pad=pad)


def upsample_mask(m: torch.Tensor, size: int | tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear upsampling of masks ``(N, 1, h, w)`` to ``size``.

    ``align_corners=True`` is ``nn.UpsamplingBilinear2d`` (I-GOS/iGOS++); ``False`` is TorchRay's resize.
    """
    if isinstance(size, int):
        size = (size, size)
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return F.interpolate(m, size=size, mode="bilinear", align_corners=align_corners)


def tv_norm(m: torch.Tensor, beta: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """Anisotropic total variation per mask: mean|Δ_v m|^β + mean|Δ_h m|^β (I-GOS's TV₂ for β = 2).

    ``m``: ``(N, 1, h, w)`` → ``(N,)`` (``reduction="mean"``: means over the difference arrays, as I-GOS;
    ``"sum"``: sums).
    """
    check_choice("reduction", reduction, ("mean", "sum"))
    dv = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta)
    dh = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta)
    agg = (lambda t: t.flatten(1).mean(1)) if reduction == "mean" else (lambda t: t.flatten(1).sum(1))
    return agg(dv) + agg(dh)


def bilateral_tv(image: torch.Tensor, m: torch.Tensor, sigma: float = 0.01, beta: float = 2.0) -> torch.Tensor:
    """Bilateral TV of masks ``m`` ``(N, 1, H, W)`` at the image resolution, weighted by image edges.

    BTV(m) = mean_u w_v(u)|Δ_v m(u)|^β + mean_u w_h(u)|Δ_h m(u)|^β,
    with w = exp(−ΔI(u)²/σ) so mask changes are cheap where the image changes (iGOS++).
    As in the official code (protocols.md §4.3) the vertical weight squares the channel-*mean* difference,
    the horizontal weight averages exp(−ΔI_c²/σ) over channels. ``image``: ``(1 or N, 3, H, W)``.
    """
    dv_i = image[..., 1:, :] - image[..., :-1, :]
    dh_i = image[..., :, 1:] - image[..., :, :-1]
    wv = torch.exp(-(dv_i.mean(1, keepdim=True) ** 2) / sigma)
    wh = torch.exp(-(dh_i**2) / sigma).mean(1, keepdim=True)
    dv = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta)
    dh = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta)
    return (wv * dv).flatten(1).mean(1) + (wh * dh).flatten(1).mean(1)


def grid_difference_matrix(n: int, padded: bool = True) -> sp.csr_matrix:
    """First-difference operator D on an ``n×n`` grid in row-major order (LEG, protocols.md §3.2).

    Rows: x[i,j] − x[i,j+1] (horizontal) and x[i,j] − x[i+1,j] (vertical), 2n(n−1) rows.
    ``padded=True`` prepends 4n rows of differences against a zero border (each boundary cell minus the zero
    outside it, one row per side: top, bottom, left, right), making D full rank (1624×784 for n = 28) and every
    diagonal entry of DᵀD equal to 4; unpadded D (1512×784) has the constants as null space.
    """
    if n < 2:
        raise ValueError(f"n={n!r} is not valid; accepted values: an int >= 2")
    p = n * n
    idx = np.arange(p).reshape(n, n)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    r = 0
    if padded:
        for side in (idx[0, :], idx[-1, :], idx[:, 0], idx[:, -1]):
            for k in side:
                rows.append(r)
                cols.append(int(k))
                vals.append(1.0)
                r += 1
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        for i, j in zip(a.ravel(), b.ravel()):
            rows += [r, r]
            cols += [int(i), int(j)]
            vals += [1.0, -1.0]
            r += 1
    return sp.csr_matrix((vals, (rows, cols)), shape=(r, p))
