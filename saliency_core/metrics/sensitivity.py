"""LEG's sensitivity protocols (appendix §7): log-odds-ratio (LOR) curves and the key masking size S_key.

Maskings are named ``"dist-K"`` (Distance-K, K in grey levels), ``"black"``, ``"white"``, ``"mean"`` (the official
mean colour truncated to an integer grey level), ``"mean_exact"``, ``"noise"``, ``"gray"`` (see
:mod:`saliency_core.metrics.masking`).

* **LOR** (``plots/IMAGENET_SEN_PLOT1.py``): p(α) = P(clean top-1 | masked image); probabilities are averaged over
  images FIRST, p̄(α), then LOR(α) = log[odds(p̄(α)) / odds(p̄(0))]. Noise masking averages ``noise_repeats`` = 2
  seeded draws per image.
* **S_key** (``table/keysizetable.py``): the first α on ``linspace(0, 1, 1000)`` whose masked image changes the
  top-1 class (1 when none does). The change need not be monotone in α, so the *first* change can only be
  certified by evaluating every earlier grid point. ``search="scan"`` (default, exact) does exactly that, in
  batches of geometrically growing size (8, 16, ... ``batch_size``) and stops at the first batch that contains
  a change: cost = index of the first change + the unused tail of the last batch, instead of 1000.
  ``search="bisect"`` (coarse grid of stride 32, then bisection inside the first changed interval) needs ~40
  evaluations but is exact only when the top-1 change is monotone in α; ``search="brute"`` evaluates all 1000.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..checks import check_choice, check_image, check_int, check_target
from .masking import fill_image, masked_images, n_masked, rank_pixels

__all__ = ["parse_masking", "lor_probabilities", "lor_from_probabilities", "s_key", "s_key_table"]


def parse_masking(name: str) -> tuple[str, float]:
    """``"dist-100"`` → ("distance", 100); ``"black"`` → ("black", 0) ..."""
    m = re.fullmatch(r"dist(?:ance)?-(\d+(?:\.\d+)?)", name)
    if m:
        return "distance", float(m.group(1))
    check_choice("masking", name, ("dist-K", "black", "white", "mean", "mean_exact", "noise", "gray"))
    return name, 0.0


def _probs(clf, xb: torch.Tensor, target: int, batch_size: int) -> torch.Tensor:
    return clf.logits(xb, batch_size=batch_size).double().softmax(1)[:, target].cpu()


def lor_probabilities(clf, images: torch.Tensor, maps: Mapping[str, Sequence[torch.Tensor]],
                      maskings: Sequence[str] = ("dist-50", "dist-255", "mean", "noise"),
                      alphas: Sequence[float] | None = None, targets: Sequence[int] | None = None,
                      noise_repeats: int = 2, seed: int = 0, ties: str = "stable",
                      batch_size: int = 64) -> pd.DataFrame:
    """Per-image probabilities of the clean top-1 under masking: tidy rows (method, masking, image, alpha, prob).

    ``maps[method][i]`` is the ``(H, W)`` saliency of ``images[i]``; ``alphas`` default ``linspace(0, 0.4, 10)``.
    """
    check_image(images, "images", min_size=getattr(clf, "min_input_size", 1), batch=True)
    noise_repeats = check_int("noise_repeats", noise_repeats, 1, 10_000)
    alphas = np.linspace(0, 0.4, 10) if alphas is None else np.asarray(alphas, dtype=float)
    n, hw = images.shape[0], math.prod(images.shape[-2:])
    if targets is None:
        targets = clf.logits(images, batch_size=batch_size).argmax(1).tolist()
    ks = n_masked(alphas, hw)
    rows: list[dict[str, Any]] = []
    for method, mlist in maps.items():
        if len(mlist) != n:
            raise ValueError(f"maps[{method!r}] has {len(mlist)} maps; accepted values: one per image ({n})")
        for i in range(n):
            x = images[i : i + 1]
            sal = torch.as_tensor(mlist[i]).to(torch.float32)
            rank = rank_pixels(sal, ties, seed)
            for masking in maskings:
                scheme, K = parse_masking(masking)
                reps = noise_repeats if scheme == "noise" else 1
                p = torch.zeros(len(ks), dtype=torch.float64)
                for r in range(reps):
                    fill = fill_image(x, sal, scheme, K, torch.Generator().manual_seed(seed * 1000 + r))
                    p += _probs(clf, masked_images(x, sal, ks, scheme, K, rank=rank, fill=fill), targets[i],
                                batch_size)
                p /= reps
                rows += [{"method": method, "masking": masking, "image": i, "alpha": float(a), "prob": float(v)}
                         for a, v in zip(alphas, p.tolist())]
    return pd.DataFrame(rows)


def lor_from_probabilities(df: pd.DataFrame, eps: float = 1e-12) -> pd.DataFrame:
    """Average probabilities over images per (method, masking, alpha), then LOR against the smallest α."""
    g = df.groupby(["method", "masking", "alpha"], as_index=False)["prob"].mean()
    g = g.sort_values(["method", "masking", "alpha"]).reset_index(drop=True)
    p = g["prob"].clip(eps, 1 - eps)
    odds = np.log(p / (1 - p))
    base = odds.groupby([g["method"], g["masking"]]).transform("first")
    g["lor"] = odds - base
    return g


def s_key(clf, x: torch.Tensor, saliency: torch.Tensor, masking: str = "dist-100", target: int | None = None,
          n_grid: int = 1000, search: str = "scan", batch_size: int = 64, first_batch: int = 8,
          ties: str = "stable", seed: int = 0) -> dict[str, Any]:
    """Key masking size of one image: first α on ``linspace(0, 1, n_grid)`` changing the top-1 (else 1).

    Returns dict(s_key, index (None when no change), n_evals, search). ``target`` is the clean top-1 (default).
    """
    check_choice("search", search, ("scan", "bisect", "brute"))
    check_image(x, "x", min_size=getattr(clf, "min_input_size", 1))
    n_grid = check_int("n_grid", n_grid, 2, 1_000_000)
    batch_size = check_int("batch_size", batch_size, 1)
    first_batch = check_int("first_batch", first_batch, 1)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if target is None:
        target = clf.top1(x)
    target = check_target(target, clf.num_classes)
    scheme, K = parse_masking(masking)
    sal = torch.as_tensor(saliency).to(torch.float32)
    rank = rank_pixels(sal, ties, seed)
    fill = fill_image(x, sal, scheme, K, torch.Generator().manual_seed(seed))
    alphas = np.linspace(0, 1, n_grid)
    ks = n_masked(alphas, math.prod(x.shape[-2:]))
    n_evals = 0
    cache: dict[int, bool] = {}

    def changed(idx: Sequence[int]) -> list[bool]:
        nonlocal n_evals
        todo = [i for i in idx if i not in cache and int(ks[i]) > 0]
        for i in idx:
            if int(ks[i]) == 0:
                cache[i] = False  # nothing masked: the clean image
        if todo:
            imgs = masked_images(x, sal, ks[todo], scheme, K, rank=rank, fill=fill)
            top = clf.logits(imgs, batch_size=batch_size).argmax(1).tolist()
            n_evals += len(todo)
            for i, t in zip(todo, top):
                cache[i] = t != target
        return [cache[i] for i in idx]

    first: int | None = None
    if search == "brute":
        flags = changed(list(range(n_grid)))
        first = next((i for i, f in enumerate(flags) if f), None)
    elif search == "scan":
        i, size = 0, first_batch
        while i < n_grid and first is None:
            idx = list(range(i, min(i + size, n_grid)))
            flags = changed(idx)
            first = next((j for j, f in zip(idx, flags) if f), None)
            i += size
            size = min(2 * size, batch_size)
    else:
        stride = 32
        coarse = sorted(set(range(stride, n_grid, stride)) | {n_grid - 1})
        flags = changed(coarse)
        hit = next((j for j, f in zip(coarse, flags) if f), None)
        if hit is not None:
            pos = coarse.index(hit)
            lo, hi = (coarse[pos - 1] if pos > 0 else 0), hit  # lo unchanged (assumed), hi changed
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if changed([mid])[0]:
                    hi = mid
                else:
                    lo = mid
            first = hi
    return {"s_key": float(alphas[first]) if first is not None else 1.0, "index": first, "n_evals": n_evals,
            "search": search}


def s_key_table(clf, images: torch.Tensor, maps: Mapping[str, Sequence[torch.Tensor]],
                maskings: Sequence[str] = ("dist-100", "black", "white", "mean", "noise"),
                targets: Sequence[int] | None = None, **kw: Any) -> pd.DataFrame:
    """Tidy S_key rows (method, masking, image, s_key, n_evals) for every image, method and masking."""
    check_image(images, "images", min_size=getattr(clf, "min_input_size", 1), batch=True)
    n = images.shape[0]
    if targets is None:
        targets = clf.logits(images).argmax(1).tolist()
    rows = []
    for method, mlist in maps.items():
        for i in range(n):
            for masking in maskings:
                r = s_key(clf, images[i : i + 1], mlist[i], masking, targets[i], **kw)
                rows.append({"method": method, "masking": masking, "image": i, "s_key": r["s_key"],
                             "n_evals": r["n_evals"]})
    return pd.DataFrame(rows)
