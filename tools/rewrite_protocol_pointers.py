"""Rewrite pointers to the developer reference ``protocols.md`` into pointers to the book's appendix.

The reference is not part of the repository; the book's appendix "Algorithms and settings" (``book/algorithms.md``)
keeps its section numbers, with one MyST target per section: ``(appendix-4-5-2)=`` before the heading of §4.5.2.
This script turns, in ``.py`` files (comments, docstrings, strings), ``.md`` pages and ``.ipynb`` notebooks (cell
sources and outputs),

* ``protocols.md §4.5.2``, ``protocols.md (§4.5.2)``, ``protocols.md, §4.2-4.3, §4.6`` → ``appendix §4.5.2`` …
* ``protocols.md's`` → ``the appendix's``; any other ``protocols.md`` → ``the appendix`` (capitalised at the start
  of a sentence).

In Markdown (``.md`` pages and notebook markdown cells) each section number becomes a MyST cross-reference,
``{ref}`appendix §4.5.2 <appendix-4-5-2>```; elsewhere the text stays plain. Running it twice changes nothing.
Notebooks are rewritten string by string in the JSON text, so every byte outside the changed strings is kept.

Usage::

    python tools/rewrite_protocol_pointers.py [--root .] [--dry-run] [PATH ...]

PATH defaults to ``saliency_core notebooks book benchmarks tests`` (files listed in ``SKIP`` are left alone: they
mention the file name on purpose). ``--dry-run`` lists every change (file, old → new) and writes nothing. Section
numbers without a target in ``book/algorithms.md`` are reported as warnings. Exit status 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_PATHS = ("saliency_core", "notebooks", "book", "benchmarks", "tests")
#: files that mention protocols.md on purpose (test data of the book checker, this tool and its test)
SKIP = ("tests/test_check_book.py", "tests/test_appendix.py", "tools/rewrite_protocol_pointers.py")
SUFFIXES = (".py", ".md", ".ipynb")

_NAME = r"`?(?:[\w.~-]*/)*protocols\.md`?"
_NUM = r"\d+(?:\.\d+)*"
_SEC = rf"§\s*{_NUM}(?:\s*[-–]\s*§?\s*{_NUM})?"
_SECLIST = rf"{_SEC}(?:\s*(?:,|and)\s*{_SEC})*"
# the order matters: the parenthesised and the plain section forms first, then the possessive, then the bare name
_PAREN = re.compile(rf"{_NAME}\s*\(\s*(?P<secs>{_SECLIST})(?P<rest>[^()]*)\)")
_PLAIN = re.compile(rf"{_NAME},?\s*(?P<secs>{_SECLIST})")
_POSSESSIVE = re.compile(rf"{_NAME}'s\b")
_BARE = re.compile(_NAME)
#: sentences of the tree that name the file without a section: (pattern, section, replacement with {} = pointer)
PHRASES = (
    (re.compile(rf"{_NAME} is silent on this method"), "§1.5", "{} describes this method"),
    (re.compile(rf"{_NAME} marks the tables as not"), "§4.4", "{} marks the tables as not"),
    (re.compile(rf"{_NAME}'s measurement of the"), "§4.5.2", "the measurement in {} of the"),
)
_TOKEN = re.compile(rf"§?\s*(?P<num>{_NUM})|(?P<sep>\s*(?:[-–]|,|and)\s*)")
_TARGET = re.compile(r"^\((appendix-[\w-]+)\)=\s*$", re.M)
_BARE_WORDS = re.compile(r"\b[Tt]he appendix(?:'s)?\b(?!\s*§)")


def label(num: str) -> str:
    """``"4.5.2"`` → ``"appendix-4-5-2"``, the MyST target of that section."""
    return "appendix-" + num.replace(".", "-")


def _numbers(secs: str) -> list[str]:
    return re.findall(_NUM, secs)


def render(secs: str, link: bool) -> str:
    """The replacement of a section list such as ``§4.2-4.3, §4.6``."""
    if not link:
        return "appendix " + re.sub(r"§\s+", "§", secs.strip())
    out, first = [], True
    pos = 0
    secs = secs.strip()
    while pos < len(secs):
        m = _TOKEN.match(secs, pos)
        if m is None:  # cannot happen for text matched by _SECLIST; keep the rest verbatim
            out.append(secs[pos:])
            break
        if m.group("num"):
            num = m.group("num")
            shown = ("appendix §" if first else ("§" if m.group(0).lstrip().startswith("§") else "")) + num
            out.append(f"{{ref}}`{shown} <{label(num)}>`")
            first = False
        else:
            sep = m.group("sep").strip()
            out.append({"-": "–", "–": "–"}.get(sep, f"{sep} " if sep == "," else f" {sep} "))
        pos = m.end()
    return "".join(out)


def _sentence_start(prefix: str) -> bool:
    """True when the text before a match ends a sentence (or is empty, or only comment/list markers on the line)."""
    line_start = prefix.rfind("\n") + 1
    current = prefix[line_start:]
    if current.strip(" \t#:*->") == "":
        before = prefix[:line_start].rstrip()
    else:
        before = current.rstrip()
    before = before.rstrip()
    return before == "" or before.endswith((".", "!", "?", '"""', "'''"))


