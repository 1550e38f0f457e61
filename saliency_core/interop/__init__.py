"""Bridges to the libraries readers already use.

* :mod:`saliency_core.interop.captum`: every registered method as a Captum attribution object
  (``from saliency_core.interop.captum import ExtremalPerturbation`` or ``captum_class("rise")``);
* :mod:`saliency_core.interop.quantus`: :func:`~saliency_core.interop.quantus.explain`, a Quantus ``explain_func``
  (``pip install "saliency-core[interop]"``).

Both take the reader's model as it is — a callable (usually an ``nn.Module``) on ``(N, 3, H, W)`` images in [0, 1]
that returns logits — and wrap it with :func:`as_classifier` without copying it. Importing this package imports
neither Captum nor Quantus.
"""

from __future__ import annotations

from ._wrap import as_classifier, explainer_for

__all__ = ["as_classifier", "explainer_for"]
