"""The book runner: execute the notebooks with papermill under a profile, then build the Jupyter Book.

Usage::

    python -m saliency_core.run --profile {smoke,book,paper} [--only NAME ...] [-p key=value ...]
                                [--jobs N] [--execute-only] [--in-place] [--no-build]

* Parameters come from ``params/<notebook stem>.yaml`` (top-level keys ``smoke``, ``book``, ``paper``; ``rules``
  refines the checks) and ``-p key=value`` overrides (values parsed as YAML: ``-p device=cuda -p n_images=50``;
  numbers such as ``1e3`` are numbers). Every notebook's parameters are checked against its parameters cell
  (:mod:`saliency_core.book.parameters`) before any notebook runs: an unknown name or a bad value stops the run
  with one line, before the work.
* Executed copies go to ``_build/notebooks/``; the injected-parameters cell is tagged ``hide-cell`` so the book
  shows it collapsed. The book is then built from a staging copy (``_build/src``) with execution off.
* ``--jobs N`` (default: one per CPU core) executes independent notebooks side by side, each kernel pinned to
  ``cores // N`` threads (longest first, from the last run's timings). Notebooks in :data:`RUN_LAST` (the
  leaderboard, which reuses the chapters' cached maps) start after every other notebook has finished, with all
  cores. Each kernel's log goes to ``_build/logs/<profile>/<stem>.log``.
* A failing notebook stops the run with the failing cell's error and a non-zero exit code.
* A notebook whose executed copy carries the same :func:`fingerprint` (notebook source, parameters, library
  source, benchmark results) is not re-executed (``--force`` re-executes it): a warm ``make book`` only rebuilds
  the HTML. Explanations and scores are cached one level down as well (``_cache/``), so a notebook re-executed
  after an edit recomputes only what the edit changed.
* ``--in-place`` (with ``--profile smoke``) re-executes the committed notebooks in ``notebooks/`` with their
  default parameters: that is how the stored outputs that nbval checks are refreshed. It runs them the way
  ``make test`` re-runs them on a clean clone: one thread per kernel and an empty result store (a temporary folder,
  removed afterwards), so a value computed earlier under another thread count — iterative searches such as the
  worst-case invariance search differ by up to 0.3 logit between 1 and 2 threads — is never what gets committed.

Per-image work inside notebooks goes through :class:`saliency_core.cache.ResultCache`: every explanation is an
independent task keyed by method + settings + model + image + version, so a rerun (or another worker sharing
the cache folder) never recomputes it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..files import atomic_write_text
from . import repo_root
from .report import PROFILES  # one list of profiles for the runner, the claims ledger and the front matter

#: notebooks that read what the others put in the result cache: they run after all others
RUN_LAST = ("05_leaderboard",)

__all__ = ["main", "notebook_stems", "profile_parameters", "declared_parameters", "check_parameters",
           "execute_notebook", "build_book", "schedule"]


def notebook_stems(root: Path | None = None) -> list[str]:
    root = Path(root) if root is not None else repo_root()
    return sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(inf|nan)", re.IGNORECASE)


def _parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` → (key, YAML value); a number YAML 1.1 reads as a str (``1e3``, ``inf``) becomes a float."""
    if "=" not in text:
        raise SystemExit(f"-p {text!r} is not valid; accepted values: key=value")
    k, v = text.split("=", 1)
    if not k.strip():
        raise SystemExit(f"-p {text!r} is not valid; accepted values: key=value with a parameter name")
    try:
        value = yaml.safe_load(v)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise SystemExit(f"-p {text!r} is not valid ({first}); accepted values: key=<YAML value>") from None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    return k.strip(), value


