"""The house rules, read off the source: no import circle, no upward import, methods and metrics apart.

Every ``import`` statement in ``saliency_core`` (module level and inside functions: a lazy import is still a
dependency) is resolved to a module of the package. The resulting graph must be acyclic, must respect the
layer order below (a module imports only modules of its own or a lower layer), and the ground floor
(``checks``, ``files``, ``_version``) imports nothing from the package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "saliency_core"

#: lower number = lower floor; a module may import modules of its own floor or below
LAYERS = {
    "saliency_core._version": 0, "saliency_core.checks": 0, "saliency_core.files": 0,
    "saliency_core.runtime": 1, "saliency_core.perturbations": 1, "saliency_core.kernels": 1, "saliency_core.models": 1,
    "saliency_core.data": 1, "saliency_core.explanation": 1, "saliency_core.plotting": 1,
    "saliency_core.codehash": 1,
    "saliency_core.methods": 2, "saliency_core.metrics": 2,
    "saliency_core.store": 3, "saliency_core.cache": 3, "saliency_core.protocols": 3,
    "saliency_core.stats": 3,
    "saliency_core.study": 4, "saliency_core.leaderboard": 4, "saliency_core.interop": 4,
    "saliency_core.cli": 5, "saliency_core.book": 5, "saliency_core.run": 5, "saliency_core.__main__": 5,
    "saliency_core": 6,
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(mod: str) -> int:
    best = None
    for prefix, lv in LAYERS.items():
        if mod == prefix or mod.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, lv)
    if best is None:
        raise AssertionError(f"{mod} has no layer in tests/test_architecture.py::LAYERS: add it")
    return best[1]


def imports_of(path: Path) -> set[str]:
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []  # type-only imports are not dependencies
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("saliency_core")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("saliency_core"):
                continue
            for a in node.names:  # "from . import report" imports a submodule
                sub = f"{target}.{a.name}"
                out.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else target)
    out.discard(mod)
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PKG.rglob("*.py"))}


def test_no_import_circle():
    g = graph()
    # a package __init__ re-exporting its own submodules is the package, not a circle
    edges = {m: {d for d in deps if not (m.startswith(d + ".") and d in g)} for m, deps in g.items()}
    edges = {m: {d for d in deps if d in edges} for m, deps in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_no_upward_import():
    bad = []
    for m, deps in graph().items():
        for d in deps:
            if m.startswith(d + ".") and d == "saliency_core":
                bad.append(f"{m} imports the package root")
            elif layer(d) > layer(m):
                bad.append(f"{m} (floor {layer(m)}) imports {d} (floor {layer(d)})")
    assert not bad, "\n".join(sorted(bad))


def test_methods_and_metrics_never_import_each_other():
    bad = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
           if (m.startswith("saliency_core.methods") and d.startswith("saliency_core.metrics"))
           or (m.startswith("saliency_core.metrics") and d.startswith("saliency_core.methods"))]
    assert not bad, bad


def test_ground_floor_imports_nothing_from_the_package():
    g = graph()
    for m in ("saliency_core.checks", "saliency_core.files", "saliency_core._version"):
        assert g[m] == set(), (m, g[m])


def test_package_imports_in_a_fresh_interpreter():
    """Importing any submodule runs the package ``__init__`` first; in a fresh interpreter that must work."""
    code = "import saliency_core.checks, saliency_core; saliency_core.get_explainer"
    r = subprocess.run([sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
