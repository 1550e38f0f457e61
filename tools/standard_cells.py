"""Insert or update the two standard cells of every chapter notebook (idempotent).

(i)  a **parameter check** right after the papermill ``parameters`` cell: the defaults of that cell and the
     ``rules:`` of ``params/<stem>.yaml`` are written into it, and it calls
     :func:`saliency_core.book.parameters.check_parameters` on the kernel's globals, so a misspelt ``-p`` name or a
     bad value stops a direct ``papermill`` run in its first cells (the runner checks the same before it starts);
(ii) an **install cell** as the first code cell: in a hosted notebook (Colab, Binder) where ``saliency_core`` is not
     importable it runs ``%pip install`` of :func:`saliency_core.book.launch.install_spec` (``$BOOK_REPO_URL`` or
     ``_config.yml``'s ``repository.url`` and ``repository.branch``: the same repository as the launch buttons);
     where the library is importable it does nothing. Without a URL it says how to install instead.

Both cells carry the tag ``remove-cell`` (the book does not show them) and a tag of their own, by which a later run
finds and updates them in place; a cell whose source is already current is left as it is (outputs included), so
a second run changes nothing. Notebooks without a ``parameters`` cell only get the install cell.

Usage::

    python tools/standard_cells.py [--root .] [--check] [--url URL] [notebooks/NAME.ipynb ...]

``--check`` writes nothing and exits 1 when a notebook is not current (for tests and CI).
"""

from __future__ import annotations

import argparse
import json
import os
import pprint
import sys
from pathlib import Path
from typing import Any

TAG_INSTALL = "standard-install"
TAG_CHECK = "standard-parameter-check"
HIDE = "remove-cell"


def pip_spec(root: Path, url: str | None = None) -> str:
    """The pip requirement of the install cell (``""`` without a repository URL); ``url`` overrides the setting."""
    sys.path.insert(0, str(root))
    from saliency_core.book.launch import ENV, install_spec

    if url is None:
        return install_spec(root)
    old = os.environ.get(ENV)
    os.environ[ENV] = url
    try:
        return install_spec(root)
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def install_source(spec: str) -> str:
    """The install cell: a no-op where ``saliency_core`` is importable, else ``%pip install <spec>``."""
    head = ("# Hosted notebooks (Colab, Binder, ...): install the library when it is missing; where it is installed\n"
            "# this cell does nothing. (Inserted by tools/standard_cells.py.)\n"
            "import importlib.util\n\n"
            "if importlib.util.find_spec(\"saliency_core\") is None:\n")
    if not spec:
        return head + ("    raise ModuleNotFoundError(\"saliency_core is not installed: pip install the book's "
                       "repository (pip install -e . in a clone)\")")
    return head + f"    %pip install -q \"{spec}\""


def check_source(stem: str, defaults: dict[str, Any], rules: dict[str, Any]) -> str:
    """The parameter-check cell for notebook ``stem`` (defaults and rules written in, so it needs no file)."""
    def lit(obj: dict[str, Any]) -> str:
        if not obj:
            return "{}"
        rows = []
        for k, v in obj.items():
            pad = 10 + len(repr(k))  # continuation lines under the value's first character
            text = pprint.pformat(v, width=max(40, 116 - pad), sort_dicts=False).replace("\n", "\n" + " " * pad)
            rows.append(f"        {k!r}: {text},")
        return "{\n" + "\n".join(rows) + "\n    }"

    return ("# Parameter check (inserted by tools/standard_cells.py from the parameters cell and the rules in\n"
            f"# params/{stem}.yaml): a misspelt name or a bad value stops here, in one line, before the work.\n"
            "from saliency_core.book.parameters import check_parameters\n\n"
            f"check_parameters(\n    globals(),\n    {stem!r},\n    defaults={lit(defaults)},\n"
            f"    rules={lit(rules)},\n)")


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _code_cell(source: str, tag: str, cell_id: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id,
            "metadata": {"tags": [HIDE, tag]}, "outputs": [], "source": source.splitlines(keepends=True)}


def _place(cells: list[dict], tag: str, source: str, index_of, cell_id: str, with_ids: bool) -> bool:
    """Put the cell tagged ``tag`` with ``source`` at ``index_of(cells without it)``; True when anything changed."""
    old = [i for i, c in enumerate(cells) if tag in _tags(c)]
    keep = cells[old[0]] if old else None
    rest = [c for i, c in enumerate(cells) if i not in old]
    pos = index_of(rest)
    if keep is not None and _src(keep) == source and len(old) == 1 and old[0] == pos:
        return False
    cell = keep if keep is not None else _code_cell(source, tag, cell_id)
    if _src(cell) != source:
        cell["source"] = source.splitlines(keepends=True)
        cell["outputs"], cell["execution_count"] = [], None
    if not with_ids:
        cell.pop("id", None)
    rest.insert(pos, cell)
    cells[:] = rest
    return True


def update_notebook(path: Path, root: Path, spec: str) -> tuple[str, bool]:
    """Update one notebook in memory; returns (new JSON text, changed)."""
    sys.path.insert(0, str(root))
    from saliency_core.book.parameters import notebook_defaults, notebook_rules, parameters_cell_index

    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    cells = nb["cells"]
    with_ids = any("id" in c for c in cells) or (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5)
    stem = path.stem
    changed = _place(cells, TAG_INSTALL, install_source(spec),
                     lambda cs: next((i for i, c in enumerate(cs) if c.get("cell_type") == "code"), len(cs)),
                     "standard-install", with_ids)
    if parameters_cell_index(nb) is not None:
        defaults = notebook_defaults(nb)
        rules = notebook_rules(root, stem)
        changed |= _place(cells, TAG_CHECK, check_source(stem, defaults, rules),
                          lambda cs: parameters_cell_index({"cells": cs}) + 1, "standard-parameter-check", with_ids)
    end = "\n" if text.endswith("\n") else ""  # keep the file's own ending: no diff beyond the two cells
    return json.dumps(nb, indent=1, ensure_ascii=False) + end, changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb of --root")
    ap.add_argument("--root", type=Path, default=Path("."), help="the book repository (default: .)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a notebook is not current")
    ap.add_argument("--url", default=None, help="repository URL (default: $BOOK_REPO_URL, else _config.yml "
                    "repository.url)")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    spec = pip_spec(root, args.url)
    if not spec:
        print("standard_cells: no repository URL ($BOOK_REPO_URL, _config.yml repository.url or --url): the install "
              "cell will only explain how to install", file=sys.stderr)
    paths = args.notebooks or sorted(p for p in (root / "notebooks").glob("*.ipynb") if not p.name.startswith("."))
    stale = []
    for p in paths:
        text, changed = update_notebook(Path(p), root, spec)
        if changed:
            stale.append(Path(p))
            if not args.check:
                Path(p).write_text(text, encoding="utf-8")
    for p in stale:
        print(f"standard_cells: {'not current' if args.check else 'updated'}: {p}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
