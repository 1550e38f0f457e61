"""Quantus interop: the explain_func contract, and agreement of Quantus's metrics with our protocols where the
definitions coincide (tiny convolutional model, 32×32 images).

Agreement (tolerance 1e-6 on softmax probabilities; the same float32 images reach the same network, only the batch
composition of the forward passes differs):

* ``PixelFlipping`` (constant fill c, ``features_in_step=s``) ranks the 3·H·W channel values of the broadcast map;
  after every third step exactly 3·s/3 = s whole pixels more are flipped, so its curve at steps 3, 6, 9 ... equals
  our RISE-preset deletion curve (step s pixels, fill 0 in normalised space = the mean colour c) at 1, 2, 3 ...;
* ``RegionPerturbation`` (MoRF, constant fill, patch p) on a map constant on p×p blocks equals our deletion with
  step p²: its drop y₀ − y_k is our s₀ − s_k;
* ``ROAD`` with :func:`road_pixels` and a constant fill equals our pixel flip run most-relevant-first (score −map):
  accuracy = 1 − fraction changed, exactly;
* ``MPRT`` (top-down, cumulative) with layers whose re-initialisation is deterministic equals our cascading
  randomisation (``cascade="cumulative"``, ``target="original"``, the same layers): its Spearman correlations are
  scipy's Spearman of our stage maps (|·|; tolerance 1e-6: Quantus ranks float32 maps).
"""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

quantus = pytest.importorskip("quantus")

from saliency_core import get_explainer  # noqa: E402
from saliency_core.interop.quantus import (  # noqa: E402
    Recorder,
    block_average,
    curve_auc,
    explain,
    numpy_trapz,
    randomised_layers,
    road_pixel_counts,
    road_pixels,
    whole_pixel_points,
)
from saliency_core.metrics.insertion_deletion import insertion_deletion  # noqa: E402
from saliency_core.metrics.pixel_flip import pixel_flip  # noqa: E402
from saliency_core.metrics.sanity import cascading_randomization, randomized_copy  # noqa: E402
from saliency_core.models import Classifier, Preprocessing  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILL = 0.5  # the mean colour: our deletion fills 0 in normalised space, Quantus the constant 0.5 in [0, 1]


