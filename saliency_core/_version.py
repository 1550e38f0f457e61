"""The library version (one source: pyproject reads it, provenance records it)."""

__version__ = "0.4.0"
