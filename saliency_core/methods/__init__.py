"""Saliency methods. Importing this package registers every method; :func:`get_explainer` builds one by name."""

from __future__ import annotations

import difflib
import inspect
from typing import TYPE_CHECKING, Any

from . import baselines, cshapley, extremal, igos, invariant, leg, rise  # noqa: F401  (registration)
from .registry import REGISTRY, register

if TYPE_CHECKING:  # pragma: no cover
    from ..explanation import Explainer
    from ..models import Classifier

__all__ = ["available_explainers", "get_explainer", "explainer_class", "register"]


def available_explainers() -> list[str]:
    """Sorted registry names."""
    return sorted(REGISTRY)


def explainer_class(name: str) -> type[Explainer]:
    """The class registered as ``name`` (one-line error listing the registered names otherwise)."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"method={name!r} is not valid; accepted values: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def get_explainer(name: str, model: Classifier, **params: Any) -> Explainer:
    """Instantiate the explainer registered as ``name`` for ``model`` with hyper-parameters ``params``.

    A misspelt hyper-parameter gives a one-line error listing the accepted names (not Python's bare TypeError)."""
    cls = explainer_class(name)
    sig = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
        accepted = [k for k in sig if k not in ("self", "model")]
        for k in params:
            if k not in accepted:
                close = difflib.get_close_matches(k, accepted, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{k}={params[k]!r} is not a parameter of method={name!r}{hint}; accepted values: "
                                 f"{', '.join(accepted)}")
    return cls(model, **params)
