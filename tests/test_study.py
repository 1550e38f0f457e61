"""Studies: the same tables in-process, on a LocalCluster and on a real ``dask scheduler`` + ``dask worker`` cluster;
a worker killed mid-study loses nothing and writes nothing twice; Ctrl-C and committed tables resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from saliency_core import study as S
from saliency_core.store import Store

MODULE = "_saliency_study_test_models"
SOURCE = textwrap.dedent('''
    """A tiny classifier factory (and a slow method) for the study tests; importable by every worker."""
    import time

    import torch
    from torch import nn

    import saliency_core as sc
    from saliency_core.models import Classifier, Preprocessing


    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 5)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)

        def forward(self, z):
            h = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(z)), 8)
            return self.fc(h.flatten(1))


    def tiny(device="cpu"):
        prep = Preprocessing(resize=32, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        return Classifier.from_module(TinyNet(), preprocess=prep, class_names=[f"c{i}" for i in range(5)],
                                      name="tiny", canonical=False, device=device)


    if "slow_gradient" not in sc.available_explainers():
        from saliency_core.methods.baselines import Gradient

        @sc.register("slow_gradient")
        class SlowGradient(Gradient):
            def __init__(self, model, reduce="abs_max", sleep=0.5):
                super().__init__(model, reduce=reduce)
                self.sleep = sleep

            def _explain(self, x, target):
                time.sleep(self.sleep)
                return super()._explain(x, target)
''')


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A folder with the model factory module (on sys.path and PYTHONPATH) and 4 small photos."""
    root = tmp_path_factory.mktemp("study")
    (root / f"{MODULE}.py").write_text(SOURCE)
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir()
    for i in range(4):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(root / "imgs" / f"img{i}.png")
    sys.path.insert(0, str(root))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(root) + (os.pathsep + old if old else "")
    __import__(MODULE)  # registers slow_gradient here too
    yield root
    sys.path.remove(str(root))
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def _spec(root: Path, methods=None, name="tiny") -> dict:
    return {"name": name, "model": f"{MODULE}:tiny", "images": {"folder": str(root / "imgs")},
            "methods": methods or {"grad": {"method": "gradient"}, "occ": {"method": "occlusion",
                                                                          "window": [3, 8, 8]}},
            "protocols": {"flip": {"protocol": "pixel_flip"}, "sanity": {}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DRIVER = textwrap.dedent('''
    """Runs a study the way a user would, in a fresh process that imports the package snapshot."""
    import json
    import os
    import signal
    import sys
    import threading
    import time
    from pathlib import Path

    import pandas as pd

    from saliency_core import study as S
    from saliency_core.store import Store


    def raw_keys(store, table):
        files = sorted((store.root / "tables" / table).glob("*.parquet"))
        return pd.concat([pd.read_parquet(p, columns=["key"]) for p in files])["key"] if files else pd.Series([])


    def same(spec, out, addr):
        runs = {"serial": dict(workers=0), "local": dict(workers=2), "remote": dict(scheduler=addr)}
        for name, kw in runs.items():
            r = S.run(spec, store=out / f"store-{name}", progress=False, out=out / name, **kw)
            assert r.n_submitted == 8 and r.missing == 0, (name, r.n_submitted, r.missing)
        again = S.run(spec, scheduler=addr, store=out / "store-remote", progress=False, out=False)
        (out / "rerun.json").write_text(json.dumps({"submitted": again.n_submitted}))


    def kill(spec, out, addr):
        from distributed import Client

        killed = {}
        with Client(addr, set_as_default=False) as mon:
            pids = mon.run(os.getpid)
            stop = threading.Event()

            def killer():
                while not stop.is_set() and not killed:
                    busy = {w: ks for w, ks in mon.processing().items() if any("saliency-task" in str(k) for k in ks)}
                    if busy:
                        w = sorted(busy)[0]
                        time.sleep(0.2)  # inside the slow task
                        os.kill(pids[w], signal.SIGKILL)
                        killed.update(worker=w, pid=pids[w], tasks=[str(k) for k in busy[w]])
                        return
                    time.sleep(0.02)

            th = threading.Thread(target=killer, daemon=True)
            th.start()
            store = Store(out / "store")
            try:
                res = S.run(spec, scheduler=addr, store=store, progress=False, out=out / "tables")
            finally:
                stop.set()
                th.join()
            killed["gone"] = killed.get("pid") not in mon.run(os.getpid).values()
        again = S.run(spec, scheduler=addr, store=store, progress=False, out=False)
        json.dump({"killed": killed, "missing": res.missing, "n_scores": len(res.scores), "n_costs": len(res.costs),
                   "raw_scores": raw_keys(store, "scores").tolist(), "raw_costs": raw_keys(store, "costs").tolist(),
                   "rerun_submitted": again.n_submitted, "rerun_skipped": again.n_skipped},
                  open(out / "kill.json", "w"))


    if __name__ == "__main__":
        args = json.loads(sys.argv[1])
        for mode in ("same", "kill"):
            (Path(args["out"]) / mode).mkdir(parents=True, exist_ok=True)
            globals()[mode](args[mode], Path(args["out"]) / mode, args["addr"])
''')


@pytest.fixture(scope="module")
def snapshot(tiny, tmp_path_factory):
    """A copy of the package (the tree may be edited while the test runs: every process of the cluster tests must
    run the same code, or the workers rightly refuse the client's keys), first on PYTHONPATH with the tiny models."""
    import shutil

    import saliency_core

    snap = tmp_path_factory.mktemp("snapshot")
    shutil.copytree(Path(saliency_core.__file__).parent, snap / "saliency_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (snap / "driver.py").write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=f"{snap}{os.pathsep}{tiny}", OMP_NUM_THREADS="1", SALIENCY_THREADS="1")
    return snap, env


@pytest.fixture(scope="module")
def dask_cluster(snapshot):
    """A real ``dask scheduler`` and two ``dask worker`` processes (one thread each, no nanny: a killed worker stays
    dead and the other one takes its task) on 127.0.0.1."""
    snap, env = snapshot
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], env=env, cwd=snap, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", addr, "--nthreads", "1",
                                       "--no-nanny", "--host", "127.0.0.1", "--no-dashboard",
                                       "--death-timeout", "300"], env=env, cwd=snap, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    try:
        from distributed import Client

        with Client(addr, timeout=300, set_as_default=False) as c:
            c.wait_for_workers(2, timeout=300)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def driven(tiny, snapshot, dask_cluster, tmp_path_factory):
    """One client process (the package snapshot) runs the tiny study serially, on a LocalCluster(2) and on the
    cluster, then a slow study on the cluster while one worker is SIGKILLed; the tests read what it wrote."""
    snap, env = snapshot
    out = tmp_path_factory.mktemp("driven")
    slow = _spec(tiny, methods={"slow": {"method": "slow_gradient", "sleep": 0.6},
                                "occ": {"method": "occlusion", "window": [3, 8, 8]}})
    args = {"out": str(out), "addr": dask_cluster, "same": _spec(tiny), "kill": slow}
    r = subprocess.run([sys.executable, str(snap / "driver.py"), json.dumps(args)], env=env, cwd=out,
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _without_times(r: S.Results) -> dict[str, pd.DataFrame]:
    return {k: v.drop(columns=[c for c in S.TIME_COLUMNS if c in v.columns]) for k, v in r.tables().items()}


def _raw_keys(store: Store, table: str) -> pd.Series:
    """Every key written to a table, before the read-time merge (to see duplicates)."""
    frames = [pd.read_parquet(p, columns=["key"]) for p in sorted((store.root / "tables" / table).glob("*.parquet"))]
    return pd.concat(frames)["key"] if frames else pd.Series([], dtype=str)


def test_plan_keys_and_labels(tiny):
    spec = _spec(tiny)
    spec["methods"]["grad again"] = {"method": "gradient"}  # same settings: the same task, two labels
    p = S.plan(spec)
    assert len(p.records) == 4 and len(p.tasks) == 8 and p.n_score == 16 and p.n_explain == 16
    assert len(p.explain_index) == 12 and len(p.score_index) == 24
    assert len({t.id for t in p.tasks}) == 8 and len({s["key"] for t in p.tasks for s in t.scores}) == 16
    from saliency_core import get_explainer

    t = p.tasks[0]
    assert t.id == Store.explanation_digest(get_explainer("gradient", p.clf), p.x(t), None, p.model_id)
    assert p.tasks[0].scores[1]["reference"]["spec"]["layers"] == p.clf.layer_order


def test_serial_localcluster_and_scheduler_give_the_same_tables(tiny, driven, dask_cluster, tmp_path):
    runs = {name: S.read_tables(driven / "same" / name) for name in ("serial", "local", "remote")}
    serial = runs["serial"]
    assert len(serial.scores) == 16 and len(serial.costs) == 8 and len(serial.curves) == 8 * 10
    assert serial.scores["value"].notna().all() and (serial.costs["n_backward"] == 1).sum() == 4
    assert runs["local"].provenance["runs"][0]["scheduler"] == "LocalCluster(2)"
    assert runs["remote"].provenance["runs"][0]["scheduler"] == dask_cluster
    assert runs["remote"].provenance["runs"][0]["workers"] == 2
    a, b, c = (_without_times(runs[n]) for n in ("serial", "local", "remote"))
    for name in S.TABLES:
        pd.testing.assert_frame_equal(a[name], b[name])
        pd.testing.assert_frame_equal(a[name], c[name])
    assert json.loads((driven / "same" / "rerun.json").read_text()) == {"submitted": 0}
    # the same study in this process (the live tree) agrees with the snapshot's serial run
    here = S.run(_spec(tiny), workers=0, store=tmp_path / "here", progress=False, out=False)
    pd.testing.assert_frame_equal(_without_times(here)["scores"], a["scores"])
    prov = serial.provenance
    assert prov["n_images"] == 4 and prov["model"]["weights_hash"] and prov["code"]["methods"]["grad"]
    assert set(os.listdir(driven / "same" / "serial")) == {"scores.parquet", "curves.parquet", "costs.parquet",
                                                           "provenance.json"}


def test_killed_worker_is_rescheduled_and_nothing_is_written_twice(driven):
    r = json.loads((driven / "kill" / "kill.json").read_text())
    assert r["killed"]["pid"] and r["killed"]["tasks"] and r["killed"]["gone"]  # killed mid-task
    assert r["missing"] == 0 and r["n_scores"] == 16 and r["n_costs"] == 8
    for table, n in (("raw_scores", 16), ("raw_costs", 8)):  # every row exactly once
        assert len(r[table]) == n and len(set(r[table])) == n
    assert r["rerun_submitted"] == 0 and r["rerun_skipped"] == 8
    tables = S.read_tables(driven / "kill" / "tables")
    assert len(tables.scores) == 16 and tables.scores["value"].notna().all()


def test_interrupt_keeps_finished_rows_and_resumes(tiny, tmp_path, monkeypatch):
    spec = _spec(tiny)
    store = Store(tmp_path / "store")
    real = S._execute
    calls = []

    def flaky(payload, state=None):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(payload["key"])
        return real(payload, state)

    monkeypatch.setattr(S, "_execute", flaky)
    with pytest.raises(KeyboardInterrupt):
        S.run(spec, workers=0, store=store, progress=False, out=False)
    monkeypatch.setattr(S, "_execute", real)
    partial = S.load_results(spec, store)
    assert partial.missing == 5 and len(partial.costs) == 3 and set(partial.costs["key"]) == set(calls)
    res = S.run(spec, workers=0, store=store, progress=False, out=False)
    assert res.n_submitted == 5 and res.n_skipped == 3 and res.missing == 0
    assert _raw_keys(store, "scores").is_unique


def test_write_and_import_tables_resume_elsewhere(tiny, tmp_path):
    spec = _spec(tiny)
    first = S.run(spec, workers=0, store=tmp_path / "a", progress=False, out=tmp_path / "release")
    read = S.read_tables(tmp_path / "release")
    pd.testing.assert_frame_equal(read.scores, first.scores)
    assert read.provenance["study"] == "tiny" and read.provenance["runs"][0]["submitted"] == 8
    counts = S.import_tables(tmp_path / "release", tmp_path / "b")
    assert counts == {"scores": 16, "curves": 80, "costs": 8}
    assert S.import_tables(tmp_path / "release", tmp_path / "b") == {"scores": 0, "curves": 0, "costs": 0}
    merged = S.load_results(spec, tmp_path / "b")
    assert merged.missing == 0 and [r["submitted"] for r in merged.provenance["runs"]] == [8]  # the run, once
    again = S.run(spec, workers=0, store=tmp_path / "b", progress=False)
    assert again.n_submitted == 0 and [r["submitted"] for r in again.provenance["runs"]] == [8, 0]
    for name in S.TABLES:
        pd.testing.assert_frame_equal(getattr(again, name), getattr(first, name))


def test_with_images(tiny):
    emb = S.Study.from_dict({"name": "e", "images": {"embedded": {"n": 20}}, "methods": ["gradient"],
                             "protocols": ["pixel_flip"]})
    assert emb.with_images(n=2).images["embedded"]["n"] == 2 and emb.images["embedded"]["n"] == 20
    folder = emb.with_images(tiny / "imgs", n=3, seed=1).images
    assert folder == {"folder": str(tiny / "imgs"), "labels": None, "n": 3, "seed": 1}
    assert len(S.load_records(S.Study.from_dict(_spec(tiny)).with_images(n=2))) == 2


def test_worker_with_other_code_refuses(tiny, tmp_path):
    p = S.plan(_spec(tiny))
    payload = S._payload(p, p.tasks[0], Store(tmp_path))
    payload["key"] = "0" * 64
    with pytest.raises(S.StudyError, match="other code or package versions"):
        S._execute(payload)
    payload = S._payload(p, p.tasks[0], Store(tmp_path))
    payload["x"] = payload["x"].flip(-1)
    with pytest.raises(S.StudyError, match="arrived damaged"):
        S._execute(payload)


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "study key 'colour' is not valid; accepted values: name, model"),
    ({"methods": {"a": {"method": "gradiant"}}}, r"methods\['a'\]: method='gradiant' is not valid"),
    ({"protocols": {"p": {"protocol": "lor", "alpha": 2}}}, "alpha=2 is not valid"),
    ({"protocols": ["auc"]}, r"protocols\['auc'\]: protocol='auc' is not valid"),
    ({"images": {"folder": "/nonexistent"}}, "is not a folder"),
    ({"images": {"embedded": {"n": 2.5}}}, "images.n=2.5 is not valid"),
    ({"sanity": {"sed": 1}}, "sanity=.* is not valid"),
    ({"name": "a/b"}, "name='a/b' is not valid"),
    ({"methods": {"o": {"method": "occlusion", "windw": 3}}}, r"methods\['o'\]"),
])
def test_spec_errors_are_one_line(tiny, change, message):
    with pytest.raises(ValueError, match=message) as info:
        S.plan({**_spec(tiny), **change})
    assert "\n" not in str(info.value)


