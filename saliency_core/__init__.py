"""Perturbation saliency, reproduced: methods, evaluation protocols, models and data."""

from .cache import ResultCache
from .data import ImageRecord, embedded_images, load_folder, records_to_batch
from .explanation import Explainer, Explanation, available_explainers, get_explainer, register
from .models import Classifier, Preprocessing, available_models, load_model

__version__ = "0.3.0"

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
