"""The contract every registered explainer keeps (#14), on a tiny BatchNorm network with fast settings.

* a finite ``(H, W)`` map of the input's size, for the requested target;
* the same settings and seed give the same map (a fresh explainer, a fresh model);
* the classifier is left exactly as it was (``state_fingerprint``), also when it was in train mode — and a
  train-mode model gives the eval-mode result (the default target is chosen in eval mode too);
* ``Explanation.to_state`` / ``from_state`` round-trip;
* ``settings()`` holds hyper-parameters only, never a runtime argument (batch_size, device, progress ...);
* every hook is removed after ``explain``, also when ``_explain`` raises half-way, and the model is restored then too.
"""

from __future__ import annotations

import pytest
import torch

from saliency_core.explanation import Explanation
from tests.helpers import explainer_names, fast_explainer, hook_count, tiny_classifier, tiny_image

NAMES = explainer_names()
X = tiny_image(32)


@pytest.fixture(scope="module")
def runs():
    """One explanation per method on a fresh eval-mode tiny model (target 1), with the model's fingerprints."""
    out = {}
    for name in NAMES:
        clf = tiny_classifier()
        fp = clf.state_fingerprint()
        e = fast_explainer(name, clf).explain(X, 1)
        out[name] = (e, fp, clf.state_fingerprint(), hook_count(clf.net))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_finite_map_of_the_input_size(runs, name):
    e = runs[name][0]
    assert isinstance(e, Explanation) and e.method == name and e.target == 1
    assert tuple(e.map.shape) == (32, 32) and e.map.dtype == torch.float32
    assert bool(torch.isfinite(e.map).all())
    assert e.n_forward >= 1 and e.seconds >= 0


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_map(runs, name):
    again = fast_explainer(name, tiny_classifier()).explain(X, 1)
    assert torch.equal(again.map, runs[name][0].map)


@pytest.mark.parametrize("name", NAMES)
def test_model_left_as_it_was_and_no_hook_left(runs, name):
    _, before, after, hooks = runs[name]
    assert after == before
    assert hooks == hook_count(tiny_classifier().net) == 0


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_model_gives_the_eval_result_and_stays_in_train_mode(runs, name):
    clf = tiny_classifier(train=True)
    fp = clf.state_fingerprint()
    e = fast_explainer(name, clf).explain(X)  # default target: chosen in eval mode
    ref = tiny_classifier()
    assert e.target == ref.top1(X)
    assert clf.state_fingerprint() == fp and clf.net.training and clf.net.get_submodule("bn1").training
    e_eval = fast_explainer(name, ref).explain(X)
    assert torch.allclose(e.map, e_eval.map, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip(runs, name):
    e = runs[name][0]
    back = Explanation.from_state(e.to_state())
    assert torch.equal(back.map, e.map)
    for f in ("target", "method", "settings", "n_forward", "n_backward", "n_forward_calls", "n_backward_calls",
              "seconds"):
        assert getattr(back, f) == getattr(e, f), f
    assert set(back.extras) == set(e.extras)


@pytest.mark.parametrize("name", NAMES)
def test_settings_hold_no_runtime_argument(runs, name):
    e = runs[name][0]
    explainer = fast_explainer(name, tiny_classifier())
    assert not set(e.settings) & {"batch_size", "device", "progress", "model"}
    assert not set(e.settings) & set(explainer.runtime_args)
    assert e.settings == explainer.settings()
    # every setting is a hyper-parameter of the constructor, read back under its own name
    again = fast_explainer(name, tiny_classifier(), **e.settings)
    assert again.settings() == e.settings


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", NAMES)
def test_hooks_removed_and_model_restored_when_explain_raises(name):
    clf = tiny_classifier(train=True)
    clf.check_outputs(X[None])  # the logits check is done: the next model call is inside _explain
    fp = clf.state_fingerprint()
    explainer = fast_explainer(name, clf)

    def boom(module, inputs, output):
        raise _Boom("model failed half-way")

    handle = clf.net.get_submodule("fc").register_forward_hook(boom)
    try:
        with pytest.raises(_Boom):
            explainer.explain(X, 1)
    finally:
        handle.remove()
    assert hook_count(clf.net) == 0, "a hook was left on the model"
    assert clf.state_fingerprint() == fp
