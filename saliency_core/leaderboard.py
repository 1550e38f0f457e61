"""Cross-paper leaderboard: every method under every protocol on the same images, with costs — as a study.

The scores come from a :class:`~saliency_core.study.Study` (``params/studies/leaderboard.yaml``; the protocols are
those of the registry, :mod:`saliency_core.protocols`), so each (image, method) explanation and each (image, method,
protocol) score is a stored task: the leaderboard reuses every map a chapter already computed with the same
settings, and runs unchanged on a Dask cluster. This module only summarises the study's tables:

* :func:`summarize` — mean, standard error and percentile-bootstrap interval per (method, protocol)
  (:func:`saliency_core.stats.summarize`) with the protocol's direction;
* :func:`rankings` — rank 1 = best under each protocol, respecting its direction;
* :func:`rank_agreement` — Kendall τ between the rankings of every pair of protocols;
* :func:`costs` — mean model passes and wall time per explanation, per method.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .protocols import PROTOCOLS
from .stats import summarize as _summarize

__all__ = ["summarize", "rankings", "rank_agreement", "costs", "directions"]


def directions(scores: pd.DataFrame) -> dict[str, bool]:
    """``{protocol label: higher is better}`` from a scores table (its ``higher_is_better`` column), falling back
    to the registry entry of the same name."""
    if "higher_is_better" in scores.columns:
        return {p: bool(g.iloc[0]) for p, g in scores.groupby("protocol", sort=False)["higher_is_better"]}
    return {p: PROTOCOLS[p].higher_is_better for p in scores["protocol"].unique() if p in PROTOCOLS}


def summarize(scores: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (method, protocol): ``mean, se, ci_low, ci_high, n, n_nan`` of ``value`` and ``higher_is_better``."""
    out = _summarize(scores, "value", ("method", "protocol"), level=level, n_boot=n_boot, seed=seed)
    up = directions(scores)
    out["higher_is_better"] = out["protocol"].map(up)
    return out


def rankings(summary: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method per protocol (1 = best, respecting each protocol's direction), methods × protocols."""
    wide = summary.pivot(index="method", columns="protocol", values="mean")
    up = directions(summary)
    ranks = {}
    for p in wide.columns:
        if p not in up:
            raise ValueError(f"protocol {p!r} has no direction: pass a summary with a higher_is_better column "
                             "(leaderboard.summarize) or use registry names")
        ranks[p] = wide[p].rank(ascending=not up[p], method="average")
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
    """Mean model passes and wall time per explanation, per method (a study's ``costs`` table)."""
    return cost_rows.groupby("method", sort=False)[["n_forward", "n_backward", "seconds"]].mean()
