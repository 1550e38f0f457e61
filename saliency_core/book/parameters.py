"""Chapter parameters: read a notebook's papermill ``parameters`` cell and check values against it, early.

A chapter's parameters are the names assigned in its cell tagged ``parameters``; their defaults fix each
parameter's type (an int default takes ints ≥ 0, a float default finite numbers, a list default lists of the same
element type, ...). Per-notebook rules refine that: a ``rules:`` mapping in ``params/<stem>.yaml`` and the shared
:data:`COMMON_RULES` (``model``, ``device``, ``n_images`` ...). :func:`validate_parameters` returns the values
converted where the conversion is exact (``1e3`` → ``1000`` for an int) or raises one ``ValueError`` line naming
every bad parameter and what is accepted; unknown names are refused with the closest known name.

Two places call it: the runner, before any notebook is executed (:func:`saliency_core.book.runner.main`), and the
validation cell that ``tools/standard_cells.py`` puts right after each chapter's parameters cell
(:func:`check_parameters`), so a direct ``papermill -p n_images -3`` fails in the first cells, not after the work.

Rule keys (all optional)::

    type: int | float | bool | str | list | dict | any | file | dir | weights | device | methods | protocols
    none: true            # None is accepted too
    min / max             # inclusive bounds (numbers; for lists: of every item via ``items``)
    gt / lt               # exclusive bounds
    choices: [...]        # or a named set: models, explainers, profiles, protocols
    items: {rule}         # rule of every list item;  min_len / max_len: list length
    keys: [...] | name    # dict keys (list or named set);  values: {rule} of every dict value
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import numbers
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "COMMON_RULES",
    "notebook_defaults",
    "notebook_rules",
    "infer_rule",
    "validate_parameters",
    "check_parameters",
    "check_notebook_parameters",
]

#: rules of parameter names shared by the chapters (a notebook's own ``rules:`` override them key by key)
COMMON_RULES: dict[str, dict[str, Any]] = {
    "model": {"type": "str", "choices": "models"},
    "weights": {"type": "weights", "none": True},
    "data_dir": {"type": "dir", "none": True},
    "labels": {"type": "file", "none": True},
    "boxes": {"type": "file", "none": True},
    "n_images": {"type": "int", "min": 1, "none": True},
    "device": {"type": "device"},
    "profile": {"type": "str", "choices": "profiles"},
    "seed": {"type": "int", "min": 0},
    "image_index": {"type": "int", "min": 0},
    "batch_size": {"type": "int", "min": 1, "max": 100_000},
    "methods": {"type": "methods", "none": True},
    "protocols": {"type": "protocols", "none": True},
    "results_dir": {"type": "dir"},
}

#: names the kernel defines by itself (IPython): never taken for injected parameters
_KERNEL_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open", "display"})


# --------------------------------------------------------------------------------------------
# reading a notebook
# --------------------------------------------------------------------------------------------
def _cells(nb: Any) -> list[dict]:
    if isinstance(nb, (str, os.PathLike)):
        nb = json.loads(Path(nb).read_text(encoding="utf-8"))
    return list(nb.get("cells", []))


def _source(cell: Mapping) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def parameters_cell_index(nb: Any) -> int | None:
    """Index of the cell tagged ``parameters`` (``None`` when there is none)."""
    for i, cell in enumerate(_cells(nb)):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def notebook_defaults(nb: Any) -> dict[str, Any]:
    """``name → default`` of a notebook's ``parameters`` cell (a path or a loaded notebook dict).

    Only plain assignments of literals are read (``n = 3``, ``sizes = [7]``, ``w = None``); anything else in the
    cell is refused with a one-line error: a parameters cell holds literals, papermill overwrites them.
    """
    cells = _cells(nb)
    i = parameters_cell_index({"cells": cells})
    if i is None:
        return {}
    src = _source(cells[i])
    out: dict[str, Any] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name = node.target.id
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring-like string
        else:
            raise ValueError(f"parameters cell line {node.lineno} is not a literal assignment; accepted values: "
                             "name = <literal> lines only")
        try:
            out[name] = ast.literal_eval(node.value)
        except ValueError:
            raise ValueError(f"parameter {name!r} (parameters cell line {node.lineno}) is not a literal; accepted "
                             "values: numbers, strings, None, True/False, lists, tuples, dicts") from None
    return out


def notebook_rules(root: str | os.PathLike, stem: str) -> dict[str, dict[str, Any]]:
    """The ``rules:`` mapping of ``params/<stem>.yaml`` (``{}`` when the file or the key is missing)."""
    import yaml

    f = Path(root) / "params" / f"{stem}.yaml"
    if not f.is_file():
        return {}
    data = yaml.safe_load(f.read_text()) or {}
    rules = data.get("rules") or {}
    if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
        raise ValueError(f"{f}: rules is not valid; accepted values: a mapping name -> rule mapping")
    return rules


# --------------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def infer_rule(default: Any) -> dict[str, Any]:
    """The rule a default implies: its type (ints ≥ 0: every int parameter of the chapters counts something)."""
    if isinstance(default, bool):
        return {"type": "bool"}
    if _is_int(default):
        return {"type": "int", "min": 0} if default >= 0 else {"type": "int"}
    if _is_real(default):
        return {"type": "float"}
    if isinstance(default, str):
        return {"type": "str"}
    if isinstance(default, (list, tuple)):
        rule: dict[str, Any] = {"type": "list"}
        kinds = {json.dumps(infer_rule(v), sort_keys=True) for v in default}
        if len(kinds) == 1:
            item = json.loads(kinds.pop())
            if item.get("type") == "int" and all(_is_int(v) and v >= 1 for v in default):
                item["min"] = 1
            rule["items"] = item
        return rule
    if isinstance(default, dict):
        return {"type": "dict"}
    return {"type": "any"}


def _named(name: str) -> list[Any]:
    if name == "models":
        from ..models import available_models

        return available_models()
    if name == "explainers":
        from ..methods import available_explainers

        return available_explainers()
    if name == "profiles":
        from .report import PROFILES

        return list(PROFILES)
    if name == "protocols":
        try:
            from ..protocols import available_protocols

            return list(available_protocols())
        except ImportError:  # pragma: no cover - the registry is newer than the leaderboard's table
            from ..leaderboard import PROTOCOLS

            return list(PROTOCOLS)
    raise ValueError(f"choices={name!r} is not valid; accepted values: a list, or models, explainers, profiles, "
                     "protocols")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class _Bad(Exception):
    """One parameter's problem: ``accepted`` says what would have been accepted."""

    def __init__(self, accepted: str) -> None:
        super().__init__(accepted)
        self.accepted = accepted


