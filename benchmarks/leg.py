"""LEG / LEG-TV speed: sparse vs dense LP, sampling + model overhead, S_key evaluations per image.

Run: ``python benchmarks/leg.py [--samples 500] [--images 3]`` (2 threads by default via SALIENCY_THREADS).
The last line is ``legtv_lp_s_per_channel=<f> dense_lp_s_per_channel=<f> overhead_ratio=<f> skey_evals_per_image=<f>``.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _results import record

from saliency_core.runtime import configure


def synthetic_g(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = np.zeros((n, n))
    g[n // 4 : 3 * n // 4, n // 3 : 2 * n // 3] = 1.0
    return g.ravel() + 0.5 * rng.standard_normal(n * n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=500, help="LEG samples per channel for the overhead test")
    ap.add_argument("--images", type=int, default=3, help="images for the S_key test")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rt = configure()
    print(f"threads={rt['threads']}")

    from saliency_core import embedded_images, get_explainer, load_model, records_to_batch
    from saliency_core.methods.leg import legtv_dense_reference, solve_leg_tv, structured_covariance
    from saliency_core.metrics.sensitivity import s_key

    # 1. LP time per channel (sparse, compiled once; then fresh data per solve)
    lp = {}
    for n in (28, 56):
        for solver in ("clarabel", "highs"):
            solve_leg_tv(synthetic_g(n, 99), n, 0.1, True, solver)  # compile / warm-up
            ts = []
            for s in range(5 if (n, solver) != (56, "highs") else 2):
                _, info = solve_leg_tv(synthetic_g(n, s), n, 0.1, True, solver)
                ts.append(info["seconds"])
            lp[(n, solver)] = float(np.median(ts))
            print(f"sparse LP {n}x{n} {solver}: median {lp[(n, solver)]:.3f} s per channel ({len(ts)} solves)")
    # 2. dense (official) formulation at 28x28, HiGHS, one solve (pinv + dense D⁺ᵀΣ build timed separately)
    g = synthetic_g(28, 0)
    ybar = structured_covariance(28, True, 0.02) @ g
    t0 = time.perf_counter()
    _, obj_d = legtv_dense_reference(ybar, 28, 0.02, 0.1, True, "highs")
    dense_s = time.perf_counter() - t0
    _, info = solve_leg_tv(g, 28, 0.1, True, "clarabel")
    print(f"dense LP 28x28 (pinv + cvxpy/HiGHS): {dense_s:.2f} s; objective dense {obj_d:.6f} vs sparse "
          f"{info['objective']:.6f} (rel diff {abs(obj_d - info['objective']) / abs(obj_d):.1e})")

    # 3. sampling + model overhead for LEG (3 × samples evaluations) against bare batched inference
    clf = load_model("efficientnet_lite0")
    recs = embedded_images()
    x = records_to_batch(recs[: max(args.images, 1)], clf)
    leg = get_explainer("leg", clf, n_samples=args.samples, batch_size=64)
    ex = leg.explain(x[:1])
    n_eval = ex.n_forward
    xb = x[:1].expand(64, -1, -1, -1).contiguous()
    clf.logits(xb, batch_size=64)
    t0 = time.perf_counter()
    done = 0
    while done < n_eval:
        clf.logits(xb[: min(64, n_eval - done)], batch_size=64)
        done += 64
    bare = time.perf_counter() - t0
    ratio = ex.seconds / ex.extras["seconds_model"]
    print(f"LEG {n_eval} evaluations: {ex.seconds:.1f} s total ({n_eval / ex.seconds:.1f} img/s), of which model "
          f"calls {ex.extras['seconds_model']:.1f} s and sampling/upsampling/bookkeeping "
          f"{ex.extras['seconds_sampling']:.2f} s -> overhead ratio (total / model time, same run) {ratio:.3f}; "
          f"a separate bare batched loop of {n_eval} images took {bare:.1f} s (ratio {ex.seconds / bare:.3f}; "
          f"sensitive to machine load). Measured with {args.samples}/channel instead of 2000: cost is linear in n")

    # 4. S_key: evaluations per image of the exact scan vs the 1000-point brute force
    evals, checks = [], 0
    for i in range(x.shape[0]):
        m = get_explainer("gradcam", clf).explain(x[i : i + 1]).map
        for masking in ("dist-100", "black", "mean"):
            r = s_key(clf, x[i : i + 1], m, masking, search="scan")
            evals.append(r["n_evals"])
            if i == 0 and masking == "black":
                b = s_key(clf, x[i : i + 1], m, masking, search="brute")
                checks += int(b["index"] == r["index"])
                print(f"brute force check image 0 black: scan index {r['index']} == brute {b['index']} "
                      f"({r['n_evals']} vs {b['n_evals']} evaluations)")
    skey_evals = float(np.mean(evals))
    print(f"S_key scan: {skey_evals:.1f} evaluations per (image, masking) on average vs 999 brute force "
          f"({len(evals)} cases, Grad-CAM maps)")
    table = [{"kind": "lp", "formulation": "sparse", "grid": n, "solver": solver, "s_per_channel": v}
             for (n, solver), v in lp.items()]
    table.append({"kind": "lp", "formulation": "dense (official)", "grid": 28, "solver": "highs",
                  "s_per_channel": dense_s})
    table.append({"kind": "explanation", "method": "leg", "budget": f"{args.samples} samples/channel",
                  "seconds": ex.seconds, "n_forward": ex.n_forward, "n_backward": ex.n_backward,
                  "overhead_ratio": ratio, "clock": "wall", "how": "measured"})
    table.append({"kind": "explanation", "method": "leg_tv", "budget": f"{args.samples} samples/channel",
                  "seconds": ex.seconds + 3 * lp[(28, "clarabel")], "n_forward": ex.n_forward,
                  "n_backward": ex.n_backward, "overhead_ratio": None, "clock": "wall",
                  "how": "LEG time + 3 sparse LP solves (28x28, Clarabel)"})
    record("leg", {"legtv_lp_s_per_channel": lp[(28, "clarabel")], "dense_lp_s_per_channel": dense_s,
                   "overhead_ratio": ratio, "skey_evals_per_image": skey_evals,
                   "legtv_lp_s_per_channel_56": lp[(56, "clarabel")], "bare_loop_ratio": ex.seconds / bare,
                   "dense_objective_rel_diff": abs(obj_d - info["objective"]) / abs(obj_d)},
           extra={"samples": args.samples, "images": args.images, "threads": rt["threads"],
                  "skey_brute_checks_passed": checks}, rows=table)
    print(f"legtv_lp_s_per_channel={lp[(28, 'clarabel')]:.4f} dense_lp_s_per_channel={dense_s:.4f} "
          f"overhead_ratio={ratio:.4f} skey_evals_per_image={skey_evals:.2f}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
