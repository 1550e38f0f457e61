"""The committed evidence release (``results/release/<study>/``) against the code of this checkout.

* **Fresh code.** Every study's ``provenance.json`` records the code hash of each method, each protocol and the
  model code that produced its rows; a row computed by code that has changed since is stale, and the test fails
  until that study is rerun (``python tools/release.py --studies <name>``). Docstring and comment edits do not count
  (the hashes are over the syntax tree without docstrings).
* **Spot check.** Three rows of the embedded photos, drawn at random on every run (the seed is printed; set
  ``SALIENCY_SPOTCHECK_SEED`` to repeat one), among the cheap methods (≤ 120 model passes per explanation), are
  recomputed from scratch in this process with an empty store and compared with the committed values to 1e-6
  (absolute). The methods and protocols are seeded, so a recomputation with the same thread count on the same
  platform is bit-identical; a row that a chapter's run stored earlier under another thread count differs in its
  last float32 digits (``tools/verify_release.py --images 0,1`` recomputed all 80 cheap rows of photos 0 and 1:
  79 bit-identical, one 5.6e-9 apart). ``SALIENCY_SPOTCHECK_TOL`` sets another tolerance (another CPU, another
  BLAS); ``tools/verify_release.py`` checks every cheap row of chosen photos exactly.
* **Provenance and size.** N per study, commit, CPU seconds, and the release's total size (< 20 MB, no maps).

Runs on any fresh machine: only the 20 photos embedded in the ``foolbox`` wheel are recomputed.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
RELEASE = Path(os.environ.get("SALIENCY_RELEASE_DIR", ROOT / "results" / "release"))
STUDIES = sorted(p for p in RELEASE.glob("*") if (p / "provenance.json").is_file()) if RELEASE.is_dir() else []
CHEAP_PASSES = 120

pytestmark = pytest.mark.skipif(not STUDIES, reason=f"no release under {RELEASE}")


def _prov(folder: Path) -> dict:
    return json.loads((folder / "provenance.json").read_text())


@pytest.mark.parametrize("folder", STUDIES, ids=[p.name for p in STUDIES])
def test_release_rows_come_from_the_code_of_this_checkout(folder):
    from saliency_core.codehash import code_hash, object_code_hash
    from saliency_core.methods import explainer_class
    from saliency_core.protocols import get_protocol

    prov = _prov(folder)
    code, spec = prov["code"], prov["spec"]
    stale = []
    if code["models"] != code_hash("saliency_core.models"):
        stale.append("the model code (saliency_core/models.py and what it imports)")
    for label, m in spec["methods"].items():
        if code["methods"].get(label) != object_code_hash(explainer_class(m["method"])):
            stale.append(f"method {label!r} ({m['method']})")
    for label, p in spec["protocols"].items():
        if code["protocols"].get(label) != get_protocol(p["protocol"]).code_hash():
            stale.append(f"protocol {label!r} ({p['protocol']})")
    assert not stale, (f"{folder.name}: rows computed by code that has changed since: {', '.join(stale)}; rerun "
                       f"`python tools/release.py --studies {folder.name}` (the store keeps every row still valid)")


@pytest.mark.parametrize("folder", STUDIES, ids=[p.name for p in STUDIES])
def test_release_tables_and_provenance(folder):
    prov = _prov(folder)
    scores = pd.read_parquet(folder / "scores.parquet")
    costs = pd.read_parquet(folder / "costs.parquet")
    for key in ("commit", "date", "n_images", "device", "cpu_seconds", "runs", "spec"):
        assert key in prov, key
    assert scores["image"].nunique() == prov["n_images"] == costs["image"].nunique()
    assert not scores.duplicated(["image", "method", "protocol"]).any()
    assert not scores["key"].duplicated().any()
    total = sum(f.stat().st_size for f in RELEASE.rglob("*") if f.is_file())
    assert total < 20e6, f"the release is {total / 1e6:.1f} MB (limit 20 MB: scores, curves, costs only)"
    assert not list(RELEASE.rglob("*.npz")) and not list(RELEASE.rglob("*.pt"))


def _candidates() -> list[tuple[Path, pd.Series]]:
    rows = []
    for folder in STUDIES:
        scores = pd.read_parquet(folder / "scores.parquet")
        costs = pd.read_parquet(folder / "costs.parquet")
        passes = costs.assign(p=costs.n_forward + costs.n_backward).groupby("method")["p"].max()
        cheap = set(passes[passes <= CHEAP_PASSES].index)
        sel = scores[scores["image"].str.startswith("foolbox/") & scores["method"].isin(cheap)]
        prov = _prov(folder)
        slow = {label for label, p in prov["spec"]["protocols"].items() if p["protocol"].startswith("sanity")}
        sel = sel[~sel["protocol"].isin(slow)]
        rows += [(folder, r) for _, r in sel.iterrows()]
    return rows


def test_spot_check_three_embedded_rows(tmp_path, monkeypatch, capsys):
    from saliency_core.study import Study, run

    cands = _candidates()
    if not cands:
        pytest.skip("no cheap rows of embedded photos in the release")
    seed = int(os.environ.get("SALIENCY_SPOTCHECK_SEED", time.time_ns() % 1_000_000))
    tol = float(os.environ.get("SALIENCY_SPOTCHECK_TOL", "1e-6"))
    picks = random.Random(seed).sample(cands, min(3, len(cands)))
    with capsys.disabled():
        print(f"\n[spot check] seed {seed} (SALIENCY_SPOTCHECK_SEED={seed} repeats it): "
              + "; ".join(f"{f.name}/{r['method']}/{r['protocol']}/{r['image']}" for f, r in picks))
    monkeypatch.setenv("SALIENCY_STORE", str(tmp_path / "store"))
    t0 = time.perf_counter()
    for folder, row in picks:
        spec = _prov(folder)["spec"]
        method = spec["methods"][row["method"]]
        proto = spec["protocols"][row["protocol"]]
        proto = {k: v for k, v in proto.items() if k != "methods"}
        study = Study.from_dict({"name": "spot", "model": spec["model"], "weights": spec["weights"],
                                 "images": {"embedded": {}, "ids": [row["image"]]}, "target": spec["target"],
                                 "sanity": spec["sanity"], "methods": {row["method"]: method},
                                 "protocols": {row["protocol"]: proto}})
        res = run(study, client="serial", progress=False, out=False)
        got = res.scores["value"].iloc[0]
        want = row["value"]
        assert res.scores["key"].iloc[0] == row["key"], (
            f"{folder.name}: the recomputed row's key differs from the committed one (code or settings changed)")
        assert (got != got and want != want) or abs(got - want) <= tol, (
            f"{folder.name}/{row['method']}/{row['protocol']}/{row['image']}: recomputed {got!r}, committed {want!r} "
            f"(tolerance {tol}; seed {seed})")
    assert time.perf_counter() - t0 < 120
