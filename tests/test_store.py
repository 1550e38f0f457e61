"""The result store: safe formats (no unpickling anywhere), keys that follow the content, damaged entries are misses."""

from __future__ import annotations

import logging
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import LinearNet, make_classifier
from PIL import Image

import saliency_core as sc
from saliency_core.store import Store, content_key, decode_tree, encode_tree, image_digest


class _Plant:
    """Unpickling this object creates ``marker`` (what an attacker's payload would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _record(color=(200, 10, 10), size=32):
    return sc.ImageRecord(id="toy/0", image=Image.new("RGB", (size, size), color), label=3, source="toy")


def _entry(store: Store, area: str) -> list:
    return sorted((store.root / area).rglob("*.npz"))


def test_tree_roundtrip_keeps_types():
    value = {
        "path": {0.3: torch.ones(2, 3), 0.1: torch.zeros(1, dtype=torch.float64)},
        1: [1, 2.5, None, "x", (True, False)],
        (1, "a"): torch.arange(4, dtype=torch.bfloat16),
        "np": np.float32(3.5), "arr": np.arange(6).reshape(2, 3), "big": 2**80, "nan": float("nan"),
        "df": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), "s": pd.Series([1.0, 2.0], name="v"),
    }
    skeleton, arrays = encode_tree(value)
    back = decode_tree(skeleton, arrays)
    assert list(back) == list(value)
    assert list(back["path"]) == [0.3, 0.1] and torch.equal(back["path"][0.3], value["path"][0.3])
    assert back["path"][0.1].dtype == torch.float64
    assert back[1] == [1, 2.5, None, "x", (True, False)]
    assert back[(1, "a")].dtype == torch.bfloat16 and torch.equal(back[(1, "a")], value[(1, "a")])
    assert type(back["np"]) is np.float32 and back["np"] == 3.5
    assert np.array_equal(back["arr"], value["arr"]) and back["big"] == 2**80 and np.isnan(back["nan"])
    pd.testing.assert_frame_equal(back["df"], value["df"])
    pd.testing.assert_series_equal(back["s"], value["s"])


def test_unsupported_values_are_refused_not_pickled(tmp_path, caplog):
    store = Store(tmp_path)
    with pytest.raises(TypeError, match="cannot be stored safely"):
        encode_tree({"x": object()})
    with pytest.raises(TypeError, match="object arrays"):
        encode_tree(np.array([object()], dtype=object))
    with caplog.at_level(logging.WARNING, logger="saliency_core.store"):
        assert store.get_or_compute("k", {"a": 1}, lambda: {"x": object()})["x"] is not None
    assert "not stored" in caplog.text and not _entry(store, "values")


def test_explanation_key_follows_image_content_not_record_id(tmp_path, box_classifier):
    store = Store(tmp_path)
    rec = _record()
    ex = sc.get_explainer("occlusion", box_classifier, window=(3, 8, 8))  # depends on the pixel values
    e1 = store.explain(ex, rec, target=3)
    x_other = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    e2 = store.explain(ex, rec, target=3, x=x_other)  # same record, another tensor: not the record's map
    assert (store.hits, store.misses) == (0, 2) and not torch.equal(e1.map, e2.map)
    assert torch.equal(e2.map, ex.explain(x_other, 3).map)
    renamed = sc.ImageRecord(id="another/name", image=rec.image, label=None, source="x")
    assert torch.equal(store.explain(ex, renamed, target=3).map, e1.map) and store.hits == 1
    # (1, 3, H, W) and (3, H, W) are the same image
    assert image_digest(x_other) == image_digest(x_other.unsqueeze(0))


def test_explanation_key_depends_on_settings_target_model_and_weights(box_classifier, linear_classifier):
    x = box_classifier.preprocess(_record().image)
    g = sc.get_explainer("gradient", box_classifier)
    k = Store.explanation_digest(g, x, 3)
    assert Store.explanation_digest(sc.get_explainer("gradient", box_classifier, reduce="sum"), x, 3) != k
    assert Store.explanation_digest(g, x, None) != k and Store.explanation_digest(g, x, 2) != k
    assert Store.explanation_digest(sc.get_explainer("gradient", linear_classifier), x, 2) != \
        Store.explanation_digest(g, x, 2)
    # one changed weight at the very end of the last tensor changes the key (the full weights hash)
    net = LinearNet()
    with torch.no_grad():
        net.fc.weight[-1, -1] += 1e-3
    other = make_classifier(net, size=32)
    assert other.weights_id != linear_classifier.weights_id
    lin = sc.get_explainer("gradient", linear_classifier)
    assert Store.explanation_digest(sc.get_explainer("gradient", other), x, 2) != Store.explanation_digest(lin, x, 2)


def test_get_or_compute_values_and_code_hash(tmp_path):
    store = Store(tmp_path)
    calls = []
    v = store.get_or_compute("tbl", {"a": 1}, lambda: calls.append(1) or pd.DataFrame({"q": [1.0, 2.0]}))
    again = store.get_or_compute("tbl", {"a": 1}, lambda: calls.append(1) or None)
    pd.testing.assert_frame_equal(v, again)
    assert calls == [1] and (store.hits, store.misses) == (1, 1)
    assert next((tmp_path / "values").rglob("*.parquet"))
    # another code hash is another key
    assert store.load("tbl", {"a": 1}, code="saliency_core.metrics.sanity") is None
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": (1, 2), "a": 1})


def test_crash_between_write_and_rename_keeps_old_entry(tmp_path, monkeypatch):
    import os

    store = Store(tmp_path)
    store.store("k", {"a": 1}, {"v": 1})

    def boom(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        store.store("k", {"a": 1}, {"v": 2})
    monkeypatch.undo()
    assert store.load("k", {"a": 1}) == {"v": 1}
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.parametrize("how", ["pickle", "torch.save", "npz-object-array"])
def test_planted_pickle_never_runs(tmp_path, box_classifier, caplog, how):
    marker = tmp_path / "pwned"
    store = Store(tmp_path / "store")
    rec = _record()
    ex = sc.get_explainer("gradient", box_classifier)
    good = store.explain(ex, rec, target=3)
    store.store("k", {"a": 1}, {"v": 1})
    store.store("df", {"a": 1}, pd.DataFrame({"v": [1]}))
    store.append_rows("scores", pd.DataFrame({"key": ["x"], "value": [1.0]}))
    targets = [*_entry(store, "explanations"), *_entry(store, "values"),
               *(store.root / "values").rglob("*.parquet"), *(store.root / "tables").rglob("*.parquet")]
    assert len(targets) == 4
    for path in targets:
        if how == "pickle":
            path.write_bytes(pickle.dumps({"map": _Plant(marker)}))
        elif how == "torch.save":
            with open(path, "wb") as fh:
                torch.save({"map": _Plant(marker)}, fh)
        else:
            with open(path, "wb") as fh:
                np.savez(fh, __meta__=np.frombuffer(b"{}", dtype=np.uint8), a0=np.array([_Plant(marker)]))
    store2 = Store(tmp_path / "store")
    with caplog.at_level(logging.WARNING, logger="saliency_core.store"):
        again = store2.explain(ex, rec, target=3)
        assert store2.load("k", {"a": 1}) is None and store2.load("df", {"a": 1}) is None
        assert len(store2.rows("scores")) == 0
    assert not marker.exists()
    assert torch.equal(again.map, good.map) and store2.misses == 1  # recomputed, not read
    assert "damaged or wrong" in caplog.text
    assert not any(p.exists() for p in targets[1:])  # removed (the explanation was rewritten)


def test_right_format_wrong_contents_is_a_logged_miss(tmp_path, box_classifier, caplog):
    store = Store(tmp_path)
    rec = _record()
    ex = sc.get_explainer("gradient", box_classifier)
    store.explain(ex, rec, target=3)
    store.store("k", {"a": 1}, {"v": 1})
    store.store("k", {"a": 2}, {"v": 2})
    e_path = _entry(store, "explanations")[0]
    v1, v2 = (store.root / "values" / d[:2] / f"{d}.npz" for d in (store.key_digest("k", {"a": 1}),
                                                                       store.key_digest("k", {"a": 2})))
    v2.write_bytes(v1.read_bytes())  # a valid entry under another key's name
    # a valid store file whose explanation map is 3-D (wrong type of contents)
    from saliency_core.store import _write_npz

    skeleton, arrays = encode_tree({"map": torch.zeros(1, 2, 2), "target": 3})
    _write_npz(e_path, {"format": "saliency-store/1", "kind": "explanation", "key": e_path.stem, "tree": skeleton},
               arrays)
    with caplog.at_level(logging.WARNING, logger="saliency_core.store"):
        assert store.load("k", {"a": 2}) is None
        e = store.explain(ex, rec, target=3)
    assert e.map.dim() == 2 and store.misses == 2
    assert caplog.text.count("damaged or wrong") == 2 and not v2.exists()
    assert store.load("k", {"a": 1}) == {"v": 1}
    # a truncated zip is damaged too
    with zipfile.ZipFile(v1, "a") as z:
        z.writestr("junk", b"x")
    v1.write_bytes(v1.read_bytes()[:40])
    assert store.load("k", {"a": 1}) is None and not v1.exists()


def test_rows_merge_every_key_once(tmp_path):
    store = Store(tmp_path)
    store.append_rows("curves", pd.DataFrame({"key": ["a", "a", "b"], "x": [0.0, 1.0, 0.0]}))
    store.append_rows("curves", pd.DataFrame({"key": ["a", "a", "c"], "x": [5.0, 6.0, 1.0]}))  # a again: dropped
    other = Store(tmp_path)  # another process reading the same folder
    rows = other.rows("curves")
    assert rows["key"].tolist() == ["a", "a", "b", "c"] and rows["x"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert other.compact("curves") == 4 and len(list((tmp_path / "tables" / "curves").glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(Store(tmp_path).rows("curves"), rows)
    with pytest.raises(ValueError, match="'key' column"):
        store.append_rows("curves", pd.DataFrame({"x": [1.0]}))


def test_score_is_stored_with_its_curve(tmp_path, linear_classifier):
    store = Store(tmp_path)
    rec = _record()
    g = sc.get_explainer("gradient", linear_classifier)
    v = store.score("pixel_flip", g, rec)
    assert store.score("pixel_flip", g, rec) == v and store.hits == 1
    assert len(store.rows("scores")) == 1 and len(store.rows("curves")) == 10
    s = store.score("sanity", g, rec)  # the randomised model's explanation is stored as well
    assert -1.0 <= s <= 1.0 and len(_entry(store, "explanations")) == 2
    with pytest.raises(ValueError, match="pixel_flip setting 'tau' is not valid; accepted values: taus, fill"):
        store.score("pixel_flip", g, rec, tau=[0.1])


def test_default_root(monkeypatch, tmp_path):
    from saliency_core.store import default_root

    for var in ("SALIENCY_STORE", "SALIENCY_CACHE", "SALIENCY_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert str(default_root()) == "_cache"
    monkeypatch.setenv("SALIENCY_ROOT", str(tmp_path))
    assert default_root() == tmp_path / "_cache"
    monkeypatch.setenv("SALIENCY_CACHE", "/c")
    assert str(default_root()) == "/c"
    monkeypatch.setenv("SALIENCY_STORE", "/s")
    assert str(default_root()) == "/s"
