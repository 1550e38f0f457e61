"""Saliency methods. Importing this package registers every method in the explainer registry."""

from . import baselines, cshapley, extremal, igos, invariant, leg, rise  # noqa: F401
