"""Front matter generated at build time from run outputs: the reproduction map, the claims summary, the intro figure.

:func:`saliency_core.run.build_book` copies ``book/`` and the executed notebooks into a staging folder
(``_build/src``) and calls :func:`write_pages` on that copy. Each generated block replaces one marker line in a
hand-written page, so the prose stays in ``book/*.md`` and every number or verdict on those pages comes from files
that a run of the code wrote:

=========================  =====================================  ===================================================
page                       marker                                 source
=========================  =====================================  ===================================================
``book/reproduce.md``      ``<!-- generated:reproduction-map -->``  ``_build/timings-<profile>.json`` (CPU) and
                                                                  ``_build/timings-<profile>-gpu.json`` (GPU), the
                                                                  executed notebooks' figure/table headings
``book/claims.md``         ``<!-- generated:claims -->``          ``_build/results/<profile>/*.claims.json``
                                                                  (:func:`saliency_core.report.load_claims`)
``book/intro.md``          ``<!-- generated:intro-figure -->``    the first image of the notebook cell tagged
                                                                  ``intro-figure`` (else the tour's first image)
=========================  =====================================  ===================================================

A missing run file never produces a made-up value: a notebook without a timing says "not run", a missing GPU
timing file says "not measured (no GPU here)", and a profile without claims files says that the chapters have not
been run under it. A page without its marker is an error (the generated block would otherwise be lost silently).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
from collections import Counter
from pathlib import Path

import yaml

from ..files import atomic_write_text
from . import repo_root, report

__all__ = ["MARKERS", "SYMBOLS", "write_pages", "fill_marker", "load_timings", "reproduction_map", "claims_page",
           "intro_figure", "chapter_stems", "format_seconds"]

PROFILES = report.PROFILES

#: page (relative to ``book/``) → the marker line its generated block replaces
MARKERS = {
    "reproduce.md": "<!-- generated:reproduction-map -->",
    "claims.md": "<!-- generated:claims -->",
    "intro.md": "<!-- generated:intro-figure -->",
}
#: verdict → symbol shown next to it
SYMBOLS = {"reproduced": "✓", "partly": "◐", "not reproduced": "✗", "not tested": "○"}
NO_GPU = "not measured (no GPU here)"
NOT_RUN = "not run"
NOT_RECORDED = "executed, time not recorded"
INTRO_TAG = "intro-figure"
_FIG_RE = re.compile(r"\b(?:Figures?|Fig\.|Tables?)\s*\d+(?:\s*(?:–|-|,|and)\s*\d+)*")


# --------------------------------------------------------------------------------------------- helpers

def _cell(text: object) -> str:
    """Text safe inside one markdown table cell (no newline, escaped pipes)."""
    return " ".join(str(text).split()).replace("|", "\\|") or "—"


def _code(text: str) -> str:
    return f"``{text}``" if "`" in text else f"`{text}`"


def _read_nb(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable notebook ({exc}); accepted values: an .ipynb JSON file") from None


def _src(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else str(s)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 0 s``, ``1 h 2 min``: wall time as a reader reads it."""
    s = float(seconds)
    if s < 60:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r} s"
    h, r = divmod(round(s), 3600)
    return f"{h} h {r // 60} min"


def fill_marker(path: Path, marker: str, text: str) -> None:
    """Replace the line ``marker`` in ``path`` by ``text`` (atomic write).

    Raises
    ------
    ValueError
        When ``path`` does not contain ``marker`` on a line of its own exactly once.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.strip() == marker]
    if len(hits) != 1:
        raise ValueError(f"{path} has {len(hits)} lines {marker!r}; accepted values: exactly one such line "
                         "(the generated block replaces it)")
    lines[hits[0]] = text.rstrip("\n") + "\n"
    atomic_write_text(path, "".join(lines))


def load_timings(path: Path, profile: str | None = None) -> dict[str, dict]:
    """``{notebook: entry}`` from a timings file (a JSON list of ``{notebook, profile, seconds, threads?}``).

    ``{}`` when the file does not exist; entries of another profile are ignored. A malformed file raises a
    ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError("not a list")
        out = {}
        for t in data:
            if not isinstance(t, dict) or not isinstance(t.get("notebook"), str):
                raise ValueError(f"entry {t!r} has no 'notebook'")
            sec = t.get("seconds")
            if isinstance(sec, bool) or not isinstance(sec, (int, float)) or sec < 0:
                raise ValueError(f"entry {t['notebook']!r} has seconds={sec!r}")
            if profile is None or t.get("profile", profile) == profile:
                out[t["notebook"]] = t
        return out
    except ValueError as exc:
        raise ValueError(f"{path} is not a valid timings file ({exc}); accepted values: a JSON list of "
                         "{notebook, profile, seconds, threads?} as written by saliency_core.run") from None


