"""Model throughput on this machine: forward and forward+backward images/s at batch sizes 1, 16, 64.

The denominator of every later speed goal. Each configuration runs in a fresh subprocess twice — once with
glibc's default allocator and once with the tuned allocator the project applies
(``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``, set by the Makefile and
by :func:`saliency_core.runtime.configure` via ``mallopt``) — so the ratio is measured in one run.

Usage: ``python benchmarks/model_throughput.py [--threads 1] [--model efficientnet_lite0] [--repeats 3]``
Last line: ``fwd_img_s=<float> fwdbwd_img_s=<float> threads=<int>`` (batch 64, tuned allocator).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _results import record

TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"


def worker(model: str, threads: int, batches: list[int], repeats: int, tuned: bool) -> dict:
    import torch

    import saliency_core as sc
    from saliency_core.runtime import configure

    configure(threads=threads, fast_allocator=tuned)
    clf = sc.load_model(model)
    res = {}
    for bs in batches:
        x = torch.rand(bs, 3, clf.input_size, clf.input_size)
        with torch.no_grad():
            clf(x)  # warm-up
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                clf(x)
            t.append(time.perf_counter() - t0)
        fwd = bs / min(t)
        t = []
        with clf.guard():
            for _ in range(repeats):
                xr = x.clone().requires_grad_(True)
                t0 = time.perf_counter()
                out = clf(xr)
                out[:, 0].sum().backward()
                t.append(time.perf_counter() - t0)
        res[bs] = {"fwd": fwd, "fwdbwd": bs / min(t)}
    return {"threads": torch.get_num_threads(), "results": res}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--worker", choices=["default", "tuned"])
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if args.worker:
        out = worker(args.model, args.threads, batches, args.repeats, args.worker == "tuned")
        print(json.dumps(out))
        return
    runs = {}
    for mode in ("default", "tuned"):
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        env["OMP_NUM_THREADS"] = str(args.threads)
        if mode == "tuned":
            env["GLIBC_TUNABLES"] = TUNED
        cmd = [sys.executable, __file__, "--worker", mode, "--threads", str(args.threads), "--model", args.model,
               "--repeats", str(args.repeats), "--batches", args.batches]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    threads = runs["tuned"]["threads"]
    print(f"model={args.model} threads={threads} (images/s; best of {args.repeats})")
    head = ("batch", "fwd default", "fwd tuned", "ratio", "f+b default", "f+b tuned", "ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (6, 12, 10, 6, 12, 10, 6))))
    for bs in batches:
        d = runs["default"]["results"][str(bs)]
        t = runs["tuned"]["results"][str(bs)]
        print(f"{bs:>6} {d['fwd']:>12.1f} {t['fwd']:>10.1f} {t['fwd'] / d['fwd']:>6.2f} "
              f"{d['fwdbwd']:>12.1f} {t['fwdbwd']:>10.1f} {t['fwdbwd'] / d['fwdbwd']:>6.2f}")
    big = str(max(batches))
    best = runs["tuned"]["results"][big]
    base = runs["default"]["results"][big]
    print(f"allocator_ratio_fwd={best['fwd'] / base['fwd']:.2f} "
          f"allocator_ratio_fwdbwd={best['fwdbwd'] / base['fwdbwd']:.2f}")
    rows = [{"allocator": mode, "batch": bs, "fwd_img_s": runs[mode]["results"][str(bs)]["fwd"],
             "fwdbwd_img_s": runs[mode]["results"][str(bs)]["fwdbwd"]} for mode in runs for bs in batches]
    record("model_throughput", {"fwd_img_s": best["fwd"], "fwdbwd_img_s": best["fwdbwd"], "threads": threads,
                                "allocator_ratio_fwd": best["fwd"] / base["fwd"],
                                "allocator_ratio_fwdbwd": best["fwdbwd"] / base["fwdbwd"]},
           extra={"model": args.model, "repeats": args.repeats, "batch": int(big)}, rows=rows)
    print(f"fwd_img_s={best['fwd']:.2f} fwdbwd_img_s={best['fwdbwd']:.2f} threads={threads}")


if __name__ == "__main__":
    main()
