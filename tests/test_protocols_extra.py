"""Protocols that read a method's own outputs (EP areas, iGOS++ masks), the LOR curve, and protocols restricted
to some methods of a study."""

from __future__ import annotations

import math

import pytest
import torch

from saliency_core import protocols as P
from saliency_core.explanation import Explanation
from saliency_core.study import Study, plan


def _ep_expl(scores, visible, clean=2.0, areas=(0.2, 0.05, 0.1)):
    return Explanation(map=torch.zeros(32, 32), target=3, method="extremal_perturbation",
                       extras={"areas": areas, "preserve_scores": torch.tensor(scores), "mask_area":
                               torch.tensor(visible), "clean_score": clean})


def test_ep_area_reward_is_the_smallest_sufficient_area(box_classifier):
    x = torch.rand(1, 3, 32, 32)
    # areas given unsorted: 0.2 → 2.0, 0.05 → 1.0, 0.1 → 1.9; ratios 1.0, 0.5, 0.95; τ = 0.9 → a* = 0.1
    v, curve = P.score("ep_area_reward", box_classifier, x, _ep_expl([2.0, 1.0, 1.9], [0.3, 0.1, 0.2]))
    assert v == 0.1
    assert curve["x"].tolist() == [0.05, 0.1, 0.2] and curve["y"].tolist() == pytest.approx([0.5, 0.95, 1.0])
    v, _ = P.score("ep_area_reward", box_classifier, x, _ep_expl([1.0, 1.0, 1.0], [0.3, 0.1, 0.2]))
    assert math.isnan(v)  # no area reaches τ
    v, curve = P.score("ep_visible_area", box_classifier, x, _ep_expl([2.0, 1.0, 1.9], [0.3, 0.1, 0.2]), area=0.12)
    assert v == pytest.approx(0.2) and curve["y"].tolist() == pytest.approx([0.1, 0.2, 0.3])


def test_ep_protocols_refuse_other_methods(box_classifier):
    e = Explanation(map=torch.zeros(32, 32), target=3, method="gradient")
    with pytest.raises(ValueError, match="method 'gradient' is not valid for this protocol"):
        P.score("ep_area_reward", box_classifier, torch.rand(1, 3, 32, 32), e)


def test_map_tv_golden(box_classifier):
    m = torch.zeros(4, 4)
    m[:, 2:] = 1.0  # one vertical edge: horizontal differences 1 on 4 of 12, vertical 0
    e = Explanation(map=m, target=3, method="x")
    assert P.score("map_tv", box_classifier, torch.rand(1, 3, 32, 32), e)[0] == pytest.approx(4 / 12)


def test_igospp_protocol_scores_a_chosen_mask(box_classifier):
    x = torch.rand(1, 3, 32, 32)
    mx = torch.ones(4, 4)
    my = torch.ones(4, 4)
    my[1:3, 1:3] = 0.0  # the insertion mask marks the box
    e = Explanation(map=torch.zeros(32, 32), target=3, method="igos_pp", extras={"mask_x": mx, "mask_y": my})
    v_y, _ = P.score("ins_igospp", box_classifier, x, e, grid=4, use="mask_y")
    v_x, _ = P.score("ins_igospp", box_classifier, x, e, grid=4, use="mask_x")
    assert v_y != v_x
    with pytest.raises(ValueError, match="use='mask_xy' is not valid"):
        P.score("ins_igospp", box_classifier, x, e, grid=4, use="mask_xy")
    # "grid" falls back to the map for a method without an s×s saliency grid
    assert P.score("ins_igospp", box_classifier, x, e, grid=4, use="grid")[0] == \
        P.score("ins_igospp", box_classifier, x, e, grid=4)[0]
    e.extras["saliency_grid"] = 1.0 - my
    assert P.score("ins_igospp", box_classifier, x, e, grid=4, use="grid")[0] == v_y
    with pytest.raises(ValueError, match="use="):
        P.score("ins_igospp", box_classifier, x, e, grid=4, use="mx")


def test_lor_curve_starts_at_the_clean_probability(box_classifier):
    x = torch.rand(1, 3, 32, 32)
    e = Explanation(map=torch.rand(32, 32), target=3, method="x")
    v, curve = P.score("lor_curve", box_classifier, x, e, alphas=[0.0, 0.5, 1.0], masking="black")
    p0 = float(box_classifier.probs(x)[0, 3])
    assert curve["x"].tolist() == [0.0, 0.5, 1.0] and curve["y"].iloc[0] == pytest.approx(p0, rel=1e-5)
    with pytest.raises(ValueError, match="alphas="):
        P.score("lor_curve", box_classifier, x, e, alphas=[0.1, 0.2])


def test_a_protocol_restricted_to_some_methods():
    spec = {"name": "t", "images": {"embedded": {"n": 1}},
            "methods": {"gradient": {}, "ep": {"method": "extremal_perturbation", "iterations": 2}},
            "protocols": {"map_tv": {}, "ep_area_reward": {"methods": ["ep"]}}}
    p = plan(Study.from_dict(spec))
    pairs = set(zip(p.score_index["method"], p.score_index["protocol"]))
    assert pairs == {("gradient", "map_tv"), ("ep", "map_tv"), ("ep", "ep_area_reward")}
    with pytest.raises(ValueError, match=r"protocols\['ep_area_reward'\].methods"):
        Study.from_dict({**spec, "protocols": {"ep_area_reward": {"methods": ["nope"]}}})


def test_invariance_protocols_read_the_box_and_find_a_violation(box_classifier):
    """Box classifier: logit 3 = 10·mean of the box pixels, others 0. A box of ±0.5 on the box pixels can push the
    mean from 0.5 to 0 (margin 0, violated at the boundary only), one of ±0.9 makes it negative: a violation."""
    x = torch.full((1, 3, 32, 32), 0.5)
    w = torch.zeros(3, 32, 32)
    w[:, 8:24, 8:24] = 0.9
    e = Explanation(map=-w.mean(0), target=3, method="invariant_stochastic", extras={"w": w})
    v, curve = P.score("invariance_worst_case", box_classifier, x, e, iterations=3)
    assert v == pytest.approx(10 * (0.5 - 0.9), abs=1e-4) and len(curve) == 4
    small, _ = P.score("invariance_worst_case", box_classifier, x, e, iterations=0, half_width=0.05)
    assert small > 0  # a narrower box stays invariant
    rate, curve = P.score("invariance_rate", box_classifier, x, e, n_samples=64)
    assert rate == 1.0 and curve["x"].iloc[0] == pytest.approx(0.9 * 256 / 1024)  # uniform draws never find it
    with pytest.raises(ValueError, match="no perturbation box"):
        P.score("invariance_rate", box_classifier, x, Explanation(map=torch.zeros(32, 32), target=3, method="g"))


def test_pixel_flip_random_ties_average_draws(box_classifier):
    x = torch.rand(1, 3, 32, 32)
    flat = Explanation(map=torch.zeros(32, 32), target=3, method="x")  # every pixel tied
    v1, c1 = P.score("pixel_flip", box_classifier, x, flat, ties="random", tie_draws=1)
    v4, c4 = P.score("pixel_flip", box_classifier, x, flat, ties="random", tie_draws=4)
    assert set(c4["y"].round(6)) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    with pytest.raises(ValueError, match="tie_draws"):
        P.score("pixel_flip", box_classifier, x, flat, tie_draws=2)
