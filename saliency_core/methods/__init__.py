"""Saliency methods. Importing this package registers every method; :func:`get_explainer` builds one by name."""

from __future__ import annotations

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
    """Instantiate the explainer registered as ``name`` for ``model`` with hyper-parameters ``params``."""
    return explainer_class(name)(model, **params)