def test_results_give_back_the_explanations_and_the_sanity_references(tiny, tmp_path):
    """A chapter reads maps from a study's Results (no hand-built keys): the trained model's explanation of each
    task, and the randomised model's explanation behind each sanity score."""
    from saliency_core import get_explainer

    store = Store(tmp_path / "store")
    res = S.run(_spec(tiny), workers=0, store=store, progress=False, out=False)
    ex = res.explanations()
    assert len(ex) == 8 and {m for _, m in ex} == {"grad", "occ"}
    img = res.plan.records[0].id
    e = res.explanation(img, "grad")
    fresh = get_explainer("gradient", res.plan.clf).explain(res.plan.x(res.plan.tasks[0]))
    assert torch.equal(e.map, fresh.map)
    ref = res.reference(img, "grad", "sanity")
    assert ref.map.shape == e.map.shape and not torch.equal(ref.map, e.map)
    # the same Results read back later from the store alone
    again = S.load_results(_spec(tiny), store)
    assert torch.equal(again.reference(img, "grad", "sanity").map, ref.map)
    with pytest.raises(KeyError, match="not a randomisation protocol"):
        res.reference(img, "grad", "flip")
    with pytest.raises(KeyError, match="accepted values"):
        res.explanation(img, "no such method")
    with pytest.raises(ValueError, match="not read from a store"):
        S.read_tables(_write(res, tmp_path / "tables")).explanations()
    store.clear()
    with pytest.raises(KeyError, match="run the study first"):
        res.explanation(img, "grad")


