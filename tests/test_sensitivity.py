"""S_key search vs brute force; LOR's image-first averaging; mean ± SE."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_classifier
from torch import nn

from saliency_core.metrics.sensitivity import (
    lor_from_probabilities,
    lor_probabilities,
    parse_masking,
    s_key,
)


class Wiggly(nn.Module):
    """A tiny random conv net whose top-1 flips several times as pixels are masked (non-monotone)."""

    def __init__(self, seed: int = 0, n_classes: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.n_classes = n_classes
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, n_classes)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, z):
        h = torch.tanh(self.conv(z))
        return torch.sin(3 * self.fc(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1)))


@pytest.fixture(scope="module")
def wiggly():
    return make_classifier(Wiggly(), size=12)


def test_parse_masking():
    assert parse_masking("dist-100") == ("distance", 100.0)
    assert parse_masking("black") == ("black", 0.0)
    with pytest.raises(ValueError, match="masking"):
        parse_masking("blur")


@pytest.mark.parametrize("masking", ["dist-100", "black", "noise", "mean"])
def test_scan_equals_brute_force(wiggly, masking):
    g = torch.Generator().manual_seed(0)
    evals, n_changes_seen, bisect_wrong = [], 0, 0
    for trial in range(6):
        x = torch.rand(1, 3, 12, 12, generator=g)
        sal = torch.randn(12, 12, generator=g)
        brute = s_key(wiggly, x, sal, masking, n_grid=200, search="brute", seed=trial)
        scan = s_key(wiggly, x, sal, masking, n_grid=200, search="scan", batch_size=16, seed=trial)
        assert scan["s_key"] == brute["s_key"] and scan["index"] == brute["index"]
        evals.append(scan["n_evals"])
        bis = s_key(wiggly, x, sal, masking, n_grid=200, search="bisect", seed=trial)
        bisect_wrong += bis["index"] != brute["index"]
        n_changes_seen += brute["index"] is not None
        if brute["index"] is not None:
            assert scan["n_evals"] <= brute["index"] + 16  # index + unused tail of the last batch
    assert n_changes_seen >= 3
    assert bisect_wrong >= 1  # the top-1 change is not monotone here: bisection can miss the first change


def test_bisect_is_cheap_but_only_exact_when_monotone(box_classifier):
    # box model: masking box pixels (black) monotonically lowers logit 3 → top-1 change is monotone
    x = torch.full((1, 3, 32, 32), 0.8)
    sal = torch.zeros(32, 32)
    sal[8:24, 8:24] = torch.linspace(1, 2, 256).view(16, 16)
    brute = s_key(box_classifier, x, sal, "black", search="brute")
    bis = s_key(box_classifier, x, sal, "black", search="bisect")
    assert bis["index"] == brute["index"] and bis["n_evals"] < 50 < brute["n_evals"]


def test_s_key_never_changes_returns_one(box_classifier):
    x = torch.full((1, 3, 32, 32), 0.8)
    r = s_key(box_classifier, x, torch.rand(32, 32), "white", n_grid=50, search="scan")  # white raises logit 3
    assert r["s_key"] == 1.0 and r["index"] is None and r["n_evals"] == 49


def test_lor_image_first_averaging(box_classifier):
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(2, 3, 32, 32, generator=g) * 0.5 + 0.5
    maps = {"a": [torch.rand(32, 32, generator=g) for _ in range(2)]}
    df = lor_probabilities(box_classifier, xs, maps, ["black", "noise"], alphas=[0, 0.2, 0.5], targets=[3, 3])
    assert set(df.columns) == {"method", "masking", "image", "alpha", "prob"} and len(df) == 12
    lor = lor_from_probabilities(df)
    sub = df[(df.masking == "black")]
    p = sub.groupby("alpha")["prob"].mean()
    odds = p / (1 - p)
    expect = np.log(odds / odds.iloc[0])
    got = lor[lor.masking == "black"].set_index("alpha")["lor"]
    assert np.allclose(got.values, expect.values)
    assert got.iloc[0] == 0 and got.iloc[-1] < 0


def test_lor_handmade_differs_from_mean_of_per_image_lor():
    df = pd.DataFrame({"method": "m", "masking": "black", "image": [0, 0, 1, 1], "alpha": [0, 0.1, 0, 0.1],
                       "prob": [0.9, 0.5, 0.5, 0.1]})
    lor = lor_from_probabilities(df).set_index("alpha")["lor"]
    assert lor.loc[0.1] == pytest.approx(math.log((0.3 / 0.7) / (0.7 / 0.3)))
    per_image = np.mean([math.log(1 / 9), math.log((0.1 / 0.9) / 1.0)])
    assert abs(lor.loc[0.1] - per_image) > 0.1
