"""The runner: profile parameters, and a failing notebook fails the run loudly."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------------------------
# parameters are checked before any notebook runs (#17)
# ----------------------------------------------------------------------------------------------------------------
def test_parse_override_reads_numbers_yaml_leaves_as_text():
    assert run._parse_override("n=1e3") == ("n", 1000.0)
    assert run._parse_override("n=-3") == ("n", -3)
    assert run._parse_override("x=inf")[1] == float("inf")
    assert run._parse_override("sizes=[28, 7]") == ("sizes", [28, 7])
    assert run._parse_override("model=vgg16") == ("model", "vgg16")
    assert run._parse_override("w=null") == ("w", None)
    with pytest.raises(SystemExit, match="key=value"):
        run._parse_override("n_images")
    with pytest.raises(SystemExit, match=r"-p 'm=\{a: \[' is not valid"):
        run._parse_override("m={a: [")


def _book(tmp_path, notebooks: dict[str, str]):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: x\n")
    for stem, params in notebooks.items():
        nb = nbformat.v4.new_notebook()
        p = nbformat.v4.new_code_cell(params)
        p.metadata["tags"] = ["parameters"]
        nb.cells = [p, nbformat.v4.new_code_cell("pass")]
        (tmp_path / "notebooks" / f"{stem}.ipynb").write_text(nbformat.writes(nb))
    return tmp_path


@pytest.fixture
def no_execution(monkeypatch):
    ran = []
    monkeypatch.setattr(run, "execute_notebook", lambda stem, params, out, root=None, **kw: ran.append((stem, params))
                        or 0.0)
    return ran


@pytest.mark.parametrize("args, match", [
    (["-p", "leg_sample=5"], r"-p leg_sample=5 is not a parameter of a \(did you mean 'leg_samples'\?\)"),
    (["-p", "n_images=-3"], r"parameters of a: n_images=-3 is not valid; accepted values: an int >= 1, or None"),
    (["-p", "profile=fast"], "profile='fast' is not valid; accepted values: 'smoke', 'book', 'paper'"),
    (["-p", "leg_samples=2.5"], "leg_samples=2.5 is not valid"),
    (["-p", "model=vgg"], "model='vgg' is not valid"),
])
def test_runner_refuses_bad_parameters_before_any_work(tmp_path, no_execution, args, match):
    root = _book(tmp_path, {"a": "model = 'efficientnet_lite0'\nn_images = None\nprofile = 'smoke'\nleg_samples = 10"})
    with pytest.raises(SystemExit, match=match):
        run.main(["--root", str(root), "--execute-only", "--profile", "smoke", "--only", "a", *args])
    assert no_execution == []


def test_runner_rules_from_params_yaml_and_conversions(tmp_path, no_execution):
    root = _book(tmp_path, {"a": "n = 10\nprofile = 'smoke'", "b": "m = 0.5\nprofile = 'smoke'"})
    (root / "params" / "a.yaml").write_text("smoke: {}\nbook: {n: 20}\nrules:\n  n: {type: int, min: 1, max: 100}\n")
    with pytest.raises(SystemExit, match=r"n=1000.0 is not valid; accepted values: an int >= 1 and <= 100"):
        run.main(["--root", str(root), "--execute-only", "--only", "a", "-p", "n=1e3"])
    # an override goes only to the notebooks that declare it; 1e2 reaches the kernel as the int 100
    assert run.main(["--root", str(root), "--execute-only", "--profile", "smoke", "--jobs", "1", "-p", "n=1e2"]) == 0
    assert sorted(no_execution) == [("a", {"profile": "smoke", "n": 100}), ("b", {"profile": "smoke"})]
    # a name no selected notebook declares is refused for all
    with pytest.raises(SystemExit, match=r"-p k=1 is not a parameter of any of a, b; accepted values: m, n, profile"):
        run.main(["--root", str(root), "--execute-only", "--force", "-p", "k=1"])
    # a bad value in a params file is caught as well (before the run, naming the notebook)
    (root / "params" / "b.yaml").write_text("smoke: {}\nbook: {m: fast}\n")
    with pytest.raises(SystemExit, match=r"parameters of b: m='fast' is not valid; accepted values: a finite number"):
        run.main(["--root", str(root), "--execute-only", "--force", "--profile", "book"])


def test_runner_makes_relative_paths_absolute_for_the_kernel(tmp_path, no_execution, monkeypatch):
    root = _book(tmp_path, {"a": "data_dir = None\nprofile = 'smoke'"})
    (tmp_path / "imgs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert run.main(["--root", str(root), "--execute-only", "--profile", "smoke", "-p", "data_dir=imgs"]) == 0
    assert no_execution == [("a", {"profile": "smoke", "data_dir": str(tmp_path / "imgs")})]
    with pytest.raises(SystemExit, match="data_dir='nope' is not valid; accepted values: an existing folder"):
        run.main(["--root", str(root), "--execute-only", "--force", "-p", "data_dir=nope"])


def test_in_place_refresh_runs_like_nbval_on_a_clean_clone(monkeypatch):
    """Committed outputs are computed as `make test` recomputes them: one thread, an empty store."""
    from saliency_core.store import default_root

    for var in ("SALIENCY_STORE", "SALIENCY_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(var, "2" if "THREADS" in var else "/somewhere/warm")
    store = run._clean_clone_conditions()
    assert os.environ["SALIENCY_STORE"] == store and not any(Path(store).iterdir())
    assert os.environ["SALIENCY_THREADS"] == os.environ["OMP_NUM_THREADS"] == "1" == str(run.IN_PLACE_THREADS)
    assert default_root() == Path(store)
    makefile = Path(__file__).resolve().parent.parent / "Makefile"
    assert f"THREADS ?= {run.IN_PLACE_THREADS}" in makefile.read_text()
