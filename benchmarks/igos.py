"""I-GOS / iGOS++ cost per image at 28×28 with the paper defaults (15 iterations, 20 IG points): ours vs the
official implementations' structure (re-implemented here from the book's appendix §4.2-4.3, not copied), and the
work our code does outside the network.

Two official structures are emulated, pass for pass, with frozen parameters as both official scripts do:

* ``zhongangqi/IGOS`` demo (I-GOS): a per-path-point loop, ONE image per forward (20 forwards with autograd and
  one backward through all of them), a forward of φ(M) for the noise-free base loss (with autograd, since the
  mask requires grad), one single-image forward per line-search trial, and the demo's per-iteration diagnostic
  forward of the top-40-cells mask (``curvetop``);
* ``khorrams/IGOS_pp`` (iGOS++): the 20 path points of a term in ONE forward (batch 20) and one backward per
  term, four terms; the line search (under ``no_grad``) evaluates the base loss afresh (4 forwards of 20 with
  fresh noise), then every trial point in full (4 forwards of 20 each), one after the other, until the Armijo
  condition holds or the step falls below 1e-5 (the official loop still evaluates that last step).

Ours (``IGOS`` / ``IGOSPlusPlus``) make the same gradient passes in chunks of ``--batch-size`` images, reuse the
gradient pass's loss as the base (iGOS++) or the previous accepted noise-free trial point (I-GOS), and reject
trial points as soon as the regulariser and the images done so far prove the Armijo test fails.

Times are CPU seconds of this process (``time.process_time``), by default on ONE thread, so that they measure the
work and not the load of a shared machine. Every implementation runs ``--iterations`` optimisation iterations;
per-image numbers are extrapolated to 15 iterations (``--iterations 15`` measures a full run).

Overhead ratio = CPU time of our explanation / CPU time of the SAME model calls (same batch sizes, same order,
forward under ``no_grad`` or forward + backward to the input) replayed on fixed inputs with nothing else around
them (1.0 = no work outside the network). Runs and replays alternate (replay, run, replay, run, ..., replay) and
the ratio is the median over ``--repeats`` runs of run / mean of its two neighbouring replays, so that a change of
load on a shared machine hits both sides alike. The earlier estimate (the same numbers of images priced at per-image
rates measured once, at one batch size, after the runs) is printed too as ``overhead_ratio_rates``.

Work outside the network per iteration, on its own: the same explanations with a free stand-in network (a linear
layer on a 14×14 subsample of the image), minus the replay of the stand-in's calls (``*_outside_ms_per_iteration``;
the stand-in's line search takes its own course, so the images per iteration are recorded beside it).
``--profile`` also runs ``--profile-iterations`` iterations of each method with the real network under
``torch.profiler`` and prints the top operators outside the network per iteration (the network = everything inside
its forward and the backward nodes its forward created; CPU-scaled: event times × CPU time / wall time).
Last line: key=value summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from _results import record
from torch import nn

from saliency_core import embedded_images, load_model, records_to_batch
from saliency_core.explanation import count_passes
from saliency_core.methods.igos import IGOS, IGOSPlusPlus
from saliency_core.models import Classifier
from saliency_core.perturbations import blur_baseline, igospp_btv, tv_norm, upsample_mask
from saliency_core.runtime import configure

PAPER_ITERATIONS = 15


def pass_times(clf, batch: int, reps: int = 3) -> tuple[float, float]:
    """CPU seconds per image of a batched forward (no grad) and of a forward+backward, parameters frozen."""
    x = torch.rand(batch, 3, 224, 224)
    with clf.guard():
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


class _Phases:
    """Images and model calls per phase of an emulated official run."""

    def __init__(self) -> None:
        self.images: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.trials: list[int] = []

    def add(self, phase: str, n: int) -> None:
        self.images[phase] = self.images.get(phase, 0) + n
        self.calls[phase] = self.calls.get(phase, 0) + 1


def official_igos_demo(clf, x, target: int, iterations: int, n: int = 20, size: int = 28, l1: float = 1.0,
                       tv: float = 20.0, noise: float = 0.2, seed: int = 0) -> dict:
    """The zhongangqi/IGOS demo's loop structure (appendix §4.2), one image per model call."""
    gen = torch.Generator().manual_seed(seed)
    z, zb = clf.normalize(x), clf.normalize(blur_baseline(x, 51, 50.0))
    ph = _Phases()

    def net_p(img: torch.Tensor, phase: str) -> torch.Tensor:
        ph.add(phase, img.shape[0])
        return clf.net(img).softmax(1)[0, target]

    def up(m):
        return upsample_mask(m, (224, 224), align_corners=True)

    def reg(m, l1_):
        return l1_ * (1 - m).abs().mean() + tv * tv_norm(m, 2.0).sum()

    mask = torch.ones(1, 1, size, size, requires_grad=True)
    with clf.guard(), count_passes(clf.net) as c:
        t0 = time.process_time()
        net_p(z, "other")  # the demo's top-1 forward of the clean image
        curve2 = []
        for i in range(iterations):
            u = up(mask)
            loss1 = reg(mask, l1)
            loss_all = loss1
            for k in range(1, n + 1):  # the per-path-point loop: one image per forward, graph kept for backward
                m = k / n * u
                img = z * m + zb * (1 - m) + torch.randn(z.shape, generator=gen) * noise
                loss_all = loss_all + net_p(img, "grad") / n
            (grad,) = torch.autograd.grad(loss_all, [mask])
            p_ori = net_p(z * u + zb * (1 - u), "base")  # built with autograd: the mask requires grad
            p0 = float(p_ori.detach())
            curve2 += [p0, p0] if i == 0 else [p0]
            base = float(loss1.detach()) + p0
            gsq = float((grad * grad).sum())
            with torch.no_grad():
                step, tried = 200.0, 1

                def trial(s, grad=grad, l1=l1):
                    cand = (mask - s * grad).clamp(0, 1)
                    uc = up(cand)
                    return float(reg(cand, l1)) + float(net_p(z * uc + zb * (1 - uc), "trial"))

                val = trial(step)
                while val > base - 1e-4 * step * gsq:
                    step *= 0.2
                    val, tried = trial(step), tried + 1
                    if step < 1e-5:
                        break
                ph.trials.append(tried)
                mask.data -= step * grad
                mask.data.clamp_(0, 1)
                top = torch.ones(size * size)
                top[torch.argsort(mask.detach().flatten())[:40]] = 0.0  # curvetop: the 40 lowest cells deleted
                ut = up(top.view(1, 1, size, size))
                net_p(z * ut + zb * (1 - ut), "other")
            if iterations > 3:
                if i == int(iterations / 2):
                    if abs(curve2[0] - curve2[i]) <= 1e-3:
                        l1 /= 10
                elif i == int(iterations / 1.25) and abs(curve2[0] - curve2[i]) <= 1e-2:
                    l1 /= 5
        sec = time.process_time() - t0
    return {"seconds": sec, "phases": ph, **c.as_dict()}


