"""Student copies of the chapters: exercise solutions removed, outputs cleared, ready to hand out.

Usage::

    python tools/make_student.py [--notebooks notebooks] [--out _build/student] [--zip]

For every ``notebooks/*.ipynb``:

* every solution block is removed from the markdown cells — a MyST dropdown whose title starts with "Solution"
  (``:::{dropdown} Solution``, any fence length ≥ 3 of colons or backticks, nested directives inside it included)
  — and a cell left empty by that is dropped, as is any cell tagged ``solution``;
* every code cell's outputs and execution count are cleared, and the execution records (papermill's cell and
  notebook metadata, the runner's ``saliency_run`` fingerprint, an injected-parameters cell) are dropped;
* the result is checked: valid JSON with ``nbformat`` 4, no "Solution" dropdown left, no output left.

The copies go to ``<out>/notebooks/`` (with ``params/`` beside them, which the chapters read), ``--zip`` also writes
``<out>.zip``. Prints one line per notebook (solutions removed, cells) and exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{dropdown\}[ \t]*solution\b", re.IGNORECASE)
_ANY_OPEN = re.compile(r"^(?P<fence>:{3,}|`{3,})\{[^}]*\}")
_CLOSE = re.compile(r"^(?P<fence>:{3,}|`{3,})[ \t]*$")
NB_METADATA_DROP = ("papermill", "saliency_run", "widgets")
CELL_METADATA_DROP = ("papermill", "execution", "scrolled", "collapsed")

__all__ = ["strip_solutions", "student_notebook", "check_student", "main"]


def strip_solutions(text: str) -> tuple[str, int]:
    """``text`` without its solution dropdowns; returns (text, number removed). An unclosed block runs to the end."""
    lines = text.split("\n")
    out: list[str] = []
    removed = 0
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i].strip())
        if m is None:
            out.append(lines[i])
            i += 1
            continue
        stack = [m.group("fence")]  # the solution's fence, then the fences of directives nested inside it
        i += 1
        while i < len(lines) and stack:
            line = lines[i].strip()
            close = _CLOSE.match(line)
            top = stack[-1]
            if close is not None and close.group("fence")[0] == top[0] and len(close.group("fence")) >= len(top):
                stack.pop()
            elif (nested := _ANY_OPEN.match(line)) is not None:
                stack.append(nested.group("fence"))
            i += 1
        removed += 1
        while out and not out[-1].strip() and i < len(lines) and not lines[i].strip():
            out.pop()  # no double blank line where the block was
    return "\n".join(out).strip("\n") + ("\n" if text.endswith("\n") and out else ""), removed


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def student_notebook(nb: dict) -> tuple[dict, int]:
    """A student copy of notebook ``nb`` (module docstring) and the number of solutions removed."""
    nb = json.loads(json.dumps(nb))  # deep copy
    cells, removed = [], 0
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if "solution" in tags or "injected-parameters" in tags:
            removed += "solution" in tags
            continue
        if cell.get("cell_type") == "markdown":
            text, n = strip_solutions(_source(cell))
            removed += n
            if n and not text.strip():
                continue
            if n:
                cell["source"] = text
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in CELL_METADATA_DROP:
            cell.get("metadata", {}).pop(key, None)
        cells.append(cell)
    nb["cells"] = cells
    for key in NB_METADATA_DROP:
        nb.get("metadata", {}).pop(key, None)
    return nb, removed


def check_student(nb: dict) -> list[str]:
    """What makes ``nb`` unfit to hand out (empty list when it is fit)."""
    problems = []
    if nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        problems.append("not an nbformat-4 notebook")
    for k, cell in enumerate(nb.get("cells", [])):
        src = _source(cell)
        if any(_OPEN.match(line.strip()) for line in src.split("\n")):
            problems.append(f"cell {k}: a solution dropdown is left")
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(f"cell {k}: outputs are left")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/make_student.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="chapters (default notebooks/)")
    ap.add_argument("--out", type=Path, default=ROOT / "_build" / "student", help="output folder")
    ap.add_argument("--zip", action="store_true", help="also write <out>.zip")
    args = ap.parse_args(argv)
    sources = sorted(p for p in args.notebooks.glob("*.ipynb") if not p.name.startswith("."))
    if not sources:
        print(f"[student] no notebooks in {args.notebooks}", file=sys.stderr)
        return 2
    dest = args.out / "notebooks"
    if args.out.exists():
        shutil.rmtree(args.out)
    dest.mkdir(parents=True)
    params = args.notebooks.parent / "params"
    if params.is_dir():
        shutil.copytree(params, args.out / "params")
    bad = 0
    for src in sources:
        nb, removed = student_notebook(json.loads(src.read_text()))
        problems = check_student(nb)
        (dest / src.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"[student] {src.name}: {removed} solution(s) removed, {len(nb['cells'])} cells, outputs cleared"
              + (f"; PROBLEMS: {'; '.join(problems)}" if problems else ""))
        bad += bool(problems)
    if args.zip:
        archive = args.out.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(args.out.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(args.out.parent))
        print(f"[student] {archive}")
    print(f"[student] {len(sources)} notebook(s) in {dest}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