def _write(res, folder):
    S.write_tables(res, folder)
    return folder


def _worker_env() -> dict:
    import dask

    return {**{k: os.environ.get(k) for k in ("GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX",
                                              "OMP_NUM_THREADS", "SALIENCY_THREADS")},
            "profile": dask.config.get("distributed.worker.profile.enabled")}


def test_local_cluster_workers_start_with_the_fast_allocator():
    """A busy port 8787 (another study's cluster) is no warning: the HTTP server takes a free port.

    Dask's default pre-spawn environment trims malloc after almost every free (MALLOC_TRIM_THRESHOLD_=65536) and
    tasks run in a worker thread with its own arena: page faults made each task ~25 % slower than in a plain
    process (benchmarks/study.py). The default cluster's workers get the project's allocator settings instead."""
    import socket
    import warnings

    from distributed import Client

    busy = socket.socket()  # another study's cluster on Dask's default port: this one must not warn about it
    try:
        busy.bind(("127.0.0.1", 8787))
        busy.listen()
    except OSError:  # already taken by something else: the same situation
        pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            cluster = S.local_cluster(1, threads=1)
    finally:
        busy.close()
    try:
        with Client(cluster, set_as_default=False) as client:
            env = next(iter(client.run(_worker_env).values()))
    finally:
        cluster.close()
    assert "glibc.malloc.arena_max=1" in env["GLIBC_TUNABLES"]
    assert "glibc.malloc.mmap_max=0" in env["GLIBC_TUNABLES"]
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(2**31 - 1) and env["MALLOC_ARENA_MAX"] == "1"
    assert env["OMP_NUM_THREADS"] == "1" and env["SALIENCY_THREADS"] == "1"
    assert env["profile"] is False  # no stack sampling of the task thread every 10 ms
    with pytest.raises(ValueError, match="threads=0 is not valid"):
        S.worker_environment(0)


