"""Generated front matter: reproduction map, claims summary and intro figure, from temporary run outputs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from saliency_core.book import frontmatter as fm
from saliency_core.book.report import claims

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\nnot-a-real-image"
ROW = {"claim": "masks | sharp", "paper": "0.73", "ours": "0.61", "criterion": "ours ≥ 0.9 × paper",
       "verdict": "partly"}


def _nb(cells: list[dict]) -> dict:
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text: str, tags: tuple[str, ...] = (), png: bytes | None = None) -> dict:
    outputs = [{"output_type": "display_data", "metadata": {},
                "data": {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}}] if png else []
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": text, "outputs": outputs,
            "execution_count": 1}


@pytest.fixture
def stage(tmp_path, monkeypatch):
    """A staged book (``stage/``) and an empty repository root (``root/``) whose ``_build`` holds run outputs."""
    monkeypatch.delenv("SALIENCY_RESULTS_DIR", raising=False)
    st, root = tmp_path / "stage", tmp_path / "root"
    (st / "notebooks").mkdir(parents=True)
    (st / "book").mkdir()
    (root / "_build").mkdir(parents=True)
    (st / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nparts:\n  - caption: A\n    chapters:\n"
                                 "      - file: notebooks/02_b\n      - file: notebooks/01_a\n"
                                 "      - file: book/claims\n      - file: notebooks/09_absent\n")
    (st / "notebooks" / "01_a.ipynb").write_text(json.dumps(_nb([
        _md("# Paper A: title"),
        _code('# Parameters\nprofile = "book"\nn_images = 4\nareas = [0.1, 0.2]\n',
              tags=("injected-parameters", "hide-cell")),
        _md("## Figure 1: curves"), _code("plot()", png=PNG),
        _md("*The curves. The table gives the AUC.*"),
        _md("## Tables 2 and 3: scores\n## Reward versus area (the paper's Fig. 4 style)"),
    ])))
    (st / "notebooks" / "02_b.ipynb").write_text(json.dumps(_nb([
        _md("# A tour"), _md("## Photos"), _md("## One map"), _md("## Curves"), _code("x = 1"),
    ])))
    (st / "notebooks" / ".running-03_c.ipynb").write_text("{}")  # a runner's work in progress: ignored
    for name, marker in fm.MARKERS.items():
        (st / "book" / name).write_text(f"# {name}\n\nProse before.\n\n{marker}\n\nProse after.\n")
    return st, root


def _timings(root: Path, name: str, entries: list[dict]) -> None:
    (root / "_build" / name).write_text(json.dumps(entries))


def _row(text: str, stem: str) -> str:
    return next(line for line in text.splitlines() if f"<../notebooks/{stem}>" in line and line.startswith("|"))


def test_chapter_stems_follow_the_toc_and_skip_missing_and_hidden(stage):
    st, _ = stage
    assert fm.chapter_stems(st) == ["02_b", "01_a"]


@pytest.mark.parametrize("seconds, text", [(4.26, "4.3 s"), (42.0, "42 s"), (179.7, "3 min 0 s"),
                                           (1208.9, "20 min 9 s"), (3725, "1 h 2 min")])
def test_format_seconds(seconds, text):
    assert fm.format_seconds(seconds) == text


def test_reproduction_map_from_timings(stage):
    st, root = stage
    _timings(root, "timings-book.json", [{"notebook": "01_a", "profile": "book", "seconds": 75.0, "threads": 1},
                                         {"notebook": "02_b", "profile": "smoke", "seconds": 3.0}])
    text = fm.reproduction_map(st, "book", root)
    row_a, row_b = _row(text, "01_a"), _row(text, "02_b")
    assert text.index(row_b) < text.index(row_a)  # toc order
    assert row_a.startswith("| Figure 1, Tables 2 and 3, Fig. 4 |")
    assert row_a.endswith("| `book` | 1 min 15 s (1 thread) | not measured (no GPU here) |")
    # another profile's entry is not this profile's time; 02_b was not executed under `book` either
    assert "| Photos; One map; … |" in row_b and "| `book` | not run | not measured (no GPU here) |" in row_b
    assert "`python -m saliency_core.run --profile book --only <notebook>`, e.g. " \
           "`python -m saliency_core.run --profile book --only 01_a`" in text
    assert "`python -m saliency_core.run --profile paper --only 01_a -p device=cuda -p model=vgg19" in text
    assert "Sum of the measured `book` CPU times: 1 min 15 s over 1 of 2 notebooks." in text
    assert "No run under the `paper` profile has been timed here" in text


def test_reproduction_map_executed_but_untimed_and_gpu_file(stage):
    st, root = stage
    _timings(root, "timings-book-gpu.json", [{"notebook": "02_b", "profile": "book", "seconds": 2.5,
                                              "device": "NVIDIA H100"}])
    text = fm.reproduction_map(st, "book", root)
    assert "| executed, time not recorded | not run |" in _row(text, "01_a")  # executed copy, no CPU time
    assert "| not run | 2.5 s (NVIDIA H100) |" in _row(text, "02_b")
    assert "not measured (no GPU here)" not in text
    assert "Sum of the measured" not in text  # nothing measured on the CPU: no invented total


def test_reproduction_map_adds_paper_table_when_timed(stage):
    st, root = stage
    _timings(root, "timings-paper.json", [{"notebook": "02_b", "profile": "paper", "seconds": 7200}])
    text = fm.reproduction_map(st, "book", root)
    assert "**`paper` profile**" in text
    rows = [line for line in text.splitlines() if "<../notebooks/02_b>" in line]
    assert len(rows) == 2 and "| `paper` | 2 h 0 min |" in rows[1] and "| `book` | not run |" in rows[0]


@pytest.mark.parametrize("content", ["{}", "[{\"notebook\": \"01_a\"}]", "[{\"seconds\": 3}]", "not json"])
def test_malformed_timings_name_the_file(stage, content):
    st, root = stage
    (root / "_build" / "timings-book.json").write_text(content)
    with pytest.raises(ValueError, match="timings-book.json is not a valid timings file"):
        fm.reproduction_map(st, "book", root)


def test_claims_page_without_claims_says_not_run(stage):
    st, root = stage
    text = fm.claims_page(st, "book", root)
    assert "have not been run under the `book` profile" in text
    assert not any(sym in text for sym in fm.SYMBOLS.values())  # no verdict at all


def test_claims_page_tables_counts_and_links(stage):
    st, root = stage
    out = root / "_build" / "results"
    for nb, rows in (("01_a", [ROW, {**ROW, "claim": "b", "verdict": "reproduced"}]),
                     ("07_gone", [{**ROW, "verdict": "not tested"}])):
        claims(rows, notebook=nb, profile="book", model="lite0", n_images=3, write=False)
        (out / "book").mkdir(parents=True, exist_ok=True)
        (out / "book" / f"{nb}.claims.json").write_text(json.dumps(
            {"notebook": nb, "profile": "book", "model": "lite0", "n_images": 3, "claims": rows}))
    text = fm.claims_page(st, "book", root)
    assert "**All chapters:** ✓ reproduced: 1 · ◐ partly: 1 · ✗ not reproduced: 0 · ○ not tested: 1 (of 3 claims)" \
        in text
    assert "## Paper A: title" in text
    assert "chapter {doc}`01_a <../notebooks/01_a>`, profile `book`, model `lite0`, 3 images" in text
    assert "| masks \\| sharp | 0.73 | 0.61 | ◐ partly | ours ≥ 0.9 × paper |" in text
    assert "`n_images=4`" in text and "`areas=[0.1, 0.2]`" in text  # the parameters the run used
    assert "chapter `07_gone`" in text and "<../notebooks/07_gone>" not in text  # no link to a missing page
    assert "No claims file under this profile for: {doc}`02_b <../notebooks/02_b>`." in text


def test_claims_page_reads_results_dir_from_environment(stage, tmp_path, monkeypatch):
    st, root = stage
    monkeypatch.setenv("SALIENCY_RESULTS_DIR", str(tmp_path / "elsewhere"))
    claims([ROW], notebook="01_a", profile="book")
    text = fm.claims_page(st, "book", root)
    assert "◐ partly" in text and "$SALIENCY_RESULTS_DIR/book" in text


def test_intro_figure_from_tagged_cell(stage):
    st, _ = stage
    nb_path = st / "notebooks" / "01_a.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][3]["metadata"]["tags"] = ["intro-figure"]
    nb_path.write_text(json.dumps(nb))
    text = fm.intro_figure(st, "book", st / "book" / "_generated")
    assert (st / "book" / "_generated" / "intro-figure.png").read_bytes() == PNG
    assert text.startswith("```{figure} _generated/intro-figure.png")
    assert "The curves. From the chapter {doc}`01_a <../notebooks/01_a>`, executed under the `book` profile." in text
    assert "table" not in text.lower()  # the caption's sentence about a table the intro does not show is dropped


def test_intro_figure_without_any_image(stage):
    st, _ = stage
    assert fm.intro_figure(st, "book", st / "book" / "_generated") == ""  # no tag, no tour
    assert not (st / "book" / "_generated").exists()
    (st / "notebooks" / "00_tour.ipynb").write_text(json.dumps(_nb([_md("# Tour"), _code("x = 1")])))
    (st / "_toc.yml").write_text("root: book/intro\nchapters:\n  - file: notebooks/00_tour\n")
    text = fm.intro_figure(st, "book", st / "book" / "_generated")
    assert text == "The tour ({doc}`00_tour <../notebooks/00_tour>`) shows the four methods side by side on one " \
                   "photo.\n"


def test_intro_figure_falls_back_to_the_tours_first_image(stage):
    st, _ = stage
    (st / "notebooks" / "00_tour.ipynb").write_text(json.dumps(_nb([
        _md("# Tour"), _code("x = 1"), _code("show()", png=b"first"), _code("show()", png=b"second")])))
    (st / "_toc.yml").write_text("root: book/intro\nchapters:\n  - file: notebooks/00_tour\n")
    text = fm.intro_figure(st, "smoke", st / "book" / "_generated")
    assert (st / "book" / "_generated" / "intro-figure.png").read_bytes() == b"first"
    assert "From the chapter {doc}`00_tour <../notebooks/00_tour>`, executed under the `smoke` profile." in text


def test_write_pages_fills_every_marker(stage):
    st, root = stage
    written = fm.write_pages(st, "book", root)
    assert sorted(p.name for p in written) == sorted(fm.MARKERS)
    for name, marker in fm.MARKERS.items():
        text = (st / "book" / name).read_text()
        assert marker not in text
        assert text.startswith(f"# {name}\n\nProse before.\n\n") and text.endswith("\nProse after.\n")
    assert "| Reproduces | Notebook | Profile |" in (st / "book" / "reproduce.md").read_text()
    assert not list((st / "book").glob(".*.tmp"))


@pytest.mark.parametrize("page", sorted(fm.MARKERS))
def test_missing_marker_is_a_clear_error(stage, page):
    st, root = stage
    (st / "book" / page).write_text("# prose only\n")
    with pytest.raises(ValueError, match=f"{page} has 0 lines '{fm.MARKERS[page]}'; accepted values: exactly one"):
        fm.write_pages(st, "book", root)


def test_duplicate_marker_is_an_error(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("<!-- m -->\ntext\n<!-- m -->\n")
    with pytest.raises(ValueError, match="has 2 lines '<!-- m -->'"):
        fm.fill_marker(page, "<!-- m -->", "generated")


def test_missing_page_and_bad_profile_are_errors(stage):
    st, root = stage
    with pytest.raises(ValueError, match="profile='gpu' is not valid; accepted values: smoke, book, paper"):
        fm.write_pages(st, "gpu", root)
    (st / "book" / "claims.md").unlink()
    with pytest.raises(ValueError, match="claims.md does not exist"):
        fm.write_pages(st, "book", root)


def test_repository_pages_carry_their_markers():
    for name, marker in fm.MARKERS.items():
        lines = (REPO / "book" / name).read_text().splitlines()
        assert sum(line.strip() == marker for line in lines) == 1, name
    assert "file: book/claims" in (REPO / "_toc.yml").read_text()


def test_claims_page_release_and_live_columns_and_disagreements(stage, tmp_path, monkeypatch):
    from saliency_core.book.report import claims as write_claims

    monkeypatch.setenv("SALIENCY_RESULTS_DIR", str(tmp_path / "res"))
    row = {"claim": "A beats B", "paper": "0.7 vs 0.6", "ours": "0.71 [0.69, 0.73] vs 0.65", "criterion": "CI > 0",
           "verdict": "reproduced", "n": 50, "live": "0.70 vs 0.72 on 2 photos", "live_verdict": "not reproduced",
           "live_n": 2}
    same = {**row, "claim": "C beats D", "live_verdict": "reproduced", "live_n": 20}
    write_claims([row, same], notebook="01_a", profile="book")
    st, root = stage
    text = fm.claims_page(st, "book", root)
    assert "| Release (N images) |" in text and "N = 50: 0.71 [0.69, 0.73]" in text
    assert "## Where the release and this run disagree" in text
    section = text.split("## Where the release and this run disagree")[1]
    assert "A beats B" in section and "C beats D" not in section and "(n = 2), *indicative*" in section
