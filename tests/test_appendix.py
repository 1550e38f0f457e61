"""The book's appendix "Algorithms and settings" (book/algorithms.md) and the pointers into it.

* every ``(appendix-N-M)=`` target is unique and stands right before the heading of section N.M;
* every "appendix §N.M" pointer (and every ``<appendix-N-M>`` cross-reference) in the library, the notebooks, the
  benchmarks and the book has its target;
* the page is in the table of contents and keeps the § numbering 0-11 of the reference it replaces;
* ``tools/rewrite_protocol_pointers.py`` rewrites "protocols.md §…" pointers correctly, idempotently and without
  touching anything else, checked on hand-made inputs and on a temporary copy of the tree (never on the tree).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPENDIX = ROOT / "book" / "algorithms.md"
POINTER_DIRS = ("saliency_core", "notebooks", "book", "benchmarks")
SECTIONS = [str(i) for i in range(12)]  # §0 sources … §11 cross-cutting rules

_NUM = r"\d+(?:\.\d+)*"
_SECS = rf"§\s*{_NUM}(?:\s*[-–]\s*§?\s*{_NUM})?(?:\s*,\s*§\s*{_NUM}(?:\s*[-–]\s*§?\s*{_NUM})?)*"


def _tool():
    spec = importlib.util.spec_from_file_location("rewrite_protocol_pointers",
                                                  ROOT / "tools" / "rewrite_protocol_pointers.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


rw = _tool()


def _targets(text: str) -> list[tuple[str, int]]:
    lines = text.splitlines()
    return [(m.group(1), i) for i, line in enumerate(lines) if (m := re.fullmatch(r"\((appendix-[\w-]+)\)=\s*", line))]


def _labels() -> set[str]:
    return {t for t, _ in _targets(APPENDIX.read_text(encoding="utf-8"))}


def pointers(text: str) -> set[str]:
    """Labels pointed to by ``text``: "appendix §4.2-4.3, §4.6" → appendix-4-2, -4-3, -4-6; ``<appendix-4-2>`` too."""
    out = set()
    for m in re.finditer(rf"[Aa]ppendix\s+(?P<secs>{_SECS})", text):
        out |= {"appendix-" + n.replace(".", "-") for n in re.findall(_NUM, m.group("secs"))}
    out |= {m.group(1) for m in re.finditer(r"[<(#](appendix-\d+(?:-\d+)*)[>)\s]", text)}
    return out


def _tree_files(root: Path):
    for d in POINTER_DIRS:
        for f in sorted((root / d).rglob("*")):
            if f.suffix in (".py", ".ipynb", ".md") and ".ipynb_checkpoints" not in f.parts and f.is_file():
                yield f


# ---------------------------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------------------------
def test_targets_are_unique_and_stand_before_their_heading():
    text = APPENDIX.read_text(encoding="utf-8")
    lines = text.splitlines()
    targets = _targets(text)
    names = [t for t, _ in targets]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    for name, i in targets:
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        heading = lines[j] if j < len(lines) else ""
        assert re.match(r"#{1,6} ", heading), f"({name})= is not followed by a heading but by {heading!r}"
        num = re.fullmatch(r"appendix-(\d+(?:-\d+)*)", name)
        if num:  # the heading carries the number of its label: (appendix-4-5-2)= → "#### 4.5.2 ..."
            dotted = num.group(1).replace("-", ".")
            assert re.match(rf"#+ {re.escape(dotted)}\.? ", heading), f"({name})= stands before {heading!r}"


def test_numbering_of_the_reference_is_kept():
    labels = _labels()
    assert {f"appendix-{s}" for s in SECTIONS} <= labels
    for sub in ("1-1", "1-3-1", "1-4", "2-2", "3-1", "3-2", "3-3", "3-4", "3-5", "4-1", "4-2", "4-3", "4-5-1",
                "4-5-2", "4-6", "5-1", "5-2", "11-6"):
        assert f"appendix-{sub}" in labels
    assert "appendix-vocabulary" in labels


def test_page_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s*- file: book/algorithms\s*$", toc, re.M)


def test_page_does_not_name_the_reference_file():
    assert "protocols.md" not in APPENDIX.read_text(encoding="utf-8")


def test_every_pointer_into_the_appendix_has_its_target():
    labels = _labels()
    missing = []
    for f in _tree_files(ROOT):
        for lab in sorted(pointers(f.read_text(encoding="utf-8")) - labels):
            missing.append(f"{f.relative_to(ROOT)}: {lab}")
    assert not missing, "\n".join(missing)


def test_pointer_parser():
    assert pointers("see appendix §4.2-4.3, §4.6 and tie rule §11") == {"appendix-4-2", "appendix-4-3", "appendix-4-6"}
    assert pointers("({ref}`appendix §4.5.2 <appendix-4-5-2>`)") == {"appendix-4-5-2"}
    assert pointers("Appendix §1.5 describes it") == {"appendix-1-5"}
    assert pointers("the appendix marks the tables") == set()


def test_no_file_points_to_protocols_md():
    files = [f for d in ("saliency_core", "notebooks", "book") for f in sorted((ROOT / d).rglob("*")) if f.is_file()]
    hits = [str(f.relative_to(ROOT)) for f in files if f.suffix in (".py", ".ipynb", ".md", ".yml", ".yaml", ".txt")
            and "protocols.md" in f.read_text(encoding="utf-8", errors="replace")]
    assert not hits, hits


# ---------------------------------------------------------------------------------------------------------------
# the rewrite tool on hand-made inputs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("old, new", [
    ("(protocols.md §4.5.2).", "(appendix §4.5.2)."),
    ("the official CLI (protocols.md §4.5.1)", "the official CLI (appendix §4.5.1)"),
    ("search (protocols.md §4.2-4.3, §4.6).", "search (appendix §4.2-4.3, §4.6)."),
    ("arrays (protocols.md §7, tie rule §11).", "arrays (appendix §7, tie rule §11)."),
    ("as in protocols.md (§4.2)", "as in appendix §4.2"),
    ("as in protocols.md (§4.2, item 2)", "as in appendix §4.2, item 2"),
    ("see `protocols.md` §3.3", "see appendix §3.3"),
    ("see shared/reference/protocols.md §3", "see appendix §3"),
    ("x = 1\n# protocols.md §6 default grid", "x = 1\n# appendix §6 default grid"),
    ("clamp.\n    protocols.md is silent on this method; the", "clamp.\n    Appendix §1.5 describes this method; the"),
    ("(protocols.md marks the tables as not", "(appendix §4.4 marks the tables as not"),
    ("is protocols.md's measurement of the", "is the measurement in appendix §4.5.2 of the"),
    ("one (protocols.md's table)", "one (the appendix's table)"),
    ('"""protocols.md lists it."""', '"""The appendix lists it."""'),
    ("as protocols.md says", "as the appendix says"),
    ("no pointer here", "no pointer here"),
])
def test_rewrite_text(old, new):
    assert rw.rewrite_text(old) == new
    assert rw.rewrite_text(new) == new  # idempotent


def test_rewrite_links_in_markdown():
    out = rw.rewrite_text("the bug (protocols.md §4.5.2; see also protocols.md §4.2-4.3, §4.6)", link=True)
    assert out == ("the bug ({ref}`appendix §4.5.2 <appendix-4-5-2>`; see also {ref}`appendix §4.2 <appendix-4-2>`–"
                   "{ref}`4.3 <appendix-4-3>`, {ref}`§4.6 <appendix-4-6>`)")
    assert pointers(out) == {"appendix-4-5-2", "appendix-4-2", "appendix-4-3", "appendix-4-6"}
    assert rw.rewrite_text(out, link=True) == out


def _notebook(cells) -> str:
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def test_rewrite_notebook_changes_only_the_pointers():
    md = {"cell_type": "markdown", "id": "a", "metadata": {},
          "source": ["Deviation (protocols.md §3.5).\n", "Ünïcode stays, so do \"quotes\".\n"]}
    code = {"cell_type": "code", "id": "b", "execution_count": 1, "metadata": {"tags": ["nbval-check-output"]},
            "source": ["x = 1  # protocols.md §7\n", "print(\"bias (protocols.md §4.5.2)\")"],
            "outputs": [{"name": "stdout", "output_type": "stream", "text": ["bias (protocols.md §4.5.2)\n"]},
                        {"output_type": "display_data", "metadata": {},
                         "data": {"image/png": "iVBORw0KGgo=", "text/plain": ["<Figure>"]}}]}
    untouched = {"cell_type": "markdown", "id": "c", "metadata": {}, "source": ["nothing\n"]}
    raw = _notebook([md, code, untouched])
    new = rw.rewrite_notebook(raw)
    nb = json.loads(new)
    assert nb["cells"][0]["source"] == ["Deviation ({ref}`appendix §3.5 <appendix-3-5>`).\n",
                                        "Ünïcode stays, so do \"quotes\".\n"]
    assert nb["cells"][1]["source"] == ["x = 1  # appendix §7\n", "print(\"bias (appendix §4.5.2)\")"]
    assert nb["cells"][1]["outputs"][0]["text"] == ["bias (appendix §4.5.2)\n"]
    old_nb = json.loads(raw)
    assert nb["cells"][1]["outputs"][1] == old_nb["cells"][1]["outputs"][1]
    assert nb["cells"][2] == old_nb["cells"][2] and nb["metadata"] == old_nb["metadata"]
    # every line that held no pointer is byte-identical
    changed = [(a, b) for a, b in zip(raw.splitlines(), new.splitlines()) if a != b]
    assert len(raw.splitlines()) == len(new.splitlines())
    assert all("protocols.md" in a for a, _ in changed) and len(changed) == 4
    assert rw.rewrite_notebook(new) == new


def test_rewrite_notebook_keeps_a_non_canonical_layout():
    """Notebooks not written by nbformat's dumper (other indent, key order) keep their layout."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"source": "a (protocols.md §6)", "cell_type": "markdown", "metadata": {}}]}
    raw = json.dumps(nb, indent=2, ensure_ascii=True)
    new = rw.rewrite_notebook(raw)
    assert new == raw.replace("protocols.md \\u00a76", "{ref}`appendix \\u00a76 <appendix-6>`".replace(
        "\\u00a7", "§"))


