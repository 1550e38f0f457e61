"""Extremal perturbations: ours vs TorchRay (when importable) on the same model, image, area and settings.

Measures (one run):
* mask_corr: Pearson correlation of the 224² masks after the same number of iterations;
* time_ratio_vs_torchray: our wall time / TorchRay's wall time;
* overhead_ratio: our wall time / the time of the pure batched model forward+backward passes that EP needs
  (max_iter batches of K images through the network, gradients w.r.t. the input, plus the 2K + 1 no-grad evaluations
  ours adds after the loop), i.e. what the optimiser costs beyond the model.

Both ratios come from ``--repeats`` rounds run back to back, replay | ours | TorchRay | replay | ours | TorchRay |
replay ...: each round's overhead ratio divides our time by the mean of the two replays around it, its time ratio by
the TorchRay run next to it, and the printed ratio is the median over the rounds. On a shared (virtual) machine
consecutive 45-second timings of the same work differ by up to ~10 %, so one pair of runs cannot resolve a 1.15 goal.

Also printed: TorchRay's own overhead ratio (its wall time / the pure model time of ITS passes, the max_iter batches
only), which bounds the reachable time ratio: even an optimiser costing nothing beyond the model would reach only
time_ratio = 1 / TorchRay's overhead ratio; and every time again in process CPU time, which a busy machine disturbs
less than wall time.

TorchRay (CC BY-NC) is never a project dependency. Install it for this benchmark only, e.g.
``pip install --no-deps --target /tmp/torchray torchray``; the script adds /tmp/torchray to ``sys.path`` when present
(or ``TORCHRAY_PATH``). Without it the TorchRay keys print nan.

Agreement is limited by floating point: EP's trajectory is chaotic, so ~1 ulp of difference anywhere (the order of
a sum, a fused multiply-add) grows over the iterations. The **noise floor** measures that limit: the correlation of
our own mask with our mask for the input changed by x·(1 + 1e-7·N(0, 1)). ``--horizons 50 100 200`` also prints
both correlations after fewer iterations (separate runs, the trajectories are deterministic), which shows the
divergence growing with the horizon for both pairs alike.

**Time outside the network.** EP is also run on a *free stand-in model* (the same preprocessing, logits =
a linear map of the channel means: its forward and backward cost ~nothing), at two iteration counts; the difference
divided by the difference in iterations is the marginal time of one iteration outside the network (mask generator,
pyramid interpolation, area term, optimiser; one-time costs such as the blur pyramid cancel), in process CPU time
(``outside_ms_per_iter``) and wall time. ``--profile`` also prints the operators that take that time, per iteration
(torch.profiler on the stand-in model, self CPU time), and skips the TorchRay comparison unless ``--iters`` is given.

Usage: python benchmarks/extremal_vs_torchray.py [--iters 800] [--areas 0.1] [--image 0] [--threads N]
       [--repeats 3] [--no-noise-floor] [--horizons N ...] [--profile]
Last line: mask_corr=<f> time_ratio_vs_torchray=<f> overhead_ratio=<f> outside_ms_per_iter=<f>
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from _results import record


class FreeNet(torch.nn.Module):
    """A stand-in classifier whose forward and backward cost ~nothing: logits = linear map of the channel means.

    Every input pixel gets a gradient, so the backward pass through EP's operators is the real one."""

    def __init__(self, n_classes: int = 1000) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3, n_classes)
        torch.nn.init.normal_(self.fc.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z.mean((2, 3)))


def outside_network(clf, x, target, areas, n1: int = 20, n2: int = 120, repeats: int = 3) -> dict[str, float]:
    """Marginal time of one EP iteration on a free stand-in model (ms): median over ``repeats`` of
    (t(n2) − t(n1)) / (n2 − n1), process CPU time and wall time."""
    from saliency_core.methods.extremal import ExtremalPerturbation
    from saliency_core.models import Classifier

    free = Classifier.from_module(FreeNet(len(clf.class_names)), preprocess=clf.preprocessing,
                                  class_names=clf.class_names, name="free_stand_in", canonical=False)
    ExtremalPerturbation(free, areas=areas, iterations=5).explain(x, target)  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        t = {}
        for n in (n1, n2):
            ep = ExtremalPerturbation(free, areas=areas, iterations=n)
            t0, c0 = time.perf_counter(), time.process_time()
            ep.explain(x, target)
            t[n] = (time.perf_counter() - t0, time.process_time() - c0)
        wall.append((t[n2][0] - t[n1][0]) / (n2 - n1) * 1e3)
        cpu.append((t[n2][1] - t[n1][1]) / (n2 - n1) * 1e3)
    return {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall), "runs_cpu_ms": cpu,
            "runs_wall_ms": wall}


