"""Hand-built result keys in the chapters must name everything the value depends on.

Some chapter tables still go through ``ResultCache.get_or_compute(kind, key, fn)`` with a key dict written in the
notebook (issue #12 moves them to studies). The store adds the library's code hash, but the model, the image and the
target are only in the key if the notebook puts them there: a key without the model serves a result computed on
EfficientNet-Lite0 to a reader who reruns the chapter with ``-p model vgg19`` (chapter 4's Table 3 did). This test
parses every code cell and checks each such call: the key expression must mention ``clf.key`` (the model's identity)
and an image id, unless the line carries the marker ``# model-free`` (a synthetic experiment without a model).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _calls(path: Path):
    """(cell index, call source, cell source) of every ``*.get_or_compute(...)`` call in the notebook's code."""
    nb = json.loads(path.read_text())
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
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get_or_compute"):
                yield i, ast.get_source_segment(code, node) or "", code, node


def _key_source(code: str, call: ast.Call) -> str:
    """The key argument's source; a bare name is resolved to the dict assigned to it in the same cell."""
    key = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "key"), None)
    if key is None:
        return ""
    if isinstance(key, ast.Name):
        tree = ast.parse(code)
        found = [ast.get_source_segment(code, n.value) or "" for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == key.id for t in n.targets)]
        return "\n".join(found)
    return ast.get_source_segment(code, key) or ""


def test_the_chapters_have_hand_built_keys_to_check():
    # if this fails, every chapter asks studies for its results and this file can go (issue #12)
    assert sum(1 for nb in NOTEBOOKS for _ in _calls(nb)) > 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_hand_built_keys_name_the_model_and_the_image(path):
    bad = []
    for i, call_src, code, node in _calls(path):
        line = code.splitlines()[node.lineno - 1]
        if "# model-free" in line:
            continue
        key = _key_source(code, node)
        missing = [what for what, token in (("the model (clf.key)", "clf.key"), ("the image (records[...].id)", ".id"))
                   if token not in key]
        if missing:
            bad.append(f"cell {i}: {call_src.splitlines()[0].strip()[:80]} — key lacks {', '.join(missing)}")
    assert not bad, f"{path.name}: " + "; ".join(bad)


def test_the_check_catches_a_key_without_the_model(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": [
        "key = {'image': records[0].id, 'grid': 7}\n",
        "res = cache.get_or_compute('insdel', key, lambda: 1)\n"]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(AssertionError, match="lacks the model"):
        test_hand_built_keys_name_the_model_and_the_image(path)
