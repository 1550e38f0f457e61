"""Masking schemes for ranking protocols on [0, 1] RGB images (appendix §7, tie rule §11).

Pixels are ranked by |saliency| in descending order with the §11 tie rule: a stable sort on (−score, index),
i.e. row-major order among equal values (``ties="stable"``), or a seeded random order among ties
(``ties="random"``). The top ``k`` pixels (all three channels) are then replaced according to the scheme:

=============  ==============================================================================================
``distance``   pixel − K/255 where saliency ≥ 0, pixel + K/255 where < 0, clipped to [0, 1] (Distance-K)
``black``      0 (black-out)           ``white``  1 (white-out)          ``gray``  0.5
``mean``       the image's mean RGB colour truncated to an integer grey level, ⌊255·mean⌋/255 per channel
               (the official ``get_mask``: the float mean is written into the integer image)
``mean_exact`` the image's exact mean RGB colour (no truncation)
``noise``      uniform integers 0..254 per channel, /255 (official range), seeded; one draw per repeat,
               shared by every masked fraction of that repeat (common random numbers across α)
=============  ==============================================================================================

For α ∈ [0, 1] the number of masked pixels is k = ⌊α·H·W⌋ (the official ``int(α·224²)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks import check_choice, check_range

__all__ = ["SCHEMES", "saliency_order", "rank_pixels", "n_masked", "fill_image", "masked_images", "mask_fraction"]

SCHEMES = ("distance", "black", "white", "mean", "mean_exact", "noise", "gray")


def saliency_order(saliency: torch.Tensor, ties: str = "stable", seed: int = 0) -> torch.Tensor:
    """Flat indices of ``saliency`` from most to least relevant — the one tie rule of every protocol (§11).

    ``ties="stable"``: stable sort on (−score, index), i.e. row-major order among equal values;
    ``ties="random"``: equal values in the order of a seeded permutation.
    """
    check_choice("ties", ties, ("stable", "random"))
    s = torch.as_tensor(saliency).detach().double().cpu().flatten()
    if not torch.isfinite(s).all():
        raise ValueError("saliency contains NaN or inf; accepted values: finite numbers")
    if ties == "stable":
        return torch.sort(-s, stable=True).indices
    perm = torch.randperm(s.numel(), generator=torch.Generator().manual_seed(int(seed)))
    return perm[torch.sort(-s[perm], stable=True).indices]


def rank_pixels(saliency: torch.Tensor, ties: str = "stable", seed: int = 0) -> torch.Tensor:
    """Rank (0 = most salient) of every pixel of an ``(H, W)`` map by descending |saliency| (tie rule §11)."""
    if saliency.dim() != 2:
        raise ValueError(f"saliency has shape {tuple(saliency.shape)}; accepted values: an (H, W) map")
    order = saliency_order(saliency.abs(), ties, seed)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank.view(saliency.shape)


def n_masked(alpha: float | Sequence[float] | torch.Tensor, n_pixels: int) -> torch.Tensor:
    """k = ⌊α·n_pixels⌋ (with a 1e-9 guard against float error in α = i/999)."""
    a = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    if bool(((a < 0) | (a > 1)).any()):
        raise ValueError("alpha is not valid; accepted values: fractions in [0, 1]")
    return torch.floor(a * n_pixels + 1e-9).long()


def fill_image(x: torch.Tensor, saliency: torch.Tensor, scheme: str, K: float = 100.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The image every masked pixel is taken from, ``(1, 3, H, W)`` (see the module table)."""
    check_choice("scheme", scheme, SCHEMES)
    if scheme == "distance":
        check_range("K", K, 0.0)
        sign = torch.where(saliency >= 0, 1.0, -1.0).to(x)
        return (x - (K / 255.0) * sign).clamp(0.0, 1.0)
    if scheme == "black":
        return torch.zeros_like(x)
    if scheme == "white":
        return torch.ones_like(x)
    if scheme == "gray":
        return torch.full_like(x, 0.5)
    if scheme in ("mean", "mean_exact"):
        m = x.double().mean(dim=(2, 3), keepdim=True)
        if scheme == "mean":  # the 1e-6 guard keeps an exact integer mean (k/255 averages) from rounding down
            m = torch.floor(m * 255.0 + 1e-6) / 255.0
        return m.to(x.dtype).expand_as(x).clone()
    noise = torch.randint(0, 255, x.shape, generator=generator, dtype=torch.int64)
    return (noise.to(torch.float32) / 255.0).to(x)


def masked_images(x: torch.Tensor, saliency: torch.Tensor, ks: Sequence[int] | torch.Tensor, scheme: str,
                  K: float = 100.0, rank: torch.Tensor | None = None, fill: torch.Tensor | None = None,
                  ties: str = "stable", seed: int = 0) -> torch.Tensor:
    """``(len(ks), 3, H, W)`` images with the top-``k`` pixels replaced (one row per k).

    ``rank`` (from :func:`rank_pixels`) and ``fill`` (from :func:`fill_image`) may be passed to share them
    between calls; otherwise they are computed here (the noise fill from a generator seeded with ``seed``).
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if tuple(saliency.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"saliency has shape {tuple(saliency.shape)}; accepted values: the image size "
                         f"{tuple(x.shape[-2:])}")
    if rank is None:
        rank = rank_pixels(saliency, ties, seed)
    if fill is None:
        fill = fill_image(x, saliency.to(x.device), scheme, K, torch.Generator().manual_seed(seed))
    ks = torch.as_tensor(ks, dtype=torch.long).flatten()
    m = rank.to(x.device)[None, None] < ks.to(x.device)[:, None, None, None]
    return torch.where(m, fill, x)


def mask_fraction(x: torch.Tensor, saliency: torch.Tensor, alpha: float | Sequence[float], scheme: str,
                  K: float = 100.0, ties: str = "stable", seed: int = 0) -> torch.Tensor:
    """Convenience: images with the top ⌊α·H·W⌋ pixels masked, one per α."""
    ks = n_masked(alpha, math.prod(x.shape[-2:]))
    return masked_images(x, saliency, ks, scheme, K, ties=ties, seed=seed)
