"""Code hashes: docstrings and comments do not count, code does; a method's key follows its own module (and what it
imports) and no other method's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import saliency_core
from saliency_core import codehash


def test_source_hash_ignores_docstrings_comments_and_layout():
    a = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    b = '"""Module doc."""\n\n\ndef f(x):  # a comment\n    """Another doc, longer."""\n\n    return (x + 1)\n'
    c = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert codehash.source_hash(a) == codehash.source_hash(b)
    assert codehash.source_hash(a) != codehash.source_hash(c)
    # a function whose body is only a docstring stays valid code after stripping
    assert codehash.source_hash('def g():\n    """Only a doc."""\n') == codehash.source_hash("def g():\n    pass\n")


def test_imports_closure_and_type_checking():
    imp = codehash.module_imports("saliency_core.methods.baselines")
    assert "saliency_core.explanation" in imp and "saliency_core.methods.registry" in imp
    assert "saliency_core.perturbations" in imp  # a function-level import counts
    assert "saliency_core.perturbations" not in codehash.module_imports("saliency_core.methods.baselines",
                                                                        function_level=False)
    assert "saliency_core.models" not in codehash.module_imports("saliency_core.explanation")  # TYPE_CHECKING only
    clo = codehash.closure("saliency_core.methods.rise")
    assert "saliency_core.checks" in clo and "saliency_core.methods.leg" not in clo
    assert "saliency_core.methods" not in clo  # the parent package's __init__ is not the method's code
    assert codehash.code_hash("saliency_core.methods.rise") != codehash.code_hash("saliency_core.methods.leg")
    assert codehash.object_code_hash(saliency_core.get_explainer) == codehash.code_hash("saliency_core.methods")
    assert len(codehash.library_hash()) == 16


SCRIPT = textwrap.dedent('''
    import json
    import sys
    from pathlib import Path

    import torch
    from torch import nn

    import saliency_core as sc
    from saliency_core import codehash
    from saliency_core.models import Classifier, Preprocessing
    from saliency_core.store import Store

    pkg = Path(sys.argv[1])
    assert Path(sc.__file__).parent == pkg, sc.__file__  # the copy, not the working tree
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    clf = Classifier.from_module(net, preprocess=Preprocessing(32, 32, (0.0,) * 3, (1.0,) * 3),
                                 class_names=["a", "b", "c"], canonical=False)
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    methods = {"gradient": {}, "occlusion": {"window": (3, 8, 8)}, "rise": {"n_masks": 8}, "leg": {"n_samples": 8},
               "igos": {"iterations": 1}}
    pf = sc.get_protocol("pixel_flip")

    def keys(clear=True):
        if clear:
            codehash.clear_cache()
        out = {m: Store.explanation_digest(sc.get_explainer(m, clf, **kw), x, 0) for m, kw in methods.items()}
        out["protocol:pixel_flip"] = pf.code_hash()
        return out

    rise = pkg / "methods" / "rise.py"
    src = rise.read_text()
    res = {"base": keys()}
    rise.write_text(src.replace(\'"""\', \'"""An edited docstring. \', 1) + "\\n# a new comment\\n")
    res["docstring"] = keys()
    rise.write_text(src)
    codehash.clear_cache()
    codehash.freeze()  # what the package does at import time
    rise.write_text(src + "\\n_EDITED = 1\\n")
    res["edited_after_import"] = keys(clear=False)  # this process still runs the old code: old keys
    res["edited"] = keys()
    print(json.dumps(res))
''')


def test_editing_a_method_module_changes_only_that_methods_keys(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(Path(saliency_core.__file__).parent, copy / "saliency_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "script.py").write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(copy / "saliency_core")],
                       env=dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS="1"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    base = res["base"]
    assert res["docstring"] == base  # docstring and comment edits change nothing
    assert res["edited_after_import"] == base
    changed = {k for k in base if res["edited"][k] != base[k]}
    assert changed == {"rise"}  # not gradient/occlusion (baselines.py), leg, igos, nor the protocol