def _bounds_text(rule: Mapping[str, Any]) -> str:
    parts = []
    for key, op in (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<")):
        if rule.get(key) is not None:
            parts.append(f"{op} {rule[key]}")
    return (" " + " and ".join(parts)) if parts else ""


def _check_bounds(v: float, rule: Mapping[str, Any]) -> None:
    lo, hi, gt, lt = rule.get("min"), rule.get("max"), rule.get("gt"), rule.get("lt")
    if (lo is not None and v < lo) or (hi is not None and v > hi) or (gt is not None and v <= gt) or \
            (lt is not None and v >= lt):
        raise _Bad(_describe(rule))


def _check_path(v: Any, kind: str, base: Path | None) -> str:
    what = "an existing folder" if kind == "dir" else "an existing file"
    if not isinstance(v, (str, os.PathLike)) or not str(v).strip():
        raise _Bad(what)
    p = Path(v).expanduser()
    cands = [p] if p.is_absolute() else [Path.cwd() / p] + ([base / p] if base is not None else [])
    for c in cands:
        if (c.is_dir() if kind == "dir" else c.is_file()):
            return str(c.resolve()) if not p.is_absolute() and c == cands[0] and base is not None else str(v)
    raise _Bad(f"{what} (relative paths: to the current folder)")


def _check_value(v: Any, rule: Mapping[str, Any], base: Path | None) -> Any:
    """``v`` (converted where exact) if it satisfies ``rule``, else :class:`_Bad`."""
    kind = rule.get("type", "any")
    if v is None:
        if rule.get("none"):
            return None
        if kind != "any":
            raise _Bad(_describe(rule))
    if "choices" in rule and kind not in ("list", "dict"):
        choices = _named(rule["choices"]) if isinstance(rule["choices"], str) else list(rule["choices"])
        if (isinstance(v, bool) and not any(isinstance(c, bool) for c in choices)) or v not in choices:
            raise _Bad(", ".join(map(repr, choices)) + (" or None" if rule.get("none") else ""))
        return v
    if kind == "any":
        return v
    if kind == "bool":
        if isinstance(v, bool) or type(v).__name__ == "bool_":
            return bool(v)
        raise _Bad("True or False")
    if kind == "int":
        if _is_int(v):
            out = int(v)
        elif _is_real(v) and math.isfinite(float(v)) and float(v).is_integer():
            out = int(v)  # papermill reads 1e3 as 1000.0
        else:
            raise _Bad(_describe(rule))
        _check_bounds(out, rule)
        return out
    if kind == "float":
        if not _is_real(v) or not math.isfinite(float(v)):
            raise _Bad(_describe(rule))
        _check_bounds(float(v), rule)
        return v if isinstance(v, (int, float)) else float(v)
    if kind == "str":
        if not isinstance(v, str):
            raise _Bad(_describe(rule))
        return v
    if kind in ("file", "dir"):
        return _check_path(v, kind, base)
    if kind == "weights":
        if v == "random":
            return v
        try:
            return _check_path(v, "file", base)
        except _Bad:
            raise _Bad("None (shipped weights), 'random', or an existing state_dict file") from None
    if kind == "device":
        return _check_device(v)
    if kind == "list":
        if not isinstance(v, (list, tuple)):
            raise _Bad(_describe(rule))
        n_lo, n_hi = rule.get("min_len", 0), rule.get("max_len")
        if len(v) < n_lo or (n_hi is not None and len(v) > n_hi):
            raise _Bad(_describe(rule))
        item = rule.get("items")
        if item is None:
            return v
        out = []
        for i, x in enumerate(v):
            try:
                out.append(_check_value(x, item, base))
            except _Bad as exc:
                raise _Bad(f"a list whose items are {exc.accepted} (item {i} is {_show(x)})") from None
        return type(v)(out)
    if kind == "dict":
        if not isinstance(v, dict):
            raise _Bad("a mapping")
        keys = rule.get("keys")
        if keys is not None:
            allowed = _named(keys) if isinstance(keys, str) else list(keys)
            for k in v:
                if k not in allowed:
                    raise _Bad(f"a mapping with keys among {', '.join(map(repr, allowed))} (not {k!r})")
        values = rule.get("values")
        return {k: _check_value(x, values, base) for k, x in v.items()} if values else v
    if kind == "methods":
        return _check_methods(v)
    if kind == "protocols":
        return _check_protocols(v)
    raise ValueError(f"rule type={kind!r} is not valid; accepted values: int, float, bool, str, list, dict, any, "
                     "file, dir, weights, device, methods, protocols")


def _describe(rule: Mapping[str, Any]) -> str:
    kind = rule.get("type", "any")
    text = {"int": "an int", "float": "a finite number", "bool": "True or False", "str": "a str",
            "list": "a list", "dict": "a mapping", "any": "any value"}.get(kind, kind)
    if kind == "list" and (rule.get("min_len") or rule.get("max_len")):
        text += f" of {rule.get('min_len', 0)} to {rule.get('max_len', 'any number of')} items"
    return text + _bounds_text(rule) + (", or None" if rule.get("none") else "")


def _check_device(v: Any) -> str:
    import torch

    if not isinstance(v, str):
        raise _Bad("'cpu', 'cuda', 'cuda:N' or 'mps'")
    try:
        dev = torch.device(v)
    except (RuntimeError, TypeError):
        raise _Bad("'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise _Bad("'cpu' (no CUDA device on this machine)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise _Bad("'cpu', 'cuda', 'cuda:N' or 'mps'")
    return v


def _check_methods(v: Any) -> dict:
    """``{method name: {hyper-parameter: value}}``: registered names, and hyper-parameter names each method takes."""
    import inspect

    from ..methods import available_explainers, explainer_class

    if not isinstance(v, dict):
        raise _Bad("a mapping method name -> {hyper-parameter: value}")
    names = available_explainers()
    for m, hp in v.items():
        if m not in names:
            close = difflib.get_close_matches(str(m), names, n=1)
            raise _Bad(f"registered methods ({', '.join(names)}); not {m!r}"
                       + (f" (did you mean {close[0]!r}?)" if close else ""))
        if hp is None:
            continue
        if not isinstance(hp, dict):
            raise _Bad(f"a mapping of hyper-parameters for {m!r}, not {_show(hp)}")
        accepted = [k for k in inspect.signature(explainer_class(m).__init__).parameters if k not in ("self", "model")]
        for k in hp:
            if k not in accepted:
                close = difflib.get_close_matches(str(k), accepted, n=1)
                raise _Bad(f"hyper-parameters of {m!r} ({', '.join(accepted)}); not {k!r}"
                           + (f" (did you mean {close[0]!r}?)" if close else ""))
    return v


def _check_protocols(v: Any) -> Any:
    """A list of protocol names, or a mapping protocol name -> settings mapping (or None)."""
    names = _named("protocols")
    if not isinstance(v, (list, tuple, dict)):
        raise _Bad("a list of protocol names or a mapping protocol -> settings")
    for p in v:
        if p not in names:
            close = difflib.get_close_matches(str(p), names, n=1)
            raise _Bad(f"protocols among {', '.join(names)}; not {p!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                           else ""))
        if isinstance(v, dict) and v[p] is not None and not isinstance(v[p], dict):
            raise _Bad(f"a mapping of settings for {p!r}, not {_show(v[p])}")
    return v


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def validate_parameters(values: Mapping[str, Any], defaults: Mapping[str, Any],
                        rules: Mapping[str, Mapping[str, Any]] | None = None, *, notebook: str = "the notebook",
                        base: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check ``values`` (name → value) against a notebook's ``defaults`` and ``rules``; return them converted.

    Every name must be a parameter of the notebook; every value must satisfy the rule of its name
    (:data:`COMMON_RULES`, then ``rules``, over the rule inferred from the default). ``base``: the folder relative
    paths may also be relative to (the notebook's folder); a path found relative to the current folder is returned
    absolute. One ``ValueError`` line lists every problem.
    """
    rules = dict(rules or {})
    base_p = Path(base) if base is not None else None
    problems, out = [], {}
    known = list(defaults)
    for name, value in values.items():
        if name not in defaults:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{name}={_show(value)} is not a parameter of {notebook}{hint}; accepted values: "
                            f"{', '.join(known)}")
            continue
        rule = {**infer_rule(defaults[name]), **COMMON_RULES.get(name, {}), **rules.get(name, {})}
        if defaults[name] is None and "none" not in rule:
            rule["none"] = True
        try:
            out[name] = _check_value(value, rule, base_p)
        except _Bad as exc:
            problems.append(f"{name}={_show(value)} is not valid; accepted values: {exc.accepted}")
    if problems:
        raise ValueError(f"{notebook}: " + " | ".join(problems))
    return out


def check_notebook_parameters(root: str | os.PathLike, stem: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`validate_parameters` for ``notebooks/<stem>.ipynb`` of the book at ``root`` with its ``rules:``."""
    root = Path(root)
    nb = root / "notebooks" / f"{stem}.ipynb"
    return validate_parameters(values, notebook_defaults(nb), notebook_rules(root, stem), notebook=stem,
                               base=nb.parent)


def check_parameters(namespace: dict[str, Any], notebook: str, defaults: Mapping[str, Any],
                     rules: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """The chapters' validation cell: check the parameters now in ``namespace`` (the kernel's ``globals()``).

    Names the kernel holds that are not parameters (and not IPython's own, private or modules) were injected by
    papermill under a wrong name: refused. Values are checked with :func:`validate_parameters` and written back
    converted (``1e3`` → ``1000``).
    """
    injected = {k: v for k, v in namespace.items()
                if not k.startswith("_") and k not in defaults and k not in _KERNEL_NAMES
                and not isinstance(v, types.ModuleType) and not callable(v)}
    values = {k: namespace[k] for k in defaults if k in namespace}
    values.update(injected)
    namespace.update(validate_parameters(values, defaults, rules, notebook=notebook))
