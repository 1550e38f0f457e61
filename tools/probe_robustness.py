"""A hostile-but-fair user's probe of the public API (#17): one line per case with its verdict.

Each case calls the library the way a user would (embedded Lite0, embedded photos, tiny budgets) and is judged:

* ``clear error``  — one line that names the parameter (the case's token) and says what is accepted ("accepted" or
  "must be", as the test suite asks);
* ``correct``      — the right result (the case checks it);
* ``SILENT WRONG`` — a result, but a wrong one, without a word;
* ``TRACEBACK``    — any other exception (a raw torch/numpy/Python message), or any exception where a result was due;
* ``HANG``         — still running after ``--timeout`` seconds;
* ``CODE RAN``     — a planted file executed code.

The suite holds the same classes as tests (tests/test_bad_inputs.py, test_store.py, test_data.py, test_models.py,
test_parameters.py, test_runner.py); this script exists to print the before/after table of the issue's closing note.
It uses only API that older versions also had, so ``PYTHONPATH=<old checkout> python tools/probe_robustness.py``
gives the "before" column. Last line: ``cases=<n> clear_error=<n> correct=<n> silent_wrong=<n> ...``.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")


class Hang(Exception):
    pass


class Silent(Exception):
    """The call returned, but its result is wrong."""


def _alarm(signum, frame):  # noqa: ARG001
    raise Hang


class _Planted:
    """Unpickling this object runs ``touch <marker>``: the code a hostile cache entry or weight file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_bytes(marker: Path) -> bytes:
    """A torch.save file that creates ``marker`` when unpickled."""
    buf = io.BytesIO()
    torch.save(_Planted(marker), buf)
    return buf.getvalue()