def official_igospp(clf, x, target: int, iterations: int, n: int = 20, size: int = 28, l1: float = 1.0,
                    l2: float = 20.0, alpha0: float = 1000.0, noise: float = 0.2, seed: int = 0) -> dict:
    """The khorrams/IGOS_pp iGOS++ structure (appendix §4.3): each term's N path points in one forward."""
    gen = torch.Generator().manual_seed(seed)
    z, zb = clf.normalize(x), clf.normalize(blur_baseline(x, 51, 50.0))
    ph = _Phases()

    def up(m):
        return upsample_mask(m, (224, 224), align_corners=True)

    def score(kind: str, u: torch.Tensor, phase: str) -> torch.Tensor:
        """interval_score: mean over k of p(φ(α_k u) + noise), all N images in one forward."""
        a = torch.arange(1, n + 1, dtype=z.dtype).view(-1, 1, 1, 1) / n
        m = a * u
        img = z * m + zb * (1 - m) if kind == "del" else zb * m + z * (1 - m)
        img = img + torch.randn(img.shape, generator=gen) * noise
        ph.add(phase, n)
        return clf.net(img).softmax(1)[:, target].mean()

    def reg(m):
        return l1 * (1 - m).abs().mean() + l2 * igospp_btv(z, m).sum()

    def loss(md, mi, phase):
        u1, u2 = up(md), up(mi)
        return float(score("del", u1, phase) - score("ins", u2, phase) + score("del", u1 * u2, phase)
                     - score("ins", u1 * u2, phase) + reg(md * mi))

    md = torch.ones(1, 1, size, size, requires_grad=True)
    mi = torch.ones(1, 1, size, size, requires_grad=True)
    with clf.guard(), count_passes(clf.net) as c:
        t0 = time.process_time()
        for _ in range(iterations):
            u1, u2 = up(md), up(mi)
            gd, gi = torch.zeros_like(md), torch.zeros_like(mi)
            # order of methods.py: joint deletion, joint insertion, deletion mask, insertion mask
            for kind, u, sign in (("del", u1 * u2, 1.0), ("ins", u1 * u2, -1.0), ("del", u1, 1.0), ("ins", u2, -1.0)):
                s = score(kind, u, "grad")
                grads = torch.autograd.grad(s, [md, mi], retain_graph=True, allow_unused=True)
                if grads[0] is not None:
                    gd += sign * grads[0]
                if grads[1] is not None:
                    gi += sign * grads[1]
            gd, gi = gd / 2, gi / 2
            rd, ri = torch.autograd.grad(reg(md * mi), [md, mi])
            gd, gi = gd + rd, gi + ri
            with torch.no_grad():
                base = loss(md, mi, "base")
                gsq = float((gd * gd).sum() + (gi * gi).sum())
                alpha, tried = alpha0, 0
                while True:
                    tried += 1
                    rejected = loss((md - alpha * gd).clamp(0, 1), (mi - alpha * gi).clamp(0, 1), "trial") > \
                        base - 1e-4 * alpha * gsq
                    if not (rejected and alpha >= 1e-5):
                        break
                    alpha *= 0.2
                ph.trials.append(tried)
                md.data = (md - alpha * gd).clamp(0, 1)
                mi.data = (mi - alpha * gi).clamp(0, 1)
        sec = time.process_time() - t0
    return {"seconds": sec, "phases": ph, **c.as_dict()}


