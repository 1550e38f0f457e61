"""Every benchmark script runs end to end at a tiny budget and ends with its ``key=value …`` line.

Why: the benchmarks are run by hand (`make bench`), so a renamed knob broke one silently for a day
(``benchmarks/invariant.py`` still read the solver timing under its pre-#14 name and died with a ``KeyError``
after 40 s of work, before recording anything). Here each script runs in its own process with one thread, its
smallest arguments and ``$SALIENCY_BENCH_RESULTS`` in a temporary folder (the committed results are untouched);
the test checks the exit status, the last line's ``key=value`` format and the results file it wrote. No timing is
checked: the speed goals are the benchmarks' own business.

Left out: ``benchmarks/models_smoke.py`` — it executes every chapter on three model families (tens of minutes);
the chapters run under nbval and the random-weights model path in ``tests/test_models.py``.

Marked ``bench_smoke`` (~5 CPU-minutes): `make test` runs them in its second lane, after that lane's notebooks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench_smoke

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
KEY_VALUES = re.compile(r"^\w+=\S+( \w+=\S+)*$")

# script -> (tiny arguments, name of the results file it records)
CASES = {
    "extremal_vs_torchray.py": (["--iters", "5", "--repeats", "1", "--no-noise-floor", "--threads", "1"],
                                "extremal_vs_torchray"),
    "igos.py": (["--iterations", "1", "--repeats", "1", "--threads", "1"], "igos"),
    "invariant.py": (["--steps", "1", "--repeats", "1", "--smooth-classes", "2", "--lp-classes", "5", "--threads", "1"],
                     "invariant"),
    "leg.py": (["--samples", "10", "--images", "1"], "leg"),
    "model_throughput.py": (["--repeats", "1", "--batches", "1,2", "--threads", "1"], "model_throughput"),
    "scaling.py": (["--sizes", "7", "14", "--igos-iterations", "1", "--igos-ig-steps", "1", "--samples", "10", "20",
                    "--images", "1", "2", "--threads", "1"], "scaling"),
    "study.py": (["--images", "2", "--workers", "1", "--no-plain"], "study"),
}


def test_every_benchmark_has_a_case() -> None:
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts - {"models_smoke.py"} == set(CASES), "add the new benchmark to CASES (tiny arguments)"


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs(script: str, tmp_path: Path) -> None:
    args, name = CASES[script]
    env = dict(os.environ, SALIENCY_BENCH_RESULTS=str(tmp_path), OMP_NUM_THREADS="1", SALIENCY_THREADS="1",
               MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, script, *args], cwd=BENCH, env=env, capture_output=True, text=True,
                          timeout=600)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"{script} exited with {proc.returncode}:\n{tail}"
    last = proc.stdout.strip().splitlines()[-1]
    assert KEY_VALUES.match(last), f"{script}: last line is not `key=value …`: {last!r}"
    files = sorted(tmp_path.glob(f"{name}*.json"))
    assert files, f"{script} recorded no {name}*.json in $SALIENCY_BENCH_RESULTS: {sorted(tmp_path.iterdir())}"
    recorded = json.loads(files[0].read_text())
    assert recorded.get("metrics"), f"{files[0].name} has no metrics"