def chapter_stems(stage_dir: Path) -> list[str]:
    """Notebook stems in the staged ``_toc.yml`` order (only those whose notebook is staged)."""
    stage_dir = Path(stage_dir)
    staged = {p.stem for p in (stage_dir / "notebooks").glob("*.ipynb") if not p.name.startswith(".")}
    toc = stage_dir / "_toc.yml"
    if not toc.is_file():
        return sorted(staged)
    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            f = node.get("file")
            if isinstance(f, str):
                files.append(f)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load(toc.read_text(encoding="utf-8")))
    stems = [Path(f).with_suffix("").name for f in files if Path(f).parts[:1] == ("notebooks",)]
    return [s for s in dict.fromkeys(stems) if s in staged]


def _title(nb: dict, stem: str) -> str:
    for c in nb.get("cells", []):
        if c.get("cell_type") == "markdown":
            for line in _src(c).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return stem


def _reproduces(nb: dict) -> str:
    """The paper figures/tables a notebook's section headings name, else its section headings."""
    heads = [line.lstrip("#").strip() for c in nb.get("cells", []) if c.get("cell_type") == "markdown"
             for line in _src(c).splitlines() if line.startswith("## ")]
    found = [m.group(0) for h in heads for m in _FIG_RE.finditer(h)]
    if found:
        return ", ".join(dict.fromkeys(found))
    return "; ".join(heads[:2]) + ("; …" if len(heads) > 2 else "") if heads else "—"


