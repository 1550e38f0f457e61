"""tools/make_student.py: solutions removed, outputs cleared, nothing else touched; the committed chapters too."""

from __future__ import annotations

import importlib.util
import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


ms = _load()


def _cell(kind, text, tags=None, outputs=None):
    c = {"cell_type": kind, "metadata": {"tags": tags or []}, "source": text}
    if kind == "code":
        c.update(outputs=outputs or [], execution_count=3 if outputs else None)
        c["metadata"]["papermill"] = {"duration": 1.0}
    return c


NB = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"papermill": {"duration": 9}, "saliency_run": {"fingerprint": "x"}, "kernelspec": {"name": "python3"}},
    "cells": [
        _cell("markdown", "# Chapter\n\nText with :::{dropdown} inline words that are not a fence."),
        _cell("code", "x = 1", tags=["parameters"]),
        _cell("code", "x = 2", tags=["injected-parameters"]),
        _cell("code", "print(x)", outputs=[{"output_type": "stream", "name": "stdout", "text": "1\n"}]),
        _cell("markdown", "### Exercise 1\n\nPredict it."),
        _cell("markdown", ":::{dropdown} Solution\nThe answer is 42.\n:::"),
        _cell("markdown", "Before.\n\n::::{dropdown} Solution to exercise 2\nNested:\n:::{note}\ninside\n:::\n"
                          "```python\nprint(1)\n```\n::::\n\nAfter."),
        _cell("markdown", "````{dropdown} solution\n```python\ncode\n```\n````\nKept."),
        _cell("markdown", ":::{dropdown} Hint\nA hint stays.\n:::"),
        _cell("code", "answer = 42", tags=["solution"]),
        _cell("markdown", ":::{dropdown} Solution\nnever closed"),
    ],
}


def test_strip_solutions_handles_fences_and_nesting():
    text, n = ms.strip_solutions("A\n\n:::{dropdown} Solution\nx\n:::{note}\ny\n:::\nz\n:::\n\nB")
    assert (text, n) == ("A\n\nB", 1)
    assert ms.strip_solutions("no solution here") == ("no solution here", 0)
    text, n = ms.strip_solutions(":::{dropdown} Solution\na\n:::\n:::{dropdown} Solution 2\nb\n:::\nend")
    assert (text, n) == ("end", 2)


def test_student_notebook():
    nb, removed = ms.student_notebook(NB)
    assert removed == 5
    texts = [ms._source(c) for c in nb["cells"]]
    assert "The answer is 42." not in "".join(texts) and "answer = 42" not in texts
    assert "Before.\n\nAfter." in texts and "Kept." in texts
    assert ":::{dropdown} Hint\nA hint stays.\n:::" in texts  # only solutions go
    assert texts[0] == NB["cells"][0]["source"]
    assert "x = 2" not in texts and "x = 1" in texts  # injected parameters dropped, the parameters cell kept
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None and "papermill" not in c["metadata"] for c in code)
    assert set(nb["metadata"]) == {"kernelspec"}
    assert ms.check_student(nb) == []
    assert NB["cells"][3]["outputs"]  # the input is not modified
    assert ms.check_student(NB) and any("solution dropdown" in p for p in ms.check_student(NB))


def test_committed_chapters(tmp_path, capsys):
    rc = ms.main(["--notebooks", str(ROOT / "notebooks"), "--out", str(tmp_path / "student"), "--zip"])
    assert rc == 0
    out = capsys.readouterr().out
    for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads((tmp_path / "student" / "notebooks" / src.name).read_text())
        assert ms.check_student(nb) == [], src.name
        original = json.loads(src.read_text())
        expected = sum(ms.strip_solutions(ms._source(c))[1] for c in original["cells"] if c["cell_type"] == "markdown")
        assert f"{src.name}: {expected} solution(s) removed" in out
        kept = [ms._source(c) for c in original["cells"] if c["cell_type"] == "code"
                and "injected-parameters" not in c["metadata"].get("tags", [])]
        assert [ms._source(c) for c in nb["cells"] if c["cell_type"] == "code"] == kept  # code is untouched
    assert (tmp_path / "student" / "params").is_dir()
    with zipfile.ZipFile(tmp_path / "student.zip") as z:
        assert any(n.endswith("notebooks/01_extremal_perturbations.ipynb") for n in z.namelist())
