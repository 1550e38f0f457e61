"""Leaderboard: summaries with one mean ± SE / bootstrap helper; rankings respect each protocol's direction; the
leaderboard study spec is valid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saliency_core import leaderboard, stats
from saliency_core.protocols import PROTOCOLS, get_protocol
from saliency_core.study import Study

ROOT = Path(__file__).resolve().parent.parent


def test_rankings_direction_and_agreement():
    summary = pd.DataFrame({
        "method": ["a", "b", "c"] * 2,
        "protocol": ["ins_rise"] * 3 + ["del_rise"] * 3,
        "mean": [0.9, 0.5, 0.1, 0.1, 0.5, 0.9],
    })
    ranks = leaderboard.rankings(summary)  # directions from the registry names
    assert ranks.loc["a", "ins_rise"] == 1 and ranks.loc["a", "del_rise"] == 1  # higher ins, lower del is better
    tau = leaderboard.rank_agreement(ranks)
    assert tau.loc["ins_rise", "del_rise"] == pytest.approx(1.0) and np.allclose(tau, tau.T)
    # a study label that is not a registry name takes its direction from the scores' higher_is_better column
    scores = pd.DataFrame({"method": ["a", "b"], "protocol": ["my ins", "my ins"], "value": [0.2, 0.8],
                           "higher_is_better": [True, True]})
    s = leaderboard.summarize(scores)
    assert leaderboard.rankings(s).loc["b", "my ins"] == 1
    with pytest.raises(ValueError, match="has no direction"):
        leaderboard.rankings(s.drop(columns="higher_is_better"))


def test_summarize_bootstrap_is_seeded_and_counts_nan():
    df = pd.DataFrame({"method": ["m"] * 6, "protocol": ["lor"] * 6, "value": [0.1, 0.4, 0.2, 0.9, 0.3, np.nan]})
    s1, s2 = leaderboard.summarize(df, seed=3), leaderboard.summarize(df, seed=3)
    pd.testing.assert_frame_equal(s1, s2)
    r = s1.iloc[0]
    assert r["ci_low"] <= r["mean"] <= r["ci_high"] and r["mean"] == pytest.approx(0.38)
    assert r["n"] == 5 and r["n_nan"] == 1 and not r["higher_is_better"]
    assert r["se"] == pytest.approx(np.std([0.1, 0.4, 0.2, 0.9, 0.3], ddof=1) / np.sqrt(5))
    one = stats.summarize(df.iloc[:1])
    assert np.isnan(one["se"].iloc[0]) and np.isnan(one["ci_low"].iloc[0]) and one["n"].iloc[0] == 1
    assert stats.mean_se_text(s1).iloc[0].startswith("0.380 ± ")
    with pytest.raises(ValueError, match="column 'score' is not in the table"):
        stats.summarize(df, "score")


def test_costs_per_method():
    rows = pd.DataFrame({"method": ["a", "a", "b"], "n_forward": [1, 3, 10], "n_backward": [1, 1, 0],
                         "seconds": [0.1, 0.3, 1.0]})
    c = leaderboard.costs(rows)
    assert c.loc["a", "n_forward"] == 2 and c.loc["b", "seconds"] == 1.0


def test_every_registered_protocol_has_a_direction_and_valid_defaults():
    for name, p in PROTOCOLS.items():
        assert p.name == name and isinstance(p.higher_is_better, bool)
        assert p.settings() == dict(p.defaults)
    assert get_protocol("ins_rise").higher_is_better and not get_protocol("del_igospp").higher_is_better
    with pytest.raises(ValueError, match="protocol='auc' is not valid; accepted values"):
        get_protocol("auc")
    with pytest.raises(ValueError, match="n_grid=0 is not valid"):
        get_protocol("skey_black").settings(n_grid=0)


def test_leaderboard_study_spec_is_valid():
    study = Study.from_yaml(ROOT / "params" / "studies" / "leaderboard.yaml")
    assert study.name == "leaderboard" and study.images["embedded"]["n"] == 20
    assert set(study.protocols) >= {"pixel_flip", "lor", "sanity", "ins_rise", "del_igospp"}
    for spec in study.protocols.values():
        get_protocol(spec["protocol"]).settings(**{k: v for k, v in spec.items() if k != "protocol"})
    import yaml

    params = yaml.safe_load((ROOT / "params" / "05_leaderboard.yaml").read_text())
    assert params["book"].get("methods") is None  # the book profile runs the spec's methods and budgets
