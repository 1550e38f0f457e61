"""Leaderboard: scores per (method, image, protocol), cached; rankings respect each protocol's direction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from saliency_core import ImageRecord, ResultCache, leaderboard


def _records(n=3):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
        a[8:24, 8:24] = 230  # a bright box: the evidence of class 3 in the box model
        out.append(ImageRecord(id=f"toy/{i}", image=Image.fromarray(a), label=3, source="toy"))
    return out


PROTOS = ["pixel_flip", "lor", "skey_black", "del_rise", "ins_rise", "del_igospp", "ins_igospp"]


def test_evaluate_scores_costs_and_cache(tmp_path, box_classifier):
    cache = ResultCache(tmp_path)
    methods = {"gradient": {}, "occlusion": {"window": [3, 8, 8]}}
    settings = {"rise_step": 64, "igospp_grid": 8, "skey_grid": 50}
    scores, costs = leaderboard.evaluate(box_classifier, _records(), methods, PROTOS, cache=cache,
                                         settings=settings, progress=False)
    assert len(scores) == 2 * 3 * len(PROTOS) and scores["value"].notna().all()
    assert set(costs.columns) >= {"n_forward", "n_backward", "seconds"}
    assert (costs[costs.method == "gradient"].n_backward == 1).all()
    hits = cache.hits
    again, _ = leaderboard.evaluate(box_classifier, _records(), methods, PROTOS, cache=cache, settings=settings,
                                    progress=False)
    pd.testing.assert_frame_equal(scores, again)
    assert cache.hits - hits == len(scores) + 6  # every score and every explanation came from the cache


def test_rankings_direction_and_agreement():
    summary = pd.DataFrame({
        "method": ["a", "b", "c"] * 2,
        "protocol": ["ins_rise"] * 3 + ["del_rise"] * 3,
        "mean": [0.9, 0.5, 0.1, 0.1, 0.5, 0.9],
    })
    ranks = leaderboard.rankings(summary)
    assert ranks.loc["a", "ins_rise"] == 1 and ranks.loc["a", "del_rise"] == 1  # higher ins, lower del is better
    tau = leaderboard.rank_agreement(ranks)
    assert tau.loc["ins_rise", "del_rise"] == pytest.approx(1.0) and np.allclose(tau, tau.T)


def test_summarize_bootstrap_is_seeded():
    df = pd.DataFrame({"method": ["m"] * 5, "protocol": ["lor"] * 5, "value": [0.1, 0.4, 0.2, 0.9, 0.3]})
    s1, s2 = leaderboard.summarize(df, seed=3), leaderboard.summarize(df, seed=3)
    pd.testing.assert_frame_equal(s1, s2)
    r = s1.iloc[0]
    assert r["ci_low"] <= r["mean"] <= r["ci_high"] and r["mean"] == pytest.approx(0.38)


def test_unknown_protocol(box_classifier):
    with pytest.raises(ValueError, match="protocol='auc' is not valid; accepted values"):
        leaderboard.evaluate(box_classifier, _records(1), {"gradient": {}}, ["auc"], progress=False)
