"""Extremal perturbations: box model with a known answer, batching, determinism, bad inputs, model flags."""

from __future__ import annotations

import pytest
import torch
from conftest import BoxMeanNet, make_classifier

from saliency_core import get_explainer
from saliency_core.kernels import FastSmoothMaskGenerator
from saliency_core.methods.extremal import ExtremalPerturbation, MeaningfulPerturbation, smallest_sufficient_area
from saliency_core.perturbations import SmoothMaskGenerator, clamp01

# EP's schedule is scale-dependent (mean-normalised area term): a 64-px image with the family scaled by 2/7
# (step 2, σ 6, blur σ_max 6) has the same 32×32 parameter grid as 224 px with step 7, σ 21.
S, B0, B1 = 64, 24, 40
SMALL = dict(step=2, sigma=6.0, max_blur=6.0)


@pytest.fixture(scope="module")
def box64():
    clf = make_classifier(BoxMeanNet(box=(B0, B1, B0, B1), scale=100.0), size=S)
    x = torch.zeros(1, 3, S, S)
    x[..., B0:B1, B0:B1] = 1.0
    return clf, x


@pytest.fixture(scope="module")
def box_run(box64):
    clf, x = box64
    ep = ExtremalPerturbation(clf, areas=(0.2, 0.5), iterations=250, lambda_growth=1.01, area_on="crop", **SMALL)
    return ep.explain(x, 3)


def test_preserve_mask_covers_box_with_right_area(box_run):
    for i, a in enumerate((0.2, 0.5)):
        m = box_run.extras["masks"][i]
        assert float(m[B0:B1, B0:B1].mean()) > 0.9  # the box (area 0.0625) is kept
        assert float(m.mean()) == pytest.approx(a, abs=0.05)  # mean ≈ a within the smooth family's tolerance
    # preserved score close to the clean one, and the map is the sum of the area masks
    assert float(box_run.extras["preserve_scores"][0]) > 0.9 * box_run.extras["clean_score"]
    torch.testing.assert_close(box_run.map, box_run.extras["masks"].sum(0))


def test_all_areas_in_one_batch_and_pass_counts(box_run):
    k, t = 2, 250
    # per iteration one call with K images; then one no-grad call with 2K (preserve + delete scores), one clean
    assert box_run.n_forward_calls == t + 2 and box_run.n_forward == k * t + 2 * k + 1
    assert box_run.n_backward == k * t
    h = box_run.extras["history"]
    assert h["energy"].shape == (t, k) and h["lambda"][1] == pytest.approx(300 * 1.01)


def test_dual_and_delete_batch_together(box64):
    clf, x = box64
    e = ExtremalPerturbation(clf, areas=(0.2,), variant="dual", iterations=3, **SMALL).explain(x, 3)
    assert e.n_forward_calls == 3 + 2 and e.n_forward == 2 * 3 + 2 + 1
    r = e.extras["history"]["reward"][-1]
    assert float(r[0]) <= float(e.extras["clean_score"]) + 1e-4
    d = ExtremalPerturbation(clf, areas=(0.2,), variant="delete", iterations=3, **SMALL).explain(x, 3)
    assert d.map.shape == (S, S)


def test_chunked_batch_matches_single_batch(box64):
    clf, x = box64
    a = ExtremalPerturbation(clf, areas=(0.2, 0.4), iterations=10, **SMALL).explain(x, 3)
    b = ExtremalPerturbation(clf, areas=(0.2, 0.4), iterations=10, batch_size=1, **SMALL).explain(x, 3)
    torch.testing.assert_close(a.map, b.map, atol=1e-5, rtol=0)
    assert b.n_forward_calls == 2 * 10 + 4 + 1


