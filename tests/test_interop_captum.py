"""Captum adapters: every registered method is a Captum attribution object that Captum's own metrics and
visualisation accept (tiny convolutional model, 32×32 images, tiny budgets)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from captum.attr import GradientAttribution, PerturbationAttribution  # noqa: E402
from captum.attr import visualization as viz  # noqa: E402
from captum.metrics import infidelity, sensitivity_max  # noqa: E402
from torch import nn  # noqa: E402

from saliency_core import available_explainers, get_explainer  # noqa: E402
from saliency_core.interop.captum import GRADIENT_METHODS, captum_class  # noqa: E402
from saliency_core.models import Classifier, Preprocessing  # noqa: E402


class Tiny(nn.Module):
    """conv 3→8 → ReLU → 4×4 average pool → linear 128→5 (every Captum method has a rule for each layer)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(128, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


#: the smallest settings that still run each method's whole algorithm on a 32×32 image
BUDGET = {
    "cshapley": dict(cell=8, max_order=2),
    "extremal_perturbation": dict(iterations=5, areas=(0.2,)),
    "gradcam": dict(layer="relu"),
    "igos": dict(iterations=3, ig_steps=2, size=8, l1=0.01),
    "igos_pp": dict(iterations=3, ig_steps=2, size=8, l1=0.01),
    "integrated_gradients": dict(n_steps=4),
    "invariant_lp": dict(patch=8, slack=0.1),  # slack weight λ·2·dim: the default λ makes r free at 32²
    "invariant_lp_smooth": dict(patch=8, slack=0.1, smooth_points=2),
    "invariant_stochastic": dict(iterations=3, n_draws=2, patch=8),
    "kernel_shap": dict(n_samples=20, n_segments=8),
    "leg": dict(n_samples=20, grid=8),
    "leg_tv": dict(n_samples=20, grid=8),
    "lime": dict(n_samples=20, n_segments=8),
    "mask": dict(iterations=3, mask_size=8),
    "occlusion": dict(window=(3, 8, 8)),
    "rise": dict(n_masks=16, cells=4),
    "rise_torchray": dict(n_masks=16, cells=4),
    "smoothgrad": dict(n_samples=3),
}
METHODS = available_explainers()


@pytest.fixture(scope="module")
def model():
    return Tiny().eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def attributions(model, images):
    """Every method's attributions of the two images for class 1 (computed once)."""
    return {m: captum_class(m)(model, **BUDGET.get(m, {})).attribute(images, target=1) for m in METHODS}


def test_every_registered_method_has_a_budget():
    assert set(BUDGET) | {"deeplift", "gradient", "guided_backprop", "lrp"} == set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_adapter_is_a_captum_attribution(method, model):
    algo = captum_class(method)(model)
    base = GradientAttribution if method in GRADIENT_METHODS else PerturbationAttribution
    assert isinstance(algo, base)
    assert algo.multiplies_by_inputs is False and algo.has_convergence_delta() is False
    assert algo.forward_func is model


def test_factory_and_module_attributes():
    from saliency_core.interop import captum as ic
    from saliency_core.interop.captum import RISE, ExtremalPerturbation, IGOSPlusPlus

    assert captum_class("extremal_perturbation") is ExtremalPerturbation
    assert captum_class("rise") is RISE and RISE.method == "rise"
    assert IGOSPlusPlus.method == "igos_pp" and IGOSPlusPlus.__module__ == "saliency_core.interop.captum"
    with pytest.raises(ValueError, match="method='nope' is not valid; accepted values: cshapley"):
        captum_class("nope")
    with pytest.raises(AttributeError):
        ic.NoSuchMethod  # noqa: B018


@pytest.mark.parametrize("method", METHODS)
def test_attributions_have_the_input_shape_and_the_map_in_every_channel(method, attributions, images):
    a = attributions[method]
    assert a.shape == images.shape and a.dtype == images.dtype and a.device == images.device
    assert torch.isfinite(a).all()
    assert torch.equal(a[:, 0], a[:, 1]) and torch.equal(a[:, 0], a[:, 2])


@pytest.mark.parametrize("method", METHODS)
def test_captum_infidelity_and_visualisation_accept_them(method, model, images, attributions):
    a = attributions[method]
    g = torch.Generator().manual_seed(2)

    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=g) * 0.03
        return noise, (inputs - noise).clamp(0, 1)

    inf = infidelity(model, perturb, images, a, target=1, n_perturb_samples=4, normalize=True)
    assert inf.shape == (2,) and torch.isfinite(inf).all() and (inf >= 0).all()
    hwc = a[0].permute(1, 2, 0).numpy().astype(np.float64)
    sign = "all" if (hwc < 0).any() and (hwc > 0).any() else "absolute_value"
    fig, ax = viz.visualize_image_attr(hwc, images[0].permute(1, 2, 0).numpy(), method="blended_heat_map",
                                       sign=sign, use_pyplot=False)
    assert ax.images, method
    matplotlib.pyplot.close(fig)


def _clipped_noise(inputs, perturb_radius=0.02):
    """Captum's default sensitivity perturbation (uniform in ±radius), kept inside [0, 1]."""
    g = torch.Generator().manual_seed(3)
    noise = (torch.rand(inputs.shape, generator=g) * 2 - 1) * perturb_radius
    return (inputs + noise).clamp(0, 1)


