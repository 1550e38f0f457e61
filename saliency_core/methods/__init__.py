"""Saliency methods. Importing this package registers every method in the explainer registry."""

from . import baselines  # noqa: F401
