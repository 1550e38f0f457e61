"""I-GOS / iGOS++ cost per image at 28×28 with the paper defaults (15 iterations, 20 IG points), batched vs the
official implementation's per-path-point loop (re-implemented here from its structure, not copied).

Measures, on EfficientNet-Lite0 and one embedded photo:
* wall time, images forwarded / back-propagated and batched calls of ``IGOS`` and ``IGOSPlusPlus``;
* the overhead ratio: wall time / the time the same numbers of forward and forward+backward image passes take
  in plain batched model calls (1.0 = no overhead outside the network);
* the un-batched baseline: every path point of every term is its own forward/backward (batch 1), the base loss
  of the line search is a separate noisy integrated evaluation, trial points are evaluated one after another —
  the structure of ``khorrams/IGOS_pp:methods.py`` (protocols.md §4.3).

Times are CPU seconds of this process (``time.process_time``), run by default on ONE thread, so that they measure
the work and not the load of a shared machine (wall seconds are printed too). CPU time is long, so by default
both run ``--iterations`` (2) optimisation iterations and the per-image numbers
are extrapolated to 15 iterations (per-iteration cost is constant up to the line-search trial count, which is
measured); ``--iterations 15`` measures a full run. Last line: key=value summary.
"""

from __future__ import annotations

import argparse
import time

import torch

from saliency_core import embedded_images, load_model, records_to_batch
from saliency_core.explanation import count_passes
from saliency_core.methods.igos import IGOS, IGOSPlusPlus
from saliency_core.perturbations import blur_baseline, igospp_btv, upsample_mask
from saliency_core.runtime import configure


def pass_times(clf, batch: int, reps: int = 2) -> tuple[float, float]:
    """Seconds per image of a batched forward (no grad) and of a forward+backward."""
    x = torch.rand(batch, 3, 224, 224)
    with torch.no_grad():
        clf.net(x)
        t = time.process_time()
        for _ in range(reps):
            clf.net(x)
        fwd = (time.process_time() - t) / (reps * batch)
    t = time.process_time()
    for _ in range(reps):
        xx = x.clone().requires_grad_(True)
        clf.net(xx).softmax(1)[:, 0].sum().backward()
    fb = (time.process_time() - t) / (reps * batch)
    return fwd, fb


