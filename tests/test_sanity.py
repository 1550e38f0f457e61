"""Cascading randomisation: never mutates the original, seeded, fresh vs cumulative, similarity metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from saliency_core import get_explainer
from saliency_core.metrics.sanity import cascading_randomization, randomized_copy, similarities
from tests.conftest import make_classifier


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.n_classes = 5
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.3)
            self.bn.running_var.fill_(2.0)

    def forward(self, z):
        h = torch.relu(self.bn(self.conv1(z)))
        h = torch.relu(self.conv2(h))
        return self.fc(h.mean((2, 3)))


@pytest.fixture
def small():
    return make_classifier(SmallNet(), size=16)


def test_layer_order_and_original_untouched(small):
    assert small.layer_order == ["fc", "conv2", "conv1"]
    before = small.state_fingerprint()
    sd = {k: v.clone() for k, v in small.net.state_dict().items()}
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    stages, sim = cascading_randomization(small, x, lambda c: get_explainer("gradient", c), init="default",
                                          cascade="fresh")
    assert small.state_fingerprint() == before
    assert all(torch.equal(v, small.net.state_dict()[k]) for k, v in sd.items())
    assert [s["stage"] for s in stages] == ["original", "fc", "conv2", "conv1"]
    orig = sim[sim.stage == "original"].set_index("metric")["value"]
    assert np.allclose(orig[["spearman_abs", "spearman_signed", "ssim", "hog"]].values, 1.0)
    assert set(sim.metric) == {"spearman_abs", "spearman_signed", "ssim", "hog"}
    # randomising the whole network changes the gradient map
    last = sim[sim.stage == "conv1"].set_index("metric")["value"]
    assert last["spearman_abs"] < 0.9


def test_init_modes_seeded_and_bn_stats(small):
    a = randomized_copy(small, ["fc", "conv1"], "uniform0.05", seed=1)
    b = randomized_copy(small, ["fc", "conv1"], "uniform0.05", seed=1)
    c = randomized_copy(small, ["fc", "conv1"], "uniform0.05", seed=2)
    assert torch.equal(a.net.fc.weight, b.net.fc.weight) and not torch.equal(a.net.fc.weight, c.net.fc.weight)
    assert float(a.net.fc.weight.detach().abs().max()) <= 0.05 and float(a.net.fc.bias.detach().abs().max()) <= 0.05
    assert torch.equal(a.net.conv2.weight, small.net.conv2.weight)  # not in the list
    d = randomized_copy(small, ["conv1", "bn"], "default", seed=0)
    assert not torch.equal(d.net.conv1.weight, small.net.conv1.weight)
    assert torch.allclose(d.net.bn.running_var, torch.full((4,), 2.0))  # running stats kept
    e = randomized_copy(small, ["bn"], "default", seed=0, reset_bn_stats=True)
    assert torch.allclose(e.net.bn.running_var, torch.ones(4))
    with pytest.raises(ValueError, match="init"):
        randomized_copy(small, ["fc"], "normal")


def test_cumulative_vs_fresh_and_targets(small):
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    fac = lambda c: get_explainer("gradient", c)  # noqa: E731
    st_f, _ = cascading_randomization(small, x, fac, init="uniform0.05", cascade="fresh", seed=0)
    st_c, _ = cascading_randomization(small, x, fac, init="uniform0.05", cascade="cumulative", seed=0)
    # stage 1 differs between modes only through seeding; both randomise fc
    assert len(st_f) == len(st_c) == 4
    st_o, _ = cascading_randomization(small, x, fac, init="uniform0.05", target="original", seed=0)
    assert all(s["target"] == st_o[0]["target"] for s in st_o)
    st_r, _ = cascading_randomization(small, x, fac, init="uniform0.05", target="rederive", seed=0)
    assert all(s["target"] == s["top1"] for s in st_r)
    st_r2, _ = cascading_randomization(small, x, fac, init="uniform0.05", target="rederive", seed=0)
    assert all(torch.equal(a["map"], b["map"]) for a, b in zip(st_r, st_r2))


def test_similarities_metrics():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(32, 32, generator=g)
    s = similarities(a, a)
    assert all(v == pytest.approx(1.0) for v in s.values())
    z = torch.randn(32, 32, generator=g)  # signed map: Adebayo's p99 normalisation clips only the tails
    assert similarities(z, -z)["spearman_signed"] == pytest.approx(-1.0, abs=0.02)
    assert similarities(z, -z)["spearman_abs"] == pytest.approx(1.0)
    b = torch.rand(32, 32, generator=g)
    r = similarities(a, b)
    assert abs(r["spearman_abs"]) < 0.3 and r["ssim"] < 0.5
    assert np.isnan(similarities(a, torch.zeros(32, 32))["spearman_abs"])
    assert similarities(a, b, ssim_data_range=2.0)["ssim"] != r["ssim"]
    with pytest.raises(ValueError, match="maps"):
        similarities(a, torch.zeros(16, 16))
