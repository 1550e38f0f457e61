"""A reader's model as a :class:`~saliency_core.models.Classifier`, without copying it.

The adapters (Captum, Quantus) receive the model the way those libraries pass it around: a callable on
``(N, 3, H, W)`` images in [0, 1] that returns logits ``(N, K)`` — usually an ``nn.Module``, sometimes a plain
function, and for Quantus's randomisation test a deep copy with re-initialised layers. :func:`as_classifier` wraps
it as it is:

* a :class:`Classifier` is used as it is, and so is ``clf.pixel_model`` (or a deep copy of it): the wrapped
  classifier keeps its own normalisation, layer names and Grad-CAM layer, so the adapter's maps are the native maps;
* any other callable becomes a Classifier whose normalisation is ``mean``/``std`` (default 0/1, i.e. none): methods
  that remove pixels "to zero in the normalised space" (RISE masks, occlusion and deletion to the mean colour)
  remove them to ``mean`` — pass your model's input normalisation to get the papers' behaviour, keep the default to
  remove pixels to black. The network is then ``z ↦ model(z·std + mean)``; with the default normalisation and an
  ``nn.Module`` it is the module itself, so layer names (``layer=`` of Grad-CAM) are the module's own.

Nothing is copied and nothing is changed: the module stays on its device and memory format, every training flag
is restored after construction, and methods run it in eval mode with frozen parameters (``Classifier.guard``) and
restore it afterwards. The wrapped classifier has no weights hash (``weights_id`` names the object, not its
content), so its results must never go into the result store; the adapters never use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..explanation import Explainer
from ..methods import get_explainer
from ..models import Classifier, Preprocessing

__all__ = ["as_classifier", "explainer_for"]


def _native(model: Any) -> Classifier | None:
    """The Classifier behind ``clf.pixel_model`` (also behind a deep copy of it), else None."""
    clf = getattr(model, "_clf", None)
    if isinstance(model, nn.Module) and isinstance(clf, Classifier) and getattr(model, "net", None) is clf.net:
        return clf
    return None


def _triple(name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3))
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in vals):
        kind = "positive" if positive else "finite"
        raise ValueError(f"{name}={value!r} is not valid; accepted values: one {kind} number or three (R, G, B)")
    return vals  # type: ignore[return-value]


class _Denormalized(nn.Module):
    """``z ↦ model(z·std + mean)``: the reader's model seen from the normalised space of the wrapping Classifier."""

    def __init__(self, model: Callable, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        if isinstance(model, nn.Module):
            self.model = model
        else:  # a plain function: not a sub-module
            object.__setattr__(self, "model", model)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z * self.std.to(z) + self.mean.to(z))


def _device_and_layout(net: nn.Module, fallback: torch.device) -> tuple[torch.device, str]:
    params = list(net.parameters())
    device = params[0].device if params else fallback
    four_d = next((p for p in params if p.dim() == 4), None)
    cl = four_d is not None and not four_d.is_contiguous() and four_d.is_contiguous(memory_format=torch.channels_last)
    return device, ("channels_last" if cl else "contiguous")


def as_classifier(model: Any, example: torch.Tensor, mean: Sequence[float] | float | None = None,
                  std: Sequence[float] | float | None = None) -> Classifier:
    """Wrap ``model`` (module docstring) for images shaped like ``example`` ``(N, 3, H, W)``.

    The number of classes is read off one forward pass on ``example[:1]`` in eval mode (gradient-free).
    """
    if isinstance(model, Classifier) or _native(model) is not None:
        if mean is not None or std is not None:
            raise ValueError("mean/std are not valid for a saliency_core Classifier (it normalises itself); "
                             "accepted values: None")
        return model if isinstance(model, Classifier) else _native(model)
    if not callable(model):
        raise TypeError(f"model must be a callable on (N, 3, H, W) images in [0, 1] returning logits; got "
                        f"{type(model).__name__}")
    m = _triple("mean", 0.0 if mean is None else mean, positive=False)
    s = _triple("std", 1.0 if std is None else std, positive=True)
    identity = m == (0.0, 0.0, 0.0) and s == (1.0, 1.0, 1.0)
    net = model if (identity and isinstance(model, nn.Module)) else _Denormalized(model, m, s)
    device, layout = _device_and_layout(net, example.device)
    net.to(device)  # buffers of the wrapper only: the reader's parameters are already there
    modes = [(mod, mod.training) for mod in net.modules()]
    size = int(example.shape[-1])
    layers = [n for n, mod in net.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))][::-1]
    try:
        clf = Classifier(net=net, name=getattr(type(model), "__name__", "model"),
                         preprocessing=Preprocessing(resize=size, crop=size, mean=m, std=s), class_names=[],
                         weights_id=f"unhashed-{id(model):x}", layer_order=layers, device=device, memory_format=layout)
        with clf.guard(), torch.no_grad():
            out = clf.forward(example[:1].to(device, torch.float32))
    finally:
        for mod, flag in modes:
            mod.training = flag
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model returns {shape}; accepted values: a tensor of logits (N, K)")
    clf.class_names = [str(i) for i in range(out.shape[1])]
    return clf


def _layer_name(clf: Classifier, layer: Any) -> Any:
    """A module passed as ``layer`` (Captum's LayerGradCam style) → its name in ``clf.net``."""
    if not isinstance(layer, nn.Module):
        return layer
    for name, mod in clf.net.named_modules():
        if mod is layer and name:
            return name
    raise ValueError("layer is not a sub-module of the model; accepted values: a module of the model or its name")


def explainer_for(method: str, clf: Classifier, params: dict[str, Any]) -> Explainer:
    """``get_explainer(method, clf, **params)`` with a module given as ``layer`` resolved to its name (a misspelt
    setting gets ``get_explainer``'s one-line error naming the accepted ones)."""
    if "layer" in params:
        params = {**params, "layer": _layer_name(clf, params["layer"])}
    return get_explainer(method, clf, **params)