def ours_row(ex, cpu: float, iterations: int) -> dict:
    """Per-iteration images by phase for one of our explanations."""
    trial = sum(ex.extras["ls_images"])
    grad = ex.n_backward
    return {"s_it": cpu / iterations, "grad": grad / iterations, "base": 0.0,
            "trial": trial / iterations, "other": (ex.n_forward - grad - trial) / iterations,
            "calls": f"{ex.n_forward_calls / iterations:.1f} fwd + {ex.n_backward_calls / iterations:.1f} bwd",
            "tried": sum(ex.extras["ls_trials"]) / iterations}


def official_row(res: dict, iterations: int) -> dict:
    ph = res["phases"]
    calls = sum(ph.calls.values())
    return {"s_it": res["seconds"] / iterations, "grad": ph.images.get("grad", 0) / iterations,
            "base": ph.images.get("base", 0) / iterations, "trial": ph.images.get("trial", 0) / iterations,
            "other": ph.images.get("other", 0) / iterations,
            "calls": f"{calls / iterations:.1f} fwd + {res['n_backward_calls'] / iterations:.1f} bwd",
            "tried": sum(ph.trials) / iterations}


# -------------------------------------------------------------------------------------------- model-call replay
class CallLog:
    """Records every call of ``clf.net``: (batch size, autograd on) — what a replay has to repeat."""

    def __init__(self, net: nn.Module) -> None:
        self.calls: list[tuple[int, bool]] = []
        self._h = net.register_forward_hook(lambda mod, args, out: self.calls.append(
            (int(args[0].shape[0]), torch.is_grad_enabled())))

    def close(self) -> list[tuple[int, bool]]:
        self._h.remove()
        return self.calls


def replay(clf, calls: list[tuple[int, bool]], inputs: dict[int, torch.Tensor]) -> float:
    """CPU seconds of the model calls ``calls`` alone: forward under no_grad, or forward + backward to the input
    (as the gradient pass: softmax, one class, sum), parameters frozen."""
    with clf.guard():
        t = time.process_time()
        for b, grad in calls:
            if grad:
                xx = inputs[b].detach().requires_grad_(True)
                clf.net(xx).softmax(1)[:, 0].sum().backward()
            else:
                with torch.no_grad():
                    clf.net(inputs[b])
        return time.process_time() - t


def measure(clf, make: Callable[[], object], x: torch.Tensor, target: int, repeats: int) -> dict:
    """Our explanation timed against the replay of its own model calls, alternating (see the module docstring)."""
    log = CallLog(clf.net)
    ex = make().explain(x, target)  # also the warm-up
    calls = log.close()
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.rand(b, *x.shape[1:], generator=gen) for b, _ in calls}
    reps = [replay(clf, calls, inputs)]
    runs = []
    for _ in range(repeats):
        t = time.process_time()
        ex = make().explain(x, target)
        runs.append(time.process_time() - t)
        reps.append(replay(clf, calls, inputs))
    ratios = [r / ((reps[i] + reps[i + 1]) / 2) for i, r in enumerate(runs)]
    return {"ex": ex, "calls": calls, "cpu": statistics.median(runs), "replay": statistics.median(reps),
            "ratio": statistics.median(ratios), "ratios": ratios, "runs": runs, "replays": reps}


