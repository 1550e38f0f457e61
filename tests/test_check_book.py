"""tools/check_book.py finds what a reader would see broken, on tiny hand-made pages (one headless Chromium run).

Skips when Chromium (Debian package ``chromium``) or websocket-client is unavailable. The MathJax case also needs the
npm cache that ``tools/vendor_mathjax.sh`` fills (``.vendor/mathjax``); it skips without it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("websocket")


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


cb = _load_checker()
CHROMIUM = cb.find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
MATHJAX_ES5 = ROOT / ".vendor" / "mathjax" / "node_modules" / "mathjax" / "es5"

# a valid 1x1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
                       "rkJggg==")


def _page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title>{head}</head><body>{body}</body></html>"


PAGES = {
    "index.html": _page("<a href='clean.html'>clean</a>"),
    # clean: everything below must NOT be reported
    "clean.html": _page(
        "<h1 id='top'>Clean</h1><img src='_images/ok.png' alt='ok'>"
        "<img src='data:image/png;base64," + base64.b64encode(PNG).decode() + "'>"
        "<a href='other.html#sec'>other</a> <a href='#top'>top</a> <a href='#'>#</a> <a href='sub/'>folder</a>"
        "<a href='https://example.org/x.html'>external</a> <a href='mailto:a@b.c'>mail</a>"
        "<p>It costs $5 and $10, or $5-$10; a shell variable $HOME.</p>"
        "<pre>$$ x^2 $$ and \\(y\\) inside a code block</pre><code>$a_i$</code>"
        "<div class='highlight'><pre>Traceback-free code</pre></div>"),
    "other.html": _page("<h2 id='sec'>Section</h2><a name='legacy'></a>"),
    "sub/index.html": _page("<a href='../other.html#legacy'>up</a>"),
    # a myst-nb error output and a traceback printed to stderr
    "traceback.html": _page(
        "<div class='cell_output docutils container'><div class='output traceback highlight-ipythontb notranslate'>"
        "<div class='highlight'><pre>---------------------------------------------------------------------------\n"
        "ValueError                                Traceback (most recent call last)\nCell In[3], line 1\n"
        "ValueError: bad input</pre></div></div></div>"),
    "traceback_stderr.html": _page(
        "<div class='output stderr'><pre>Traceback (most recent call last):\n"
        "  File \"x.py\", line 1, in &lt;module&gt;\nKeyError: 'missing'</pre></div>"),
    "missing_image.html": _page("<p>fig</p><img src='_images/nope.png'><img src='_images/corrupt.png'>"),
    "raw_display.html": _page("<p>Energy $$E = mc^2$$ here.</p>"),
    "raw_inline.html": _page("<p>The mask $m_{ij}$ is smooth.</p>"),
    "raw_paren.html": _page("<p>Inline \\(x^2\\) was never typeset.</p>"),
    "unrendered.html": _page("<p>see <span class='math notranslate nohighlight'>\\(\\alpha\\)</span></p>"),
    "broken_link.html": _page(
        "<a href='missing.html'>a</a> <a href='other.html#nosuch'>b</a> <a href='#nowhere'>c</a>"
        "<a href='../../etc/hosts'>d</a> see <a class='reference external' href='http://protocols.md'>protocols.md</a>"),
    "redirect_ok.html": "<meta http-equiv=\"Refresh\" content=\"0; url=clean.html\" />",
    "redirect_bad.html": "<meta http-equiv=\"Refresh\" content=\"0; url=book/nowhere.html\" />",
    "notebooks/no_figures.html": _page("<div class='cell_output docutils container'><pre>text only</pre></div>"),
    "notebooks/figures.html": _page("<div class='cell_output docutils container'><img src='../_images/ok.png'></div>"),
    "remote.html": _page("<p>x</p>", head="<script src='https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js'>"
                                           "</script>"),
}

MATHJAX_HEAD = ("<script>window.MathJax = {\"options\": {\"processHtmlClass\": \"tex2jax_process|mathjax_process|math|"
                "output_area\"}}</script><script defer src='_static/mathjax/tex-chtml.js'></script>")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    pages = dict(PAGES)
    if MATHJAX_ES5.is_dir():
        dest = root / "_static" / "mathjax"
        dest.mkdir(parents=True)
        shutil.copy2(MATHJAX_ES5 / "tex-chtml.js", dest)
        shutil.copytree(MATHJAX_ES5 / "output" / "chtml" / "fonts", dest / "output" / "chtml" / "fonts")
        shutil.copytree(MATHJAX_ES5 / "input" / "tex" / "extensions", dest / "input" / "tex" / "extensions")
        pages["math_ok.html"] = _page(
            "<p>Inline <span class='math notranslate nohighlight'>\\(m_{ij} \\in [0, 1]\\)</span>.</p>"
            "<div class='math notranslate nohighlight'>\\[\\min_m \\|m\\|_1 + \\lambda \\, \\mathrm{TV}(m)\\]</div>",
            head=MATHJAX_HEAD)
        pages["math_error.html"] = _page("<p><span class='math notranslate nohighlight'>\\(\\frac{1}\\)</span></p>",
                                         head=MATHJAX_HEAD)
    for name, html in pages.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(html)
    (root / "_images").mkdir()
    (root / "_images" / "ok.png").write_bytes(PNG)
    (root / "_images" / "corrupt.png").write_bytes(b"not a png")
    nbs = tmp_path_factory.mktemp("notebooks")
    figure = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "", "text/plain": ["<Figure>"]}}
    for stem in ("no_figures", "figures"):
        nb = {"cells": [{"cell_type": "code", "source": "plt.show()", "metadata": {}, "execution_count": 1,
                         "outputs": [figure]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        (nbs / f"{stem}.ipynb").write_text(json.dumps(nb))
    return cb.check_book(root, CHROMIUM, screenshots=root / "shots", intro="clean.html", chapter="other.html",
                         timeout=20, notebooks=nbs)


def _one(report, page: str, fragment: str) -> None:
    reasons = report.reasons(page)
    assert any(fragment in r for r in reasons), f"{page}: expected {fragment!r} in {reasons}"


def test_every_page_is_visited(report):
    assert set(PAGES) <= set(report.pages)
    assert not any(p.startswith("_images") for p in report.pages)


def test_clean_pages_pass(report):
    for page in ("index.html", "clean.html", "other.html", "sub/index.html", "redirect_ok.html"):
        assert report.reasons(page) == [], page


def test_traceback_is_reported(report):
    _one(report, "traceback.html", "Python traceback in an output: ValueError: bad input")
    _one(report, "traceback_stderr.html", "KeyError: 'missing'")


def test_missing_image_is_reported(report):
    _one(report, "missing_image.html", "missing image '_images/nope.png': file does not exist")
    _one(report, "missing_image.html", "missing image '_images/corrupt.png': it does not decode")
    _one(report, "notebooks/no_figures.html", "missing figures: notebooks/no_figures.ipynb stores 1 image output(s)")
    assert report.reasons("notebooks/figures.html") == []


def test_raw_math_is_reported(report):
    _one(report, "raw_display.html", "raw $$ math")
    _one(report, "raw_inline.html", "raw $...$ math")
    _one(report, "raw_paren.html", "raw \\( \\) or \\[ \\] math")
    _one(report, "unrendered.html", "math not rendered")


def test_broken_links_are_reported(report):
    _one(report, "broken_link.html", "'missing.html': missing.html does not exist")
    _one(report, "broken_link.html", "no anchor #nosuch in other.html")
    _one(report, "broken_link.html", "no anchor #nowhere in broken_link.html")
    _one(report, "broken_link.html", "points outside the built book")
    _one(report, "broken_link.html", "the file name 'protocols.md' was turned into a web address")
    assert len(report.reasons("broken_link.html")) == 5
    _one(report, "redirect_bad.html", "'book/nowhere.html': book/nowhere.html does not exist")


def test_remote_script_is_reported(report):
    _one(report, "remote.html", "remote resource (needs network): script https://cdn.jsdelivr.net")


def test_screenshots_are_png(report):
    names = sorted(p.name for p in report.screenshots)
    assert names == ["chapter.png", "intro.png"]
    for p in report.screenshots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


@pytest.mark.skipif(not MATHJAX_ES5.is_dir(), reason="MathJax not vendored (run tools/vendor_mathjax.sh once)")
def test_vendored_mathjax_renders_offline(report):
    assert report.reasons("math_ok.html") == []
    _one(report, "math_error.html", "MathJax error")
