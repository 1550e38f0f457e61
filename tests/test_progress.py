"""The runner's live progress (saliency_core/book/progress.py): papermill's cell count reaches the display, the ETA
comes from the last timings, and the display prints what it should in a log and redraws in place on a terminal."""

from __future__ import annotations

import io
import json

import pytest

from saliency_core.book import progress as pg


def test_papermill_progress_reports_every_cell():
    from tqdm import tqdm

    seen = []
    bar = tqdm(total=4, **pg.papermill_progress(lambda d, t: seen.append((d, t))))
    for _ in range(4):
        bar.update(1)
    bar.close()
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {1, 2, 3, 4} <= {d for d, _ in seen}


def test_file_callback_round_trip(tmp_path):
    f = tmp_path / "x.progress"
    assert pg.read_progress(f) is None
    pg.file_callback(f)(3, 17)
    assert pg.read_progress(f) == (3, 17)
    f.write_text("3")
    assert pg.read_progress(f) is None


def test_eta_and_durations():
    assert pg.eta_seconds(10, 2, 10, last=60) == 50  # from the last run
    assert pg.eta_seconds(70, 7, 10, last=60) == pytest.approx(30)  # past it: the cell rate
    assert pg.eta_seconds(5, 0, 10, last=None) is None
    assert pg.format_duration(75.4) == "1:15" and pg.format_duration(3725) == "1:02:05"
    assert pg.format_duration(None) == "?"


def test_last_timings(tmp_path):
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / "timings-book.json").write_text(json.dumps([{"notebook": "a", "seconds": 12.5}]))
    assert pg.last_timings(tmp_path, "book") == {"a": 12.5}
    assert pg.last_timings(tmp_path, "smoke") == {}


def test_lines_display_in_a_log():
    out = io.StringIO()
    d = pg.Display(["a", "b"], {"a": 100.0, "b": 40.0}, width=2, stream=out, interval=0.0)
    assert d.mode == "lines"
    d.start("a")
    d.update("a", 3, 10)
    d.tick()
    d.tick()  # nothing new: no second line
    d.finish("a", 12.3)
    d.close()
    text = out.getvalue()
    assert "[run] a started (last run 1:40)" in text
    assert text.count("cells   3/10") == 1 and "ETA 1:" in text
    assert "[run] 0 done, 1 running, 1 queued; ETA" in text
    assert "[run] a done in 0:12 (12.3 s, 10 cells)" in text
    assert "\x1b[" not in text


def test_live_display_redraws_in_place():
    out = io.StringIO()
    d = pg.Display(["a"], {}, stream=out, mode="live")
    d.start("a")
    d.update("a", 1, 4)
    d.tick()
    d.finish("a", 2.0, ok=False)
    d.close()
    text = out.getvalue()
    assert "\x1b[2F\x1b[J" in text  # the two-line block (notebook + summary) erased before each redraw
    assert "cells   1/4" in text and "[run] a FAILED in 0:02" in text


def test_bad_mode_is_one_line(monkeypatch):
    monkeypatch.setenv(pg.MODE_ENV, "fancy")
    with pytest.raises(ValueError, match="SALIENCY_PROGRESS='fancy' is not valid; accepted values: live, lines, off"):
        pg.Display(["a"])


def test_papermill_execution_feeds_the_callback(tmp_path):
    pm = pytest.importorskip("papermill")
    nbf = pytest.importorskip("nbformat")
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell("# t"), nbf.v4.new_code_cell("x = 1"), nbf.v4.new_code_cell("x + 1")]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbf.write(nb, tmp_path / "t.ipynb")
    seen = []
    pm.execute_notebook(str(tmp_path / "t.ipynb"), str(tmp_path / "o.ipynb"), kernel_name="python3",
                        progress_bar=pg.papermill_progress(lambda d, t: seen.append((d, t))), log_output=False)
    assert seen[-1] == (3, 3)
