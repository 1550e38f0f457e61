"""The old name of the result store: ``ResultCache`` is :class:`saliency_core.store.Store` (kept for callers)."""

from __future__ import annotations

from .files import atomic_write, atomic_write_text
from .store import ResultCache, Store, cache_key, default_cache_dir

__all__ = ["ResultCache", "Store", "cache_key", "default_cache_dir", "atomic_write", "atomic_write_text"]
