"""Insertion / deletion curves and AUCs: the RISE-style and the iGOS++-style protocol (appendix §8).

The two published variants are incompatible; never compare numbers across presets.

``preset="rise"`` (Petsiuk et al. 2018, ``eclique/RISE:evaluation.py``)
    order the H×W map descending; every step changes ``step`` pixels (224 by default, hard edges).
    Deletion replaces them by 0 in normalised space (the mean colour); insertion starts from the 11×11 σ = 5
    blur (:func:`~saliency_core.perturbations.rise_blur`, zero padding) and copies them back from the image.
    Scores at i = 0..n (both ends), AUC = (Σ_i s_i − s_0/2 − s_n/2)/n (trapezoid on [0, 1]).

``preset="igospp"`` (Khorram et al. 2021, ``khorrams/IGOS_pp:methods_helper.py``)
    order the s×s grid (the mask resolution s, e.g. 224 / 28 / 7) descending in saliency (= ascending in the
    I-GOS mask); every step changes max(1, s²//50) cells; the binary keep-mask is upsampled bilinearly with
    ``align_corners=True`` and both curves compose the image with the 51×51 σ = 50 blur.
    AUC = Σ_k p_k·n_k/s² (right Riemann sum, start excluded). ``igospp_metric_bug=True`` reproduces the official
    precedence bug: the last chunk adds its cell count n_last instead of p_last·n_last (appendix §4.5.2).

Both score the softmax probability of the target (default: the clean top-1). Ties are broken by a stable sort on
(−score, index), i.e. row-major order among equal values, or ``ties="random"`` with a seeded permutation (§11).
All images of one curve are built and evaluated in chunks of ``batch_size`` (one batched forward per chunk).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..checks import check_bool, check_choice, check_image, check_int, check_target
from ..models import in_eval_mode
from ..perturbations import blur_baseline, rise_blur, upsample_mask
from .masking import saliency_order

__all__ = [
    "PRESETS",
    "InsDelResult",
    "saliency_order",
    "auc_trapezoid",
    "auc_right_riemann",
    "igospp_step",
    "insertion_deletion",
    "evaluate_insertion_deletion",
    "auc_from_curve",
]

PRESETS = ("rise", "igospp")
CURVES = ("deletion", "insertion")


@dataclass
class InsDelResult:
    """AUCs and the tidy curves of one image (``curves``: curve, step, fraction, score, n_changed, in_auc)."""

    auc: dict[str, float]
    curves: pd.DataFrame
    preset: str
    target: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def deletion(self) -> float:
        return self.auc.get("deletion", float("nan"))

    @property
    def insertion(self) -> float:
        return self.auc.get("insertion", float("nan"))


def _as_float_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.array(values, dtype=np.float64).ravel()


def auc_trapezoid(scores: Sequence[float] | np.ndarray | torch.Tensor) -> float:
    """RISE's normalised trapezoid: (Σ_i s_i − s_0/2 − s_n/2)/n for n + 1 equally spaced scores on [0, 1]."""
    a = _as_float_array(scores)
    if a.size < 2:
        raise ValueError(f"scores has {a.size} entries; accepted values: at least 2")
    return float((a.sum() - a[0] / 2 - a[-1] / 2) / (a.size - 1))


def auc_right_riemann(scores: Sequence[float], counts: Sequence[int], total: int, bug: bool = False) -> float:
    """iGOS++'s AUC: Σ_k p_k·n_k/total over the steps (start excluded).

    ``bug=True`` is the official precedence bug: the last step adds n_last instead of p_last·n_last.
    """
    p = _as_float_array(scores)
    n = np.asarray(counts, dtype=np.float64).ravel()
    if p.size != n.size or p.size == 0:
        raise ValueError(f"scores ({p.size}) and counts ({n.size}) must have the same non-zero length")
    contrib = p * n
    if bug:
        contrib[-1] = n[-1]
    return float(contrib.sum() / total)


