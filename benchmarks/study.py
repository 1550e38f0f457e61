"""What the study engine costs: the same study run in this process and on a two-process Dask LocalCluster.

The study: ``--images`` photos (default 40: the 20 photos shipped with the package and their mirror images, written
to a temporary folder) × 3 cheap methods (gradient, Grad-CAM, occlusion with 56-pixel windows) × 3 protocols
(pixel flip, RISE deletion with 7168-pixel steps, LOR) on EfficientNet-Lite0, one torch thread per process. Each
mode starts from an empty store (everything is computed), after a warm-up on one photo (imports, Captum, the model);
the cluster is started and warmed up before the clock starts (its start-up time is printed apart).

* ``speedup`` = serial wall time / cluster wall time (goal ≥ 1.8 on 2 free cores);
* ``overhead_per_task_ms`` = (workers × cluster wall time − Σ task wall time inside the workers) / tasks: the time a
  worker spends outside tasks (scheduling, transfers, the client's planning and row writing, idling at the end);
  ``overhead_fraction`` = that / mean task time (goal ≤ 5 %).

* ``plain_speedup`` = serial wall time / the wall time of ``--workers`` plain processes (no Dask, no scheduler) that
  each run the same serial study on their share of the photos, started together after their own warm-up: what the
  machine itself allows for this work (cores that share caches, memory bandwidth or a hypervisor's time slices do
  not scale like free cores). ``dask_efficiency`` = speedup / plain_speedup: the part of the machine's parallelism
  the engine delivers (1.0 = the engine costs nothing). ``--no-plain`` skips it.

On a shared machine the other processes take cores from the workers: the load average at the start and the end is
printed and recorded; rerun on a quiet machine for the goal.

Usage: ``python benchmarks/study.py [--images 40] [--workers 2] [--no-plain]``
Last line: ``serial_s=<f> dask_s=<f> speedup=<f> overhead_per_task_ms=<f> plain_speedup=<f> dask_efficiency=<f>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SALIENCY_THREADS", "1")

from _results import record  # noqa: E402

METHODS = {"gradient": {}, "gradcam": {}, "occlusion": {"window": [3, 56, 56], "stride": [3, 56, 56]}}
PROTOCOLS = {"pixel_flip": {}, "del_rise": {"step": 7168}, "lor": {"alpha": 0.2}}


def write_photos(folder: Path, n: int) -> None:
    """The embedded photos, then their mirror images, as PNG files (n distinct images, n ≤ 2 × 20)."""
    from PIL import ImageOps

    from saliency_core import embedded_images

    recs = embedded_images()
    if n > 2 * len(recs):
        raise SystemExit(f"--images {n} is not valid; accepted values: 1 to {2 * len(recs)}")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        r = recs[i % len(recs)]
        im = r.image if i < len(recs) else ImageOps.mirror(r.image)
        im.save(folder / f"p{i:03d}.png")


def _warm(model: dict) -> bool:
    """On a worker: load the model once (as the first task would) and import Captum."""
    import captum.attr  # noqa: F401

    from saliency_core.study import _worker_state

    _worker_state(model)
    return True


def _spec(folder: Path, n: int | None = None) -> dict:
    images = {"folder": str(folder)} if n is None else {"folder": str(folder), "n": n, "seed": 0}
    return {"name": "bench", "images": images, "methods": METHODS, "protocols": PROTOCOLS}


def child(folder: Path, store: Path, go: Path) -> None:
    """One plain process of the ceiling measurement: warm up, say ready, wait for ``go``, run its share serially."""
    from saliency_core import study as S
    from saliency_core.runtime import configure

    configure(threads=1)
    S.run(_spec(folder, 1), workers=0, store=store / "warm", progress=False, out=False)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    S.run(_spec(folder), workers=0, store=store / "run", progress=False, out=False)


def plain_processes(photos: Path, tmp: Path, k: int) -> float:
    """Wall time of ``k`` plain processes running the serial study on disjoint shares of ``photos`` together."""
    from saliency_core.study import worker_environment

    env = {**os.environ, **worker_environment(1)}  # the same threads and allocator as the cluster's workers
    files = sorted(photos.iterdir())
    go = tmp / "go"
    procs = []
    for j in range(k):
        share = tmp / f"share{j}"
        share.mkdir()
        for f in files[j::k]:
            (share / f.name).symlink_to(f)
        procs.append(subprocess.Popen([sys.executable, __file__, "--child", str(share), str(tmp / f"store{j}"),
                                       str(go)], stdout=subprocess.PIPE, text=True, env=env))
    for p in procs:  # every child has its model, Captum and a warm-up explanation before the clock starts
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("a plain process failed before its warm-up ended")
    t = time.perf_counter()
    go.touch()
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a plain process failed")
    return time.perf_counter() - t


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        return child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                    help="also time --workers plain processes without Dask (the machine's own ceiling)")
    args = ap.parse_args()

    from distributed import Client

    from saliency_core import study as S
    from saliency_core.runtime import configure

    rt = configure(threads=1)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_photos(tmp / "photos", args.images)
        spec = {"name": "bench", "images": {"folder": str(tmp / "photos")}, "methods": METHODS,
                "protocols": PROTOCOLS}
        warm = {**spec, "images": {"folder": str(tmp / "photos"), "n": 1, "seed": 0}}
        S.run(warm, workers=0, store=tmp / "warm-serial", progress=False, out=False)
        t = time.perf_counter()
        serial = S.run(spec, workers=0, store=tmp / "serial", progress=False, out=False)
        serial_s = time.perf_counter() - t

        t = time.perf_counter()
        cluster = S.local_cluster(args.workers, threads=1)  # the cluster run() starts by default
        client = Client(cluster, set_as_default=False)
        S.run(warm, client=client, store=tmp / "warm-dask", progress=False, out=False)
        client.run(_warm, {"model": "efficientnet_lite0", "weights": None, "device": "cpu", "threads": 1,
                           "imports": []})  # every worker has its model and Captum before the clock starts
        start_s = time.perf_counter() - t
        try:
            t, c = time.perf_counter(), time.process_time()
            dask = S.run(spec, client=client, store=tmp / "dask", progress=False, out=False)
            dask_s = time.perf_counter() - t
            client_cpu_s = time.process_time() - c  # this process: the client, the scheduler, the row writing
        finally:
            client.close()
            cluster.close()
        n_tasks = dask.n_submitted
        task_s = dask.provenance["runs"][-1]["task_seconds"]
        serial_task_s = serial.provenance["runs"][-1]["task_seconds"]
        plain_s = plain_processes(tmp / "photos", tmp, args.workers) if args.plain else float("nan")
        same = all(serial.tables()[k].drop(columns=[c for c in S.TIME_COLUMNS if c in serial.tables()[k]]).equals(
            dask.tables()[k].drop(columns=[c for c in S.TIME_COLUMNS if c in dask.tables()[k]])) for k in S.TABLES)
    load1 = os.getloadavg()
    speedup = serial_s / dask_s
    overhead_s = (args.workers * dask_s - task_s) / n_tasks
    mean_task = task_s / n_tasks
    print(f"threads={rt['threads']} images={args.images} methods={len(METHODS)} protocols={len(PROTOCOLS)} "
          f"tasks={n_tasks} (explain+score groups) scores={len(dask.scores)} cores={os.cpu_count()}")
    print(f"load average (1/5/15 min): start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print(f"serial: {serial_s:.1f} s wall, {serial_task_s:.1f} s inside tasks ({serial_task_s / n_tasks * 1e3:.0f} "
          f"ms per task)")
    print(f"LocalCluster({args.workers}): start-up and warm-up {start_s:.1f} s (not timed); {dask_s:.1f} s wall, "
          f"{task_s:.1f} s inside tasks ({mean_task * 1e3:.0f} ms per task on a worker)")
    plain_speedup = serial_s / plain_s
    print(f"{args.workers} plain processes without Dask (the machine's ceiling for this work): {plain_s:.1f} s wall, "
          f"speedup {plain_speedup:.2f}; Dask delivers {speedup / plain_speedup:.1%} of it")
    print(f"this process (client + scheduler + row writing) during the cluster run: {client_cpu_s:.1f} s CPU = "
          f"{client_cpu_s / dask_s:.0%} of one core")
    print(f"speedup {speedup:.2f} (goal >= 1.8); overhead {overhead_s * 1e3:.1f} ms per task = "
          f"{overhead_s / mean_task:.1%} of a task (goal <= 5 %); tables identical: {same}")
    metrics = {"serial_s": serial_s, "dask_s": dask_s, "speedup": speedup, "overhead_per_task_ms": overhead_s * 1e3,
               "overhead_fraction": overhead_s / mean_task, "task_ms": mean_task * 1e3, "tasks": n_tasks,
               "workers": args.workers, "cluster_start_s": start_s, "tables_identical": same,
               "client_cpu_s": client_cpu_s, "plain_s": plain_s, "plain_speedup": plain_speedup,
               "dask_efficiency": speedup / plain_speedup}
    record("study", metrics, extra={"methods": METHODS, "protocols": PROTOCOLS, "images": args.images,
                                     "loadavg_start": load0, "loadavg_end": load1})
    print(f"serial_s={serial_s:.3f} dask_s={dask_s:.3f} speedup={speedup:.3f} "
          f"overhead_per_task_ms={overhead_s * 1e3:.3f} plain_speedup={plain_speedup:.3f} "
          f"dask_efficiency={speedup / plain_speedup:.3f}")


if __name__ == "__main__":
    main()
