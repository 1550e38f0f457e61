"""Invariance of a perturbation box: the worst-case search against the exact worst case of a linear model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import LinearNet, make_classifier
from torch import nn

from saliency_core.explanation import Explanation
from saliency_core.metrics.invariance import (
    box_from_explanation,
    box_half_width,
    invariance_rate,
    scale_box,
    worst_case_invariance,
)

SIZE = 16


def _setup(n_classes=4, seed=0):
    clf = make_classifier(LinearNet(size=SIZE, n_classes=n_classes, seed=seed), size=SIZE)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return clf, x


def _exact_worst_margin(clf, x, c, lower, upper):
    """min over the box of f_c − max_{j≠c} f_j for logits W·z + b (identity normalisation), from the formula:
    min_r min_j (f_c − f_j)(x + r) = min_j [ (f_c − f_j)(x) + Σ_i min(h_ji·lower_i, h_ji·upper_i) ], h_j = W_c − W_j."""
    W = clf.net.fc.weight.detach().double()
    b = clf.net.fc.bias.detach().double()
    z = W @ x.double().flatten() + b
    lo, hi = lower.double().flatten(), upper.double().flatten()
    best = np.inf
    for j in range(W.shape[0]):
        if j == c:
            continue
        h = W[c] - W[j]
        best = min(best, float(z[c] - z[j] + torch.minimum(h * lo, h * hi).sum()))
    return best


@pytest.mark.parametrize("half", [0.02, 0.2, 0.6])
def test_linear_model_worst_case_equals_the_exact_formula(half):
    clf, x = _setup()
    c = clf.top1(x)
    g = torch.Generator().manual_seed(1)
    upper = torch.rand(3, SIZE, SIZE, generator=g) * 2 * half
    lower = -torch.rand(3, SIZE, SIZE, generator=g) * 2 * half
    res = worst_case_invariance(clf, x, c, lower, upper, k=3, iterations=5)
    exact = _exact_worst_margin(clf, x, c, lower, upper)
    assert res["min_margin"] == pytest.approx(exact, abs=1e-4)
    assert res["violated"] == (exact < 0)
    assert res["min_margin"] <= float(res["corner_margins"].min()) + 1e-6
    assert res["n_forward"] == 1 + 3 + 3 * 6 and res["n_backward"] == 3 + 3 * 5


def test_uniform_draws_miss_what_the_worst_corner_finds():
    """In d = 768 dimensions the worst corner moves the margin by δ‖h‖₁, uniform draws by about δ‖h‖₂."""
    clf, x = _setup(n_classes=2, seed=3)
    c = clf.top1(x)
    W = clf.net.fc.weight.detach().double()
    z = W @ x.double().flatten() + clf.net.fc.bias.detach().double()
    h = W[c] - W[1 - c]
    margin = float(z[c] - z[1 - c])
    delta = 1.5 * margin / float(h.abs().sum())  # the worst corner of [−δ, δ]^d flips the class ...
    assert delta * float(h.norm()) * 3 < margin  # ... while 3 standard deviations of a uniform draw do not
    lo, hi = torch.full((3, SIZE, SIZE), -delta), torch.full((3, SIZE, SIZE), delta)
    assert invariance_rate(clf, x, c, lo, hi, n_samples=500, seed=0) == 1.0
    res = worst_case_invariance(clf, x, c, lo, hi, k=1, iterations=0)
    assert res["violated"] and res["flipped_to"] != c
    assert res["min_margin"] == pytest.approx(margin - delta * float(h.abs().sum()), rel=1e-4)


class Bumpy(nn.Module):
    """Non-linear 3-class model: logits from a tanh layer, so corners are not always the worst points."""

    n_classes = 3

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Linear(3 * 8 * 8, 16)
        self.b = nn.Linear(16, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, z):
        return self.b(torch.tanh(self.a(z.flatten(1))))


def test_search_on_a_nonlinear_model_is_monotone_and_consistent():
    clf = make_classifier(Bumpy(), size=8)
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    c = clf.top1(x)
    fp = clf.state_fingerprint()
    lo, hi = torch.full((3, 8, 8), -0.3), torch.full((3, 8, 8), 0.3)
    res = worst_case_invariance(clf, x, c, lo, hi, k=2, iterations=15)
    assert clf.state_fingerprint() == fp
    assert all(b <= a + 1e-9 for a, b in zip(res["history"], res["history"][1:]))
    assert res["violated"] == (res["flipped_to"] != c) == (res["min_margin"] < 0)
    assert res["min_margin"] <= float(res["corner_margins"].min()) + 1e-6
    # a box of size 0 is trivially invariant: the margin found is the clean margin
    zero = worst_case_invariance(clf, x, c, lo * 0, hi * 0, k=2, iterations=3)
    assert not zero["violated"] and zero["min_margin"] == pytest.approx(zero["clean_margin"], abs=1e-5)


def test_boxes_from_explanations_and_scaling():
    w = torch.rand(3, 8, 8)
    st = Explanation(map=torch.zeros(8, 8), target=0, method="invariant_stochastic", settings={}, seconds=0.0,
                     extras={"w": w})
    lo, hi = box_from_explanation(st)
    assert torch.equal(lo, -w) and torch.equal(hi, w)
    u, v = torch.rand(3, 2, 2), torch.rand(3, 2, 2)
    lp = Explanation(map=torch.zeros(8, 8), target=0, method="invariant_lp", settings={}, seconds=0.0,
                     extras={"u": u, "v": v, "patch": 4})
    lo, hi = box_from_explanation(lp)
    assert torch.equal(hi[:, :4, :4], u[:, :1, :1].expand(3, 4, 4)) and torch.equal(lo[:, 4:, 4:],
                                                                                  -v[:, 1:, 1:].expand(3, 4, 4))
    assert box_half_width(lo, hi) == pytest.approx(float((u + v).mean()) / 2, rel=1e-6)
    lo2, hi2 = scale_box(lo, hi, 0.05)
    assert box_half_width(lo2, hi2) == pytest.approx(0.05, rel=1e-6)
    torch.testing.assert_close(hi2 / hi, torch.full_like(hi, float(hi2[0, 0, 0] / hi[0, 0, 0])))
    with pytest.raises(ValueError, match="method="):
        box_from_explanation(Explanation(map=torch.zeros(2, 2), target=0, method="gradient", settings={},
                                         seconds=0.0, extras={}))