def test_run_record_dirty_only_for_edits_that_can_change_rows(tmp_path, monkeypatch):
    """A release writes its tables after each step and the next step runs beside them: those, notebooks and prose
    do not make the tree dirty; an edit of code or of a study file does."""
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for f in ("results/release/s/scores.parquet", "notebooks/a.ipynb", "book/claims.md", "README.md",
              "saliency_core/m.py", "params/studies/s.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("0")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path)

    def dirty():
        return S._run_record("serial", 1, 0.0, 0.0, 0, 0, 0, 0.0)["dirty"]

    assert dirty() is False
    for f in ("results/release/s/scores.parquet", "notebooks/a.ipynb", "book/claims.md", "README.md"):
        (tmp_path / f).write_text("1")
    assert dirty() is False
    (tmp_path / "params/studies/s.yaml").write_text("1")
    assert dirty() is True
    git("checkout", "params")
    (tmp_path / "saliency_core/m.py").write_text("1")
    assert dirty() is True
    # the record names the commit the run started on; a commit made during the run is recorded beside it
    git("checkout", "saliency_core")
    started = S._git_state()
    assert started[1] is False and len(started[0]) == 40
    (tmp_path / "saliency_core/m.py").write_text("2")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "during the run")
    rec = S._run_record("serial", 1, 0.0, 0.0, 0, 0, 0, 0.0, started=started)
    assert rec["commit"] == started[0] and rec["commit_at_end"] != started[0] and rec["dirty"] is False
    assert "commit_at_end" not in S._run_record("serial", 1, 0.0, 0.0, 0, 0, 0, 0.0, started=S._git_state())


