"""Machine-readable results of the benchmarks: one JSON file per benchmark under ``benchmarks/results/``.

Every benchmark calls :func:`record` at the end of its ``main()`` (after computing, before its final
``key=value`` line). The file holds the benchmark's headline metrics, optional per-method rows, and the provenance a
reader needs to judge the numbers: the command line, UTC date, git commit (short hash + a flag when the working tree
had uncommitted changes), torch version and thread count, the CPU (model name, vendor, family/model/stepping, the
vector extensions torch can use, cores) and the 1/5/15-minute load averages when this module was imported (≈ the
start of the run) and when the record was written — the machine may be shared, and a loaded machine makes wall times
longer.

Results depend on the CPU (a CPU's ``exp``, its vector width, its caches), so every record is also kept per CPU:
``<name>@<cpu>.json`` next to ``<name>.json``, with ``<cpu>`` the slug of :func:`cpu_label` (model name, plus family
and model numbers, which tell generic names such as "AMD EPYC" apart). ``<name>.json`` is the latest run on any CPU;
the per-CPU files let the performance chapter compare CPUs.

The performance chapter (``notebooks/06_performance.ipynb``) reads these files only; it never runs a benchmark.
The folder is ``$SALIENCY_BENCH_RESULTS`` if set, else ``benchmarks/results`` next to this file. Files are written
atomically (temporary file in the same folder, fsync, ``os.replace``): a killed run leaves the previous file or none.
:func:`record` prints nothing, so a benchmark's ``key=value`` line stays the last line of its output.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from saliency_core.cache import atomic_write_text

__all__ = ["record", "results_dir", "provenance", "to_jsonable", "cpu_label", "cpu_slug", "SCHEMA_VERSION"]

#: bumped when the layout of a results file changes
SCHEMA_VERSION = 1

#: load average and clock when the benchmark imported this module (≈ when it started)
_START_LOAD: tuple[float, float, float] = os.getloadavg()
_START_TIME: float = time.perf_counter()
_START_UTC: str = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

_ROOT = Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    """Folder of the results files: ``$SALIENCY_BENCH_RESULTS`` or ``benchmarks/results``."""
    env = os.environ.get("SALIENCY_BENCH_RESULTS")
    return Path(env) if env else Path(__file__).resolve().parent / "results"


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy/torch scalars → numbers, arrays/tensors → lists, NaN/±inf → ``None``, tuples → lists,
    other objects → ``repr``. Keys become strings."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return to_jsonable(obj.item())
    return repr(obj)


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()

    try:
        commit = run("rev-parse", "--short", "HEAD")
        # results files written by earlier benchmarks do not change the code measured: not counted as dirty
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


#: /proc/cpuinfo flags worth recording: the vector extensions that decide which kernels torch and MKL run
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")


def _cpu() -> dict[str, Any]:
    model = platform.processor() or None
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    model = fields.get("model name", model)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    flags = set(fields.get("flags", "").split())
    capability = None
    torch_mod = sys.modules.get("torch")
    if torch_mod is not None:
        try:
            capability = str(torch_mod.backends.cpu.get_cpu_capability())
        except (AttributeError, RuntimeError):
            pass
    info = {"model": model, "vendor": fields.get("vendor_id"), "family": fields.get("cpu family"),
            "model_number": fields.get("model"), "stepping": fields.get("stepping"),
            "flags": [f for f in _FLAGS if f in flags], "torch_capability": capability,
            "cores": os.cpu_count(), "cores_usable": usable}
    info["label"] = cpu_label(info)
    return info


def cpu_label(cpu: Mapping[str, Any] | None) -> str:
    """A name for grouping results by CPU: the model name, with family and model numbers when recorded
    (e.g. ``AMD EPYC (family 25, model 17)``); ``unknown`` when nothing was recorded."""
    if not cpu:
        return "unknown"
    name = str(cpu.get("model") or "unknown")
    if cpu.get("family") is not None and cpu.get("model_number") is not None:
        name += f" (family {cpu['family']}, model {cpu['model_number']})"
    return name


def cpu_slug(cpu: Mapping[str, Any] | None) -> str:
    """:func:`cpu_label` as a file-name part: lower-case letters and digits joined by ``-``."""
    out, dash = [], False
    for ch in cpu_label(cpu).lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
            dash = False
        elif not dash and out:
            out.append("-")
            dash = True
    return "".join(out).strip("-") or "unknown"


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Where and how a result was produced (see the module docstring); ``argv`` defaults to ``sys.argv``."""
    argv = list(sys.argv if argv is None else argv)
    torch_mod = sys.modules.get("torch")  # threads only when this process imported torch (not in a pure driver)
    threads = int(torch_mod.get_num_threads()) if torch_mod is not None else None
    try:
        import torch

        version: str | None = str(torch.__version__)
    except ImportError:
        version = None
    torch_info: dict[str, Any] = {"version": version, "threads": threads}
    script = argv[0] if argv else ""
    if script:
        try:
            script = str(Path(script).resolve().relative_to(_ROOT))
        except ValueError:
            pass
    env = {k: os.environ.get(k) for k in ("SALIENCY_THREADS", "OMP_NUM_THREADS", "GLIBC_TUNABLES")}
    return {
        "command": shlex.join(["python", script, *argv[1:]]),
        "argv": argv[1:],
        "started_utc": _START_UTC,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": time.perf_counter() - _START_TIME,
        "git": _git(),
        "python": platform.python_version(),
        "torch": torch_info,
        "env": env,
        "cpu": _cpu(),
        "platform": platform.platform(),
        "loadavg_start": list(_START_LOAD),
        "loadavg_end": list(os.getloadavg()),
    }


def record(
    name: str,
    metrics: Mapping[str, Any],
    argv: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    rows: Sequence[Mapping[str, Any]] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """Write ``<out_dir>/<name>.json`` and its per-CPU copy ``<name>@<cpu>.json`` atomically; return the first path.

    Parameters
    ----------
    name : str
        Benchmark name (the file stem), letters, digits, ``_`` and ``-`` only.
    metrics : mapping
        Headline numbers (the final ``key=value`` line of the benchmark, plus any others worth plotting).
    argv : sequence of str, optional
        The command line (default ``sys.argv``).
    extra : mapping, optional
        Anything else (settings, intermediate timings).
    rows : sequence of mappings, optional
        Per-method (or per-configuration) rows: a tidy table the chapter turns into a DataFrame.
    out_dir : path, optional
        Folder (default :func:`results_dir`).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"name={name!r} is not valid; accepted values: a non-empty string of letters, digits, _ and -")
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of name -> number; got {type(metrics).__name__}")
    payload = {
        "schema": SCHEMA_VERSION,
        "benchmark": name,
        "metrics": to_jsonable(dict(metrics)),
        "rows": to_jsonable([dict(r) for r in rows]) if rows is not None else [],
        "extra": to_jsonable(dict(extra)) if extra is not None else {},
        "provenance": provenance(argv),
    }
    text = json.dumps(payload, indent=1, allow_nan=False, ensure_ascii=False) + "\n"
    folder = Path(out_dir) if out_dir is not None else results_dir()
    path = folder / f"{name}.json"
    atomic_write_text(path, text)
    atomic_write_text(folder / f"{name}@{cpu_slug(payload['provenance']['cpu'])}.json", text)
    return path
