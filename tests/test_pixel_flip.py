"""Pixel-flip protocol (appendix §6): exact counts, tie rule, nesting, monotone curves, CI, AUC, bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_classifier
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from saliency_core.metrics.pixel_flip import (
    DEFAULT_TAUS,
    area_under_curve,
    auc_table,
    binomial_ci,
    flip_images,
    flip_order,
    pixel_flip,
    pixel_flip_curve,
    summarize,
)


class OnePixelNet(nn.Module):
    """Class 1 iff pixel (row 2, col 3) of channel 0 is above 0.7, else class 0 (8×8 images)."""

    n_classes = 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        v = z[:, 0, 2, 3]
        return torch.stack([torch.zeros_like(v), (v - 0.7) * 10.0], dim=1)


@pytest.fixture
def one_pixel():
    return make_classifier(OnePixelNet(), size=8, n_classes=2)


def test_default_grid():
    assert DEFAULT_TAUS[0] == 0.0 and DEFAULT_TAUS[-1] == 0.95 and len(DEFAULT_TAUS) == 20


def test_exact_count_and_lowest_scores_flipped():
    score = torch.arange(16.0).view(4, 4)  # distinct scores: pixel k has score k
    x = torch.ones(3, 4, 4)
    xs, counts = flip_images(x, score, [0.0, 0.25, 0.5, 1.0], fill=0.5)
    assert counts == [0, 4, 8, 16]
    flipped = xs[:, 0] == 0.5
    assert flipped[1].flatten().tolist() == [True] * 4 + [False] * 12  # the 4 lowest scores
    assert flipped[3].all() and not flipped[0].any()
    # strict "<" quantile rule agrees for distinct scores: flipped = score < 4th smallest... i.e. score < 4
    assert torch.equal(flipped[1], score < 4)


def test_tie_rule_plateau():
    # constant map: stable sort on (-score, index) → the largest row-major indices are flipped first
    score = torch.zeros(2, 4)
    xs, counts = flip_images(torch.ones(3, 2, 4), score, [0.25], fill=0.0)
    assert counts == [2]
    assert (xs[0, 0] == 0).flatten().tolist() == [False] * 6 + [True] * 2
    assert flip_order(score).tolist() == list(range(7, -1, -1))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=16, max_size=16),
       st.lists(st.floats(0, 1), min_size=3, max_size=8))
def test_nested_flip_sets(values, taus):
    score = torch.tensor(values).view(4, 4).round(decimals=1)  # rounding creates ties
    taus = sorted(taus)
    xs, counts = flip_images(torch.ones(3, 4, 4), score, taus, fill=0.5)
    masks = xs[:, 0] == 0.5
    for a, b in zip(masks[:-1], masks[1:]):
        assert bool((a <= b).all())  # nested in tau
    assert [int(m.sum()) for m in masks] == counts == [int(np.floor(t * 16 + 1e-9)) for t in taus]
    # every flipped pixel scores <= every kept pixel
    for m in masks:
        if m.any() and (~m).any():
            assert float(score[m].max()) <= float(score[~m].min())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 0.5, 1.0]))
def test_curve_monotone_for_one_pixel_model(seed, fill):
    clf = make_classifier(OnePixelNet(), size=8, n_classes=2)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(6, 3, 8, 8, generator=g)
    images[:3, 0, 2, 3] = 0.9  # class 1 for the first three
    maps = {"random": [torch.rand(8, 8, generator=g) for _ in range(6)]}
    taus = [i / 20 for i in range(21)]
    df = pixel_flip_curve(clf, images, maps, taus=taus, fill=fill)
    per_image = df.pivot(index="image", columns="tau", values="changed").to_numpy()
    assert (np.diff(per_image.astype(int), axis=1) >= 0).all()  # once changed, stays changed
    curve = summarize(df)
    assert (np.diff(curve["fraction_changed"].to_numpy()) >= -1e-12).all()
    assert curve["fraction_changed"].iloc[0] == 0.0


def test_known_change_point(one_pixel):
    x = torch.full((1, 3, 8, 8), 0.2)
    x[0, 0, 2, 3] = 0.9  # class 1; gray 0.5 → class 0
    score = torch.arange(64.0).view(8, 8)
    score[2, 3] = -1.0  # least relevant: flipped first
    df = pixel_flip(one_pixel, x, score, taus=[0.0, 1 / 64, 0.5])
    assert df["target"].iloc[0] == 1
    assert df["changed"].tolist() == [False, True, True]
    score[2, 3] = 100.0  # most relevant: flipped only at tau = 1
    df = pixel_flip(one_pixel, x, score, taus=[0.0, 0.5, 63 / 64, 1.0])
    assert df["changed"].tolist() == [False, False, False, True]


def test_tidy_output_and_auc(one_pixel):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 8, 8, generator=g)
    images[:, 0, 2, 3] = 0.9
    good = [torch.zeros(8, 8).index_put_((torch.tensor([2]), torch.tensor([3])), torch.tensor(1.0))
            for _ in range(4)]
    bad = [-m for m in good]
    df = pixel_flip_curve(one_pixel, images, {"good": good, "bad": bad}, image_ids=list("abcd"))
    assert list(df.columns) == ["method", "image", "tie_draw", "tau", "n_flipped", "fraction_flipped", "target", "top1",
                                "changed"]
    assert len(df) == 2 * 4 * len(DEFAULT_TAUS)
    aucs = auc_table(summarize(df)).set_index("method")["auc"]
    assert aucs["good"] == 0.0
    assert aucs["bad"] == pytest.approx(0.95 - 0.05 / 2)  # changed from tau = 0.05 on (1/64 <= 3 pixels)


def test_area_under_curve_explicit():
    assert area_under_curve([0, 1], [0, 1]) == pytest.approx(0.5)
    assert area_under_curve([1, 0, 0.5], [1, 0, 0.5]) == pytest.approx(0.5)  # sorted internally
    with pytest.raises(ValueError, match="accepted values"):
        area_under_curve([0], [1])


def test_binomial_ci_brackets():
    lo, hi = binomial_ci(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert lo[0] == 0.0 and hi[2] == 1.0
    assert lo[1] < 0.5 < hi[1]
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / 10))  # exact Clopper-Pearson upper bound for k = 0


def test_bad_inputs(one_pixel):
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="accepted values"):
        flip_images(x, torch.rand(8, 8), [1.5])
    with pytest.raises(ValueError, match="accepted values"):
        flip_images(x, torch.rand(8, 8), [])
    with pytest.raises(ValueError, match="accepted values"):
        flip_images(x, torch.rand(4, 4), [0.5])
    with pytest.raises(ValueError, match="accepted values"):
        flip_images(x, torch.rand(8, 8), [0.5], fill=2.0)
    bad = torch.rand(8, 8)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="accepted values"):
        flip_images(x, bad, [0.5])
    with pytest.raises(ValueError, match="accepted values"):
        pixel_flip_curve(one_pixel, x, {"m": []})


def _restated_random_flip_set(score: torch.Tensor, k: int, seed: int) -> set[int]:
    """The k pixels a random-tie order flips, re-stated: all pixels below the k-th smallest value v, and the first
    (k − #below) pixels tied at v in the order of the seeded permutation, read from its end (least relevant last
    in the permutation = first flipped)."""
    flat = score.flatten().double()
    v = torch.sort(flat).values[k - 1]
    below = {int(i) for i in torch.nonzero(flat < v).flatten()}
    perm = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed)).tolist()
    tied_in_perm_order = [i for i in perm if float(flat[i]) == float(v)]
    need = k - len(below)
    return below | set(tied_in_perm_order[::-1][:need])


def test_random_ties_flip_a_seeded_subset_of_the_plateau():
    score = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0], [3.0, 0.0, 0.0, 0.0], [5.0, 4.0, 0.0, 0.0]])
    x = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    seen = set()
    for seed in range(6):
        xs, counts = flip_images(x, score, [0.25, 0.5, 0.75], fill=0.5, ties="random", seed=seed)
        flipped = [set(torch.nonzero((xs[t, 0] == 0.5).flatten() & (x[0] != 0.5).flatten()).flatten().tolist())
                   for t in range(3)]
        assert counts == [4, 8, 12]
        assert flipped[0] <= flipped[1] <= flipped[2]  # nested in τ
        assert flipped[0] == _restated_random_flip_set(score, 4, seed)
        assert flipped[2] == _restated_random_flip_set(score, 12, seed)
        seen.add(frozenset(flipped[0]))
    assert len(seen) > 1  # the plateau is cut differently by different seeds
    # distinct values: random ties change nothing
    distinct = torch.arange(16.0).view(4, 4)
    a, _ = flip_images(x, distinct, DEFAULT_TAUS, ties="random", seed=3)
    b, _ = flip_images(x, distinct, DEFAULT_TAUS)
    assert torch.equal(a, b)


def test_random_tie_curve_averages_draws(one_pixel):
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    images[:, 0, 2, 3] = 0.9
    flat = [torch.zeros(8, 8), torch.zeros(8, 8)]  # one plateau: only the tie order decides
    df = pixel_flip_curve(one_pixel, images, {"flat": flat}, taus=[0.0, 0.5], ties="random", tie_draws=8, seed=0)
    assert sorted(df["tie_draw"].unique().tolist()) == list(range(8)) and len(df) == 2 * 8 * 2
    again = pixel_flip_curve(one_pixel, images, {"flat": flat}, taus=[0.0, 0.5], ties="random", tie_draws=8, seed=0)
    pd.testing.assert_frame_equal(df, again)
    cur = summarize(df).set_index("tau")
    at_half = df[df.tau == 0.5]["changed"].mean()
    assert cur.loc[0.5, "fraction_changed"] == pytest.approx(at_half) and cur.loc[0.5, "n_images"] == 2
    assert 0.0 < at_half < 1.0  # the decisive pixel is flipped in some draws, not in others (p = 1/2 per draw)
    assert np.isnan(cur.loc[0.5, "ci_low"])
    stable = summarize(pixel_flip_curve(one_pixel, images, {"flat": flat}, taus=[0.0, 0.5], tie_draws=8))
    assert stable["n_images"].tolist() == [2, 2]  # tie_draws is ignored for the stable order
    with pytest.raises(ValueError, match="ties="):
        pixel_flip_curve(one_pixel, images, {"flat": flat}, ties="shuffle")
