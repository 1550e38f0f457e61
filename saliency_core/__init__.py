"""Perturbation saliency, reproduced: methods, evaluation protocols, models and data.

Public API: :func:`load_model`, :func:`embedded_images`, :func:`load_folder`, :func:`get_explainer`,
:func:`available_explainers`, :class:`Explanation`, the result store (:class:`Store`, alias :class:`ResultCache`),
the protocol registry (:func:`available_protocols`, :func:`get_protocol`) and studies (:class:`Study`,
:func:`load_study`, :func:`run_study`, :func:`load_results`).
"""

from ._version import __version__
from .codehash import freeze as _freeze_sources
from .data import ImageRecord, embedded_images, load_folder, records_to_batch
from .explanation import Explainer, Explanation
from .methods import available_explainers, get_explainer, register
from .models import Classifier, Preprocessing, available_models, load_model
from .protocols import available_protocols, get_protocol
from .store import ResultCache, Store
from .study import Study, load_results, load_study
from .study import run as run_study

_freeze_sources()  # keys of this process follow the code it imported, not files edited later

__all__ = [
    "Classifier",
    "Explainer",
    "Explanation",
    "ImageRecord",
    "Preprocessing",
    "ResultCache",
    "Store",
    "Study",
    "available_explainers",
    "available_models",
    "available_protocols",
    "embedded_images",
    "get_explainer",
    "get_protocol",
    "load_folder",
    "load_model",
    "load_results",
    "load_study",
    "records_to_batch",
    "register",
    "run_study",
    "__version__",
]
