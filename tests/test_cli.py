"""The ``saliency`` command line: study, explain (.npy / .png), results; one-line errors; Ctrl-C leaves a resumable
study."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from saliency_core import cli
from saliency_core import study as S

FACTORY = textwrap.dedent('''
    import torch
    from torch import nn

    from saliency_core.models import Classifier, Preprocessing


    def tiny(device="cpu"):
        g = torch.Generator().manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                            nn.Linear(64, 5))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        prep = Preprocessing(resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3)
        return Classifier.from_module(net, preprocess=prep, class_names=[f"c{i}" for i in range(5)], name="tiny",
                                      canonical=False, device=device)
''')


@pytest.fixture
def setup(tmp_path, monkeypatch):
    (tmp_path / "_saliency_cli_test_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(tmp_path / "imgs" / f"p{i}.png")
    spec = {"name": "cli", "model": "_saliency_cli_test_models:tiny", "images": {"folder": str(tmp_path / "imgs")},
            "methods": {"gradient": {}, "occlusion": {"window": [3, 8, 8]}},
            "protocols": {"pixel_flip": {}, "del_rise": {"step": 64}}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_study_results_and_resume(setup, capsys):
    out = setup / "out"
    assert cli.main(["study", "tiny.yaml", "--workers", "0", "--store", "st", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "cli: 12 scores, 6 explanations (6 tasks run, 0 already stored)" in text and "pixel_flip" in text
    assert cli.main(["study", "tiny.yaml", "--workers", "0", "--store", "st", "--out", str(out), "--n", "2",
                     "--no-progress"]) == 0
    assert "(0 tasks run, 4 already stored)" in capsys.readouterr().out  # a subset is already there
    assert cli.main(["results", str(out), "--format", "csv", "--out", str(setup / "csv")]) == 0
    text = capsys.readouterr().out
    assert "gradient" in text and "±" in text
    scores = pd.read_csv(setup / "csv" / "scores.csv")
    pd.testing.assert_series_equal(scores["value"], pd.read_parquet(out / "scores.parquet")["value"])
    assert {"curves.csv", "costs.csv"} <= set(os.listdir(setup / "csv"))


def test_ctrl_c_leaves_a_resumable_study(setup, capsys, monkeypatch):
    real = S._execute
    n = []

    def interrupted(payload, state=None):
        if len(n) == 2:
            raise KeyboardInterrupt
        n.append(1)
        return real(payload, state)

    monkeypatch.setattr(S, "_execute", interrupted)
    assert cli.main(["study", "tiny.yaml", "--workers", "0", "--store", "st", "--no-progress"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    monkeypatch.setattr(S, "_execute", real)
    assert cli.main(["study", "tiny.yaml", "--workers", "0", "--store", "st", "--no-progress"]) == 0
    assert "(4 tasks run, 2 already stored)" in capsys.readouterr().out


def test_explain_npy_and_png(setup, capsys):
    img = str(setup / "imgs" / "p0.png")
    model = "_saliency_cli_test_models:tiny"
    assert cli.main(["explain", img, "--method", "occlusion", "--model", model, "--set", "window=[3, 8, 8]",
                     "--target", "2", "--out", "m.npy", "--store", "st"]) == 0
    m = np.load(setup / "m.npy", allow_pickle=False)
    assert m.shape == (32, 32) and m.dtype == np.float32
    assert "target 2 (c2)" in capsys.readouterr().out
    assert cli.main(["explain", img, "--method", "occlusion", "--model", model, "--set", "window=[3, 8, 8]",
                     "--target", "2", "--out", "m.png", "--store", "st"]) == 0
    with Image.open(setup / "m.png") as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert cli.main(["explain", img, "--method", "gradient", "--model", model, "--out", "m.txt"]) == 2
    assert "--out 'm.txt' is not valid; accepted values: a .npy or .png file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["study", "missing.yaml"], "spec='missing.yaml' is not a file"),
    (["explain", "x.png", "--method", "gradiant", "--out", "m.npy"], "method='gradiant' is not valid; accepted"),
    (["explain", "x.png", "--method", "gradient", "--out", "m.npy", "--model", "_saliency_cli_test_models:tiny"],
     "image file 'x.png' is not a readable image"),
    (["results", "nowhere"], "study folder 'nowhere' is not a folder"),
    (["explain", "imgs/p0.png", "--method", "gradient", "--set", "reduce", "--out", "m.npy", "--model",
      "_saliency_cli_test_models:tiny"], "--set 'reduce' is not valid; accepted values: KEY=VALUE"),
])
def test_errors_are_one_line(setup, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith(f"saliency {argv[0]}: error: ")


def test_module_entry_point_help_lists_methods_protocols_models():
    r = subprocess.run([sys.executable, "-m", "saliency_core", "--help"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    for needle in ("study", "explain", "results", "methods: ", "leg_tv", "protocols: ", "skey_black", "models: ",
                   "resnet50"):
        assert needle in r.stdout
