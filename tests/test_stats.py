"""Statistics of result tables: paired differences, order probabilities, rank tables, binomial intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saliency_core import stats


def _table(rng, n=40, shifts=(0.0, 0.5, 2.0)):
    cols = {f"m{i}": rng.normal(s, 1.0, n) for i, s in enumerate(shifts)}
    return pd.DataFrame(cols, index=pd.Index(range(n), name="image"))


def test_paired_difference_matches_the_mean_of_differences_and_is_seeded():
    t = _table(np.random.default_rng(0))
    a = stats.paired_difference(t, "m2", "m0", seed=3)
    b = stats.paired_difference(t, "m2", "m0", seed=3)
    assert a == b
    assert a["mean_diff"] == pytest.approx(float((t.m2 - t.m0).mean()))
    assert a["ci_low"] < a["mean_diff"] < a["ci_high"] and a["ci_low"] > 0 and a["p_positive"] == 1.0
    assert a["n"] == 40


def test_paired_difference_uses_the_pairing():
    """A common per-image offset cancels in a paired comparison: the interval is that of the constant shift."""
    rng = np.random.default_rng(1)
    base = rng.normal(0, 100, 30)
    t = pd.DataFrame({"a": base + 0.1, "b": base}, index=pd.Index(range(30), name="image"))
    d = stats.paired_difference(t, "a", "b")
    assert d["ci_low"] == pytest.approx(0.1) and d["ci_high"] == pytest.approx(0.1)


def test_paired_difference_drops_nan_images_and_names_bad_columns():
    t = _table(np.random.default_rng(2))
    t.loc[0, "m1"] = np.nan
    assert stats.paired_difference(t, "m1", "m0")["n"] == 39
    with pytest.raises(ValueError, match="column 'zz'.*accepted values"):
        stats.paired_difference(t, "zz", "m0")


def test_order_probability_and_rank_table():
    t = _table(np.random.default_rng(4), n=60)
    assert stats.order_probability(t, ["m0", "m1", "m2"]) > 0.9  # lower is better: m0 < m1 < m2
    assert stats.order_probability(t, ["m2", "m1", "m0"]) < 0.01
    assert stats.order_probability(t, ["m2", "m1", "m0"], higher_is_better=True) > 0.9
    r = stats.rank_table(t)
    assert list(r["method"]) == ["m0", "m1", "m2"] and list(r["rank"]) == [1, 2, 3]
    assert r.attrs["p_order"] == pytest.approx(stats.order_probability(t, ["m0", "m1", "m2"]))
    assert r["p_beats_next"].iloc[1] > 0.99


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=30), st.floats(-10, 10))
def test_paired_interval_contains_the_mean_and_shifts_with_it(values, shift):
    v = np.array(values)
    t = pd.DataFrame({"a": v + shift, "b": v}, index=pd.Index(range(len(v)), name="image"))
    d = stats.paired_difference(t, "a", "b")
    assert d["ci_low"] - 1e-6 <= d["mean_diff"] <= d["ci_high"] + 1e-6


def test_wide_refuses_duplicates():
    df = pd.DataFrame({"image": [0, 0], "method": ["a", "a"], "value": [1.0, 2.0]})
    with pytest.raises(ValueError, match="one row per image"):
        stats.wide(df)


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (1, 100)])
def test_proportion_ci_contains_the_proportion(k, n):
    lo, hi = stats.proportion_ci(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_summarize_mean_se_and_counts():
    df = pd.DataFrame({"m": ["a"] * 4 + ["b"], "v": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = stats.summarize(df, "v", ["m"]).set_index("m")
    assert out.loc["a", "mean"] == 2.5 and out.loc["a", "se"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert out.loc["b", "n"] == 1 and np.isnan(out.loc["b", "se"])
