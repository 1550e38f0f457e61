"""Baselines in one registry: the gradient family, Occlusion, Grad-CAM, KernelSHAP (Captum) and LIME (``lime``).

Each class wraps one Captum attribution method and returns an :class:`~saliency_core.Explanation`
whose ``map`` is the ``(H, W)`` reduction over colour channels named by ``reduce``:

* ``"abs_max"``  — max_c |A_c| (Simonyan et al. 2014, the gradient's usual heat map),
* ``"abs_mean"`` — mean_c |A_c| (PertMap's "Grad", LEG's reduction),
* ``"sum"``      — Σ_c A_c (signed; Adebayo et al.'s diverging visualisation, completeness checks),
* ``"mean"``     — mean_c A_c (signed).

The raw ``(3, H, W)`` attribution is kept in ``extras["attribution"]``.
Inputs are in [0, 1] pixel space (Captum sees :attr:`Classifier.pixel_model`).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_bool, check_choice, check_int, check_range
from ..explanation import Explainer
from .registry import register

__all__ = [
    "reduce_channels",
    "Gradient",
    "GuidedBackprop",
    "SmoothGrad",
    "IntegratedGradients",
    "DeepLift",
    "LRP",
    "Occlusion",
    "GradCAM",
    "Lime",
    "lime_mask",
    "KernelShap",
    "superpixels",
]

REDUCTIONS = ("abs_max", "abs_mean", "sum", "mean")


def reduce_channels(attr: torch.Tensor, reduce: str) -> torch.Tensor:
    """``(C, H, W)`` (or ``(1, C, H, W)``) attribution → ``(H, W)`` map (see module docstring)."""
    check_choice("reduce", reduce, REDUCTIONS)
    a = attr.squeeze(0) if attr.dim() == 4 else attr
    if reduce == "abs_max":
        return a.abs().amax(0)
    if reduce == "abs_mean":
        return a.abs().mean(0)
    if reduce == "sum":
        return a.sum(0)
    return a.mean(0)


class _CaptumExplainer(Explainer):
    """Shared plumbing: build the Captum object on the pixel model, call it, reduce channels."""

    def __init__(self, model, reduce: str = "abs_max") -> None:
        super().__init__(model)
        self.reduce = check_choice("reduce", reduce, REDUCTIONS)

    @abc.abstractmethod
    def _captum(self):
        """The Captum attribution object for :attr:`model`."""

    def _call(self, algo, x: torch.Tensor, target: int) -> torch.Tensor:
        return algo.attribute(x, target=target)

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        x = x.clone().requires_grad_(True)
        attr = self._call(self._captum(), x, target).detach()
        return reduce_channels(attr, self.reduce), {"attribution": attr.squeeze(0).cpu()}


@register("gradient")
class Gradient(_CaptumExplainer):
    """Vanilla gradient ∂f_c/∂x (Simonyan et al. 2014), Captum ``Saliency`` without abs."""

    def _captum(self):
        from captum.attr import Saliency

        return Saliency(self.model.pixel_model)

    def _call(self, algo, x, target):
        return algo.attribute(x, target=target, abs=False)


@register("guided_backprop")
class GuidedBackprop(_CaptumExplainer):
    """Guided backpropagation (Springenberg et al. 2015), Captum ``GuidedBackprop``."""

    def _captum(self):
        from captum.attr import GuidedBackprop as _GB

        return _GB(self.model.pixel_model)


@register("smoothgrad")
class SmoothGrad(_CaptumExplainer):
    """SmoothGrad (Smilkov et al. 2017): mean gradient over ``n_samples`` copies x + N(0, (noise·(max−min))²)."""

    def __init__(self, model, reduce: str = "abs_max", n_samples: int = 50, noise: float = 0.15,
                 seed: int = 0, batch_size: int = 25) -> None:
        super().__init__(model, reduce)
        self.n_samples = check_int("n_samples", n_samples, 1, 1_000_000)
        self.noise = check_range("noise", noise, 0.0)
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def _captum(self):
        from captum.attr import NoiseTunnel, Saliency

        return NoiseTunnel(Saliency(self.model.pixel_model))

    def _call(self, algo, x, target):
        torch.manual_seed(self.seed)
        stdev = self.noise * float(x.max() - x.min())
        return algo.attribute(x, target=target, nt_type="smoothgrad", nt_samples=self.n_samples,
                              nt_samples_batch_size=self.batch_size, stdevs=stdev, abs=False)


@register("integrated_gradients")
class IntegratedGradients(_CaptumExplainer):
    """Integrated Gradients (Sundararajan et al. 2017) from a constant baseline, Riemann/Gauss-Legendre steps."""

    def __init__(self, model, reduce: str = "abs_max", n_steps: int = 50, baseline: str = "black",
                 batch_size: int = 25) -> None:
        super().__init__(model, reduce)
        self.n_steps = check_int("n_steps", n_steps, 1, 100_000)
        self.baseline = check_choice("baseline", baseline, ("black", "mean", "blur"))
        self.batch_size = check_int("batch_size", batch_size, 1)

    def _captum(self):
        from captum.attr import IntegratedGradients as _IG

        return _IG(self.model.pixel_model)

    def _baseline(self, x: torch.Tensor) -> torch.Tensor:
        if self.baseline == "black":
            return torch.zeros_like(x)
        if self.baseline == "mean":
            return self.model.denormalize(torch.zeros_like(x))
        from ..perturbations import blur_baseline

        return blur_baseline(x)

    def _call(self, algo, x, target):
        return algo.attribute(x, baselines=self._baseline(x.detach()), target=target, n_steps=self.n_steps,
                              internal_batch_size=self.batch_size)


@register("deeplift")
class DeepLift(_CaptumExplainer):
    """DeepLIFT rescale rule (Shrikumar et al. 2017), Captum ``DeepLift``, black baseline."""

    def _captum(self):
        from captum.attr import DeepLift as _DL

        return _DL(self.model.pixel_model)

    def _call(self, algo, x, target):
        return algo.attribute(x, baselines=torch.zeros_like(x), target=target)


@register("lrp")
class LRP(_CaptumExplainer):
    """Layer-wise relevance propagation, ε-rule (Bach et al. 2015), Captum ``LRP``.

    Captum's LRP supports Conv2d, Linear, pooling and BatchNorm2d layers and ReLU/Dropout/Tanh
    non-linearities; a network with any other layer (e.g. ``ZeroPad2d`` in EfficientNet's "same" padding)
    raises a ``ValueError`` naming the unsupported layer type.
    """

    def _captum(self):
        from captum.attr import LRP as _LRP

        return _LRP(self.model.pixel_model)

    def _call(self, algo, x, target):
        from captum.attr._core import lrp as _lrp

        known = tuple(_lrp.SUPPORTED_LAYERS_WITH_RULES) + tuple(_lrp.SUPPORTED_NON_LINEAR_LAYERS)
        leaves = [m for m in self.model.net.modules() if not list(m.children())]
        bad = sorted({type(m).__name__ for m in leaves if not isinstance(m, known) and not hasattr(m, "rule")})
        if bad:
            n_bad = sum(type(m).__name__ in bad for m in leaves)
            raise ValueError(f"method='lrp' is not supported for model={self.model.name!r}: Captum's LRP has no "
                             f"rule for layer type(s) {', '.join(bad)} ({n_bad} layers); accepted values: networks "
                             "built from Conv2d, Linear, BatchNorm2d, pooling, ReLU, Dropout, Tanh")
        try:
            return algo.attribute(x, target=target)
        except TypeError as exc:
            raise ValueError(f"method='lrp' is not supported for model={self.model.name!r}: {exc}") from None


@register("occlusion")
class Occlusion(_CaptumExplainer):
    """Occlusion (Zeiler & Fergus 2014): output drop when a ``window`` patch is set to ``fill``.

    ``window`` is in Captum's (C, H, W) order; DeepExplain's (H, W, C) order, e.g. Ikeno & Hara's (12, 12, 3),
    is accepted and converted. ``stride`` defaults to the window (non-overlapping patches).
    """

    def __init__(self, model, reduce: str = "abs_max", window: tuple[int, int, int] = (3, 12, 12),
                 stride: tuple[int, int, int] | None = None, fill: float = 0.5, batch_size: int = 64) -> None:
        super().__init__(model, reduce)
        self.window = tuple(check_int(f"window[{i}]", w, 1) for i, w in enumerate(window))
        if len(self.window) == 3 and self.window[2] == 3 and self.window[0] != 3:
            self.window = (3, self.window[0], self.window[1])  # DeepExplain's (H, W, C), e.g. (12, 12, 3)
        if len(self.window) != 3 or min(self.window) < 1:
            raise ValueError(f"window={window!r} is not valid; accepted values: (channels, height, width) >= 1")
        self.stride = (tuple(check_int(f"stride[{i}]", s, 1) for i, s in enumerate(stride)) if stride is not None
                       else self.window)
        self.fill = check_range("fill", fill, 0.0, 1.0)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def min_input_size(self) -> int:
        """The occlusion window must fit in the image."""
        return max(super().min_input_size(), self.window[1], self.window[2])

    def _captum(self):
        from captum.attr import Occlusion as _Occ

        return _Occ(self.model.pixel_model)

    def _call(self, algo, x, target):
        return algo.attribute(x, sliding_window_shapes=self.window, strides=self.stride, baselines=self.fill,
                              target=target, perturbations_per_eval=self.batch_size)


@register("gradcam")
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_k α_k A^k), α_k = mean spatial gradient, bilinearly upsampled.

    ``layer`` defaults to the model's ``gradcam_layer``. The map is max-normalised (LEG's GradCam.py).
    """

    def __init__(self, model, layer: str | None = None, relu: bool = True, normalize: bool = True) -> None:
        super().__init__(model)
        self.layer = layer if layer is not None else model.gradcam_layer
        if self.layer is None:
            raise ValueError("layer=None is not valid for this model; accepted values: a module name of model.net")
        model.layer(self.layer)  # a one-line error now, not at the first explain()
        self.relu = check_bool("relu", relu)
        self.normalize = check_bool("normalize", normalize)

    def _explain(self, x, target):
        from captum.attr import LayerGradCam

        algo = LayerGradCam(self.model.pixel_model, self.model.layer(self.layer))
        cam = algo.attribute(x, target=target, relu_attributions=self.relu).detach()
        raw = cam.squeeze().cpu()
        up = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        if self.normalize and float(up.max()) > 0:
            up = up / up.max()
        return up, {"cam": raw}


# --------------------------------------------------------------------------------------------
# superpixel-based: LIME, KernelSHAP
# --------------------------------------------------------------------------------------------
def superpixels(x: torch.Tensor, kind: str = "quickshift", n_segments: int = 50, compactness: float = 30.0,
                sigma: float = 3.0) -> torch.Tensor:
    """Superpixel labels ``(H, W)`` (int64, 0..K−1) of an image ``(1, 3, H, W)`` in [0, 1] via scikit-image.

    ``quickshift`` uses LIME's defaults (kernel_size 4, max_dist 200, ratio 0.2);
    ``slic`` uses ``n_segments``, ``compactness`` and ``sigma`` (LEG's KernelSHAP: 50, 30, 3).
    """
    from skimage.segmentation import quickshift, slic

    check_choice("superpixels", kind, ("quickshift", "slic"))
    img = x.detach().squeeze(0).permute(1, 2, 0).cpu().double().numpy()
    if kind == "quickshift":
        seg = quickshift(img, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    else:
        seg = slic(img, n_segments=n_segments, compactness=compactness, sigma=sigma, start_label=0)
    _, seg = np.unique(seg, return_inverse=True)
    return torch.from_numpy(seg.reshape(img.shape[:2]).astype(np.int64))


class _SuperpixelExplainer(Explainer):
    def __init__(self, model, n_samples: int = 1000, superpixels: str = "quickshift", n_segments: int = 50,
                 fill: str = "black", seed: int = 0, batch_size: int = 64) -> None:
        super().__init__(model)
        self.n_samples = check_int("n_samples", n_samples, 1, 1_000_000)
        self.superpixels = check_choice("superpixels", superpixels, ("quickshift", "slic"))
        self.n_segments = check_int("n_segments", n_segments, 1)
        self.fill = check_choice("fill", fill, ("black", "white", "mean"))
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)

    @abc.abstractmethod
    def _algo(self):
        """The Captum surrogate-model attribution (Lime or KernelShap) for :attr:`model`."""

    def _explain(self, x, target):
        seg = superpixels(x, self.superpixels, self.n_segments).to(x.device)
        fill = {"black": torch.zeros_like(x), "white": torch.ones_like(x),
                "mean": x.mean(dim=(2, 3), keepdim=True).expand_as(x)}[self.fill]
        torch.manual_seed(self.seed)
        algo = self._algo()
        attr = algo.attribute(x, baselines=fill, target=target, feature_mask=seg[None, None].expand_as(x),
                              n_samples=self.n_samples, perturbations_per_eval=self.batch_size,
                              show_progress=False)
        attr = attr.detach()
        return attr[0, 0], {"segments": seg.cpu(), "n_segments": int(seg.max()) + 1}


def _wls_model(ridge: float = 0.0):
    """Captum interpretable model fitted in closed form: weighted least squares with an unpenalised intercept and
    an optional ridge penalty; a stand-in for Captum's ``SkLearnLinearRegression`` (KernelSHAP, ``ridge=0``).
    (LIME uses the ``lime`` package itself, with its own ``Ridge(alpha=1)``.)"""
    from captum._utils.models.linear_model import LinearModel

    def train(model, dataloader, construct_kwargs=None, **_: Any) -> dict[str, float]:
        xs, ys, ws = [], [], []
        for data in dataloader:
            xs.append(data[0].double().reshape(data[0].shape[0], -1))
            ys.append(data[1].double().reshape(-1))
            ws.append(data[2].double().reshape(-1) if len(data) == 3 else torch.ones(data[0].shape[0]).double())
        X, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
        Xc = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], 1)
        A = Xc.T @ (w[:, None] * Xc)
        A = A + ridge * torch.diag(torch.cat([torch.ones(X.shape[1]), torch.zeros(1)]).double())
        beta = torch.linalg.pinv(A) @ (Xc.T @ (w * y))
        model._construct_model_params(norm_type=None, weight_values=beta[:-1].view(1, -1).float(),
                                      bias_value=beta[-1:].float())
        return {"train_time": 0.0}

    return LinearModel(train_fn=train)