class FreeNet(nn.Module):
    """A stand-in network that costs next to nothing: logits = W · (every 16th pixel of every 16th row)."""

    def __init__(self, n_classes: int = 1000, stride: int = 16, side: int = 224) -> None:
        super().__init__()
        self.stride = stride
        k = len(range(0, side, stride))
        self.fc = nn.Linear(3 * k * k, n_classes)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g) * 0.3)
            self.fc.bias.zero_()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z[:, :, :: self.stride, :: self.stride].flatten(1))


def outside_per_iteration(clf, cls, x: torch.Tensor, iterations: int, batch_size: int, repeats: int) -> dict:
    """ms of CPU per iteration spent outside the network, measured with :class:`FreeNet` in place of ``clf.net``."""
    free = Classifier.from_module(FreeNet(side=x.shape[-1]), clf.preprocessing, clf.class_names, name="free",
                                  canonical=False)
    target = free.top1(x)
    m = measure(free, lambda: cls(free, size=28, iterations=iterations, ig_steps=20, batch_size=batch_size), x,
                target, repeats)
    ex = m["ex"]
    ms = (m["cpu"] - m["replay"]) / iterations * 1e3
    images = ex.n_forward / iterations
    return {"ms_per_iteration": ms, "images_per_iteration": images, "ms_per_image": ms / images,
            "backward_images_per_iteration": ex.n_backward / iterations}


# -------------------------------------------------------------------------------------------- profile
_SCOPE = "network"
_BWD = "autograd::engine::evaluate_function: "


def _descendants(e) -> list:
    out, todo = [], list(e.cpu_children)
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(c.cpu_children)
    return out


