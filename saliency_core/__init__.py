"""Perturbation saliency, reproduced: methods, evaluation protocols, models and data.

Public API: :func:`load_model`, :func:`embedded_images`, :func:`load_folder`, :func:`get_explainer`,
:func:`available_explainers`, :class:`Explanation`, the result store (:class:`ResultCache`).
"""

from ._version import __version__
from .cache import ResultCache
from .data import ImageRecord, embedded_images, load_folder, records_to_batch
from .explanation import Explainer, Explanation
from .methods import available_explainers, get_explainer, register
from .models import Classifier, Preprocessing, available_models, load_model

__all__ = [
    "Classifier",
    "Explainer",
    "Explanation",
    "ImageRecord",
    "Preprocessing",
    "ResultCache",
    "available_explainers",
    "available_models",
    "embedded_images",
    "get_explainer",
    "load_folder",
    "load_model",
    "records_to_batch",
    "register",
    "__version__",
]