def _parameters(nb: dict) -> dict:
    """The literal assignments of the papermill-injected cell (what the run actually used)."""
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code" and "injected-parameters" in c.get("metadata", {}).get("tags", []):
            out = {}
            try:
                tree = ast.parse(_src(c))
            except SyntaxError:
                return {}
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        out[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[node.targets[0].id] = ast.unparse(node.value)
            return out
    return {}


def _link(stem: str) -> str:
    return f"{{doc}}`{stem} <../notebooks/{stem}>`"


# --------------------------------------------------------------------------------------------- reproduction map

def _time_cell(entry: dict | None, gpu: bool, executed: bool = False) -> str:
    if entry is None:
        return NOT_RECORDED if executed and not gpu else NOT_RUN
    extra = []
    if entry.get("threads") is not None:
        extra.append(f"{entry['threads']} thread{'s' if entry['threads'] != 1 else ''}")
    if entry.get("cores") is not None:
        extra.append(f"{entry['cores']} cores")
    if gpu and entry.get("device"):
        extra.append(str(entry["device"]))
    return format_seconds(entry["seconds"]) + (f" ({', '.join(extra)})" if extra else "")


def _map_table(stems: list[str], nbs: dict[str, dict], profile: str, cpu: dict[str, dict],
               gpu: dict[str, dict] | None) -> list[str]:
    rows = ["| Reproduces | Notebook | Profile | CPU time (measured) | GPU time (measured) |", "|---|---|---|---|---|"]
    for stem in stems:
        g = NO_GPU if gpu is None else _time_cell(gpu.get(stem), gpu=True)
        executed = _parameters(nbs[stem]).get("profile") == profile
        rows.append(f"| {_cell(_reproduces(nbs[stem]))} | {_link(stem)} | `{profile}` | "
                    f"{_time_cell(cpu.get(stem), gpu=False, executed=executed)} | {g} |")
    return rows


def _commands(profile: str, example: str) -> list[str]:
    one = f"python -m saliency_core.run --profile {profile} --only <notebook>"
    gpu = (f"python -m saliency_core.run --profile paper --only {example} -p device=cuda -p model=vgg19 "
           "-p weights=/path/to/vgg19.pth")
    return ["**Commands.**", "",
            "- every row: `make book` (every notebook under the `book` profile, then the HTML; "
            "`make book PROFILE=paper` for the papers' settings);",
            f"- one row: {_code(one)}, e.g. {_code(one.replace('<notebook>', example))};",
            f"- one row at the papers' settings on a GPU: {_code(gpu)} (or papermill, below)."]


def reproduction_map(stage_dir: Path, profile: str, root: Path | None = None) -> str:
    """Markdown for ``book/reproduce.md``: figure/table → notebook → profile → measured time → command.

    Parameters
    ----------
    stage_dir : Path
        The staging folder (``_build/src``) holding ``_toc.yml`` and ``notebooks/`` (executed copies).
    profile : str
        The profile the book was built from; a second table is added for ``paper`` when it has been timed.
    root : Path
        The repository whose ``_build/timings-*.json`` are read.
    """
    report.check_profile(profile)
    root = Path(root) if root is not None else repo_root()
    stage_dir, build = Path(stage_dir), root / "_build"
    stems = chapter_stems(stage_dir)
    nbs = {s: _read_nb(stage_dir / "notebooks" / f"{s}.ipynb") for s in stems}
    cores = os.cpu_count() or 1
    out = [f"The table is generated when the book is built (`saliency_core.frontmatter`). Times are the wall time "
           f"of each notebook's last run (kernel start included) as recorded by the runner in "
           f"`_build/timings-<profile>.json`, on the machine that built this book ({cores} CPU "
           f"core{'s' if cores != 1 else ''}). \"{NOT_RUN}\" means that no run of the notebook under that profile "
           f"was recorded; \"{NOT_RECORDED}\" that the book shows an executed copy whose time was not recorded. "
           "The thread count of each run is shown when the runner recorded it (`make book` executes notebooks side "
           "by side and splits the cores among them). GPU times are read from `_build/timings-<profile>-gpu.json` "
           "(same format, from a run with `-p device=cuda`) when that file exists.", ""]
    for i, p in enumerate(dict.fromkeys([profile, "paper"])):
        cpu_file, gpu_file = build / f"timings-{p}.json", build / f"timings-{p}-gpu.json"
        cpu = load_timings(cpu_file, p)
        gpu = load_timings(gpu_file, p) if gpu_file.is_file() else None
        if i > 0 and not cpu and gpu is None:
            out += [f"No run under the `{p}` profile has been timed here (no `_build/timings-{p}.json`): "
                    f"its times are \"{NOT_RUN}\". Run one chapter with "
                    f"{_code(f'python -m saliency_core.run --profile {p} --only <notebook>')} "
                    "(on a GPU: add `-p device=cuda`) to measure it.", ""]
            continue
        if i > 0:
            out += [f"**`{p}` profile**", ""]
        out += _map_table(stems, nbs, p, cpu, gpu)
        done = [cpu[s]["seconds"] for s in stems if s in cpu]
        if done:
            out += ["", f"Sum of the measured `{p}` CPU times: {format_seconds(sum(done))} over {len(done)} of "
                    f"{len(stems)} notebooks" + (" (notebooks executed side by side finish sooner)."
                                                   if len(done) > 1 else ".")]
        whole = build / f"run-{p}.json"
        if whole.is_file():
            w = json.loads(whole.read_text())
            out += ["", f"Last whole-book run under `{p}` ({w.get('date', '?')} UTC): "
                    f"{format_seconds(float(w['wall_seconds']))} wall time for {w.get('notebooks', '?')} notebooks, "
                    f"{w.get('jobs', '?')} side by side on {w.get('cores', '?')} cores, "
                    + ("starting from an empty result cache (cold)." if w.get("cached_results_at_start") == 0 else
                       f"starting with {w.get('cached_results_at_start', '?')} results in the cache (warm or "
                       "partly warm).")]
        out.append("")
    if stems:
        papers = [s for s in stems if _FIG_RE.search(_reproduces(nbs[s]))]
        out += _commands(profile, (papers or stems)[0])
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------- claims

def _counts(items: list[dict]) -> str:
    c = Counter(x["verdict"] for x in items)
    return " · ".join(f"{SYMBOLS[v]} {v}: {c[v]}" for v in report.VERDICTS)


def claims_page(stage_dir: Path, profile: str, root: Path | None = None) -> str:
    """Markdown for ``book/claims.md``: one table per chapter that wrote a claims file, with counts per verdict.

    Claims are read with :func:`saliency_core.report.load_claims` from ``$SALIENCY_RESULTS_DIR`` (when set) or
    ``<root>/_build/results``. Nothing is written for a chapter without a claims file except that it has none.
    """
    report.check_profile(profile)
    stage_dir = Path(stage_dir)
    env = os.environ.get("SALIENCY_RESULTS_DIR")
    base = Path(env) if env else (Path(root) if root is not None else repo_root()) / "_build" / "results"
    ledgers = report.load_claims(profile, base=base)
    stems = chapter_stems(stage_dir)
    where = f"`_build/results/{profile}/*.claims.json`" if not env else f"`$SALIENCY_RESULTS_DIR/{profile}`"
    if not ledgers:
        return (f"```{{note}}\nThe chapters have not been run under the `{profile}` profile on the machine that "
                f"built this book: there is no claims file ({where}), so this page lists no verdict. Run "
                f"`python -m saliency_core.run --profile {profile}` and rebuild.\n```\n")
    everything = [c for ledger in ledgers for c in ledger["claims"]]
    out = [f"Generated from the claims files that the chapters wrote when they were executed under the "
           f"`{profile}` profile ({where}).", "",
           f"**All chapters:** {_counts(everything)} (of {len(everything)} claims).", ""]
    missing = [s for s in stems if s not in {lg["notebook"] for lg in ledgers}]
    for ledger in ledgers:
        stem = ledger["notebook"]
        nb_path = stage_dir / "notebooks" / f"{stem}.ipynb"
        nb = _read_nb(nb_path) if nb_path.is_file() else {}
        heading = _title(nb, stem)
        out += [f"## {heading}", ""]
        who = [f"chapter {_link(stem) if stem in stems else _code(stem)}", f"profile `{ledger['profile']}`"]
        if ledger.get("model"):
            who.append(f"model `{ledger['model']}`")
        if ledger.get("n_images") is not None:
            who.append(f"{ledger['n_images']} image{'s' if ledger['n_images'] != 1 else ''}")
        out += ["Produced by " + ", ".join(who) + f"; budgets: `params/{stem}.yaml` → `{ledger['profile']}`.", ""]
        params = _parameters(nb)
        if params:
            listed = ", ".join(_code(f"{k}={v!r}") for k, v in params.items())
            out += [":::{admonition} Parameters of this run", ":class: dropdown", listed, ":::", ""]
        if any(c.get("n") is not None or c.get("live") for c in ledger["claims"]):
            out += ["| Claim | Paper | Release (N images) | Verdict | This run | Outcome on this run | Criterion |",
                    "|---|---|---|---|---|---|---|"]
            for c in ledger["claims"]:
                n = "" if c.get("n") is None else f"N = {c['n']}: "
                out.append(f"| {_cell(c['claim'])} | {_cell(c['paper'])} | {_cell(n + c['ours'])} | "
                           f"{SYMBOLS[c['verdict']]} {c['verdict']} | {_cell(c.get('live', ''))} | "
                           f"{_live_cell(c)} | {_cell(c['criterion'])} |")
        else:
            out += ["| Claim | Paper | Ours | Verdict | Criterion |", "|---|---|---|---|---|"]
            for c in ledger["claims"]:
                out.append(f"| {_cell(c['claim'])} | {_cell(c['paper'])} | {_cell(c['ours'])} | "
                           f"{SYMBOLS[c['verdict']]} {c['verdict']} | {_cell(c['criterion'])} |")
        out += ["", f"Verdicts: {_counts(ledger['claims'])}.", ""]
    differ = [(lg["notebook"], c) for lg in ledgers for c in lg["claims"]
              if c.get("live_verdict") and c["live_verdict"] != c["verdict"]]
    if any(c.get("live_verdict") for lg in ledgers for c in lg["claims"]):
        out += ["## Where the release and this run disagree", ""]
        if not differ:
            out += ["Nowhere: on every claim, the criterion gives the same outcome on this run's photos as on the "
                    "release.", ""]
        else:
            out += [f"The criterion's outcome on this run's photos differs from the release's verdict on "
                    f"{len(differ)} claim(s). An outcome on fewer than {report.MIN_IMAGES} photos is indicative only "
                    "(marked *indicative*): the release's verdict, on its N images with confidence intervals, is the "
                    "one the book stands by.", "", "| Chapter | Claim | Release | This run |", "|---|---|---|---|"]
            for stem, c in differ:
                out.append(f"| {_link(stem) if stem in stems else _code(stem)} | {_cell(c['claim'])} | "
                           f"{SYMBOLS[c['verdict']]} {c['verdict']} (N = {c.get('n')}) | {_live_cell(c)} |")
            out.append("")
    if missing:
        out.append("No claims file under this profile for: " + ", ".join(_link(s) for s in missing) + ".")
    return "\n".join(out).rstrip() + "\n"


def _live_cell(c: dict) -> str:
    v = c.get("live_verdict") or ""
    if not v:
        return ""
    n = c.get("live_n")
    tag = f" (n = {n})" if n is not None else ""
    if n is None or n < report.MIN_IMAGES:
        tag += ", *indicative*"
    return f"{SYMBOLS[v]} {v}{tag}"


# --------------------------------------------------------------------------------------------- intro figure

def _caption_after(cells: list[dict], i: int) -> str:
    """The italic caption paragraph that follows cell ``i`` (the notebooks' convention), minus sentences about a
    table that the intro does not show."""
    for c in cells[i + 1:]:
        if c.get("cell_type") != "markdown":
            return ""
        para = _src(c).strip().split("\n\n")[0].strip()
        if para.startswith("*") and not para.startswith("**"):
            text = " ".join(para.strip("*").split())
            sentences = re.split(r"(?<=\.)\s+(?=[A-Z])", text)
            return " ".join(s for s in sentences if "table" not in s.lower()).strip()
        return ""
    return ""


def intro_figure(stage_dir: Path, profile: str, out_dir: Path) -> str:
    """Markdown for the intro's figure: the first image of the staged notebook cell tagged ``intro-figure``.

    Without such a cell the tour's (``00_tour``) first image is used; without any image, a sentence pointing to
    the tour (nothing when there is no tour). The PNG is written to ``out_dir/intro-figure.png``; the figure
    path is relative to ``book/``.
    """
    report.check_profile(profile)
    stage_dir, out_dir = Path(stage_dir), Path(out_dir)
    stems = chapter_stems(stage_dir)
    candidates: list[tuple[str, int]] = []
    nbs = {s: _read_nb(stage_dir / "notebooks" / f"{s}.ipynb") for s in stems}
    for s in stems:
        for i, c in enumerate(nbs[s].get("cells", [])):
            if INTRO_TAG in c.get("metadata", {}).get("tags", []):
                candidates.append((s, i))
    if not candidates and "00_tour" in nbs:
        candidates = [("00_tour", i) for i, c in enumerate(nbs["00_tour"].get("cells", []))
                      if c.get("cell_type") == "code"]
    for stem, i in candidates:
        cells = nbs[stem]["cells"]
        for o in cells[i].get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if not png:
                continue
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "intro-figure.png").write_bytes(base64.b64decode("".join(png) if isinstance(png, list)
                                                                        else png))
            caption = _caption_after(cells, i)
            source = f"From the chapter {_link(stem)}, executed under the `{profile}` profile."
            return "\n".join(["```{figure} _generated/intro-figure.png", ":name: intro-figure", ":width: 100%", "",
                              (caption + " " if caption else "") + source, "```", ""])
    if "00_tour" not in stems:
        return ""
    return f"The tour ({_link('00_tour')}) shows the four methods side by side on one photo.\n"


