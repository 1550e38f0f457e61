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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .models import Classifier

__all__ = [
    "Explanation",
    "Explainer",
    "PassCounter",
    "count_passes",
    "register",
    "get_explainer",
    "available_explainers",
    "check_choice",
    "check_range",
]


# --------------------------------------------------------------------------------------------
# argument validation helpers: one-line errors naming the parameter and the accepted values
# --------------------------------------------------------------------------------------------
def check_choice(name: str, value: Any, choices: tuple | list) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; accepted values: {', '.join(map(repr, choices))}")
    return value


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Raise ``ValueError`` unless ``low <= value <= high`` (bounds optional, inclusivity configurable)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "[" if low_inclusive and low is not None else "("
        hb = "]" if high_inclusive and high is not None else ")"
        raise ValueError(f"{name}={value!r} is not valid; accepted values: a number in {lb}{lo}, {hi}{hb}")
    return value


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
# explainer base class and registry
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Explainer]] = {}


def register(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: make an explainer available as ``get_explainer(name, model, ...)``."""

    def deco(cls: type[Explainer]) -> type[Explainer]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"explainer name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all_methods() -> None:
    # import side effect: every methods/* module registers its classes
    from . import methods  # noqa: F401


def available_explainers() -> list[str]:
    """Sorted registry names."""
    _load_all_methods()
    return sorted(_REGISTRY)


def get_explainer(name: str, model: Classifier, **params: Any) -> Explainer:
    """Instantiate the explainer registered as ``name`` for ``model`` with hyper-parameters ``params``."""
    _load_all_methods()
    if name not in _REGISTRY:
        raise ValueError(f"method={name!r} is not valid; accepted values: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](model, **params)


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (3, H, W) or (1, 3, H, W); got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"x has shape {tuple(x.shape)}; accepted values: (3, H, W) or (1, 3, H, W) in [0, 1] RGB")
    return x


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

    def explain(self, x: torch.Tensor, target: int | None = None) -> Explanation:
        """Explain ``target`` (default: the model's top-1) for one image ``x`` in [0, 1] RGB."""
        x = _as_batch(x).to(self.model.device, torch.float32)
        if target is None:
            target = self.model.top1(x)
        target = int(target)
        n_classes = self.model.num_classes
        if not 0 <= target < n_classes:
            raise ValueError(f"target={target} is not valid; accepted values: an int in [0, {n_classes - 1}]")
        start = time.perf_counter()
        with self.model.guard(), count_passes(self.model.net) as counter:
            sal, extras = self._explain(x, target)
        seconds = time.perf_counter() - start
        sal = sal.detach().float().cpu()
        if sal.dim() != 2:
            raise RuntimeError(f"{type(self).__name__}._explain returned a map of shape {tuple(sal.shape)}")
        return Explanation(
            map=sal,
            target=target,
            method=self.name,
            settings=self.settings(),
            seconds=seconds,
            extras=extras,
            **counter.as_dict(),
        )

    def attribute(self, inputs: torch.Tensor, target: int | list[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Captum-style call: ``(N, 3, H, W)`` inputs → ``(N, 1, H, W)`` saliency maps."""
        if inputs.dim() == 3:
            inputs = inputs.unsqueeze(0)
        n = inputs.shape[0]
        if target is None or isinstance(target, int):
            targets = [target] * n
        else:
            targets = [int(t) for t in (target.tolist() if isinstance(target, torch.Tensor) else target)]
            if len(targets) != n:
                raise ValueError(f"target has {len(targets)} entries; accepted values: one int or {n} ints")
        maps = [self.explain(inputs[i : i + 1], t).map for i, t in enumerate(targets)]
        return torch.stack(maps).unsqueeze(1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"
