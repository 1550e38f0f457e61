"""The method registry: ``@register(name)`` on an :class:`~saliency_core.explanation.Explainer` subclass.

Lives beside the methods: method modules import :func:`register` from here, and the package ``__init__``
(:mod:`saliency_core.methods`) imports every method module, so the registry is complete once
:mod:`saliency_core.methods` is imported. Nothing here imports a method module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..explanation import Explainer

__all__ = ["register", "REGISTRY"]

#: registry name → explainer class (filled by the ``@register`` decorators of the method modules)
REGISTRY: dict[str, type[Explainer]] = {}


def register(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: make an explainer available as ``get_explainer(name, model, ...)``."""

    def deco(cls: type[Explainer]) -> type[Explainer]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"explainer name {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco
