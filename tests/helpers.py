"""Tiny networks and fast settings shared by the contract, bad-input and model tests.

Nothing here is a fixture: tests call :func:`tiny_classifier` / :func:`fast_explainer` directly, so the same
builders serve the table-driven tests and ``benchmarks/models_smoke.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: hyper-parameters that make every registered explainer finish in well under a second on a 32×32 tiny network
FAST_SETTINGS: dict[str, dict[str, Any]] = {
    "cshapley": {"cell": 8, "max_order": 1},
    "deeplift": {},
    "extremal_perturbation": {"iterations": 2, "step": 4, "sigma": 8.0, "levels": 3, "max_blur": 4.0},
    "gradcam": {},
    "gradient": {},
    "guided_backprop": {},
    "igos": {"size": 4, "iterations": 1, "ig_steps": 2, "batch_size": 4},
    "igos_pp": {"size": 4, "iterations": 1, "ig_steps": 2, "batch_size": 4},
    "integrated_gradients": {"n_steps": 3},
    "invariant_lp": {"patch": 8, "classes": 2},
    "invariant_lp_smooth": {"patch": 8, "classes": 2, "smooth_points": 1},
    "invariant_stochastic": {"n_draws": 2, "iterations": 2},
    "kernel_shap": {"n_samples": 16, "n_segments": 4},
    "leg": {"n_samples": 8, "grid": 4},
    "leg_tv": {"n_samples": 8, "grid": 4},
    "lime": {"n_samples": 16, "n_segments": 4, "superpixels": "slic"},
    "lrp": {},
    "mask": {"iterations": 2, "mask_size": 4, "blur_sigma": 2.0},
    "occlusion": {"window": (3, 8, 8)},
    "rise": {"n_masks": 8, "cells": 4, "batch_size": 4},
    "rise_torchray": {"n_masks": 8, "cells": 4, "batch_size": 4},
    "smoothgrad": {"n_samples": 2},
}

#: the hyper-parameter that sets each method's budget (model evaluations or optimisation steps)
BUDGET_PARAM: dict[str, str] = {
    "cshapley": "max_order",
    "extremal_perturbation": "iterations",
    "igos": "iterations",
    "igos_pp": "iterations",
    "integrated_gradients": "n_steps",
    "invariant_lp_smooth": "smooth_points",
    "invariant_stochastic": "iterations",
    "kernel_shap": "n_samples",
    "leg": "n_samples",
    "leg_tv": "n_samples",
    "lime": "n_samples",
    "mask": "iterations",
    "rise": "n_masks",
    "rise_torchray": "n_masks",
    "smoothgrad": "n_samples",
}


class TinyConvNet(nn.Module):
    """conv–BN–ReLU–conv–BN–ReLU–global pool–dropout–linear on normalised input; any input size ≥ 1 px.

    BatchNorm and Dropout make train mode visibly different from eval mode (the "model left as it was" tests).
    """

    def __init__(self, n_classes: int = 5, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(width, n_classes)
        self.n_classes = n_classes
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            for bn in (self.bn1, self.bn2):  # non-trivial running statistics: train-mode BN visibly differs
                bn.running_mean.copy_(torch.randn(width, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(width, generator=g) + 0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.bn1(self.conv1(z)))
        h = self.relu2(self.bn2(self.conv2(h)))
        return self.fc(self.drop(torch.flatten(self.pool(h), 1)))


def tiny_classifier(size: int = 32, n_classes: int = 5, seed: int = 0, canonical: bool = True,
                    min_input_size: int = 1, train: bool = False):
    """:class:`TinyConvNet` wrapped as a Classifier (ImageNet normalisation, ``size``² crops, Grad-CAM on relu2);
    ``train=True`` leaves the network in train mode (BatchNorm batch statistics, Dropout active)."""
    from saliency_core.models import Classifier, Preprocessing

    prep = Preprocessing(resize=size, crop=size)
    clf = Classifier.from_module(TinyConvNet(n_classes, seed=seed), preprocess=prep,
                                 class_names=[f"class{i}" for i in range(n_classes)], name="tiny",
                                 gradcam_layer="relu2", canonical=canonical, min_input_size=min_input_size)
    if train:
        clf.net.train()
    return clf


#: the registered explainers (imported lazily so that collecting tests stays cheap)
def explainer_names() -> list[str]:
    from saliency_core.methods import available_explainers

    return available_explainers()


def hook_count(module: nn.Module) -> int:
    """Forward / backward / pre hooks on every sub-module, plus PyTorch's global module hooks."""
    import torch.nn.modules.module as mm

    n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            + len(getattr(m, "_backward_pre_hooks", {})) for m in module.modules())
    glob = sum(len(getattr(mm, k, {})) for k in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                    "_global_backward_hooks", "_global_backward_pre_hooks"))
    return n + glob


def tiny_image(size: int = 32, seed: int = 0) -> torch.Tensor:
    """A seeded (3, size, size) float image in [0, 1]."""
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def fast_explainer(name: str, clf, **overrides: Any):
    """``get_explainer(name, clf, **FAST_SETTINGS[name], **overrides)``."""
    from saliency_core.methods import get_explainer

    return get_explainer(name, clf, **{**FAST_SETTINGS.get(name, {}), **overrides})
