"""Data records, folder loading and its errors; the old ``ResultCache`` API (now the store) keeps working."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image

import saliency_core as sc
from saliency_core.cache import ResultCache, cache_key


def test_embedded_images(embedded):
    assert len(embedded) == 20
    assert len({r.id for r in embedded}) == 20
    assert all(r.source == "foolbox" and 0 <= r.label < 1000 for r in embedded)
    assert embedded[0].label == 243  # imagenet_00_243.jpg


def test_embedded_skimage_extras():
    recs = sc.embedded_images(include_skimage=True)
    assert [r.label for r in recs[20:]] == [967, 872, 285]


def _write_images(folder, n, size=(40, 30)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (10 * i, 20, 30)).save(folder / f"img{i}.png")


def test_load_folder_layouts(tmp_path):
    # ImageFolder with WordNet ids
    _write_images(tmp_path / "a" / "n01440764", 2)
    _write_images(tmp_path / "a" / "5", 1)
    recs = sc.load_folder(tmp_path / "a")
    assert [r.label for r in recs] == [5, 0, 0]
    # flat + labels.csv
    _write_images(tmp_path / "b", 3)
    (tmp_path / "b" / "labels.csv").write_text("file,class_index\nimg0.png,1\nimg1.png,2\nimg2.png,3\n")
    recs = sc.load_folder(tmp_path / "b")
    assert [r.label for r in recs] == [1, 2, 3]
    # val folder + labels text file, deterministic subset
    _write_images(tmp_path / "c", 5)
    (tmp_path / "lab.txt").write_text("\n".join(["n01440764", "1", "2", "3", "4"]))
    recs = sc.load_folder(tmp_path / "c", labels=tmp_path / "lab.txt", n_images=3, seed=1)
    again = sc.load_folder(tmp_path / "c", labels=tmp_path / "lab.txt", n_images=3, seed=1)
    assert [r.id for r in recs] == [r.id for r in again] and len(recs) == 3


def test_load_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        sc.load_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a folder"):
        sc.load_folder(tmp_path / "missing")
    _write_images(tmp_path / "d", 1)
    (tmp_path / "d" / "labels.csv").write_text("file,class_index\nimg0.png,banana\n")
    with pytest.raises(ValueError, match="label 'banana' is not valid; accepted values"):
        sc.load_folder(tmp_path / "d")
    (tmp_path / "d" / "labels.csv").write_text("file,class_index\nimg0.png,1000\n")
    with pytest.raises(ValueError, match="label '1000' is not valid"):
        sc.load_folder(tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg' is not a readable image"):
        sc.load_folder(tmp_path / "e")


def test_cache_key_depends_on_everything():
    base = {"method": "m", "settings": {"a": 1}, "model": "x@1", "image": "i", "target": None}
    k = cache_key("explanation", base)
    for field, value in [("method", "n"), ("settings", {"a": 2}), ("model", "x@2"), ("image", "j"), ("target", 3)]:
        assert cache_key("explanation", {**base, field: value}) != k
    assert cache_key("explanation", dict(reversed(list(base.items())))) == k


def test_cache_explain_computes_once(tmp_path, box_classifier):
    cache = ResultCache(tmp_path)
    rec = sc.ImageRecord(id="toy/0", image=Image.new("RGB", (32, 32), (200, 10, 10)), label=3, source="toy")
    ex = sc.get_explainer("gradient", box_classifier)
    e1 = cache.explain(ex, rec, target=3)
    e2 = cache.explain(ex, rec, target=3)
    assert (cache.misses, cache.hits) == (1, 1)
    assert torch.equal(e1.map, e2.map) and e2.n_forward == e1.n_forward == 1
    cache.explain(sc.get_explainer("gradient", box_classifier, reduce="sum"), rec, target=3)
    assert cache.misses == 2


def test_cache_crash_between_write_and_rename(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path)
    cache.store("k", {"a": 1}, {"v": 1})

    def boom(src, dst):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.store("k", {"a": 1}, {"v": 2})
    with pytest.raises(KeyboardInterrupt):
        cache.store("k", {"a": 3}, {"v": 3})
    monkeypatch.undo()
    # the old entry is intact, the new one absent, no temp files left behind
    assert cache.load("k", {"a": 1}) == {"v": 1}
    assert cache.load("k", {"a": 3}) is None
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    calls = []
    assert cache.get_or_compute("k", {"a": 3}, lambda: calls.append(1) or {"v": 3}) == {"v": 3}
    assert cache.get_or_compute("k", {"a": 3}, lambda: calls.append(1) or {"v": 4}) == {"v": 3}
    assert calls == [1]


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    cache = ResultCache(tmp_path)
    cache.store("k", {"a": 1}, {"v": 1})
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(b"garbage")
    assert cache.load("k", {"a": 1}) is None and not path.exists()