def _check_overrides_known(overrides: dict[str, Any], stems: list[str], root: Path) -> None:
    """Every ``-p`` name must be a parameter of at least one selected notebook (one line with the closest name)."""
    import difflib

    declared = {s: declared_parameters(s, root) for s in stems}
    if any(d is None for d in declared.values()):
        return
    union = sorted({n for d in declared.values() for n in d})
    for k, v in overrides.items():
        if k not in union:
            close = difflib.get_close_matches(k, union, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = stems[0] if len(stems) == 1 else f"any of {', '.join(stems)}"
            raise SystemExit(f"[run] -p {k}={v!r} is not a parameter of {where}{hint}; accepted values: "
                             f"{', '.join(union)}")


def check_parameters(stem: str, params: dict[str, Any], root: Path | None = None) -> dict[str, Any]:
    """``params`` checked against ``notebooks/<stem>.ipynb``'s parameters cell and ``params/<stem>.yaml``'s rules;
    returned converted (``1000.0`` → ``1000`` for an int parameter). A bad one stops the run (``SystemExit``, one
    line naming the notebook, the parameter and what is accepted)."""
    from .parameters import check_notebook_parameters

    root = Path(root) if root is not None else repo_root()
    try:
        return check_notebook_parameters(root, stem, params)
    except ValueError as exc:
        raise SystemExit(f"[run] parameters of {exc}") from None


def profile_parameters(stem: str, profile: str, overrides: dict[str, Any] | None = None,
                       root: Path | None = None) -> dict:
    """Parameters for one notebook: ``params/<stem>.yaml[profile]`` + ``profile`` itself + overrides."""
    root = Path(root) if root is not None else repo_root()
    if profile not in PROFILES:
        raise SystemExit(f"--profile {profile!r} is not valid; accepted values: {', '.join(PROFILES)}")
    params: dict[str, Any] = {}
    f = root / "params" / f"{stem}.yaml"
    if f.is_file():
        data = yaml.safe_load(f.read_text()) or {}
        unknown = set(data) - set(PROFILES) - {"rules"}
        if unknown:
            raise SystemExit(f"{f}: unknown profile keys {sorted(unknown)}; accepted values: {', '.join(PROFILES)}, "
                             "rules")
        params.update(data.get(profile) or {})
    declared = declared_parameters(stem, root)
    if declared is None or "profile" in declared:
        params["profile"] = profile
    # an override goes to the notebooks that declare it (main() refuses one that no selected notebook declares)
    params.update({k: v for k, v in (overrides or {}).items() if declared is None or k in declared})
    return params


def declared_parameters(stem: str, root: Path | None = None) -> list[str] | None:
    """Names of ``notebooks/<stem>.ipynb``'s parameters cell; ``None`` when the notebook is not there."""
    from .parameters import notebook_defaults

    root = Path(root) if root is not None else repo_root()
    nb = root / "notebooks" / f"{stem}.ipynb"
    if not nb.is_file():
        return None
    try:
        return list(notebook_defaults(nb))
    except (ValueError, SyntaxError) as exc:
        raise SystemExit(f"[run] {nb}: {str(exc).splitlines()[0]}") from None


#: what an executed notebook depends on besides its own source and parameters
FINGERPRINT_GLOBS = ("saliency_core/**/*.py", "benchmarks/results/*.json")


def fingerprint(stem: str, params: dict[str, Any], root: Path | None = None) -> str:
    """sha256 of everything an executed notebook depends on: its source, its parameters, the library's source
    and the benchmark results it may read. An executed copy with the same fingerprint is up to date."""
    root = Path(root) if root is not None else repo_root()
    import hashlib

    h = hashlib.sha256()
    h.update((root / "notebooks" / f"{stem}.ipynb").read_bytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    for pattern in FINGERPRINT_GLOBS:
        for f in sorted(root.glob(pattern)):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:32]


def up_to_date(stem: str, params: dict[str, Any], out: Path, root: Path | None = None) -> bool:
    """True when ``out`` exists and was executed from the same :func:`fingerprint`."""
    root = Path(root) if root is not None else repo_root()
    if not out.is_file():
        return False
    try:
        meta = json.loads(out.read_text()).get("metadata", {}).get("saliency_run", {})
    except (OSError, ValueError):
        return False
    return meta.get("fingerprint") == fingerprint(stem, params, root)


def _finish_executed(path: Path, fp: str, seconds: float) -> None:
    """One rewrite of an executed notebook: tag the injected-parameters cell ``hide-cell`` (the book shows it
    collapsed) and store the run's :func:`fingerprint` in the notebook metadata."""
    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["hide-cell"]
    nb.setdefault("metadata", {})["saliency_run"] = {"fingerprint": fp, "seconds": round(seconds, 1)}
    atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def execute_notebook(stem: str, params: dict[str, Any], out: Path, root: Path | None = None,
                     progress: Any = None) -> float:
    """Run one notebook with papermill into ``out``; returns seconds. Raises on a failing cell.

    ``progress(done, total)`` is called after every cell (:func:`saliency_core.book.progress.papermill_progress`).
    """
    root = Path(root) if root is not None else repo_root()
    import papermill as pm

    from .progress import papermill_progress

    src = root / "notebooks" / f"{stem}.ipynb"
    if not src.is_file():
        raise SystemExit(f"--only {stem!r} is not valid; accepted values: {', '.join(notebook_stems(root))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    # a non-inline MPLBACKEND (e.g. Agg from a CI environment) would reach the kernel and drop every figure
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    tmp = out.with_name(f".running-{out.name}")
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3", cwd=str(src.parent),
                        progress_bar=papermill_progress(progress) if progress else False, log_output=False,
                        request_save_on_cell_execute=False)
    os.replace(tmp, out)
    secs = time.perf_counter() - t0
    if params:
        _finish_executed(out, fingerprint(stem, params, root), secs)
    return secs


def build_book(executed: Path, root: Path | None = None, profile: str | None = None) -> Path:
    """Stage config, book pages and executed notebooks in ``_build/src`` and run ``jupyter-book build``.

    The generated front matter (reproduction map, claims summary, intro figure) is written into the staged pages by
    :func:`saliency_core.frontmatter.write_pages` from ``root``'s run outputs; ``profile`` defaults to the name of
    ``executed`` (``_build/notebooks/<profile>``).
    """
    root = Path(root) if root is not None else repo_root()
    from .frontmatter import write_pages

    profile = profile or Path(executed).name
    if profile not in PROFILES:
        raise SystemExit(f"profile {profile!r} (from {executed}) is not valid; accepted values: {', '.join(PROFILES)}")
    stage = root / "_build" / "src"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    from .launch import repo_url, stage_config

    stage_config(stage / "_config.yml", repo_url(root))  # launch buttons from $BOOK_REPO_URL / repository.url
    shutil.copytree(root / "book", stage / "book")
    (stage / "notebooks").mkdir()
    # hidden files are a runner's work in progress (.running-<stem>.ipynb), not chapters
    for nb in sorted(p for p in (root / "notebooks").glob("*.ipynb") if not p.name.startswith(".")):
        ex = executed / nb.name
        shutil.copy2(ex if ex.is_file() else nb, stage / "notebooks" / nb.name)
    for extra in (p for p in (root / "notebooks").glob("*.md") if not p.name.startswith(".")):
        shutil.copy2(extra, stage / "notebooks" / extra.name)
    write_pages(stage, profile, root)
    # MathJax from npm into _vendor (html_static_path in _config.yml) so that math renders offline
    subprocess.run(["bash", str(root / "tools" / "vendor_mathjax.sh"), str(stage / "_vendor" / "mathjax")], check=True)
    cmd = [sys.executable, "-m", "jupyter_book", "build", str(stage), "--path-output", str(root), "--keep-going"]
    if shutil.which("jupyter-book", path=str(Path(sys.executable).parent)):
        cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--path-output", str(root),
               "--keep-going"]
    subprocess.run(cmd, check=True)
    index = root / "_build" / "html" / "index.html"
    if not index.is_file():
        raise SystemExit(f"jupyter-book did not write {index}")
    return index


