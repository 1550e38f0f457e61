"""Argument checks shared by every module: one-line errors that name the parameter and the accepted values.

This is the ground floor of the package: it imports nothing from :mod:`saliency_core`, and every other module
may import it. A check either returns the value (converted only where the conversion is exact, e.g. a NumPy
integer to ``int``) or raises ``ValueError`` / ``TypeError`` with a message of the form
``"<name>=<value> is not valid; accepted values: <what is accepted>"``. Nothing is coerced silently: ``2.5`` is
not an int, ``True`` is not a class index, a ``uint8`` image is not a [0, 1] image.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_choice",
    "check_range",
    "check_int",
    "check_bool",
    "check_optional_int",
    "check_target",
    "check_image",
    "check_fraction_list",
]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError``."""
    try:
        ok = value in choices and not (isinstance(value, bool) and not any(isinstance(c, bool) for c in choices))
    except TypeError:  # unhashable / incomparable
        ok = False
    if not ok:
        raise ValueError(f"{name}={_show(value)} is not valid; accepted values: {', '.join(map(repr, choices))}")
    return value


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not _is_bool_like(value)


def _is_bool_like(value: Any) -> bool:
    return type(value).__name__ in ("bool_", "bool") and type(value).__module__ == "numpy"


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """A finite real number with ``low <= value <= high`` (bounds optional, inclusivity configurable).

    Returns ``float(value)`` for NumPy scalars and ``value`` itself for Python numbers (ints stay ints).
    """
    ok = _is_real(value) and math.isfinite(float(value))
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "[" if low_inclusive and low is not None else "("
        hb = "]" if high_inclusive and high is not None else ")"
        raise ValueError(f"{name}={_show(value)} is not valid; accepted values: a finite number in {lb}{lo}, {hi}{hb}")
    return value if isinstance(value, (int, float)) else float(value)


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``[low, high]``: Python or NumPy ints; never a bool, never a non-integral float (2.5).

    An integral float (``1000.0``, as papermill parses ``1e3``) is accepted as the int it equals exactly.
    """
    ok = False
    out = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and not _is_bool_like(value):
        out, ok = int(value), True
    elif _is_real(value) and math.isfinite(float(value)) and float(value).is_integer():
        out, ok = int(value), True
    if ok and low is not None and out < low:
        ok = False
    if ok and high is not None and out > high:
        ok = False
    if not ok:
        lo = "" if low is None else f" >= {low}"
        hi = "" if high is None else (f" and <= {high}" if lo else f" <= {high}")
        raise ValueError(f"{name}={_show(value)} is not valid; accepted values: an int{lo}{hi}")
    return out


def check_optional_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int | None:
    """``None`` or :func:`check_int`."""
    return None if value is None else check_int(name, value, low, high)


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (or a NumPy bool); never 0/1 or a string."""
    if isinstance(value, bool) or _is_bool_like(value):
        return bool(value)
    raise ValueError(f"{name}={_show(value)} is not valid; accepted values: True, False")


def check_target(value: Any, n_classes: int, name: str = "target") -> int:
    """A class index in ``[0, n_classes)``: an int, a NumPy int, or a one-element integer tensor/array.

    Floats (3.5, and 3.0 too: a class is not a measurement), bools and multi-element tensors are refused.
    """
    v = value
    if hasattr(v, "numel") and hasattr(v, "dtype"):  # torch tensor
        if v.numel() != 1 or v.dtype.is_floating_point or v.dtype.is_complex or str(v.dtype) == "torch.bool":
            raise ValueError(f"{name}={_show(value)} is not valid; accepted values: an int in [0, {n_classes - 1}] "
                             "(a one-element integer tensor is accepted)")
        v = int(v.reshape(()).item())
    elif hasattr(v, "dtype") and hasattr(v, "size") and not isinstance(v, numbers.Number):  # numpy array
        if v.size != 1 or v.dtype.kind not in "iu":
            raise ValueError(f"{name}={_show(value)} is not valid; accepted values: an int in [0, {n_classes - 1}]")
        v = int(v.reshape(()).item())
    if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and not _is_bool_like(v)) or not (
        0 <= int(v) < n_classes
    ):
        raise ValueError(f"{name}={_show(value)} is not valid; accepted values: an int in [0, {n_classes - 1}]")
    return int(v)


def check_image(x: Any, name: str = "x", min_size: int = 1, batch: bool = False) -> Any:
    """A float image tensor in [0, 1] RGB: ``(3, H, W)`` or ``(1, 3, H, W)`` (``batch=True``: ``(N, 3, H, W)``).

    Refuses integer tensors (a uint8 image in 0–255 is not a [0, 1] image: divide by 255 first), NaN/Inf,
    values outside [0, 1] (tolerance 1e-6) and images smaller than ``min_size`` pixels on a side.
    Returns ``x`` unchanged.
    """
    import torch

    shape_txt = "(N, 3, H, W)" if batch else "(3, H, W) or (1, 3, H, W)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_txt} in [0, 1] RGB; got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} has dtype {x.dtype}; accepted values: a float tensor in [0, 1] RGB "
                         "(for a uint8 image in 0-255 pass x.float() / 255)")
    ok_shape = (x.dim() == 4 and x.shape[1] == 3 and (batch or x.shape[0] == 1)) or (x.dim() == 3 and x.shape[0] == 3)
    if not ok_shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; accepted values: {shape_txt} in [0, 1] RGB")
    if x.numel() == 0 or min(x.shape[-2:]) < min_size:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; accepted values: images of at least "
                         f"{min_size}×{min_size} pixels")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf; accepted values: finite values in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; accepted values: [0, 1] RGB (un-normalised; "
                         "the classifier normalises inside)")
    return x


def check_fraction_list(name: str, values: Any) -> list[float]:
    """A non-empty sequence of finite numbers in [0, 1]."""
    try:
        vals = list(values)
    except TypeError:
        msg = f"{name}={_show(values)} is not valid; accepted values: a list of fractions in [0, 1]"
        raise ValueError(msg) from None
    if not vals:
        raise ValueError(f"{name}=[] is not valid; accepted values: a non-empty list of fractions in [0, 1]")
    return [float(check_range(f"{name}[{i}]", v, 0.0, 1.0)) for i, v in enumerate(vals)]