# --------------------------------------------------------------------------------------------- entry point

def write_pages(stage_dir: Path, profile: str, root: Path | None = None) -> list[Path]:
    """Fill the generated blocks of the staged pages (``stage_dir/book/*.md``) from ``root``'s run outputs.

    Parameters
    ----------
    stage_dir : Path
        The staging folder (``_build/src``) into which ``book/``, ``_toc.yml`` and the executed notebooks were
        copied; only files under it are modified (and ``book/_generated/`` is created there).
    profile : str
        ``"smoke"``, ``"book"`` or ``"paper"``: the profile the staged notebooks were executed with.
    root : Path
        Repository root whose ``_build/timings-*.json`` and ``_build/results/`` are read.

    Returns
    -------
    list of Path
        The pages written.

    Raises
    ------
    ValueError
        For an unknown profile, a page without its marker line, or a malformed timings/claims file.
    """
    report.check_profile(profile)
    stage_dir = Path(stage_dir)
    book = stage_dir / "book"
    for name in MARKERS:
        if not (book / name).is_file():
            raise ValueError(f"{book / name} does not exist; accepted values: a staged book/ with "
                             f"{', '.join(MARKERS)}")
    blocks = {
        "reproduce.md": reproduction_map(stage_dir, profile, root),
        "claims.md": claims_page(stage_dir, profile, root),
        "intro.md": intro_figure(stage_dir, profile, book / "_generated"),
    }
    written = []
    for name, text in blocks.items():
        fill_marker(book / name, MARKERS[name], text)
        written.append(book / name)
    return written