#: Keras VGG19 "caffe" preprocessing, the array the LEG code hands to ``lime``: BGR, 0-255, ImageNet mean removed
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
LIME_SPACES = ("caffe", "model", "pixels")


def lime_mask(segments: torch.Tensor, weights: torch.Tensor, num_features: int = 5,
              positive_only: bool = False) -> torch.Tensor:
    """``lime``'s ``get_image_and_mask(label, positive_only, num_features, hide_rest=False)`` mask, re-stated.

    ``weights`` (K,) are the superpixel weights of one label (``extras["weights"]`` of :class:`Lime`).
    ``positive_only=False``: the ``num_features`` superpixels with the largest |weight| (ties in superpixel order)
    get +1 where the weight is positive and −1 where it is negative; ``positive_only=True``: the ``num_features``
    largest positive weights get 1. Everything else is 0.
    """
    w = torch.as_tensor(weights, dtype=torch.float64).cpu()
    seg = torch.as_tensor(segments).cpu()
    if positive_only:
        order = torch.argsort(-w, stable=True)
        chosen = [int(k) for k in order if float(w[k]) > 0][:num_features]
    else:
        chosen = [int(k) for k in torch.argsort(-w.abs(), stable=True)[:num_features]]
    value = torch.zeros_like(w)
    for k in chosen:
        value[k] = 1.0 if positive_only else (1.0 if float(w[k]) > 0 else -1.0 if float(w[k]) < 0 else 0.0)
    return value[seg].float()


