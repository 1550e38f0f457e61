"""Summary statistics of tidy result tables: one helper for mean ± standard error and a bootstrap interval.

:func:`summarize` groups a tidy table (one row per image, e.g. a study's ``scores``) and returns per group the mean,
the standard error (sample standard deviation with ddof = 1 over √n; NaN for n = 1), a percentile-bootstrap
confidence interval of the mean (fixed seed, so a rerun prints the same numbers) and the counts. NaN values (a
Spearman correlation of a constant map, say) are left out of the statistics and counted in ``n_nan``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .checks import check_int, check_range

__all__ = ["summarize", "mean_se_text"]


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