def _capitalised(m: re.Match, replacement: str) -> str:
    """``replacement`` with its first "appendix"/"the" capitalised when the match starts a sentence."""
    if not _sentence_start(m.string[: m.start()]):
        return replacement
    return re.sub(r"\b(appendix|the)\b", lambda w: w.group(1).capitalize(), replacement, count=1)


def rewrite_text(text: str, link: bool = False) -> str:
    """``text`` with every protocols.md pointer rewritten (see the module docstring)."""
    for pattern, secs, template in PHRASES:
        text = pattern.sub(lambda m, s=secs, t=template: _capitalised(m, t.format(render(s, link))), text)
    text = _PAREN.sub(lambda m: _capitalised(m, render(m.group("secs"), link) + m.group("rest")), text)
    text = _PLAIN.sub(lambda m: _capitalised(m, render(m.group("secs"), link)), text)
    text = _POSSESSIVE.sub(lambda m: _capitalised(m, "the appendix's"), text)
    return _BARE.sub(lambda m: _capitalised(m, "the appendix"), text)


def referenced_numbers(text: str) -> list[str]:
    """Section numbers that ``text`` points to as ``appendix §N.M`` (plain) or ``<appendix-N-M>`` (MyST ref)."""
    nums = []
    for m in re.finditer(rf"appendix\s+(?P<secs>{_SECLIST})", text):
        for a, b in re.findall(rf"({_NUM})(?:\s*[-–]\s*§?\s*({_NUM}))?", m.group("secs")):
            nums.append(a)
            if b:
                nums.append(b)
    nums += [m.group(1).replace("-", ".") for m in re.finditer(r"[<(#]appendix-(\d+(?:-\d+)*)[>)\s]", text)]
    return nums


