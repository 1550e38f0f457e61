"""Cross-paper leaderboard: every method under every protocol on the same images, with costs — as a study.

The scores come from a :class:`~saliency_core.study.Study` (``params/studies/leaderboard.yaml``; the protocols are
those of the registry, :mod:`saliency_core.protocols`), so each (image, method) explanation and each (image, method,
protocol) score is a stored task: the leaderboard reuses every map a chapter already computed with the same
settings, and runs unchanged on a Dask cluster. This module only summarises the study's tables:

* :func:`summarize` — mean, standard error and percentile-bootstrap interval per (method, protocol)
  (:func:`saliency_core.stats.summarize`) with the protocol's direction;
* :func:`rankings` — rank 1 = best under each protocol, respecting its direction;
* :func:`rank_agreement` — Kendall τ between the rankings of every pair of protocols;
* :func:`rank_bootstrap` — the same rankings and Kendall τ recomputed on bootstrap resamples of the images
  (seeded, vectorised): percentile intervals of every τ and of their mean, and how often each protocol's winner
  (and the winner by mean rank over the protocols) stays first;
* :func:`costs` — mean model passes and wall time per explanation, per method.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .checks import check_int, check_range
from .protocols import PROTOCOLS
from .stats import summarize as _summarize

__all__ = ["summarize", "rankings", "rank_agreement", "rank_bootstrap", "RankBootstrap", "kendall_tau_b", "costs",
           "directions"]


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


def kendall_tau_b(ranks: np.ndarray) -> np.ndarray:
    r"""Kendall's τ-b between the columns of rank arrays, vectorised over leading axes.

    ``ranks`` has shape ``(..., M, P)`` (M ranked items, P rankings); returns ``(..., P, P)`` with
    :math:`\tau_b(p, q) = \sum_{i<j} s^p_{ij} s^q_{ij} / \sqrt{\sum_{i<j} (s^p_{ij})^2 \sum_{i<j} (s^q_{ij})^2}`,
    :math:`s^p_{ij} = \operatorname{sign}(r^p_i - r^p_j)` — scipy's ``kendalltau`` (variant ``"b"``, ties in either
    ranking corrected); NaN where a ranking is all ties.
    """
    r = np.asarray(ranks, dtype=float)
    i, j = np.triu_indices(r.shape[-2], k=1)
    s = np.sign(r[..., i, :] - r[..., j, :])  # (..., pairs i < j, P)
    num = np.matmul(np.swapaxes(s, -1, -2), s)  # (..., P, P)
    d = np.diagonal(num, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(d[..., :, None] * d[..., None, :])


@dataclass(frozen=True)
class RankBootstrap:
    """What :func:`rank_bootstrap` returns. Ranks: 1 = best. ``tau*``: protocols × protocols. ``mean_tau``:
    the mean τ over the pairs of distinct protocols with its interval (``mean, ci_low, ci_high``; ``boot_mean``: its
    average over the resamples). ``winners``:
    per protocol (and ``"mean rank"``, the mean of a method's ranks over the protocols) the method ranked first on
    all images and ``p_first``, the share of resamples in which it is ranked first alone. ``boot_ranks``: the
    resamples' ranks, ``(n_boot, methods, protocols)``."""

    methods: list[str]
    protocols: list[str]
    n_images: int
    n_dropped: int
    n_boot: int
    level: float
    ranks: pd.DataFrame
    tau: pd.DataFrame
    tau_low: pd.DataFrame
    tau_high: pd.DataFrame
    mean_tau: dict[str, float]
    winners: pd.DataFrame
    boot_ranks: np.ndarray = field(repr=False)

    def pairs(self) -> pd.DataFrame:
        """One row per pair of distinct protocols: ``a, b, tau, ci_low, ci_high``."""
        rows = [{"a": a, "b": b, "tau": self.tau.loc[a, b], "ci_low": self.tau_low.loc[a, b],
                 "ci_high": self.tau_high.loc[a, b]}
                for i, a in enumerate(self.protocols) for b in self.protocols[i + 1:]]
        return pd.DataFrame(rows, columns=["a", "b", "tau", "ci_low", "ci_high"])


def rank_bootstrap(scores: pd.DataFrame, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> RankBootstrap:
    """Method rankings per protocol and Kendall τ between protocols, with a bootstrap over images.

    ``scores`` is a tidy table (``image, method, protocol, value`` and optionally ``higher_is_better``; directions
    as in :func:`directions`). Only the images that have a value for every (method, protocol) are used (the others
    are counted in ``n_dropped``: replace a NaN that has a meaning — a sanity score of a constant map, say — before
    calling). Resample ``b`` draws the images ``numpy.random.default_rng(seed).integers(0, n, (n_boot, n))[b]``; each
    resample's means (one matrix product with the draw counts), ranks (``scipy.stats.rankdata``, ties averaged) and
    τ-b (:func:`kendall_tau_b`) are computed for all resamples at once. Intervals are percentile intervals (NaN
    resamples, a protocol whose methods all tie, left out); NaN for fewer than 2 images. A resample's means carry
    the sampling noise a second time, so the resamples' τ lie closer to 0 than the point estimate and ``p_first``
    is lower than a winner's true stability (``mean_tau["boot_mean"]`` shows the shift): the intervals are
    conservative for "the protocols agree" and "the winner is stable".
    """
    from scipy.stats import rankdata

    n_boot = check_int("n_boot", n_boot, 1, 10_000_000)
    check_range("level", level, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    missing = [c for c in ("image", "method", "protocol", "value") if c not in scores.columns]
    if missing:
        raise ValueError(f"column {missing[0]!r} is not in the table; accepted values: a tidy scores table with "
                         "image, method, protocol, value")
    dup = scores.duplicated(["image", "method", "protocol"])
    if bool(dup.any()):
        first = scores[dup].iloc[0]
        raise ValueError(f"the table has several rows for (image={first['image']!r}, method={first['method']!r}, "
                         f"protocol={first['protocol']!r}); accepted values: one row per image, method and protocol")
    up = directions(scores)
    methods = list(dict.fromkeys(scores["method"]))
    protocols = list(dict.fromkeys(scores["protocol"]))
    if len(methods) < 2 or len(protocols) < 1:
        raise ValueError(f"{len(methods)} method(s) and {len(protocols)} protocol(s) is not valid; accepted values: "
                         "at least 2 methods and 1 protocol")
    for p in protocols:
        if p not in up:
            raise ValueError(f"protocol {p!r} has no direction: pass a higher_is_better column or use registry names")
    cube = scores.set_index(["image", "method", "protocol"])["value"].astype(float).unstack(["method", "protocol"])
    cube = cube.reindex(columns=pd.MultiIndex.from_product([methods, protocols]))
    complete = cube.notna().all(axis=1)
    vals = cube[complete].to_numpy().reshape(-1, len(methods), len(protocols))  # (images, M, P)
    n = len(vals)
    if n == 0:
        raise ValueError("no image has a value for every (method, protocol); accepted values: a table with at least "
                         "one complete image")
    sign = np.array([-1.0 if up[p] else 1.0 for p in protocols])  # oriented: lower = better

    def ranks_of(means: np.ndarray) -> np.ndarray:  # (..., M, P) -> ranks along the methods
        return rankdata(means * sign, axis=-2, method="average")

    point_ranks = ranks_of(vals.mean(0))
    point_tau = kendall_tau_b(point_ranks)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.bincount((np.arange(n_boot)[:, None] * n + idx).ravel(), minlength=n_boot * n).reshape(n_boot, n)
    boot_means = (counts @ vals.reshape(n, -1) / n).reshape(n_boot, len(methods), len(protocols))
    boot_ranks = ranks_of(boot_means)
    boot_tau = kendall_tau_b(boot_ranks)  # (n_boot, P, P)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    off = ~np.eye(len(protocols), dtype=bool)
    with warnings.catch_warnings():  # all-NaN slices (a protocol whose methods all tie) give NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        point_mean = float(np.nanmean(point_tau[off])) if off.any() else float("nan")
        boot_mean = np.nanmean(boot_tau[:, off], axis=1) if off.any() else np.full(n_boot, np.nan)
        boot_mean_avg = float(np.nanmean(boot_mean))
        if n > 1:
            lo, hi = np.nanquantile(boot_tau, q, axis=0)
            mlo, mhi = (float(v) for v in np.nanquantile(boot_mean, q))
        else:
            lo = hi = np.full_like(point_tau, np.nan)
            mlo = mhi = float("nan")
    frame = lambda a: pd.DataFrame(a, index=protocols, columns=protocols)  # noqa: E731
    rows = []
    for j, p in enumerate(protocols):
        best = int(np.argmin(point_ranks[:, j]))
        rows.append({"protocol": p, "method": methods[best], "p_first": float((boot_ranks[:, best, j] == 1).mean())})
    mean_rank = point_ranks.mean(1)
    best = int(np.argmin(mean_rank))
    boot_mean_rank = boot_ranks.mean(2)  # (n_boot, M)
    alone = (boot_mean_rank[:, best][:, None] < np.delete(boot_mean_rank, best, axis=1)).all(axis=1)
    rows.append({"protocol": "mean rank", "method": methods[best], "p_first": float(alone.mean())})
    return RankBootstrap(
        methods=methods, protocols=protocols, n_images=n, n_dropped=int((~complete).sum()), n_boot=n_boot,
        level=level, ranks=pd.DataFrame(point_ranks, index=methods, columns=protocols), tau=frame(point_tau),
        tau_low=frame(lo), tau_high=frame(hi),
        mean_tau={"mean": point_mean, "ci_low": mlo, "ci_high": mhi, "boot_mean": boot_mean_avg},
        winners=pd.DataFrame(rows, columns=["protocol", "method", "p_first"]), boot_ranks=boot_ranks)

