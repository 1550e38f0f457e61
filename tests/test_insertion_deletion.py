"""Insertion / deletion protocol: both presets, AUC formulas, the iGOS++ metric bug, ties, batching."""

from __future__ import annotations

import pytest
import torch
from conftest import BoxMeanNet, make_classifier
from hypothesis import given, settings
from hypothesis import strategies as st

from saliency_core.explanation import count_passes
from saliency_core.metrics.insertion_deletion import (
    auc_right_riemann,
    auc_trapezoid,
    evaluate_insertion_deletion,
    igospp_step,
    insertion_deletion,
    saliency_order,
)
from saliency_core.perturbations import rise_blur_kernel
from saliency_core.stats import summarize

CLF = make_classifier(BoxMeanNet(scale=3.0), size=32)
X = torch.zeros(1, 3, 32, 32)
X[..., 8:24, 8:24] = 1.0
PERFECT = torch.zeros(32, 32)
PERFECT[8:24, 8:24] = 1.0


def test_auc_formulas_golden_values():
    assert auc_trapezoid([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert auc_trapezoid([1.0, 1.0]) == pytest.approx(1.0)
    # right Riemann: Σ p_k n_k / total; the bug adds n_last instead of p_last·n_last
    assert auc_right_riemann([0.5, 0.2], [3, 1], 4) == pytest.approx((1.5 + 0.2) / 4)
    assert auc_right_riemann([0.5, 0.2], [3, 1], 4, bug=True) == pytest.approx((1.5 + 1.0) / 4)


def test_igospp_steps_and_the_bug_bounds_of_the_protocol():
    assert [igospp_step(s) for s in (224, 28, 7)] == [1003, 15, 1]
    for s, r in ((224, 26), (28, 4), (7, 1)):
        assert (s * s) % igospp_step(s) == r % igospp_step(s)
        assert r / s**2 <= 0.0205
    # the measured bias equals r·(1 − p_end)/s² (protocols.md §4.5.2)
    sal = torch.rand(7, 7, generator=torch.Generator().manual_seed(0))
    ok = insertion_deletion(CLF, X, sal, 3, "igospp")
    bug = insertion_deletion(CLF, X, sal, 3, "igospp", igospp_metric_bug=True)
    for curve in ("deletion", "insertion"):
        p_end = ok.curves.query("curve == @curve").score.iloc[-1]
        assert bug.auc[curve] - ok.auc[curve] == pytest.approx(1 * (1 - p_end) / 49, abs=1e-7)


def test_rise_blur_kernel_is_the_reflected_near_box_gaussian():
    k = rise_blur_kernel()
    assert k.shape == (11, 11) and float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(k.max() / k.min()) == pytest.approx(1.14, abs=0.01)


def test_curves_shape_and_step_counts():
    r = insertion_deletion(CLF, X, PERFECT, 3, "rise", step=16)
    d = r.curves.query("curve == 'deletion'")
    assert len(d) == 32 * 32 // 16 + 1 and d.fraction.iloc[0] == 0.0 and d.fraction.iloc[-1] == 1.0
    g = insertion_deletion(CLF, X, PERFECT, 3, "igospp", grid=8)
    gd = g.curves.query("curve == 'deletion'")
    assert len(gd) == 64 + 1 and gd.n_changed.sum() == 64 and not gd.in_auc.iloc[0]
    # deletion ends on the blurred image, insertion on the clean image
    assert gd.score.iloc[0] == pytest.approx(g.curves.query("curve == 'insertion'").score.iloc[-1], abs=1e-6)


def test_all_steps_in_few_batched_forward_passes_and_batch_size_invariance():
    with count_passes(CLF.net) as c:
        a = insertion_deletion(CLF, X, PERFECT, 3, "rise", step=16, batch_size=32)
    assert c.forward == 2 * 65 and c.forward_calls == 2 * 3
    b = insertion_deletion(CLF, X, PERFECT, 3, "rise", step=16, batch_size=7)
    assert a.auc == pytest.approx(b.auc)


def test_tie_rule():
    flat = torch.zeros(4, 4)
    assert saliency_order(flat).tolist() == list(range(16))
    r1, r2 = saliency_order(flat, "random", seed=1), saliency_order(flat, "random", seed=1)
    assert r1.tolist() == r2.tolist() and r1.tolist() != list(range(16))
    s = torch.tensor([[0.5, 1.0], [0.5, 0.0]])
    assert saliency_order(s).tolist() == [1, 0, 2, 3]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), preset=st.sampled_from(["rise", "igospp"]))
def test_aucs_in_unit_interval_and_perfect_ordering_beats_random(seed, preset):
    rnd = torch.rand(32, 32, generator=torch.Generator().manual_seed(seed))
    kw = {"step": 32} if preset == "rise" else {"grid": 8}
    r = insertion_deletion(CLF, X, rnd, 3, preset, **kw)
    p = insertion_deletion(CLF, X, PERFECT, 3, preset, **kw)
    for res in (r, p):
        assert all(0.0 <= v <= 1.0 for v in res.auc.values())
    assert p.deletion < r.deletion
    assert p.insertion > r.insertion


def test_evaluate_and_summarize_are_tidy():
    imgs = X.repeat(3, 1, 1, 1)
    aucs, curves = evaluate_insertion_deletion(CLF, imgs, [PERFECT] * 3, [3] * 3, "igospp", grid=8, method="box")
    assert set(aucs.columns) >= {"image", "method", "preset", "grid", "curve", "auc"} and len(aucs) == 6
    summ = summarize(aucs, "auc", ["method", "preset", "grid", "curve"])
    assert len(summ) == 2 and (summ.se.abs() < 1e-9).all() and (summ.n == 3).all()
    assert len(curves) == 3 * 2 * 65


def test_bad_arguments():
    with pytest.raises(ValueError, match="preset="):
        insertion_deletion(CLF, X, PERFECT, 3, "quantus")
    with pytest.raises(ValueError, match="igospp_metric_bug"):
        insertion_deletion(CLF, X, PERFECT, 3, "rise", igospp_metric_bug=True)
    with pytest.raises(ValueError, match="ties="):
        saliency_order(PERFECT, "first")
    with pytest.raises(ValueError, match="image has shape"):
        insertion_deletion(CLF, X[0, :1], PERFECT, 3)


def test_auc_from_curve_reproduces_both_rules_from_one_evaluation():
    from saliency_core.metrics.insertion_deletion import auc_from_curve

    sal = torch.rand(7, 7, generator=torch.Generator().manual_seed(2))
    ok = insertion_deletion(CLF, X, sal, 3, "igospp")
    bug = insertion_deletion(CLF, X, sal, 3, "igospp", igospp_metric_bug=True)
    d = ok.curves.query("curve == 'deletion'")
    assert auc_from_curve(d, "igospp") == pytest.approx(ok.deletion)
    assert auc_from_curve(d, "igospp", igospp_metric_bug=True) == pytest.approx(bug.deletion)
    r = insertion_deletion(CLF, X, sal, 3, "rise", step=64)
    assert auc_from_curve(r.curves.query("curve == 'insertion'"), "rise") == pytest.approx(r.insertion)
