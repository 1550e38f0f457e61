"""Baselines through Captum, in one registry: the gradient family, Occlusion, Grad-CAM, LIME, KernelSHAP.

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
        self.n_samples = check_int("n_samples", n_samples, 1)
        self.noise = check_range("noise", noise, 0.0)
        self.seed = seed
        self.batch_size = batch_size

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
        self.n_steps = check_int("n_steps", n_steps, 1)
        self.baseline = check_choice("baseline", baseline, ("black", "mean", "blur"))
        self.batch_size = batch_size

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
        self.fill = fill
        self.batch_size = batch_size

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
    an optional ridge penalty. A scikit-learn-free stand-in for Captum's ``SkLearnLinearRegression`` (KernelSHAP,
    ``ridge=0``) and for LIME's own ``Ridge(alpha=1)`` (``ridge=1``)."""
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


@register("lime")
class Lime(_SuperpixelExplainer):
    """LIME (Ribeiro et al. 2016) over superpixels, Captum ``Lime`` (cosine-kernel weighted ridge-free linear fit).

    The map is the superpixel coefficient painted on its pixels (signed). Settings from protocols.md §7:
    the LEG tables used 6000 samples and a black (``hide_color=0``) fill, and kept LIME's top-5 superpixel
    BINARY mask (``top_k=5``: the 5 largest positive coefficients → 1, every other pixel → 0).
    """

    def __init__(self, model, n_samples: int = 1000, superpixels: str = "quickshift", n_segments: int = 50,
                 fill: str = "black", seed: int = 0, top_k: int | None = None, batch_size: int = 64) -> None:
        super().__init__(model, n_samples, superpixels, n_segments, fill, seed, batch_size)
        self.top_k = None if top_k is None else check_int("top_k", top_k, 1)

    def _algo(self):
        from captum.attr import Lime as _Lime

        return _Lime(self.model.pixel_model, interpretable_model=_wls_model(ridge=1.0))  # LIME's Ridge(alpha=1)

    def _explain(self, x, target):
        sal, extras = super()._explain(x, target)
        if self.top_k is None:
            return sal, extras
        seg = extras["segments"]
        coef = torch.zeros(int(seg.max()) + 1)
        coef[seg.flatten()] = sal.flatten().cpu()  # the map is constant on each superpixel
        top = torch.argsort(-coef, stable=True)[: self.top_k]
        top = top[coef[top] > 0]
        extras["coefficients"] = sal
        return torch.isin(seg, top).float().to(sal.device), extras


@register("kernel_shap")
class KernelShap(_SuperpixelExplainer):
    """KernelSHAP (Lundberg & Lee 2017) over superpixels, Captum ``KernelShap``.

    LEG's tables: 50 SLIC segments (compactness 30, σ 3), white background, 6000 samples (protocols.md §7):
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
