"""Every registered method as a Captum attribution object.

::

    from saliency_core.interop.captum import ExtremalPerturbation, captum_class

    ep = ExtremalPerturbation(model, areas=(0.05,), iterations=300)     # model: [0, 1] images -> logits
    attr = ep.attribute(images, target=labels)                           # same shape as images
    RISE = captum_class("rise")                                          # any registry name

* The class of method ``name`` is named like its explainer (``ExtremalPerturbation``, ``RISE``, ``IGOSPlusPlus``,
  ``LEGTV`` ...; :func:`captum_class` takes the registry name) and subclasses
  ``captum.attr.GradientAttribution`` when the method is a gradient of the output with respect to the input
  (gradient, SmoothGrad, Integrated Gradients, Guided Backprop, DeepLift, LRP, Grad-CAM), else
  ``captum.attr.PerturbationAttribution`` (the optimised masks, the samplers, occlusion, LIME, KernelSHAP ...).
* ``forward_func`` is a callable on ``(N, 3, H, W)`` images in [0, 1] that returns logits ``(N, K)``: an
  ``nn.Module``, a function, or a :class:`~saliency_core.models.Classifier` / ``clf.pixel_model`` (then the
  classifier's own normalisation is used). ``mean``/``std`` (keywords of the constructor) tell the methods your
  model's input normalisation, so that "removed" pixels become the mean colour as in the papers (default: black;
  see :func:`saliency_core.interop.as_classifier`). The model is used in eval mode with frozen parameters and left
  as it was.
* ``attribute(inputs, target=None, show_progress=False, **settings)``: ``inputs`` ``(N, 3, H, W)`` in [0, 1];
  ``target`` one class for all images, one per image (list / 1-D tensor), or ``None`` (each image's top-1);
  ``settings`` are the method's hyper-parameters (``iterations``, ``n_masks`` ...) and override the ones given to
  the constructor. Returns a tensor of the **inputs' shape**, dtype and device: each image's (H, W) saliency map
  (higher = more relevant) **broadcast over the 3 channels** (every channel holds the same map; sum or mean over
  channels gives the map ×3 or ×1). Images are explained one at a time; ``show_progress=True`` shows a tqdm bar
  over them on stderr.
* ``multiplies_by_inputs`` is False (maps are never multiplied by the input), ``has_convergence_delta()`` is False,
  and ``additional_forward_args`` must be None (the methods call the model on images only).

Note for Captum metrics: inputs must stay in [0, 1] (a one-line error otherwise), so give ``sensitivity_max`` a
``perturb_func`` that clips to [0, 1] (Captum's default adds uniform noise and can leave the range).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum.attr import GradientAttribution, PerturbationAttribution

from ..checks import check_bool, check_image
from ..methods import available_explainers, explainer_class
from ._wrap import as_classifier, explainer_for

__all__ = ["SaliencyAttribution", "captum_class", "GRADIENT_METHODS"]

#: registry names of the methods that are gradients of the output w.r.t. the input (GradientAttribution)
GRADIENT_METHODS = frozenset({"gradient", "smoothgrad", "integrated_gradients", "guided_backprop", "deeplift", "lrp",
                              "gradcam"})


def _targets(target: Any, n: int) -> list[Any]:
    """One target per image (validated later by ``Explainer.explain``)."""
    if target is None:
        return [None] * n
    if isinstance(target, torch.Tensor):
        if target.dim() == 0 or target.numel() == 1:
            return [int(target.reshape(-1)[0])] * n
        target = target.tolist()
    elif hasattr(target, "ndim") and getattr(target, "ndim", 0) >= 1:  # NumPy array
        target = list(target.reshape(-1)) if target.size != 1 else int(target.reshape(-1)[0])
    if isinstance(target, (list, tuple)):
        if len(target) == 1:
            return list(target) * n
        if len(target) != n:
            raise ValueError(f"target has {len(target)} entries; accepted values: one class or {n} classes")
        return list(target)
    return [target] * n


class SaliencyAttribution:
    """Mixin of every adapter (module docstring); ``method`` is the registry name."""

    method: ClassVar[str] = ""

    def __init__(self, forward_func: Any, *, mean: Any = None, std: Any = None, **settings: Any) -> None:
        if not callable(forward_func):
            raise TypeError(f"forward_func must be a callable on [0, 1] images returning logits; got "
                            f"{type(forward_func).__name__}")
        self._base.__init__(self, forward_func)
        self.mean, self.std = mean, std
        self.settings = dict(settings)

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def has_convergence_delta(self) -> bool:
        return False

    def attribute(self, inputs: torch.Tensor, target: Any = None, additional_forward_args: Any = None,
                  show_progress: bool = False, **settings: Any) -> torch.Tensor:
        """Attributions of ``inputs``' shape: the method's map broadcast over channels (module docstring)."""
        if additional_forward_args is not None:
            raise ValueError("additional_forward_args is not valid for saliency_core methods (they call the model on "
                             "images only); accepted values: None")
        show_progress = check_bool("show_progress", show_progress)
        if isinstance(inputs, tuple) and len(inputs) == 1:  # Captum's metrics pass inputs as a 1-tuple
            return (self.attribute(inputs[0], target, None, show_progress, **settings),)
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor (N, 3, H, W) in [0, 1] (or a 1-tuple of it); got "
                            f"{type(inputs).__name__}")
        batch = inputs.unsqueeze(0) if inputs.dim() == 3 else inputs
        check_image(batch.detach(), "inputs", batch=True)
        clf = as_classifier(self.forward_func, batch.detach(), self.mean, self.std)
        explainer = explainer_for(self.method, clf, {**self.settings, **settings})
        targets = _targets(target, batch.shape[0])
        from tqdm.auto import tqdm

        maps = []
        with torch.enable_grad():  # Captum's sensitivity_max calls attribute under no_grad; optimisers need autograd
            for i in tqdm(range(batch.shape[0]), desc=type(self).__name__, disable=not show_progress, leave=False):
                maps.append(explainer.explain(batch[i : i + 1].detach(), targets[i]).map)
        out = torch.stack(maps).unsqueeze(1).to(device=inputs.device, dtype=inputs.dtype)
        return out.expand(-1, batch.shape[1], -1, -1).reshape(inputs.shape).contiguous()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({self.forward_func!r}{', ' if args else ''}{args})"


_CLASSES: dict[str, type] = {}


def captum_class(method: str) -> type:
    """The Captum attribution class of the method registered as ``method`` (built once, then reused)."""
    cls = explainer_class(method)  # one-line error for an unknown name
    if method not in _CLASSES:
        base = GradientAttribution if method in GRADIENT_METHODS else PerturbationAttribution
        doc = (f"Captum adapter of saliency_core method {method!r} ({cls.__module__}.{cls.__name__}): "
               f"``{cls.__name__}(forward_func, mean=None, std=None, **settings).attribute(inputs, target=None, "
               "show_progress=False, **settings)`` (see :mod:`saliency_core.interop.captum`).\n\n"
               + (cls.__doc__ or ""))
        _CLASSES[method] = type(cls.__name__, (SaliencyAttribution, base),
                                {"method": method, "_base": base, "__doc__": doc, "__module__": __name__})
    return _CLASSES[method]


for _name in available_explainers():
    globals()[explainer_class(_name).__name__] = captum_class(_name)
    __all__.append(explainer_class(_name).__name__)
del _name


def __getattr__(name: str) -> type:  # a method registered after this import
    for method in available_explainers():
        if explainer_class(method).__name__ == name:
            return captum_class(method)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
