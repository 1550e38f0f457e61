"""Check the built book as a reader would: open every HTML page in headless Chromium (file://, no network).

Usage::

    python tools/check_book.py [--html _build/html] [--screenshots _build/screenshots] [--install-chromium]

Every page of ``--html`` (except the theme's ``_static``/``_sources``/``_images`` folders) is loaded from disk in a
fresh headless Chromium profile and driven over the DevTools protocol (``websocket-client``). After the load event
and MathJax's first typeset, a page FAILS on:

* a Python traceback (an error output, or ``Traceback (most recent call last)`` anywhere in the page text);
* a missing image (``<img>`` whose file does not exist or that does not decode), or a chapter page with no figure
  although its committed notebook stores image outputs (figures lost when the book's notebooks were executed);
* math that MathJax did not render: a ``.math`` element without MathJax output, raw ``$$``, ``\\(``/``\\[`` or
  ``$...$`` TeX left in the page text (code blocks excepted), or a MathJax error (``mjx-merror``);
* a broken internal link (``href`` to a local file that does not exist, or to an ``#anchor`` absent from its page,
  or pointing outside the built book);
* anything that needs network (a remote script/stylesheet/image/frame or any http(s) request), a local resource
  that fails to load, or an uncaught JavaScript exception;
* on a chapter page (``notebooks/*.html``) with the theme's download buttons: a ".ipynb" download that is missing,
  served as ``.ipynb.txt`` or not a notebook (the file is opened as JSON: ``cells`` and ``nbformat``);
* with ``--repo-url`` (default ``$BOOK_REPO_URL``, else the URL of the staged ``_build/src/_config.yml``): a chapter
  page whose Colab or Binder launch button is missing or does not link to the notebook in that repository
  (:func:`saliency_core.book.launch.launch_links`, ``--branch``).

Screenshots of the intro page, one chapter page (scrolled to its first rendered equation) and, when the book has
launch buttons, that chapter's header with the launch menu open (``launch.png``) go to ``--screenshots``. Prints
one line per failure (``FAIL <page>: <reason>``) and a summary ``pages=<n> failures=<n>``; exit status 1 when a
page fails, 2 when the check cannot run (no book, no Chromium).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = ("_static", "_sources", "_images", "_downloads", ".doctrees")
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome",
                       "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
                  "--no-default-browser-check", "--mute-audio", "--hide-scrollbars", "--window-size=1280,900")

# Uncaught JavaScript errors fail a page, except these upstream ones that change nothing a reader sees (printed as
# NOTE lines). sphinx-thebe 0.3.1 adds its inline config script from an env-before-read-docs handler; under Sphinx
# >= 7.1 app.add_js_file then registers it twice, so the second copy's `const THEBE_JS_URL` is a redeclaration
# (the first copy already defined it; launch buttons are off in _config.yml, so thebe is never loaded anyway).
KNOWN_BENIGN_JS = (
    (re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
     "sphinx-thebe 0.3.1 config script included twice under Sphinx 7 (harmless)"),
)

__all__ = ["find_chromium", "install_chromium", "Browser", "Failure", "html_pages", "check_book", "main"]


class CheckError(RuntimeError):
    """The check itself could not run (no Chromium, no book, browser died)."""


@dataclass
class Failure:
    page: str
    reason: str

    def __str__(self) -> str:
        return f"FAIL {self.page}: {self.reason}"


@dataclass
class Report:
    pages: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    notes: list[Failure] = field(default_factory=list)
    #: chapter page -> {"download": notebook file, "Colab": link, "Binder": link} as found on the page
    notebook_links: dict[str, dict[str, str]] = field(default_factory=dict)

    def reasons(self, page: str) -> list[str]:
        return [f.reason for f in self.failures if f.page == page]


# --------------------------------------------------------------------------------------------------- Chromium
def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium binary: ``explicit``, ``$CHROMIUM``, then the usual names; None if there is none."""
    for cand in (explicit, os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES):
        if not cand:
            continue
        path = cand if os.path.isabs(cand) else shutil.which(cand)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def install_chromium() -> str:
    """``apt-get install -y chromium`` (Debian's package; needs root) and return its path."""
    if os.geteuid() != 0:
        raise CheckError("chromium is not installed and this user cannot apt-get it: run `sudo apt-get install -y "
                         "chromium` (or set CHROMIUM=/path/to/chromium)")
    print("[check_book] installing chromium with apt-get ...", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    if res.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        res = subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, text=True)
    path = find_chromium()
    if res.returncode != 0 or path is None:
        raise CheckError(f"apt-get install -y chromium failed: {res.stderr.strip()[-400:]}")
    return path


