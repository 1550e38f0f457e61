"""Launch buttons (Colab, Binder) and the chapters' install cell: one setting, the repository URL.

The URL is ``$BOOK_REPO_URL`` when that is set (one build, e.g. ``BOOK_REPO_URL=https://github.com/you/fork make
book``), else ``repository.url`` in ``_config.yml`` (:func:`repo_url`). Empty — the default — means no launch
buttons. When the runner stages the book (:func:`saliency_core.book.runner.build_book`), :func:`stage_config`
writes that URL into the staged ``_config.yml`` and turns the Colab and Binder buttons on (or off when there is no
URL): every chapter page then links to

* Colab: ``https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/notebooks/<stem>.ipynb``
* Binder: ``https://mybinder.org/v2/gh/<org>/<repo>/<branch>?urlpath=tree/notebooks/<stem>.ipynb``

(:func:`launch_links`, which ``tools/check_book.py`` compares with the built pages). A hosted notebook has no
``saliency_core``: each chapter's first code cell installs it from the same URL (:func:`install_spec` gives the
pip requirement, so the buttons and the install cell always name the same repository and branch).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ENV", "COLAB_URL", "BINDER_URL", "repo_url", "repo_branch", "stage_config", "launch_links",
           "install_spec", "github_parts"]

ENV = "BOOK_REPO_URL"
COLAB_URL = "https://colab.research.google.com"
BINDER_URL = "https://mybinder.org"
_GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")


def _config(root: Path) -> dict[str, Any]:
    f = Path(root) / "_config.yml"
    return (yaml.safe_load(f.read_text()) or {}) if f.is_file() else {}


def repo_url(root: str | os.PathLike) -> str:
    """``$BOOK_REPO_URL`` if set and not empty, else ``_config.yml`` ``repository.url`` (``""`` when neither)."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return env
    return str((_config(Path(root)).get("repository") or {}).get("url") or "").strip()


def repo_branch(root: str | os.PathLike) -> str:
    """``_config.yml`` ``repository.branch`` (default ``main``)."""
    return str((_config(Path(root)).get("repository") or {}).get("branch") or "main")


def github_parts(url: str) -> tuple[str, str]:
    """``(org, repo)`` of a ``https://github.com/<org>/<repo>`` URL; a one-line ``ValueError`` otherwise (Colab opens
    notebooks from GitHub only)."""
    m = _GITHUB.match(url.strip())
    if m is None:
        raise ValueError(f"{ENV} / repository.url={url!r} is not valid; accepted values: https://github.com/<org>/<repo>")
    return m.group(1), m.group(2)


def stage_config(config: str | os.PathLike, url: str) -> dict[str, Any]:
    """Rewrite the staged ``_config.yml`` at ``config``: ``repository.url = url`` and, when ``url`` is set, the Colab
    and Binder launch buttons and the repository button; without a URL all three are off. Returns the new config."""
    path = Path(config)
    cfg = yaml.safe_load(path.read_text()) or {}
    if url:
        github_parts(url)  # refuse a URL the buttons cannot use, before the build
    cfg.setdefault("repository", {})["url"] = url
    cfg["repository"].setdefault("branch", "main")
    cfg["repository"].setdefault("path_to_book", "")
    launch = cfg.setdefault("launch_buttons", {})
    launch["colab_url"] = COLAB_URL if url else ""
    launch["binderhub_url"] = BINDER_URL if url else ""
    launch.setdefault("notebook_interface", "classic")
    cfg.setdefault("html", {})["use_repository_button"] = bool(url)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return cfg


def launch_links(url: str, branch: str, path: str, interface: str = "classic") -> dict[str, str]:
    """The Colab and Binder links sphinx-book-theme builds for the notebook at ``path`` (relative to the repository
    root, e.g. ``notebooks/01_extremal_perturbations.ipynb``)."""
    org, repo = github_parts(url)
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}[interface]
    return {"Colab": f"{COLAB_URL}/github/{org}/{repo}/blob/{branch}/{path}",
            "Binder": f"{BINDER_URL}/v2/gh/{org}/{repo}/{branch}?urlpath={ui}/{path}"}


def install_spec(root: str | os.PathLike, extras: str = "interop") -> str:
    """The pip requirement a hosted notebook installs: ``saliency-core[extras] @ git+<url>@<branch>``; ``""`` when
    no URL is set (then the install cell can only ask for a local ``pip install -e .``)."""
    url = repo_url(root)
    if not url:
        return ""
    name = f"saliency-core[{extras}]" if extras else "saliency-core"
    return f"{name} @ git+{url.rstrip('/')}@{repo_branch(root)}"
