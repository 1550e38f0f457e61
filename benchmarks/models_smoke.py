"""Every chapter's ``smoke`` profile once per model family: does each chapter run end to end on every model the README
offers? (#17 item 8: Grad-CAM on resnet50 used to crash chapter 4's first table.)

For each model family — EfficientNet-Lite (``efficientnet_lite0``, shipped weights), VGG (``vgg16``) and ResNet
(``resnet50``), the torchvision ones with ``weights=random`` (no download) — every chapter that has a ``model``
parameter is executed with papermill under its ``smoke`` parameters plus ``-p model=... -p weights=random`` (and
``-p n_images=1`` by default, to keep the run affordable on a CPU: VGG16 costs ~9× EfficientNet-Lite0 per pass).
The parameters go through the runner's checks first. Executed copies, claims and cached results go to a temporary
folder (``--out``): nothing in the repository changes, and the chapters' own smoke outputs are untouched.

Slow (tens of minutes on one CPU thread): ``nice -n 10 python benchmarks/models_smoke.py``. The last line is one
``key=value`` line: runs, passed, failed, seconds and the failing ``chapter@model`` pairs. ``--record`` also writes
``benchmarks/results/models_smoke.json`` (off by default: the runner's notebook fingerprints include that folder).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = {"efficientnet_lite0": None, "vgg16": "random", "resnet50": "random"}


def _error_line(exc: BaseException) -> str:
    """The failing cell's error in one line (papermill's exception carries ename / evalue)."""
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{ename}: {str(evalue).strip().splitlines()[0] if str(evalue).strip() else ''}"[:300]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(FAMILIES), help="comma-separated (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated chapter stems (default: every chapter with `model`)")
    ap.add_argument("--n-images", type=int, default=1, help="-p n_images for chapters that have it (0: smoke's own)")
    ap.add_argument("--out", type=Path, default=None, help="folder for executed copies, claims and cache")
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/models_smoke.json")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("SALIENCY_THREADS", "1")
    out = args.out or Path(tempfile.mkdtemp(prefix="models-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    # claims, cache and store of the kernels go to `out`; the kernels still find the repository (SALIENCY_ROOT)
    os.environ.update(SALIENCY_ROOT=str(ROOT), SALIENCY_RESULTS_DIR=str(out / "results"),
                      SALIENCY_CACHE=str(out / "cache"), SALIENCY_STORE=str(out / "cache"))

    from saliency_core.book.runner import (
        check_parameters,
        declared_parameters,
        execute_notebook,
        notebook_stems,
        profile_parameters,
    )

    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in FAMILIES:
            raise SystemExit(f"--models {m!r} is not valid; accepted values: {', '.join(FAMILIES)}")
    stems = [s for s in notebook_stems(ROOT) if "model" in (declared_parameters(s, ROOT) or [])]
    if args.only:
        wanted = [s for s in args.only.split(",") if s]
        for s in wanted:
            if s not in stems:
                raise SystemExit(f"--only {s!r} is not valid; accepted values: {', '.join(stems)}")
        stems = wanted
    print(f"models_smoke: {len(models)} model(s) x {len(stems)} chapter(s), smoke profile, output in {out}",
          flush=True)

    rows, t_all = [], time.perf_counter()
    for model in models:
        for stem in stems:
            declared = declared_parameters(stem, ROOT) or []
            overrides = {"model": model}
            if FAMILIES[model] is not None:
                overrides["weights"] = FAMILIES[model]
            if args.n_images and "n_images" in declared:
                overrides["n_images"] = args.n_images
            try:
                params = check_parameters(stem, profile_parameters(stem, "smoke", overrides, ROOT), ROOT)
            except SystemExit as exc:  # a chapter that refuses the model: reported, not fatal
                rows.append({"model": model, "notebook": stem, "ok": False, "seconds": 0.0, "error": str(exc)})
                print(f"  {stem:28s} {model:20s} REFUSED {exc}", flush=True)
                continue
            t0 = time.perf_counter()
            try:
                execute_notebook(stem, params, out / "notebooks" / model / f"{stem}.ipynb", ROOT)
                ok, err = True, ""
            except Exception as exc:  # noqa: BLE001 - the failing cell is the result
                ok, err = False, _error_line(exc)
            secs = time.perf_counter() - t0
            rows.append({"model": model, "notebook": stem, "ok": ok, "seconds": round(secs, 1), "error": err})
            print(f"  {stem:28s} {model:20s} {'ok    ' if ok else 'FAILED'} {secs:7.1f} s  {err}", flush=True)

    wall = time.perf_counter() - t_all
    failed = [f"{r['notebook']}@{r['model']}" for r in rows if not r["ok"]]
    metrics = {"runs": len(rows), "passed": len(rows) - len(failed), "failed": len(failed),
               "seconds": round(wall, 1)}
    if args.record:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _results import record

        record("models_smoke", metrics, extra={"models": models, "notebooks": stems, "n_images": args.n_images},
               rows=rows)
    print(" ".join(f"{k}={v}" for k, v in metrics.items()) + f" failures={','.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