@pytest.mark.parametrize("other", ["aten_fold", "blockwise"])
def test_compiled_fold_and_blockwise_masks_give_the_same_optimisation(box64, monkeypatch, other):
    # EP's masks come from the compiled evaluation (FastSmoothMaskGenerator); the ATen fold and the per-block one
    # (log-sum-exp shifted) are the same function up to float rounding, so a short optimisation ends at nearly the
    # same masks and energies (rounding differences grow with the iterations: with this box model's large
    # gradients, to ~2e-3 after 3 and ~1e-2 after 15). The box image makes many mask values tie exactly, and which
    # tied entries the area reference puts inside the area depends on their last bits, so the energies part by
    # ~1e-4 (relative) from the second iteration on, against ~1e-7 at the first.
    clf, x = box64
    kw = dict(areas=(0.2, 0.5), iterations=3, area_on="crop", **SMALL)
    compiled = ExtremalPerturbation(clf, **kw).explain(x, 3)

    def blockwise(self, params):
        full = clamp01(self._blockwise(params))
        return full, full[..., self.margin : self.margin + self.shape[0], self.margin : self.margin + self.shape[1]]

    monkeypatch.setattr(FastSmoothMaskGenerator, "__call__",
                        SmoothMaskGenerator.__call__ if other == "aten_fold" else blockwise)
    ref = ExtremalPerturbation(clf, **kw).explain(x, 3)
    torch.testing.assert_close(compiled.extras["masks"], ref.extras["masks"], atol=5e-3, rtol=0)
    e_compiled, e_ref = compiled.extras["history"]["energy"], ref.extras["history"]["energy"]
    torch.testing.assert_close(e_compiled[0], e_ref[0], rtol=1e-6, atol=0)
    torch.testing.assert_close(e_compiled, e_ref, rtol=1e-3, atol=0)


def test_deterministic_with_seed_and_registry(box64):
    clf, x = box64
    e1 = get_explainer("extremal_perturbation", clf, areas=(0.1,), iterations=8, seed=3, **SMALL).explain(x, 3)
    e2 = get_explainer("extremal_perturbation", clf, areas=(0.1,), iterations=8, seed=3, **SMALL).explain(x, 3)
    assert torch.equal(e1.map, e2.map)
    assert e1.settings["areas"] == (0.1,) and e1.settings["area_on"] == "padded" and e1.settings["iterations"] == 8


@pytest.mark.parametrize("areas", [(), (0.0,), (1.0,), (-0.1,), (0.1, 1.5), 0.0, "abc", None])
def test_bad_areas_raise_clear_error(box_classifier, areas):
    with pytest.raises(ValueError, match=r"areas=.*accepted values"):
        ExtremalPerturbation(box_classifier, areas=areas)


@pytest.mark.parametrize("kw", [dict(variant="both"), dict(reward="prob"), dict(area_on="image"), dict(iterations=0),
                                dict(perturbation="noise"), dict(combine="max"), dict(lr=0.0)])
def test_bad_options_raise(box_classifier, kw):
    with pytest.raises(ValueError, match="accepted values"):
        ExtremalPerturbation(box_classifier, **kw)


def test_model_not_mutated(linear_classifier):
    clf = linear_classifier
    clf.net.train()
    before = clf.state_fingerprint()
    assert any(before[1])
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ExtremalPerturbation(clf, areas=(0.2,), iterations=3, step=1, sigma=3.0, max_blur=3.0).explain(x, 1)
    MeaningfulPerturbation(clf, iterations=3, mask_size=8, blur_sigma=3.0).explain(x, 1)
    assert clf.state_fingerprint() == before


def test_fade_pixel_and_smooth_options(box64):
    clf, x = box64
    e = ExtremalPerturbation(clf, areas=(0.2,), iterations=3, perturbation="fade", parametrization="pixel",
                             smooth=0.09, **SMALL).explain(x, 3)
    assert e.extras["params"].shape == (1, S, S) and e.map.shape == (S, S)


def test_smallest_sufficient_area_sweep_bisection_and_cache(box64):
    clf, x = box64
    ep = ExtremalPerturbation(clf, iterations=60, lambda_growth=1.03, area_on="crop", **SMALL)
    cache: dict = {}
    r = smallest_sufficient_area(ep, x, 3, tau=0.8, areas=(0.05, 0.2, 0.6), rounds=1, cache=cache, image_id="box")
    assert r.n_optimised == 4  # 3 sweep areas in one batch + 1 bisection probe
    ok = [a for a, s in r.curve.items() if s >= r.threshold]
    assert r.a_star == min(ok) and r.threshold == pytest.approx(0.8 * r.clean_score)
    assert all(s < r.threshold for a, s in r.curve.items() if a < r.a_star)
    r2 = smallest_sufficient_area(ep, x, 3, tau=0.8, areas=(0.05, 0.2, 0.6), rounds=1, cache=cache, image_id="box")
    assert r2.n_optimised == 0 and r2.a_star == r.a_star


def test_meaningful_perturbation_finds_box(box64):
    clf, x = box64
    e = MeaningfulPerturbation(clf, iterations=60, mask_size=16, blur_sigma=6.0, jitter=1, response="logit",
                               l1=0.5).explain(x, 3)
    sal = e.map
    assert float(sal[B0:B1, B0:B1].mean()) > float(sal.mean()) + 0.1
    assert e.n_forward == 61
