"""The package people install: a wheel built from the sources alone (no Makefile, no repository on sys.path)
holds every subpackage, declares the console scripts and the ``interop`` extra, and imports from a folder outside
the repository.

The wheel is built from a copy of ``pyproject.toml``, ``README.md`` and ``saliency_core/`` in a temporary folder
(``pip wheel --no-deps --no-build-isolation``: no network, nothing written into the working tree), unpacked into a
temporary site folder and imported by a fresh interpreter whose working directory and ``PYTHONPATH`` are the
temporary folders only.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("setuptools")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "saliency_core", src / "saliency_core",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("saliency_core-*.whl")
    return whl


def _metadata(whl: Path) -> tuple[list[str], email.message.Message, str]:
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        eps = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        return names, email.message_from_string(z.read(meta).decode()), z.read(eps).decode()


def test_wheel_holds_every_module_of_the_source_tree(wheel):
    names, _, _ = _metadata(wheel)
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "saliency_core").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sources <= set(names), sorted(sources - set(names))
    assert "saliency_core/interop/captum.py" in names and "saliency_core/book/runner.py" in names
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "tools/"))]


def test_wheel_declares_scripts_and_extras(wheel):
    _, meta, eps = _metadata(wheel)
    assert "saliency-book = saliency_core.book.runner:main" in eps
    if (ROOT / "saliency_core" / "cli.py").is_file():  # the `saliency` command (issue "Studies at scale")
        assert "saliency = saliency_core.cli:main" in eps
    extras = meta.get_all("Provides-Extra")
    assert {"book", "test", "interop"} <= set(extras)
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("quantus==0.6.0") and 'extra == "interop"' in r for r in requires), requires
    assert any(r.startswith("captum") and "extra" not in r for r in requires)


def test_installed_wheel_imports_outside_the_repository(wheel, tmp_path):
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel installs by unpacking (what pip does, minus scripts)
        z.extractall(target)
    code = (
        "import json, sys, saliency_core, saliency_core.interop, saliency_core.book.runner as runner\n"
        "from saliency_core.interop.captum import ExtremalPerturbation\n"
        "print(json.dumps({'file': saliency_core.__file__, 'path': sys.path, 'version': saliency_core.__version__,"
        " 'methods': len(saliency_core.available_explainers()), 'main': callable(runner.main)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SALIENCY_ROOT")}
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(target.resolve()), out["file"]
    assert not any(p and Path(p).resolve() == ROOT for p in out["path"])
    assert out["methods"] >= 20 and out["main"]
    from saliency_core import __version__

    assert out["version"] == __version__