class Tiny(nn.Module):
    def __init__(self, seed: int = 5, conv=nn.Conv2d, linear=nn.Linear) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = conv(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = linear(128, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def _classifier(net: nn.Module) -> Classifier:
    clf = Classifier.from_module(net.eval(), Preprocessing(resize=32, crop=32, mean=(FILL,) * 3, std=(0.25, 0.25, 0.3)),
                                 [f"c{i}" for i in range(5)], canonical=False)
    clf.pixel_model.eval()  # Quantus refuses a module in training mode
    return clf


@pytest.fixture(scope="module")
def clf():
    return _classifier(Tiny())


@pytest.fixture(scope="module")
def data(clf):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = clf.logits(x).argmax(1).numpy()
    return x, y


# ------------------------------------------------------------------------------------------ explain_func contract
def test_explain_returns_float32_maps_equal_to_the_native_ones(clf, data):
    x, y = data
    for method, kw in (("gradient", {}), ("rise", {"n_masks": 32, "cells": 4})):
        maps = explain(clf.pixel_model, x.numpy(), y, method=method, device="cpu", **kw)
        assert maps.shape == (3, 1, 32, 32) and maps.dtype == np.float32
        for i in range(3):
            native = get_explainer(method, clf, **kw).explain(x[i : i + 1], int(y[i])).map
            assert np.array_equal(maps[i, 0], native.numpy())
    assert np.array_equal(explain(clf.pixel_model, x, torch.tensor(y), method="gradient"),
                          explain(clf.pixel_model, x.numpy(), list(y), method="gradient"))


def test_explain_rebuilds_for_every_model_it_is_given(clf, data):
    """Quantus passes deep copies with randomised layers: each call explains the model it receives."""
    x, y = data
    before = explain(clf.pixel_model, x.numpy(), y, method="gradient")
    rand = randomized_copy(clf, ["fc"], seed=3)
    after = explain(copy.deepcopy(rand.pixel_model), x.numpy(), y, method="gradient")
    native = get_explainer("gradient", rand).explain(x[:1], int(y[0])).map
    assert np.array_equal(after[0, 0], native.numpy())
    assert not np.allclose(before, after)
    assert np.array_equal(explain(clf.pixel_model, x.numpy(), y, method="gradient"), before)


def test_explain_accepts_a_plain_module_with_its_normalisation(clf, data):
    x, y = data

    class Normalised(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, v):
            return self.net(clf.normalize(v))

    a = explain(Normalised(clf.net).eval(), x.numpy(), y, method="rise", mean=FILL, std=(0.25, 0.25, 0.3),
                n_masks=32, cells=4)
    b = explain(clf.pixel_model, x.numpy(), y, method="rise", n_masks=32, cells=4)
    assert np.allclose(a, b, atol=1e-5)


def test_explain_errors_are_one_line(clf, data):
    x, y = data
    with pytest.raises(ValueError, match="method=None is not valid; accepted values: a registered method name"):
        explain(clf.pixel_model, x.numpy(), y)
    with pytest.raises(ValueError, match="iteration=3 is not a parameter of method='rise'; accepted values: n_masks"):
        explain(clf.pixel_model, x.numpy(), y, method="rise", iteration=3)
    with pytest.raises(ValueError, match="targets has 2 entries; accepted values: one class or 3 classes"):
        explain(clf.pixel_model, x.numpy(), y[:2], method="gradient")
    with pytest.raises(ValueError, match="device='gpu' is not valid"):
        explain(clf.pixel_model, x.numpy(), y, method="gradient", device="gpu")


def test_explain_never_touches_the_result_store(clf, data, monkeypatch, tmp_path):
    import saliency_core.cache as cache

    def refuse(*a, **k):
        raise AssertionError("the Quantus adapter used the result store")

    monkeypatch.setattr(cache.ResultCache, "__init__", refuse)
    if hasattr(cache, "Store"):
        monkeypatch.setattr(cache.Store, "__init__", refuse)
    for var in ("SALIENCY_CACHE", "SALIENCY_STORE"):
        monkeypatch.setenv(var, str(tmp_path / "cache"))
    x, y = data
    explain(clf.pixel_model, x.numpy(), y, method="rise", n_masks=16, cells=4)
    assert not (tmp_path / "cache").exists()
    for f in (ROOT / "saliency_core" / "interop").glob("*.py"):
        mods = {n.module for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ImportFrom) and n.module}
        assert not mods & {"cache", "store", "..cache", "..store"}, f


def test_quantus_metric_calls_explain_with_its_device_keyword(clf, data):
    x, y = data
    seen = []

    def spy(model, inputs, targets, **kwargs):
        seen.append(sorted(kwargs))
        return explain(model, inputs, targets, **kwargs)

    metric = quantus.MPRT(disable_warnings=True, skip_layers=True)
    scores = metric(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=None, device="cpu",
                    explain_func=spy, explain_func_kwargs={"method": "gradient"})
    assert seen and all(k == ["device", "method"] for k in seen)
    assert set(scores) == {"original", "net.conv"} and np.allclose(scores["original"], 1.0)


# ------------------------------------------------------------------------------------------ agreement with ours
def test_pixel_flipping_equals_our_deletion_every_third_step(clf, data):
    x, y = data
    maps = explain(clf.pixel_model, x.numpy(), y, method="gradient")
    step = 16
    metric = quantus.PixelFlipping(features_in_step=step, perturb_baseline=FILL, disable_warnings=True)
    curves = np.asarray(metric(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=maps, device="cpu"))
    assert curves.shape == (3, 3 * 1024 // step)
    for i in range(3):
        ours = insertion_deletion(clf, x[i], torch.from_numpy(maps[i, 0]), int(y[i]), "rise", step=step,
                                  curves=("deletion",)).curves.score.to_numpy()
        assert np.abs(whole_pixel_points(curves[i]) - ours[1:]).max() < 1e-6
        # the other steps flip single channels of a pixel: values our curve does not have
        assert np.abs(curves[i][0::3] - ours[1:]).max() > 1e-3


def test_region_perturbation_equals_our_deletion_on_a_block_map(clf, data):
    x, y = data
    p = 4
    block = block_average(explain(clf.pixel_model, x.numpy(), y, method="gradient"), p)
    metric = quantus.RegionPerturbation(patch_size=p, order="morf", regions_evaluation=(32 // p) ** 2,
                                        perturb_baseline=FILL, disable_warnings=True)
    drops = np.asarray(metric(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=block, device="cpu"))
    for i in range(3):
        ours = insertion_deletion(clf, x[i], torch.from_numpy(block[i, 0]), int(y[i]), "rise", step=p * p,
                                  curves=("deletion",)).curves.score.to_numpy()
        assert np.abs(drops[i] - (ours[0] - ours[1:])).max() < 1e-6


def test_road_with_a_constant_fill_equals_our_pixel_flip_most_relevant_first(clf, data):
    x, y = data
    maps = explain(clf.pixel_model, x.numpy(), y, method="gradient")
    percentages = [3, 15, 30, 60, 90]
    metric = quantus.ROAD(percentages=percentages, perturb_func=road_pixels,
                          perturb_func_kwargs={"perturb_baseline": FILL}, disable_warnings=True)
    acc = metric(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=maps, device="cpu", batch_size=8)
    n_pix = road_pixel_counts(percentages, 32, 32)
    assert n_pix == [math.ceil(int(1024 * q / 100) / 3) for q in percentages]  # features of H·W → pixels
    taus = [n / 1024 for n in n_pix]
    changed = np.mean([pixel_flip(clf, x[i], -torch.from_numpy(maps[i, 0]), taus, FILL, int(y[i])).changed
                       for i in range(3)], axis=0)
    assert [acc[q] for q in percentages] == pytest.approx(list(1 - changed), abs=1e-12)


def test_road_default_imputation_runs_with_road_pixels(clf, data):
    x, y = data
    maps = explain(clf.pixel_model, x.numpy(), y, method="gradient")
    with pytest.raises(IndexError):  # Quantus 0.6 alone: feature indices used as pixel indices
        quantus.ROAD(percentages=[50], disable_warnings=True)(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y,
                                                              a_batch=maps)
    acc = quantus.ROAD(percentages=[10, 50], perturb_func=road_pixels, disable_warnings=True)(
        model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=maps)
    assert set(acc) == {10, 50} and all(0 <= v <= 1 for v in acc.values())


class DetLinear(nn.Linear):
    """A layer whose re-initialisation is deterministic: both randomisation tests draw the same weights."""

    def reset_parameters(self):
        with torch.no_grad():
            self.weight.copy_(torch.sin(torch.arange(self.weight.numel(), dtype=torch.float32) * 0.37)
                              .view_as(self.weight))
            if self.bias is not None:
                self.bias.zero_()


class DetConv(nn.Conv2d):
    def reset_parameters(self):
        with torch.no_grad():
            self.weight.copy_(torch.cos(torch.arange(self.weight.numel(), dtype=torch.float32) * 0.91)
                              .view_as(self.weight))
            if self.bias is not None:
                self.bias.fill_(0.1)


def test_mprt_equals_our_cumulative_cascade_given_the_same_draws(data):
    x, y = data
    clf = _classifier(Tiny(conv=DetConv, linear=DetLinear))
    metric = quantus.MPRT(layer_order="top_down", disable_warnings=True)
    rec = Recorder()
    scores = metric(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=None, device="cpu",
                    explain_func=rec, explain_func_kwargs={"method": "gradient"})
    assert list(scores) == ["original", "net.fc", "net.conv"] and randomised_layers(clf.pixel_model) == ["fc", "conv"]
    assert len(rec.calls) == 4  # a_batch, the original model, then one per randomised layer
    for i in range(3):
        stages, _ = cascading_randomization(clf, x[i], lambda c: get_explainer("gradient", c),
                                            layers=randomised_layers(clf.pixel_model),
                                            cascade="cumulative", target="original")
        assert stages[0]["target"] == y[i]
        ref = stages[0]["map"].abs().numpy().ravel()
        for k, (name, st) in enumerate(zip(("net.fc", "net.conv"), stages[1:])):
            assert np.array_equal(rec.calls[2 + k][i, 0], st["map"].numpy())
            rho = spearmanr(ref, st["map"].abs().numpy().ravel()).statistic
            assert abs(scores[name][i] - rho) < 1e-6


def test_numpy_trapz_context_and_curve_auc(clf, data):
    x, y = data
    maps = explain(clf.pixel_model, x.numpy(), y, method="gradient")
    kw = dict(features_in_step=64, perturb_baseline=FILL, disable_warnings=True)
    curves = quantus.PixelFlipping(**kw)(model=clf.pixel_model, x_batch=x.numpy(), y_batch=y, a_batch=maps)
    if "trapz" not in np.__dict__:  # NumPy >= 2.4: Quantus's AUC fails without the context manager
        with pytest.raises(AttributeError, match="trapz"):
            quantus.PixelFlipping(return_auc_per_sample=True, **kw)(model=clf.pixel_model, x_batch=x.numpy(),
                                                                     y_batch=y, a_batch=maps)
    had = "trapz" in np.__dict__
    with numpy_trapz():
        aucs = quantus.PixelFlipping(return_auc_per_sample=True, **kw)(model=clf.pixel_model, x_batch=x.numpy(),
                                                                        y_batch=y, a_batch=maps)
    assert ("trapz" in np.__dict__) == had
    assert aucs == pytest.approx([curve_auc(c) for c in curves], rel=1e-6)
    assert curve_auc([0.0, 1.0, 1.0], dx=0.5) == pytest.approx(0.75)
