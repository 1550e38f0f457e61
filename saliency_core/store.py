"""The result store: explanations, cached values and result rows, in safe formats, under content keys.

Everything is computed once, written atomically and found again by a **content key**: the sha256 of the canonical
JSON of everything the result depends on —

* explanations: method name + settings + the hash of the code that computes it
  (:func:`~saliency_core.codehash.object_code_hash` of the method class: its module and every package module it
  imports) + the model identity (name, **full** weights hash, code hash of :mod:`saliency_core.models`) + the
  **image content** (sha256 of the input tensor's bytes, shape and dtype: an ``x=`` that is not the record's image
  gets its own key) + the target (``None`` = the model's top-1);
* cached values (:meth:`Store.get_or_compute`): the caller's kind and key + a code hash (default: the whole library);
* result rows (scores, curves, costs of a study): keyed by the task's content key (:mod:`saliency_core.study`).

Formats (nothing in any load path unpickles):

* explanations and values: ``.npz`` read with ``np.load(allow_pickle=False)``; nested dict / list / tuple / tensor /
  ndarray / float / int / str / bool / None (dict keys of any of these types, e.g. ``{0.3: tensor}``) are encoded as
  a JSON skeleton plus plain arrays; DataFrames inside are Parquet bytes; a top-level DataFrame is a ``.parquet``;
* result rows: Parquet segments ``tables/<table>/<segment>.parquet`` appended by one writer each; a row whose key
  appears in an earlier segment is dropped when reading, so rows merge safely and every key counts once.

A damaged or wrong entry (unreadable file, a pickle planted under an entry's name, an entry whose stored key or
kind differs from the one asked for, contents of the wrong type) is a miss: it is removed and logged
(``logging.warning``), never a crash, and the result is recomputed.

Root folder: ``$SALIENCY_STORE``, else ``$SALIENCY_CACHE``, else ``$SALIENCY_ROOT/_cache`` (the book runner sets
``SALIENCY_ROOT`` for its kernels), else ``./_cache``. The folder may be shared by several processes and machines.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ._version import __version__
from .codehash import code_hash, library_hash, object_code_hash
from .explanation import Explanation
from .files import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from .explanation import Explainer
    from .models import Classifier

__all__ = [
    "Store",
    "ResultCache",
    "default_root",
    "default_cache_dir",
    "content_key",
    "cache_key",
    "canonical",
    "image_digest",
    "model_identity",
    "encode_tree",
    "decode_tree",
    "TABLE_COLUMNS",
    "curve_rows",
    "score_payload",
    "randomized_identity",
]

log = logging.getLogger("saliency_core.store")

FORMAT = "saliency-store/1"
_META = "__meta__"

#: columns every row of a store table carries (a study's tables add their labels to these)
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "scores": ("key", "explain_key", "image", "method_name", "protocol_name", "target", "value", "higher_is_better"),
    "curves": ("key", "step", "x", "y"),
    "costs": ("key", "image", "method_name", "target", "n_forward", "n_backward", "n_forward_calls",
              "n_backward_calls", "seconds"),
}


def default_root() -> Path:
    """``$SALIENCY_STORE``, else ``$SALIENCY_CACHE``, else ``$SALIENCY_ROOT/_cache``, else ``./_cache``."""
    for var in ("SALIENCY_STORE", "SALIENCY_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var])
    if os.environ.get("SALIENCY_ROOT"):
        return Path(os.environ["SALIENCY_ROOT"]) / "_cache"
    return Path("_cache")


default_cache_dir = default_root  # the book runner's name


# --------------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------------
def canonical(obj: Any) -> Any:
    """JSON-able canonical form: dicts sorted by key (keys as str), tuples → lists, tensors/arrays → lists,
    NumPy scalars → Python numbers, paths → str; anything else → its ``repr``."""
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return repr(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return repr(obj)


def content_key(payload: dict[str, Any]) -> str:
    """sha256 (64 hex digits) of the canonical JSON of ``payload``."""
    text = json.dumps(canonical(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(kind: str, key: dict[str, Any], code: str | Sequence[str] | None = None) -> str:
    """Content key of a cached value: ``kind`` + ``key`` + the code hash (default: the whole library)."""
    return content_key({"kind": kind, "key": key, "code": _code_of(code)})


def _code_of(code: str | Sequence[str] | None) -> str:
    if code is None:
        return library_hash()
    names = [code] if isinstance(code, str) else list(code)
    return code_hash(*names)


def image_digest(x: torch.Tensor) -> str:
    """sha256 of an image tensor's float32 bytes, shape and dtype (``(1, 3, H, W)`` and ``(3, H, W)`` agree)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    t = x.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    t = t.to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(f"{tuple(t.shape)}|float32|".encode())
    h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_identity(clf: Classifier) -> dict[str, str]:
    """What a result depends on about the model: name, the full weights hash and the code of
    :mod:`saliency_core.models` (preprocessing, normalisation, canonicalisation)."""
    return {"name": clf.name, "weights": str(clf.weights_id), "code": code_hash("saliency_core.models")}