def _run_sequential(todo: list[str], args: argparse.Namespace, overrides: dict[str, Any],
                    executed: Path) -> list[dict] | None:
    root = args.root
    timings = []
    import functools

    from .progress import Display, child_callback, last_timings

    # a child reports its cells to the parent's display ($SALIENCY_PROGRESS_FILE); a top-level run shows them itself
    gpu = str(overrides.get("device", "cpu")).startswith("cuda")
    display = None if args.child else Display(todo, last_timings(root, args.profile, gpu))
    for stem in todo:
        params = {} if args.in_place else profile_parameters(stem, args.profile, overrides, root)
        out = (root / "notebooks" / f"{stem}.ipynb") if args.in_place else executed / f"{stem}.ipynb"
        if display is None:
            print(f"[run] {stem} profile={args.profile} params={params}", flush=True)
            callback = child_callback()
        else:
            display.start(stem, note=f" profile={args.profile} params={params}")
            callback = functools.partial(display.update, stem)
        t0 = time.perf_counter()
        try:
            secs = execute_notebook(stem, params, out, root, progress=callback)
        except Exception as exc:  # papermill's PapermillExecutionError carries the cell and its traceback
            if display is not None:
                display.finish(stem, time.perf_counter() - t0, ok=False)
                display.close()
            print(f"[run] FAILED {stem}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return None
        if display is None:
            print(f"[run] {stem} done in {secs:.1f} s", flush=True)
        else:
            display.finish(stem, secs)
        timings.append({"notebook": stem, "profile": args.profile, "seconds": round(secs, 1)})
    if display is not None:
        display.close()
    return timings


IN_PLACE_THREADS = 1  # the Makefile's THREADS for `make test`: nbval re-executes every kernel with one thread


def _clean_clone_conditions() -> str:
    """Environment of an in-place refresh: the kernels see what nbval on a clean clone sees — one thread each and
    an empty result store (a temporary folder removed at exit). Returns the store folder."""
    import atexit
    import tempfile

    store = tempfile.mkdtemp(prefix="saliency-in-place-store-")
    atexit.register(shutil.rmtree, store, ignore_errors=True)
    os.environ.update(SALIENCY_STORE=store, SALIENCY_THREADS=str(IN_PLACE_THREADS),
                      OMP_NUM_THREADS=str(IN_PLACE_THREADS))
    print(f"[run] --in-place: {IN_PLACE_THREADS} thread per kernel and an empty store ({store}), as `make test` "
          "re-executes the notebooks on a clean clone", flush=True)
    return store


def schedule(todo: list[str], jobs: int, cores: int, last_seconds: dict[str, float] | None = None,
             ) -> list[tuple[list[str], int, int]]:
    """Waves of ``(notebooks, width, threads per kernel)``: first every notebook not in :data:`RUN_LAST`, longest
    (by ``last_seconds``) first, ``jobs`` at a time; then :data:`RUN_LAST` one at a time with every core."""
    last_seconds = last_seconds or {}
    first = sorted((s for s in todo if s not in RUN_LAST), key=lambda s: -last_seconds.get(s, 0.0))
    waves = []
    for stems, width in ((first, jobs), ([s for s in todo if s in RUN_LAST], 1)):
        if stems:
            waves.append((stems, width, max(1, cores // min(width, len(stems)))))
    return waves


def _run_parallel(todo: list[str], args: argparse.Namespace, executed: Path, jobs: int, cores: int,
                  last_seconds: dict[str, float], overrides: dict[str, Any]) -> list[dict] | None:
    """Execute ``todo`` in child runners, ``jobs`` at a time (longest first), then :data:`RUN_LAST` alone."""
    root = args.root
    logs = root / "_build" / "logs" / args.profile
    logs.mkdir(parents=True, exist_ok=True)
    timings: list[dict] = []
    from .progress import PROGRESS_ENV, Display, read_progress

    display = Display(todo, last_seconds, width=min(jobs, len(todo)))
    for stems, width, threads in schedule(todo, jobs, cores, last_seconds):
        queue, running = list(stems), {}
        while queue or running:
            while queue and len(running) < width:
                stem = queue.pop(0)
                declared = declared_parameters(stem, root)
                mine = {k: v for k, v in overrides.items() if declared is None or k in declared}
                cmd = [sys.executable, "-m", "saliency_core.run", "--root", str(root), "--child", "--execute-only",
                       "--profile", args.profile, "--only", stem]
                cmd += [a for k, v in mine.items() for a in ("-p", f"{k}={json.dumps(v)}")]
                cmd += ["--in-place"] if args.in_place else []
                (logs / f"{stem}.progress").unlink(missing_ok=True)
                if args.in_place:  # committed outputs are computed as nbval recomputes them
                    threads = IN_PLACE_THREADS
                env = dict(os.environ, SALIENCY_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                           **{PROGRESS_ENV: str(logs / f"{stem}.progress")})  # the child's cell count
                log = open(logs / f"{stem}.log", "w")
                display.start(stem, note=f" (threads={threads}, log {log.name})")
                running[stem] = (subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT),
                                 log, time.perf_counter())
            time.sleep(0.5)
            for stem in running:
                cells = read_progress(logs / f"{stem}.progress")
                if cells is not None:
                    display.update(stem, *cells)
            for stem, (proc, log, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[stem]
                secs = time.perf_counter() - t0
                if proc.returncode != 0:
                    display.finish(stem, secs, ok=False)
                    display.close()
                    for p2, _, _ in running.values():
                        p2.terminate()
                    tail = (logs / f"{stem}.log").read_text().splitlines()[-15:]
                    print(f"[run] FAILED {stem} (log {logs / f'{stem}.log'}):\n" + "\n".join(tail),
                          file=sys.stderr, flush=True)
                    return None
                display.finish(stem, secs)
                timings.append({"notebook": stem, "profile": args.profile, "seconds": round(secs, 1),
                                "threads": threads})
    display.close()
    return timings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m saliency_core.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="book", choices=PROFILES)
    ap.add_argument("--only", action="append", default=[], help="notebook stem(s); repeat or comma-separate")
    ap.add_argument("-p", "--param", action="append", default=[], help="parameter override key=value (YAML value)")
    ap.add_argument("--execute-only", action="store_true", help="execute notebooks, do not build the book")
    ap.add_argument("--no-build", action="store_true", help="alias of --execute-only")
    ap.add_argument("--in-place", action="store_true", help="smoke profile: refresh the committed notebooks' outputs")
    ap.add_argument("--force", action="store_true",
                    help="re-execute notebooks whose executed copy is up to date (same source, parameters, library)")
    ap.add_argument("--jobs", type=int, default=None, help="notebooks executed side by side (default: CPU cores)")
    ap.add_argument("--root", type=Path, default=None,
                    help="the book repository (default: found from the current folder)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.root = root = (args.root or repo_root()).resolve()
    os.environ["SALIENCY_ROOT"] = str(root)  # kernels find the root (claims ledger)

    from ..runtime import configure

    configure()
    stems = notebook_stems(root)
    only = [s for item in args.only for s in item.split(",") if s]
    for s in only:
        if s not in stems:
            raise SystemExit(f"--only {s!r} is not valid; accepted values: {', '.join(stems)}")
    todo = only or stems
    overrides = dict(_parse_override(p) for p in args.param)
    if args.in_place and (args.profile != "smoke" or overrides):
        raise SystemExit("--in-place is only valid with --profile smoke and no -p overrides (committed notebooks "
                         "store their default parameters)")
    # every notebook's parameters are checked before any work (a bad value must not surface after an hour)
    if not args.in_place:
        _check_overrides_known(overrides, todo, root)
        for s in todo:
            checked = check_parameters(s, profile_parameters(s, args.profile, overrides, root), root)
            # exact conversions (1e3 → 1000) and paths made absolute (the kernels' folder is notebooks/) go on
            overrides.update({k: v for k, v in checked.items() if k in overrides})
    if args.in_place and not args.child:
        _clean_clone_conditions()
    executed = root / "_build" / "notebooks" / args.profile
    device = str(overrides.get("device", "cpu"))
    # GPU runs are timed apart from CPU runs (the book's reproduction map shows both columns)
    tfile = root / "_build" / f"timings-{args.profile}{'-gpu' if device.startswith('cuda') else ''}.json"
    old = json.loads(tfile.read_text()) if tfile.is_file() else []
    cores = os.cpu_count() or 1
    jobs = args.jobs or cores
    if jobs < 1:
        raise SystemExit(f"--jobs {jobs} is not valid; accepted values: an int >= 1")
    from ..cache import default_cache_dir

    cdir = default_cache_dir()
    cached_at_start = sum(1 for f in cdir.rglob("*") if f.is_file()) if cdir.is_dir() else 0
    if not (args.in_place or args.child or args.force):
        fresh = [s for s in todo if up_to_date(s, profile_parameters(s, args.profile, overrides, root),
                                              executed / f"{s}.ipynb", root)]
        for s in fresh:
            print(f"[run] {s} is up to date (same notebook, parameters and library): not re-executed "
                  "(--force re-executes)", flush=True)
        todo = [s for s in todo if s not in fresh]
    t_all = time.perf_counter()
    if not todo:
        timings: list[dict] | None = []
    elif args.child or jobs == 1 or len(todo) == 1:
        timings = _run_sequential(todo, args, overrides, executed)
    else:
        timings = _run_parallel(todo, args, executed, jobs, cores, {t["notebook"]: t["seconds"] for t in old},
                                overrides)
    if timings is None:
        return 1
    if args.child:
        return 0
    wall = time.perf_counter() - t_all
    print(f"[run] {len(todo)} notebook(s) executed in {wall:.1f} s (jobs={jobs})", flush=True)
    # a whole-book execution (cold, or --force): its wall time goes to the reproduction map
    if todo and set(todo) == set(stems) and not args.in_place:
        rec = root / "_build" / f"run-{args.profile}{'-gpu' if device.startswith('cuda') else ''}.json"
        atomic_write_text(rec, json.dumps({"profile": args.profile, "wall_seconds": round(wall, 1), "jobs": jobs,
                                   "cores": cores, "device": device, "notebooks": len(todo),
                                   "cached_results_at_start": cached_at_start,
                                   "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}) + "\n")
    for t in timings:
        t.setdefault("threads", int(os.environ.get("SALIENCY_THREADS", cores)))
        t.update(cores=cores, device=device)
    merged = {t["notebook"]: t for t in old} | {t["notebook"]: t for t in timings}
    atomic_write_text(tfile, json.dumps(list(merged.values()), indent=1) + "\n")
    if args.execute_only or args.no_build or args.in_place:
        return 0
    t0 = time.perf_counter()
    index = build_book(executed, root)
    print(f"[run] book built in {time.perf_counter() - t0:.1f} s: {index.relative_to(root)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