class Browser:
    """A headless Chromium with a fresh profile and one tab, driven over the DevTools protocol."""

    def __init__(self, binary: str, timeout: float = 30.0):
        import websocket  # websocket-client

        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="check-book-chromium-")
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
               "about:blank"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            port = self._wait_port()
            self.ws = websocket.create_connection(self._page_ws_url(port), timeout=timeout, suppress_origin=True,
                                                  enable_multithread=False)
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    def _wait_port(self) -> int:
        f = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise CheckError(f"chromium exited with status {self.proc.returncode}: {err.strip()[-600:]}")
            if f.is_file():
                lines = f.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.05)
        raise CheckError(f"chromium did not open its DevTools port within {self.timeout:.0f} s")

    def _page_ws_url(self, port: int) -> str:
        from urllib.request import urlopen

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:  # noqa: S310 (localhost)
                    targets = json.load(r)
                pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.1)
        raise CheckError("chromium opened no page target")

    def send(self, method: str, timeout: float | None = None, **params) -> dict:
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._recv(deadline, what=method)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CheckError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def _recv(self, deadline: float, what: str) -> dict:
        import websocket

        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(what)
        self.ws.settimeout(left)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException as exc:
            raise TimeoutError(what) from exc

    def wait_event(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == name:
                    return self.events.pop(i)
            msg = self._recv(deadline, what=name)
            if "method" in msg:
                self.events.append(msg)

    def navigate(self, url: str) -> None:
        self.events.clear()
        res = self.send("Page.navigate", url=url)
        if res.get("errorText"):
            raise CheckError(f"cannot open {url}: {res['errorText']}")
        self.wait_event("Page.loadEventFired", self.timeout)

    def evaluate(self, expression: str, timeout: float | None = None):
        res = self.send("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                        returnByValue=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CheckError(f"page script failed: {d.get('exception', {}).get('description') or d.get('text')}")
        return res["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        except Exception:  # noqa: BLE001 (closing a dead socket)
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------- page probe
# Runs in the page after its load event; returns everything the Python side judges.
PROBE_JS = r"""
(async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const out = {mathjax: "none", problems: [], images: [], links: [], ids: [], remote: []};
  const hasMathJaxScript = !!document.querySelector('script[src*="mathjax" i], script[src*="tex-chtml" i]');
  const mathEls = document.querySelectorAll("span.math, div.math, .math");
  if (hasMathJaxScript) {
    const t0 = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < __MJ_WAIT__) {
      await sleep(50);
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      const done = await Promise.race([MathJax.startup.promise.then(() => true),
                                       sleep(__MJ_TYPESET__).then(() => false)]);
      out.mathjax = done ? "typeset" : "timeout";
    } else {
      out.mathjax = "not loaded";
    }
  }
  try { await Promise.race([document.fonts.ready, sleep(5000)]); } catch (e) {}

  // tracebacks
  const tbEls = Array.from(document.querySelectorAll(".traceback, .output.error"));
  for (const el of tbEls) {
    const lines = el.textContent.trim().split("\n").map((s) => s.trim()).filter(Boolean);
    const err = lines.reverse().find((s) => /^\w+(Error|Exception|Exit|Interrupt)\b/.test(s)) || lines[0] || "";
    out.problems.push("Python traceback in an output: " + err.slice(0, 160));
  }
  if (!tbEls.length && document.body) {
    const clone = document.body.cloneNode(true);
    clone.querySelectorAll("script, style, noscript").forEach((n) => n.remove());
    const text = clone.textContent;
    const i = text.indexOf("Traceback (most recent call last)");
    if (i >= 0) {
      const tail = text.slice(i).split("\n").map((s) => s.trim()).filter(Boolean);
      const err = tail.find((s) => /^\w+(Error|Exception|Exit|Interrupt)\b/.test(s)) || tail[0];
      out.problems.push("Python traceback in the page: " + err.slice(0, 160));
    }
  }

  // math
  for (const el of mathEls) {
    if (!el.querySelector("mjx-container") && !el.closest("mjx-container")) {
      out.problems.push("math not rendered (MathJax " + out.mathjax + "): " + el.textContent.trim().slice(0, 80));
    }
  }
  for (const el of document.querySelectorAll("mjx-merror")) {
    const msg = el.getAttribute("data-mjx-error") || el.getAttribute("title") || el.textContent;
    out.problems.push("MathJax error: " + msg.trim().slice(0, 120));
  }
  const SKIP = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "PRE", "CODE", "KBD", "SAMP", "TEXTAREA", "MJX-CONTAINER"]);
  const skip = (n) => {
    for (let e = n.parentElement; e; e = e.parentElement) {
      if (SKIP.has(e.tagName) || e.classList.contains("math") || e.classList.contains("highlight")) return true;
    }
    return false;
  };
  const RAW = [
    [/\$\$/, "raw $$ math"],
    [/\\\(|\\\)|\\\[|\\\]/, "raw \\( \\) or \\[ \\] math"],
    [/(^|[^\\$\w])\$(?=[^\s$])[^$\n]{0,200}[^\s$\\]\$(?![\w$])|(^|[^\\$\w])\$[^\s$\d]\$(?![\w$])/, "raw $...$ math"],
    [/\\(begin|end)\{[a-zA-Z*]+\}/, "raw \\begin{...} math"],
  ];
  if (document.body) {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const t = n.nodeValue;
      if (!t || !/[$\\]/.test(t) || skip(n)) continue;
      for (const [re, what] of RAW) {
        const m = t.match(re);
        if (m) {
          const i = Math.max(0, m.index - 30);
          const ctx = t.slice(i, m.index + 50).replace(/\s+/g, " ").trim();
          const msg = what + " left in the page: \u2026" + ctx + "\u2026";
          if (!seen.has(msg)) { seen.add(msg); out.problems.push(msg); }
          break;
        }
      }
    }
  }

  // images
  for (const img of document.images) {
    if (img.loading === "lazy") img.loading = "eager";
    const src = img.getAttribute("src") || "";
    let decoded = true;
    if (!img.complete || img.naturalWidth === 0) {
      try { await Promise.race([img.decode(), sleep(5000).then(() => { throw new Error("timeout"); })]); }
      catch (e) { decoded = false; }
    }
    out.images.push({src: src.slice(0, 300), url: img.src.startsWith("data:") ? "data:" : img.src, decoded,
                     width: img.naturalWidth, svg: /\.svg(\?|#|$)/i.test(src) || src.startsWith("data:image/svg")});
  }

  out.outputImages = document.querySelectorAll(".cell_output img, .output img").length;

  // links and anchors
  for (const a of document.querySelectorAll("a[href], area[href]")) {
    out.links.push({href: a.getAttribute("href"), url: a.href, text: a.textContent.trim().slice(0, 200)});
  }
  for (const el of document.querySelectorAll("[id]")) out.ids.push(el.id);
  for (const el of document.querySelectorAll("a[name]")) out.ids.push(el.getAttribute("name"));

  // resources a reader without network would miss
  const sel = ["script[src]", "link[href][rel~='stylesheet']", "link[href][rel~='preload']",
               "link[href][rel~='modulepreload']", "img[src]", "iframe[src]", "source[src]", "video[src]",
               "audio[src]", "embed[src]", "object[data]"].join(", ");
  for (const el of document.querySelectorAll(sel)) {
    const u = el.getAttribute("src") || el.getAttribute("href") || el.getAttribute("data") || "";
    if (/^(https?:)?\/\//i.test(u)) out.remote.push(el.tagName.toLowerCase() + " " + u);
  }
  return out;
})()
"""


def html_pages(html_root: Path) -> list[Path]:
    """Every reader-facing HTML page of the book (theme assets and sources excluded), sorted."""
    pages = []
    for p in sorted(html_root.rglob("*.html")):
        rel = p.relative_to(html_root)
        if rel.parts[0] in SKIP_DIRS:
            continue
        pages.append(p)
    return pages


def _local_path(url: str) -> tuple[Path | None, str]:
    """(file path, fragment) of a file:// URL; (None, '') for any other scheme."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None, ""
    return Path(unquote(parts.path)), unquote(parts.fragment)


# file extensions that are also top-level domains (.md Moldova, .py Paraguay, .sh St Helena, ...)
_FILE_AS_HOST = re.compile(r"^[\w./-]+\.(md|py|sh|rs|pl|js|so|cc|cfg|ps)$", re.I)
_ID_RE = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")


def _file_ids(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        try:
            cache[path] = set(_ID_RE.findall(path.read_text(errors="replace")))
        except OSError:
            cache[path] = set()
    return cache[path]


def _judge_links(rel: str, page: Path, probe: dict, html_root: Path, ids: dict[Path, set[str]]) -> list[str]:
    problems, seen = [], set()
    root = html_root.resolve()
    for link in probe["links"]:
        href, url = link["href"] or "", link["url"] or ""
        if href.strip().lower().startswith(("javascript:", "mailto:", "tel:", "data:")):
            continue
        path, frag = _local_path(url)
        if path is None:  # http(s) links to the outside world are the reader's business, not the book's ...
            text = link.get("text", "")
            if href == f"http://{text}" and _FILE_AS_HOST.search(text) and href not in seen:
                seen.add(href)  # ... except a file name that linkify's fuzzy matching made a web address
                problems.append(f"broken link {href!r}: the file name {text!r} was turned into a web address "
                                "(set myst_linkify_fuzzy_links: false)")
            continue
        key = (href, str(path), frag)
        if key in seen:
            continue
        seen.add(key)
        target = path.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not (target == root or root in target.parents):
            problems.append(f"broken link {href!r}: points outside the built book")
        elif not target.exists():
            problems.append(f"broken link {href!r}: {target.relative_to(root)} does not exist")
        elif frag and target.suffix == ".html" and frag not in _file_ids(target, ids):
            problems.append(f"broken link {href!r}: no anchor #{frag} in {target.relative_to(root)}")
    return problems


def _judge_images(probe: dict, html_root: Path) -> list[str]:
    problems = []
    for img in probe["images"]:
        src, url = img["src"], img["url"]
        path, _ = _local_path(url)
        if url != "data:" and path is None:
            continue  # remote images are reported with the other remote resources
        if path is not None and not path.is_file():
            problems.append(f"missing image {src!r}: file does not exist")
        elif not img["decoded"] or (img["width"] == 0 and not img["svg"]):
            problems.append(f"missing image {src[:80]!r}: it does not decode (naturalWidth 0)")
    return problems


def _network_problems(events: list[dict], notes: list[str] | None = None) -> list[str]:
    problems, urls = [], {}
    for ev in events:
        p = ev.get("params", {})
        if ev["method"] == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            urls[p.get("requestId")] = url
            if re.match(r"(?i)^(https?|wss?)://", url):
                problems.append(f"network request (a reader offline has none): {url[:160]}")
        elif ev["method"] == "Network.loadingFailed" and not p.get("canceled"):
            url = urls.get(p.get("requestId"), "?")
            if not re.match(r"(?i)^(https?|wss?)://", url):
                problems.append(f"failed to load {url[:160]}: {p.get('errorText')}")
        elif ev["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            msg = d.get("exception", {}).get("description") or d.get("text") or "?"
            msg = f"JavaScript error: {msg.splitlines()[0][:160]}"
            benign = next((why for rx, why in KNOWN_BENIGN_JS if rx.search(msg)), None)
            if benign is None:
                problems.append(msg)
            elif notes is not None:
                notes.append(f"{msg} [known, not counted: {benign}]")
    return problems


_REFRESH_RE = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["'][^"']*?url=([^"']+)["']""", re.I)


def _judge_notebook_page(rel: str, probe: dict, repo_url: str | None, branch: str,
                         is_notebook: bool = False) -> tuple[list[str], dict]:
    """Download and launch buttons of a chapter page (module docstring); returns (problems, links found).

    A page is judged when it has the theme's download buttons (links into ``_sources/``); a page without a notebook
    download is a markdown page (no launch buttons expected) unless ``is_notebook`` (its committed notebook exists).
    """
    problems: list[str] = []
    found: dict[str, str] = {}
    sources = [lk for lk in probe["links"] if "/_sources/" in (lk.get("url") or "")]
    if not sources:
        return problems, found  # not a page with the theme's header buttons (hand-made pages in the tests)
    nb_links = [lk for lk in sources if lk["url"].split("#")[0].endswith((".ipynb", ".ipynb.txt"))]
    if not nb_links:
        if is_notebook:
            problems.append("no .ipynb download link on a chapter page")
        return problems, found
    for lk in nb_links:
        path, _ = _local_path(lk["url"])
        if path is None:
            continue
        if path.name.endswith(".txt"):
            problems.append(f"download link {lk['href']!r} serves the notebook as text (.ipynb.txt), not as a notebook "
                            "(html_sourcelink_suffix must be '')")
            continue
        if not path.is_file():
            continue  # reported as a broken link
        try:
            nb = json.loads(path.read_text())
            ok = isinstance(nb, dict) and isinstance(nb.get("cells"), list) and int(nb.get("nbformat", 0)) >= 4
        except (ValueError, TypeError, OSError):
            ok = False
        if ok:
            found["download"] = str(path)
        else:
            problems.append(f"download link {lk['href']!r} is not a valid notebook (JSON with cells and nbformat >= 4)")
    if repo_url:
        from saliency_core.book.launch import launch_links

        hrefs = [lk.get("href") or "" for lk in probe["links"]]
        nb_path = Path(rel).with_suffix(".ipynb").as_posix()
        for name, url in launch_links(repo_url, branch, nb_path).items():
            if url in hrefs:
                found[name] = url
                continue
            host = url.split("/")[2]
            other = [h for h in hrefs if host in h]
            problems.append(f"launch button {name}: expected {url}, found {other[0] if other else 'none'}")
    return problems, found


def _redirect_target(page: Path) -> str | None:
    """The target of a page that is nothing but a meta refresh (jupyter-book's index.html), else None."""
    text = page.read_text(errors="replace")
    m = _REFRESH_RE.search(text)
    if m is None or re.sub(r"<[^>]+>|\s+", "", text):
        return None
    return m.group(1).strip()


def _pick_chapter(probes: dict[str, dict], preferred: str | None) -> str | None:
    if preferred and preferred in probes:
        return preferred
    chapters = [r for r in probes if r.startswith("notebooks/")] or [r for r in probes if "/" in r]
    chapters = sorted(chapters, key=lambda r: Path(r).name.startswith("00"))  # a paper chapter before the tour
    with_math = [r for r in chapters if probes[r].get("mathjax") == "typeset"]
    return (with_math or chapters or [None])[0]


def _image_outputs(notebook: Path) -> int:
    """Number of image outputs stored in a notebook."""
    try:
        nb = json.loads(notebook.read_text())
    except (OSError, ValueError):
        return 0
    return sum(any(k.startswith("image/") for k in o.get("data", {}))
               for c in nb.get("cells", []) for o in c.get("outputs", []))


def check_book(html_root: Path, chromium: str | None = None, screenshots: Path | None = None,
               intro: str | None = None, chapter: str | None = None, pages: list[Path] | None = None,
               timeout: float = 30.0, log=None, notebooks: Path | None = None, repo_url: str | None = None,
               branch: str = "main") -> Report:
    """Open every page of ``html_root`` in headless Chromium and return the failures found (see module doc).

    With ``notebooks`` (the committed ``notebooks/`` folder), a page ``notebooks/<stem>.html`` that shows no figure
    while ``<stem>.ipynb`` stores image outputs fails too (figures lost in execution, e.g. a non-inline backend).
    With ``repo_url``, every chapter page must carry the Colab and Binder links to its notebook on ``branch``.
    """
    html_root = Path(html_root).resolve()
    pages = [Path(p).resolve() for p in pages] if pages is not None else html_pages(html_root)
    if not pages:
        raise CheckError(f"no HTML pages under {html_root} (build the book first: make book)")
    binary = find_chromium(chromium)
    if binary is None:
        raise CheckError("chromium not found (Debian: apt-get install -y chromium; or pass --install-chromium)")
    report = Report()
    probes: dict[str, dict] = {}
    ids: dict[Path, set[str]] = {}
    # MathJax is a defer/async script: both run before the load event, so MathJax.startup exists by then or never
    mj_wait, mj_typeset = 2000, int(timeout * 1000)
    probe_js = PROBE_JS.replace("__MJ_WAIT__", str(mj_wait)).replace("__MJ_TYPESET__", str(mj_typeset))
    with Browser(binary, timeout=timeout) as browser:
        for page in pages:
            rel = page.relative_to(html_root).as_posix()
            report.pages.append(rel)
            problems: list[str] = []
            redirect = _redirect_target(page)
            if redirect is not None:  # a bare meta-refresh page: judge its target only
                probes[rel] = {"links": [{"href": redirect, "url": (page.parent / redirect).as_uri()}], "ids": [],
                               "_page": page, "mathjax": "none"}
                ids[page] = set()
                continue
            try:
                browser.navigate(page.as_uri())
                probe = browser.evaluate(probe_js, timeout=timeout * 2)
                time.sleep(0.05)
                browser.send("Runtime.evaluate", expression="0")  # flush late network/exception events
            except TimeoutError as exc:
                report.failures.append(Failure(rel, f"page did not finish loading within {timeout:.0f} s ({exc})"))
                continue
            except CheckError as exc:
                report.failures.append(Failure(rel, str(exc)))
                continue
            probes[rel] = probe
            ids[page] = set(probe["ids"])
            if probe["mathjax"] in ("not loaded", "timeout"):
                problems.append(f"MathJax {probe['mathjax']} (is _static/mathjax vendored?)")
            problems += probe["problems"]
            problems += _judge_images(probe, html_root)
            nb = Path(notebooks) / f"{Path(rel).stem}.ipynb" if notebooks and rel.startswith("notebooks/") else None
            n_committed = _image_outputs(nb) if nb is not None else 0
            if n_committed and not probe["outputImages"]:
                problems.append(f"missing figures: notebooks/{nb.name} stores {n_committed} image output(s), this "
                                "page shows none (was the kernel run with MPLBACKEND=Agg, not the inline backend?)")
            problems += [f"remote resource (needs network): {r[:160]}" for r in probe["remote"]]
            if rel.startswith("notebooks/"):
                nb_problems, nb_links = _judge_notebook_page(rel, probe, repo_url, branch,
                                                             is_notebook=nb is not None and nb.is_file())
                problems += nb_problems
                if nb_links:
                    report.notebook_links[rel] = nb_links
            notes: list[str] = []
            bad_images = tuple(f"failed to load {i['url'][:160]}:" for i in probe["images"])
            problems += [m for m in _network_problems(browser.events, notes)
                         if not (m.startswith(bad_images) and any("missing image" in q for q in problems))]
            report.notes += [Failure(rel, n) for n in dict.fromkeys(notes)]
            browser.events.clear()
            probes[rel]["_page"] = page
            for msg in dict.fromkeys(problems):
                report.failures.append(Failure(rel, msg))
            if log:
                log(f"[check_book] {rel}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        # links are judged after the crawl so that cross-page anchors use the rendered pages' ids
        for rel, probe in probes.items():
            for msg in _judge_links(rel, probe["_page"], probe, html_root, ids):
                report.failures.append(Failure(rel, msg))
        if screenshots is not None:
            report.screenshots += _screenshots(browser, html_root, probes, screenshots, intro, chapter)
            launch_page = chapter if chapter in report.notebook_links else next(
                (r for r in sorted(report.notebook_links) if "Colab" in report.notebook_links[r]), None)
            if launch_page is not None:
                report.screenshots.append(_launch_screenshot(browser, html_root, launch_page, screenshots))
    return report


def _launch_screenshot(browser: Browser, html_root: Path, rel: str, folder: Path) -> Path:
    """The chapter page's header with the launch menu (Colab, Binder) opened."""
    browser.navigate((html_root / rel).as_uri())
    browser.evaluate(PROBE_JS.replace("__MJ_WAIT__", "5000").replace("__MJ_TYPESET__", "20000"), timeout=60)
    browser.evaluate("(() => { window.scrollTo(0, 0); const b = document.querySelector('.dropdown-launch-buttons "
                     "button'); if (b) b.click(); return !!b; })()")
    browser.evaluate("new Promise((r) => setTimeout(() => requestAnimationFrame(() => r(1)), 300))")
    shot = browser.screenshot(folder / "launch.png")
    browser.events.clear()
    return shot


def _screenshots(browser: Browser, html_root: Path, probes: dict[str, dict], folder: Path, intro: str | None,
                 chapter: str | None) -> list[Path]:
    shots = []
    intro_rel = intro or next((r for r in ("book/intro.html", "intro.html", "index.html") if r in probes), None)
    chapter_rel = _pick_chapter(probes, chapter)
    for name, rel in (("intro", intro_rel), ("chapter", chapter_rel)):
        if rel is None or rel not in probes:
            continue
        browser.navigate((html_root / rel).as_uri())
        browser.evaluate(PROBE_JS.replace("__MJ_WAIT__", "5000").replace("__MJ_TYPESET__", "20000"), timeout=60)
        if name == "chapter":  # show rendered math if the page has any
            browser.evaluate("(() => { const m = document.querySelector('div.math mjx-container') ||"
                             " document.querySelector('mjx-container');"
                             " if (m) m.scrollIntoView({block: 'center'}); return !!m; })()")
        browser.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(1))))")
        shots.append(browser.screenshot(folder / f"{name}.png"))
        browser.events.clear()
    return shots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/check_book.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="built book (default _build/html)")
    ap.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "screenshots",
                    help="folder for intro.png and chapter.png (default _build/screenshots)")
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks",
                    help="committed notebooks: a chapter page without figures whose notebook stores some fails")
    ap.add_argument("--intro", help="page for intro.png, relative to --html (default book/intro.html)")
    ap.add_argument("--chapter", help="page for chapter.png (default: first notebooks/ page with math)")
    ap.add_argument("--chromium", help="Chromium binary (default: $CHROMIUM, /usr/lib/chromium/chromium, PATH)")
    ap.add_argument("--install-chromium", action="store_true", help="apt-get install -y chromium if it is missing")
    ap.add_argument("--repo-url", default=os.environ.get("BOOK_REPO_URL") or None,
                    help="expected repository of the launch buttons (default $BOOK_REPO_URL, else the repository.url "
                         "the book was staged with, _build/src/_config.yml; none: not checked)")
    ap.add_argument("--branch", default="main", help="branch in the launch links (default main)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per page load (default 30)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    args = ap.parse_args(argv)
    staged = args.html.parent / "src" / "_config.yml"  # the configuration the runner built this book from
    if args.repo_url is None and staged.is_file():
        import yaml

        repo = (yaml.safe_load(staged.read_text()) or {}).get("repository") or {}
        args.repo_url = repo.get("url") or None
        args.branch = repo.get("branch") or args.branch
    try:
        if not (args.html / "index.html").is_file():
            raise CheckError(f"{args.html}/index.html does not exist: build the book first (make book)")
        binary = find_chromium(args.chromium)
        if binary is None and args.install_chromium:
            binary = install_chromium()
        if binary is None:
            raise CheckError("chromium not found: apt-get install -y chromium (or --install-chromium, or "
                             "CHROMIUM=/path/to/chromium)")
        t0 = time.perf_counter()
        report = check_book(args.html, binary, None if args.no_screenshots else args.screenshots, args.intro,
                            args.chapter, timeout=args.timeout, notebooks=args.notebooks, repo_url=args.repo_url,
                            branch=args.branch, log=None if args.quiet else (lambda s: print(s, flush=True)))
    except CheckError as exc:
        print(f"[check_book] cannot check the book: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 (the browser died or its socket closed: the check did not run)
        print(f"[check_book] cannot check the book: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    by_reason: dict[str, list[str]] = {}
    for n in report.notes:
        by_reason.setdefault(n.reason, []).append(n.page)
    for reason, pages in by_reason.items():
        print(f"NOTE {len(pages)} page(s) ({', '.join(pages[:3])}{', ...' if len(pages) > 3 else ''}): {reason}")
    for f in report.failures:
        print(f)
    for s in report.screenshots:
        print(f"[check_book] screenshot {os.path.relpath(s)}")
    n_dl = sum("download" in v for v in report.notebook_links.values())
    n_launch = sum("Colab" in v and "Binder" in v for v in report.notebook_links.values())
    print(f"[check_book] chapter pages: {n_dl} with a valid .ipynb download, {n_launch} with Colab and Binder links"
          + (f" to {args.repo_url}" if args.repo_url else " (launch links not checked: no --repo-url)"))
    print(f"pages={len(report.pages)} failures={len(report.failures)} seconds={time.perf_counter() - t0:.1f}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
