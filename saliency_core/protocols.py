"""The protocol registry: every evaluation protocol by name, beside the method registry.

A protocol scores one explanation of one image: ``fn(clf, x, explanation, **settings) -> (value, curve)`` where
``x`` is the ``(1, 3, H, W)`` image in [0, 1] that was explained, ``value`` a float and ``curve`` a tidy DataFrame
with columns ``x``, ``y`` (the curve the value summarises) or ``None``. The metric code stays in
:mod:`saliency_core.metrics`; the registry only wraps it with one signature, its defaults and its direction.

========================  =======  ==========================================================================
name                      better   value
========================  =======  ==========================================================================
``pixel_flip``            lower    area under the fraction-of-top-1-changes curve over ``taus`` (gray ``fill``)
``lor``                   lower    log-odds ratio log[odds p(α) / odds p(0)] of the clean top-1 under ``masking``
``skey`` / ``skey_<m>``   lower    S_key: first α on a ``n_grid``-point grid whose masking ``m`` changes the top-1
``del_rise``/``ins_rise`` lower /  RISE-style deletion / insertion AUC (``step`` pixels per step)
                          higher
``del_igospp``/``ins_…``  lower /  iGOS++-style deletion / insertion AUC on the ``grid``×``grid`` cells
                          higher
``lor_curve``             lower    p(α) over ``alphas`` (curve); value: this image's LOR at the largest α
``ep_area_reward``        lower    EP only: Φ(m_a⊗x)/Φ(x) over the optimised areas; value: a* (smallest a ≥ τ)
``ep_visible_area``       lower    EP only: visible mean of each area's mask; value at the area closest to 0.1
``invariance_worst_case`` higher   invariant methods: smallest margin found in the box by a worst-case search
``invariance_rate``       higher   invariant methods: share of uniform draws in the box that keep the top-1
``map_tv``                lower    total variation of the map (mean absolute neighbour differences)
``sanity``                lower    similarity (``measure``, default Spearman of the |maps|) between the map and the
                                   map of the same method on the model with ``layers`` re-initialised (Adebayo et
                                   al.): a map that survives randomisation does not explain the model
========================  =======  ==========================================================================

``sanity`` needs a second explanation (of the randomised model): :attr:`Protocol.randomization` is ``True`` and
the caller passes it as ``reference=``; the study engine explains the randomised model as a task of its own, keyed
by :func:`randomization_spec`. Without ``reference``, :func:`score` computes it (no store).

A protocol's code hash (:meth:`Protocol.code_hash`) covers this module and the metric modules it wraps (with
everything they import), so an edit of ``metrics/sensitivity.py`` changes the keys of ``lor`` and ``skey_*`` only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from .checks import (
    check_bool,
    check_choice,
    check_fraction_list,
    check_image,
    check_int,
    check_optional_int,
    check_range,
)
from .codehash import code_hash, module_hash, module_imports

if TYPE_CHECKING:  # pragma: no cover
    from .explanation import Explanation
    from .models import Classifier

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "register_protocol",
    "get_protocol",
    "available_protocols",
    "score",
    "randomization_spec",
    "randomized_model",
]


@dataclass(frozen=True)
class Protocol:
    """One registered protocol (see the module table)."""

    name: str
    fn: Callable[..., tuple[float, pd.DataFrame | None]]
    higher_is_better: bool
    defaults: Mapping[str, Any]
    modules: tuple[str, ...]
    randomization: bool = False
    description: str = ""
    checks: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The defaults updated by ``overrides``; an unknown name or a bad value is a one-line ``ValueError``."""
        for k in overrides:
            if k not in self.defaults:
                raise ValueError(f"{self.name} setting {k!r} is not valid; accepted values: "
                                 f"{', '.join(self.defaults) or '(none)'}")
        out = {**self.defaults, **overrides}
        if self.checks is not None:
            self.checks(out)
        return out

    def code_hash(self) -> str:
        """16 hex digits over this module's code and the metric modules it wraps (with their imports)."""
        own = __name__
        parts = [module_hash(own), code_hash(*self.modules)]
        top = sorted(module_imports(own, function_level=False))
        if top:
            parts.append(code_hash(*top))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def __call__(self, clf: Classifier, x: torch.Tensor, explanation: Explanation, *,
                 reference: Explanation | None = None, **settings: Any) -> tuple[float, pd.DataFrame | None]:
        s = self.settings(**settings)
        check_image(x, "x", min_size=getattr(clf, "min_input_size", 1))
        if not all(hasattr(explanation, a) for a in ("map", "target", "method")):
            raise ValueError(f"explanation is a {type(explanation).__name__}; accepted values: an Explanation "
                             "(Explainer.explain)")
        x = x if x.dim() == 4 else x.unsqueeze(0)
        if self.randomization:
            if reference is None:
                reference = _reference_explanation(clf, x, explanation, s)
            value, curve = self.fn(clf, x, explanation, reference=reference, **s)
        else:
            value, curve = self.fn(clf, x, explanation, **s)
        return float(value), curve