@pytest.mark.parametrize("method", METHODS)
def test_captum_sensitivity_max_accepts_the_attribute_method(method, model, images):
    algo = captum_class(method)(model, **BUDGET.get(method, {}))
    sens = sensitivity_max(algo.attribute, images[:1], perturb_func=_clipped_noise, n_perturb_samples=2, target=1)
    assert sens.shape == (1,) and torch.isfinite(sens).all() and (sens >= 0).all()


def test_a_classifier_gives_the_native_map(lite0_like):
    clf, module = lite0_like
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    native = get_explainer("rise", clf, n_masks=32, cells=4).explain(x, 2).map
    for forward in (clf, clf.pixel_model):
        a = captum_class("rise")(forward, n_masks=32, cells=4).attribute(x, target=2)
        assert torch.equal(a[0, 0], native)
    # a plain module that normalises inside + the same mean/std: the same map up to float rounding
    a = captum_class("rise")(module, mean=clf.preprocessing.mean, std=clf.preprocessing.std, n_masks=32,
                             cells=4).attribute(x, target=2)
    assert torch.allclose(a[0, 0], native, atol=1e-5)
    # without them removed pixels become black instead of the mean colour: a different map
    b = captum_class("rise")(module, n_masks=32, cells=4).attribute(x, target=2)
    assert not torch.allclose(b[0, 0], native, atol=1e-3)


class _Normalised(nn.Module):
    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


@pytest.fixture
def lite0_like():
    """A Classifier with a real normalisation and the same network as a [0, 1] module."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    net = Tiny(seed=5).eval()
    clf = Classifier.from_module(net, Preprocessing(resize=32, crop=32, mean=mean, std=std),
                                 [f"c{i}" for i in range(5)], canonical=False)
    return clf, _Normalised(net, mean, std).eval()


def test_settings_of_attribute_override_the_constructor(model, images):
    algo = captum_class("rise")(model, n_masks=16, cells=4, seed=0)
    a0 = algo.attribute(images[:1], target=0)
    assert torch.equal(algo.attribute(images[:1], target=0), a0)  # deterministic
    a1 = algo.attribute(images[:1], target=0, seed=1)
    assert not torch.equal(a0, a1)
    assert torch.equal(captum_class("rise")(model, n_masks=16, cells=4, seed=1).attribute(images[:1], target=0), a1)


def test_targets_one_per_image_or_none(model, images):
    algo = captum_class("gradient")(model)
    per_image = algo.attribute(images, target=torch.tensor([3, 4]))
    assert torch.equal(per_image[0], algo.attribute(images[:1], target=3)[0])
    assert torch.equal(per_image[1], algo.attribute(images[1:], target=[4])[0])
    top = model(images).argmax(1)
    assert torch.equal(algo.attribute(images), algo.attribute(images, target=top))
    with pytest.raises(ValueError, match="target has 3 entries; accepted values: one class or 2 classes"):
        algo.attribute(images, target=[1, 2, 3])


def test_gradcam_layer_as_a_module(model, images):
    by_name = captum_class("gradcam")(model, layer="relu").attribute(images, target=1)
    by_module = captum_class("gradcam")(model, layer=model.relu).attribute(images, target=1)
    assert torch.equal(by_name, by_module)


def test_show_progress_is_honoured(model, images, capsys):
    algo = captum_class("occlusion")(model, window=(3, 8, 8))
    algo.attribute(images, target=1)
    assert "Occlusion" not in capsys.readouterr().err
    algo.attribute(images, target=1, show_progress=True)
    assert "Occlusion" in capsys.readouterr().err


def test_model_is_left_as_it_was(images):
    net = Tiny().train()
    flags = [p.requires_grad for p in net.parameters()]
    before = [p.detach().clone() for p in net.parameters()]
    captum_class("extremal_perturbation")(net, **BUDGET["extremal_perturbation"]).attribute(images[:1], target=0)
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_a_plain_function_is_a_forward_func(model, images):
    a = captum_class("rise")(lambda x: model(x), n_masks=16, cells=4).attribute(images, target=1)
    b = captum_class("rise")(model, n_masks=16, cells=4).attribute(images, target=1)
    assert torch.equal(a, b)


def test_errors_are_one_line(model, images):
    algo = captum_class("rise")(model)
    with pytest.raises(ValueError, match="additional_forward_args is not valid"):
        algo.attribute(images, additional_forward_args=(1,))
    with pytest.raises(ValueError, match=r"n_mask=4 is not a parameter of method='rise' \(did you mean 'n_masks'"):
        algo.attribute(images, n_mask=4)
    with pytest.raises(ValueError, match=r"inputs has values in \[.*\]; accepted values: \[0, 1\]"):
        algo.attribute(images * 2, target=1)
    with pytest.raises(ValueError, match="model outputs probabilities"):
        captum_class("gradient")(nn.Sequential(model, nn.Softmax(1))).attribute(images, target=1)
    with pytest.raises(TypeError, match="forward_func must be a callable"):
        captum_class("rise")(3)
    with pytest.raises(ValueError, match=r"std=0 is not valid; accepted values: one positive number"):
        captum_class("rise")(model, std=0).attribute(images, target=1)
