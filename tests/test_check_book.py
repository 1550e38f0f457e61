"""tools/check_book.py finds what a reader would see broken, on tiny hand-made pages (one headless Chromium run), and
checks the launch buttons and the notebook download on a tiny Jupyter Book built once with a dummy repository URL.

Skips when Chromium (Debian package ``chromium``) or websocket-client is unavailable. The MathJax case also needs the
npm cache that ``tools/vendor_mathjax.sh`` fills (``.vendor/mathjax``); it skips without it. The built-book cases
need jupyter-book (the ``book`` extra).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
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

DUMMY_REPO = "https://github.com/example-org/example-book"
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


def _launch(stem: str, repo: str = DUMMY_REPO) -> str:
    org_repo = repo.removeprefix("https://github.com/")
    return (f"<a href='https://mybinder.org/v2/gh/{org_repo}/main?urlpath=tree/notebooks/{stem}.ipynb'>Binder</a>"
            f"<a href='https://colab.research.google.com/github/{org_repo}/blob/main/notebooks/{stem}.ipynb'>Colab</a>")


# chapter pages with the theme's download button (a link into _sources/) and launch links
PAGES.update({
    "notebooks/dl_ok.html": _page("<a href='../_sources/notebooks/dl_ok.ipynb'>.ipynb</a>" + _launch("dl_ok")),
    "notebooks/dl_txt.html": _page("<a href='../_sources/notebooks/dl_txt.ipynb.txt'>.ipynb</a>" + _launch("dl_txt")),
    "notebooks/dl_bad.html": _page("<a href='../_sources/notebooks/dl_bad.ipynb'>.ipynb</a>" + _launch("dl_bad")),
    "notebooks/wrong_launch.html": _page("<a href='../_sources/notebooks/wrong_launch.ipynb'>.ipynb</a>"  # no Colab
                                         + _launch("wrong_launch", "https://github.com/someone/else").split("<a href"
                                                                                                     "='https://colab")[0]),
})
SOURCES = {"dl_ok.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
           "dl_txt.ipynb.txt": json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
           "dl_bad.ipynb": "<html>not a notebook</html>",
           "wrong_launch.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})}

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
    (root / "_sources" / "notebooks").mkdir(parents=True)
    for name, text in SOURCES.items():
        (root / "_sources" / "notebooks" / name).write_text(text)
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
                         timeout=20, notebooks=nbs, repo_url=DUMMY_REPO)


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


def test_notebook_download_and_launch_links(report):
    assert report.reasons("notebooks/dl_ok.html") == []
    assert set(report.notebook_links["notebooks/dl_ok.html"]) == {"download", "Colab", "Binder"}
    _one(report, "notebooks/dl_txt.html", "serves the notebook as text (.ipynb.txt)")
    _one(report, "notebooks/dl_bad.html", "is not a valid notebook")
    _one(report, "notebooks/wrong_launch.html", "launch button Binder: expected https://mybinder.org/v2/gh/example-org/"
                                                "example-book/main?urlpath=tree/notebooks/wrong_launch.ipynb, found "
                                                "https://mybinder.org/v2/gh/someone/else")
    _one(report, "notebooks/wrong_launch.html", "launch button Colab: expected https://colab.research.google.com/"
                                                "github/example-org/example-book/blob/main/notebooks/wrong_launch.ipynb,"
                                                " found none")


def test_screenshots_are_png(report):
    names = sorted(p.name for p in report.screenshots)
    assert names == ["chapter.png", "intro.png", "launch.png"]
    for p in report.screenshots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


@pytest.mark.skipif(not MATHJAX_ES5.is_dir(), reason="MathJax not vendored (run tools/vendor_mathjax.sh once)")
def test_vendored_mathjax_renders_offline(report):
    assert report.reasons("math_ok.html") == []
    _one(report, "math_error.html", "MathJax error")


# ------------------------------------------------------------------------------------------------ a built book
@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """A two-page Jupyter Book built ONCE with the runner's staging (:func:`saliency_core.book.launch.stage_config`)
    and ``BOOK_REPO_URL`` set to a dummy repository, as ``make book`` would build it."""
    pytest.importorskip("jupyter_book")
    nbf = pytest.importorskip("nbformat")
    import os

    import yaml

    from saliency_core.book.launch import ENV, repo_url, stage_config

    src = tmp_path_factory.mktemp("book")
    (src / "book").mkdir()
    (src / "notebooks").mkdir()
    shutil.copy2(ROOT / "_config.yml", src / "_config.yml")
    (src / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/01_demo\n")
    (src / "book" / "intro.md").write_text("# Intro\n\nA two-page book.\n")
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell("# Demo chapter\n\nText."),
                nbf.v4.new_code_cell("print(1 + 1)", execution_count=1,
                                     outputs=[nbf.v4.new_output("stream", name="stdout", text="2\n")])]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbf.write(nb, src / "notebooks" / "01_demo.ipynb")
    old = os.environ.get(ENV)
    os.environ[ENV] = DUMMY_REPO
    try:
        cfg = stage_config(src / "_config.yml", repo_url(src))
    finally:
        os.environ.pop(ENV) if old is None else os.environ.__setitem__(ENV, old)
    cfg.pop("bibtex_bibfiles", None)  # the two pages cite nothing and have no vendored MathJax
    for key in ("html_static_path", "mathjax_path"):
        cfg["sphinx"]["config"].pop(key, None)
    (src / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "jupyter_book"]
    r = subprocess.run([*cmd, "build", str(src), "--path-output", str(src)], capture_output=True, text=True,
                       timeout=600)
    html = src / "_build" / "html"
    assert (html / "notebooks" / "01_demo.html").is_file(), r.stdout[-2000:] + r.stderr[-2000:]
    return html, src


def test_built_book_launch_buttons_and_download(built_book, tmp_path):
    from saliency_core.book.launch import launch_links

    html, src = built_book
    rep = cb.check_book(html, CHROMIUM, screenshots=tmp_path, timeout=30, notebooks=src / "notebooks",
                        repo_url=DUMMY_REPO, pages=[html / "notebooks" / "01_demo.html"])
    assert rep.failures == [], [str(f) for f in rep.failures]
    links = rep.notebook_links["notebooks/01_demo.html"]
    expected = launch_links(DUMMY_REPO, "main", "notebooks/01_demo.ipynb")
    assert {k: links[k] for k in expected} == expected
    assert expected["Colab"] == ("https://colab.research.google.com/github/example-org/example-book/blob/main/"
                                 "notebooks/01_demo.ipynb")
    assert links["download"].endswith("_sources/notebooks/01_demo.ipynb")
    assert json.loads(Path(links["download"]).read_text())["cells"]
    assert (tmp_path / "launch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same pages judged against another repository: both buttons are reported
    other = cb.check_book(html, CHROMIUM, timeout=30, repo_url="https://github.com/someone/else",
                          pages=[html / "notebooks" / "01_demo.html"])
    assert sorted(f.reason.split(":")[0] for f in other.failures) == ["launch button Binder", "launch button Colab"]


def test_stage_config_without_url_turns_the_buttons_off(tmp_path):
    import yaml

    from saliency_core.book.launch import stage_config

    shutil.copy2(ROOT / "_config.yml", tmp_path / "_config.yml")
    cfg = stage_config(tmp_path / "_config.yml", "")
    assert cfg["launch_buttons"]["colab_url"] == "" and cfg["launch_buttons"]["binderhub_url"] == ""
    assert yaml.safe_load((tmp_path / "_config.yml").read_text())["repository"]["url"] == ""
    with pytest.raises(ValueError, match="is not valid; accepted values: https://github.com/<org>/<repo>"):
        stage_config(tmp_path / "_config.yml", "https://example.org/repo")
