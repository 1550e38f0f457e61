"""Chapter parameters: read from the parameters cell, checked early (runner and notebook), standard cells tool."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest

from saliency_core.book.parameters import (
    check_notebook_parameters,
    check_parameters,
    infer_rule,
    notebook_defaults,
    validate_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))


def _tool():
    spec = importlib.util.spec_from_file_location("standard_cells", ROOT / "tools" / "standard_cells.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nb(path: Path, params: str, *rest: str) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), p] + [nbformat.v4.new_code_cell(s) for s in rest]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb))
    return path


DEFAULTS = {"model": "efficientnet_lite0", "weights": None, "n_images": 2, "profile": "smoke", "seed": 0,
            "iters": 10, "area": 0.1, "sizes": [7], "flag": True, "data_dir": None, "device": "cpu",
            "methods": {"gradient": {}}, "protocols": ["pixel_flip"]}


def test_notebook_defaults_reads_literals_and_refuses_code(tmp_path):
    nb = _nb(tmp_path / "a.ipynb", "# comment\nn = 3  # three\nsizes = [7, 28]\nw = None\nt: float = 0.5")
    assert notebook_defaults(nb) == {"n": 3, "sizes": [7, 28], "w": None, "t": 0.5}
    bad = _nb(tmp_path / "b.ipynb", "import os\nn = os.cpu_count()")
    with pytest.raises(ValueError, match="line 1 is not a literal assignment"):
        notebook_defaults(bad)
    bad = _nb(tmp_path / "c.ipynb", "n = 2 * 3")
    with pytest.raises(ValueError, match="parameter 'n' .* is not a literal"):
        notebook_defaults(bad)


@pytest.mark.parametrize("default, rule", [
    (True, {"type": "bool"}), (3, {"type": "int", "min": 0}), (-1, {"type": "int"}), (0.5, {"type": "float"}),
    ("a", {"type": "str"}), (None, {"type": "any"}), ({"a": 1}, {"type": "dict"}),
    ([7, 28], {"type": "list", "items": {"type": "int", "min": 1}}),
    ([0.1, 0.2], {"type": "list", "items": {"type": "float"}}), ([1, "a"], {"type": "list"}),
])
def test_infer_rule(default, rule):
    assert infer_rule(default) == rule


@pytest.mark.parametrize("values, match", [
    ({"iter": 5}, r"iter=5 is not a parameter of nb \(did you mean 'iters'\?\); accepted values: model, weights"),
    ({"n_images": -3}, r"n_images=-3 is not valid; accepted values: an int >= 1, or None"),
    ({"n_images": 2.5}, "n_images=2.5 is not valid"),
    ({"n_images": True}, "n_images=True is not valid"),
    ({"iters": "10"}, r"iters='10' is not valid; accepted values: an int >= 0"),
    ({"iters": float("inf")}, "iters=inf is not valid"),
    ({"area": float("nan")}, "area=nan is not valid; accepted values: a finite number"),
    ({"sizes": [7, 0.5]}, r"sizes=\[7, 0.5\] is not valid; accepted values: a list whose items are an int >= 1 "
                          r"\(item 1 is 0.5\)"),
    ({"sizes": 7}, "sizes=7 is not valid; accepted values: a list"),
    ({"flag": 1}, "flag=1 is not valid; accepted values: True or False"),
    ({"profile": "fast"}, "profile='fast' is not valid; accepted values: 'smoke', 'book', 'paper'"),
    ({"model": "vgg"}, "model='vgg' is not valid; accepted values: 'efficientnet_lite0'"),
    ({"weights": "/nonexistent.pth"}, "weights='/nonexistent.pth' is not valid; accepted values: None"),
    ({"data_dir": "/nonexistent"}, "data_dir='/nonexistent' is not valid; accepted values: an existing folder"),
    ({"device": "gpu"}, "device='gpu' is not valid"),
    ({"methods": {"gradiant": {}}}, r"registered methods .*not 'gradiant' \(did you mean 'gradient'\?\)"),
    ({"methods": {"leg": {"n_sample": 3}}}, r"hyper-parameters of 'leg' .*not 'n_sample' \(did you mean 'n_samples'"),
    ({"protocols": ["pixelflip"]}, r"protocols among .*not 'pixelflip' \(did you mean 'pixel_flip'\?\)"),
])
def test_validate_parameters_refuses_with_one_line(values, match):
    with pytest.raises(ValueError, match=match) as info:
        validate_parameters(values, DEFAULTS, notebook="nb")
    assert "\n" not in str(info.value)


def test_validate_parameters_reports_every_problem_and_converts_exactly(tmp_path):
    with pytest.raises(ValueError) as info:
        validate_parameters({"iter": 5, "n_images": -3}, DEFAULTS, notebook="nb")
    assert "iter=5" in str(info.value) and "n_images=-3" in str(info.value) and " | " in str(info.value)
    out = validate_parameters({"iters": 1000.0, "n_images": np.int64(3), "weights": "random", "area": 1},
                              DEFAULTS, notebook="nb")
    assert out == {"iters": 1000, "n_images": 3, "weights": "random", "area": 1}
    assert type(out["iters"]) is int and type(out["n_images"]) is int
    assert validate_parameters({"n_images": None, "data_dir": str(tmp_path)}, DEFAULTS) == {
        "n_images": None, "data_dir": str(tmp_path)}


def test_rules_refine_the_inferred_type():
    rules = {"iters": {"type": "int", "min": 1, "max": 100}, "area": {"type": "float", "gt": 0, "lt": 1},
             "seed": {"type": "int", "min": 0, "none": True}, "sizes": {"type": "list", "min_len": 1}}
    with pytest.raises(ValueError, match=r"iters=1000 is not valid; accepted values: an int >= 1 and <= 100"):
        validate_parameters({"iters": 1000}, DEFAULTS, rules)
    with pytest.raises(ValueError, match=r"area=1.0 is not valid; accepted values: a finite number > 0 and < 1"):
        validate_parameters({"area": 1.0}, DEFAULTS, rules)
    with pytest.raises(ValueError, match=r"sizes=\[\] is not valid"):
        validate_parameters({"sizes": []}, DEFAULTS, rules)
    assert validate_parameters({"seed": None}, DEFAULTS, rules) == {"seed": None}


def test_relative_paths_are_made_absolute_when_found_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "imgs").mkdir()
    monkeypatch.chdir(tmp_path)
    out = validate_parameters({"data_dir": "imgs"}, DEFAULTS, base=tmp_path / "notebooks")
    assert out == {"data_dir": str(tmp_path / "imgs")}


def test_check_parameters_in_a_kernel_namespace_catches_injected_names():
    import os

    ns = {"__name__": "__main__", "_i1": "x", "In": [], "get_ipython": print, "os": os, **DEFAULTS}
    ns.update({"n_images": 3, "iters": 50.0})
    check_parameters(ns, "nb", DEFAULTS)
    assert ns["iters"] == 50 and type(ns["iters"]) is int  # written back converted
    ns["leg_sample"] = 5  # papermill injected a misspelt name
    with pytest.raises(ValueError, match="leg_sample=5 is not a parameter of nb"):
        check_parameters(ns, "nb", DEFAULTS)


@pytest.mark.parametrize("stem", CHAPTERS)
@pytest.mark.parametrize("profile", ["smoke", "book", "paper"])
def test_every_chapter_profile_passes_its_own_checks(stem, profile):
    from saliency_core.book.runner import profile_parameters

    check_notebook_parameters(ROOT, stem, profile_parameters(stem, profile, {}, root=ROOT))


@pytest.mark.parametrize("stem", CHAPTERS)
def test_committed_standard_cells_are_current(stem):
    """Once tools/standard_cells.py has run on the chapters, their cells must follow the parameters cell and rules."""
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    tags = {t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])}
    if not tags & {"standard-install", "standard-parameter-check"}:
        pytest.skip("tools/standard_cells.py has not been run on this notebook yet")
    tool = _tool()
    _, changed = tool.update_notebook(ROOT / "notebooks" / f"{stem}.ipynb", ROOT, tool.pip_spec(ROOT))
    assert not changed, f"run python tools/standard_cells.py: notebooks/{stem}.ipynb is not current"


# ----------------------------------------------------------------------------------------------------------------
# tools/standard_cells.py on copies
# ----------------------------------------------------------------------------------------------------------------
def _copy_book(tmp_path: Path, url: str | None = "https://github.com/example/book") -> Path:
    root = tmp_path / "book"
    root.mkdir()
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copytree(ROOT / "params", root / "params")
    cfg = (ROOT / "_config.yml").read_text()
    if url:
        cfg += f"\nrepository:\n  url: {url}\n  branch: main\n"
    (root / "_config.yml").write_text(cfg)
    return root


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_standard_cells_tool_places_cells_and_is_idempotent(tmp_path):
    tool = _tool()
    root = _copy_book(tmp_path)
    before = {p.name: _cells(p) for p in (root / "notebooks").glob("*.ipynb")}
    assert tool.main(["--root", str(root)]) == 0
    after_first = {p.name: p.read_bytes() for p in (root / "notebooks").glob("*.ipynb")}
    assert tool.main(["--root", str(root), "--check"]) == 0  # nothing left to do
    assert tool.main(["--root", str(root)]) == 0
    assert after_first == {p.name: p.read_bytes() for p in (root / "notebooks").glob("*.ipynb")}  # byte-identical
    for name, old in before.items():
        cells = _cells(root / "notebooks" / name)
        tags = [c["metadata"].get("tags", []) for c in cells]
        ours = [i for i, t in enumerate(tags) if "standard-install" in t or "standard-parameter-check" in t]
        old_other = [c for c in old if not {"standard-install", "standard-parameter-check"}
                     & set(c["metadata"].get("tags", []))]  # a chapter may carry the cells already
        assert [c for i, c in enumerate(cells) if i not in ours] == old_other  # every other cell untouched
        first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
        assert "standard-install" in tags[first_code] and "remove-cell" in tags[first_code]
        src = "".join(cells[first_code]["source"])
        assert 'find_spec("saliency_core") is None' in src
        assert '%pip install -q "saliency-core[interop] @ git+https://github.com/example/book@main"' in src
        p = next((i for i, t in enumerate(tags) if "parameters" in t), None)
        if p is not None:
            assert "standard-parameter-check" in tags[p + 1]
            assert f"'{Path(name).stem}'" in "".join(cells[p + 1]["source"])


def test_standard_cells_tool_updates_a_stale_or_misplaced_check_and_works_without_url(tmp_path):
    tool = _tool()
    root = _copy_book(tmp_path, url=None)
    assert tool.main(["--root", str(root)]) == 0
    path = root / "notebooks" / "03_leg.ipynb"
    nb = json.loads(path.read_text())
    i = next(k for k, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
    nb["cells"][i]["source"] = "".join(nb["cells"][i]["source"]) + "\nnew_knob = 3\n"
    check = nb["cells"].pop(i + 1)
    nb["cells"].append(check)  # misplaced at the end
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    assert tool.main(["--root", str(root), "--check"]) == 1
    assert tool.main(["--root", str(root)]) == 0
    cells = _cells(path)
    assert "standard-parameter-check" in cells[i + 1]["metadata"]["tags"]
    assert "'new_knob': 3" in "".join(cells[i + 1]["source"])
    assert sum("standard-parameter-check" in c["metadata"].get("tags", []) for c in cells) == 1
    install = next(c for c in cells if "standard-install" in c["metadata"].get("tags", []))
    assert "raise ModuleNotFoundError" in "".join(install["source"])


def test_install_cell_is_valid_ipython_and_a_no_op_here():
    from IPython.core.inputtransformer2 import TransformerManager

    src = _tool().install_source("saliency-core @ git+https://github.com/example/book@main")
    code = TransformerManager().transform_cell(src)
    assert "get_ipython().run_line_magic('pip', 'install -q \"saliency-core @ git+https://github.com/example/book" \
           "@main\"')" in code
    ns: dict = {"get_ipython": lambda: pytest.fail("pip must not run where saliency_core is importable")}
    exec(compile(code, "install", "exec"), ns)  # noqa: S102 - the cell itself


def test_processed_chapter_checks_its_parameters_under_papermill(tmp_path):
    """A real chapter processed by the tool, cut after its check cell, run by papermill (one kernel): valid -p values
    pass the check (converted: 1e3 → 1000) and, in the same kernel, a misspelt injected name and a bad value are
    refused by the same cell's code with one line naming both."""
    import papermill as pm

    tool = _tool()
    root = _copy_book(tmp_path)
    assert tool.main(["--root", str(root), str(root / "notebooks" / "03_leg.ipynb")]) == 0
    path = root / "notebooks" / "03_leg.ipynb"
    nb = json.loads(path.read_text())
    k = next(i for i, c in enumerate(nb["cells"]) if "standard-parameter-check" in c["metadata"].get("tags", []))
    check_src = "".join(nb["cells"][k]["source"])
    probe = ("print('leg_samples', repr(leg_samples))\n"
             "leg_sample, n_images = 5, -3  # as papermill would inject them\n"
             "try:\n" + "".join("    " + line + "\n" for line in check_src.splitlines()) +
             "except ValueError as exc:\n    print('REFUSED', exc)\n")
    nb["cells"] = nb["cells"][: k + 1] + [nbformat.v4.new_code_cell(probe)]
    path.write_text(json.dumps(nb))
    out = pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters={"leg_samples": 1e3, "n_images": 3},
                              kernel_name="python3", progress_bar=False, cwd=str(path.parent))
    text = "".join(o.get("text", "") for o in out["cells"][-1]["outputs"])
    assert "leg_samples 1000\n" in text
    assert "REFUSED 03_leg: " in text and "n_images=-3 is not valid" in text
    assert "leg_sample=5 is not a parameter of 03_leg (did you mean 'leg_samples'?)" in text


@pytest.mark.parametrize("stem", CHAPTERS)
def test_papermill_sees_every_declared_parameter(stem, caplog):
    # `papermill --help-notebook` and papermill's own inspection skip a parameter line with two '=' (e.g. one in
    # its comment) with only a log warning; chapter 1's side_lambda_growth was invisible to it
    import papermill

    from saliency_core.book.runner import declared_parameters

    with caplog.at_level("WARNING", logger="papermill"):
        seen = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"))
    missing = sorted(set(declared_parameters(stem, ROOT) or []) - set(seen))
    assert not missing, f"{stem}: papermill cannot read the parameter line(s) of {missing}: {caplog.text.strip()}"
