"""Cross-paper leaderboard: every method under every protocol on the same images, with costs.

This is where methods and metrics meet (with the notebooks and the runner). Each (method, image) explanation
and each (method, image, protocol) score is a cached, independent task (:class:`~saliency_core.cache.ResultCache`),
so the leaderboard reuses every map a chapter already computed with the same settings and never recomputes
one it already holds.

Protocols (lower or higher is better as noted in :data:`PROTOCOLS`):

* ``pixel_flip``   — area under the fraction-of-top-1-changes curve, gray fill, τ ∈ {0, 0.1, …, 0.9} (lower better)
* ``lor``          — LOR at α = ``lor_alpha`` under the Mean masking (per image: log-odds ratio of p(α) vs p(0);
  more negative is better; the LEG paper averages p over images first — see the LEG chapter)
* ``skey_<m>``     — S_key under masking m ∈ {dist-100, black, white, mean, noise} on a ``skey_grid``-point α grid
  (1000 in the paper; lower better)
* ``del_rise`` / ``ins_rise``     — RISE-style deletion (lower better) / insertion (higher better) AUC
* ``del_igospp`` / ``ins_igospp`` — iGOS++-style AUCs on the 28×28 grid
* ``sanity``       — Spearman rank correlation (absolute maps) between the map of the trained model and the map
  after randomising every layer (lower is better: a map that survives randomisation does not explain the model)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .cache import ResultCache
from .explanation import Explanation
from .methods import get_explainer

__all__ = ["PROTOCOLS", "evaluate", "summarize", "rankings", "rank_agreement", "costs"]

#: protocol → True when higher is better
PROTOCOLS: dict[str, bool] = {
    "pixel_flip": False,
    "lor": False,
    "skey_dist-100": False,
    "skey_black": False,
    "skey_white": False,
    "skey_mean": False,
    "skey_noise": False,
    "del_rise": False,
    "ins_rise": True,
    "del_igospp": False,
    "ins_igospp": True,
    "sanity": False,
}


def _score(protocol: str, clf, x: torch.Tensor, e: Explanation, settings: Mapping[str, Any]) -> float:
    """One protocol's score for one explanation (x: (1, 3, H, W) in [0, 1])."""
    from .metrics import insertion_deletion as insdel
    from .metrics import pixel_flip, sensitivity

    sal = e.map
    if protocol == "pixel_flip":
        taus = settings.get("taus", [round(0.1 * i, 1) for i in range(10)])
        df = pixel_flip.pixel_flip(clf, x[0], sal, taus=taus, target=e.target)
        return float(pixel_flip.area_under_curve(df["tau"], df["changed"].astype(float)))
    if protocol == "lor":
        alpha = float(settings.get("lor_alpha", 0.2))
        df = sensitivity.lor_probabilities(clf, x, {"m": [sal]}, maskings=("mean",), alphas=[0.0, alpha],
                                           targets=[e.target])
        p = df.sort_values("alpha")["prob"].clip(1e-12, 1 - 1e-12).to_numpy()
        return float(np.log(p[1] / (1 - p[1])) - np.log(p[0] / (1 - p[0])))
    if protocol.startswith("skey_"):
        r = sensitivity.s_key(clf, x, sal, masking=protocol[5:], target=e.target,
                              n_grid=int(settings.get("skey_grid", 1000)))
        return float(r["s_key"])
    if protocol in ("del_rise", "ins_rise"):
        curve = "deletion" if protocol == "del_rise" else "insertion"
        res = insdel.insertion_deletion(clf, x, sal, e.target, preset="rise", step=settings.get("rise_step", 224),
                                        curves=(curve,))
        return float(res.auc[curve])
    if protocol in ("del_igospp", "ins_igospp"):
        curve = "deletion" if protocol == "del_igospp" else "insertion"
        res = insdel.insertion_deletion(clf, x, sal, e.target, preset="igospp", grid=settings.get("igospp_grid", 28),
                                        curves=(curve,))
        return float(res.auc[curve])
    raise ValueError(f"protocol={protocol!r} is not valid; accepted values: {', '.join(PROTOCOLS)}")


