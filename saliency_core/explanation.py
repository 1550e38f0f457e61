"""Explanation record, the Explainer base class, the model-pass counter and the method registry.

Every explainer in :mod:`saliency_core.methods` subclasses :class:`Explainer`:

* hyper-parameters are keyword arguments of ``__init__`` with their defaults visible in the
  signature, stored on ``self`` under the same names (:meth:`Explainer.settings` reads them back);
* ``_explain(x, target)`` does the work on ONE image ``x`` of shape ``(1, 3, H, W)`` in [0, 1] RGB
  and returns ``(map, extras)`` where ``map`` is an ``(H, W)`` tensor, higher = more relevant;
* :meth:`Explainer.explain` adds timing, the forward/backward pass counts, the settings and the
  target, and returns an :class:`Explanation`;
* :meth:`Explainer.attribute` is the Captum-style entry point (``attribute(inputs, target=...)``).
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .checks import check_image, check_target

if TYPE_CHECKING:  # pragma: no cover
    from .models import Classifier

__all__ = ["Explanation", "Explainer", "PassCounter", "count_passes"]


# --------------------------------------------------------------------------------------------
# pass counting
# --------------------------------------------------------------------------------------------
@dataclass
class PassCounter:
    """Counts model evaluations: images forwarded, images back-propagated, batched calls."""

    forward: int = 0
    backward: int = 0
    forward_calls: int = 0
    backward_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "n_forward": self.forward,
            "n_backward": self.backward,
            "n_forward_calls": self.forward_calls,
            "n_backward_calls": self.backward_calls,
        }


@contextlib.contextmanager
def count_passes(module: torch.nn.Module) -> Iterator[PassCounter]:
    """Count forward and backward passes through ``module`` inside a ``with`` block.

    A forward hook adds the batch size of every call; when the output requires grad, a tensor
    hook on it adds the batch size again when a gradient flows back through the model.
    The hook is always removed, also when the block raises.
    """
    counter = PassCounter()

    def _fwd_hook(_mod: torch.nn.Module, _inp: Any, out: Any) -> None:
        t = out[0] if isinstance(out, (tuple, list)) else out
        n = int(t.shape[0]) if t.dim() > 0 else 1
        counter.forward += n
        counter.forward_calls += 1
        if t.requires_grad:

            def _bwd(grad: torch.Tensor) -> None:
                counter.backward += n
                counter.backward_calls += 1

            t.register_hook(_bwd)

    handle = module.register_forward_hook(_fwd_hook)
    try:
        yield counter
    finally:
        handle.remove()


# --------------------------------------------------------------------------------------------
# explanation record
# --------------------------------------------------------------------------------------------
@dataclass
class Explanation:
    """The result of explaining one image.

    Attributes
    ----------
    map : torch.Tensor
        ``(H, W)`` float tensor on the CPU, higher = more relevant to ``target``.
    target : int
        The explained class.
    method : str
        Registry name of the method.
    settings : dict
        Hyper-parameters used (the explainer's ``__init__`` arguments).
    n_forward, n_backward : int
        Images forwarded / back-propagated through the model.
    n_forward_calls, n_backward_calls : int
        Batched model calls (forward / backward).
    seconds : float
        Wall time of :meth:`Explainer.explain`.
    extras : dict
        Method-specific outputs (masks per area, optimisation history, raw attributions ...).
    """

    map: torch.Tensor
    target: int
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    n_forward: int = 0
    n_backward: int = 0
    n_forward_calls: int = 0
    n_backward_calls: int = 0
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    def cost(self) -> dict[str, float]:
        """Cost summary: passes, batched calls and wall time."""
        return {
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "n_forward_calls": self.n_forward_calls,
            "n_backward_calls": self.n_backward_calls,
            "seconds": self.seconds,
        }

    def to_state(self) -> dict[str, Any]:
        """A ``torch.save``-able dict of plain tensors / Python values (see :meth:`from_state`)."""
        return {
            "map": self.map.detach().cpu(),
            "target": int(self.target),
            "method": self.method,
            "settings": dict(self.settings),
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "n_forward_calls": self.n_forward_calls,
            "n_backward_calls": self.n_backward_calls,
            "seconds": float(self.seconds),
            "extras": self.extras,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Explanation:
        return cls(**state)


# --------------------------------------------------------------------------------------------
# explainer base class (the registry lives beside the methods: saliency_core.methods.registry)
# --------------------------------------------------------------------------------------------
def _as_batch(x: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """One image as ``(1, 3, H, W)``; refuses anything that is not a finite float image in [0, 1]."""
    check_image(x, "x", min_size=min_size)
    return x.unsqueeze(0) if x.dim() == 3 else x


class Explainer(abc.ABC):
    """Base class of every saliency method.

    Parameters
    ----------
    model : Classifier
        The wrapped classifier (:func:`saliency_core.load_model`).
    """

    name: ClassVar[str] = "explainer"
    #: names of ``__init__`` arguments that are not hyper-parameters (not part of the cache key)
    runtime_args: ClassVar[tuple[str, ...]] = ("model", "batch_size", "device", "progress")

    def __init__(self, model: Classifier) -> None:
        self.model = model

    # -- to implement ------------------------------------------------------------------------
    @abc.abstractmethod
    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Return ``(map (H, W), extras)`` for one image ``x`` (1, 3, H, W) in [0, 1]."""

    # -- public API --------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Hyper-parameters: every ``__init__`` argument except :attr:`runtime_args`."""
        out: dict[str, Any] = {}
        for cls in type(self).__mro__:
            if "__init__" not in cls.__dict__:
                continue
            for pname, p in inspect.signature(cls.__init__).parameters.items():
                if pname == "self" or pname in self.runtime_args or pname in out:
                    continue
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                out[pname] = getattr(self, pname, p.default)
        return out

    def min_input_size(self) -> int:
        """Smallest image side accepted (checked on ``x`` before any work): the model's own minimum
        (:attr:`Classifier.min_input_size`, e.g. 32 px for VGG and EfficientNet-Lite). Methods whose operators need
        more (a window, a grid, a patch) override this and return ``max(super().min_input_size(), ...)``."""
        return int(getattr(self.model, "min_input_size", 1))

    def explain(self, x: torch.Tensor, target: int | None = None) -> Explanation:
        """Explain ``target`` (default: the model's top-1) for one image ``x`` in [0, 1] RGB.

        The model is used in eval mode with frozen parameters whatever its state, and left exactly as it was
        (training flag, ``requires_grad`` flags); the default target is chosen in eval mode too.
        """
        x = _as_batch(x, self.min_input_size()).to(self.model.device, torch.float32)
        start = time.perf_counter()
        with self.model.guard():
            if target is None:
                target = self.model.top1(x)
            else:
                target = check_target(target, self.model.num_classes)
                self.model.check_outputs(x)
            with count_passes(self.model.net) as counter:
                sal, extras = self._explain(x, target)
        seconds = time.perf_counter() - start
        sal = sal.detach().float().cpu()
        if sal.dim() != 2:
            raise RuntimeError(f"{type(self).__name__}._explain returned a map of shape {tuple(sal.shape)}")
        return Explanation(
            map=sal,
            target=int(target),
            method=self.name,
            settings=self.settings(),
            seconds=seconds,
            extras=extras,
            **counter.as_dict(),
        )

    def attribute(self, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
        """Captum-style call: ``(N, 3, H, W)`` inputs → ``(N, 1, H, W)`` saliency maps.

        ``target``: ``None`` (each image's top-1), one class index (int, NumPy int, one-element tensor), or one
        index per image (list, tuple, 1-D tensor or array of length N).
        """
        check_image(inputs, "inputs", min_size=self.min_input_size(),
                    batch=inputs.dim() == 4 if isinstance(inputs, torch.Tensor) else False)
        if inputs.dim() == 3:
            inputs = inputs.unsqueeze(0)
        n = inputs.shape[0]
        k = self.model.num_classes
        if target is None:
            targets: list[int | None] = [None] * n
        elif isinstance(target, (list, tuple)) or (getattr(target, "ndim", 0) == 1 and len(target) != 1) or (
            getattr(target, "ndim", 0) == 1 and n == 1
        ):
            targets = [check_target(t, k, f"target[{i}]") for i, t in enumerate(target)]
            if len(targets) != n:
                raise ValueError(f"target has {len(targets)} entries; accepted values: one int or {n} ints")
        else:
            targets = [check_target(target, k)] * n
        maps = [self.explain(inputs[i : i + 1], t).map for i, t in enumerate(targets)]
        return torch.stack(maps).unsqueeze(1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
