"""Cascading-randomisation sanity check (Adebayo et al. 2018; LEG's variant), appendix §9.

Layers are taken top-down from ``clf.layer_order``. At stage i the layers 1..i (output side first) are
re-initialised on a DEEP COPY of the classifier (the original is never touched):

* ``init="default"``: every sub-module's own ``reset_parameters()`` (PyTorch's analogue of the TF initialisers);
  batch-norm running statistics are kept unless ``reset_bn_stats=True`` (TF: not trainable, kept);
  ``init="uniform0.05"``: every weight and bias ~ U(−0.05, 0.05) (LEG's script).
* ``cascade="fresh"``: a fresh copy of the trained model per stage, all layers 1..i re-drawn (Adebayo);
  ``"cumulative"``: one copy, layer i randomised at stage i, earlier draws kept (LEG).
* ``target="rederive"``: explain the randomised model's own top-1 (both official codes); ``"original"``: the
  trained model's top-1.

Every draw is seeded (``seed``, stage, layer). Similarities to the original map (:func:`similarities`):
Spearman rank correlation of the |·| maps and of the signed maps (average ranks; Adebayo's p99 normalisations),
SSIM on min-max [0, 1] maps (``data_range=1``; 2 reproduces the notebook's implicit range), and the Spearman
correlation of HOG features.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..checks import check_bool, check_choice, check_image, check_int, check_range

__all__ = ["randomize_layers", "randomized_copy", "cascading_randomization", "similarities", "normalize_abs",
           "normalize_signed"]


def _seed_for(seed: int, stage: int, layer: int) -> int:
    return (int(seed) * 1_000_003 + stage * 1009 + layer + 0x5A17C0DE) % (2**63 - 1)  # offset: avoid seed 0


def randomize_layers(net: nn.Module, names: Sequence[str], init: str = "default", seed: int = 0, stage: int = 0,
                     reset_bn_stats: bool = False) -> None:
    """Re-initialise (in place) every parameter of the modules ``names`` of ``net``."""
    check_choice("init", init, ("default", "uniform0.05"))
    seed = check_int("seed", seed, 0)
    stage = check_int("stage", stage, 0)
    check_bool("reset_bn_stats", reset_bn_stats)
    modules = [_submodule(net, name) for name in _check_names(names)]
    for j, module in enumerate(modules):
        s = _seed_for(seed, stage, j)
        with torch.no_grad():
            if init == "uniform0.05":
                g = torch.Generator().manual_seed(s)
                for p in module.parameters():
                    p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 0.1 - 0.05)
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                for sub in module.modules():
                    if not hasattr(sub, "reset_parameters"):
                        continue
                    saved = None
                    if isinstance(sub, nn.modules.batchnorm._NormBase) and not reset_bn_stats \
                            and sub.track_running_stats:
                        saved = (sub.running_mean.clone(), sub.running_var.clone())
                    sub.reset_parameters()
                    if saved is not None:
                        sub.running_mean.copy_(saved[0])
                        sub.running_var.copy_(saved[1])


def _check_names(names: Any) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"layers={names!r} is not valid; accepted values: a list of module names (clf.layer_order)")
    return list(names)


def _submodule(net: nn.Module, name: Any) -> nn.Module:
    try:
        if not isinstance(name, str) or not name:
            raise AttributeError
        return net.get_submodule(name)
    except AttributeError:
        raise ValueError(f"layer={name!r} is not valid; accepted values: module names of clf.net such as "
                         "clf.layer_order") from None


def randomized_copy(clf, names: Sequence[str], init: str = "default", seed: int = 0, stage: int = 0,
                    reset_bn_stats: bool = False):
    """A deep copy of the classifier with ``names`` re-initialised (the original is untouched)."""
    new = copy.deepcopy(clf)
    randomize_layers(new.net, names, init, seed, stage, reset_bn_stats)
    new.weights_id = f"{clf.weights_id}-rand{init}-s{seed}-st{stage}-{len(names)}"
    return new


def cascading_randomization(clf, x: torch.Tensor, explainer_factory: Callable[[Any], Any],
                            layers: Sequence[str] | None = None, init: str = "default", cascade: str = "fresh",
                            target: str = "rederive", seed: int = 0, reset_bn_stats: bool = False,
                            ) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """Explain ``x`` with the trained model, then after randomising layers top-down (module docstring).

    ``explainer_factory(classifier) -> Explainer`` builds the method on each (copied) classifier, e.g.
    ``lambda c: get_explainer("leg_tv", c, n_samples=500)``. ``layers`` defaults to ``clf.layer_order``
    (a prefix or any subsequence of it may be passed to save time).
    Returns (stages, similarities): stages = [{"stage": "original" | layer name, "map", "target", "top1"}],
    similarities = tidy DataFrame (stage, index, metric, value) against the original map.
    """
    check_choice("cascade", cascade, ("fresh", "cumulative"))
    check_choice("target", target, ("rederive", "original"))
    check_choice("init", init, ("default", "uniform0.05"))
    seed = check_int("seed", seed, 0)
    check_bool("reset_bn_stats", reset_bn_stats)
    if not callable(explainer_factory):
        raise ValueError(f"explainer_factory={explainer_factory!r} is not valid; accepted values: a callable "
                         "classifier -> Explainer, e.g. lambda c: get_explainer('gradient', c)")
    check_image(x, "x", min_size=getattr(clf, "min_input_size", 1))
    if x.dim() == 3:
        x = x.unsqueeze(0)
    layers = _check_names(clf.layer_order if layers is None else layers)
    if not layers:
        raise ValueError("layers=[] is not valid; accepted values: module names of clf.net (clf.layer_order)")
    for name in layers:
        _submodule(clf.net, name)
    t0 = clf.top1(x)
    ex0 = explainer_factory(clf).explain(x, t0)
    stages = [{"stage": "original", "map": ex0.map, "target": t0, "top1": t0}]
    work = copy.deepcopy(clf) if cascade == "cumulative" else None
    for i, name in enumerate(layers, start=1):
        if cascade == "fresh":
            cur = randomized_copy(clf, layers[:i], init, seed, i, reset_bn_stats)
        else:
            randomize_layers(work.net, [name], init, seed, i, reset_bn_stats)
            cur = work
            cur.weights_id = f"{clf.weights_id}-cum{init}-s{seed}-{i}"
        top = cur.top1(x)
        tgt = top if target == "rederive" else t0
        ex = explainer_factory(cur).explain(x, tgt)
        stages.append({"stage": name, "map": ex.map, "target": tgt, "top1": top})
    rows = []
    for i, st in enumerate(stages):
        for metric, v in similarities(ex0.map, st["map"]).items():
            rows.append({"stage": st["stage"], "index": i, "metric": metric, "value": v})
    return stages, pd.DataFrame(rows)


def normalize_abs(m: np.ndarray) -> np.ndarray:
    """Adebayo's grayscale visualisation of a 2-D map: (|m| − min)/(p99 − min), clipped to [0, 1]."""
    a = np.abs(np.asarray(m, dtype=np.float64))
    lo, hi = a.min(), np.percentile(a, 99)
    return np.clip((a - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(a)


def normalize_signed(m: np.ndarray) -> np.ndarray:
    """Adebayo's diverging visualisation: m / |p99(m)|, clipped to [−1, 1]."""
    a = np.asarray(m, dtype=np.float64)
    span = abs(np.percentile(a, 99))
    return np.clip(a / span, -1, 1) if span > 0 else np.zeros_like(a)


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)  # average ranks for ties


def similarities(ref: torch.Tensor | np.ndarray, other: torch.Tensor | np.ndarray, ssim_data_range: float = 1.0,
                 hog_pixels_per_cell: int = 16) -> dict[str, float]:
    """Spearman (abs / signed), SSIM and HOG-feature Spearman between two 2-D maps (NaN for constant maps).

    HOG: 9 orientations, ``hog_pixels_per_cell`` (16, Adebayo) — shrunk for maps smaller than 48 px —, 3×3
    blocks, L2-Hys (scikit-image's default since 0.15).
    """
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    a = np.asarray(ref.detach().cpu() if isinstance(ref, torch.Tensor) else ref, dtype=np.float64)
    b = np.asarray(other.detach().cpu() if isinstance(other, torch.Tensor) else other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"maps have shapes {a.shape} and {b.shape}; accepted values: two (H, W) maps of one size")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("maps contain NaN or Inf; accepted values: two finite (H, W) maps")
    if min(a.shape) < 11:
        raise ValueError(f"maps have shape {a.shape}; accepted values: maps of at least 11×11 pixels (SSIM's Gaussian "
                         "window is 11 wide)")
    check_range("ssim_data_range", ssim_data_range, 0.0, low_inclusive=False)
    hog_pixels_per_cell = check_int("hog_pixels_per_cell", hog_pixels_per_cell, 1)
    na, nb = normalize_abs(a), normalize_abs(b)
    out = {"spearman_abs": _spearman(na, nb), "spearman_signed": _spearman(normalize_signed(a), normalize_signed(b))}
    ma, mb = _minmax(na), _minmax(nb)
    out["ssim"] = float(structural_similarity(ma, mb, gaussian_weights=True, data_range=ssim_data_range))
    ppc = max(1, min(hog_pixels_per_cell, min(a.shape) // 3))  # small maps: shrink cells so 3×3 blocks fit
    kw = dict(orientations=9, pixels_per_cell=(ppc, ppc), cells_per_block=(3, 3),
              block_norm="L2-Hys", feature_vector=True)
    out["hog"] = _spearman(hog(ma, **kw), hog(mb, **kw))
    return out
