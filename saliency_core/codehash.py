"""Hashes of the code that computes a result, so that a stored result is invalidated by any code edit.

The code of a result = the module that defines the method class (or the protocol function) plus every
``saliency_core`` module it imports, transitively: module-level and function-level imports (a lazy import is still
a dependency), but not the imports under ``if TYPE_CHECKING:`` (type-only). A module's hash is the sha256 of its
abstract syntax tree with every docstring removed (``ast.dump`` without line numbers), so editing a comment, a
docstring or the layout changes nothing, and any change of code changes the hash.

Modules are located on ``sys.path`` (package modules by path, nothing imported) and parsed once per process (results
are cached; :func:`clear_cache` forgets them). The package ``__init__`` calls :func:`freeze`, which reads every
package source into memory at import time: a process's hashes describe the code it runs, not a file edited since.

Importing a submodule runs its parent package's ``__init__``, but that file is not part of the submodule's code:
``saliency_core.methods`` imports every method to register it, and a method's key must not change when another method
is edited.

Like the ground floor, this module imports nothing from the package.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "PACKAGE",
    "source_hash",
    "module_hash",
    "module_imports",
    "closure",
    "code_hash",
    "object_code_hash",
    "library_hash",
    "file_code_hash",
    "clear_cache",
    "freeze",
]

PACKAGE = "saliency_core"


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring (a leading string-constant statement) of the module, every class and function."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(source: str) -> str:
    """sha256 of the docstring-free AST of ``source`` (comments, docstrings and layout do not count)."""
    return _tree_hash(ast.parse(source))


def _tree_hash(tree: ast.AST) -> str:
    tree = _strip_docstrings(tree)
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


#: sources read by :func:`freeze` (path → text): hashes describe the code this process imported
_SOURCES: dict[Path, str] = {}


def freeze() -> int:
    """Read every package source now (the package ``__init__`` calls this at import): the hashes computed later in
    this process describe the files as they were when the package was imported, i.e. the code that runs, even if a
    file is edited afterwards. Returns the number of files read."""
    for p in _package_dir().rglob("*.py"):
        _SOURCES.setdefault(p, p.read_text(encoding="utf-8"))
    return len(_SOURCES)


@functools.cache
def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # a top-level name: found on sys.path, nothing imported
    if spec is None or not spec.origin:
        raise ValueError(f"package {PACKAGE!r} is not on sys.path")
    return Path(spec.origin).parent


@functools.cache
def _module_file(name: str) -> tuple[Path, bool] | None:
    """(source file, is_package) of module ``name`` as ``sys.path`` resolves it; ``None`` when there is none.

    Package modules are located by path (nothing is imported); other modules with :func:`importlib.util.find_spec`.
    """
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        base = _package_dir().parent.joinpath(*name.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py"), False
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin), bool(spec.submodule_search_locations)


def _source_file(name: str) -> tuple[Path, bool]:
    found = _module_file(name)
    if found is None:
        raise ValueError(f"module={name!r} is not valid; accepted values: a pure-Python module on sys.path")
    return found


@functools.cache
def _parsed(name: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """(hash, all package imports, module-level package imports) of module ``name``."""
    path, is_pkg = _source_file(name)
    source = _SOURCES.get(path)
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    pkg = name if is_pkg else name.rpartition(".")[0]
    all_imports: set[str] = set()
    top_imports: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                visit(child, top)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found = _resolve(node, pkg)
            all_imports.update(found)
            if top:
                top_imports.update(found)
            return
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    digest = _tree_hash(tree)
    all_imports.discard(name)
    top_imports.discard(name)
    return digest, frozenset(all_imports), frozenset(top_imports)


def _is_type_checking(test: ast.AST) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(node: ast.Import | ast.ImportFrom, pkg: str) -> set[str]:
    """Package modules named by one import statement (``from . import x`` names submodule x when it exists)."""
    out: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                out.add(alias.name)
        return out
    if node.level:
        base = pkg.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
        return out
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.add(sub if alias.name != "*" and _module_file(sub) is not None else target)
    return out


def module_hash(name: str) -> str:
    """Docstring-free AST hash of one module (not its imports)."""
    return _parsed(name)[0]


def module_imports(name: str, function_level: bool = True) -> frozenset[str]:
    """The package modules ``name`` imports (``function_level=False``: module-level imports only)."""
    p = _parsed(name)
    return p[1] if function_level else p[2]


@functools.cache
def _closure(names: frozenset[str]) -> frozenset[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(module_imports(m) - seen)
    return frozenset(seen)


def closure(names: str | Iterable[str]) -> list[str]:
    """Sorted modules ``names`` import transitively (the names included)."""
    names = frozenset([names] if isinstance(names, str) else names)
    return sorted(_closure(names))


@functools.cache
def _code_hash(names: frozenset[str]) -> str:
    h = hashlib.sha256()
    for m in sorted(_closure(names)):
        h.update(f"{m}={module_hash(m)}\n".encode())
    return h.hexdigest()[:16]


def code_hash(*names: str) -> str:
    """16 hex digits over the modules ``names`` and everything they import from the package (see module doc)."""
    if not names:
        raise ValueError("code_hash() needs at least one module name")
    return _code_hash(frozenset(names))


def object_code_hash(obj: object) -> str:
    """:func:`code_hash` of the module that defines ``obj`` (a class, a function, or an instance's class)."""
    target = obj if isinstance(obj, type) or inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
    return code_hash(target.__module__)


@functools.cache
def library_hash() -> str:
    """16 hex digits over every module of the package (what a result of unknown provenance may depend on)."""
    root = _package_dir()
    names = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    h = hashlib.sha256()
    for m in sorted(names):
        h.update(f"{m}={module_hash(m)}\n".encode())
    return h.hexdigest()[:16]


def file_code_hash(module_name: str) -> str:
    """Docstring-free AST hash of any importable pure-Python module (e.g. a user's model factory), 16 hex digits."""
    return module_hash(module_name)[:16]


def clear_cache() -> None:
    """Forget every parsed module and the sources read by :func:`freeze` (hashes follow the files again)."""
    _SOURCES.clear()
    for f in (_package_dir, _module_file, _parsed, _closure, _code_hash, library_hash):
        f.cache_clear()
