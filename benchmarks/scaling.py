"""How the cost of an explanation grows: mask resolution, number of samples, number of images.

Three sweeps on EfficientNet-Lite0 and the embedded photos, each run once per setting after one warm-up call:

* ``igos_pp`` vs mask resolution (``--sizes``, default 7 14 28) at a tiny budget (``--igos-iterations`` 2,
  ``--igos-ig-steps`` 3): the number of model passes barely depends on the resolution (only through the line-search
  trials), so what grows is the work outside the network (mask upsampling, bilateral TV, the line search);
* ``leg`` and ``rise`` vs number of samples (``--samples``, default 50 100 200 400; LEG perturbs each colour
  channel, so it makes 3·n forward passes, RISE n): the slope of wall time against forward passes is the marginal
  cost of one pass;
* one cheap method (``--images-method``, default ``smoothgrad`` with 8 noisy copies) on 1, 2, 4 photos
  (``--images``) through the cache-less path (:class:`saliency_core.ResultCache` with ``enabled=False``, the
  chapters' own ``explain_many``): cost per image should be constant.

Times are CPU seconds of this process (``time.process_time``; run on ONE thread, the default with
``SALIENCY_THREADS=1``, they measure the work, not the load of a shared machine); wall seconds are recorded too, and
the results file records the load average. Pure model time is measured once per batch size the methods use (forward
at batch 64, forward+backward at the igos/smoothgrad batch sizes); each run's ratio = its CPU time / (its
forward-only passes × forward time per image + its backward passes × forward+backward time per image). The slope of
a sweep divided by the pure time of one pass is the marginal ratio (1.0 = every extra sample costs exactly one
model pass).

Default run: ~2-3 minutes of CPU on one thread (longer in wall time on a loaded machine).

Usage: ``python benchmarks/scaling.py [--sizes 7 14 28] [--samples 50 100 200 400] [--images 1 2 4] [--threads N]``
Last line: ``leg_s_per_forward=<f> rise_s_per_forward=<f> leg_marginal_ratio=<f> rise_marginal_ratio=<f>
igospp_ratio_7=<f> igospp_ratio_28=<f> images_s_per_image=<f>``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _results import record


def pure_times(clf, batch_fwd: int, batches_fb: list[int], reps: int = 2) -> dict[str, float]:
    """CPU seconds per image of a bare batched forward (no grad) and forward+backward, best of ``reps``."""
    out: dict[str, float] = {}
    x = torch.rand(batch_fwd, 3, clf.input_size, clf.input_size)
    z = clf.normalize(x)
    with torch.no_grad():
        clf.net(z)  # warm-up
        ts = []
        for _ in range(reps):
            t0 = time.process_time()
            clf.net(z)
            ts.append(time.process_time() - t0)
    out["fwd"] = min(ts) / batch_fwd
    with clf.guard():
        for b in sorted(set(batches_fb)):
            zb = z[:b].clone()
            ts = []
            for _ in range(reps + 1):
                zi = zb.clone().requires_grad_(True)
                t0 = time.process_time()
                clf.net(zi)[:, 0].sum().backward()
                ts.append(time.process_time() - t0)
            out[f"fb{b}"] = min(ts[1:]) / b
    return out


def model_seconds(n_forward: int, n_backward: int, fwd: float, fb: float) -> float:
    """Pure model time of ``n_forward`` images forwarded of which ``n_backward`` were also back-propagated."""
    return (n_forward - n_backward) * fwd + n_backward * fb


def fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares line ``y = intercept + slope * x``; returns ``(slope, intercept)``."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[7, 14, 28])
    ap.add_argument("--igos-iterations", type=int, default=2)
    ap.add_argument("--igos-ig-steps", type=int, default=3)
    ap.add_argument("--samples", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--images", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--images-method", default="smoothgrad")
    ap.add_argument("--images-params", default="n_samples=8,batch_size=8",
                    help="comma-separated key=int settings of --images-method")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("sizes", "samples", "images"):
        vals = getattr(args, name)
        if len(vals) < 2 or min(vals) < 1:
            raise SystemExit(f"--{name}={vals} is not valid; accepted values: two or more ints >= 1")
    img_params = {}
    for item in filter(None, args.images_params.split(",")):
        k, _, v = item.partition("=")
        img_params[k.strip()] = int(v)

    from saliency_core import ResultCache, embedded_images, get_explainer, load_model, records_to_batch
    from saliency_core.runtime import configure

    rt = configure(args.threads)
    clf = load_model("efficientnet_lite0")
    recs = embedded_images()
    x = records_to_batch(recs[:1], clf)
    target = clf.top1(x)
    print(f"threads={rt['threads']} image={recs[0].id.split('/')[-1]} target={target}")

    igos_bs = 16
    img_bs = int(img_params.get("batch_size", 8))
    pure = pure_times(clf, 64, [igos_bs, img_bs])
    print(f"pure model (CPU time): forward {pure['fwd'] * 1e3:.1f} ms/image (batch 64), forward+backward "
          + ", ".join(f"{pure[f'fb{b}'] * 1e3:.1f} ms/image (batch {b})" for b in sorted({igos_bs, img_bs})))
    rows: list[dict] = []

    def run(sweep: str, method: str, param: str, value: int, fb: float, explain) -> dict:
        t0, w0 = time.process_time(), time.perf_counter()
        exps = explain()
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        n_f = sum(e.n_forward for e in exps)
        n_b = sum(e.n_backward for e in exps)
        model = model_seconds(n_f, n_b, pure["fwd"], fb)
        row = {"sweep": sweep, "method": method, "param": param, "value": value, "seconds": cpu,
               "wall_seconds": wall, "n_forward": n_f, "n_backward": n_b,
               "n_forward_calls": sum(e.n_forward_calls for e in exps), "model_seconds": model,
               "outside_model_seconds": cpu - model, "ratio": cpu / model if model > 0 else float("nan")}
        rows.append(row)
        print(f"  {method} {param}={value}: {cpu:.2f} CPU s ({wall:.2f} wall s), fwd {n_f} bwd {n_b} "
              f"(calls {row['n_forward_calls']}), pure model {model:.2f} s -> ratio {row['ratio']:.2f}")
        return row

    # (a) iGOS++ vs mask resolution ---------------------------------------------------------------
    print(f"(a) igos_pp vs mask resolution ({args.igos_iterations} iterations, {args.igos_ig_steps} IG points)")

    def igos(size: int):
        return get_explainer("igos_pp", clf, size=size, iterations=args.igos_iterations,
                             ig_steps=args.igos_ig_steps, batch_size=igos_bs)

    igos(min(args.sizes)).explain(x, target)  # warm-up
    res_rows = [run("resolution", "igos_pp", "size", s, pure[f"fb{igos_bs}"],
                    lambda s=s: [igos(s).explain(x, target)]) for s in args.sizes]
    cell_slope, _ = fit([r["value"] ** 2 for r in res_rows], [r["seconds"] - r["model_seconds"] for r in res_rows])
    print(f"  time outside the model grows by {cell_slope * 1e3:.3f} ms per mask cell (size^2)")

    # (b) LEG and RISE vs number of samples --------------------------------------------------------
    print("(b) leg and rise vs number of samples")
    slopes = {}
    for method, param in (("leg", "n_samples"), ("rise", "n_masks")):
        get_explainer(method, clf, **{param: 10}, batch_size=64).explain(x, target)  # warm-up
        rs = [run("samples", method, param, n, pure["fwd"],
                  lambda n=n, m=method, p=param: [get_explainer(m, clf, **{p: n}, batch_size=64).explain(x, target)])
              for n in args.samples]
        slope, icpt = fit([r["n_forward"] for r in rs], [r["seconds"] for r in rs])
        slopes[method] = slope
        print(f"  {method}: slope {slope * 1e3:.2f} ms per forward pass (pure {pure['fwd'] * 1e3:.2f}) -> marginal "
              f"ratio {slope / pure['fwd']:.2f}; intercept {icpt:.2f} s")

    # (c) number of images, cache-less path ---------------------------------------------------------
    print(f"(c) {args.images_method} {img_params} vs number of images (ResultCache(enabled=False).explain_many)")
    cache = ResultCache(enabled=False)
    exp = get_explainer(args.images_method, clf, **img_params)
    cache.explain_many(exp, recs[:1], progress=False)  # warm-up
    img_rows = [run("images", args.images_method, "n_images", n, pure[f"fb{img_bs}"],
                    lambda n=n: cache.explain_many(exp, recs[:n], progress=False)) for n in args.images]
    img_slope, img_icpt = fit([r["value"] for r in img_rows], [r["seconds"] for r in img_rows])
    print(f"  slope {img_slope:.3f} s per image, intercept {img_icpt:.3f} s")

    by_size = {r["value"]: r["ratio"] for r in res_rows}
    metrics = {
        "leg_s_per_forward": slopes["leg"],
        "rise_s_per_forward": slopes["rise"],
        "leg_marginal_ratio": slopes["leg"] / pure["fwd"],
        "rise_marginal_ratio": slopes["rise"] / pure["fwd"],
        f"igospp_ratio_{min(args.sizes)}": by_size[min(args.sizes)],
        f"igospp_ratio_{max(args.sizes)}": by_size[max(args.sizes)],
        "igospp_s_per_cell": cell_slope,
        "images_s_per_image": img_slope,
        "images_intercept_s": img_icpt,
        "pure_fwd_s_per_image": pure["fwd"],
        **{f"pure_fwdbwd_s_per_image_b{b}": pure[f"fb{b}"] for b in sorted({igos_bs, img_bs})},
    }
    extra = {"time": "CPU seconds (time.process_time)", "args": vars(args), "images_params": img_params,
             "threads": rt["threads"]}
    record("scaling", metrics, extra=extra, rows=rows)
    keys = ("leg_s_per_forward", "rise_s_per_forward", "leg_marginal_ratio", "rise_marginal_ratio",
            f"igospp_ratio_{min(args.sizes)}", f"igospp_ratio_{max(args.sizes)}", "images_s_per_image")
    print(" ".join(f"{k}={metrics[k]:.4f}" for k in keys))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
