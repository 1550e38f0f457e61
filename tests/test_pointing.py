"""Pointing game: strict 15-px tolerance, first-max argmax at the original size, class-mean accuracy, EP saliency."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from saliency_core.metrics.pointing import (
    TORCHRAY_POINTING,
    PointingGame,
    boxes_to_mask,
    ep_pointing_saliency,
    load_boxes,
    paste_object,
    pointing_hit,
    pointing_point,
    synthetic_pointing_check,
)


def test_first_maximum_row_major_and_resize():
    s = torch.zeros(4, 4)
    s[1, 3] = 1.0
    s[2, 0] = 1.0
    assert pointing_point(s) == (1, 3)
    big = torch.zeros(10, 10)
    big[7, 2] = 5.0
    # resized to the original size (bilinear, align_corners=False): peak lands at 2x the coordinate region
    r, c = pointing_point(big, (20, 20))
    assert 14 <= r <= 15 and 4 <= c <= 5


def test_strict_tolerance():
    gt = np.zeros((100, 100), dtype=bool)
    gt[50, 50] = True
    assert pointing_hit((50, 64), gt)  # distance 14
    assert not pointing_hit((50, 65), gt)  # distance exactly 15: strict <, a miss
    assert not pointing_hit((59, 62), gt)  # 9² + 12² = 225: miss
    assert pointing_hit((59, 61), gt)
    assert not pointing_hit((0, 0), np.zeros((5, 5), bool))


@settings(max_examples=50, deadline=None)
@given(y=st.integers(0, 63), x=st.integers(0, 63), box=st.tuples(st.integers(0, 60), st.integers(0, 60),
                                                                st.integers(1, 20), st.integers(1, 20)))
def test_hit_matches_brute_force(y, x, box):
    x0, y0, w, h = box
    gt = boxes_to_mask([(x0, y0, x0 + w, y0 + h)], (64, 64))
    ys, xs = np.nonzero(gt)
    expected = bool((((ys - y) ** 2 + (xs - x) ** 2) < 225).any())
    assert pointing_hit((y, x), gt) == expected
    if gt[y, x]:
        assert pointing_hit((y, x), gt)


def test_class_mean_accuracy_not_query_mean():
    g = PointingGame()
    gt = np.zeros((50, 50), bool)
    gt[:10, :10] = True
    hit_map = torch.zeros(50, 50)
    hit_map[2, 2] = 1
    miss_map = torch.zeros(50, 50)
    miss_map[45, 45] = 1
    for _ in range(3):
        g.evaluate(hit_map, gt, "a")  # class a: 3/3
    g.evaluate(miss_map, gt, "b")  # class b: 0/1
    assert g.accuracy() == pytest.approx(0.5)  # per-query would be 0.75
    assert PointingGame().accuracy() != PointingGame().accuracy()  # nan when empty


def test_ep_saliency_sum_smooth_zero_padding():
    m = torch.zeros(4, 20, 20)
    m[:, :, :] = 1.0  # saturated plateau everywhere: zero-padded smoothing pulls the argmax off the border
    s = ep_pointing_saliency(m, (40, 60), smooth=0.09)
    assert s.shape == (40, 60)
    r, c = pointing_point(s)
    sigma = 0.09 * 40
    assert 3 * sigma <= r <= 40 - 3 * sigma and 3 * sigma <= c <= 60 - 3 * sigma
    assert float(s[0, 0]) < 0.4 * float(s.max()) and float(s.max()) == pytest.approx(4.0, abs=1e-3)
    raw = ep_pointing_saliency(m, None, smooth=0.0)
    torch.testing.assert_close(raw, m.sum(0))


def test_synthetic_check_with_oracle_and_center(tmp_path):
    imgs = torch.rand(3, 3, 50, 50, generator=torch.Generator().manual_seed(0))
    scenes = []

    def oracle(scene, label):
        # points at the most non-grey pixel region: the pasted object
        d = (scene[0] - 0.5).abs().sum(0)
        scenes.append(scene)
        return d

    game, rows = synthetic_pointing_check(imgs, [1, 2, 1], oracle, canvas_size=120, obj_size=30, seed=1)
    assert game.accuracy() == 1.0 and len(rows) == 3
    img, gt = paste_object(imgs[0], 120, 30, top_left=(0, 0))
    assert gt[:30, :30].all() and gt.sum() == 900 and torch.equal(img[:, 40:, 40:], torch.full((3, 80, 80), 0.5))
    csv = tmp_path / "boxes.csv"
    csv.write_text("file,class_index,x0,y0,x1,y1\na.jpg,3,1,2,10,20\na.jpg,3,30,30,40,40\n")
    assert load_boxes(csv)["a.jpg"][1] == (3, (30.0, 30.0, 40.0, 40.0))
    assert TORCHRAY_POINTING["Extremal perturbation"][0] == (88.0, 76.1)
