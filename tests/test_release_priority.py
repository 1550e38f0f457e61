"""The release gives way to everything else: niced, and in the background a session of its own whose autogroup is
niced (under Linux's autogroup scheduler nice alone only orders processes inside one session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, os, sys
sys.path.insert(0, {tools!r})
from release import yield_cpu
before = os.getsid(0)
said = yield_cpu()
ag = open("/proc/self/autogroup").read().strip() if os.path.exists("/proc/self/autogroup") else None
print(json.dumps({{"said": said, "nice": os.nice(0), "before": before, "sid": os.getsid(0), "pid": os.getpid(),
                  "autogroup": ag}}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sessions and autogroups are Linux")
def test_background_release_runs_in_its_own_niced_session():
    out = subprocess.run([sys.executable, "-c", CHILD.format(tools=str(ROOT / "tools"))], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["nice"] == 19 and "nice 19" in r["said"]
    assert r["sid"] == r["pid"] != r["before"]  # a session of its own: the caller's session is not niced
    if r["autogroup"] is not None and "own session" in r["said"]:
        assert r["autogroup"].endswith("nice 19")
    assert os.nice(0) != 19 or os.getsid(0) != r["sid"]  # this test process is untouched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sessions and autogroups are Linux")
def test_release_started_by_setsid_nices_its_session():
    """`setsid release.py` (or a queue script run by setsid that execs it) is already a session leader: setsid()
    would fail, and the autogroup must be niced all the same (it was left at 0 before)."""
    out = subprocess.run(["setsid", "-w", sys.executable, "-c", CHILD.format(tools=str(ROOT / "tools"))],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["before"] == r["pid"] == r["sid"]
    assert "own session" in r["said"], r["said"]
    if r["autogroup"] is not None:
        assert r["autogroup"].endswith("nice 19")