# --------------------------------------------------------------------------------------------
# the safe tree encoding (npz arrays + a JSON skeleton)
# --------------------------------------------------------------------------------------------
class _Unsupported(TypeError):
    pass


def encode_tree(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """``(skeleton, arrays)``: a JSON-able skeleton and plain (non-object) arrays that :func:`decode_tree`
    turns back into ``value``. Raises ``TypeError`` for anything else (objects, object arrays, ...)."""
    arrays: dict[str, np.ndarray] = {}

    def add(a: np.ndarray) -> str:
        if a.dtype.hasobject:
            raise _Unsupported("object arrays cannot be stored safely")
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(a, order="C")
        return name

    def enc(v: Any) -> Any:
        if v is None:
            return {"t": "none"}
        if isinstance(v, bool):
            return {"t": "bool", "v": v}
        if isinstance(v, int) and not isinstance(v, np.generic):
            return {"t": "int", "v": str(int(v))}
        if isinstance(v, float) and not isinstance(v, np.generic):
            return {"t": "float", "v": float(v).hex()}
        if isinstance(v, str):
            return {"t": "str", "v": v}
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            if t.layout != torch.strided:
                raise _Unsupported(f"a {t.layout} tensor cannot be stored")
            try:
                return {"t": "tensor", "a": add(t.numpy()), "dtype": str(t.dtype)}
            except TypeError:  # bfloat16, float8 ...: the raw bytes
                raw = t.reshape(-1).view(torch.uint8).numpy()
                return {"t": "tensor_raw", "a": add(raw), "dtype": str(t.dtype), "shape": list(t.shape)}
        if isinstance(v, np.ndarray):
            return {"t": "ndarray", "a": add(v)}
        if isinstance(v, np.generic):
            return {"t": "npscalar", "a": add(np.asarray(v))}
        if isinstance(v, pd.DataFrame):
            return {"t": "dataframe", "a": add(np.frombuffer(_parquet_bytes(v), dtype=np.uint8))}
        if isinstance(v, pd.Series):
            df = v.to_frame(name="__value__")
            return {"t": "series", "name": enc(v.name), "a": add(np.frombuffer(_parquet_bytes(df), dtype=np.uint8))}
        if isinstance(v, (list, tuple)):
            return {"t": "list" if isinstance(v, list) else "tuple", "items": [enc(i) for i in v]}
        if isinstance(v, dict):
            return {"t": "dict", "items": [[enc(k), enc(i)] for k, i in v.items()]}
        raise _Unsupported(f"a {type(v).__module__}.{type(v).__name__} cannot be stored safely; accepted values: "
                           "nested dict/list/tuple of tensors, arrays, DataFrames, numbers, str, bool, None")

    return enc(value), arrays


def decode_tree(skeleton: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode_tree` (raises ``ValueError`` on a malformed skeleton)."""

    def arr(node: dict) -> np.ndarray:
        a = arrays[node["a"]]
        if a.dtype.hasobject:
            raise ValueError("object array")
        return a

    def dec(n: Any) -> Any:
        t = n["t"]
        if t == "none":
            return None
        if t == "bool":
            if not isinstance(n["v"], bool):
                raise ValueError("bad bool")
            return n["v"]
        if t == "int":
            return int(n["v"])
        if t == "float":
            return float.fromhex(n["v"])
        if t == "str":
            if not isinstance(n["v"], str):
                raise ValueError("bad str")
            return n["v"]
        if t == "tensor":
            out = torch.from_numpy(np.array(arr(n), copy=True))
            if str(out.dtype) != n["dtype"]:
                raise ValueError(f"tensor dtype {out.dtype} != {n['dtype']}")
            return out
        if t == "tensor_raw":
            dtype = getattr(torch, str(n["dtype"]).removeprefix("torch."))
            if not isinstance(dtype, torch.dtype):
                raise ValueError("bad dtype")
            raw = torch.from_numpy(np.array(arr(n), dtype=np.uint8, copy=True))
            return raw.view(dtype).reshape([int(s) for s in n["shape"]])
        if t == "ndarray":
            return np.array(arr(n), copy=True)
        if t == "npscalar":
            return arr(n)[()]
        if t == "dataframe":
            return pd.read_parquet(io.BytesIO(arr(n).tobytes()))
        if t == "series":
            s = pd.read_parquet(io.BytesIO(arr(n).tobytes()))["__value__"]
            s.name = dec(n["name"])
            return s
        if t == "list":
            return [dec(i) for i in n["items"]]
        if t == "tuple":
            return tuple(dec(i) for i in n["items"])
        if t == "dict":
            return {dec(k): dec(v) for k, v in n["items"]}
        raise ValueError(f"unknown node type {t!r}")

    return dec(skeleton)


def _parquet_bytes(df: pd.DataFrame, metadata: dict[str, str] | None = None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(df, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise _Unsupported(f"DataFrame cannot be stored as Parquet ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:120]})") from None
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _write_npz(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    blob = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **arrays, **{_META: blob}))


def _read_npz(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        if not hasattr(z, "files"):
            raise ValueError("not an .npz archive")
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not a store entry")
    return meta, arrays


def _read_parquet(path: Path, expect: dict[str, str] | None = None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if expect:
        md = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        for k, v in expect.items():
            if md.get(k) != v:
                raise ValueError(f"entry metadata {k}={md.get(k)!r}, expected {v!r}")
    return table.to_pandas()


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------
class Store:
    """A folder of content-keyed results (see the module documentation).

    Parameters
    ----------
    root : path, optional
        The folder (default :func:`default_root`).
    enabled : bool
        ``False`` computes every time and stores nothing (for tests and timing).

    Attributes ``hits`` and ``misses`` count lookups of explanations and cached values.
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._segments: dict[str, dict[str, pd.DataFrame]] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r}, enabled={self.enabled})"

    # -- paths and damaged entries -------------------------------------------------------------
    def _path(self, area: str, digest: str, suffix: str) -> Path:
        return self.root / area / digest[:2] / f"{digest}{suffix}"

    def _discard(self, path: Path, why: BaseException | str) -> None:
        if isinstance(why, str):
            text = why
        else:
            first = str(why).splitlines()[0][:160] if str(why) else ""
            text = f"{type(why).__name__}: {first}"
        log.warning("store entry %s is damaged or wrong (%s): removed, will be recomputed", path, text)
        try:
            path.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - read-only store
            pass

    # -- cached values -------------------------------------------------------------------------
    def key_digest(self, kind: str, key: dict[str, Any], code: str | Sequence[str] | None = None) -> str:
        """The content key of a cached value (see :func:`cache_key`)."""
        return cache_key(kind, key, code)

    def contains(self, kind: str, key: dict[str, Any], code: str | Sequence[str] | None = None) -> bool:
        """Whether a value is stored for ``(kind, key)`` (not validated: :meth:`load` may still find it damaged)."""
        if not self.enabled:
            return False
        d = self.key_digest(kind, key, code)
        return any(self._path("values", d, s).is_file() for s in (".npz", ".parquet"))

    def load(self, kind: str, key: dict[str, Any], code: str | Sequence[str] | None = None) -> Any | None:
        """The stored value, or ``None`` if absent (a damaged or wrong entry is removed, logged and ``None``)."""
        if not self.enabled:
            return None
        d = self.key_digest(kind, key, code)
        pq_path = self._path("values", d, ".parquet")
        if pq_path.is_file():
            try:
                return _read_parquet(pq_path, {"saliency_key": d, "saliency_kind": kind})
            except Exception as exc:  # noqa: BLE001 - a damaged entry is a miss, never a crash
                self._discard(pq_path, exc)
        path = self._path("values", d, ".npz")
        if not path.is_file():
            return None
        try:
            meta, arrays = _read_npz(path)
            if meta.get("key") != d or meta.get("kind") != kind:
                raise ValueError(f"holds key {str(meta.get('key'))[:12]} of kind {meta.get('kind')!r}")
            return decode_tree(meta["tree"], arrays)
        except Exception as exc:  # noqa: BLE001
            self._discard(path, exc)
            return None

    def store(self, kind: str, key: dict[str, Any], value: Any, code: str | Sequence[str] | None = None) -> bool:
        """Write ``value`` atomically; returns ``False`` (and logs) when it cannot be stored in a safe format."""
        if not self.enabled:
            return False
        d = self.key_digest(kind, key, code)
        try:
            if isinstance(value, pd.DataFrame):
                data = _parquet_bytes(value, {"saliency_key": d, "saliency_kind": kind, "saliency_format": FORMAT})
                atomic_write(self._path("values", d, ".parquet"), lambda fh: fh.write(data))
                return True
            skeleton, arrays = encode_tree(value)
        except _Unsupported as exc:
            log.warning("value of kind %r not stored: %s", kind, exc)
            return False
        meta = {"format": FORMAT, "kind": kind, "key": d, "tree": skeleton, "version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_npz(self._path("values", d, ".npz"), meta, arrays)
        return True

    put = store

    def get_or_compute(self, kind: str, key: dict[str, Any], fn: Callable[[], Any],
                       code: str | Sequence[str] | None = None) -> Any:
        """The stored value for ``(kind, key)``, or ``fn()`` computed now and stored.

        ``code``: module name(s) whose code (with everything they import) the value depends on; default: the
        whole library (any edit of the package recomputes it).
        """
        value = self.load(kind, key, code)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = fn()
        self.store(kind, key, value, code)
        return value

    # -- explanations --------------------------------------------------------------------------
    @staticmethod
    def explanation_payload(explainer: Explainer, model_id: dict[str, Any] | None = None) -> dict[str, Any]:
        """The image-independent part of an explanation's key: method, settings, code hash and model identity."""
        return {
            "kind": "explanation",
            "method": explainer.name,
            "settings": explainer.settings(),
            "code": object_code_hash(type(explainer)),
            "model": model_id if model_id is not None else model_identity(explainer.model),
        }

    @staticmethod
    def explanation_key(explainer: Explainer, x: torch.Tensor, target: int | None = None,
                        model_id: dict[str, Any] | None = None) -> dict[str, Any]:
        """The payload of an explanation's content key (see the module documentation)."""
        return {**Store.explanation_payload(explainer, model_id), "image": image_digest(x),
                "target": None if target is None else int(target)}

    @staticmethod
    def explanation_digest(explainer: Explainer, x: torch.Tensor, target: int | None = None,
                           model_id: dict[str, Any] | None = None) -> str:
        """The content key of an explanation (sha256 of :meth:`explanation_key`)."""
        return content_key(Store.explanation_key(explainer, x, target, model_id))

    def has_explanation(self, digest: str) -> bool:
        return self.enabled and self._path("explanations", digest, ".npz").is_file()

    def load_explanation(self, digest: str) -> Explanation | None:
        """The explanation stored under ``digest``, or ``None`` (a damaged or wrong entry is removed and logged)."""
        if not self.enabled:
            return None
        path = self._path("explanations", digest, ".npz")
        if not path.is_file():
            return None
        try:
            meta, arrays = _read_npz(path)
            if meta.get("key") != digest or meta.get("kind") != "explanation":
                raise ValueError(f"holds key {str(meta.get('key'))[:12]} of kind {meta.get('kind')!r}")
            state = decode_tree(meta["tree"], arrays)
            return _explanation_from_state(state)
        except Exception as exc:  # noqa: BLE001
            self._discard(path, exc)
            return None

    def save_explanation(self, digest: str, e: Explanation, image_id: str | None = None) -> bool:
        if not self.enabled:
            return False
        try:
            skeleton, arrays = encode_tree(e.to_state())
        except _Unsupported as exc:
            log.warning("explanation of %s not stored: %s", e.method, exc)
            return False
        meta = {"format": FORMAT, "kind": "explanation", "key": digest, "tree": skeleton, "image_id": image_id,
                "version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write_npz(self._path("explanations", digest, ".npz"), meta, arrays)
        return True

    def explain(self, explainer: Explainer, record: Any = None, target: int | None = None,
                x: torch.Tensor | None = None, *, model_id: dict[str, Any] | None = None) -> Explanation:
        """Explanation of ``record`` (an :class:`~saliency_core.data.ImageRecord`) or of the tensor ``x``, stored.

        ``x`` (``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1]) is what is explained when given (default
        ``explainer.model.preprocess(record.image)``); the key holds the content of that tensor, so a different
        ``x`` is a different entry. ``target=None`` explains the model's top-1 (part of the key as ``None``).
        ``model_id`` replaces :func:`model_identity` in the key (e.g. for a randomised copy of a model).
        """
        if x is None:
            if record is None:
                raise ValueError("explain() needs record= or x=; accepted values: an ImageRecord or an image tensor")
            x = explainer.model.preprocess(record.image)
        digest = self.explanation_digest(explainer, x, target, model_id)
        e = self.load_explanation(digest)
        if e is not None:
            self.hits += 1
            return e
        self.misses += 1
        e = explainer.explain(x, target)
        self.save_explanation(digest, e, getattr(record, "id", None))
        return e

    def explain_many(self, explainer: Explainer, records: list, targets: list[int | None] | None = None,
                     progress: bool = True, desc: str | None = None) -> list[Explanation]:
        """Explain several records (a tqdm progress bar over images); each one is its own stored entry."""
        from tqdm.auto import tqdm

        targets = targets if targets is not None else [None] * len(records)
        it = list(zip(records, targets))
        if progress:
            it = tqdm(it, desc=desc or explainer.name, leave=False, disable=None)
        return [self.explain(explainer, r, t) for r, t in it]

    # -- scores --------------------------------------------------------------------------------
    @staticmethod
    def score_key(explain_digest: str, protocol: str, settings: dict[str, Any],
                  reference_digest: str | None = None) -> str:
        """Content key of one score: the explanation's key + protocol name, settings and code hash (+ the key of
        the reference explanation for protocols that compare against one)."""
        from .protocols import get_protocol

        p = get_protocol(protocol)
        return content_key(score_payload(explain_digest, protocol, p.settings(**settings), p.code_hash(),
                                         reference_digest))

    def score(self, protocol: str, explainer: Explainer, record: Any = None, target: int | None = None,
              x: torch.Tensor | None = None, **settings: Any) -> float:
        """Score of ``explainer``'s explanation of ``record`` / ``x`` under ``protocol`` (registry name), stored as a
        row of the ``scores`` table (and its curve in ``curves``); both explanations of ``sanity`` are stored too."""
        from .protocols import get_protocol, randomization_spec, randomized_model

        p = get_protocol(protocol)
        s = p.settings(**settings)
        clf = explainer.model
        if x is None:
            x = clf.preprocess(record.image)
        ekey = self.explanation_digest(explainer, x, target)
        ref_key = ref_model = ref_id = None
        if p.randomization:
            spec = randomization_spec(clf, s)
            ref_id = randomized_identity(clf, spec)
            ref_model = randomized_model(clf, spec)
            ref_key = self.explanation_digest(type(explainer)(ref_model, **explainer.settings()), x, None, ref_id)
        key = self.score_key(ekey, protocol, s, ref_key)
        rows = self.rows("scores")
        if len(rows) and key in set(rows["key"]):
            self.hits += 1
            return float(rows.loc[rows["key"] == key, "value"].iloc[0])
        self.misses += 1
        e = self.explain(explainer, record, target, x)
        ref = None
        if p.randomization:
            ref = self.explain(type(explainer)(ref_model, **explainer.settings()), record, None, x, model_id=ref_id)
        value, curve = p(clf, x, e, reference=ref, **s)
        image = getattr(record, "id", None) or image_digest(x)[:16]
        self.append_rows("scores", pd.DataFrame([{
            "key": key, "explain_key": ekey, "image": image, "method_name": explainer.name, "protocol_name": protocol,
            "target": int(e.target), "value": float(value), "higher_is_better": p.higher_is_better}]))
        if curve is not None:
            self.append_rows("curves", curve_rows(key, curve))
        return float(value)

    # -- result rows (Parquet segments) --------------------------------------------------------
    def _table_dir(self, table: str) -> Path:
        if not table.replace("_", "").isalnum():
            raise ValueError(f"table={table!r} is not valid; accepted values: a name of letters, digits and _")
        return self.root / "tables" / table

    def append_rows(self, table: str, df: pd.DataFrame) -> Path | None:
        """Append ``df`` (with a ``key`` column) to ``table`` as a new Parquet segment, atomically."""
        if not self.enabled or df is None or len(df) == 0:
            return None
        if "key" not in df.columns:
            raise ValueError(f"rows for table {table!r} have columns {list(df.columns)}; accepted values: a 'key' "
                             "column (the content key of the task) and any others")
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        path = self._table_dir(table) / name
        data = _parquet_bytes(df.reset_index(drop=True), {"saliency_table": table, "saliency_format": FORMAT})
        atomic_write(path, lambda fh: fh.write(data))
        self._segments.setdefault(table, {})[name] = df.reset_index(drop=True)
        return path

    def rows(self, table: str) -> pd.DataFrame:
        """Every row of ``table``; rows whose key already appeared in an earlier segment are dropped."""
        if not self.enabled:
            return pd.DataFrame()
        folder = self._table_dir(table)
        seen = self._segments.setdefault(table, {})
        names = sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []
        for gone in set(seen) - set(names):
            del seen[gone]
        for name in names:
            if name in seen:
                continue
            path = folder / name
            try:
                df = _read_parquet(path, {"saliency_table": table})
                if "key" not in df.columns:
                    raise ValueError("no 'key' column")
                seen[name] = df
            except FileNotFoundError:  # removed by a concurrent compaction
                continue
            except Exception as exc:  # noqa: BLE001 - a damaged segment is a miss, never a crash
                self._discard(path, exc)
        frames = [seen[n] for n in names if n in seen]
        if not frames:
            return pd.DataFrame(columns=list(TABLE_COLUMNS.get(table, ("key",))))
        return _first_per_key(frames)

    def row_keys(self, table: str) -> set[str]:
        """The keys present in ``table``."""
        df = self.rows(table)
        return set(df["key"]) if len(df) else set()

    def compact(self, table: str) -> int:
        """Merge ``table``'s segments into one (readers see every key once throughout); returns the row count."""
        df = self.rows(table)
        folder = self._table_dir(table)
        old = sorted(p for p in folder.glob("*.parquet")) if folder.is_dir() else []
        if len(old) <= 1:
            return len(df)
        # the merged segment sorts first, so its rows win; then the old segments go
        name = f"{0:020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        data = _parquet_bytes(df.reset_index(drop=True), {"saliency_table": table, "saliency_format": FORMAT})
        atomic_write(folder / name, lambda fh: fh.write(data))
        for p in old:
            p.unlink(missing_ok=True)
        self._segments[table] = {name: df.reset_index(drop=True)}
        return len(df)

    # -- housekeeping --------------------------------------------------------------------------
    def clear(self) -> int:
        """Delete every entry (explanations, values, tables, and old pickled ``.pt`` files); returns the count."""
        n = 0
        if self.root.is_dir():
            for area in ("explanations", "values", "tables"):
                for p in (self.root / area).rglob("*") if (self.root / area).is_dir() else []:
                    if p.is_file():
                        p.unlink()
                        n += 1
            for p in self.root.glob("??/*.pt"):  # the pickled cache of library versions <= 0.4
                p.unlink()
                n += 1
        self._segments.clear()
        return n


#: the old name (notebooks call ``sc.ResultCache()``)
ResultCache = Store


def _first_per_key(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate segments in order; a key's rows come from the first segment that holds it (all its rows)."""
    out, seen = [], set()
    for df in frames:
        keys = df["key"]
        fresh = ~keys.isin(seen)
        if fresh.any():
            out.append(df[fresh] if not fresh.all() else df)
            seen.update(keys[fresh].unique().tolist())
    return pd.concat(out, ignore_index=True) if out else frames[0].iloc[0:0]


def score_payload(explain_digest: str, protocol: str, settings: dict[str, Any], code: str,
                  reference_digest: str | None = None) -> dict[str, Any]:
    """The payload of a score's content key (``settings``: the protocol's full settings, defaults included)."""
    payload = {"kind": "score", "explanation": explain_digest, "protocol": protocol, "settings": settings,
               "code": code}
    if reference_digest is not None:
        payload["reference"] = reference_digest
    return payload


def curve_rows(key: str, curve: pd.DataFrame) -> pd.DataFrame:
    """A protocol's curve (columns ``x``, ``y``) as rows of the ``curves`` table."""
    return pd.DataFrame({"key": key, "step": np.arange(len(curve), dtype=np.int64),
                         "x": curve["x"].to_numpy(dtype=float), "y": curve["y"].to_numpy(dtype=float)})


def randomized_identity(clf: Classifier, spec: dict[str, Any]) -> dict[str, Any]:
    """Model identity of a randomised copy of ``clf`` (the sanity check's reference model)."""
    return {"base": model_identity(clf), "randomization": spec, "code": code_hash("saliency_core.metrics.sanity")}


def _explanation_from_state(state: Any) -> Explanation:
    if not isinstance(state, dict):
        raise TypeError(f"entry holds a {type(state).__name__}, not an explanation")
    m = state.get("map")
    if not isinstance(m, torch.Tensor) or m.dim() != 2 or not m.is_floating_point():
        raise TypeError("entry's map is not an (H, W) float tensor")
    for k in ("target", "n_forward", "n_backward", "n_forward_calls", "n_backward_calls"):
        if not isinstance(state.get(k), int) or isinstance(state.get(k), bool):
            raise TypeError(f"entry's {k} is not an int")
    if not isinstance(state.get("method"), str) or not isinstance(state.get("settings"), dict) \
            or not isinstance(state.get("extras"), dict) or not isinstance(state.get("seconds"), float):
        raise TypeError("entry's method/settings/extras/seconds have the wrong types")
    allowed = {"map", "target", "method", "settings", "n_forward", "n_backward", "n_forward_calls",
               "n_backward_calls", "seconds", "extras"}
    if set(state) - allowed:
        raise TypeError(f"entry has unknown fields {sorted(set(state) - allowed)}")
    return Explanation.from_state(state)

