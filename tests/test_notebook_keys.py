"""The chapters build no result keys by hand: their tables come from studies, their maps from the store.

A key dict written in a notebook (``cache.get_or_compute(kind, {...}, fn)``) is only as complete as its author made
it: chapter 4's Table 3 key once lacked the model, so a reader rerunning the chapter with ``-p model vgg19`` would
have been served EfficientNet-Lite0's AUCs. Issue #12 moved every chapter to studies, whose content keys are derived
by the library (method and protocol settings, code hashes, model weights, image content, target). This test parses
every code cell of every notebook and fails on any call that takes a hand-built key: ``get_or_compute``,
``cache_key``, ``key_digest``, or the value store's ``load``/``store``/``put``/``contains`` with a key argument.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: store methods whose second argument is a key dict
KEYED = {"get_or_compute", "key_digest", "load", "store", "put", "contains"}


def _hand_keys(path: Path) -> list[str]:
    """'cell i: call' for every call in the notebook's code that takes a hand-built result key."""
    nb = json.loads(path.read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        # IPython magics are not Python
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            keyed = name == "cache_key" or (
                name in KEYED and isinstance(f, ast.Attribute) and len(node.args) + len(node.keywords) >= 2
                and isinstance(node.args[0] if node.args else None, ast.Constant)
                and isinstance(node.args[0].value, str))
            if keyed:
                out.append(f"cell {i}: {(ast.get_source_segment(code, node) or name).splitlines()[0][:80]}")
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_hand_built_result_keys(path):
    bad = _hand_keys(path)
    assert not bad, f"{path.name} builds result keys by hand (use a study): " + "; ".join(bad)


@pytest.mark.parametrize("call", [
    "res = cache.get_or_compute('insdel', {'image': records[0].id}, lambda: 1)",
    "k = cache_key('lor', {'model': clf.key})",
    "v = cache.load('tour_sanity', key)",
    "cache.store('tour_sanity', key, value)",
])
def test_the_check_catches_a_hand_built_key(tmp_path, call):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": ["key = {'image': records[0].id, 'grid': 7}\n", call + "\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match="builds result keys by hand"):
        test_no_hand_built_result_keys(path)


def test_the_check_lets_studies_and_explanations_through(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": [
        "res = sc.study.run(study, client='serial', store=cache, out=False)\n",
        "e = res.explanation(ids[0], 'LEG-TV')\n",
        "e2 = cache.explain(explainer, records[0], x=X[0])\n",
        "d = json.load(fh)\n"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    test_no_hand_built_result_keys(path)