def test_a_study_never_rescores_what_the_store_holds(tiny, tmp_path, monkeypatch):
    """Scores another study put in the store (same explanation, protocol, settings, code) are read, not recomputed:
    the second study scores only its own new protocol and explains no randomised model again."""
    from saliency_core import protocols as P

    store = Store(tmp_path / "store")
    first = S.run(_spec(tiny, name="first"), workers=0, store=store, progress=False, out=False)
    calls = []
    real = P.Protocol.__call__

    def counted(self, *a, **kw):
        calls.append(self.name)
        return real(self, *a, **kw)

    monkeypatch.setattr(P.Protocol, "__call__", counted)
    n_maps = len(list((store.root / "explanations").rglob("*.npz")))
    spec = _spec(tiny, name="second")
    spec["protocols"] = {**spec["protocols"], "flip3": {"protocol": "pixel_flip", "taus": [0.0, 0.5, 0.9]}}
    second = S.run(spec, workers=0, store=store, progress=False, out=False)
    assert calls == ["pixel_flip"] * 8  # 4 photos x 2 methods, the new protocol only
    assert len(list((store.root / "explanations").rglob("*.npz"))) == n_maps
    assert second.missing == 0 and len(second.scores) == 24
    shared = second.scores[second.scores["protocol"] != "flip3"].reset_index(drop=True)
    pd.testing.assert_frame_equal(shared, first.scores.reset_index(drop=True))


def test_protocol_settings_merge_the_sanity_block_under_the_entry(tiny):
    spec = {**_spec(tiny), "sanity": {"init": "uniform0.05", "seed": 3},
            "protocols": {"flip": {"protocol": "pixel_flip"}, "top1": {"protocol": "sanity", "layers": 1, "seed": 7}}}
    s = S.protocol_settings(spec, "top1")
    assert s["init"] == "uniform0.05" and s["seed"] == 7 and s["layers"] == 1  # the entry wins over the block
    assert S.protocol_settings(spec, "flip") == S.get_protocol("pixel_flip").settings()
    with pytest.raises(ValueError, match="label='nope' is not valid; accepted values: flip, top1"):
        S.protocol_settings(spec, "nope")
