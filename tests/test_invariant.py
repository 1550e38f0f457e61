"""Maximal invariant perturbation: stochastic (Ikeno & Hara 2018) and LP / LP(Smooth) (Hara et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import LinearNet, make_classifier
from torch import nn

from saliency_core import get_explainer
from saliency_core.methods.invariant import (
    LPInvariantPerturbation,
    StochasticInvariantPerturbation,
    margin_jacobian,
    slack_row_rule,
    solve_invariance_lp,
)
from saliency_core.metrics.invariance import box_from_explanation, invariance_rate


class ToyNet(nn.Module):
    """2 classes on 2×2 images: f_0 = z[0,0] − 2 z[0,1] + 0.5 z[1,0] + 0.35 (channel 0 only), f_1 = 0."""

    n_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 2)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0, 0], self.fc.weight[0, 1], self.fc.weight[0, 2] = 1.0, -2.0, 0.5
            self.fc.bias[0] = 0.35

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.flatten(1))


@pytest.fixture
def toy():
    return make_classifier(ToyNet(), size=2, n_classes=2)


X_TOY = torch.full((1, 3, 2, 2), 0.5)  # margin f_0 − f_1 = 0.5·(1 − 2 + 0.5) + 0.35 = 0.1


# ------------------------------------------------------------------------------------------------ LP
@pytest.mark.parametrize("solver", ["cvxpy-highs", "highs", "clarabel"])
@pytest.mark.parametrize(
    "slack, expected",
    [
        # slack weight s = slack·2·12. Hand-derived (one constraint 2·u01 + 1·v00 + 0.5·v10 − r ≤ 0.1, a fractional
        # knapsack with gain 1/coef per unit of budget; slack buys budget at s per unit):
        (1.0, {"u01": 0.0, "v00": 0.05, "v10": 0.1, "r": 0.0}),  # s = 24 > every gain: r = 0, v10 first then v00
        (0.75 / 24, {"u01": 0.0, "v00": 0.1, "v10": 0.1, "r": 0.05}),  # s = 0.75: buy budget for v00 (gain 1), not u01
        (1e-4, {"u01": 0.1, "v00": 0.1, "v10": 0.1, "r": 0.25}),  # s = 0.0024: every variable at δ
    ],
)
def test_lp_matches_hand_derived_optimum(toy, solver, slack, expected):
    e = LPInvariantPerturbation(toy, delta=0.1, slack=slack, patch=1, solver=solver).explain(X_TOY)
    assert e.target == 0
    u, v = e.extras["u"], e.extras["v"]
    tol = 1e-6 if solver != "clarabel" else 1e-4
    assert float(u[0, 0, 1]) == pytest.approx(expected["u01"], abs=tol)
    assert float(v[0, 0, 0]) == pytest.approx(expected["v00"], abs=tol)
    assert float(v[0, 1, 0]) == pytest.approx(expected["v10"], abs=tol)
    assert e.extras["r"] == pytest.approx(expected["r"], abs=tol)
    free = torch.ones(3, 2, 2, dtype=torch.bool)
    free[0] = False
    assert torch.allclose(u[free], torch.tensor(0.1), atol=tol) and torch.allclose(v[free], torch.tensor(0.1), atol=tol)
    # unconstrained pixel-channels: u = v = δ in channel 0 except where the gradient has that sign
    assert float(u[0, 0, 0]) == pytest.approx(0.1, abs=tol) and float(v[0, 0, 1]) == pytest.approx(0.1, abs=tol)
    # score = 2δ − mean_c(u + v)
    assert torch.allclose(e.map, 0.2 - (u + v).mean(0), atol=1e-6)


def test_lp_presolve_drops_only_redundant_rows():
    A = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).numpy()
    B = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).numpy()
    rhs = torch.tensor([0.05, 5.0]).double().numpy()  # row 2 can never be active in the 0.1-box
    sol = solve_invariance_lp(A, B, rhs, 0.1, 10.0, "cvxpy-highs")
    assert sol["rows_kept"] == 1
    assert sol["u"].sum() + sol["v"].sum() == pytest.approx(0.1 + 0.1 + 0.05)


def test_margin_jacobian_is_batched_and_exact(linear_classifier):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    from saliency_core.explanation import count_passes

    with linear_classifier.guard(), count_passes(linear_classifier.net) as cnt:
        z, jac = margin_jacobian(linear_classifier, x, chunk=2)
    w = linear_classifier.net.fc.weight.detach().view(3, 3, 32, 32)
    assert torch.allclose(jac, w, atol=1e-6)
    assert torch.allclose(z, linear_classifier.logits(x)[0])
    assert cnt.backward_calls == 2 and cnt.backward == 3  # ceil(3 / 2) batched calls, one row per class


def test_lp_smooth_taylor_equals_plain_on_linear_model(linear_classifier):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    kw = {"slack": 1.0, "smooth_sigma": 0.2}  # an expensive slack makes the constraints bind
    plain = get_explainer("invariant_lp", linear_classifier, **kw).explain(x)
    smooth = get_explainer("invariant_lp_smooth", linear_classifier, smooth_points=3, **kw).explain(x)
    official = get_explainer("invariant_lp_smooth", linear_classifier, smooth_points=3, lp_rhs="official",
                             **kw).explain(x)
    assert float(plain.map.max()) > 0.0
    # linear model: z(x+n) − h·n = z(x) exactly, so the Taylor RHS repeats plain LP's rows
    assert torch.allclose(plain.map, smooth.map, atol=1e-5)
    assert smooth.extras["rows"] == 4 * 2
    assert torch.allclose(smooth.extras["rhs"], plain.extras["rhs"].repeat(4), atol=1e-5)
    assert not torch.allclose(official.extras["rhs"], smooth.extras["rhs"], atol=1e-3)
    assert torch.allclose(official.extras["rhs"][:2], plain.extras["rhs"], atol=1e-6)  # n_0 = 0: same first rows
    assert plain.map.shape == (32, 32)
    # constant on 8×8 blocks
    assert torch.equal(plain.map, plain.map[::8, ::8].repeat_interleave(8, 0).repeat_interleave(8, 1))


def test_lp_classes_option(linear_classifier):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    e = get_explainer("invariant_lp", linear_classifier, classes=1).explain(x)
    assert e.extras["rows"] == 1


# ------------------------------------------------------------------------------------------------ stochastic
def _linear_setup():
    clf = make_classifier(LinearNet(size=16, n_classes=3, seed=0), size=16)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return clf, x


def test_stochastic_box_keeps_class_on_linear_model():
    clf, x = _linear_setup()
    fp = clf.state_fingerprint()
    # the penalty only approximately enforces the constraint: a large ρ keeps the class on ~all draws
    e = StochasticInvariantPerturbation(clf, n_draws=32, iterations=300, response="logit", penalty=1e4).explain(x)
    assert clf.state_fingerprint() == fp
    c = e.target
    w = e.extras["w"]
    assert w.shape == (3, 16, 16) and float(w.min()) >= 0.0 and float(w.max()) <= 1.0
    assert float(w.mean()) > 0.05  # a non-trivial box was found
    lo, hi = box_from_explanation(e)
    rate = invariance_rate(clf, x, c, lo, hi, n_samples=2000, seed=1)
    assert rate >= 0.99
    weak = StochasticInvariantPerturbation(clf, n_draws=32, iterations=300, response="logit", penalty=100.0).explain(x)
    lo_w, hi_w = box_from_explanation(weak)
    assert float(weak.extras["w"].mean()) > float(w.mean())  # weaker penalty: bigger box ...
    assert invariance_rate(clf, x, c, lo_w, hi_w, n_samples=2000, seed=1) < rate  # ... that leaks more
    # pixels with a large margin gradient get smaller boxes (higher scores)
    W = clf.net.fc.weight.detach().view(3, 3, 16, 16)
    hsum = sum((W[c] - W[j]).abs() for j in range(3) if j != c)
    big = hsum > hsum.median()
    assert float(w[big].mean()) < float(w[~big].mean())
    assert torch.allclose(e.map, -w.mean(0))
    assert e.n_forward == 32 * 300 and e.n_forward_calls == 300  # one batch of M per step
    assert len(e.extras["objective"]) == 300 and len(e.extras["violation"]) == 300


def test_stochastic_deterministic_and_seeded():
    clf, x = _linear_setup()
    kw = {"n_draws": 4, "iterations": 80, "response": "logit"}  # the hinge activates after ~20 steps (w = 0.2)
    a = StochasticInvariantPerturbation(clf, seed=0, **kw).explain(x).map
    b = StochasticInvariantPerturbation(clf, seed=0, **kw).explain(x).map
    c = StochasticInvariantPerturbation(clf, seed=1, **kw).explain(x).map
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stochastic_patch_sharing():
    clf, x = _linear_setup()
    e = StochasticInvariantPerturbation(clf, n_draws=4, iterations=10, patch=4).explain(x)
    w = e.extras["w"]
    assert torch.equal(w, w[:, ::4, ::4].repeat_interleave(4, 1).repeat_interleave(4, 2))


def test_lp_vs_stochastic_invariance_on_linear_model():
    """Plain LP on a linear model is exact for the worst case: its box keeps the class on every draw."""
    clf, x = _linear_setup()
    e = LPInvariantPerturbation(clf, patch=4, slack=1.0).explain(x)
    lo, hi = box_from_explanation(e)
    assert e.extras["r"] == pytest.approx(0.0, abs=1e-9)
    assert invariance_rate(clf, x, e.target, lo, hi, n_samples=500) == 1.0


def test_bad_inputs(linear_classifier):
    with pytest.raises(ValueError, match="accepted values"):
        StochasticInvariantPerturbation(linear_classifier, response="softmax")
    with pytest.raises(ValueError, match="accepted values"):
        StochasticInvariantPerturbation(linear_classifier, w_max=0.0)
    with pytest.raises(ValueError, match="accepted values"):
        StochasticInvariantPerturbation(linear_classifier, n_draws=0)
    with pytest.raises(ValueError, match="accepted values"):
        LPInvariantPerturbation(linear_classifier, lp_rhs="paper")
    with pytest.raises(ValueError, match="accepted values"):
        LPInvariantPerturbation(linear_classifier, solver="CPLEX")
    with pytest.raises(ValueError, match="accepted values"):
        LPInvariantPerturbation(linear_classifier, patch=5).explain(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="accepted values"):
        StochasticInvariantPerturbation(linear_classifier, patch=3, iterations=1).explain(torch.rand(1, 3, 32, 32))


def test_lp_smooth_seeded(linear_classifier):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    kw = {"smooth_points": 2, "lp_rhs": "official", "slack": 1.0, "smooth_sigma": 0.2}
    a = get_explainer("invariant_lp_smooth", linear_classifier, seed=0, **kw).explain(x).extras["rhs"]
    b = get_explainer("invariant_lp_smooth", linear_classifier, seed=0, **kw).explain(x).extras["rhs"]
    c = get_explainer("invariant_lp_smooth", linear_classifier, seed=1, **kw).explain(x).extras["rhs"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_slack_row_rule_is_a_thresholded_patch_gradient():
    """One constraint row with an active slack: u_i = δ where A_i < 1/s, else 0 (and v with B), by the LP's own
    optimality: raising u_i by ε gains ε and costs s·A_i·ε through r."""
    rng = np.random.default_rng(0)
    n, delta, s = 40, 0.1, 0.47
    A = rng.uniform(0, 5, size=(1, n))
    B = rng.uniform(0, 5, size=(1, n))
    rhs = np.array([0.01])
    sol = solve_invariance_lp(A, B, rhs, delta, s)
    assert sol["r"] > 0
    rule = slack_row_rule(A, B, rhs, sol["u"], sol["v"], delta, s)
    np.testing.assert_allclose(sol["u"], np.where(A[0] < 1 / s, delta, 0.0), atol=1e-7)
    np.testing.assert_allclose(sol["v"], np.where(B[0] < 1 / s, delta, 0.0), atol=1e-7)
    assert rule["agreement"] == 1.0 and rule["row"] == 0 and rule["rows_at_r"] == 1
    assert rule["r"] == pytest.approx(sol["r"], rel=1e-6)
    # a second, non-binding row does not change the rule; the reported row is the one that sets r
    A2 = np.vstack([A * 0.01, A])
    B2 = np.vstack([B * 0.01, B])
    sol2 = solve_invariance_lp(A2, B2, np.array([1.0, 0.01]), delta, s)
    rule2 = slack_row_rule(A2, B2, np.array([1.0, 0.01]), sol2["u"], sol2["v"], delta, s)
    assert rule2["row"] == 1 and rule2["agreement"] == 1.0
