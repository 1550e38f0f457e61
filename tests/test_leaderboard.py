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
    # ... and the spec's protocols with their settings, less the randomisation check (left to the release)
    spec_protocols = {k: {kk: vv for kk, vv in v.items() if kk != "protocol"} for k, v in study.protocols.items()}
    assert params["book"]["protocols"] == {k: v for k, v in spec_protocols.items() if k != "sanity"}


def _tidy(values: np.ndarray, methods, protocols, up) -> pd.DataFrame:
    """(images, methods, protocols) array -> tidy scores with a higher_is_better column."""
    i, m, p = np.meshgrid(range(values.shape[0]), range(len(methods)), range(len(protocols)), indexing="ij")
    return pd.DataFrame({"image": [f"im{k}" for k in i.ravel()], "method": np.asarray(methods)[m.ravel()],
                         "protocol": np.asarray(protocols)[p.ravel()], "value": values.ravel(),
                         "higher_is_better": np.asarray(up)[p.ravel()]})


def test_kendall_tau_b_matches_scipy_with_ties():
    from scipy.stats import kendalltau, rankdata

    rng = np.random.default_rng(1)
    ranks = rankdata(rng.integers(0, 4, size=(3, 7, 5)), axis=1)  # 3 draws of 5 rankings of 7 items, many ties
    tau = leaderboard.kendall_tau_b(ranks)
    assert tau.shape == (3, 5, 5)
    for b in range(3):
        for p in range(5):
            for q in range(5):
                ref = kendalltau(ranks[b, :, p], ranks[b, :, q]).statistic
                assert tau[b, p, q] == pytest.approx(ref, nan_ok=True)
    assert np.isnan(leaderboard.kendall_tau_b(np.ones((4, 2)))).all()  # all ties: undefined, not 0


def test_rank_bootstrap_known_orders_directions_and_winner():
    rng = np.random.default_rng(0)
    methods, n = ["a", "b", "c", "d"], 30
    base = np.array([4.0, 3.0, 2.0, 1.0]) + rng.normal(0, 0.3, size=(n, 4))  # a clearly best when higher is better
    vals = np.stack([base, base, -base, base], axis=2)  # p2 = p1; p3 = -p1 (same direction); p4 = p1, lower better
    rb = leaderboard.rank_bootstrap(_tidy(vals, methods, ["p1", "p2", "p3", "p4"], [True, True, True, False]))
    assert rb.n_images == n and rb.n_dropped == 0 and rb.boot_ranks.shape == (2000, 4, 4)
    assert rb.tau.loc["p1", "p2"] == 1 and rb.tau_low.loc["p1", "p2"] == 1 and rb.tau_high.loc["p1", "p2"] == 1
    assert rb.tau.loc["p1", "p3"] == -1 and rb.tau_high.loc["p1", "p3"] == -1  # reversed in every resample
    assert rb.tau.loc["p1", "p4"] == -1 and rb.tau.loc["p3", "p4"] == 1  # the direction flips the ranking
    assert list(rb.ranks["p1"]) == [1, 2, 3, 4] and list(rb.ranks["p3"]) == [4, 3, 2, 1]
    # pairs p1p2, p1p3, p1p4, p2p3, p2p4, p3p4: +1, -1, -1, -1, -1, +1 in every resample
    assert rb.mean_tau["mean"] == pytest.approx(-1 / 3) and rb.mean_tau["ci_high"] == pytest.approx(-1 / 3)
    w = rb.winners.set_index("protocol")
    assert w.loc["p1", "method"] == "a" and w.loc["p1", "p_first"] == 1.0 and w.loc["p3", "method"] == "d"
    assert w.loc["mean rank", "method"] in methods and 0 <= w.loc["mean rank", "p_first"] <= 1
    pairs = rb.pairs()
    assert len(pairs) == 6 and (pairs["ci_low"] <= pairs["tau"]).all() and (pairs["tau"] <= pairs["ci_high"]).all()
    # the point estimate is leaderboard.rank_agreement of leaderboard.rankings of the summary
    scores = _tidy(vals, methods, ["p1", "p2", "p3", "p4"], [True, True, True, False])
    ref = leaderboard.rank_agreement(leaderboard.rankings(leaderboard.summarize(scores)))
    pd.testing.assert_frame_equal(rb.tau, ref.loc[rb.protocols, rb.protocols], check_names=False)


def test_rank_bootstrap_resamples_are_the_documented_draws_and_seeded():
    from scipy.stats import rankdata

    rng = np.random.default_rng(2)
    vals = rng.normal(size=(9, 5, 3)) + np.linspace(0, 1, 5)[None, :, None]
    scores = _tidy(vals, list("vwxyz"), ["ins_rise", "del_rise", "lor"], [True, False, False])
    rb = leaderboard.rank_bootstrap(scores, n_boot=50, seed=7)
    idx = np.random.default_rng(7).integers(0, 9, size=(50, 9))
    sign = np.array([-1.0, 1.0, 1.0])
    for b in (0, 17, 49):
        means = vals[idx[b]].mean(0)
        np.testing.assert_allclose(rb.boot_ranks[b], rankdata(means * sign, axis=0))
    again = leaderboard.rank_bootstrap(scores, n_boot=50, seed=7)
    pd.testing.assert_frame_equal(rb.tau_low, again.tau_low)
    assert np.array_equal(rb.boot_ranks, again.boot_ranks)
    assert not np.array_equal(rb.boot_ranks, leaderboard.rank_bootstrap(scores, n_boot=50, seed=8).boot_ranks)
    lo, hi = rb.mean_tau["ci_low"], rb.mean_tau["ci_high"]
    assert -1 <= lo <= hi <= 1


def test_rank_bootstrap_drops_incomplete_images_and_refuses_bad_tables():
    vals = np.arange(24, dtype=float).reshape(4, 3, 2)
    vals[1, 2, 0] = np.nan  # one (image, method, protocol) missing: that image is left out
    scores = _tidy(vals, ["a", "b", "c"], ["ins_rise", "del_rise"], [True, False])
    rb = leaderboard.rank_bootstrap(scores, n_boot=20)
    assert rb.n_images == 3 and rb.n_dropped == 1
    one = leaderboard.rank_bootstrap(scores[scores["image"] == "im0"], n_boot=20)
    assert one.n_images == 1 and np.isnan(one.tau_low.to_numpy()).all() and np.isnan(one.mean_tau["ci_low"])
    with pytest.raises(ValueError, match="several rows for"):
        leaderboard.rank_bootstrap(pd.concat([scores, scores.iloc[:1]]))
    with pytest.raises(ValueError, match="column 'value' is not in the table"):
        leaderboard.rank_bootstrap(scores.drop(columns="value"))
    with pytest.raises(ValueError, match="n_boot=0 is not valid"):
        leaderboard.rank_bootstrap(scores, n_boot=0)
    with pytest.raises(ValueError, match="no image has a value"):
        leaderboard.rank_bootstrap(scores.assign(value=np.nan))