def profile_outside(clf, make: Callable[[], object], x: torch.Tensor, target: int, iterations: int,
                    top: int = 12) -> list[dict]:
    """Run one explanation under torch.profiler; print and return the top operators outside the network."""
    from torch.profiler import ProfilerActivity, profile, record_function

    stack: list = []

    def enter(mod, args):
        rf = record_function(_SCOPE)
        rf.__enter__()
        stack.append(rf)

    def leave(mod, args, out):
        stack.pop().__exit__(None, None, None)

    hooks = [clf.net.register_forward_pre_hook(enter), clf.net.register_forward_hook(leave)]
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            w0, c0 = time.perf_counter(), time.process_time()
            make().explain(x, target)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    finally:
        for h in hooks:
            h.remove()
    events = prof.events()
    inside: set[int] = set()
    seqs: set[int] = set()
    tops = []
    for e in events:  # the network's forward, and the sequence numbers of the autograd nodes it created
        if e.name == _SCOPE:
            tops.append(e)
            inside.add(id(e))
            for d in _descendants(e):
                inside.add(id(d))
                if d.sequence_nr >= 0:
                    seqs.add(d.sequence_nr)
    for e in events:  # the backward of those nodes
        if e.name.startswith(_BWD) and e.sequence_nr in seqs and id(e) not in inside:
            tops.append(e)
            inside.add(id(e))
            inside.update(id(d) for d in _descendants(e))
    scale = cpu / wall / 1e3 / iterations  # µs of wall → ms of CPU per iteration
    net_ms = sum(e.cpu_time_total for e in tops) * scale
    ops: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in events:
        if id(e) not in inside:
            ops[e.name][0] += e.self_cpu_time_total * scale
            ops[e.name][1] += 1 / iterations
    rows = [{"operator": k, "ms_per_iteration": v[0], "calls_per_iteration": v[1]}
            for k, v in sorted(ops.items(), key=lambda kv: -kv[1][0])]
    total = cpu * 1e3 / iterations
    print(f"  {total:.0f} ms CPU per iteration: network {net_ms:.0f} ms, outside {total - net_ms:.0f} ms "
          f"(operators {sum(r['ms_per_iteration'] for r in rows):.0f} ms, the rest Python and profiler)")
    print(f"  {'top operators outside the network':52s} {'ms/it':>8s} {'calls/it':>9s}")
    for r in rows[:top]:
        print(f"  {r['operator'][:52]:52s} {r['ms_per_iteration']:8.2f} {r['calls_per_iteration']:9.1f}")
    return rows[:top]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=5, help="optimisation iterations run by every implementation")
    ap.add_argument("--batch-size", type=int, default=4, help="our images per model call (CPU: small is fastest)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours, each between two replays")
    ap.add_argument("--profile", action="store_true", help="print the top operators outside the network")
    ap.add_argument("--profile-iterations", type=int, default=2)
    args = ap.parse_args()
    print(configure(args.threads))
    clf = load_model("efficientnet_lite0")
    x = records_to_batch(embedded_images()[:1], clf)
    target = clf.top1(x)
    for b in sorted({1, 20, args.batch_size}):  # warm the allocator at every batch size used below
        pass_times(clf, b, reps=1)
    it = args.iterations
    scale = PAPER_ITERATIONS / it
    classes = {"igos": IGOS, "igospp": IGOSPlusPlus}
    rows: dict[str, dict] = {}
    meas = {}
    for name, cls in classes.items():
        def make(cls=cls, iterations=it):
            return cls(clf, size=28, iterations=iterations, ig_steps=20, batch_size=args.batch_size)

        meas[name] = measure(clf, make, x, target, args.repeats)
        rows[f"ours {name}"] = ours_row(meas[name]["ex"], meas[name]["cpu"], it)
        print(f"ours {name}: CPU {', '.join(f'{r:.2f}' for r in meas[name]['runs'])} s; replays of its model calls "
              f"{', '.join(f'{r:.2f}' for r in meas[name]['replays'])} s; ratios "
              f"{', '.join(f'{r:.3f}' for r in meas[name]['ratios'])} (1-minute load {os.getloadavg()[0]:.2f})")
    rows["official igos (demo loop)"] = official_row(official_igos_demo(clf, x, target, it), it)
    rows["official igospp (IGOS_pp)"] = official_row(official_igospp(clf, x, target, it), it)

    # plain batched model passes at our chunk size (the old per-image-rate estimate; prices the official runs)
    fwd, fb = pass_times(clf, args.batch_size)
    print(f"model: forward {fwd * 1e3:.1f} ms/image, forward+backward {fb * 1e3:.1f} ms/image "
          f"(batch {args.batch_size}, CPU time)")
    rates = {}
    for name in classes:
        ex = meas[name]["ex"]
        rates[name] = meas[name]["cpu"] / ((ex.n_forward - ex.n_backward) * fwd + ex.n_backward * fb)
    overhead, igos_overhead = meas["igospp"]["ratio"], meas["igos"]["ratio"]

    outside = {name: outside_per_iteration(clf, cls, x, it, args.batch_size, args.repeats)
               for name, cls in classes.items()}
    profiles = {}
    if args.profile:
        for name, cls in classes.items():
            print(f"\nprofile of ours {name}, {args.profile_iterations} iterations (EfficientNet-Lite0):")
            profiles[name] = profile_outside(
                clf, lambda cls=cls: cls(clf, size=28, iterations=args.profile_iterations, ig_steps=20,
                                         batch_size=args.batch_size), x, target, args.profile_iterations)

    print(f"\nper iteration (median of {args.repeats} runs of {it}; 28x28, N = 20): images by phase, model calls, "
          "CPU seconds")
    print(f"{'implementation':28s} {'grad fwd+bwd':>12s} {'base fwd':>9s} {'trial fwd':>10s} {'other fwd':>10s} "
          f"{'trials tried':>12s} {'model calls':>22s} {'CPU s':>7s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['grad']:12.1f} {r['base']:9.1f} {r['trial']:10.1f} {r['other']:10.1f} "
              f"{r['tried']:12.1f} {r['calls']:>22s} {r['s_it']:7.2f}")
    print("(ours: 'other' = noise-free single-image evaluations of I-GOS not covered by a trial point; "
          "official demo: 'other' = its top-1 and curvetop diagnostic forwards)")
    for name in classes:
        o = outside[name]
        print(f"ours {name}: overhead ratio {meas[name]['ratio']:.3f} against the replay of its own model calls "
              f"({rates[name]:.3f} at per-image rates); outside the network with a free stand-in model: "
              f"{o['ms_per_iteration']:.1f} ms per iteration ({o['images_per_iteration']:.0f} images, "
              f"{o['ms_per_image']:.2f} ms per image)")
    sp_igos = rows["official igos (demo loop)"]["s_it"] / rows["ours igos"]["s_it"]
    sp_igospp = rows["official igospp (IGOS_pp)"]["s_it"] / rows["ours igospp"]["s_it"]
    off = rows["official igospp (IGOS_pp)"]
    floor = off["s_it"] / (off["grad"] * fb)  # best case: only the gradient pass left, at our per-image rate
    print(f"\nspeed-up per iteration: I-GOS {sp_igos:.2f}x over the demo's per-path-point loop, iGOS++ "
          f"{sp_igospp:.2f}x over IGOS_pp (goal 5x); an exact method still needs the {off['grad']:.0f} "
          f"forward+backward images of the gradient pass, which caps the iGOS++ speed-up on this CPU at "
          f"{floor:.2f}x")
    priced = off["grad"] * fb + (off["base"] + off["trial"] + off["other"]) * fwd
    print(f"of which fewer passes: {priced / rows['ours igospp']['s_it']:.2f}x (IGOS_pp's images priced at our "
          f"per-image rates: {priced:.2f} s/iteration), per-image efficiency of our chunks of {args.batch_size} "
          f"vs its calls of 20: {off['s_it'] / priced:.2f}x")
    ex = meas["igospp"]["ex"]
    passes = int(round((ex.n_forward + ex.n_backward) * scale))
    over = {"ours igos": igos_overhead, "ours igospp": overhead}
    table = [{"kind": "explanation" if key.startswith("ours") else "official", "implementation": key,
              "method": "igos_pp" if "igospp" in key else "igos", "budget": "28x28, 15 iterations, 20 IG points",
              "seconds": r["s_it"] * PAPER_ITERATIONS, "n_forward": (r["grad"] + r["base"] + r["trial"] + r["other"])
              * PAPER_ITERATIONS, "n_backward": r["grad"] * PAPER_ITERATIONS, "overhead_ratio": over.get(key),
              "clock": "cpu", "how": f"extrapolated from {it} iterations", "calls_per_iteration": r["calls"],
              "trials_per_iteration": r["tried"]} for key, r in rows.items()]
    record("igos", {"igos_s_per_image": rows["ours igos"]["s_it"] * PAPER_ITERATIONS,
                    "igospp_s_per_image": rows["ours igospp"]["s_it"] * PAPER_ITERATIONS,
                    "igospp_passes_per_image": passes, "overhead_ratio": overhead, "igos_overhead_ratio": igos_overhead,
                    "overhead_ratio_rates": rates["igospp"], "igos_overhead_ratio_rates": rates["igos"],
                    "igospp_outside_ms_per_iteration": outside["igospp"]["ms_per_iteration"],
                    "igos_outside_ms_per_iteration": outside["igos"]["ms_per_iteration"],
                    "igospp_outside_ms_per_image": outside["igospp"]["ms_per_image"],
                    "igos_outside_ms_per_image": outside["igos"]["ms_per_image"],
                    "official_igospp_s_per_image": off["s_it"] * PAPER_ITERATIONS,
                    "official_igos_s_per_image": rows["official igos (demo loop)"]["s_it"] * PAPER_ITERATIONS,
                    "speedup_vs_official_igospp": sp_igospp, "speedup_vs_official_igos": sp_igos,
                    "speedup_cap_igospp": floor, "model_fwd_s_per_image": fwd, "model_fwdbwd_s_per_image": fb},
           extra={"iterations": it, "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
                  "overhead_runs": {k: {"runs_s": m["runs"], "replays_s": m["replays"], "ratios": m["ratios"]}
                                    for k, m in meas.items()},
                  "outside_standin": outside, "profile": profiles or None}, rows=table)
    print(f"igos_s_per_image={rows['ours igos']['s_it'] * PAPER_ITERATIONS:.2f} "
          f"igospp_s_per_image={rows['ours igospp']['s_it'] * PAPER_ITERATIONS:.2f} "
          f"igospp_passes_per_image={passes} overhead_ratio={overhead:.3f} igos_overhead_ratio={igos_overhead:.3f} "
          f"igospp_outside_ms_per_iteration={outside['igospp']['ms_per_iteration']:.1f} "
          f"igos_outside_ms_per_iteration={outside['igos']['ms_per_iteration']:.1f}")


if __name__ == "__main__":
    main()