# ---------------------------------------------------------------------------------------------------------------
# the rewrite tool on a temporary copy of the tree
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory):
    dst = tmp_path_factory.mktemp("tree")
    for d in ("saliency_core", "notebooks", "book", "benchmarks", "tests"):
        shutil.copytree(ROOT / d, dst / d, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    return dst


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_rewrite_tool_on_a_copy_of_the_tree(tree_copy, capsys):
    before = _snapshot(tree_copy)
    assert rw.main(["--root", str(tree_copy), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert _snapshot(tree_copy) == before, "--dry-run wrote files"
    n_pointers = sum(v.count(b"protocols.md") for k, v in before.items() if k not in
                     ("tests/test_check_book.py", "tests/test_appendix.py"))
    m = re.search(r"would change (\d+) line\(s\) in (\d+) file\(s\)", listing)
    assert m and (int(m.group(1)) > 0) == (n_pointers > 0), listing[-300:]

    assert rw.main(["--root", str(tree_copy)]) == 0
    capsys.readouterr()
    after = _snapshot(tree_copy)
    labels = _labels()
    for name, data in after.items():
        text = data.decode("utf-8", errors="replace")
        if name in ("tests/test_check_book.py", "tests/test_appendix.py"):
            assert data == before[name]
            continue
        if Path(name).suffix in (".py", ".md", ".ipynb"):
            assert "protocols.md" not in text, name
            assert pointers(text) <= labels, (name, sorted(pointers(text) - labels))
        if data != before[name]:
            if name.endswith(".py"):
                ast.parse(text)
            if name.endswith(".ipynb"):
                old_nb, new_nb = json.loads(before[name]), json.loads(data)
                assert [c["cell_type"] for c in old_nb["cells"]] == [c["cell_type"] for c in new_nb["cells"]]
                assert [c.get("metadata") for c in old_nb["cells"]] == [c.get("metadata") for c in new_nb["cells"]]
            assert len(text.splitlines()) == len(before[name].decode("utf-8").splitlines())

    assert rw.main(["--root", str(tree_copy)]) == 0  # idempotent
    assert "changed 0 line(s) in 0 file(s)" in capsys.readouterr().out
    assert _snapshot(tree_copy) == after
