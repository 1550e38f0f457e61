"""Models: embedded default accuracy, preprocessing, canonicalisation for Captum, torchvision path, bad inputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import saliency_core as sc
from saliency_core.models import ReLU6, canonicalize


def test_lite0_top1_on_embedded_photos(lite0, embedded, lite0_batch):
    pred = lite0.logits(lite0_batch).argmax(1)
    correct = sum(int(p) == r.label for p, r in zip(pred, embedded))
    assert correct >= 17, f"Lite0 top-1 on the 20 embedded photos: {correct}/20"


def test_preprocessing_shape_range_and_tf_normalisation(lite0, embedded):
    x = lite0.preprocess(embedded[0].image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    p = lite0.preprocessing
    assert p.interpolation == "bicubic" and (p.resize, p.crop) == (256, 224)
    z = lite0.normalize(torch.full((1, 3, 2, 2), 127 / 255))
    assert torch.allclose(z, torch.zeros_like(z), atol=1e-6)
    z = lite0.normalize(torch.ones(1, 3, 1, 1))
    assert torch.allclose(z, torch.ones_like(z), atol=1e-6)  # (1 - 127/255) / (128/255)


def test_canonical_network_matches_original_and_has_no_shared_activation(lite0):
    from efficientnet_lite_pytorch import EfficientNet

    raw = EfficientNet.from_name("efficientnet-lite0")
    raw.load_state_dict(lite0.net.state_dict(), strict=False)
    # the canonical net's parameters carry the same names as the original
    assert set(raw.state_dict()) == set(lite0.net.state_dict())
    raw.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(raw(x), lite0.net(x), atol=1e-4)
    acts = [m for m in lite0.net.modules() if isinstance(m, nn.ReLU)]
    assert all(isinstance(m, ReLU6) for m in acts) and len(acts) == len({id(m) for m in acts})
    calls = [n.target for n in lite0.net.graph.nodes if n.op == "call_module"]
    relu_calls = [t for t in calls if isinstance(lite0.net.get_submodule(t), nn.ReLU)]
    assert len(relu_calls) == len(set(relu_calls)), "an activation module is called more than once"


def test_guided_backprop_differs_from_gradient(lite0, lite0_batch):
    x = lite0_batch[:1]
    g = sc.get_explainer("gradient", lite0).explain(x).extras["attribution"]
    gb = sc.get_explainer("guided_backprop", lite0).explain(x).extras["attribution"]
    # before canonicalisation Captum hooked no activation and returned the plain gradient (relative difference 0)
    rel = float((g - gb).norm() / g.norm())
    assert rel > 0.1, rel


def test_deeplift_completeness(lite0, lite0_batch):
    x = lite0_batch[1:2]
    e = sc.get_explainer("deeplift", lite0, reduce="sum").explain(x)
    logits = lite0.logits(torch.cat([x, torch.zeros_like(x)]))
    delta = float(logits[0, e.target] - logits[1, e.target])
    total = float(e.extras["attribution"].sum())
    assert abs(total - delta) <= 1e-3 * max(1.0, abs(delta)), (total, delta)


def test_explainers_leave_model_unmutated(lite0, lite0_batch):
    before = lite0.state_fingerprint()
    for name in ("gradient", "guided_backprop", "deeplift", "gradcam"):
        sc.get_explainer(name, lite0).explain(lite0_batch[:1])
    assert lite0.state_fingerprint() == before


def test_pass_counter_counts_images(lite0, lite0_batch):
    e = sc.get_explainer("integrated_gradients", lite0, n_steps=8, batch_size=4).explain(lite0_batch[:1])
    assert e.n_forward >= 8 and e.n_backward >= 8
    assert e.n_forward_calls >= 2  # 8 path points in batches of 4


def test_random_init_vgg16_path():
    clf = sc.load_model("vgg16", weights="random")
    assert clf.gradcam_layer == "features.29"
    assert clf.layer_order[0] == "classifier.6" and clf.layer_order[-1] == "features.0"
    x = torch.rand(1, 3, 64, 64)
    assert clf(x).shape == (1, 1000)
    e = sc.get_explainer("gradient", clf).explain(torch.rand(1, 3, 64, 64))
    assert e.map.shape == (64, 64)


def test_vgg_weight_file_roundtrip(tmp_path):
    import torchvision

    torch.manual_seed(1)
    m = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in m.state_dict().items()}}, path)
    clf = sc.load_model("vgg16", weights=str(path))
    assert torch.equal(clf.layer("classifier.6").weight, m.classifier[6].weight)


def test_resnet50_layers_random():
    clf = sc.load_model("resnet50", weights="random")
    # the canonical (traced) network never calls the Sequential layer4: Grad-CAM hooks its last block's output ReLU
    assert clf.gradcam_layer == "layer4.2.relu_3" and clf.layer_order[0] == "fc"
    seen = []
    handle = clf.layer(clf.gradcam_layer).register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        clf.logits(torch.rand(1, 3, 64, 64))
    finally:
        handle.remove()
    assert seen == [(1, 2048, 2, 2)]
    e = sc.get_explainer("gradcam", clf).explain(torch.rand(3, 64, 64), target=1)
    assert e.map.shape == (64, 64) and bool(torch.isfinite(e.map).all()) and clf.min_input_size == 32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "alexnet"}, "model='alexnet' is not valid; accepted values"),
        ({"name": "vgg19"}, "needs a weight file: pass weights="),
        ({"name": "vgg19", "weights": "/nonexistent/vgg19.pth"}, "no such file"),
        ({"name": "efficientnet_lite0", "device": "tpu"}, "device='tpu' is not valid"),
    ],
)
def test_load_model_errors(kwargs, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        sc.load_model(**kwargs)


def test_corrupt_weight_file(tmp_path):
    p = tmp_path / "bad.pth"
    p.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="could not be read as a state_dict"):
        sc.load_model("resnet50", weights=str(p))


def test_weights_only_refuses_pickled_code(tmp_path):
    import os

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    p = tmp_path / "evil.pth"
    torch.save({"conv1.weight": Evil()}, p)
    for name in ("resnet50", "efficientnet_lite0"):
        with pytest.raises(ValueError, match=r"weights='.*evil.pth' could not be read as a state_dict"):
            sc.load_model(name, weights=str(p))
    assert not marker.exists(), "loading a weight file ran code"


def test_canonicalize_splits_reused_modules():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.act = nn.ReLU6()

        def forward(self, x):
            return self.act(self.a(self.act(x)))

    m = Shared()
    gm = canonicalize(m)
    x = torch.randn(3, 4) * 10
    assert torch.allclose(gm(x), m(x))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert len(targets) == len(set(targets))
    assert isinstance(m.act, nn.ReLU6), "the original module must not be modified"


def test_from_module_and_bad_targets(box_classifier):
    e = sc.get_explainer("gradient", box_classifier).explain(torch.rand(3, 32, 32), target=3)
    assert e.map.shape == (32, 32)
    inside = e.map[8:24, 8:24].mean()
    outside = e.map.clone()
    outside[8:24, 8:24] = 0
    assert inside > 0 and float(outside.max()) == 0.0
    with pytest.raises(ValueError, match="target=10 is not valid"):
        sc.get_explainer("gradient", box_classifier).explain(torch.rand(3, 32, 32), target=10)
    with pytest.raises(ValueError, match="x has shape"):
        sc.get_explainer("gradient", box_classifier).explain(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="method='nope' is not valid"):
        sc.get_explainer("nope", box_classifier)


def test_captum_style_attribute(box_classifier):
    a = sc.get_explainer("gradient", box_classifier).attribute(torch.rand(2, 3, 32, 32), target=3)
    assert a.shape == (2, 1, 32, 32)


def test_symmetric_same_padding_folds_into_the_conv_bitwise():
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    raw = EfficientNet.from_name("efficientnet-lite0").eval()
    canon = canonicalize(raw)
    pads = [m.padding for m in canon.modules() if isinstance(m, nn.ZeroPad2d)]
    # only the asymmetric "same" paddings of the stride-2 layers stay explicit
    assert pads and all(p[0] != p[1] or p[2] != p[3] for p in pads)
    assert any(isinstance(m, nn.Conv2d) and m.padding != (0, 0) for m in canon.modules())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(raw(x), canon(x))


def test_memory_format_choice_and_equal_outputs(lite0, lite0_batch):
    conv = next(m for m in lite0.net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert lite0.memory_format == "auto"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # "auto" on CPU
    plain = sc.Classifier(net=copy.deepcopy(lite0.net), name="plain", preprocessing=lite0.preprocessing,
                          class_names=lite0.class_names, weights_id="x", memory_format="contiguous")
    conv2 = next(m for m in plain.net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv2.weight.is_contiguous()
    x = lite0_batch[:2]
    with torch.no_grad():
        torch.testing.assert_close(plain(x), lite0(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="memory_format"):
        sc.Classifier(net=nn.Identity(), name="bad", preprocessing=lite0.preprocessing, class_names=["a"],
                      weights_id="x", memory_format="nhwc")


# ----------------------------------------------------------------------------------------------------------------
# every registered explainer on every named model (#17 item 8), random weights, 32 px, tiny budgets
# ----------------------------------------------------------------------------------------------------------------
_NAMED = {"efficientnet_lite0": None, "resnet50": "random", "vgg16": "random", "vgg19": "random"}
#: (model, method) pairs that must fail with a clear one-line error instead of a map
_UNSUPPORTED = {("efficientnet_lite0", "lrp"): r"Captum's LRP has no rule for layer type\(s\) ZeroPad2d"}
#: vgg19 repeats vgg16's family (~30 s more): Grad-CAM only by default, every method with SALIENCY_SLOW_TESTS=1
_FULL_VGG19 = bool(__import__("os").environ.get("SALIENCY_SLOW_TESTS"))


@pytest.fixture(scope="module")
def named_models():
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache.clear()  # one large network in memory at a time
            cache[name] = sc.load_model(name, weights=_NAMED[name])
        return cache[name]

    return get


def _matrix():
    from tests.helpers import FAST_SETTINGS

    for model in _NAMED:
        for method in sorted(FAST_SETTINGS):
            if model == "vgg19" and not _FULL_VGG19 and method != "gradcam":
                continue
            yield model, method


@pytest.mark.parametrize("model, method", list(_matrix()))
def test_every_explainer_on_every_named_model(named_models, model, method):
    from tests.helpers import fast_explainer, tiny_image

    clf = named_models(model)
    assert clf.min_input_size == 32
    fp = clf.state_fingerprint()
    x = tiny_image(32)
    if (model, method) in _UNSUPPORTED:
        with pytest.raises(ValueError, match=_UNSUPPORTED[(model, method)]):
            fast_explainer(method, clf).explain(x, 1)
    else:
        e = fast_explainer(method, clf).explain(x, 1)
        assert tuple(e.map.shape) == (32, 32) and bool(torch.isfinite(e.map).all()) and e.target == 1
        if method == "gradcam":  # the hooked layer saw the pass (at 32 px its output is 1×1: the CAM is one value)
            assert e.extras["cam"].numel() >= 1 and bool(torch.isfinite(e.extras["cam"]).all())
    assert clf.state_fingerprint() == fp
    with pytest.raises(ValueError, match=r"x has shape \(3, 16, 16\); accepted values: images of at least 32×32"):
        fast_explainer(method, clf).explain(torch.rand(3, 16, 16), 1)


@pytest.mark.parametrize("name, arch", [("efficientnet_lite0", "efficientnet_lite0"), ("vgg16", "torchvision vgg16"),
                                        ("vgg19", "torchvision vgg19"), ("resnet50", "torchvision resnet50")])
def test_wrong_architecture_state_dict_is_one_line_for_every_named_model(tmp_path, name, arch):
    import torchvision

    p = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), p)
    with pytest.raises(ValueError) as info:
        sc.load_model(name, weights=str(p))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"weights='{p}' is not a state_dict of {arch}: ")
    assert "missing keys (e.g. " in msg and f"accepted values: a state_dict saved from the same architecture ({arch})" \
        in msg


def test_state_dict_without_num_batches_tracked_loads(tmp_path):
    import torchvision

    torch.manual_seed(3)
    m = torchvision.models.resnet50(weights=None)
    sd = {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}  # old torch versions
    torch.save(sd, tmp_path / "old.pth")
    clf = sc.load_model("resnet50", weights=str(tmp_path / "old.pth"))
    assert torch.equal(clf.layer("fc").weight, m.fc.weight)