def profile_outside_network(clf, x, target, areas, iters: int = 30, top: int = 15) -> list[dict]:
    """torch.profiler over ``iters`` EP iterations on the free stand-in model: the ``top`` operators by self CPU time,
    per iteration (one-time costs, e.g. the blur pyramid, are divided by ``iters`` too)."""
    from torch.profiler import ProfilerActivity, profile

    from saliency_core.methods.extremal import ExtremalPerturbation
    from saliency_core.models import Classifier

    free = Classifier.from_module(FreeNet(len(clf.class_names)), preprocess=clf.preprocessing,
                                  class_names=clf.class_names, name="free_stand_in", canonical=False)
    ExtremalPerturbation(free, areas=areas, iterations=5).explain(x, target)  # warm-up
    ep = ExtremalPerturbation(free, areas=areas, iterations=iters)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ep.explain(x, target)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) / iters / 1e3
    rows = [{"kind": "profile", "operator": e.key, "self_ms_per_iter": e.self_cpu_time_total / iters / 1e3,
             "calls_per_iter": e.count / iters} for e in ops[:top]]
    print(f"top operators outside the network, per iteration (free stand-in model, {iters} iterations, "
          f"profiler self CPU time; total {total:.2f} ms per iteration with the profiler's own overhead; "
          f"load {os.getloadavg()[0]:.2f}):")
    print(f"{'operator':<45} {'ms/iter':>8} {'calls/iter':>10}")
    for r in rows:
        print(f"{r['operator'][:45]:<45} {r['self_ms_per_iter']:>8.3f} {r['calls_per_iter']:>10.1f}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=800, help="EP iterations (TorchRay's and the paper's default: 800)")
    ap.add_argument("--areas", type=float, nargs="+", default=[0.1])
    ap.add_argument("--image", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of (ours, TorchRay) between replays of the model passes; ratios are medians over them")
    ap.add_argument("--noise-floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also run ours on the input perturbed at float precision (x·(1 + 1e-7·N(0, 1))) and print "
                         "the mask correlation with the unperturbed run: the agreement that rounding alone allows")
    ap.add_argument("--horizons", type=int, nargs="*", default=[],
                    help="also compare after these (fewer) iterations: ours vs TorchRay and the noise floor")
    ap.add_argument("--profile", action="store_true",
                    help="print the top operators outside the network per iteration (free stand-in model) and the "
                         "stand-in timing only, unless --iters is given too (then the full benchmark follows)")
    args = ap.parse_args()
    iters_given = any(a == "--iters" or a.startswith("--iters=") for a in sys.argv[1:])

    from saliency_core import embedded_images, load_model, records_to_batch
    from saliency_core.methods.extremal import ExtremalPerturbation
    from saliency_core.runtime import configure

    rt = configure(threads=args.threads)
    clf = load_model("efficientnet_lite0")
    rec = embedded_images()[args.image]
    x = records_to_batch([rec], clf)
    target = clf.top1(x)
    k = len(args.areas)
    name = rec.id.split("/")[-1]
    print(f"threads={rt['threads']} image={name} target={target} areas={args.areas} iters={args.iters}")

    areas = tuple(args.areas)
    profile_rows = profile_outside_network(clf, x, target, areas) if args.profile else []
    outside = outside_network(clf, x, target, areas)
    print(f"time outside the network (free stand-in model, marginal per iteration): {outside['cpu_ms']:.2f} ms CPU, "
          f"{outside['wall_ms']:.2f} ms wall (median of {len(outside['runs_cpu_ms'])}: CPU "
          f"{[round(v, 2) for v in outside['runs_cpu_ms']]}); load {os.getloadavg()[0]:.2f}")
    if args.profile and not iters_given:
        print(f"outside_ms_per_iter={outside['cpu_ms']:.3f}")
        return

    z = clf.normalize(x).expand(k, -1, -1, -1).contiguous()

    def model_pass() -> None:
        """One batch of K forward + backward passes, gradient w.r.t. the input (what one EP iteration needs)."""
        clf.net(z.clone().requires_grad_(True))[:, target].sum().backward()

    # -- warm-up, so that none of the timed runs below pays the one-time costs (oneDNN primitive creation,
    # allocator growth) that the first run would otherwise carry alone
    with clf.guard():
        model_pass()

    def replay() -> tuple[float, float, float, float]:
        """The model passes of one EP run on their own: (wall, CPU) of the max_iter batches, and of all of them."""
        with clf.guard():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.iters):
                model_pass()
            t_loop, c_loop = time.perf_counter() - t0, time.process_time() - c0
            with torch.no_grad():  # the 2K + 1 no-grad evaluations ours adds after the loop
                clf.net(torch.cat([z, z]))
                clf.net(z[:1])
        return t_loop, c_loop, time.perf_counter() - t0, time.process_time() - c0

    def run_ours():
        ep = ExtremalPerturbation(clf, areas=tuple(args.areas), iterations=args.iters)
        t0, c0 = time.perf_counter(), time.process_time()
        out = ep.explain(x, target)
        return out, time.perf_counter() - t0, time.process_time() - c0

    # -- TorchRay -----------------------------------------------------------------------------
    path = os.environ.get("TORCHRAY_PATH", "/tmp/torchray")
    if os.path.isdir(path) and path not in sys.path:
        sys.path.append(path)
    try:
        from torchray.attribution.extremal_perturbation import extremal_perturbation
    except Exception as exc:  # noqa: BLE001 - report why and print nan
        extremal_perturbation = None
        print(f"TorchRay not importable ({type(exc).__name__}: {exc}); install it for this benchmark only, "
              f"e.g. pip install --no-deps --target /tmp/torchray torchray")

    def torchray(iters: int):
        """TorchRay's (K, H·W) masks after ``iters`` iterations, wall and CPU seconds."""
        flags = [p.requires_grad for p in clf.net.parameters()]
        clf.net.eval()
        t0, c0 = time.perf_counter(), time.process_time()
        masks, _ = extremal_perturbation(clf.net, clf.normalize(x), target, areas=list(args.areas), max_iter=iters)
        t, c = time.perf_counter() - t0, time.process_time() - c0
        for p, f in zip(clf.net.parameters(), flags):  # TorchRay leaves requires_grad=False behind
            p.requires_grad_(f)
        return masks[:, 0].detach().numpy().reshape(k, -1), t, c

    # -- rounds: replay | ours | TorchRay | replay | ... ---------------------------------------
    replays = [replay()]
    rounds = []
    ours = ref = None
    for r in range(max(1, args.repeats)):
        out, t_o, c_o = run_ours()
        if ours is not None and not torch.equal(out.map, ours.map):
            raise SystemExit("ours gave another mask on a repeated run: not deterministic")
        ours = out
        t_r = c_r = float("nan")
        if extremal_perturbation is not None:
            ref, t_r, c_r = torchray(args.iters)
        replays.append(replay())
        before, after = replays[-2], replays[-1]
        model = ((before[2] + after[2]) / 2, (before[3] + after[3]) / 2)
        loop = ((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)
        rounds.append({"kind": "round", "round": r, "seconds_ours": t_o, "seconds_ours_cpu": c_o,
                       "seconds_model": model[0], "seconds_model_cpu": model[1], "seconds_model_loop": loop[0],
                       "seconds_model_loop_cpu": loop[1], "seconds_torchray": t_r, "seconds_torchray_cpu": c_r,
                       "overhead_ratio": t_o / model[0], "overhead_ratio_cpu": c_o / model[1],
                       "time_ratio_vs_torchray": t_o / t_r, "time_ratio_vs_torchray_cpu": c_o / c_r,
                       "torchray_overhead_ratio": t_r / loop[0], "bound": model[0] / t_r})
        print(f"round {r}: ours {t_o:.2f} s, model passes {model[0]:.2f} s (replays {before[2]:.2f} | {after[2]:.2f}), "
              f"TorchRay {t_r:.2f} s -> overhead ratio {t_o / model[0]:.3f}, time ratio {t_o / t_r:.3f}")

    def med(key: str) -> float:
        return float(statistics.median(rd[key] for rd in rounds))

    overhead, ratio = med("overhead_ratio"), med("time_ratio_vs_torchray")
    t_ours, c_ours, t_model, c_model = med("seconds_ours"), med("seconds_ours_cpu"), med("seconds_model"), \
        med("seconds_model_cpu")
    print(f"ours: {t_ours:.2f} s (CPU {c_ours:.2f} s; median of {len(rounds)}), forward passes {ours.n_forward}, "
          f"backward passes {ours.n_backward}")
    print(f"pure model forward+backward for the same passes: {t_model:.2f} s (CPU {c_model:.2f} s) -> overhead ratio "
          f"{overhead:.3f} (CPU {med('overhead_ratio_cpu'):.3f}; median over rounds of ours / the replays around it)")

    def perturbed(iters: int):
        """Our (K, H·W) masks for x·(1 + 1e-7·N(0, 1)): what rounding alone changes."""
        gen = torch.Generator().manual_seed(1)
        xp = x * (1 + 1e-7 * torch.randn(x.shape, generator=gen))
        run = ExtremalPerturbation(clf, areas=tuple(args.areas), iterations=iters)
        return run.explain(xp, target).extras["masks"].numpy().reshape(k, -1)

    def corr_rows(a, b) -> list[float]:
        return [float(np.corrcoef(a[i], b[i])[0, 1]) for i in range(k)]

    mine = ours.extras["masks"].numpy().reshape(k, -1)
    corr = floor = float("nan")
    t_tr = c_tr = float("nan")
    if extremal_perturbation is not None:
        t_tr, c_tr = med("seconds_torchray"), med("seconds_torchray_cpu")
        corrs = corr_rows(ref, mine)
        corr = float(np.mean(corrs))
        mad = float(np.abs(ref - mine).mean())
        print(f"TorchRay: {t_tr:.2f} s (CPU {c_tr:.2f} s; median); per-area mask correlation "
              f"{np.round(corrs, 4).tolist()}, mean |diff| {mad:.4f}")
        # TorchRay's own passes are the max_iter batches only (no evaluations after the loop)
        print(f"TorchRay overhead ratio {med('torchray_overhead_ratio'):.3f}; time ratio ours/TorchRay {ratio:.3f} "
              f"(CPU {med('time_ratio_vs_torchray_cpu'):.3f}; median over rounds); a zero-overhead optimiser would "
              f"reach {med('bound'):.3f}")
    if args.noise_floor:
        # EP's trajectory is sensitive to rounding: the same code on an input changed by ~1 ulp gives this agreement,
        # so two implementations that round differently (ours vs TorchRay) cannot be expected to agree better.
        floors = corr_rows(perturbed(args.iters), mine)
        floor = float(np.mean(floors))
        print(f"noise floor: mask correlation of ours with ours on x*(1 + 1e-7*N(0,1)): {np.round(floors, 4).tolist()} "
              f"(mean {floor:.4f}); ours vs TorchRay {'>=' if corr >= floor else '<'} the floor")
    horizon_rows = []
    for h in sorted(set(args.horizons) - {args.iters}) + [args.iters]:
        if h == args.iters:
            c_tr_h, c_fl_h = corr, floor
        else:
            mine_h = ExtremalPerturbation(clf, areas=tuple(args.areas), iterations=h).explain(x, target)
            mine_h = mine_h.extras["masks"].numpy().reshape(k, -1)
            c_tr_h = float(np.mean(corr_rows(torchray(h)[0], mine_h))) if extremal_perturbation else float("nan")
            c_fl_h = float(np.mean(corr_rows(perturbed(h), mine_h)))
        horizon_rows.append({"kind": "agreement", "iterations": h, "corr_vs_torchray": c_tr_h, "noise_floor": c_fl_h})
    if len(horizon_rows) > 1:
        print("iterations  corr(ours, TorchRay)  corr(ours, ours on x(1+1e-7 N))")
        for r in horizon_rows:
            print(f"{r['iterations']:>10}  {r['corr_vs_torchray']:>20.4f}  {r['noise_floor']:>31.4f}")
    print(f"mask_corr={corr:.4f} time_ratio_vs_torchray={ratio:.4f} overhead_ratio={overhead:.4f} "
          f"outside_ms_per_iter={outside['cpu_ms']:.3f}")
    record("extremal_vs_torchray",
           {"mask_corr": corr, "time_ratio_vs_torchray": ratio, "overhead_ratio": overhead, "seconds_ours": t_ours,
            "seconds_model": t_model, "seconds_torchray": t_tr, "noise_floor": floor,
            "outside_ms_per_iter": outside["cpu_ms"], "outside_wall_ms_per_iter": outside["wall_ms"],
            "seconds_ours_cpu": c_ours, "seconds_model_cpu": c_model, "overhead_ratio_cpu": med("overhead_ratio_cpu"),
            "seconds_torchray_cpu": c_tr, "time_ratio_vs_torchray_cpu": med("time_ratio_vs_torchray_cpu")},
           extra={"iters": args.iters, "areas": args.areas, "image": name, "target": target, "repeats": len(rounds),
                  "outside_network": outside},
           rows=[{"kind": "explanation", "method": "extremal_perturbation",
                  "budget": f"{args.iters} iterations, {k} area(s)", "seconds": t_ours, "n_forward": ours.n_forward,
                  "n_backward": ours.n_backward, "overhead_ratio": overhead, "clock": "wall", "how": "measured"},
                 {"kind": "official", "method": "extremal_perturbation", "implementation": "TorchRay",
                  "seconds": t_tr, "clock": "wall"}] + rounds + horizon_rows + profile_rows)


if __name__ == "__main__":
    main()