def evaluate(
    clf,
    records: Sequence[Any],
    methods: Mapping[str, Mapping[str, Any]],
    protocols: Sequence[str] = tuple(PROTOCOLS),
    cache: ResultCache | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and costs of every ``methods[name] = hyper-parameters`` on every record.

    Returns ``(scores, costs)``: ``scores`` has one row per (method, image, protocol) with ``value``;
    ``costs`` one row per (method, image) with n_forward, n_backward and seconds of the explanation
    (as first computed: a cached explanation keeps the cost it had).
    """
    from tqdm.auto import tqdm

    from .metrics import sanity

    for p in protocols:
        if p not in PROTOCOLS:
            raise ValueError(f"protocol={p!r} is not valid; accepted values: {', '.join(PROTOCOLS)}")
    cache = cache or ResultCache()
    settings = dict(settings or {})
    rows, cost_rows = [], []
    randomized = None
    tasks = [(m, r) for m in methods for r in records]
    for mname, rec in tqdm(tasks, desc="leaderboard", disable=None if progress else True, leave=False):
        explainer = get_explainer(mname, clf, **dict(methods[mname]))
        x = clf.preprocess(rec.image).unsqueeze(0).to(clf.device)
        e = cache.explain(explainer, rec, None, x=x[0])
        cost_rows.append({"method": mname, "image": rec.id, "n_forward": e.n_forward, "n_backward": e.n_backward,
                          "seconds": e.seconds})
        ekey = ResultCache.explanation_key(explainer, rec.id, None)
        for p in protocols:
            if p == "sanity":
                if randomized is None:
                    randomized = sanity.randomized_copy(clf, clf.layer_order, init="default",
                                                        seed=int(settings.get("seed", 0)))
                rexp = get_explainer(mname, randomized, **dict(methods[mname]))
                er = cache.explain(rexp, rec, randomized.top1(x), x=x[0])
                val = float(sanity.similarities(e.map, er.map)["spearman_abs"])
            else:
                key = {"explanation": ekey, "protocol": p, "settings": settings}
                val = cache.get_or_compute("score", key, lambda p=p, x=x, e=e: _score(p, clf, x, e, settings))
            rows.append({"method": mname, "image": rec.id, "protocol": p, "value": float(val)})
    return pd.DataFrame(rows), pd.DataFrame(cost_rows)


def summarize(scores: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean and a percentile-bootstrap confidence interval (fixed seed) per (method, protocol)."""
    rng = np.random.default_rng(seed)
    out = []
    for (m, p), g in scores.groupby(["method", "protocol"], sort=False):
        v = g["value"].to_numpy(dtype=float)
        if len(v) > 1:
            boots = rng.choice(v, size=(n_boot, len(v)), replace=True).mean(1)
            lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
        else:
            lo = hi = float("nan")
        out.append({"method": m, "protocol": p, "mean": v.mean(), "ci_low": lo, "ci_high": hi, "n": len(v)})
    return pd.DataFrame(out)


def rankings(summary: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method per protocol (1 = best, respecting each protocol's direction), methods × protocols."""
    wide = summary.pivot(index="method", columns="protocol", values="mean")
    ranks = {}
    for p in wide.columns:
        ranks[p] = wide[p].rank(ascending=not PROTOCOLS.get(p, False), method="average")
    return pd.DataFrame(ranks)[list(wide.columns)]


def rank_agreement(ranks: pd.DataFrame) -> pd.DataFrame:
    """Kendall τ between the method rankings of every pair of protocols."""
    from scipy.stats import kendalltau

    cols = list(ranks.columns)
    tau = pd.DataFrame(np.eye(len(cols)), index=cols, columns=cols)
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            t = kendalltau(ranks[a], ranks[b]).statistic
            tau.loc[a, b] = tau.loc[b, a] = t
    return tau


def costs(cost_rows: pd.DataFrame) -> pd.DataFrame:
    """Mean model passes and wall time per explanation, per method."""
    return cost_rows.groupby("method", sort=False)[["n_forward", "n_backward", "seconds"]].mean()