# ---------------------------------------------------------------------------------------------------------------
# notebooks: rewrite string by string in the JSON text
# ---------------------------------------------------------------------------------------------------------------
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _walk(obj, path=()) -> Iterator[tuple[tuple, str]]:
    """Every string of a parsed JSON document (keys included) in document order, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + ("<key>",), k
            yield from _walk(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, path + (i,))
    elif isinstance(obj, str):
        yield path, obj


def _rewrite_lines(lines, link: bool):
    """A notebook text field (a string or a list of lines) rewritten as one text, split back into its lines."""
    if isinstance(lines, str):
        return rewrite_text(lines, link)
    joined = "".join(lines)
    new = rewrite_text(joined, link)
    if new == joined:
        return lines
    out = new.splitlines(keepends=True)
    # a rewrite never adds or removes a newline, so the line count is unchanged
    return out if len(out) == len(lines) else [new]


def _rewrite_outputs(obj):
    if isinstance(obj, dict):
        return {k: (_rewrite_lines(v, False) if k in ("text", "text/plain", "text/html", "text/markdown", "text/latex")
                    and isinstance(v, (str, list)) else _rewrite_outputs(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rewrite_outputs(v) for v in obj]
    return obj


def rewrite_notebook(raw: str) -> str:
    """The notebook JSON text with its cells' sources and outputs rewritten; all other bytes unchanged."""
    nb = json.loads(raw)
    new = json.loads(raw)
    for cell in new.get("cells", []):
        md = cell.get("cell_type") == "markdown"
        cell["source"] = _rewrite_lines(cell.get("source", ""), link=md)
        if "outputs" in cell:
            cell["outputs"] = _rewrite_outputs(cell["outputs"])
    old_strings = list(_walk(nb))
    new_strings = list(_walk(new))
    if [p for p, _ in old_strings] != [p for p, _ in new_strings]:  # a field was re-split: re-dump as nbformat does
        return json.dumps(new, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
    literals = list(_JSON_STRING.finditer(raw))
    if len(literals) != len(old_strings):
        raise ValueError("could not align the notebook's JSON strings; not rewritten")
    out, pos = [], 0
    for lit, (_, old), (_, value) in zip(literals, old_strings, new_strings):
        if value != old:
            out.append(raw[pos : lit.start()])
            out.append(json.dumps(value, ensure_ascii=False))
            pos = lit.end()
    out.append(raw[pos:])
    result = "".join(out)
    if json.loads(result) != new:
        raise ValueError("rewritten notebook does not parse back to the rewritten content; not rewritten")
    return result


# ---------------------------------------------------------------------------------------------------------------
def read(path: Path) -> str:
    """The file's text, line endings untouched (no universal-newline translation)."""
    return path.read_bytes().decode("utf-8")


def rewrite_content(raw: str, suffix: str) -> str:
    """Rewritten content of a file with suffix ``.py``, ``.md`` or ``.ipynb``."""
    if "protocols.md" not in raw:
        return raw
    if suffix == ".ipynb":
        return rewrite_notebook(raw)
    return rewrite_text(raw, link=suffix == ".md")


def _files(root: Path, paths: list[str]) -> Iterator[Path]:
    for p in paths:
        full = (root / p).resolve()
        cands = [full] if full.is_file() else sorted(full.rglob("*")) if full.is_dir() else []
        for f in cands:
            if not f.is_file() or f.suffix not in SUFFIXES or ".ipynb_checkpoints" in f.parts:
                continue
            rel = f.relative_to(root.resolve()).as_posix() if f.is_relative_to(root.resolve()) else str(f)
            if rel in SKIP:
                continue
            yield f


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.splitlines(), new.splitlines()
    if len(a) != len(b):
        return [(old, new)]
    return [(x, y) for x, y in zip(a, b) if x != y]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS))
    ap.add_argument("--root", default=".", help="repository root (default: the current directory)")
    ap.add_argument("--dry-run", action="store_true", help="list the changes, write nothing")
    args = ap.parse_args(argv)
    root = Path(args.root)
    appendix = root / "book" / "algorithms.md"
    targets = set(_TARGET.findall(appendix.read_text(encoding="utf-8"))) if appendix.is_file() else None
    n_files = n_changes = 0
    for f in _files(root, args.paths):
        old = read(f)
        try:
            new = rewrite_content(old, f.suffix)
        except ValueError as exc:
            print(f"SKIP {f}: {exc}", file=sys.stderr)
            continue
        if new == old:
            continue
        changes = _changed_lines(old, new)
        n_files += 1
        n_changes += len(changes)
        rel = f.relative_to(root.resolve()) if f.is_relative_to(root.resolve()) else f
        for a, b in changes:
            shown_a, shown_b = (a.strip()[:200], b.strip()[:200])
            review = "  (review: the file is named without a section)" if _BARE_WORDS.search(b) else ""
            print(f"{rel}:{review}\n  - {shown_a}\n  + {shown_b}")
        if targets is not None:
            for num in sorted(set(referenced_numbers(new)) - set(referenced_numbers(old))):
                if label(num) not in targets:
                    print(f"WARNING {rel}: §{num} has no target ({label(num)}) in book/algorithms.md")
        if not args.dry_run:
            f.write_bytes(new.encode("utf-8"))
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb} {n_changes} line(s) in {n_files} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