def igospp_step(s: int) -> int:
    """Cells per step of the iGOS++ metric on an s×s grid: max(1, s²//50)."""
    return max(1, (s * s) // 50)


def auc_from_curve(curve: pd.DataFrame, preset: str, igospp_metric_bug: bool = False) -> float:
    """Recompute the AUC of ONE curve (rows of one image and curve, as returned in ``InsDelResult.curves``).

    Lets the same model evaluations give both the correct and the official (``igospp_metric_bug``) iGOS++ AUC.
    """
    check_choice("preset", preset, PRESETS)
    c = curve.sort_values("step")
    if preset == "rise":
        return auc_trapezoid(c.score.to_numpy())
    c = c[c.in_auc]
    total = int(c.n_changed.sum())
    return auc_right_riemann(c.score.to_numpy(), c.n_changed.to_numpy(), total, bug=igospp_metric_bug)


def _as_image(x: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """One image as (1, 3, H, W); refuses anything that is not a finite float image in [0, 1] (one line naming it)."""
    check_image(x, "image", min_size=min_size)
    return x.unsqueeze(0) if x.dim() == 3 else x


def _check_saliency(saliency: Any) -> torch.Tensor:
    """A finite, non-empty 2-D map (leading singleton dimensions allowed)."""
    if not isinstance(saliency, (torch.Tensor, np.ndarray)):
        raise ValueError(f"saliency is a {type(saliency).__name__}; accepted values: an (H, W) tensor or array")
    sal = torch.as_tensor(saliency)
    while sal.dim() > 2 and sal.shape[0] == 1:
        sal = sal[0]
    if sal.dim() != 2 or sal.numel() == 0 or sal.dtype == torch.bool or sal.is_complex():
        raise ValueError(f"saliency has shape {tuple(sal.shape)} and dtype {sal.dtype}; accepted values: a real "
                         "(H, W) map")
    if not bool(torch.isfinite(sal.float()).all()):
        raise ValueError("saliency contains NaN or Inf; accepted values: finite numbers")
    return sal


def _grid_saliency(sal: torch.Tensor, s: int) -> torch.Tensor:
    """Saliency on the s×s grid: as is when already s×s, else the mean over each cell (adaptive average pool)."""
    sal = torch.as_tensor(sal).detach().float().cpu()
    while sal.dim() > 2:
        sal = sal[0]
    if tuple(sal.shape) == (s, s):
        return sal
    if sal.shape[0] < s or sal.shape[1] < s:
        return F.interpolate(sal[None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0]
    return F.adaptive_avg_pool2d(sal[None, None], (s, s))[0, 0]


def _pixel_saliency(sal: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    sal = torch.as_tensor(sal).detach().float().cpu()
    while sal.dim() > 2:
        sal = sal[0]
    if tuple(sal.shape) == tuple(hw):
        return sal
    return F.interpolate(sal[None, None], size=hw, mode="bilinear", align_corners=False)[0, 0]


@torch.no_grad()
@in_eval_mode
def insertion_deletion(
    clf,
    image: torch.Tensor,
    saliency: torch.Tensor,
    target: int | None = None,
    preset: str = "rise",
    *,
    step: int | None = None,
    grid: int | None = None,
    curves: Sequence[str] = CURVES,
    igospp_metric_bug: bool = False,
    ties: str = "stable",
    seed: int = 0,
    batch_size: int = 64,
) -> InsDelResult:
    """Deletion and insertion curves and AUCs of one image.

    Parameters
    ----------
    clf : Classifier
    image : (3, H, W) or (1, 3, H, W) tensor in [0, 1]
    saliency : 2-D tensor, higher = more relevant. RISE preset: resized bilinearly to H×W when smaller.
        iGOS++ preset: the s×s grid (``grid``, default the saliency's own side); a larger map is average-pooled
        to s×s (pass I-GOS masks as 1 − M directly).
    target : int, optional
        Class scored (softmax probability); default the clean top-1.
    preset : {"rise", "igospp"}
    step : int, optional
        Pixels (RISE, default 224) or cells (iGOS++, default max(1, s²//50)) changed per step.
    grid : int, optional
        iGOS++ grid side s (224 / 28 / 7).
    curves : subset of ("deletion", "insertion")
    igospp_metric_bug : bool
        Reproduce the official iGOS++ precedence bug in the AUC (iGOS++ preset only).
    ties : {"stable", "random"}, seed : int
        Tie rule (appendix §11).
    batch_size : int
        Images per batched forward.
    """
    check_choice("preset", preset, PRESETS)
    if isinstance(curves, str) or not isinstance(curves, (list, tuple)) or not curves:
        raise ValueError(f"curves={curves!r} is not valid; accepted values: a non-empty list or tuple of "
                         f"{', '.join(map(repr, CURVES))}")
    for c in curves:
        check_choice("curves", c, CURVES)
    check_bool("igospp_metric_bug", igospp_metric_bug)
    if igospp_metric_bug and preset != "igospp":
        raise ValueError("igospp_metric_bug=True is not valid with preset='rise'; accepted values: False")
    check_choice("ties", ties, ("stable", "random"))
    seed = check_int("seed", seed, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    x = _as_image(image, getattr(clf, "min_input_size", 1)).to(clf.device, torch.float32)
    saliency = _check_saliency(saliency)
    h, w = x.shape[-2:]
    if step is not None:
        step = check_int("step", step, 1, (h * w) if preset == "rise" else None)
    if grid is not None:
        grid = check_int("grid", grid, 1, min(h, w))
    z = clf.normalize(x)
    if target is None:
        target = int(clf.logits(x).argmax(1)[0])
    target = check_target(target, clf.num_classes)

    def probs(batch: torch.Tensor) -> torch.Tensor:
        return clf.net(batch).softmax(1)[:, target].float().cpu()

    rows: list[dict] = []
    auc: dict[str, float] = {}
    if preset == "rise":
        if step is None:
            step = 224
        total = h * w
        order = saliency_order(_pixel_saliency(saliency, (h, w)), ties, seed).to(z.device)
        rank = torch.empty(total, dtype=torch.long, device=z.device)
        rank[order] = torch.arange(total, device=z.device)
        n = math.ceil(total / step)
        counts = torch.clamp(torch.arange(n + 1, device=z.device) * step, max=total)
        substrates = {"deletion": (z, torch.zeros_like(z)), "insertion": (rise_blur(z), z)}
        for curve in curves:
            start, end = substrates[curve]
            scores = []
            for i in range(0, n + 1, batch_size):
                k = counts[i : i + batch_size]
                changed = (rank[None, :] < k[:, None]).view(-1, 1, h, w)
                scores.append(probs(torch.where(changed, end, start)))
            sc = torch.cat(scores)
            auc[curve] = auc_trapezoid(sc)
            for i in range(n + 1):
                rows.append({"curve": curve, "step": i, "fraction": float(counts[i]) / total, "score": float(sc[i]),
                             "n_changed": int(counts[i]) - (int(counts[i - 1]) if i else 0), "in_auc": True})
        settings = {"preset": preset, "step": step, "ties": ties}
    else:
        sal = torch.as_tensor(saliency)
        s = grid if grid is not None else int(sal.shape[-1])
        if s > min(h, w):
            raise ValueError(f"grid={grid!r} is not valid for a {h}x{w} image (the default grid is the saliency's "
                             f"side, {s}); accepted values: an int in [1, {min(h, w)}]")
        cells = s * s
        if step is None:
            step = igospp_step(s)
        step = check_int("step", step, 1, cells)
        order = saliency_order(_grid_saliency(sal, s), ties, seed).to(z.device)
        rank = torch.empty(cells, dtype=torch.long, device=z.device)
        rank[order] = torch.arange(cells, device=z.device)
        n = math.ceil(cells / step)
        counts = torch.clamp(torch.arange(n + 1, device=z.device) * step, max=cells)
        zb = clf.normalize(blur_baseline(x, 51, 50.0))
        for curve in curves:
            scores = []
            for i in range(0, n + 1, batch_size):
                k = counts[i : i + batch_size]
                hit = (rank[None, :] < k[:, None]).float().view(-1, 1, s, s)
                keep = 1.0 - hit if curve == "deletion" else hit
                up = upsample_mask(keep, (h, w), align_corners=True)
                scores.append(probs(z * up + zb * (1.0 - up)))
            sc = torch.cat(scores)
            n_k = (counts[1:] - counts[:-1]).cpu()
            auc[curve] = auc_right_riemann(sc[1:], n_k.tolist(), cells, bug=igospp_metric_bug)
            for i in range(n + 1):
                rows.append({"curve": curve, "step": i, "fraction": float(counts[i]) / cells, "score": float(sc[i]),
                             "n_changed": int(n_k[i - 1]) if i else 0, "in_auc": i > 0})
        settings = {"preset": preset, "step": step, "grid": s, "ties": ties, "igospp_metric_bug": igospp_metric_bug}
    return InsDelResult(auc=auc, curves=pd.DataFrame(rows), preset=preset, target=target, settings=settings)


def evaluate_insertion_deletion(
    clf,
    images: torch.Tensor,
    saliencies: Sequence[torch.Tensor],
    targets: Sequence[int | None] | None = None,
    preset: str = "rise",
    *,
    ids: Sequence[str] | None = None,
    method: str | None = None,
    **kwargs: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run :func:`insertion_deletion` over images; returns tidy ``(aucs, curves)`` DataFrames.

    ``aucs``: one row per image and curve (image, method, preset, grid, curve, auc, target);
    ``curves``: the per-step rows with the same identifying columns.
    """
    check_image(images, "images", min_size=getattr(clf, "min_input_size", 1), batch=True)
    n = images.shape[0]
    if len(saliencies) != n:
        raise ValueError(f"saliencies has {len(saliencies)} entries; accepted values: {n} (one per image)")
    targets = list(targets) if targets is not None else [None] * n
    ids = list(ids) if ids is not None else [str(i) for i in range(n)]
    if len(targets) != n or len(ids) != n:
        raise ValueError(f"targets has {len(targets)} and ids {len(ids)} entries; accepted values: {n} (one per "
                         "image)")
    auc_rows, curve_frames = [], []
    for i in range(n):
        res = insertion_deletion(clf, images[i : i + 1], saliencies[i], targets[i], preset, **kwargs)
        ident = {"image": ids[i], "method": method, "preset": preset, "grid": res.settings.get("grid")}
        for curve, val in res.auc.items():
            auc_rows.append({**ident, "curve": curve, "auc": val, "target": res.target})
        cf = res.curves.copy()
        for k, v in ident.items():
            cf[k] = v
        curve_frames.append(cf)
    return pd.DataFrame(auc_rows), pd.concat(curve_frames, ignore_index=True)
