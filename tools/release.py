"""The evidence release (`make release`): every study of ``params/studies/release/`` on the 20 embedded photos plus
the labelled photos of a folder (default ``../shared/data/imagenet-sample-200``), tables committed under
``results/release/<study>/`` (scores, curves, costs as Parquet + ``provenance.json``; no maps).

Resumable at every level: the committed tables are imported into the store first (a run that another session
started continues), a study whose rows the store holds submits nothing, and ``--n 20,35,50`` grows the image set in
steps (every study reaches a step before any goes on), writing the tables after each step (the image order is
prefix-stable: the 20 embedded photos, then the folder's photos in a seeded order), so a long run can be stopped
at any time and what finished is on disk. Run it niced in the background; it runs for hours on 2 cores::

    nice -n 19 .venv/bin/python tools/release.py --n 20,50 --workers 2 > _build/release.log 2>&1 &

In the background it also moves to a session of its own whose autogroup is niced (:func:`yield_cpu`): with
Linux's autogroup scheduler, nice alone does not keep it from taking half of the CPU from a terminal's tests.

Options: ``--studies ch2_invariant,ch3_leg`` (default: all, cheapest first), ``--data DIR`` (a folder with
``labels.csv``; ``$SALIENCY_RELEASE_DATA``), ``--workers K``, ``--out results/release``, ``--list`` (plan only).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDIES = ROOT / "params" / "studies" / "release"
#: the order the studies run in (cheapest per image first); others follow alphabetically
ORDER = ("ch2_invariant", "ch4_igos", "ch3_leg", "ch3_sanity", "ch1_extremal", "leaderboard")


def yield_cpu() -> str:
    """Make this process (and the Dask workers it starts) give way to everything else on the machine.

    ``nice`` alone is not enough on Linux with the autogroup scheduler (``/proc/sys/kernel/sched_autogroup_enabled``
    = 1, the default on desktops and many VMs). There, CPU time is first shared equally between *sessions*, and nice
    values only order the processes inside one session. A "niced" release started from one terminal then still takes
    half of the CPU from tests started in another: measured here, a book-profile chapter kernel got 65 % of a core
    beside a `nice -n 19` release. So when the release runs in the background (no terminal, or not its foreground
    job), it starts a session of its own and sets that session's autogroup to nice 19. In the foreground it stays in
    the terminal's session, so that Ctrl-C reaches it, and is only niced. Returns what was done."""
    done = []
    try:
        os.nice(19 - os.nice(0))
        done.append("nice 19")
    except OSError:
        pass
    try:
        foreground = os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        foreground = False
    if foreground:
        return ", ".join(done + ["foreground: stays in the terminal's session"])
    try:
        if os.getsid(0) != os.getpid():  # already the leader of a session (started by setsid): that one is ours
            os.setsid()
        with open("/proc/self/autogroup", "w") as fh:  # our own session: niced as a whole
            fh.write("19")
        done.append("own session with autogroup nice 19")
    except OSError as exc:  # not Linux, or autogroup off
        done.append(f"autogroup unchanged ({type(exc).__name__})")
    return ", ".join(done)


def release_study(path: Path, data: Path | None, n: int | None):
    """The release version of a study file: its images are the embedded photos, then ``data``'s photos."""
    from saliency_core.study import Study

    s = Study.from_yaml(path)
    sources = [{"embedded": {}}]
    if data is not None:
        sources.append({"folder": str(data), "labels": str(data / "labels.csv")})
    return Study.from_dict({**_spec(s), "images": {"sources": sources, "n": n, "seed": 0}})


def _spec(s) -> dict:
    return {"name": s.name, "model": s.model, "weights": s.weights, "methods": s.methods, "protocols": s.protocols,
            "device": s.device, "sanity": s.sanity, "batch_size": s.batch_size, "threads": s.threads,
            "target": s.target}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", default=None, help="comma-separated study names (default: all)")
    ap.add_argument("--n", default="50", help="images per study, or increasing steps '20,35,50'")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "release")
    ap.add_argument("--list", action="store_true", help="print the plan (tasks to do per study) and stop")
    args = ap.parse_args(argv)

    def _stop(signum, frame):  # SIGTERM (and SIGINT, which a shell ignores in background jobs) stop cleanly:
        raise KeyboardInterrupt  # finished rows are flushed to the store, the tables of finished steps are on disk

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if not args.list:
        print(f"[release] priority: {yield_cpu()}", flush=True)
    os.environ.setdefault("SALIENCY_ROOT", str(ROOT))
    from saliency_core.runtime import configure
    from saliency_core.store import Store
    from saliency_core.study import StudyError, import_tables, plan, run

    configure(threads=1)
    data = args.data or Path(os.environ.get("SALIENCY_RELEASE_DATA", ROOT.parent / "shared" / "data"
                                           / "imagenet-sample-200"))
    if not (data / "labels.csv").is_file():
        print(f"[release] no labelled photos at {data} (labels.csv): embedded photos only", flush=True)
        data = None
    files = {p.stem: p for p in sorted(STUDIES.glob("*.yaml"))}
    names = [s for s in (args.studies.split(",") if args.studies else
                         [*[o for o in ORDER if o in files], *sorted(set(files) - set(ORDER))]) if s]
    for s in names:
        if s not in files:
            raise SystemExit(f"--studies {s!r} is not valid; accepted values: {', '.join(files)}")
    steps = [int(v) for v in str(args.n).split(",") if v]
    store = Store()
    for name in names:
        out = args.out / name
        if (out / "scores.parquet").is_file():
            counts = import_tables(out, store)
            print(f"[release] {name}: imported {counts} rows from {out}", flush=True)
    for n in steps:  # every study reaches one step before any goes to the next
        for name in names:
            out = args.out / name
            study = release_study(files[name], data, n)
            if args.list:
                p = plan(study)
                print(f"[release] {name} n={n}: {len(p.tasks)} tasks, {len(p.todo(store))} to do", flush=True)
                continue
            t0 = time.perf_counter()
            try:
                res = run(study, workers=args.workers, store=store, out=out, progress=True, errors="continue")
            except StudyError as exc:  # failed tasks are retried by the next run; the others are written
                print(f"[release] {name} n={n}: {exc}", flush=True)
                continue
            print(f"[release] {name} n={n}: {res.n_submitted} tasks run, {res.n_skipped} from the store, "
                  f"{time.perf_counter() - t0:.0f} s; tables in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
