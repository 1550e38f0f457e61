"""Per-image result cache: computed once, stored atomically, never recomputed.

Key = kind (e.g. ``"explanation"``) + method name + its settings + model key (name@weights hash) + image id
+ library version, hashed to a file name. Values are written with ``torch.save`` to a temporary file in
the same folder and renamed into place (``os.replace`` is atomic on POSIX), so a run killed mid-write
leaves either the old entry or none — never a half-written one — and a rerun resumes where it stopped.

The folder is ``$SALIENCY_CACHE`` if set, else ``_cache/`` at the repository root (next to ``notebooks/``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .explanation import Explainer, Explanation
from .files import atomic_write, atomic_write_text  # noqa: F401  (re-exported for old callers)

__all__ = ["ResultCache", "default_cache_dir", "cache_key"]


def default_cache_dir() -> Path:
    env = os.environ.get("SALIENCY_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "_cache"


def _canon(obj: Any) -> Any:
    """JSON-able canonical form of settings (tuples → lists, tensors → lists, paths → str)."""
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def cache_key(kind: str, key: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``{"kind": kind, **key, "version": library version}``."""
    payload = json.dumps({"kind": kind, "version": __version__, **_canon(key)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResultCache:
    """A folder of ``torch.save`` files keyed by :func:`cache_key`.

    Parameters
    ----------
    root : path, optional
        Cache folder (default :func:`default_cache_dir`).
    enabled : bool
        ``False`` computes every time and stores nothing (for tests and timing).
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.pt"

    def contains(self, kind: str, key: dict[str, Any]) -> bool:
        return self.enabled and self._path(cache_key(kind, key)).is_file()

    def load(self, kind: str, key: dict[str, Any]) -> Any | None:
        """The stored value, or ``None`` if absent or unreadable (a corrupt entry is removed)."""
        if not self.enabled:
            return None
        path = self._path(cache_key(kind, key))
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a damaged file is a miss, never a crash
            path.unlink(missing_ok=True)
            return None

    def store(self, kind: str, key: dict[str, Any], value: Any) -> None:
        """Write ``value`` atomically: temp file in the same folder, fsync, ``os.replace``."""
        if not self.enabled:
            return
        atomic_write(self._path(cache_key(kind, key)), lambda fh: torch.save(value, fh))

    def get_or_compute(self, kind: str, key: dict[str, Any], fn: Callable[[], Any]) -> Any:
        """Return the cached value for ``(kind, key)`` or compute it with ``fn()`` and store it."""
        value = self.load(kind, key)
        if value is not None:
            self.hits += 1
            return value
        self.misses += 1
        value = fn()
        self.store(kind, key, value)
        return value

    # -- explanations -------------------------------------------------------------------------
    @staticmethod
    def explanation_key(explainer: Explainer, image_id: str, target: int | None) -> dict[str, Any]:
        return {
            "method": explainer.name,
            "settings": explainer.settings(),
            "model": explainer.model.key,
            "image": image_id,
            "target": target,
        }

    def explain(self, explainer: Explainer, record: Any, target: int | None = None,
                x: torch.Tensor | None = None) -> Explanation:
        """Explanation of ``record`` (an :class:`~saliency_core.data.ImageRecord`) by ``explainer``, cached.

        ``x`` may pass the already-preprocessed tensor; otherwise ``explainer.model.preprocess(record.image)``.
        ``target=None`` explains the model's top-1 class (part of the key as ``None``).
        """
        key = self.explanation_key(explainer, record.id, target)

        def compute() -> dict[str, Any]:
            inp = x if x is not None else explainer.model.preprocess(record.image)
            return explainer.explain(inp, target).to_state()

        return Explanation.from_state(self.get_or_compute("explanation", key, compute))

    def explain_many(self, explainer: Explainer, records: list, targets: list[int | None] | None = None,
                     progress: bool = True, desc: str | None = None) -> list[Explanation]:
        """Explain several records (a tqdm progress bar over images); each one is its own cached task."""
        from tqdm.auto import tqdm

        targets = targets if targets is not None else [None] * len(records)
        it = zip(records, targets)
        if progress:
            it = tqdm(list(it), desc=desc or explainer.name, leave=False, disable=None)
        return [self.explain(explainer, r, t) for r, t in it]

    def clear(self) -> int:
        """Delete every entry; returns how many files were removed."""
        n = 0
        if self.root.is_dir():
            for p in self.root.rglob("*.pt"):
                p.unlink()
                n += 1
        return n