def loop_igospp(clf, x, target, iterations: int, n: int, size: int = 28, l1=1.0, l2=20.0, alpha0=1000.0,
                noise=0.2, seed=0) -> dict:
    """iGOS++ with the official structure: one image per model call, sequential line search."""
    gen = torch.Generator().manual_seed(seed)
    z = clf.normalize(x)
    zb = clf.normalize(blur_baseline(x, 51, 50.0))
    mx = torch.ones(1, 1, size, size)
    my = torch.ones(1, 1, size, size)

    def phi(kind, m, a):
        up = upsample_mask(m, (224, 224), align_corners=True) * a
        img = z * up + zb * (1 - up) if kind == "del" else zb * up + z * (1 - up)
        return img + torch.randn(img.shape, generator=gen) * noise

    def reg(m):
        return l1 * (1 - m).abs().mean() + l2 * igospp_btv(z, m).sum()

    def terms(a, b):
        return (("del", a), ("ins", b), ("del", a * b), ("ins", a * b))

    @torch.no_grad()
    def loss(a, b):
        tot = 0.0
        for kind, m in terms(a, b):
            for k in range(1, n + 1):
                p = float(clf.net(phi(kind, m, k / n)).softmax(1)[0, target])
                tot += (p if kind == "del" else -p) / n
        return tot + float(reg(a * b))

    with count_passes(clf.net) as c:
        t0, w0 = time.process_time(), time.perf_counter()
        for _ in range(iterations):
            a = mx.clone().requires_grad_(True)
            b = my.clone().requires_grad_(True)
            for kind, _m in terms(a, b):
                for k in range(1, n + 1):
                    p = clf.net(phi(kind, _m, k / n)).softmax(1)[0, target]
                    ((0.5 if kind == "del" else -0.5) * p / n).backward(retain_graph=True)
            gr = torch.autograd.grad(reg(a * b), [a, b])
            ga, gb = a.grad + gr[0], b.grad + gr[1]
            base = loss(mx, my)
            gsq = float((ga * ga).sum() + (gb * gb).sum())
            alpha = alpha0
            while alpha >= 1e-5:
                if loss((mx - alpha * ga).clamp(0, 1), (my - alpha * gb).clamp(0, 1)) <= base - 1e-4 * alpha * gsq:
                    break
                alpha *= 0.2
            mx = (mx - alpha * ga).clamp(0, 1).detach()
            my = (my - alpha * gb).clamp(0, 1).detach()
        sec, wall = time.process_time() - t0, time.perf_counter() - w0
    return {"seconds": sec, "wall": wall, **c.as_dict()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--loop-iterations", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    print(configure(args.threads))
    clf = load_model("efficientnet_lite0")
    x = records_to_batch(embedded_images()[:1], clf)
    target = clf.top1(x)
    scale = 15 / args.iterations
    out = {}
    exps = {}
    for name, cls in (("igos", IGOS), ("igospp", IGOSPlusPlus)):
        e = cls(clf, size=28, iterations=args.iterations, ig_steps=20, batch_size=args.batch_size)
        t0 = time.process_time()
        exps[name] = e.explain(x, target)
        exps[name].extras["cpu_seconds"] = time.process_time() - t0
    # plain batched model passes, measured after the runs (warm allocator), at the same chunk size
    fwd, fb = pass_times(clf, args.batch_size)
    print(f"model: forward {fwd * 1e3:.1f} ms/image, forward+backward {fb * 1e3:.1f} ms/image "
          f"(batch {args.batch_size})")
    for name, ex in exps.items():
        n_fwd_only = ex.n_forward - ex.n_backward
        ideal = n_fwd_only * fwd + ex.n_backward * fb
        cpu = ex.extras["cpu_seconds"]
        out[name] = {"s": cpu * scale, "fwd": ex.n_forward * scale, "bwd": ex.n_backward * scale,
                     "calls": (ex.n_forward_calls + ex.n_backward_calls) * scale, "overhead": cpu / ideal,
                     "trials": ex.extras["ls_trials"]}
        print(f"{name}: {cpu:.1f} CPU s ({ex.seconds:.1f} wall s) for {args.iterations} iterations -> "
              f"{out[name]['s']:.1f} s/image (15 it); "
              f"images fwd {ex.n_forward} bwd {ex.n_backward}, batched calls fwd {ex.n_forward_calls} "
              f"bwd {ex.n_backward_calls}; line-search trials {ex.extras['ls_trials']}; "
              f"overhead {out[name]['overhead']:.2f}")
    lp = loop_igospp(clf, x, target, args.loop_iterations, 20)
    lscale = 15 / args.loop_iterations
    per_it_loop = lp["seconds"] / args.loop_iterations
    per_it_ours = out["igospp"]["s"] / 15
    print(f"per-path-point loop (official structure): {lp['seconds']:.1f} CPU s ({lp['wall']:.1f} wall s) for "
          f"{args.loop_iterations} iteration(s) "
          f"-> {per_it_loop * 15:.1f} s/image; images fwd {lp['n_forward']} bwd {lp['n_backward']}, calls fwd "
          f"{lp['n_forward_calls']} bwd {lp['n_backward_calls']} (x{lscale:.0f} per image)")
    print(f"speed-up of the batched iGOS++ over the loop: {per_it_loop / per_it_ours:.2f}x per iteration")
    passes = int(round(out["igospp"]["fwd"] + out["igospp"]["bwd"]))
    print(f"igos_s_per_image={out['igos']['s']:.2f} igospp_s_per_image={out['igospp']['s']:.2f} "
          f"igospp_passes_per_image={passes} overhead_ratio={out['igospp']['overhead']:.3f}")


if __name__ == "__main__":
    main()
