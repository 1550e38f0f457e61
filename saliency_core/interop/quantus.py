"""Quantus interop: an ``explain_func`` for every registered method, and AUCs without ``np.trapz``.

::

    import quantus
    from saliency_core.interop.quantus import explain

    metric = quantus.MPRT(layer_order="top_down", disable_warnings=True)
    scores = metric(model=clf.pixel_model, x_batch=x, y_batch=y, a_batch=None, device="cpu",
                    explain_func=explain, explain_func_kwargs={"method": "rise", "n_masks": 500})

:func:`explain` follows Quantus's contract ``explain_func(model, inputs, targets, **kwargs) -> np.ndarray``:

* ``model`` is whatever Quantus hands over — the model given to the metric, or (MPRT and the other randomisation
  tests) a deep copy of it with re-initialised layers — so the classifier and the explainer are **rebuilt on every
  call** (:func:`saliency_core.interop.as_classifier`; nothing is copied or cached between calls);
* ``inputs`` ``(N, 3, H, W)`` in [0, 1] (NumPy or torch, channel first: what Quantus passes for torch models),
  ``targets`` one class per image (or one for all);
* ``method`` (required) is the registry name; every other keyword is a setting of that method, except ``device``
  (added by Quantus when the metric is called with ``device=``: the inputs go there; the model is already there) and
  ``mean``/``std`` (the model's input normalisation, see :func:`~saliency_core.interop.as_classifier`; not needed
  for ``clf.pixel_model``). Quantus 0.6 passes nothing else (``Metric.general_preprocess`` adds only ``device`` to
  ``explain_func_kwargs``); any other keyword is refused with a one-line error naming the accepted ones.
* It never reads or writes the result store: Quantus feeds perturbed inputs and randomised models, which a cache
  keyed on images and weights would serve wrongly.

Returns ``(N, 1, H, W)`` float32 maps (higher = more relevant); Quantus broadcasts the channel itself.

NumPy 2.4 removed ``np.trapz``; Quantus 0.6 still calls it in ``helpers.utils.calculate_auc`` (``PixelFlipping``
with ``return_auc_per_sample=True``, ``PixelFlipping.get_auc_score``, ``RegionPerturbation.get_auc_score``,
``Selectivity``, ``IROF`` ...), which then fail with ``AttributeError: module 'numpy' has no attribute 'trapz'``.
Two ways round it, neither touching Quantus's files: compute the AUC from the returned curves yourself
(:func:`curve_auc`, the explicit trapezoid with Quantus's ``dx``), or run the metric inside :func:`numpy_trapz`,
which makes ``np.trapz`` an alias of ``np.trapezoid`` for the duration of the block only.

Quantus 0.6's ``ROAD`` ranks the *features* of the attribution broadcast to the input's shape (3·H·W for an RGB
image) but hands their indices to ``noisy_linear_imputation``, which indexes *pixels* (H·W): with a one-channel map
and a 3-channel image it fails with ``IndexError: index ... is out of bounds for axis 0 with size H·W``.
:func:`road_pixels` is a ``perturb_func`` that maps the feature indices to the pixels they belong to before imputing
(``quantus.ROAD(perturb_func=road_pixels)``). ROAD still counts ``percentages`` in features of H·W: with a map
broadcast over 3 channels, ``p`` % removes about ``p/3`` % of the pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..checks import check_choice, check_image
from ..methods import available_explainers
from ._wrap import as_classifier, explainer_for

__all__ = ["explain", "numpy_trapz", "curve_auc", "road_pixels", "road_pixel_counts", "whole_pixel_points",
           "block_average", "randomised_layers", "Recorder"]


def explain(model: Any, inputs: Any, targets: Any, method: str | None = None, *, device: Any = None,
            mean: Any = None, std: Any = None, **settings: Any) -> np.ndarray:
    """Quantus ``explain_func``: ``(N, 1, H, W)`` float32 saliency maps of ``inputs`` for ``targets`` (module doc)."""
    if method is None:
        raise ValueError("method=None is not valid; accepted values: a registered method name, passed as "
                         "explain_func_kwargs={'method': ...}: " + ", ".join(available_explainers()))
    check_choice("method", method, available_explainers())
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs).detach()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if device is not None:
        try:
            x = x.to(torch.device(device))
        except (RuntimeError, TypeError):
            raise ValueError(f"device={device!r} is not valid; accepted values: 'cpu', 'cuda', 'cuda:N'") from None
    x = check_image(x.float(), "inputs", batch=True)
    n = x.shape[0]
    t = targets.detach().cpu().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    t = np.broadcast_to(t.reshape(-1), (n,)) if t.size == 1 else t.reshape(-1)
    if t.size != n:
        raise ValueError(f"targets has {t.size} entries; accepted values: one class or {n} classes")
    clf = as_classifier(model, x, mean, std)  # rebuilt on every call: Quantus may pass a randomised copy
    explainer = explainer_for(method, clf, settings)
    with torch.enable_grad():
        maps = [explainer.explain(x[i : i + 1], int(t[i])).map for i in range(n)]
    return torch.stack(maps).unsqueeze(1).numpy().astype(np.float32)


@contextlib.contextmanager
def numpy_trapz() -> Iterator[None]:
    """Inside the block ``np.trapz`` is ``np.trapezoid`` when this NumPy lacks it (>= 2.4); restored on exit.

    For Quantus metrics that compute an AUC with ``np.trapz`` (module docstring). Does nothing on a NumPy that
    still has ``np.trapz``.
    """
    missing = "trapz" not in np.__dict__
    if missing:
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del np.trapz  # type: ignore[attr-defined]


def curve_auc(curve: Sequence[float] | np.ndarray, dx: float = 1.0) -> float:
    """Σ_k dx·(y_k + y_{k+1})/2 over one curve: what Quantus's ``calculate_auc`` (``np.trapz(curve, dx=dx)``)
    returns, written out (no ``np.trapz``/``np.trapezoid``)."""
    y = np.asarray(curve, dtype=np.float64).ravel()
    if y.size < 2:
        return 0.0
    return float(dx * np.sum((y[1:] + y[:-1]) / 2.0))


def road_pixels(arr: np.ndarray, indices: Any, noise: float = 0.01, perturb_baseline: float | None = None,
                **kwargs: Any) -> np.ndarray:
    """ROAD ``perturb_func`` for RGB images and a channel-broadcast map (module docstring): the pixels owning the
    feature ``indices`` of ``arr`` ``(C, H, W)`` are imputed with Quantus's ``noisy_linear_imputation`` (ROAD's
    default, ``noise``), or set to the constant ``perturb_baseline`` in every channel when it is given."""
    hw = int(arr.shape[-1] * arr.shape[-2])
    pixels = np.unique(np.asarray(indices, dtype=np.int64).ravel() % hw)
    if perturb_baseline is not None:
        out = np.array(arr, copy=True).reshape(arr.shape[0], hw)
        out[:, pixels] = perturb_baseline
        return out.reshape(arr.shape)
    from quantus.functions.perturb_func import noisy_linear_imputation

    return noisy_linear_imputation(arr, pixels, noise=noise)


# ----------------------------------------------------------------------------------------------------------
# matching Quantus's settings to ours (the "Our protocols vs Quantus" chapter and tests/test_interop_quantus.py)
# ----------------------------------------------------------------------------------------------------------
def whole_pixel_points(curve: Sequence[float] | np.ndarray, channels: int = 3) -> np.ndarray:
    """The points of a ``PixelFlipping`` curve at which whole pixels are flipped.

    ``PixelFlipping`` ranks the C·H·W channel values of a map broadcast over C channels; the C copies of a pixel's
    score are adjacent in that order, so after every C-th step of ``features_in_step = s`` features exactly
    s whole pixels more are flipped (k·s features = k·s/C pixels). Points ``C−1, 2C−1, ...`` of the curve are
    our deletion curve (step s pixels) at steps 1, 2, ...; the others have single channels of a pixel flipped.
    """
    return np.asarray(curve)[..., channels - 1 :: channels]


def road_pixel_counts(percentages: Sequence[float], height: int, width: int, channels: int = 3) -> list[int]:
    """Pixels :func:`road_pixels` replaces for each ROAD ``percentage``: ROAD takes ``int(H·W·p/100)`` features
    of the broadcast map, i.e. ⌈that / C⌉ pixels (whole pixels, plus the one whose first channels end the cut)."""
    return [int(np.ceil(int(height * width * p / 100) / channels)) for p in percentages]


def block_average(maps: np.ndarray | torch.Tensor, patch: int) -> np.ndarray:
    """``(N, 1, H, W)`` maps averaged over ``patch``×``patch`` blocks and painted back on the blocks: the ranking
    ``RegionPerturbation`` uses (sum of the attribution over each patch) as a pixel map."""
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32))
    if m.dim() != 4 or m.shape[-1] % patch or m.shape[-2] % patch:
        raise ValueError(f"maps has shape {tuple(m.shape)} and patch={patch}; accepted values: (N, 1, H, W) maps "
                         "whose sides are multiples of patch")
    pooled = torch.nn.functional.avg_pool2d(m, patch)
    return pooled.repeat_interleave(patch, -2).repeat_interleave(patch, -1).numpy()


def randomised_layers(model: torch.nn.Module, strip: str = "net.") -> list[str]:
    """The modules ``quantus.MPRT(layer_order="top_down")`` re-initialises, in its order: every named module with
    a ``reset_parameters`` method (convolutions, linear layers, batch norms), last defined first. Names are given
    without the ``strip`` prefix, i.e. as layer names of ``clf.net`` when ``model`` is ``clf.pixel_model``."""
    names = [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]
    return [n[len(strip):] if strip and n.startswith(strip) else n for n in names]


class Recorder:
    """An ``explain_func`` that calls :func:`explain` and keeps every batch of maps it returned (``calls``), e.g. the
    maps ``MPRT`` computed on each randomised model, to score them with other similarity measures."""

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        out = explain(model, inputs, targets, **kwargs)
        self.calls.append(out)
        return out