def judge(fn, token: str | tuple[str, ...], timeout: int) -> tuple[str, str]:
    tokens = (token,) if isinstance(token, str) else token
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        out = fn()
    except Hang:
        return "HANG", f"> {timeout} s"
    except Silent as exc:
        return "SILENT WRONG", str(exc)[:110]
    except Exception as exc:  # noqa: BLE001
        msg = str(exc).strip()
        one = msg.splitlines()[0] if msg else ""
        named = any(t in msg for t in tokens) and ("accepted" in msg or "must be" in msg)
        if msg and "\n" not in msg and named:
            return "clear error", f"{type(exc).__name__}: {one[:100]}"
        return "TRACEBACK", f"{type(exc).__name__}: {one[:100]}"
    finally:
        signal.alarm(0)
    return out if isinstance(out, tuple) else ("correct", str(out)[:110])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=int, default=60, help="seconds before a library call counts as a hang")
    ap.add_argument("--notebook-timeout", type=int, default=600, help="seconds for a runner case (a chapter that "
                    "runs instead of refusing takes minutes)")
    args = ap.parse_args(argv)

    import saliency_core as sc
    from saliency_core import embedded_images, get_explainer, load_folder, load_model
    from saliency_core.cache import ResultCache

    print(f"saliency_core from {Path(sc.__file__).parent.parent}")
    clf = load_model("efficientnet_lite0")
    recs = embedded_images()
    x = clf.preprocess(recs[0].image)
    top = clf.top1(x[None]) if x.dim() == 3 else clf.top1(x)
    tmp = Path(tempfile.mkdtemp(prefix="probe-"))

    def rise(**kw):
        return get_explainer("rise", clf, n_masks=8, cells=4, batch_size=8, **kw)

    def expect_refusal(fn):
        """A call that must not return a map: returning one is a silent wrong result."""
        def run():
            e = fn()
            m = getattr(e, "map", e)
            raise Silent(f"returned a map (finite={bool(torch.isfinite(torch.as_tensor(m)).all())}) without a word")
        return run

    cases: list[tuple[str, str, object, str | tuple[str, ...], int]] = []

    X = ("x has", "x must", "x contains", "x is")  # how the library names the image argument

    def case(area, name, fn, token, timeout=None):
        cases.append((area, name, fn, token, timeout or args.timeout))

    # ---- pixels -------------------------------------------------------------------------------------------
    case("pixels", "uint8 image 0-255", expect_refusal(lambda: rise().explain((x * 255).to(torch.uint8), top)), X)
    case("pixels", "float image in 0-255", expect_refusal(lambda: rise().explain(x * 255, top)), X)
    case("pixels", "negative values", expect_refusal(lambda: rise().explain(x - 0.5, top)), X)
    xn = x.clone()
    xn[..., 5, 5] = float("nan")
    xi = x.clone()
    xi[..., 5, 5] = float("inf")
    for m in ("rise", "leg", "occlusion", "gradient"):
        kw = {"rise": dict(n_masks=8, cells=4), "leg": dict(n_samples=4)}.get(m, {})
        case("pixels", f"NaN pixel ({m})",
             expect_refusal(lambda m=m, kw=kw: get_explainer(m, clf, **kw).explain(xn, top)), X)
    case("pixels", "Inf pixel (rise)", expect_refusal(lambda: rise().explain(xi, top)), X)
    case("pixels", "8×8 image (leg)",
         expect_refusal(lambda: get_explainer("leg", clf, n_samples=4).explain(torch.rand(3, 8, 8), top)), X)
    case("pixels", "8×8 image (mask)",
         expect_refusal(lambda: get_explainer("mask", clf).explain(torch.rand(3, 8, 8), top)), X)
    case("pixels", "NumPy image", expect_refusal(lambda: rise().explain(x.numpy(), top)), X)

    # ---- targets ------------------------------------------------------------------------------------------
    for label, t in [("3.5", 3.5), ("True", True), ("tensor([1, 2])", torch.tensor([1, 2])), ("-1", -1),
                     ("1000 (= n_classes)", 1000), ("'2'", "2")]:
        case("targets", f"target={label}", expect_refusal(lambda t=t: rise().explain(x, t)), "target")

    def attribute_numpy_int():
        a = rise().attribute(x[None] if x.dim() == 3 else x, target=np.int64(top))
        ref = rise().attribute(x[None] if x.dim() == 3 else x, target=int(top))
        if not torch.equal(torch.as_tensor(a), torch.as_tensor(ref)):
            raise Silent("np.int64 target gave another map than int")
        return "correct", "same map as int target"
    case("targets", "attribute(target=np.int64)", attribute_numpy_int, "target")

    # ---- budgets and settings -----------------------------------------------------------------------------
    case("budgets", "rise n_masks=2.5", expect_refusal(lambda: get_explainer("rise", clf, n_masks=2.5, cells=4)
                                                       .explain(x, top)), "n_masks")
    case("budgets", "leg n_samples=2.5", expect_refusal(lambda: get_explainer("leg", clf, n_samples=2.5)
                                                        .explain(x, top)), "n_samples")
    case("budgets", "occlusion stride=2.5", expect_refusal(lambda: get_explainer("occlusion", clf, stride=2.5)
                                                           .explain(x, top)), "stride")
    case("budgets", "rise n_masks=1e9", expect_refusal(lambda: get_explainer("rise", clf, n_masks=10**9, cells=4)
                                                       .explain(x, top)), "n_masks")
    case("budgets", "rise n_masks=inf", expect_refusal(lambda: get_explainer("rise", clf, n_masks=float("inf"),
                                                                             cells=4).explain(x, top)), "n_masks")
    case("budgets", "rise n_masks=0", expect_refusal(lambda: get_explainer("rise", clf, n_masks=0, cells=4)
                                                     .explain(x, top)), "n_masks")
    case("budgets", "rise p1=1.5", expect_refusal(lambda: get_explainer("rise", clf, n_masks=8, cells=4, p1=1.5)
                                                  .explain(x, top)), "p1")
    case("budgets", "misspelt setting n_mask=8", expect_refusal(lambda: get_explainer("rise", clf, n_mask=8)
                                                                .explain(x, top)), "n_mask")
    case("budgets", "unknown method 'leg-tv'", expect_refusal(lambda: get_explainer("leg-tv", clf)), "leg-tv")

    # ---- the model's state --------------------------------------------------------------------------------
    def train_mode_model():
        c = load_model("efficientnet_lite0")
        c.net.train()
        buffers = [b.clone() for b in c.net.buffers()]
        e = get_explainer("rise", c, n_masks=8, cells=4, batch_size=8).explain(x)
        ref_t = clf.top1(x[None] if x.dim() == 3 else x)
        changed = sum(not torch.equal(a, b) for a, b in zip(buffers, c.net.buffers()))
        if e.target != ref_t:
            raise Silent(f"default target {e.target} chosen in train mode (eval top-1 {ref_t})")
        if changed or not c.net.training:
            raise Silent(f"{changed} buffers changed, training={c.net.training} afterwards")
        return "correct", "eval-mode target, model left in train mode, buffers unchanged"
    case("model", "train-mode model, default target", train_mode_model, "train")

    def probabilities_model():
        net = torch.nn.Sequential(clf.net, torch.nn.Softmax(dim=1))
        from saliency_core.models import Classifier
        c = Classifier.from_module(net)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            e = get_explainer("rise", c, n_masks=8, cells=4).explain(x, top)
        if any("probab" in str(m.message) for m in w):
            return "clear error", "warns: the model returns probabilities"
        raise Silent(f"explained a probability model as logits (map mean {float(e.map.mean()):.3g})")
    case("model", "model returns probabilities", probabilities_model, ("probab", "logit"))

    def weight_fingerprint():
        from saliency_core.models import Classifier
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(4, 10))
        net.eval()
        big = torch.nn.Linear(4096, 10)
        net.append(torch.nn.Identity())
        net[3] = torch.nn.Sequential(torch.nn.Linear(4, 4096), big)
        k1 = Classifier.from_module(net).key
        with torch.no_grad():
            big.weight[-1, -1] += 1.0  # past the first 4 KiB of the tensor
        k2 = Classifier.from_module(net).key
        if k1 == k2:
            raise Silent("a changed weight left the model key unchanged")
        return "correct", "model key changes"
    case("model", "weight changed past the first 4 KiB", weight_fingerprint, "weights")

    # ---- the cache ----------------------------------------------------------------------------------------
    def planted_pickle():
        root = tmp / "cache-pickle"
        cache = ResultCache(root)
        key = {"probe": 1}
        cache.get_or_compute("probe", key, lambda: {"a": np.arange(3)})
        marker = tmp / "PWNED"
        for f in [p for p in root.rglob("*") if p.is_file()]:
            f.write_bytes(planted_bytes(marker))
        try:
            cache.get_or_compute("probe", key, lambda: {"a": np.arange(3)})
        except Exception:  # noqa: BLE001
            pass
        if marker.exists():
            return "CODE RAN", "the planted entry ran `touch`"
        return "correct", "marker never created"
    case("cache", "planted pickle entry", planted_pickle, "cache")

    def wrong_contents():
        root = tmp / "cache-wrong"
        cache = ResultCache(root)
        key = {"probe": 2}
        cache.get_or_compute("probe", key, lambda: {"a": np.arange(3)})
        for f in [p for p in root.rglob("*") if p.is_file()]:
            if f.suffix == ".npz":
                np.savez(f.with_suffix(""), b=np.zeros(2))  # the right format, other contents
            else:
                buf = io.BytesIO()
                torch.save([1, 2, 3], buf)
                f.write_bytes(buf.getvalue())
        v = cache.get_or_compute("probe", key, lambda: {"a": np.arange(3)})
        if not (isinstance(v, dict) and np.array_equal(v.get("a"), np.arange(3))):
            raise Silent(f"served {type(v).__name__} instead of recomputing")
        return "correct", "a miss, recomputed"
    case("cache", "entry of the right format, wrong contents", wrong_contents, "cache")

    def stale_x():
        cache = ResultCache(tmp / "cache-x")
        e1 = cache.explain(rise(), recs[0], top)
        other = clf.preprocess(recs[1].image)
        e2 = cache.explain(rise(), recs[0], top, x=other)
        if torch.equal(e1.map, e2.map):
            raise Silent("x= another image served the record's cached map")
        return "correct", "x= keyed by content"
    case("cache", "explicit x= that is not the record's image", stale_x, "x")

    # ---- data and weights ---------------------------------------------------------------------------------
    def png16():
        from PIL import Image
        d = tmp / "png16"
        (d / "0").mkdir(parents=True)
        a = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
        Image.fromarray(a).save(d / "0" / "grey16.png")
        r = load_folder(d)[0]
        arr = np.asarray(r.image.convert("L"), dtype=float)
        if arr.mean() > 250:
            raise Silent(f"16-bit PNG loaded as white (mean {arr.mean():.0f}/255)")
        return "correct", f"mean {arr.mean():.0f}/255"
    case("data", "16-bit grey PNG", png16, "png")

    def short_csv():
        from PIL import Image
        d = tmp / "csv"
        d.mkdir()
        Image.new("RGB", (40, 40)).save(d / "a.jpg")
        (d / "labels.csv").write_text("file,class_index\na.jpg\n")
        load_folder(d, d / "labels.csv")
        raise Silent("a row without a label was loaded")
    case("data", "labels.csv row with too few fields", short_csv, ("line", "labels"))

    def wrong_arch():
        sd = torch.nn.Linear(3, 3).state_dict()
        p = tmp / "wrong.pt"
        torch.save(sd, p)
        load_model("efficientnet_lite0", weights=str(p))
        raise Silent("loaded a state_dict of another architecture")
    case("data", "wrong-architecture weights for Lite0", wrong_arch, ("weights", "state_dict"))

    def pickled_weights():
        marker = tmp / "PWNED2"
        p = tmp / "evil.pt"
        p.write_bytes(planted_bytes(marker))
        try:
            load_model("efficientnet_lite0", weights=str(p))
        except Exception:  # noqa: BLE001
            pass
        return ("CODE RAN", "the weight file ran `touch`") if marker.exists() else ("correct", "marker never created")
    case("data", "weight file with planted code", pickled_weights, "weights")

    def gradcam_resnet():
        c = load_model("resnet50", weights="random")
        e = get_explainer("gradcam", c).explain(torch.rand(3, 64, 64), 1)
        return "correct", f"map {tuple(e.map.shape)}"
    case("models", "Grad-CAM on resnet50", gradcam_resnet, ())  # a result is due: any exception is a failure

    # ---- protocols ----------------------------------------------------------------------------------------
    def deletion_train_mode():
        from saliency_core.metrics.insertion_deletion import insertion_deletion
        c = load_model("efficientnet_lite0")
        c.net.train()
        sal = torch.rand(224, 224, generator=torch.Generator().manual_seed(0))
        a = insertion_deletion(c, x, sal, top, step=7168)
        b = insertion_deletion(clf, x, sal, top, step=7168)
        if a.auc != b.auc or not c.net.training:
            raise Silent("curve computed in train mode or model mode changed")
        return "correct", "eval-mode curve, model left in train mode"
    case("protocols", "deletion curve on a train-mode model", deletion_train_mode, "train")

    def deletion_uint8():
        from saliency_core.metrics.insertion_deletion import insertion_deletion
        insertion_deletion(clf, (x * 255).to(torch.uint8), torch.rand(224, 224), top, step=7168)
        raise Silent("uint8 image scored")
    case("protocols", "deletion curve of a uint8 image", deletion_uint8, ("image has", "image must", *X))

    # ---- notebook parameters (the runner checks them before any work) --------------------------------------
    def runner(*params):
        cmd = [sys.executable, "-m", "saliency_core.run", "--profile", "smoke", "--only", "03_leg", "--execute-only"]
        for p in params:
            cmd += ["-p", p]
        env = dict(os.environ, SALIENCY_RESULTS_DIR=str(tmp / "res"), SALIENCY_CACHE=str(tmp / "c"),
                   SALIENCY_STORE=str(tmp / "c"))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.notebook_timeout, env=env)
        if r.returncode == 0:
            raise Silent(f"ran with {params} and exited 0")
        err = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if ln.strip()]
        raise RuntimeError(err[-1] if err else "")
    nt = args.notebook_timeout + 5
    case("notebooks", "-p n_images=-3", lambda: runner("n_images=-3"), "n_images", nt)
    case("notebooks", "-p leg_sample=5 (misspelt)", lambda: runner("leg_sample=5"), "leg_sample", nt)
    case("notebooks", "-p model=vgg99", lambda: runner("model=vgg99"), "model", nt)

    counts: Counter[str] = Counter()
    print(f"{'area':10s} {'case':45s} {'verdict':13s} detail")
    for area, name, fn, token, timeout in cases:
        verdict, detail = judge(fn, token, timeout)
        counts[verdict] += 1
        print(f"{area:10s} {name:45s} {verdict:13s} {detail}", flush=True)
    keys = ["clear error", "correct", "SILENT WRONG", "TRACEBACK", "HANG", "CODE RAN"]
    print(f"cases={len(cases)} " + " ".join(f"{k.lower().replace(' ', '_')}={counts[k]}" for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
