"""Recompute the committed release rows of some embedded photos from scratch and compare them with the committed values.

``tests/test_release.py`` recomputes three random cheap rows on every ``make test``; this script recomputes *every*
cheap row (methods with at most ``--max-passes`` model passes per explanation, sanity protocols excluded) of the
chosen embedded photos, one study at a time, in this process, with an empty temporary store and the thread count of
``make test`` (``SALIENCY_THREADS``, 1 by default). Rows that a chapter's run stored earlier under another thread
count can differ in their last digits (PyTorch's CPU reductions depend on the thread count); this finds them before a
random spot check does.

    nice python tools/verify_release.py --images 0,1,2,3

Last line: ``rows=<n> exact=<n> max_abs_diff=<x> worst=<study/method/protocol/image>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", default="0,1", help="comma-separated indices of the embedded photos (foolbox order)")
    ap.add_argument("--release", default=str(ROOT / "results" / "release"))
    ap.add_argument("--studies", default="", help="comma-separated study names (default: every committed study)")
    ap.add_argument("--max-passes", type=int, default=120)
    args = ap.parse_args(argv)
    os.environ.setdefault("SALIENCY_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["SALIENCY_STORE"] = tempfile.mkdtemp(prefix="verify-release-")

    import pandas as pd

    from saliency_core.study import Study, run

    try:
        wanted = {int(i) for i in args.images.split(",") if i.strip()}
    except ValueError:
        raise SystemExit(f"--images {args.images!r} is not valid; accepted values: comma-separated ints") from None
    prefixes = tuple(f"foolbox/imagenet_{i:02d}_" for i in sorted(wanted))
    release = Path(args.release)
    names = [s for s in args.studies.split(",") if s] or sorted(
        p.name for p in release.glob("*") if (p / "provenance.json").is_file())
    rows, worst = [], (0.0, "")
    t0 = time.perf_counter()
    for name in names:
        folder = release / name
        prov = json.loads((folder / "provenance.json").read_text())
        spec = prov["spec"]
        scores = pd.read_parquet(folder / "scores.parquet")
        costs = pd.read_parquet(folder / "costs.parquet")
        passes = costs.assign(p=costs.n_forward + costs.n_backward).groupby("method")["p"].max()
        cheap = sorted(passes[passes <= args.max_passes].index)
        slow = {label for label, p in spec["protocols"].items() if p["protocol"].startswith("sanity")}
        sel = scores[scores["image"].str.startswith(prefixes) & scores["method"].isin(cheap)
                     & ~scores["protocol"].isin(slow)]
        if sel.empty:
            continue
        methods = {m: spec["methods"][m] for m in cheap if m in set(sel["method"])}
        protos = {}
        for label, p in spec["protocols"].items():
            if label not in set(sel["protocol"]):
                continue
            p = dict(p)
            if "methods" in p:  # a protocol restricted to some methods keeps the restriction (to those present)
                p["methods"] = [m for m in p["methods"] if m in methods]
                if not p["methods"]:
                    continue
            protos[label] = p
        study = Study.from_dict({"name": f"verify-{name}", "model": spec["model"], "weights": spec["weights"],
                                 "images": {"embedded": {}, "ids": sorted(set(sel["image"]))},
                                 "target": spec["target"], "sanity": spec["sanity"],
                                 "methods": methods,
                                 "protocols": protos})
        got = run(study, client="serial", progress=False, out=False).scores
        merged = sel.merge(got[["key", "value"]], on="key", how="left", suffixes=("", "_now"))
        for _, r in merged.iterrows():
            same_nan = r["value"] != r["value"] and r["value_now"] != r["value_now"]
            d = 0.0 if same_nan else abs(float(r["value"]) - float(r["value_now"]))
            where = f"{name}/{r['method']}/{r['protocol']}/{r['image']}"
            if d != d:  # a committed key that the recomputation did not produce
                d = float("inf")
            rows.append(d)
            if d > worst[0]:
                worst = (d, where)
            if d > 1e-9:
                print(f"[verify] {where}: committed {r['value']!r}, now {r['value_now']!r} (|diff| {d:.3g})",
                      flush=True)
        print(f"[verify] {name}: {len(merged)} rows of {len(cheap)} cheap methods, "
              f"{time.perf_counter() - t0:.0f} s so far", flush=True)
    exact = sum(d <= 1e-9 for d in rows)
    print(f"rows={len(rows)} exact={exact} max_abs_diff={worst[0]:.3g} worst={worst[1] or '-'}")
    return 0 if exact == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