@register("lime")
class Lime(Explainer):
    """LIME (Ribeiro et al. 2016) with the ``lime`` package itself, as the LEG tables ran it (appendix §7).

    ``LimeImageExplainer(kernel_width, random_state=seed).explain_instance(image, classifier_fn,
    labels=(target,), top_labels=None, hide_color=fill, num_samples=n_samples, batch_size=batch_size)``:
    lime's quickshift superpixels (kernel_size 4, max_dist 200, ratio 0.2), random on/off coalitions, cosine
    distances with the exponential kernel of width 0.25, ``Ridge(alpha=1)``; ``classifier_fn`` returns the
    model's softmax. With ``num_features`` set, the map is lime's ``get_image_and_mask(target,
    positive_only=positive_only, num_features=num_features, hide_rest=False)`` mask — the LEG tables use
    ``num_features=5, positive_only=False``: the 5 superpixels with the largest |weight|, +1 / −1 by the sign of
    the weight. With ``num_features=None`` the map is every superpixel's weight painted on its pixels (signed).

    **The array lime sees** (``space``). The LEG code hands lime the *preprocessed* image of Keras VGG19
    (``"caffe"``: BGR, 0-255, ImageNet mean subtracted) and hides superpixels with ``hide_color=0``, i.e. with the
    ImageNet mean colour. ``space="caffe"`` (default) reproduces both for any model: lime segments and perturbs
    that array, and ``classifier_fn`` maps it back to [0, 1] RGB before our model's own preprocessing.
    Quickshift's Lab conversion on that 0-255, mean-free array yields many small superpixels (hundreds at 224²,
    against ~35 on the [0, 1] image). ``"model"``: the model's own normalised input (0 = its normalisation mean);
    ``"pixels"``: the [0, 1] image (0 = black).

    Parameters
    ----------
    n_samples : int
        Perturbed samples (lime's ``num_samples``; LEG tables: 6000).
    superpixels : {"quickshift", "slic"}
        lime's quickshift defaults (official), or SLIC with ``n_segments`` on the [0, 1] image (small tests).
    space : {"caffe", "model", "pixels"}
        The array lime segments and perturbs (see above).
    fill : {"zero", "segment_mean"}
        ``hide_color=0`` in ``space`` (official) or lime's ``hide_color=None`` (each superpixel's mean colour).
    kernel_width : float
        Width of lime's exponential kernel on the cosine distance (lime's default 0.25).
    num_features, positive_only :
        ``get_image_and_mask`` arguments (see above); None = the weight map.
    seed : int
        ``random_state`` of the explainer (coalitions; quickshift is deterministic).

    Extras: ``segments`` (H, W), ``n_segments``, ``weights`` (K,) per superpixel, ``intercept``, ``score`` (R² of
    the local fit), ``coefficients`` (H, W) the weight map; :func:`lime_mask` rebuilds any mask from them.
    """

    def __init__(self, model, n_samples: int = 1000, superpixels: str = "quickshift", n_segments: int = 50,
                 space: str = "caffe", fill: str = "zero", kernel_width: float = 0.25, num_features: int | None = None,
                 positive_only: bool = False, seed: int = 0, batch_size: int = 64) -> None:
        super().__init__(model)
        self.n_samples = check_int("n_samples", n_samples, 1, 1_000_000)
        self.superpixels = check_choice("superpixels", superpixels, ("quickshift", "slic"))
        self.n_segments = check_int("n_segments", n_segments, 1)
        self.space = check_choice("space", space, LIME_SPACES)
        self.fill = check_choice("fill", fill, ("zero", "segment_mean"))
        self.kernel_width = float(check_range("kernel_width", kernel_width, 0.0, low_inclusive=False))
        self.num_features = None if num_features is None else check_int("num_features", num_features, 1)
        self.positive_only = check_bool("positive_only", positive_only)
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def _to_space(self, x: torch.Tensor) -> np.ndarray:
        """(1, 3, H, W) [0, 1] → (H, W, 3) float64 array lime works on."""
        if self.space == "model":
            x = self.model.normalize(x)
        img = x[0].detach().permute(1, 2, 0).cpu().double().numpy()
        if self.space == "caffe":
            img = img[..., ::-1] * 255.0 - np.asarray(CAFFE_MEAN_BGR)
        return np.ascontiguousarray(img)

    def _from_space(self, imgs: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) arrays in ``space`` → (B, 3, H, W) float32 [0, 1] RGB on the model's device."""
        a = np.asarray(imgs, dtype=np.float64)
        if self.space == "caffe":
            a = (a + np.asarray(CAFFE_MEAN_BGR))[..., ::-1] / 255.0
        xb = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().to(self.model.device)
        return self.model.denormalize(xb) if self.space == "model" else xb

    def _explain(self, x, target):
        import lime.lime_image as li

        image = self._to_space(x)

        def classifier_fn(imgs: np.ndarray) -> np.ndarray:
            xb = self._from_space(imgs)
            return self.model.logits(xb, batch_size=self.batch_size).double().softmax(1).cpu().numpy()

        seg_fn = None
        if self.superpixels == "slic":
            seg = superpixels(x, "slic", self.n_segments).numpy()
            seg_fn = lambda _img: seg  # noqa: E731  (segments of the [0, 1] image, 0-based as lime requires)
        explainer = li.LimeImageExplainer(kernel_width=self.kernel_width, random_state=self.seed)
        tqdm_orig = li.tqdm
        li.tqdm = lambda it, *a, **k: it  # lime 0.2.0.1 always draws a progress bar over the samples
        try:
            exp = explainer.explain_instance(image, classifier_fn, labels=(target,), top_labels=None,
                                             hide_color=0 if self.fill == "zero" else None,
                                             num_samples=self.n_samples, batch_size=self.batch_size,
                                             segmentation_fn=seg_fn)
        finally:
            li.tqdm = tqdm_orig
        segments = torch.from_numpy(np.asarray(exp.segments).astype(np.int64))
        k = int(segments.max()) + 1
        weights = torch.zeros(k, dtype=torch.float64)
        for f, wgt in exp.local_exp[target]:
            weights[int(f)] = float(wgt)
        coef = weights[segments].float()
        if self.num_features is None:
            sal = coef
        else:
            _, mask = exp.get_image_and_mask(target, positive_only=self.positive_only,
                                             num_features=self.num_features, hide_rest=False)
            sal = torch.from_numpy(np.asarray(mask, dtype=np.float32))
        return sal.to(x.device), {"segments": segments, "n_segments": k, "weights": weights,
                                  "intercept": float(exp.intercept[target]), "score": float(exp.score),
                                  "coefficients": coef}


@register("kernel_shap")
class KernelShap(_SuperpixelExplainer):
    """KernelSHAP (Lundberg & Lee 2017) over superpixels, Captum ``KernelShap``.

    LEG's tables: 50 SLIC segments (compactness 30, σ 3), white background, 6000 samples (appendix §7):
    ``KernelShap(model, superpixels="slic", fill="white", n_samples=6000)``.
    """

    def __init__(self, model, n_samples: int = 1000, superpixels: str = "slic", n_segments: int = 50,
                 fill: str = "white", seed: int = 0, batch_size: int = 64) -> None:
        super().__init__(model, n_samples, superpixels, n_segments, fill, seed, batch_size)

    def _algo(self):
        from captum.attr import KernelShap as _KS

        algo = _KS(self.model.pixel_model)
        algo.interpretable_model = _wls_model(ridge=0.0)  # exact WLS (Captum's default needs scikit-learn)
        return algo
