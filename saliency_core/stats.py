"""Summary statistics of tidy result tables: one helper for mean ± standard error and a bootstrap interval.

:func:`summarize` groups a tidy table (one row per image, e.g. a study's ``scores``) and returns per group the mean,
the standard error (sample standard deviation with ddof = 1 over √n; NaN for n = 1), a percentile-bootstrap
confidence interval of the mean (fixed seed, so a rerun prints the same numbers) and the counts. NaN values (a
Spearman correlation of a constant map, say) are left out of the statistics and counted in ``n_nan``.

Comparisons between methods are paired over images (:func:`paired_difference`: the mean of the per-image
differences with a percentile-bootstrap interval from :func:`scipy.stats.bootstrap`, resampling images), and rank
tables carry the probability that an order holds (:func:`order_probability`: the share of bootstrap resamples of the
images in which the methods' means come out in that order). Every resampling is seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .checks import check_int, check_range

__all__ = ["summarize", "mean_se_text", "wide", "paired_difference", "order_probability", "rank_table",
           "proportion_ci"]


def summarize(df: pd.DataFrame, value: str = "value", by: Sequence[str] = ("method", "protocol"),
              level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per group of ``by``: ``mean, se, ci_low, ci_high, n, n_nan`` of column ``value`` (groups in order of
    appearance). The interval is the percentile bootstrap of the mean with ``n_boot`` resamples drawn from one
    ``numpy.random.default_rng(seed)`` (NaN bounds for n < 2)."""
    check_range("level", level, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    n_boot = check_int("n_boot", n_boot, 1, 10_000_000)
    by = list(by)
    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        cols = ", ".join(map(str, df.columns))
        raise ValueError(f"column {missing[0]!r} is not in the table; accepted values: {cols}")
    rng = np.random.default_rng(seed)
    rows = []
    for keys, g in df.groupby(by, sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        v = g[value].to_numpy(dtype=float)
        ok = v[~np.isnan(v)]
        n = len(ok)
        mean = float(ok.mean()) if n else float("nan")
        se = float(ok.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        if n > 1:
            boots = rng.choice(ok, size=(n_boot, n), replace=True).mean(1)
            lo, hi = (float(q) for q in np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2]))
        else:
            lo = hi = float("nan")
        rows.append({**dict(zip(by, keys)), "mean": mean, "se": se, "ci_low": lo, "ci_high": hi, "n": n,
                     "n_nan": int(len(v) - n)})
    return pd.DataFrame(rows, columns=[*by, "mean", "se", "ci_low", "ci_high", "n", "n_nan"])


def mean_se_text(summary: pd.DataFrame, digits: int = 3, interval: str = "se") -> pd.Series:
    """``"m ± se"`` (``interval="se"``) or ``"m [lo, hi]"`` (``interval="ci"``) strings of a :func:`summarize` table."""
    if interval == "se":
        return pd.Series([f"{m:.{digits}f} ± {s:.{digits}f}" if np.isfinite(s) else f"{m:.{digits}f}"
                          for m, s in zip(summary["mean"], summary["se"])], index=summary.index)
    if interval == "ci":
        return pd.Series([f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]" if np.isfinite(lo) else f"{m:.{digits}f}"
                          for m, lo, hi in zip(summary["mean"], summary["ci_low"], summary["ci_high"])],
                         index=summary.index)
    raise ValueError(f"interval={interval!r} is not valid; accepted values: 'se', 'ci'")


def wide(df: pd.DataFrame, value: str = "value", index: str = "image", columns: str = "method") -> pd.DataFrame:
    """Images × methods table of ``value`` (one row per image; duplicates are an error, not averaged)."""
    dup = df.duplicated([index, columns])
    if bool(dup.any()):
        first = df[dup].iloc[0]
        raise ValueError(f"the table has several rows for ({index}={first[index]!r}, {columns}={first[columns]!r}); "
                         "accepted values: one row per image and method (filter the protocol/setting first)")
    return df.pivot(index=index, columns=columns, values=value)


def paired_difference(table: pd.DataFrame, a: str, b: str, level: float = 0.95, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    r"""Mean of the per-image differences :math:`d_i = a_i - b_i` of two columns of a :func:`wide` table, with a
    percentile-bootstrap interval (images resampled, ``n_boot`` ≥ 2000 resamples, seeded) and the share of
    resamples in which the mean difference is positive. Images where either value is NaN are left out."""
    from scipy.stats import bootstrap

    check_range("level", level, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    n_boot = check_int("n_boot", n_boot, 1, 10_000_000)
    for c in (a, b):
        if c not in table.columns:
            raise ValueError(f"column {c!r} is not in the table; accepted values: {', '.join(map(str, table.columns))}")
    d = (table[a] - table[b]).to_numpy(dtype=float)
    d = d[~np.isnan(d)]
    out = {"mean_diff": float(d.mean()) if len(d) else float("nan"), "ci_low": float("nan"),
           "ci_high": float("nan"), "p_positive": float("nan"), "n": int(len(d))}
    if len(d) > 1:
        rng = np.random.default_rng(seed)
        res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                        random_state=rng, vectorized=True)
        out["ci_low"], out["ci_high"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
        out["p_positive"] = float((res.bootstrap_distribution > 0).mean())
    return out


def order_probability(table: pd.DataFrame, order: Sequence[str], higher_is_better: bool = False,
                      n_boot: int = 2000, seed: int = 0) -> float:
    """Share of bootstrap resamples of the images (rows of a :func:`wide` table; rows with a NaN in ``order``
    dropped) in which the column means come out strictly in ``order``, best first."""
    n_boot = check_int("n_boot", n_boot, 1, 10_000_000)
    vals = table[list(order)].dropna().to_numpy(dtype=float)
    if len(vals) < 2:
        return float("nan")
    idx = np.random.default_rng(seed).integers(0, len(vals), size=(n_boot, len(vals)))
    means = vals[idx].mean(axis=1)  # (n_boot, methods)
    steps = np.diff(means, axis=1)
    ok = (steps < 0) if higher_is_better else (steps > 0)
    return float(ok.all(axis=1).mean())


def rank_table(table: pd.DataFrame, higher_is_better: bool = False, level: float = 0.95, n_boot: int = 2000,
               seed: int = 0) -> pd.DataFrame:
    """Methods (columns of a :func:`wide` table) ranked by their mean over the images every method has: mean,
    bootstrap CI, rank, and the probability that each method beats the next one in the ranking (paired bootstrap),
    plus ``p_order`` — the probability that the whole order holds (:func:`order_probability`)."""
    t = table.dropna()
    long = t.reset_index().melt(id_vars=t.index.name or "index", var_name="method", value_name="value")
    summ = summarize(long, "value", ["method"], level, n_boot, seed).set_index("method")
    order = list(summ["mean"].sort_values(ascending=not higher_is_better).index)
    summ = summ.loc[order]
    summ["rank"] = np.arange(1, len(order) + 1)
    p_next = []
    for m, nxt in zip(order, order[1:] + [None]):
        if nxt is None:
            p_next.append(float("nan"))
            continue
        diff = paired_difference(t, nxt, m, level, n_boot, seed) if not higher_is_better else \
            paired_difference(t, m, nxt, level, n_boot, seed)
        p_next.append(diff["p_positive"])
    summ["p_beats_next"] = p_next
    summ.attrs["p_order"] = order_probability(t, order, higher_is_better, n_boot, seed)
    return summ.reset_index()


def proportion_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper–Pearson (exact binomial) interval of a proportion k/n (``scipy.stats.binomtest``)."""
    from scipy.stats import binomtest

    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)
