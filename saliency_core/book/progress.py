"""Live progress of the book runner on the terminal: per notebook, cells done / total, elapsed time and an ETA.

The runner executes notebooks with papermill; papermill's per-cell progress bar is redirected here
(:func:`papermill_progress`: a tqdm whose only output is ``done/total``, parsed by a callback). Notebooks executed
side by side run in child processes: each child writes ``done total`` to the file named by
``$SALIENCY_PROGRESS_FILE`` (:func:`child_callback`) and the parent reads it (:func:`read_progress`).

:class:`Display` shows, for every running notebook::

    [run] 03_leg              cells 14/41   1:12 elapsed   ETA 2:05 (last run 3:17)

and one summary line (notebooks done / running / queued and the run's ETA). The ETA of a notebook is its last
run's time (``_build/timings-<profile>.json``) minus the time elapsed, or, past that or without a last run, the
elapsed time per cell so far times the cells left; the run's ETA adds the queued notebooks' last times, divided by
the notebooks run side by side. On a terminal the block is redrawn in place twice a second (``live``); in a log
(not a TTY) a line per running notebook is printed every 15 s when it has advanced (``lines``).
``$SALIENCY_PROGRESS`` = ``live`` / ``lines`` / ``off`` overrides the choice.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

__all__ = ["PROGRESS_ENV", "MODE_ENV", "papermill_progress", "file_callback", "child_callback", "read_progress",
           "format_duration", "eta_seconds", "Display", "last_timings"]

PROGRESS_ENV = "SALIENCY_PROGRESS_FILE"
MODE_ENV = "SALIENCY_PROGRESS"
_COUNT = re.compile(r"(\d+)/(\d+)")


class _Sink:
    """A file-like target for tqdm that forwards the last ``done/total`` it writes to ``callback``."""

    def __init__(self, callback: Callable[[int, int], None]) -> None:
        self.callback = callback

    def write(self, text: str) -> int:
        found = _COUNT.findall(text)
        if found:
            done, total = found[-1]
            self.callback(int(done), int(total))
        return len(text)

    def flush(self) -> None:
        pass


def papermill_progress(callback: Callable[[int, int], None]) -> dict:
    """``progress_bar=`` for ``papermill.execute_notebook``: tqdm keyword arguments that call ``callback(done,
    total)`` after every cell (papermill counts every cell, markdown included)."""
    return {"file": _Sink(callback), "bar_format": "{n}/{total}", "mininterval": 0, "miniters": 1,
            "dynamic_ncols": False, "ascii": True}


def file_callback(path: str | os.PathLike) -> Callable[[int, int], None]:
    """A callback writing ``done total`` to ``path`` (replaced atomically, read by the parent runner)."""
    path = Path(path)

    def write(done: int, total: int) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"{done} {total}\n")
        os.replace(tmp, path)

    return write


def child_callback() -> Callable[[int, int], None] | None:
    """:func:`file_callback` on ``$SALIENCY_PROGRESS_FILE`` when a parent runner set it, else None."""
    path = os.environ.get(PROGRESS_ENV)
    return file_callback(path) if path else None


def read_progress(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(done, total)`` from a progress file, None when it is missing or half-written."""
    try:
        parts = Path(path).read_text().split()
        return int(parts[0]), int(parts[1])
    except (OSError, ValueError, IndexError):
        return None