#: registry name → :class:`Protocol`
PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(name: str, higher_is_better: bool, defaults: Mapping[str, Any], modules: tuple[str, ...],
                      randomization: bool = False, description: str = "",
                      checks: Callable[[dict[str, Any]], None] | None = None):
    """Decorator: register ``fn(clf, x, explanation, **settings) -> (value, curve)`` as protocol ``name``."""

    def deco(fn):
        if name in PROTOCOLS and PROTOCOLS[name].fn is not fn:
            raise ValueError(f"protocol name {name!r} registered twice")
        PROTOCOLS[name] = Protocol(name, fn, bool(higher_is_better), dict(defaults), tuple(modules), randomization,
                                   description, checks)
        return fn

    return deco


def available_protocols() -> list[str]:
    """Sorted registry names."""
    return sorted(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    """The protocol registered as ``name`` (one-line error listing the registered names otherwise)."""
    if not isinstance(name, str) or name not in PROTOCOLS:
        raise ValueError(f"protocol={name!r} is not valid; accepted values: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def score(name: str, clf: Classifier, x: torch.Tensor, explanation: Explanation,
          reference: Explanation | None = None, **settings: Any) -> tuple[float, pd.DataFrame | None]:
    """``(value, curve)`` of protocol ``name`` for one explanation of image ``x`` (no store: see
    :meth:`saliency_core.store.Store.score` for the cached version)."""
    return get_protocol(name)(clf, x, explanation, reference=reference, **settings)


def _curve(xs, ys) -> pd.DataFrame:
    return pd.DataFrame({"x": np.asarray(xs, dtype=float), "y": np.asarray(ys, dtype=float)})


# --------------------------------------------------------------------------------------------
# pixel flip (Ikeno & Hara), appendix §6
# --------------------------------------------------------------------------------------------
def _check_pixel_flip(s: dict) -> None:
    s["taus"] = check_fraction_list("taus", s["taus"])
    if len(s["taus"]) < 2:
        raise ValueError(f"taus={s['taus']!r} is not valid; accepted values: at least 2 fractions in [0, 1]")
    check_range("fill", s["fill"], 0.0, 1.0)
    check_choice("ties", s["ties"], ("stable", "random"))
    check_int("tie_draws", s["tie_draws"], 1, 1000)
    check_int("seed", s["seed"], 0)
    if s["ties"] == "stable" and s["tie_draws"] != 1:
        raise ValueError(f"tie_draws={s['tie_draws']!r} is not valid with ties='stable'; accepted values: 1")


@register_protocol("pixel_flip", False, {"taus": [round(0.1 * i, 1) for i in range(10)], "fill": 0.5,
                                         "ties": "stable", "tie_draws": 1, "seed": 0},
                   ("saliency_core.metrics.pixel_flip",), description="pixel-flip AUC (Ikeno & Hara); ties='random' "
                   "averages the changed indicator over tie_draws seeded orders among tied pixels",
                   checks=_check_pixel_flip)
def _pixel_flip(clf, x, e, *, taus, fill, ties, tie_draws, seed):
    from .metrics import pixel_flip

    changed = None
    for d in range(tie_draws):
        df = pixel_flip.pixel_flip(clf, x[0], e.map, taus=taus, fill=fill, target=e.target, ties=ties,
                                   seed=seed + d)
        c = df["changed"].to_numpy(dtype=float)
        changed = c if changed is None else changed + c
    changed = changed / tie_draws
    return pixel_flip.area_under_curve(df["tau"], changed), _curve(df["tau"], changed)


# --------------------------------------------------------------------------------------------
# LEG's sensitivity protocols, appendix §7
# --------------------------------------------------------------------------------------------
def _check_lor(s: dict) -> None:
    check_range("alpha", s["alpha"], 0.0, 1.0, low_inclusive=False)
    _check_masking(s)
    check_int("noise_repeats", s["noise_repeats"], 1, 1000)
    check_int("seed", s["seed"])


def _check_masking(s: dict) -> None:
    from .metrics.sensitivity import parse_masking

    parse_masking(s["masking"])


@register_protocol("lor", False, {"alpha": 0.2, "masking": "mean", "noise_repeats": 2, "seed": 0},
                   ("saliency_core.metrics.sensitivity",),
                   description="log-odds ratio of the clean top-1 at masked fraction alpha (LEG)", checks=_check_lor)
def _lor(clf, x, e, *, alpha, masking, noise_repeats, seed):
    from .metrics import sensitivity

    df = sensitivity.lor_probabilities(clf, x, {"m": [e.map]}, maskings=(masking,), alphas=[0.0, alpha],
                                       targets=[e.target], noise_repeats=noise_repeats, seed=seed)
    df = df.sort_values("alpha")
    p = df["prob"].clip(1e-12, 1 - 1e-12).to_numpy()
    value = math.log(p[1] / (1 - p[1])) - math.log(p[0] / (1 - p[0]))
    return value, _curve(df["alpha"], df["prob"])


def _check_lor_curve(s: dict) -> None:
    s["alphas"] = check_fraction_list("alphas", s["alphas"])
    if len(s["alphas"]) < 2 or s["alphas"][0] != 0.0 or sorted(s["alphas"]) != s["alphas"]:
        raise ValueError(f"alphas={s['alphas']!r} is not valid; accepted values: increasing fractions starting at 0")
    _check_masking(s)
    check_int("noise_repeats", s["noise_repeats"], 1, 1000)
    check_int("seed", s["seed"])


@register_protocol("lor_curve", False, {"alphas": [round(0.4 * i / 9, 6) for i in range(10)], "masking": "mean",
                                        "noise_repeats": 2, "seed": 0},
                   ("saliency_core.metrics.sensitivity",),
                   description="clean top-1 probability p(α) over masked fractions α (curve; LEG's LOR figures "
                               "average p over images first); value: this image's LOR at the largest α",
                   checks=_check_lor_curve)
def _lor_curve(clf, x, e, *, alphas, masking, noise_repeats, seed):
    from .metrics import sensitivity

    df = sensitivity.lor_probabilities(clf, x, {"m": [e.map]}, maskings=(masking,), alphas=list(alphas),
                                       targets=[e.target], noise_repeats=noise_repeats, seed=seed)
    df = df.groupby("alpha", as_index=False)["prob"].mean().sort_values("alpha")
    p = df["prob"].clip(1e-12, 1 - 1e-12).to_numpy()
    value = math.log(p[-1] / (1 - p[-1])) - math.log(p[0] / (1 - p[0]))
    return value, _curve(df["alpha"], df["prob"])


def _check_skey(s: dict) -> None:
    _check_masking(s)
    check_int("n_grid", s["n_grid"], 2, 1_000_000)
    check_choice("search", s["search"], ("scan", "bisect", "brute"))
    check_int("seed", s["seed"])


def _skey(clf, x, e, *, masking, n_grid, search, seed):
    from .metrics import sensitivity

    r = sensitivity.s_key(clf, x, e.map, masking=masking, target=e.target, n_grid=n_grid, search=search, seed=seed)
    return r["s_key"], None


_SKEY_DEFAULTS = {"masking": "dist-100", "n_grid": 1000, "search": "scan", "seed": 0}
register_protocol("skey", False, _SKEY_DEFAULTS, ("saliency_core.metrics.sensitivity",),
                  description="key masking size S_key (LEG)", checks=_check_skey)(_skey)
for _m in ("dist-100", "black", "white", "mean", "noise"):
    register_protocol(f"skey_{_m}", False, {**_SKEY_DEFAULTS, "masking": _m}, ("saliency_core.metrics.sensitivity",),
                      description=f"S_key under the {_m} masking (LEG)", checks=_check_skey)(_skey)


# --------------------------------------------------------------------------------------------
# insertion / deletion, appendix §8
# --------------------------------------------------------------------------------------------
_MASK_EXTRAS = {"mask_x": "mask_x", "mask_y": "mask_y", "mask_xy": "mask_xy"}
_USES = ("map", "grid", *_MASK_EXTRAS)


def _mask_map(e, use: str) -> torch.Tensor:
    """The saliency to score: the explanation's map (``"map"``); I-GOS/iGOS++'s s×s saliency grid 1 − M when the
    explanation has one, else the map (``"grid"``: the official metric orders the mask's cells); or 1 − M of one of
    an iGOS++ explanation's s×s masks (``"mask_x"``, ``"mask_y"``, ``"mask_xy"``; Table 3)."""
    ex = e.extras if isinstance(e.extras, Mapping) else {}
    if use == "map":
        return e.map
    if use == "grid":
        g = ex.get("saliency_grid")
        return e.map if g is None else torch.as_tensor(g, dtype=torch.float32)
    m = ex.get(_MASK_EXTRAS[use])
    if m is None:
        raise ValueError(f"use={use!r} is not valid for method {e.method!r} (its explanation has no {use}); "
                         "accepted values: 'map', 'grid', or an iGOS/iGOS++ explanation")
    return 1.0 - torch.as_tensor(m, dtype=torch.float32)


def _insdel(preset: str, curve: str):
    def fn(clf, x, e, **s):
        from .metrics import insertion_deletion as insdel

        sal = _mask_map(e, s.pop("use", "map"))
        res = insdel.insertion_deletion(clf, x, sal, e.target, preset=preset, curves=(curve,), **s)
        c = res.curves
        return res.auc[curve], _curve(c["fraction"], c["score"])

    return fn


def _check_rise(s: dict) -> None:
    check_int("step", s["step"], 1)
    check_choice("ties", s["ties"], ("stable", "random"))


def _check_igospp(s: dict) -> None:
    check_int("grid", s["grid"], 1, 4096)
    check_optional_int("step", s["step"], 1)
    check_choice("ties", s["ties"], ("stable", "random"))
    check_bool("igospp_metric_bug", s["igospp_metric_bug"])
    check_choice("use", s["use"], _USES)


_INSDEL_MODULES = ("saliency_core.metrics.insertion_deletion",)
for _curve_name, _short, _up in (("deletion", "del", False), ("insertion", "ins", True)):
    register_protocol(f"{_short}_rise", _up, {"step": 224, "ties": "stable", "seed": 0}, _INSDEL_MODULES,
                      description=f"RISE-style {_curve_name} AUC", checks=_check_rise)(_insdel("rise", _curve_name))
    register_protocol(f"{_short}_igospp", _up, {"grid": 28, "step": None, "ties": "stable", "seed": 0,
                                                 "igospp_metric_bug": False, "use": "map"},
                      _INSDEL_MODULES,
                      description=f"iGOS++-style {_curve_name} AUC", checks=_check_igospp)(
        _insdel("igospp", _curve_name))


# --------------------------------------------------------------------------------------------
# measurements of Extremal Perturbations' own outputs (appendix §1): they read the explanation's extras
# --------------------------------------------------------------------------------------------
def _ep_extras(e) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    ex = e.extras if isinstance(e.extras, Mapping) else {}
    need = ("areas", "preserve_scores", "mask_area", "clean_score")
    if any(k not in ex for k in need):
        raise ValueError(f"method {e.method!r} is not valid for this protocol (its explanation has no "
                         f"{', '.join(need)}); accepted values: an extremal_perturbation explanation")
    areas = np.asarray(ex["areas"], dtype=float)
    order = np.argsort(areas)
    return (areas[order], np.asarray(ex["preserve_scores"], dtype=float)[order],
            np.asarray(ex["mask_area"], dtype=float)[order], float(ex["clean_score"]))


def _check_tau(s: dict) -> None:
    check_range("tau", s["tau"], 0.0, low_inclusive=False)


@register_protocol("ep_area_reward", False, {"tau": 0.9}, ("saliency_core.methods.extremal",),
                   description="EP: the reward ratio Φ(m_a ⊗ x)/Φ(x) over the optimised areas a (curve); value: the "
                               "extremal area a* = the smallest optimised a with ratio ≥ τ (NaN when none)",
                   checks=_check_tau)
def _ep_area_reward(clf, x, e, *, tau):
    areas, scores, _, clean = _ep_extras(e)
    ratio = scores / clean
    ok = areas[ratio >= tau]
    return (float(ok[0]) if len(ok) else float("nan")), _curve(areas, ratio)


@register_protocol("ep_visible_area", False, {"area": 0.1}, ("saliency_core.methods.extremal",),
                   description="EP: the visible (224² crop) mean of each area's mask (curve); value: the visible mean "
                               "at the optimised area closest to ``area``",
                   checks=lambda s: check_range("area", s["area"], 0.0, 1.0, low_inclusive=False))
def _ep_visible_area(clf, x, e, *, area):
    areas, _, visible, _ = _ep_extras(e)
    return float(visible[int(np.argmin(np.abs(areas - area)))]), _curve(areas, visible)


@register_protocol("map_tv", False, {}, ("saliency_core.explanation",),
                   description="total variation of the map: mean |vertical difference| + mean |horizontal "
                               "difference| (lower = smoother; fragmented masks score high)")
def _map_tv(clf, x, e):
    m = e.map.double()
    return float((m[1:] - m[:-1]).abs().mean() + (m[:, 1:] - m[:, :-1]).abs().mean()), None


# --------------------------------------------------------------------------------------------
# invariance of a perturbation box (appendix §2): the invariant methods' boxes, read from their extras
# --------------------------------------------------------------------------------------------
def _box(e, half_width):
    from .metrics import invariance

    try:
        lower, upper = invariance.box_from_explanation(e)
    except ValueError:
        raise ValueError(f"method {e.method!r} is not valid for this protocol (no perturbation box in its "
                         "explanation); accepted values: an invariant_* explanation") from None
    lower, upper = torch.as_tensor(lower, dtype=torch.float32), torch.as_tensor(upper, dtype=torch.float32)
    width = invariance.box_half_width(lower, upper)
    if half_width is not None:
        lower, upper = invariance.scale_box(lower, upper, half_width)
    return lower, upper, width


def _check_worst(s: dict) -> None:
    check_int("k", s["k"], 1, 999)
    check_int("iterations", s["iterations"], 0, 10_000)
    check_range("step", s["step"], 0.0, low_inclusive=False)
    if s["half_width"] is not None:
        check_range("half_width", s["half_width"], 0.0, low_inclusive=False)


@register_protocol("invariance_worst_case", True, {"k": 5, "iterations": 20, "step": 0.25, "half_width": None},
                   ("saliency_core.metrics.invariance",),
                   description="invariant methods: the smallest margin f_c − max_j f_j found in the box by a "
                               "worst-case search (< 0: the box is not invariant); half_width rescales the box first; "
                               "curve: the smallest margin after each ascent step", checks=_check_worst)
def _invariance_worst_case(clf, x, e, *, k, iterations, step, half_width):
    from .metrics import invariance

    lower, upper, _ = _box(e, half_width)
    r = invariance.worst_case_invariance(clf, x, e.target, lower.to(x.device), upper.to(x.device), k=k,
                                         iterations=iterations, step=step)
    hist = [float(v) for v in r["history"]]
    return float(r["min_margin"]), _curve(range(len(hist)), hist)


def _check_rate(s: dict) -> None:
    check_int("n_samples", s["n_samples"], 1, 1_000_000)
    check_int("seed", s["seed"], 0)
    if s["half_width"] is not None:
        check_range("half_width", s["half_width"], 0.0, low_inclusive=False)


@register_protocol("invariance_rate", True, {"n_samples": 128, "seed": 0, "half_width": None},
                   ("saliency_core.metrics.invariance",),
                   description="invariant methods: fraction of uniform draws in the box that keep the top-1 (the "
                               "expectation stand-in of the stochastic paper's Prop. 3.1, not a worst case); curve: "
                               "one point (the box's mean half-width, the rate)", checks=_check_rate)
def _invariance_rate(clf, x, e, *, n_samples, seed, half_width):
    from .metrics import invariance

    lower, upper, width = _box(e, half_width)
    rate = invariance.invariance_rate(clf, x, e.target, lower, upper, n_samples=n_samples, seed=seed)
    return float(rate), _curve([width if half_width is None else half_width], [rate])


# --------------------------------------------------------------------------------------------
# cascading-randomisation sanity check, appendix §9
# --------------------------------------------------------------------------------------------
_MEASURES = ("spearman_abs", "spearman_signed", "ssim", "hog")


def _check_sanity(s: dict) -> None:
    check_choice("measure", s["measure"], _MEASURES)
    check_choice("init", s["init"], ("default", "uniform0.05"))
    check_int("seed", s["seed"])
    layers = s["layers"]
    if layers is not None and not isinstance(layers, (list, tuple)):
        check_int("layers", layers, 1)
    check_bool("reset_bn_stats", s["reset_bn_stats"])


def randomization_spec(clf: Classifier, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The randomised model a sanity score compares against: ``layers`` (``None`` = every layer of
    ``clf.layer_order``, an int n = the top n, or a list of names), ``init``, ``seed``, ``reset_bn_stats``."""
    layers = settings.get("layers")
    if layers is None:
        names = list(clf.layer_order)
    elif isinstance(layers, (list, tuple)):
        names = [str(n) for n in layers]
    else:
        names = list(clf.layer_order[: check_int("layers", layers, 1)])
    if not names:
        raise ValueError("layers=[] is not valid; accepted values: None (all), an int >= 1 or module names")
    return {"layers": names, "init": settings.get("init", "default"), "seed": int(settings.get("seed", 0)),
            "reset_bn_stats": bool(settings.get("reset_bn_stats", False))}


def randomized_model(clf: Classifier, spec: Mapping[str, Any]) -> Classifier:
    """A copy of ``clf`` randomised as :func:`randomization_spec` says (the original is untouched)."""
    from .metrics import sanity

    return sanity.randomized_copy(clf, spec["layers"], init=spec["init"], seed=spec["seed"],
                                  reset_bn_stats=spec["reset_bn_stats"])


def _reference_explanation(clf, x, e, settings) -> Explanation:
    """The same method, same settings, on the randomised model, explaining that model's own top-1."""
    from .methods import get_explainer

    rand = randomized_model(clf, randomization_spec(clf, settings))
    return get_explainer(e.method, rand, **e.settings).explain(x, None)


@register_protocol("sanity", False, {"measure": "spearman_abs", "layers": None, "init": "default", "seed": 0,
                                     "reset_bn_stats": False}, ("saliency_core.metrics.sanity",), randomization=True,
                   description="similarity to the map after randomising the model (Adebayo et al.)",
                   checks=_check_sanity)
def _sanity(clf, x, e, *, reference, measure, layers, init, seed, reset_bn_stats):
    from .metrics import sanity

    return sanity.similarities(e.map, reference.map)[measure], None
