"""LIME through the ``lime`` package, as the LEG tables ran it: mask rule, hide colour, seeding, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import BoxMeanNet, make_classifier
from lime.lime_image import ImageExplanation

from saliency_core import get_explainer
from saliency_core.methods.baselines import Lime, lime_mask


class RecordingBoxNet(BoxMeanNet):
    """BoxMeanNet that keeps every (normalised) input batch it sees."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[torch.Tensor] = []

    def forward(self, z):
        self.seen.append(z.detach().clone())
        return super().forward(z)


def _x(seed=0):
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _official_mask(segments, weights, num_features, positive_only):
    """The rule of ``get_image_and_mask(positive_only=False, num_features=k)`` stated plainly: sort the superpixels by
    |weight| (descending), take the first k, write +1 where the weight is > 0 and −1 where it is < 0."""
    ranked = sorted(range(len(weights)), key=lambda f: -abs(weights[f]))
    out = np.zeros(segments.shape)
    if positive_only:
        pos = [f for f in sorted(range(len(weights)), key=lambda f: -weights[f]) if weights[f] > 0][:num_features]
        for f in pos:
            out[segments == f] = 1
        return out
    for f in ranked[:num_features]:
        out[segments == f] = 1 if weights[f] > 0 else -1
    return out


@pytest.mark.parametrize("positive_only", [False, True])
def test_lime_mask_equals_the_package_and_the_stated_rule(positive_only):
    rng = np.random.default_rng(0)
    segments = rng.integers(0, 12, size=(16, 16))
    weights = rng.normal(size=12)
    exp = ImageExplanation(np.zeros((16, 16, 3)), segments)
    exp.local_exp[7] = sorted(enumerate(weights), key=lambda t: -abs(t[1]))  # lime stores them by |weight|
    _, pkg = exp.get_image_and_mask(7, positive_only=positive_only, num_features=5, hide_rest=False)
    ours = lime_mask(torch.from_numpy(segments), torch.from_numpy(weights), 5, positive_only).numpy()
    np.testing.assert_array_equal(ours, pkg)
    np.testing.assert_array_equal(ours, _official_mask(segments, weights, 5, positive_only))
    assert (ours != 0).sum() > 0 and set(np.unique(ours)) <= ({0, 1} if positive_only else {-1, 0, 1})


def test_official_mask_is_five_superpixels_signed_and_seeded():
    clf = make_classifier(BoxMeanNet(scale=4.0), size=32)
    x = _x()
    kw = dict(n_samples=60, num_features=5, positive_only=False, seed=3, batch_size=16)
    a = get_explainer("lime", clf, **kw).explain(x, 3)
    b = get_explainer("lime", clf, **{**kw, "batch_size": 7}).explain(x, 3)
    c = get_explainer("lime", clf, **{**kw, "seed": 4}).explain(x, 3)
    torch.testing.assert_close(a.map, b.map)
    torch.testing.assert_close(a.extras["weights"], b.extras["weights"])
    assert not torch.equal(a.extras["weights"], c.extras["weights"])
    seg, w = a.extras["segments"], a.extras["weights"]
    torch.testing.assert_close(a.map, lime_mask(seg, w, 5, False))
    assert set(a.map.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert len(seg[a.map != 0].unique()) == min(5, a.extras["n_segments"])
    # model calls: every sample once (lime's first sample is the clean image), in batches of batch_size
    assert a.n_forward == 60 and a.n_forward_calls == math.ceil(60 / 16) and a.n_backward == 0
    assert b.n_forward_calls == math.ceil(60 / 7)


def test_caffe_space_hides_with_the_imagenet_mean_colour():
    """The LEG code gives lime the caffe-preprocessed array and hide_color=0: hidden pixels are the ImageNet mean."""
    net = RecordingBoxNet(scale=4.0)
    clf = make_classifier(net, size=32)
    x = _x(1)
    ex = get_explainer("lime", clf, n_samples=20, superpixels="slic", n_segments=6, seed=0).explain(x, 3)
    seen = torch.cat(clf.net.seen)  # identity normalisation: what the net sees is the [0, 1] image
    mean_rgb = torch.tensor([123.68, 116.779, 103.939]) / 255.0
    hidden = ~torch.isclose(seen, x.expand_as(seen), atol=1e-5).all(1)  # (N, H, W) pixels that were replaced
    assert bool(hidden.any())
    torch.testing.assert_close(seen.permute(0, 2, 3, 1)[hidden], mean_rgb.expand(int(hidden.sum()), 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(seen[0:1], x, atol=1e-5, rtol=0)  # sample 0: all superpixels on = the clean image
    # whole superpixels are switched together
    seg = ex.extras["segments"]
    for k in range(ex.extras["n_segments"]):
        block = hidden[:, seg == k]
        assert bool((block.all(1) | ~block.any(1)).all())


@pytest.mark.parametrize("space", ["caffe", "model", "pixels"])
def test_spaces_round_trip(space):
    from saliency_core.models import Classifier, Preprocessing

    clf = Classifier.from_module(BoxMeanNet(), preprocess=Preprocessing(resize=32, crop=32),
                                 class_names=[str(i) for i in range(10)], name="box", canonical=False)
    e = Lime(clf, space=space)
    x = _x(2)
    back = e._from_space(e._to_space(x)[None])
    torch.testing.assert_close(back, x, atol=1e-6, rtol=0)
    zero = e._from_space(np.zeros((1, 32, 32, 3)))[0, :, 0, 0]
    expect = {"caffe": torch.tensor([123.68, 116.779, 103.939]) / 255, "model": torch.tensor([0.485, 0.456, 0.406]),
              "pixels": torch.zeros(3)}[space]
    torch.testing.assert_close(zero, expect, atol=1e-6, rtol=0)


def test_weight_map_highlights_the_box_and_bad_arguments():
    clf = make_classifier(BoxMeanNet(scale=10.0), size=32)
    x = _x()
    ex = get_explainer("lime", clf, n_samples=200, superpixels="slic", n_segments=12, seed=0).explain(x, 3)
    inbox = torch.zeros(32, 32, dtype=torch.bool)
    inbox[8:24, 8:24] = True
    assert float(ex.map[inbox].abs().mean()) > float(ex.map[~inbox].abs().mean())
    torch.testing.assert_close(ex.map, ex.extras["coefficients"])
    with pytest.raises(ValueError, match="space="):
        Lime(clf, space="bgr")
    with pytest.raises(ValueError, match="num_features="):
        Lime(clf, num_features=0)
    with pytest.raises(ValueError, match="fill="):
        Lime(clf, fill="black")