def format_duration(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on); ``?`` for None."""
    if seconds is None:
        return "?"
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(elapsed: float, done: int, total: int, last: float | None) -> float | None:
    """Seconds left for one notebook (module docstring): last run − elapsed while that is positive, else by the
    cell rate so far; None when neither is known."""
    if last is not None and last > elapsed:
        return last - elapsed
    if done > 0 and total >= done:
        return elapsed / done * (total - done)
    return None


class Display:
    """Progress of a runner's notebooks (module docstring). Thread-safe; use as a context manager."""

    def __init__(self, todo: list[str], last_seconds: dict[str, float] | None = None, width: int = 1,
                 stream: TextIO | None = None, mode: str | None = None, interval: float = 15.0) -> None:
        self.stream = stream or sys.stdout
        mode = mode or os.environ.get(MODE_ENV) or ("live" if getattr(self.stream, "isatty", lambda: False)()
                                                    else "lines")
        if mode not in ("live", "lines", "off"):
            raise ValueError(f"{MODE_ENV}={mode!r} is not valid; accepted values: live, lines, off")
        self.mode, self.interval, self.width = mode, interval, max(1, width)
        self.last = dict(last_seconds or {})
        self.queued = list(todo)
        self.running: dict[str, dict] = {}
        self.n_done = 0
        self._lock = threading.Lock()
        self._drawn = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- events ---------------------------------------------------------------------------------------------
    def start(self, stem: str, note: str = "") -> None:
        with self._lock:
            if stem in self.queued:
                self.queued.remove(stem)
            self.running[stem] = {"t0": time.perf_counter(), "done": 0, "total": 0, "printed": time.perf_counter(),
                                  "printed_done": -1}
            last = self.last.get(stem)
            self._permanent(f"[run] {stem} started{note}" + (f" (last run {format_duration(last)})" if last else ""))
        self._ensure_thread()

    def update(self, stem: str, done: int, total: int) -> None:
        with self._lock:
            if stem in self.running:
                self.running[stem].update(done=done, total=total)

    def finish(self, stem: str, seconds: float, ok: bool = True) -> None:
        with self._lock:
            st = self.running.pop(stem, None)
            self.n_done += 1
            cells = f", {st['total']} cells" if st and st["total"] else ""
            self._permanent(f"[run] {stem} {'done' if ok else 'FAILED'} in {format_duration(seconds)} "
                            f"({seconds:.1f} s{cells})")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._erase()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- text -----------------------------------------------------------------------------------------------
    def row(self, stem: str, now: float | None = None) -> str:
        """One notebook's progress line."""
        st = self.running[stem]
        elapsed = (now or time.perf_counter()) - st["t0"]
        cells = f"cells {st['done']:>3}/{st['total']:<3}" if st["total"] else "cells   ?/?  "
        eta = eta_seconds(elapsed, st["done"], st["total"], self.last.get(stem))
        last = self.last.get(stem)
        tail = f" (last run {format_duration(last)})" if last else ""
        return (f"[run] {stem:<28} {cells}  {format_duration(elapsed):>7} elapsed   ETA {format_duration(eta)}"
                f"{tail}")

    def summary(self, now: float | None = None) -> str:
        """Notebooks done / running / queued and the run's ETA: the longest running notebook's ETA when nothing is
        queued, else (running ETAs + queued last times) / notebooks side by side; ``?`` while a time is unknown."""
        now = now or time.perf_counter()
        left = [eta_seconds(now - st["t0"], st["done"], st["total"], self.last.get(s)) for s, st in
                self.running.items()]
        queued = [self.last.get(s) for s in self.queued]
        if any(v is None for v in left + queued):
            eta = None
        elif queued:
            eta = (sum(left) + sum(queued)) / self.width
        else:
            eta = max(left, default=0.0)
        return (f"[run] {self.n_done} done, {len(self.running)} running, {len(self.queued)} queued; "
                f"ETA {format_duration(eta)}")

    # -- drawing --------------------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # closed stream at interpreter exit
            pass

    def _erase(self) -> None:
        if self.mode == "live" and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _permanent(self, line: str) -> None:
        if self.mode == "off":
            return
        self._erase()
        self._write(line + "\n")
        if self.mode == "live":
            self._draw()

    def _draw(self) -> None:
        now = time.perf_counter()
        lines = [self.row(s, now) for s in self.running] + ([self.summary(now)] if self.running else [])
        if lines:
            self._write("\n".join(lines) + "\n")
        self._drawn = len(lines)

    def tick(self) -> None:
        """Redraw (live) or print the lines that are due (lines); called by the display thread."""
        with self._lock:
            if self.mode == "live":
                self._erase()
                self._draw()
            elif self.mode == "lines":
                now = time.perf_counter()
                due = [s for s, st in self.running.items()
                       if now - st["printed"] >= self.interval and st["done"] != st["printed_done"]]
                for s in due:
                    self._write(self.row(s, now) + "\n")
                    self.running[s].update(printed=now, printed_done=self.running[s]["done"])
                if due:
                    self._write(self.summary(now) + "\n")

    def _ensure_thread(self) -> None:
        if self.mode == "off" or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(0.5 if self.mode == "live" else 1.0):
                self.tick()

        self._thread = threading.Thread(target=loop, name="book-progress", daemon=True)
        self._thread.start()


def last_timings(root: str | os.PathLike, profile: str, gpu: bool = False) -> dict[str, float]:
    """``{notebook: seconds}`` of the last run of each notebook (``_build/timings-<profile>[-gpu].json``)."""
    import json

    f = Path(root) / "_build" / f"timings-{profile}{'-gpu' if gpu else ''}.json"
    try:
        return {t["notebook"]: float(t["seconds"]) for t in json.loads(f.read_text())}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
