"""The claims ledger: validation, atomic writes, and what load_claims gives back (and refuses)."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from saliency_core.book import report
from saliency_core.book.report import Claim, claims, load_claims, results_dir, verdict

ROW = {"claim": "LEG-TV has the lowest S_key", "paper": "0.056", "ours": "0.071", "criterion": "ours ≤ others",
       "verdict": "partly"}


@pytest.fixture
def results(tmp_path, monkeypatch):
    base = tmp_path / "results"
    monkeypatch.setenv("SALIENCY_RESULTS_DIR", str(base))
    return base


def test_verdict_helper():
    assert verdict(True) == "reproduced"
    assert verdict(False, partly=True) == "partly"
    assert verdict(False) == "not reproduced"
    assert verdict(True, partly=True) == "reproduced"


def test_claim_rejects_unknown_verdict_with_accepted_values():
    with pytest.raises(ValueError, match=r"verdict='yes' is not valid; accepted values: reproduced, partly"):
        Claim(**{**ROW, "verdict": "yes"})


def test_claim_fields_numbers_are_formatted_and_other_types_rejected():
    c = Claim(**{**ROW, "paper": 0.123456, "ours": np.float32(0.5), "criterion": np.int64(3)})
    assert (c.paper, c.ours, c.criterion) == ("0.1235", "0.5", "3")
    assert Claim(**{**ROW, "paper": None}).paper == ""
    with pytest.raises(ValueError, match=r"ours=\[1\] is not valid; accepted values: a str"):
        Claim(**{**ROW, "ours": [1]})
    with pytest.raises(ValueError, match="claim=None is not valid"):
        Claim(**{**ROW, "claim": None})
    with pytest.raises(ValueError, match="claim='' is not valid"):
        Claim(**{**ROW, "claim": "  "})
    with pytest.raises(ValueError, match="paper=True is not valid"):
        Claim(**{**ROW, "paper": True})


@pytest.mark.parametrize("row", [{k: v for k, v in ROW.items() if k != "criterion"}, {**ROW, "extra": "x"}, "row"])
def test_claim_rows_need_exactly_the_fields(row, results):
    with pytest.raises(ValueError, match="accepted values: a Claim or a dict with keys claim, paper, ours"):
        claims([row], notebook="03_leg", profile="book")
    assert not results.exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"profile": "fast"}, "profile='fast' is not valid; accepted values: smoke, book, paper"),
    ({"notebook": "../03_leg"}, "notebook='../03_leg' is not valid"),
    ({"notebook": ""}, "notebook='' is not valid"),
    ({"notebook": ".hidden"}, "notebook='.hidden' is not valid"),
    ({"n_images": -1}, "n_images=-1 is not valid"),
    ({"n_images": 2.0}, "n_images=2.0 is not valid"),
])
def test_claims_rejects_bad_arguments(kwargs, match, results):
    args = {"notebook": "03_leg", "profile": "book", **kwargs}
    with pytest.raises(ValueError, match=match):
        claims([ROW], **args)
    assert not results.exists()


def test_claims_rejects_empty_rows(results):
    with pytest.raises(ValueError, match=r"rows=\[\] is not valid"):
        claims([], notebook="03_leg", profile="book")


def test_claims_writes_payload_and_returns_table(results):
    df = claims([ROW, Claim(**{**ROW, "verdict": "not tested"})], notebook="03_leg", profile="book",
                model="efficientnet_lite0", n_images=4)
    assert list(df.columns) == ["claim", "paper", "ours", "verdict", "criterion"]
    assert list(df.verdict) == ["partly", "not tested"]
    out = results / "book" / "03_leg.claims.json"
    assert results_dir("book") == results / "book"
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["notebook"] == "03_leg" and payload["model"] == "efficientnet_lite0" and payload["n_images"] == 4
    assert {k: payload["claims"][0][k] for k in ROW} == ROW
    assert "≤" in out.read_text(encoding="utf-8")  # not escaped: readable files
    assert sorted(p.name for p in out.parent.iterdir()) == ["03_leg.claims.json"]  # no temporary file left


def test_claims_write_false_writes_nothing(results):
    claims([ROW], notebook="03_leg", profile="book", write=False)
    assert not results.exists()


def test_claims_write_is_atomic(results, monkeypatch):
    claims([ROW], notebook="03_leg", profile="book")
    out = results / "book" / "03_leg.claims.json"
    before = out.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        claims([{**ROW, "verdict": "reproduced"}], notebook="03_leg", profile="book")
    assert out.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in out.parent.iterdir()) == ["03_leg.claims.json"]  # the temp file is gone


def test_load_claims_missing_folder_is_empty(results):
    assert load_claims("paper") == []


def test_load_claims_sorted_by_notebook_and_per_profile(results):
    for nb in ("04_igos_pp", "01_extremal_perturbations", "03_leg"):
        claims([ROW], notebook=nb, profile="book")
    claims([{**ROW, "verdict": "reproduced"}], notebook="02_invariant_perturbation", profile="smoke")
    got = load_claims("book")
    assert [c["notebook"] for c in got] == ["01_extremal_perturbations", "03_leg", "04_igos_pp"]
    assert all(c["profile"] == "book" and [{k: x[k] for k in ROW} for x in c["claims"]] == [ROW] for c in got)
    assert [c["notebook"] for c in load_claims("smoke")] == ["02_invariant_perturbation"]


def test_load_claims_base_argument_overrides_environment(tmp_path, results):
    claims([ROW], notebook="03_leg", profile="book")
    other = tmp_path / "elsewhere"
    assert load_claims("book", base=other) == []
    assert [c["notebook"] for c in load_claims("book", base=results)] == ["03_leg"]


def test_load_claims_rejects_bad_profile(results):
    with pytest.raises(ValueError, match="profile='gpu' is not valid; accepted values: smoke, book, paper"):
        load_claims("gpu")


@pytest.mark.parametrize("content, why", [
    ("{not json", "Expecting property name"),
    ('{"notebook": "03_leg", "claims": []}', "no non-empty 'claims' list"),
    ('[1, 2]', "no non-empty 'claims' list"),
    (json.dumps({"notebook": "03_leg", "claims": [{**ROW, "verdict": "maybe"}]}), "verdict='maybe' is not valid"),
    (json.dumps({"notebook": "03_leg", "claims": [{"claim": "x"}]}), "a dict with keys"),
])
def test_load_claims_names_the_bad_file(results, content, why):
    d = results / "book"
    d.mkdir(parents=True)
    (d / "03_leg.claims.json").write_text(content)
    with pytest.raises(ValueError, match="03_leg.claims.json is not a valid claims file") as err:
        load_claims("book")
    assert why in str(err.value)


def test_load_claims_rejects_a_file_of_another_profile(results):
    d = results / "book"
    d.mkdir(parents=True)
    (d / "03_leg.claims.json").write_text(json.dumps({"notebook": "03_leg", "profile": "smoke", "claims": [ROW]}))
    with pytest.raises(ValueError, match="profile='smoke' is not valid in the 'book' folder"):
        load_claims("book")


def test_results_dir_default_is_under_the_repository(monkeypatch, tmp_path):
    from saliency_core.book import repo_root

    monkeypatch.delenv("SALIENCY_RESULTS_DIR", raising=False)
    monkeypatch.delenv("SALIENCY_ROOT", raising=False)
    root = repo_root(pathlib.Path(__file__).parent)
    monkeypatch.chdir(root / "notebooks")  # kernels run in notebooks/: the root is found upwards
    assert results_dir("book") == root / "_build" / "results" / "book"
    monkeypatch.chdir(tmp_path)  # outside a repository: under the current folder
    assert results_dir("book") == tmp_path / "_build" / "results" / "book"
    assert os.path.isabs(results_dir("smoke"))


def test_claims_with_release_and_live_columns(results):
    row = {**ROW, "verdict": "reproduced", "n": 50, "live": "0.071 on 4 photos", "live_verdict": "partly", "live_n": 4}
    table = claims([row], notebook="03_leg", profile="book")
    assert list(table.columns) == ["claim", "paper", "n", "ours", "verdict", "live", "live_verdict", "criterion"]
    c = Claim.from_dict(row)
    assert c.live_indicative and not Claim.from_dict({**row, "live_n": 20}).live_indicative
    got = load_claims("book")[0]["claims"][0]
    assert got["n"] == 50 and got["live_verdict"] == "partly"


@pytest.mark.parametrize("bad, msg", [({"n": 19}, "verdict='reproduced' on n=19"), ({"n": 2.5}, "n=2.5"),
                                      ({"live_verdict": "yes"}, "live_verdict='yes'"), ({"extra": 1}, "optionally")])
def test_claims_refuse_verdicts_below_twenty_images_and_bad_fields(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Claim.from_dict({**ROW, "verdict": "reproduced", **bad})
    assert Claim.from_dict({**ROW, "verdict": "not tested", "n": 3}).n == 3
