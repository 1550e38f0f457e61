"""Studies: image × method × protocol evaluations declared once, run as Dask tasks, stored, merged and resumed.

A :class:`Study` (a YAML file in ``params/studies/`` or a dataclass) names a model, a set of images, methods
``{label: {method: <registry name>, **settings}}`` and protocols ``{label: {protocol: <registry name>, **settings}}``.
:func:`plan` turns it into tasks whose ids are content keys (:mod:`saliency_core.store`): one explanation per
(image, method), one score per (image, method, protocol), and one explanation of the randomised model per
(image, method) for the sanity check. Two studies that share a task share its result.

:func:`run` executes the plan:

* ``workers=0`` (or ``client="serial"``): in this process, one task after the other (notebooks, small studies);
* default: a ``LocalCluster(n_workers=<cores>, threads_per_worker=1, processes=True)`` of Dask distributed;
* ``scheduler="tcp://HOST:PORT"``: an existing cluster (``dask scheduler`` + ``dask worker --nthreads 1
  [--resources GPU=1]``, or dask-jobqueue / dask-kubernetes); ``client=`` a ``distributed.Client`` you made.

One Dask task explains one image with one method and scores that explanation under every protocol (the sanity
check's randomised model is explained in the same task), so a worker keeps one model and large batches. Each
worker process loads the model once and pins its torch threads. Explanations stay in the workers' store (the same
folder for a local cluster, or a shared one); the score, curve and cost rows come back to this process, which
appends them to its store, so rows merge safely and exactly once. Resumable: a task whose rows are in the store
is not submitted; a worker killed mid-task is rescheduled by Dask; Ctrl-C keeps every finished row.

:func:`load_results` returns the study's tidy tables (scores, curves, costs) from the store, :func:`write_tables`
writes them with a ``provenance.json`` into one folder, and :func:`import_tables` puts such a folder back into a
store (a long run resumes across sessions from committed tables).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ._version import __version__
from .checks import check_choice, check_int, check_optional_int
from .codehash import code_hash, file_code_hash, library_hash, object_code_hash
from .explanation import Explanation
from .files import atomic_write, atomic_write_text
from .methods import explainer_class, get_explainer
from .models import Classifier, available_models, load_model
from .protocols import get_protocol, randomization_spec, randomized_model
from .store import (
    TABLE_COLUMNS,
    Store,
    content_key,
    curve_rows,
    image_digest,
    model_identity,
    randomized_identity,
    score_payload,
)

__all__ = [
    "Study",
    "Task",
    "Plan",
    "Results",
    "load_study",
    "plan",
    "protocol_settings",
    "run",
    "load_results",
    "write_tables",
    "read_tables",
    "import_tables",
    "load_study_model",
    "local_cluster",
    "worker_environment",
    "StudyError",
]

log = logging.getLogger("saliency_core.study")

TABLES = ("scores", "curves", "costs")
#: columns that hold wall times (they differ between runs; everything else is reproducible)
TIME_COLUMNS = ("seconds",)


class StudyError(RuntimeError):
    """A task failed (its message names the image and method), or workers disagree with the client."""


# --------------------------------------------------------------------------------------------
# the spec
# --------------------------------------------------------------------------------------------
_SPEC_KEYS = ("name", "model", "weights", "images", "methods", "protocols", "device", "sanity", "batch_size",
              "threads", "target", "imports")
_SANITY_KEYS = ("layers", "init", "seed", "reset_bn_stats", "measure")
_IMAGE_KEYS = ("embedded", "folder", "labels", "n", "seed", "ids", "include_skimage")


@dataclass
class Study:
    """A declarative evaluation (see the module documentation and ``params/studies/*.yaml``).

    Attributes
    ----------
    name : str
        Names the default output folder (``<store>/studies/<name>``).
    methods : dict
        ``{label: {"method": registry name, **hyper-parameters}}`` (``method`` defaults to the label).
    protocols : dict
        ``{label: {"protocol": registry name, **settings}}`` (``protocol`` defaults to the label; an optional
        ``methods: [labels]`` restricts a protocol to those methods, e.g. one that reads a method's extras); a list of
        registry names is accepted.
    model, weights : str
        :func:`~saliency_core.load_model` arguments, or ``model="package.module:factory"`` for a function
        returning a :class:`~saliency_core.models.Classifier` (its module must be importable on every worker).
    images : dict
        ``{"embedded": {"n": N}}`` (the photos shipped with the package, the first N), ``{"folder": DIR,
        "labels": FILE, "n": N, "seed": S}`` (:func:`~saliency_core.load_folder`), with ``"ids": [...]`` to keep
        an explicit list of image ids.
    device : str
        Where the workers run the model (``"cpu"``, ``"cuda"``); planning always runs on the CPU.
    sanity : dict
        Randomisation settings shared by every protocol that compares against a randomised model (``layers``,
        ``init``, ``seed``, ``reset_bn_stats``; a protocol's own settings win).
    batch_size : int, optional
        Runtime batch size passed to every method that takes one (not part of any key).
    threads : int
        Torch threads per worker process.
    target : {"top1", "label"}
        Explain the model's top-1 class (key: ``None``) or the image's label.
    imports : list of str
        Modules imported (here and on every worker) before anything else: your own methods or protocols, registered
        with ``@register`` / ``@register_protocol``. The module of a ``model="module:factory"`` is imported too.
    """

    name: str
    methods: dict[str, dict[str, Any]]
    protocols: dict[str, dict[str, Any]]
    model: str = "efficientnet_lite0"
    weights: str | None = None
    images: dict[str, Any] = field(default_factory=lambda: {"embedded": {}})
    device: str = "cpu"
    sanity: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    threads: int = 1
    target: str = "top1"
    imports: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.imports, str):
            self.imports = [self.imports]
        if not isinstance(self.imports, (list, tuple)) or not all(isinstance(m, str) for m in self.imports):
            raise ValueError(f"imports={self.imports!r} is not valid; accepted values: a list of module names")
        self.imports = list(self.imports)
        _import_plugins(self)
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\\0") \
                or self.name.startswith("."):
            raise ValueError(f"name={self.name!r} is not valid; accepted values: a non-empty file-name-safe string")
        self.methods = _normalize_entries("methods", "method", self.methods)
        self.protocols = _normalize_entries("protocols", "protocol", self.protocols)
        for label, spec in self.methods.items():
            try:
                explainer_class(spec["method"])
            except ValueError as exc:
                raise ValueError(f"methods[{label!r}]: {exc}") from None
        for label, spec in self.protocols.items():
            try:
                get_protocol(spec["protocol"])
            except ValueError as exc:
                raise ValueError(f"protocols[{label!r}]: {exc}") from None
            only = spec.get("methods")
            if only is not None:  # the protocol scores only these methods (e.g. one that reads a method's extras)
                if isinstance(only, str):
                    only = spec["methods"] = [only]
                bad = [m for m in only if m not in self.methods] if isinstance(only, (list, tuple)) else [only]
                if bad or not only:
                    raise ValueError(f"protocols[{label!r}].methods={only!r} is not valid; accepted values: a "
                                     f"non-empty list of method labels of this study ({', '.join(self.methods)})")
        self.images = _normalize_images(self.images)
        if not isinstance(self.sanity, dict) or set(self.sanity) - set(_SANITY_KEYS):
            raise ValueError(f"sanity={self.sanity!r} is not valid; accepted values: a mapping of randomisation "
                             f"settings ({', '.join(_SANITY_KEYS)})")
        self.batch_size = check_optional_int("batch_size", self.batch_size, 1)
        self.threads = check_int("threads", self.threads, 1, 1024)
        check_choice("target", self.target, ("top1", "label"))
        if not isinstance(self.device, str):
            raise ValueError(f"device={self.device!r} is not valid; accepted values: 'cpu', 'cuda', 'cuda:N'")
        if ":" not in str(self.model):
            check_choice("model", self.model, available_models())

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], **overrides: Any) -> Study:
        """A study from a mapping (e.g. parsed YAML); ``overrides`` replace top-level entries."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"study spec is a {type(spec).__name__}; accepted values: a mapping with keys "
                             f"{', '.join(_SPEC_KEYS)}")
        data = {**spec, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(data) - set(_SPEC_KEYS))
        if unknown:
            raise ValueError(f"study key {unknown[0]!r} is not valid; accepted values: {', '.join(_SPEC_KEYS)}")
        for req in ("name", "methods", "protocols"):
            if req not in data:
                raise ValueError(f"study spec has no {req!r}; accepted values: a mapping with name, methods, "
                                 "protocols (and model, weights, images, device, sanity, batch_size, threads, target)")
        return cls(**copy.deepcopy(dict(data)))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> Study:
        """A study from a YAML file (``params/studies/<name>.yaml``)."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"spec={str(path)!r} is not a file; accepted values: a study YAML file "
                             "(params/studies/*.yaml)")
        with open(path, encoding="utf-8") as fh:
            spec = yaml.safe_load(fh)
        return cls.from_dict(spec, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dataclasses.asdict(self))

    def with_images(self, data: str | os.PathLike | None = None, labels: str | os.PathLike | None = None,
                    n: int | None = None, seed: int | None = None) -> Study:
        """A copy with other images: ``data`` (a folder) replaces the image source; ``n``/``seed`` the subset."""
        images = copy.deepcopy(self.images)
        if data is not None:
            images = {"folder": str(data), "labels": None if labels is None else str(labels), "n": None,
                      "seed": images.get("seed", 0)}
        elif labels is not None:
            raise ValueError("labels without data is not valid; accepted values: --data DIR [--labels FILE]")
        if "embedded" in images:  # the first n photos (a seed does not apply)
            if n is not None:
                images["embedded"]["n"] = n
        else:
            if n is not None:
                images["n"] = n
            if seed is not None:
                images["seed"] = seed
        return dataclasses.replace(self, images=images)


def _import_plugins(study: Study) -> None:
    """Import ``study.imports`` and the module of a model factory (they may register methods and protocols)."""
    mods = list(study.imports)
    if ":" in str(study.model):
        mods.append(str(study.model).partition(":")[0])
    for m in mods:
        try:
            importlib.import_module(m)
        except ImportError as exc:
            raise ValueError(f"module {m!r} could not be imported ({exc}); accepted values: modules on sys.path "
                             "(PYTHONPATH) of the client and every worker") from None


def load_study(spec: str | os.PathLike | Mapping[str, Any] | Study, **overrides: Any) -> Study:
    """A :class:`Study` from a YAML path, a mapping or a study (``overrides`` replace top-level entries)."""
    if isinstance(spec, Study):
        return dataclasses.replace(spec, **overrides) if overrides else spec
    if isinstance(spec, Mapping):
        return Study.from_dict(spec, **overrides)
    return Study.from_yaml(spec, **overrides)


def _normalize_entries(what: str, key: str, entries: Any) -> dict[str, dict[str, Any]]:
    if isinstance(entries, (list, tuple)):
        entries = {str(e): {} for e in entries}
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError(f"{what}={entries!r} is not valid; accepted values: a non-empty mapping "
                         f"{{label: {{{key}: name, ...settings}}}} or a list of names")
    out = {}
    for label, spec in entries.items():
        spec = {} if spec is None else spec
        if not isinstance(spec, Mapping):
            raise ValueError(f"{what}[{label!r}]={spec!r} is not valid; accepted values: a mapping of settings")
        spec = dict(spec)
        spec.setdefault(key, str(label))
        out[str(label)] = spec
    return out


def _normalize_images(images: Any) -> dict[str, Any]:
    """One image source (embedded / folder, see :class:`Study`), or several:
    ``{sources: [source, ...], n: N, seed: S}`` (or a bare list of sources) concatenates them in the given order,
    each source in its own deterministic order, and keeps the first ``n`` after a seeded shuffle of every source but
    the first — a prefix-stable selection, so that a larger ``n`` extends the same images (a run grows, resumes)."""
    if isinstance(images, (list, tuple)):
        images = {"sources": list(images)}
    if isinstance(images, Mapping) and "sources" in images:
        unknown = sorted(set(images) - {"sources", "n", "seed"})
        if unknown:
            raise ValueError(f"images key {unknown[0]!r} is not valid with sources; accepted values: sources, n, seed")
        srcs = images["sources"]
        if not isinstance(srcs, (list, tuple)) or not srcs:
            raise ValueError(f"images.sources={srcs!r} is not valid; accepted values: a non-empty list of sources")
        return {"sources": [_normalize_images(s) for s in srcs],
                "n": check_optional_int("images.n", images.get("n"), 1),
                "seed": check_int("images.seed", images.get("seed", 0))}
    if images is None or images == "embedded":
        images = {"embedded": {}}
    if not isinstance(images, Mapping):
        raise ValueError(f"images={images!r} is not valid; accepted values: {{embedded: {{n: N}}}} or "
                         "{folder: DIR, labels: FILE, n: N, seed: S} (optionally with ids: [...])")
    images = dict(images)
    unknown = sorted(set(images) - set(_IMAGE_KEYS))
    if unknown:
        raise ValueError(f"images key {unknown[0]!r} is not valid; accepted values: {', '.join(_IMAGE_KEYS)}")
    emb = images.get("embedded")
    if emb is not None and emb is not False:
        if images.get("folder"):
            raise ValueError("images has both embedded and folder; accepted values: one image source")
        if emb is True:
            emb = {}
        if not isinstance(emb, Mapping):
            raise ValueError(f"images.embedded={emb!r} is not valid; accepted values: {{n: N, include_skimage: "
                             "false}} or true")
        n = emb.get("n", images.get("n"))
        out = {"embedded": {"n": check_optional_int("images.n", n, 1),
                            "include_skimage": bool(emb.get("include_skimage", images.get("include_skimage",
                                                                                          False)))}}
    elif images.get("folder"):
        out = {"folder": str(images["folder"]), "labels": None if images.get("labels") is None
               else str(images["labels"]), "n": check_optional_int("images.n", images.get("n"), 1),
               "seed": check_int("images.seed", images.get("seed", 0))}
    elif images.get("ids") is not None:
        out = {"embedded": {"n": None, "include_skimage": True}}
    else:
        raise ValueError(f"images={images!r} is not valid; accepted values: {{embedded: {{n: N}}}} or "
                         "{folder: DIR, labels: FILE, n: N, seed: S}")
    if images.get("ids") is not None:
        ids = images["ids"]
        if not isinstance(ids, (list, tuple)) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"images.ids={ids!r} is not valid; accepted values: a non-empty list of image ids")
        out["ids"] = list(ids)
    return out


def load_records(study: Study) -> list:
    """The study's image records (in a deterministic order)."""
    return _records(study.images)


def _records(spec: dict[str, Any]) -> list:
    from .data import embedded_images, load_folder

    if "sources" in spec:
        import random

        recs = list(_records(spec["sources"][0]))
        rest = [r for src in spec["sources"][1:] for r in _records(src)]
        random.Random(spec["seed"]).shuffle(rest)
        recs += rest
        seen = set()
        recs = [r for r in recs if not (r.id in seen or seen.add(r.id))]
        return recs if spec["n"] is None else recs[: spec["n"]]
    if "folder" in spec:
        recs = load_folder(spec["folder"], spec["labels"], None if spec.get("ids") else spec["n"], spec["seed"])
    else:
        emb = spec["embedded"]
        recs = embedded_images(include_skimage=emb["include_skimage"])
        if emb["n"] is not None and not spec.get("ids"):
            recs = recs[: emb["n"]]
    if spec.get("ids"):
        by_id = {r.id: r for r in recs}
        missing = [i for i in spec["ids"] if i not in by_id]
        if missing:
            raise ValueError(f"images.ids names {missing[0]!r}, which is not among the study's images; accepted "
                             f"values: e.g. {', '.join(list(by_id)[:3])}")
        recs = [by_id[i] for i in spec["ids"]]
    if not recs:
        raise ValueError("the study has no images")
    return recs


# --------------------------------------------------------------------------------------------
# the model (client and workers)
# --------------------------------------------------------------------------------------------
def load_study_model(model: str, weights: str | None = None, device: str = "cpu") -> Classifier:
    """:func:`~saliency_core.load_model`, or ``"package.module:factory"`` → ``factory([weights=], [device=])``."""
    if ":" not in model:
        return load_model(model, weights=weights, device=device)
    mod_name, _, fn_name = model.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model={model!r} could not be imported ({type(exc).__name__}: {exc}); accepted values: "
                         f"{', '.join(available_models())} or 'package.module:factory' on sys.path") from None
    params = inspect.signature(fn).parameters
    kw: dict[str, Any] = {}
    if "weights" in params:
        kw["weights"] = weights
    elif weights is not None:
        raise ValueError(f"weights={weights!r} is not valid for model={model!r}: its factory takes no weights")
    if "device" in params:
        kw["device"] = device
    clf = fn(**kw)
    if not isinstance(clf, Classifier):
        raise ValueError(f"model={model!r} returned a {type(clf).__name__}; accepted values: a factory returning "
                         "a saliency_core Classifier")
    if "device" not in params and torch.device(device) != clf.device:
        raise ValueError(f"model={model!r} takes no device argument; accepted values: device={str(clf.device)!r}")
    return clf


def _model_id(study: Study, clf: Classifier) -> dict[str, Any]:
    mid: dict[str, Any] = model_identity(clf)
    if ":" in study.model:
        mod = study.model.partition(":")[0]
        mid = {**mid, "factory": study.model, "factory_code": file_code_hash(mod)}
    return mid


def _runtime_kwargs(name: str, study: Study) -> dict[str, Any]:
    params = {}
    for cls in explainer_class(name).__mro__:
        if "__init__" in cls.__dict__:
            params.update(inspect.signature(cls.__init__).parameters)
    out: dict[str, Any] = {}
    if study.batch_size is not None and "batch_size" in params:
        out["batch_size"] = study.batch_size
    if "progress" in params:
        out["progress"] = False
    return out


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------
@dataclass
class Task:
    """One Dask task: explain ``image`` with ``method`` and score it under every protocol.

    ``id`` is the explanation's content key; ``scores`` lists ``{key, protocol, name, settings, reference}``
    (``reference``: ``{"key", "spec", "model_id"}`` of the randomised model's explanation, or ``None``).
    """

    id: str
    image: str
    index: int
    method: str
    method_name: str
    settings: dict[str, Any]
    target: int | None
    scores: list[dict[str, Any]]


@dataclass
class Plan:
    """The tasks of a study and the index that maps content keys back to the study's labels."""

    study: Study
    records: list
    clf: Classifier
    model_id: dict[str, Any]
    tasks: list[Task]
    explain_index: pd.DataFrame
    score_index: pd.DataFrame
    images: dict[str, str] = field(default_factory=dict)

    @property
    def n_explain(self) -> int:
        """Explanation tasks: (image, method) plus one per (image, method) and randomised model."""
        refs = {s["reference"]["key"] for t in self.tasks for s in t.scores if s["reference"]}
        return len(self.tasks) + len(refs)

    @property
    def n_score(self) -> int:
        return sum(len(t.scores) for t in self.tasks)

    def todo(self, store: Store, have_scores: set[str] | None = None) -> list[Task]:
        """The tasks whose cost row or any score row is missing from ``store`` (``have_scores``: the keys of its
        ``scores`` table, when the caller has read them already)."""
        have_scores = store.row_keys("scores") if have_scores is None else have_scores
        have_costs = store.row_keys("costs")
        return [t for t in self.tasks
                if t.id not in have_costs or any(s["key"] not in have_scores for s in t.scores)]

    def x(self, task: Task) -> torch.Tensor:
        """The preprocessed image of ``task`` (``(3, H, W)`` in [0, 1], on the CPU)."""
        return self.clf.preprocess(self.records[task.index].image)


def protocol_settings(study: Study | str | os.PathLike | Mapping[str, Any], label: str) -> dict[str, Any]:
    """The full settings (defaults included) the study scores protocol ``label`` with: the entry's own settings over
    the study's ``sanity:`` block for a randomisation protocol, over the protocol's defaults. A randomisation
    protocol's model is then ``randomized_model(clf, randomization_spec(clf, settings))``."""
    study = load_study(study)
    if label not in study.protocols:
        raise ValueError(f"label={label!r} is not valid; accepted values: {', '.join(study.protocols)}")
    spec = study.protocols[label]
    p = get_protocol(spec["protocol"])
    settings = {k: v for k, v in spec.items() if k not in ("protocol", "methods")}
    if p.randomization:
        settings = {**{k: v for k, v in study.sanity.items() if k in p.defaults}, **settings}
    try:
        return p.settings(**settings)
    except ValueError as exc:
        raise ValueError(f"protocols[{label!r}]: {exc}") from None


def plan(study: Study | str | os.PathLike | Mapping[str, Any], clf: Classifier | None = None) -> Plan:
    """Every task of ``study`` with its content keys (loads the model on the CPU and the images once)."""
    study = load_study(study)
    if clf is None:
        clf = load_study_model(study.model, study.weights, "cpu")
    model_id = _model_id(study, clf)
    records = load_records(study)
    explainers = {}
    for label, spec in study.methods.items():
        settings = {k: v for k, v in spec.items() if k != "method"}
        try:
            explainers[label] = get_explainer(spec["method"], clf, **settings, **_runtime_kwargs(spec["method"], study))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"methods[{label!r}]: {str(exc).splitlines()[0]}") from None
    protocols = {}
    for label, spec in study.protocols.items():
        p = get_protocol(spec["protocol"])
        s = protocol_settings(study, label)
        ref = None
        if p.randomization:
            rspec = randomization_spec(clf, s)
            ref = {"spec": rspec, "model_id": {**randomized_identity(clf, rspec),
                                               **({"base": model_id} if ":" in study.model else {})}}
        protocols[label] = (p, s, ref, p.code_hash())
    bases = {label: Store.explanation_payload(ex, model_id) for label, ex in explainers.items()}
    ref_bases = {(label, json.dumps(ref["spec"], sort_keys=True)): Store.explanation_payload(ex, ref["model_id"])
                 for label, ex in explainers.items() for (_, _, ref, _) in protocols.values() if ref is not None}
    tasks: dict[str, Task] = {}
    images: dict[str, str] = {}
    erows, srows = [], []
    for i, rec in enumerate(records):
        x = clf.preprocess(rec.image)
        digest = images[rec.id] = image_digest(x)
        target = None
        if study.target == "label":
            if rec.label is None:
                raise ValueError(f"target='label' but image {rec.id!r} has no label; accepted values: labelled "
                                 "images or target='top1'")
            target = int(rec.label)
        for mlabel, ex in explainers.items():
            ekey = content_key({**bases[mlabel], "image": digest, "target": target})
            scores = []
            for plabel, (p, s, ref, code) in protocols.items():
                only = study.protocols[plabel].get("methods")
                if only is not None and mlabel not in only:
                    continue
                rkey = None
                if ref is not None:
                    rbase = ref_bases[(mlabel, json.dumps(ref["spec"], sort_keys=True))]
                    rkey = content_key({**rbase, "image": digest, "target": None})
                skey = content_key(score_payload(ekey, p.name, s, code, rkey))
                scores.append({"key": skey, "protocol": plabel, "name": p.name, "settings": s,
                               "reference": None if ref is None else {**ref, "key": rkey}})
                srows.append({"key": skey, "explain_key": ekey, "image": rec.id, "label": rec.label,
                              "method": mlabel, "protocol": plabel, "protocol_name": p.name,
                              "method_name": ex.name})
            erows.append({"key": ekey, "image": rec.id, "label": rec.label, "method": mlabel,
                          "method_name": ex.name})
            if ekey not in tasks:
                settings = {k: v for k, v in study.methods[mlabel].items() if k != "method"}
                tasks[ekey] = Task(id=ekey, image=rec.id, index=i, method=mlabel, method_name=ex.name,
                                   settings=settings, target=target, scores=scores)
    return Plan(study=study, records=records, clf=clf, model_id=model_id, tasks=list(tasks.values()),
                explain_index=pd.DataFrame(erows), score_index=pd.DataFrame(srows), images=images)


# --------------------------------------------------------------------------------------------
# the task (runs on a worker, or in this process)
# --------------------------------------------------------------------------------------------
class _WorkerState:
    """Per process: the model (loaded once), randomised copies by spec, the threads pinned once."""

    def __init__(self, clf: Classifier) -> None:
        self.clf = clf
        self.randomized: dict[str, Classifier] = {}

    def randomized_model(self, spec: dict[str, Any]) -> Classifier:
        k = json.dumps(spec, sort_keys=True)
        if k not in self.randomized:
            self.randomized[k] = randomized_model(self.clf, spec)
        return self.randomized[k]


_STATES: dict[str, _WorkerState] = {}
_PINNED = False


def _worker_state(model: dict[str, Any]) -> _WorkerState:
    global _PINNED
    k = json.dumps(model, sort_keys=True)
    if k not in _STATES:
        for m in model.get("imports", []):
            importlib.import_module(m)
        if not _PINNED:
            from .runtime import configure

            configure(threads=model["threads"])
            _PINNED = True
        _STATES[k] = _WorkerState(load_study_model(model["model"], model["weights"], model["device"]))
    return _STATES[k]


def _execute(payload: dict[str, Any], state: _WorkerState | None = None) -> dict[str, Any]:
    """Explain one image with one method, score it under every protocol; return the rows (module doc)."""
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    state = state or _worker_state(payload["model"])
    clf = state.clf
    store = Store(payload["store"])
    x = payload["x"]
    if image_digest(x) != payload["image_digest"]:
        raise StudyError(f"image {payload['image']!r} arrived damaged (content hash differs)")
    name, settings, target = payload["method_name"], payload["settings"], payload["target"]
    explainer = get_explainer(name, clf, **settings, **payload["runtime"])
    ekey = store.explanation_digest(explainer, x, target, payload["model_id"])
    if ekey != payload["key"]:
        raise StudyError(f"this worker's key for ({payload['image']}, {payload['method']}) differs from the "
                         "client's: the worker runs other code or package versions than the client")
    computed = not store.has_explanation(ekey)
    e = store.explain(explainer, target=target, x=x, model_id=payload["model_id"])
    refs: dict[str, Any] = {}
    scores, curves = [], []
    for s in payload["scores"]:
        p = get_protocol(s["name"])
        ref = None
        if s["reference"] is not None:
            r = s["reference"]
            if r["key"] not in refs:
                rclf = state.randomized_model(r["spec"])
                rexp = get_explainer(name, rclf, **settings, **payload["runtime"])
                if store.explanation_digest(rexp, x, None, r["model_id"]) != r["key"]:
                    raise StudyError("this worker's key of the randomised model's explanation differs from the "
                                     "client's: the worker runs other code or package versions than the client")
                refs[r["key"]] = store.explain(rexp, target=None, x=x, model_id=r["model_id"])
            ref = refs[r["key"]]
        if store.score_key(ekey, p.name, s["settings"], None if ref is None else s["reference"]["key"]) != s["key"]:
            raise StudyError(f"this worker's key for protocol {s['protocol']!r} differs from the client's: the worker "
                             "runs other code or package versions than the client")
        try:
            value, curve = p(clf, x, e, reference=ref, **s["settings"])
        except Exception as exc:
            raise StudyError(f"protocol {s['protocol']!r} failed on ({payload['image']}, {payload['method']}): "
                             f"{type(exc).__name__}: {exc}") from exc
        scores.append({"key": s["key"], "explain_key": ekey, "image": payload["image"], "method_name": name,
                       "protocol_name": p.name, "target": int(e.target), "value": float(value),
                       "higher_is_better": p.higher_is_better})
        if curve is not None:
            curves.append(curve_rows(s["key"], curve))
    cost = {"key": ekey, "image": payload["image"], "method_name": name, "target": int(e.target),
            "n_forward": int(e.n_forward), "n_backward": int(e.n_backward),
            "n_forward_calls": int(e.n_forward_calls), "n_backward_calls": int(e.n_backward_calls),
            "seconds": float(e.seconds)}
    return {"key": payload["key"], "scores": scores, "curves": pd.concat(curves, ignore_index=True) if curves else None,
            "costs": [cost], "computed": computed, "cpu_seconds": time.process_time() - t_cpu,
            "wall_seconds": time.perf_counter() - t_wall, "pid": os.getpid()}


def _payload(p: Plan, t: Task, store: Store, have_scores: set[str] = frozenset()) -> dict[str, Any]:
    """What a worker needs for task ``t``; scores whose key is in ``have_scores`` (the store holds them: another
    study, or an earlier run, computed them) are left out, so a worker neither rescores them nor explains the
    randomised model for them."""
    s = p.study
    return {
        "model": {"model": s.model, "weights": s.weights, "device": s.device, "threads": s.threads,
                  "imports": s.imports},
        "store": str(Path(store.root).resolve()), "x": p.x(t), "image": t.image,
        "image_digest": p.images[t.image], "method": t.method, "method_name": t.method_name,
        "settings": t.settings, "runtime": _runtime_kwargs(t.method_name, s), "target": t.target,
        "model_id": p.model_id, "key": t.id, "scores": [x for x in t.scores if x["key"] not in have_scores],
    }


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------
@dataclass
class Results:
    """A study's tidy tables and its provenance.

    ``scores``: one row per (image, method, protocol); ``curves``: the curve rows (``step, x, y``) behind each
    score; ``costs``: one row per (image, method) with n_forward, n_backward, n_forward_calls, n_backward_calls and
    ``seconds`` (wall time of the explanation when it was first computed). ``n_submitted`` / ``n_skipped`` count
    the tasks of the last :func:`run` (skipped = already in the store); ``missing`` the planned tasks without
    rows (0 after a complete run).
    """

    scores: pd.DataFrame
    curves: pd.DataFrame
    costs: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)
    n_submitted: int = 0
    n_skipped: int = 0
    missing: int = 0
    out: Path | None = None
    #: the plan and the store these tables were read from (set by :func:`run` and :func:`load_results`)
    plan: Plan | None = field(default=None, repr=False, compare=False)
    store: Store | None = field(default=None, repr=False, compare=False)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"scores": self.scores, "curves": self.curves, "costs": self.costs}

    def _need_store(self) -> Store:
        if self.plan is None or self.store is None:
            raise ValueError("these Results were not read from a store (read_tables); accepted values: the Results "
                             "of run() or load_results()")
        return self.store

    def explanation(self, image: str, method: str) -> Explanation:
        """The stored explanation of ``image`` by the study's ``method`` label (maps stay in the store until asked
        for). A missing or damaged entry is a one-line ``KeyError``."""
        store = self._need_store()
        idx = self.plan.explain_index
        row = idx[(idx["image"] == image) & (idx["method"] == method)]
        if row.empty:
            raise KeyError(f"({image!r}, {method!r}) is not a task of study {self.plan.study.name!r}; accepted "
                           f"values: images {sorted(idx['image'].unique())}, methods {list(self.plan.study.methods)}")
        return self._load(store, row["key"].iloc[0], image, method)

    @staticmethod
    def _load(store: Store, key: str, image: str, method: str) -> Explanation:
        e = store.load_explanation(key)
        if e is None:
            raise KeyError(f"the explanation of ({image!r}, {method!r}) is not in the store {store.root}: run the "
                           "study first")
        return e

    def explanations(self) -> dict[tuple[str, str], Explanation]:
        """{(image id, method label): Explanation} for every explanation task of the study (one pass over the
        index: no lookup per task)."""
        store = self._need_store()
        return {(r.image, r.method): self._load(store, r.key, r.image, r.method)
                for r in self.plan.explain_index.itertuples()}

    def reference(self, image: str, method: str, protocol: str) -> Explanation:
        """The explanation of ``image`` by ``method`` on the randomised model of the randomisation protocol
        ``protocol`` (the sanity check's second map), read from the store."""
        store = self._need_store()
        for t in self.plan.tasks:
            if t.image == image and t.method == method:
                for s in t.scores:
                    if s["protocol"] == protocol:
                        if s["reference"] is None:
                            raise KeyError(f"protocol {protocol!r} is not a randomisation protocol; accepted "
                                           "values: a sanity protocol of the study")
                        e = store.load_explanation(s["reference"]["key"])
                        if e is None:
                            raise KeyError(f"the reference explanation of ({image!r}, {method!r}, {protocol!r}) "
                                           f"is not in the store {store.root}: run the study first")
                        return e
        raise KeyError(f"({image!r}, {method!r}, {protocol!r}) is not a score task of study "
                       f"{self.plan.study.name!r}")


class _RowBuffer:
    """Rows that came back from tasks, appended to the store as one segment per table every few seconds."""

    def __init__(self, store: Store, every_s: float = 10.0, every_n: int = 200) -> None:
        self.store, self.every_s, self.every_n = store, every_s, every_n
        self.results: list[dict[str, Any]] = []
        self.last = time.monotonic()
        self.cpu_seconds = 0.0
        self.task_seconds = 0.0
        self.done = 0

    def add(self, res: dict[str, Any]) -> None:
        self.results.append(res)
        self.cpu_seconds += float(res.get("cpu_seconds", 0.0))
        self.task_seconds += float(res.get("wall_seconds", 0.0))
        self.done += 1
        if len(self.results) >= self.every_n or time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if not self.results:
            return
        scores = pd.DataFrame([r for res in self.results for r in res["scores"]],
                              columns=list(TABLE_COLUMNS["scores"]))
        curves = [res["curves"] for res in self.results if res["curves"] is not None]
        costs = pd.DataFrame([r for res in self.results for r in res["costs"]], columns=list(TABLE_COLUMNS["costs"]))
        # costs last: a task counts as done only when all its rows are in (a crash in between resubmits it)
        self.store.append_rows("scores", scores)
        if curves:
            self.store.append_rows("curves", pd.concat(curves, ignore_index=True))
        self.store.append_rows("costs", costs)
        self.results = []
        self.last = time.monotonic()


def run(
    study: Study | str | os.PathLike | Mapping[str, Any],
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    store: Store | str | os.PathLike | None = None,
    out: str | os.PathLike | None | bool = None,
    errors: str = "raise",
    window: int | None = None,
) -> Results:
    """Run every task of ``study`` that the store does not hold yet; returns :func:`load_results`.

    Parameters
    ----------
    client : distributed.Client, "serial" or None
        An existing client; ``"serial"`` runs in this process (as ``workers=0``).
    workers : int, optional
        Worker processes of the default ``LocalCluster`` (default: one per core; 0 = in this process).
    scheduler : str, optional
        Address of an existing Dask scheduler (``tcp://HOST:PORT``).
    progress : bool
        A tqdm bar with ETA over completed tasks (terminal and notebooks).
    store : Store or path, optional
        Where explanations and rows go (default :func:`~saliency_core.store.default_root`); workers use the same
        path (a shared folder for a multi-machine cluster, or one per machine: only rows come back).
    out : path, optional
        Folder for the study's tables and ``provenance.json`` (default ``<store>/studies/<name>``; ``False``:
        none written).
    errors : {"raise", "continue"}
        On a failed task: stop (the finished rows are kept) or go on and raise at the end.
    window : int, optional
        Tasks in flight at a time (default 4 per worker thread): bounds memory on client and cluster.
    """
    check_choice("errors", errors, ("raise", "continue"))
    study = load_study(study)
    store = store if isinstance(store, Store) else Store(store)
    t0_wall, t0_cpu = time.perf_counter(), time.process_time()
    started = _git_state()
    serial = client == "serial" or (client is None and scheduler is None and workers == 0)
    local_clf = None
    if serial:
        local_clf = load_study_model(study.model, study.weights, study.device)
        p = plan(study, clf=local_clf if study.device == "cpu" else None)
    else:
        p = plan(study)
    have_scores = store.row_keys("scores")
    todo = p.todo(store, have_scores)
    n_skipped = len(p.tasks) - len(todo)
    buffer = _RowBuffer(store)
    failures: list[str] = []
    own_cluster = None
    mode = "serial"
    n_workers = 1
    bar = None
    try:
        if serial:
            bar = _bar(len(todo), study.name, progress)
            state = _WorkerState(local_clf)
            for t in todo:
                try:
                    buffer.add(_execute(_payload(p, t, store, have_scores), state))
                except Exception as exc:
                    if errors == "raise":
                        raise
                    failures.append(f"{t.image} × {t.method}: {type(exc).__name__}: {exc}")
                bar.update(1)
        elif todo:
            from distributed import Client

            if client is None:
                if scheduler is not None:
                    client = Client(scheduler, set_as_default=False)
                    own_cluster = client
                    mode = scheduler
                else:
                    n = workers if workers is not None else (os.cpu_count() or 1)
                    n = check_int("workers", n, 1)
                    cluster = local_cluster(n, study.threads)
                    client = Client(cluster, set_as_default=False)
                    own_cluster = (client, cluster)
                    mode = f"LocalCluster({n})"
            else:
                mode = getattr(getattr(client, "scheduler", None), "address", "client")
            bar = _bar(len(todo), study.name, progress)
            n_workers, failures = _run_dask(client, p, todo, store, buffer, bar, errors, window, study, have_scores)
    finally:
        buffer.flush()  # first: every finished task is kept, whatever happens next
        if bar is not None:
            bar.close()
        _close(own_cluster)
    wall, cpu = time.perf_counter() - t0_wall, time.process_time() - t0_cpu
    res = load_results(study, store, p)
    res.n_submitted, res.n_skipped = len(todo), n_skipped
    cpu_total = cpu if serial else cpu + buffer.cpu_seconds  # in-process tasks are in this process's CPU time
    rec = _run_record(mode, n_workers, wall, cpu_total, len(todo), n_skipped, buffer.done, buffer.task_seconds,
                      started=started)
    if out is not False:
        folder = Path(out) if out else _store_folder(store, study.name)
        res.provenance = _provenance(p, [*_runs_in(folder), rec])
        write_tables(res, folder)
        res.out = folder
    else:
        res.provenance = _provenance(p, [rec])
    if failures:
        raise StudyError(f"{len(failures)} task(s) failed (the other rows are stored; a rerun retries them); "
                         f"first: {failures[0]}")
    return res


#: glibc malloc settings for worker processes (read by the loader at exec, so they go in the environment before the
#: spawn): keep big blocks instead of returning them to the OS after every batch (as runtime.set_fast_cpu_allocator
#: does in-process), and one arena, because Dask runs tasks in a worker thread whose own arena would shrink and regrow
#: (page faults on every batch). Dask's default pre-spawn environment sets MALLOC_TRIM_THRESHOLD_=65536, which trims
#: after almost every free: measured on 2 cores (benchmarks/study.py, 20 photos), 1129 ms per task on a worker with
#: Dask's defaults, 1041 ms with these settings, 901 ms in a plain process.
WORKER_MALLOC = {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647:"
                                   "glibc.malloc.arena_max=1",
                 "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1), "MALLOC_MMAP_MAX_": "0", "MALLOC_ARENA_MAX": "1"}


#: Dask settings of the default cluster: no statistical profiler (it samples the task thread's stack every 10 ms,
#: holding the GIL), a slower memory monitor and event-loop tick; explanations are long tasks (0.1 s to minutes)
WORKER_DASK = {"distributed.worker.profile.enabled": False,
               "distributed.admin.system-monitor.gil.enabled": False,
               "distributed.worker.memory.monitor-interval": "1s",
               "distributed.admin.tick.interval": "200ms"}


def worker_environment(threads: int = 1) -> dict[str, str]:
    """The environment of a study's worker processes: torch/OpenMP/MKL threads pinned, :data:`WORKER_MALLOC`, and
    :data:`WORKER_DASK` as ``DASK_*`` variables. For ``dask worker`` processes of a real cluster, export the same
    variables before starting them."""
    t = str(check_int("threads", threads, 1))
    dask_env = {"DASK_" + k.upper().replace(".", "__").replace("-", "_"): str(v) for k, v in WORKER_DASK.items()}
    return {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "SALIENCY_THREADS": t,
            **WORKER_MALLOC, **dask_env}


def local_cluster(n_workers: int, threads: int = 1, **kwargs: Any):
    """The default cluster of :func:`run`: ``LocalCluster(n_workers, threads_per_worker=1, processes=True)`` whose
    worker processes start with :func:`worker_environment` (set before the spawn, so that glibc reads it).

    The scheduler's HTTP server (health checks, and the dashboard where bokeh is installed) takes a free port
    (``dashboard_address=":0"``; ``client.dashboard_link`` tells which), not Dask's fixed 8787: a second study
    beside a running one (a release in the background) then starts without a port warning."""
    import dask
    from distributed import LocalCluster

    env = worker_environment(threads)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env, **WORKER_DASK}):
        return LocalCluster(n_workers=check_int("n_workers", n_workers, 1), threads_per_worker=1, processes=True,
                            dashboard_address=":0", silence_logs=logging.ERROR, env=env, **kwargs)


def _close(own: Any) -> None:
    """Close the client/cluster this run started (quietly: after Ctrl-C the workers may be gone already)."""
    for obj in (own if isinstance(own, tuple) else (own,)):
        if obj is None:
            continue
        try:
            obj.close()
        except Exception as exc:  # noqa: BLE001 - closing must not hide the interruption or the result
            log.debug("closing %r: %s", obj, exc)


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="task", disable=not progress or total == 0, smoothing=0.1)


def _run_dask(client, p: Plan, todo: list[Task], store: Store, buffer: _RowBuffer, bar, errors: str,
              window: int | None, study: Study, have_scores: set[str] = frozenset()) -> tuple[int, list[str]]:
    from distributed import as_completed

    info = client.scheduler_info()
    wk = info.get("workers", {})
    n_threads = sum(int(w.get("nthreads", 1)) for w in wk.values()) or 1
    resources = None
    if study.device.startswith("cuda"):
        if any("GPU" in (w.get("resources") or {}) for w in wk.values()):
            resources = {"GPU": 1}
        else:
            log.warning("device=%r but no worker offers the resource GPU (dask worker --resources GPU=1): tasks "
                        "are placed on any worker", study.device)
    window = window or max(4, 4 * n_threads)
    pending = iter(todo)
    ac = as_completed(loop=client.loop)
    tasks: dict[str, Task] = {}
    failures: list[str] = []

    def submit_next() -> bool:
        t = next(pending, None)
        if t is None:
            return False
        fut = client.submit(_execute, _payload(p, t, store, have_scores), key=f"saliency-task-{t.id}", pure=False,
                            resources=resources, retries=0)
        tasks[fut.key] = t
        ac.add(fut)
        return True

    for _ in range(window):
        if not submit_next():
            break
    try:
        for fut in ac:
            t = tasks.pop(fut.key)
            try:
                buffer.add(fut.result())
            except Exception as exc:
                if errors == "raise":
                    raise StudyError(f"task ({t.image}, {t.method}) failed: {type(exc).__name__}: {exc}") from exc
                failures.append(f"{t.image} × {t.method}: {type(exc).__name__}: {exc}")
            finally:
                fut.release()
            bar.update(1)
            submit_next()
    finally:
        for f in list(ac.futures):
            f.cancel()
    return len(wk), failures


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
def load_results(study: Study | str | os.PathLike | Mapping[str, Any], store: Store | str | os.PathLike | None = None,
                 planned: Plan | None = None) -> Results:
    """The study's tidy tables, read from the store (only the rows of its own tasks, labelled as the study
    names them; ``missing`` counts planned tasks without rows)."""
    store = store if isinstance(store, Store) else Store(store)
    p = planned or plan(study)
    srows = store.rows("scores")
    crows = store.rows("curves")
    krows = store.rows("costs")
    sidx, eidx = p.score_index, p.explain_index
    score_cols = ["key", "explain_key", "target", "value", "higher_is_better"]
    scores = sidx.drop(columns=["explain_key"]).merge(
        srows[score_cols] if len(srows) else pd.DataFrame(columns=score_cols), on="key", how="inner")
    scores = scores[["image", "label", "method", "protocol", "value", "higher_is_better", "target", "method_name",
                     "protocol_name", "key", "explain_key"]]
    curve_cols = ["key", "step", "x", "y"]
    curves = sidx[["key", "image", "method", "protocol"]].merge(
        crows[curve_cols] if len(crows) else pd.DataFrame(columns=curve_cols), on="key", how="inner")
    curves = curves[["image", "method", "protocol", "step", "x", "y", "key"]]
    cost_cols = ["key", "target", "n_forward", "n_backward", "n_forward_calls", "n_backward_calls", "seconds"]
    costs = eidx.merge(krows[cost_cols] if len(krows) else pd.DataFrame(columns=cost_cols), on="key", how="inner")
    costs = costs[["image", "label", "method", "method_name", "target", "n_forward", "n_backward", "n_forward_calls",
                   "n_backward_calls", "seconds", "key"]]
    have_s, have_c = set(scores["key"]), set(costs["key"])
    missing = sum(1 for t in p.tasks if t.id not in have_c or any(s["key"] not in have_s for s in t.scores))
    prov = _provenance(p, _runs_in(_store_folder(store, p.study.name)))
    return Results(scores=_typed(scores), curves=_typed(curves), costs=_typed(costs), missing=missing,
                   provenance=prov, plan=p, store=store)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    for c in ("value", "x", "y", "seconds"):
        if c in df.columns:
            df[c] = df[c].astype(float)
    for c in ("step", "target", "n_forward", "n_backward", "n_forward_calls", "n_backward_calls"):
        if c in df.columns:
            df[c] = df[c].astype("int64")
    if "higher_is_better" in df.columns:
        df["higher_is_better"] = df["higher_is_better"].astype(bool)
    if "label" in df.columns:
        df["label"] = df["label"].astype("Int64")
    return df


def _git(args: list[str]) -> str | None:
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


#: tracked files whose edits cannot change a study's rows, so they do not make the tree "dirty" in a run record:
#: written tables (a release writes its tables after each step, and the next step runs beside them), notebooks,
#: book pages and other prose. The rows' code is pinned by the code hashes in the provenance in any case.
DIRTY_IGNORES = (":(exclude)results", ":(exclude)notebooks", ":(exclude)book", ":(exclude)*.md")


def _git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether tracked files that can change rows differ from it); (None, None) outside git."""
    commit = _git(["rev-parse", "HEAD"])
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", *DIRTY_IGNORES]) if commit else None
    return commit, (bool(status) if status is not None else None)


def _run_record(mode: str, n_workers: int, wall: float, cpu: float, submitted: int, skipped: int, done: int,
                task_seconds: float, started: tuple[str | None, bool | None] | None = None) -> dict[str, Any]:
    """One run of a study: when, how, where, how long. ``commit`` is the code the run STARTED on (``started``, from
    :func:`_git_state` before the first task; default: now); ``dirty`` is true if the tree was dirty at the start or
    at the end; a commit made while the run went on is recorded as ``commit_at_end``."""
    commit, dirty = _git_state()
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        "scheduler": mode, "workers": n_workers, "submitted": submitted, "completed": done, "skipped": skipped,
        "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "task_seconds": round(task_seconds, 3),
        "commit": commit, "dirty": dirty}
    if started is not None:
        record["commit"] = started[0]
        if started[1] is not None or dirty is not None:
            record["dirty"] = bool(started[1]) or bool(dirty)
        if commit != started[0]:
            record["commit_at_end"] = commit
    return record


def _provenance(p: Plan, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The study's provenance: what it is (spec, model, images, code hashes) and every run that filled its tables;
    ``commit``/``dirty``/``command``/``date`` are those of the last run."""
    s = p.study
    last = runs[-1] if runs else {}
    return {
        "study": s.name,
        "spec": s.to_dict(),
        "commit": last.get("commit"),
        "dirty": last.get("dirty"),
        "command": last.get("command"),
        "date": last.get("date"),
        "model": {"name": p.clf.name, "weights_hash": str(p.clf.weights_id), "identity": p.model_id},
        "n_images": len(p.records),
        "n_methods": len(s.methods),
        "n_protocols": len(s.protocols),
        "n_tasks": {"explain": p.n_explain, "score": p.n_score, "dask": len(p.tasks)},
        "device": s.device,
        "library_version": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "code": {
            "library": library_hash(),
            "models": code_hash("saliency_core.models"),
            "methods": {label: object_code_hash(explainer_class(m["method"])) for label, m in s.methods.items()},
            "protocols": {label: get_protocol(q["protocol"]).code_hash() for label, q in s.protocols.items()},
        },
        "wall_seconds": round(sum(float(r.get("wall_seconds", 0.0)) for r in runs), 3),
        "cpu_seconds": round(sum(float(r.get("cpu_seconds", 0.0)) for r in runs), 3),
        "runs": list(runs),
    }


def _runs_in(folder: Path) -> list[dict[str, Any]]:
    """The run records of ``folder/provenance.json`` (none when absent or unreadable)."""
    try:
        runs = json.loads((folder / "provenance.json").read_text()).get("runs")
    except (OSError, ValueError, AttributeError):
        return []
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def _store_folder(store: Store, name: str) -> Path:
    return Path(store.root) / "studies" / name


def write_tables(results: Results, folder: str | os.PathLike) -> Path:
    """Write ``scores.parquet``, ``curves.parquet``, ``costs.parquet`` and ``provenance.json`` into ``folder``
    (atomically, file by file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in results.tables().items():
        data = _to_parquet(df)
        atomic_write(folder / f"{name}.parquet", lambda fh, data=data: fh.write(data))
    atomic_write_text(folder / "provenance.json", json.dumps(results.provenance, indent=1, sort_keys=False,
                                                             default=str) + "\n")
    return folder


def _to_parquet(df: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def read_tables(folder: str | os.PathLike) -> Results:
    """A study folder written by :func:`write_tables` (or committed): its tables and provenance."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"study folder {str(folder)!r} is not a folder; accepted values: a folder holding "
                         "scores.parquet, curves.parquet, costs.parquet, provenance.json")
    tables = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise ValueError(f"study folder {str(folder)!r} has no {name}.parquet; accepted values: a folder written "
                             "by saliency study / write_tables")
        tables[name] = pd.read_parquet(path)
    prov = {}
    if (folder / "provenance.json").is_file():
        prov = json.loads((folder / "provenance.json").read_text())
    return Results(**tables, provenance=prov, out=folder)


def import_tables(folder: str | os.PathLike | Iterable[str | os.PathLike],
                  store: Store | str | os.PathLike | None = None) -> dict[str, int]:
    """Put the rows of study folder(s) back into ``store`` (rows whose key it already holds are skipped), so that
    :func:`run` resumes from them. Returns the rows imported per table."""
    store = store if isinstance(store, Store) else Store(store)
    folders = [folder] if isinstance(folder, (str, os.PathLike)) else list(folder)
    counts = dict.fromkeys(TABLES, 0)
    for f in folders:
        r = read_tables(f)
        for name, df in r.tables().items():
            cols = list(TABLE_COLUMNS[name])
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise ValueError(f"{name}.parquet in {str(f)!r} has no column {missing[0]!r}; accepted values: a "
                                 "table written by write_tables")
            have = store.row_keys(name)
            new = df.loc[~df["key"].isin(have), cols].drop_duplicates()
            if name != "curves":
                new = new.drop_duplicates("key")
            store.append_rows(name, new)
            counts[name] += len(new)
        study_name = r.provenance.get("study")
        if isinstance(study_name, str) and study_name and "/" not in study_name and not study_name.startswith("."):
            _merge_runs(_store_folder(store, study_name), r.provenance)
    return counts


def _merge_runs(folder: Path, prov: dict[str, Any]) -> None:
    """Add the runs of an imported ``provenance.json`` to the store's record of that study (each run once)."""
    old = {}
    if (folder / "provenance.json").is_file():
        try:
            old = json.loads((folder / "provenance.json").read_text())
        except (OSError, ValueError):
            old = {}
    merged = {**prov, **{k: v for k, v in old.items() if k != "runs"}} if old else dict(prov)
    runs = _runs_in(folder)
    seen = {json.dumps(r, sort_keys=True) for r in runs}
    for r in prov.get("runs", []) if isinstance(prov.get("runs"), list) else []:
        if isinstance(r, dict) and json.dumps(r, sort_keys=True) not in seen:
            runs.append(r)
            seen.add(json.dumps(r, sort_keys=True))
    merged["runs"] = runs
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "provenance.json", json.dumps(merged, indent=1, default=str) + "\n")

