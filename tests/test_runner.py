"""The runner: profile parameters, and a failing notebook fails the run loudly."""

from __future__ import annotations

import json

import nbformat
import pytest

from saliency_core.book import runner as run


def _nb(path, source):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(nbformat.writes(nb))


def test_profile_parameters(tmp_path):
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "nb.yaml").write_text("smoke: {a: 1}\nbook: {a: 2, b: x}\n")
    assert run.profile_parameters("nb", "book", {"b": "y"}, root=tmp_path) == {"a": 2, "b": "y", "profile": "book"}
    with pytest.raises(SystemExit, match="accepted values"):
        run.profile_parameters("nb", "fast", root=tmp_path)
    (tmp_path / "params" / "nb.yaml").write_text("smok: {a: 1}\n")
    with pytest.raises(SystemExit, match="unknown profile keys"):
        run.profile_parameters("nb", "book", root=tmp_path)


def test_failing_notebook_raises_with_cell_error(tmp_path):
    (tmp_path / "notebooks").mkdir()
    _nb(tmp_path / "notebooks" / "bad.ipynb", "raise RuntimeError('boom in cell 2')")
    with pytest.raises(Exception, match="boom in cell 2"):
        run.execute_notebook("bad", {"x": 2}, tmp_path / "out" / "bad.ipynb", root=tmp_path)
    assert not (tmp_path / "out" / "bad.ipynb").exists()


def test_good_notebook_tags_injected_parameters(tmp_path):
    (tmp_path / "notebooks").mkdir()
    _nb(tmp_path / "notebooks" / "ok.ipynb", "y = x * 2\nprint(y)")
    out = tmp_path / "out" / "ok.ipynb"
    run.execute_notebook("ok", {"x": 21}, out, root=tmp_path)
    nb = json.loads(out.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "hide-cell" in injected[0]["metadata"]["tags"]
    text = "".join("".join(o.get("text", "")) for o in nb["cells"][-1]["outputs"])
    assert "42" in text


def test_cli_rejects_unknown_notebook():
    with pytest.raises(SystemExit, match="accepted values"):
        run.main(["--only", "99_nope", "--execute-only"])


def test_schedule_runs_leaderboard_last_with_all_cores():
    from saliency_core.book.runner import schedule

    todo = ["00_tour", "01_a", "02_b", "05_leaderboard"]
    waves = schedule(todo, jobs=2, cores=2, last_seconds={"01_a": 10.0, "02_b": 50.0})
    assert waves[0] == (["02_b", "01_a", "00_tour"], 2, 1)  # longest first, one thread per kernel
    assert waves[1] == (["05_leaderboard"], 1, 2)
    assert schedule(["01_a"], jobs=4, cores=8) == [(["01_a"], 4, 8)]  # one notebook: every core
    assert schedule(["05_leaderboard"], jobs=2, cores=2) == [(["05_leaderboard"], 1, 2)]


def test_fingerprint_tracks_notebook_params_and_library(tmp_path):
    import json

    from saliency_core.book.runner import _finish_executed, fingerprint, up_to_date

    root = tmp_path
    (root / "notebooks").mkdir()
    (root / "saliency_core").mkdir()
    nb = root / "notebooks" / "01_x.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    lib = root / "saliency_core" / "m.py"
    lib.write_text("A = 1\n")
    fp = fingerprint("01_x", {"n": 1}, root)
    assert fp == fingerprint("01_x", {"n": 1}, root)
    assert fp != fingerprint("01_x", {"n": 2}, root)
    out = root / "_build" / "01_x.ipynb"
    out.parent.mkdir()
    assert not up_to_date("01_x", {"n": 1}, out, root)  # no executed copy yet
    out.write_text(nb.read_text())
    _finish_executed(out, fp, 1.0)
    assert up_to_date("01_x", {"n": 1}, out, root)
    assert not up_to_date("01_x", {"n": 2}, out, root)
    lib.write_text("A = 2\n")  # a library change makes the executed copy stale
    assert not up_to_date("01_x", {"n": 1}, out, root)
