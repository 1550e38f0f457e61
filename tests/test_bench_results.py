"""benchmarks/_results.py: valid JSON, atomic replacement, provenance fields (no model, fast)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "_results.py"


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("bench_results", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_record_writes_valid_json(results, tmp_path):
    metrics = {"overhead_ratio": np.float64(1.2), "n": np.int64(3), "missing": float("nan"), "t": torch.tensor(0.5)}
    rows = [{"method": "a", "seconds": 1.0, "shape": (2, 3)}, {"method": "b", "seconds": float("inf")}]
    path = results.record("demo", metrics, ["benchmarks/demo.py", "--x", "1"], {"note": "hi"}, rows=rows,
                          out_dir=tmp_path)
    assert path == tmp_path / "demo.json"
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert data["benchmark"] == "demo"
    assert data["metrics"] == {"overhead_ratio": 1.2, "n": 3, "missing": None, "t": 0.5}
    assert data["rows"] == [{"method": "a", "seconds": 1.0, "shape": [2, 3]}, {"method": "b", "seconds": None}]
    assert data["extra"] == {"note": "hi"}
    prov = data["provenance"]
    assert prov["argv"] == ["--x", "1"] and prov["command"].endswith("demo.py --x 1")
    assert len(prov["loadavg_start"]) == 3 and len(prov["loadavg_end"]) == 3
    assert all(isinstance(v, float) and math.isfinite(v) for v in prov["loadavg_end"])
    assert prov["torch"]["version"] == torch.__version__ and prov["torch"]["threads"] == torch.get_num_threads()
    assert set(prov["git"]) == {"commit", "dirty"}
    assert prov["date_utc"].endswith("+00:00") and prov["cpu"]["cores"] >= 1
    cpu = prov["cpu"]
    assert {"model", "vendor", "family", "model_number", "flags", "torch_capability", "label"} <= set(cpu)
    assert cpu["label"] == results.cpu_label(cpu) and isinstance(cpu["flags"], list)
    # the same record kept per CPU; no temporary file left behind
    copy = f"demo@{results.cpu_slug(cpu)}.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["demo.json", copy])
    assert (tmp_path / copy).read_text() == path.read_text()


def test_record_replaces_atomically(results, tmp_path, monkeypatch):
    results.record("demo", {"v": 1}, ["x.py"], out_dir=tmp_path)
    before = (tmp_path / "demo.json").read_text()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        results.record("demo", {"v": 2}, ["x.py"], out_dir=tmp_path)
    assert (tmp_path / "demo.json").read_text() == before  # the old file is intact
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[0] == "demo.json" and names[1].startswith("demo@")  # no temporary file left
    monkeypatch.undo()
    results.record("demo", {"v": 2}, ["x.py"], out_dir=tmp_path)
    assert json.loads((tmp_path / "demo.json").read_text())["metrics"] == {"v": 2}


def test_record_env_folder_and_bad_arguments(results, tmp_path, monkeypatch):
    monkeypatch.setenv("SALIENCY_BENCH_RESULTS", str(tmp_path / "res"))
    path = results.record("env_demo", {"v": 1}, ["x.py"])
    assert path.parent == tmp_path / "res" and path.is_file()
    with pytest.raises(ValueError, match="name="):
        results.record("../escape", {"v": 1}, ["x.py"], out_dir=tmp_path)
    with pytest.raises(TypeError, match="metrics"):
        results.record("demo", [1, 2], ["x.py"], out_dir=tmp_path)


def test_cpu_label_and_slug(results):
    amd = {"model": "AMD EPYC", "family": "25", "model_number": "17"}
    assert results.cpu_label(amd) == "AMD EPYC (family 25, model 17)"
    assert results.cpu_slug(amd) == "amd-epyc-family-25-model-17"
    # records written before family/model were recorded: the model name alone
    assert results.cpu_slug({"model": "Intel(R) Xeon(R) Processor", "cores": 2}) == "intel-r-xeon-r-processor"
    assert results.cpu_label(None) == "unknown" and results.cpu_slug({"model": None}) == "unknown"
