"""Pixel-flip curve of Ikeno & Hara (2018), Figure 1 (appendix §6).

For each threshold τ, the pixels whose score lies below the τ-quantile of the map are replaced by a constant
``fill`` (gray 0.5 by default; 0 and 1 are the paper's footnote options) in all channels, in [0, 1] RGB before the
model's normalisation, and we record whether the top-1 class changes. The curve is the fraction of images whose
top-1 changed against τ (lower is better), with a 95 % Clopper-Pearson interval.

**Selection and tie rule** (appendix §11). Pixels are ranked by a stable sort on (−score, row-major index);
the ⌊τ·HW⌋ lowest-ranked pixels are flipped, i.e. the pixels with score strictly below the τ-quantile, and, among
pixels tied at the threshold, those with the *larger* row-major index first. The flipped sets are nested in τ,
exactly ⌊τ·HW⌋ pixels are flipped even on plateaus (the LP map is constant on 8×8 blocks), and for a map with
distinct values this is the "strict <" rule with the quantile taken as the ⌊τ·HW⌋-th smallest value.

``ties="random"`` orders tied pixels by a seeded permutation instead (the same strict-< set, a random subset of
the pixels tied at the threshold); :func:`pixel_flip_curve` averages ``tie_draws`` such orders (seeds
``seed``, ``seed`` + 1, ...). Maps with large plateaus (LP maps: a handful of distinct values, often most pixels
tied at the minimum) depend on the tie order; the random-tie average removes the row-major bias.

**Channel reduction.** Maps are the (H, W) maps of the explanations; each method reduces its channels as its
paper does (stochastic: −mean_c w; LP: 2δ − mean_c(u + v); gradient family in this chapter: mean_c |A_c|, the
PertMap demo's "Grad" reduction; occlusion: the signed output drop, identical over channels).

All τ of one image are evaluated in one batched forward pass (chunked by ``batch_size``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..checks import check_choice, check_image, check_int, check_range, check_target
from .masking import saliency_order

__all__ = ["DEFAULT_TAUS", "flip_order", "flip_images", "pixel_flip", "pixel_flip_curve", "area_under_curve",
           "binomial_ci"]

#: appendix §6 default grid: 0, 0.05, ..., 0.95
DEFAULT_TAUS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))


def _check_taus(taus: Sequence[float]) -> list[float]:
    taus = [float(t) for t in taus]
    if not taus:
        raise ValueError("taus=[] is not valid; accepted values: a non-empty list of numbers in [0, 1]")
    for t in taus:
        check_range("tau", t, 0.0, 1.0)
    return taus


def flip_order(score: torch.Tensor, ties: str = "stable", seed: int = 0) -> torch.Tensor:
    """Row-major pixel indices from least to most relevant: the reverse of a stable sort on (−score, index)
    (``ties="random"``: tied pixels in the order of a permutation seeded with ``seed``)."""
    if score.dim() != 2:
        raise ValueError(f"score has shape {tuple(score.shape)}; accepted values: an (H, W) map")
    return saliency_order(score, ties, seed).flip(0)  # most relevant first, reversed


def flip_images(x: torch.Tensor, score: torch.Tensor, taus: Sequence[float] = DEFAULT_TAUS,
                fill: float = 0.5, ties: str = "stable", seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """The flipped images ``(len(taus), 3, H, W)`` of one image ``x`` and the number of pixels flipped per τ."""
    taus = _check_taus(taus)
    check_range("fill", fill, 0.0, 1.0)
    check_image(x, "x")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"x has shape {tuple(x.shape)}; accepted values: (3, H, W) or (1, 3, H, W)")
        x = x[0]
    if x.dim() != 3 or tuple(score.shape) != tuple(x.shape[-2:]):
        raise ValueError(f"score has shape {tuple(score.shape)} but x has shape {tuple(x.shape)}; accepted values: "
                         "an (H, W) map matching the image")
    hw = score.numel()
    order = flip_order(score, ties, seed)
    rank = torch.empty(hw, dtype=torch.long)
    rank[order] = torch.arange(hw)  # 0 = first pixel to flip
    counts = [int(np.floor(t * hw + 1e-9)) for t in taus]
    masks = rank.unsqueeze(0) < torch.tensor(counts).unsqueeze(1)  # (T, HW), True = flip
    masks = masks.view(len(taus), 1, *score.shape).to(x.device)
    xs = torch.where(masks, torch.full_like(x, fill).unsqueeze(0), x.unsqueeze(0))
    return xs, counts


def pixel_flip(model, x: torch.Tensor, score: torch.Tensor, taus: Sequence[float] = DEFAULT_TAUS,
               fill: float = 0.5, target: int | None = None, batch_size: int = 32, ties: str = "stable",
               seed: int = 0) -> pd.DataFrame:
    """Top-1 change per τ for one image: DataFrame with ``tau, n_flipped, fraction_flipped, target, top1, changed``.

    ``target`` defaults to the clean top-1 (the class the map explains); ``ties``/``seed``: see :func:`flip_order`.
    """
    check_image(x, "x", min_size=getattr(model, "min_input_size", 1))
    if target is None:
        target = model.top1(x if x.dim() == 4 else x.unsqueeze(0))
    target = check_target(target, model.num_classes)
    batch_size = check_int("batch_size", batch_size, 1)
    xs, counts = flip_images(x, score, taus, fill, ties, seed)
    top = model.logits(xs, batch_size=batch_size).argmax(1).cpu()
    hw = score.numel()
    return pd.DataFrame({
        "tau": [float(t) for t in taus],
        "n_flipped": counts,
        "fraction_flipped": [c / hw for c in counts],
        "target": int(target),
        "top1": top.numpy().astype(int),
        "changed": (top != int(target)).numpy(),
    })


def pixel_flip_curve(model, images: torch.Tensor, maps: dict[str, Iterable[torch.Tensor]],
                     taus: Sequence[float] = DEFAULT_TAUS, fill: float = 0.5, targets: Sequence[int] | None = None,
                     image_ids: Sequence[str] | None = None, batch_size: int = 32, ties: str = "stable",
                     tie_draws: int = 1, seed: int = 0) -> pd.DataFrame:
    """Tidy per-(method, image, τ) results for ``images`` (N, 3, H, W) and ``maps`` {method: N maps (H, W)}.

    Columns: ``method, image, tie_draw, tau, n_flipped, fraction_flipped, target, top1, changed``. With
    ``ties="random"`` every image is flipped ``tie_draws`` times, tie order r seeded with ``seed + r``
    (``tie_draws`` is ignored for the deterministic ``"stable"`` order). Summarise with :func:`summarize`.
    """
    check_choice("ties", ties, ("stable", "random"))
    draws = check_int("tie_draws", tie_draws, 1) if ties == "random" else 1
    check_image(images, "images", min_size=getattr(model, "min_input_size", 1), batch=True)
    n = images.shape[0]
    ids = list(image_ids) if image_ids is not None else [str(i) for i in range(n)]
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries; accepted values: {n} ids (one per image)")
    if targets is None:
        targets = model.logits(images, batch_size=batch_size).argmax(1).tolist()
    frames = []
    for method, ms in maps.items():
        ms = list(ms)
        if len(ms) != n:
            raise ValueError(f"maps[{method!r}] has {len(ms)} maps; accepted values: {n} maps (one per image)")
        for i in range(n):
            for r in range(draws):
                df = pixel_flip(model, images[i], ms[i], taus, fill, int(targets[i]), batch_size, ties, seed + r)
                df.insert(0, "tie_draw", r)
                df.insert(0, "image", ids[i])
                df.insert(0, "method", method)
                frames.append(df)
    return pd.concat(frames, ignore_index=True)


def binomial_ci(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson (exact) interval for k successes out of n."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    a = (1 - level) / 2
    lo = np.where(k > 0, beta.ppf(a, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - a, k + 1, n - k), 1.0)
    return lo, hi


def summarize(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Curve per method: ``method, tau, n_images, n_changed, fraction_changed, ci_low, ci_high``.

    With several tie draws per image (``tie_draw`` column) the fraction is averaged over images and draws,
    ``n_changed`` is the mean count over draws (not an integer) and the binomial interval is not defined (NaN).
    """
    draws = int(df["tie_draw"].nunique()) if "tie_draw" in df else 1
    g = df.groupby(["method", "tau"], sort=False)["changed"].agg(["sum", "count"]).reset_index()
    g = g.rename(columns={"sum": "n_changed", "count": "n_images"})
    g["n_images"] = g["n_images"] // draws
    g["fraction_changed"] = g["n_changed"] / (g["n_images"] * draws)
    if draws == 1:
        g["n_changed"] = g["n_changed"].astype(int)
        g["ci_low"], g["ci_high"] = binomial_ci(g["n_changed"].to_numpy(), g["n_images"].to_numpy(), level)
    else:
        g["n_changed"] = g["n_changed"] / draws
        g["ci_low"], g["ci_high"] = np.nan, np.nan
    return g[["method", "tau", "n_images", "n_changed", "fraction_changed", "ci_low", "ci_high"]]


def area_under_curve(x: Sequence[float], y: Sequence[float]) -> float:
    """Trapezoidal area Σ_k (x_{k+1} − x_k)(y_k + y_{k+1})/2 over the sorted x grid (explicit, no np.trapz)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x and y have shapes {x.shape} and {y.shape}; accepted values: equal 1-D shapes, >= 2 points")
    o = np.argsort(x, kind="stable")
    x, y = x[o], y[o]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def auc_table(curve: pd.DataFrame) -> pd.DataFrame:
    """AUC of ``fraction_changed`` vs τ per method (from :func:`summarize`), sorted ascending (lower = better)."""
    rows = [{"method": m, "auc": area_under_curve(g["tau"], g["fraction_changed"])}
            for m, g in curve.groupby("method", sort=False)]
    return pd.DataFrame(rows).sort_values("auc", kind="stable").reset_index(drop=True)


__all__ += ["summarize", "auc_table"]
