"""Book tooling, kept apart from the science: the runner (papermill + jupyter-book), the generated front matter
and the claims ledger. Everything here takes the repository root as an argument (:func:`repo_root` finds it)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "release_dir", "load_release"]


def repo_root(start: str | os.PathLike | None = None, strict: bool = True) -> Path | None:
    """The book's repository root: ``$SALIENCY_ROOT``, else the first folder at or above ``start`` (default: the
    current directory) that holds ``_toc.yml`` and ``notebooks/``. ``strict=False`` returns ``None`` when there is
    none instead of raising."""
    env = os.environ.get("SALIENCY_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / "notebooks").is_dir():
            return d
    if strict:
        raise SystemExit(f"no book repository (a folder with _toc.yml and notebooks/) at or above {here}; "
                         "accepted values: run inside the repository or set SALIENCY_ROOT")
    return None


def release_dir() -> Path:
    """Where the evidence release lives: ``$SALIENCY_RELEASE_DIR``, else ``<repo>/results/release`` (else
    ``./results/release`` outside a repository)."""
    env = os.environ.get("SALIENCY_RELEASE_DIR")
    if env:
        return Path(env)
    return (repo_root(strict=False) or Path.cwd()) / "results" / "release"


def load_release(name: str):
    """The committed tables of release study ``name`` (:func:`saliency_core.study.read_tables`: ``scores``,
    ``curves``, ``costs``, ``provenance``), or ``None`` when this checkout has none (a chapter then says so)."""
    from ..study import read_tables

    folder = release_dir() / name
    if not (folder / "scores.parquet").is_file():
        return None
    return read_tables(folder)
