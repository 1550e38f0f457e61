"""C-Shapley (LEG-table variant): the official estimator inv(XᵀWX)·Xᵀ·F against a plain re-statement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import BoxMeanNet, make_classifier
from scipy.special import comb

from saliency_core import get_explainer
from saliency_core.methods.cshapley import cshapley_map, cshapley_weights, diamond_coalitions

SIZE, CELL, ORDER = 32, 4, 3
N = SIZE // CELL
D = N * N


def _image():
    return torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def _restated(clf, x, target, estimator):
    """The LEG repository's C-Shapley written out from its formula with loops (no library code):
    coalitions = L1 diamonds of radius 0..ORDER-1 around every cell; the rest of the image = its mean colour;
    w(S) = (D-1) / (C(D,S)·S·D); official φ = inv(XᵀWX)·Xᵀ·F, WLS φ = inv(XᵀWX)·XᵀW·F."""
    mean = x[0].mean(dim=(1, 2))
    rows, fs = [], []
    for ci in range(N):
        for cj in range(N):
            for k in range(ORDER):
                keep = np.zeros((N, N))
                img = torch.empty_like(x[0])
                for a in range(N):
                    for b in range(N):
                        inside = abs(a - ci) + abs(b - cj) <= k
                        keep[a, b] = float(inside)
                        blk = (slice(None), slice(a * CELL, (a + 1) * CELL), slice(b * CELL, (b + 1) * CELL))
                        img[blk] = x[0][blk] if inside else mean[:, None, None]
                rows.append(keep.ravel())
                p = torch.softmax(clf.net(clf.normalize(img[None])).double(), 1)[0, target]
                fs.append(float(p))
    X = np.array(rows)
    F = np.array(fs)
    S = X.sum(1)
    w = np.array([(D - 1) / (comb(D, s) * s * D) for s in S])
    W = np.diag(w)
    G = np.linalg.inv(X.T @ W @ X)
    phi = G @ X.T @ F if estimator == "official" else G @ X.T @ W @ F
    return phi.reshape(N, N), F


@pytest.mark.parametrize("estimator", ["official", "wls"])
def test_estimators_equal_the_restated_formula(estimator):
    clf = make_classifier(BoxMeanNet(scale=4.0), size=SIZE)
    x = _image()
    ex = get_explainer("cshapley", clf, cell=CELL, max_order=ORDER, estimator=estimator).explain(x, 3)
    phi, F = _restated(clf, x, 3, estimator)
    np.testing.assert_allclose(ex.extras["responses"].numpy(), F, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ex.extras["cells"].numpy(), phi, rtol=1e-4, atol=1e-6 * np.abs(phi).max())
    assert ex.n_forward == D * ORDER and ex.settings["estimator"] == estimator


def test_official_is_the_default_and_differs_from_wls():
    clf = make_classifier(BoxMeanNet(scale=4.0), size=SIZE)
    x = _image()
    off = get_explainer("cshapley", clf, cell=CELL, max_order=ORDER).explain(x, 3)
    assert off.settings["estimator"] == "official"
    # the other estimator from the stored responses, without model calls, equals running it
    wls_run = get_explainer("cshapley", clf, cell=CELL, max_order=ORDER, estimator="wls").explain(x, 3)
    wls = cshapley_map(off.extras["responses"], N, ORDER, (SIZE, SIZE), estimator="wls")
    torch.testing.assert_close(wls, wls_run.map)
    torch.testing.assert_close(cshapley_map(off.extras["responses"], N, ORDER, (SIZE, SIZE)), off.map)
    # WLS collapses to the radius-0 responses ("only this cell kept"); the official sum spreads over diamonds
    r0 = off.extras["responses"].numpy()[::ORDER]
    np.testing.assert_allclose(wls_run.extras["cells"].numpy().ravel(), r0, rtol=5e-3)  # D = 64: not yet exact
    assert not np.allclose(off.extras["cells"].numpy().ravel() / np.abs(off.extras["cells"]).max(),
                           wls_run.extras["cells"].numpy().ravel() / np.abs(wls_run.extras["cells"]).max(), atol=0.05)


def test_official_is_close_to_the_sum_over_containing_diamonds():
    """XᵀWX ≈ w(1)·I because w falls by orders of magnitude per radius: φ_i ≈ Σ_{U ∋ i} F(U) / w(1)."""
    clf = make_classifier(BoxMeanNet(scale=4.0), size=SIZE)
    x = _image()
    ex = get_explainer("cshapley", clf, cell=CELL, max_order=ORDER).explain(x, 3)
    X = diamond_coalitions(N, ORDER).reshape(D * ORDER, -1).double().numpy()
    approx = X.T @ ex.extras["responses"].numpy() / cshapley_weights(np.array([1.0]), D)[0]
    np.testing.assert_allclose(ex.extras["cells"].numpy().ravel(), approx, rtol=1e-2)  # D = 64: w(5)/w(1) ≈ 2e-6


def test_weights_are_the_formula():
    s = np.array([1, 5, 13, 25])
    np.testing.assert_allclose(cshapley_weights(s, 784), [(783) / (comb(784, k) * k * 784) for k in s], rtol=1e-10)
    np.testing.assert_allclose(cshapley_weights(s, 784, "shap"),
                               [(783) / (comb(784, k) * k * (784 - k)) for k in s], rtol=1e-10)


def test_diamonds_and_cshapley_box(box_classifier):
    d = diamond_coalitions(9, 3)
    assert d.shape == (81 * 3, 9, 9)
    centre = 4 * 9 + 4
    assert [int(d[centre * 3 + k].sum()) for k in range(3)] == [1, 5, 13]  # 2k² + 2k + 1
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ex = get_explainer("cshapley", box_classifier, cell=4, max_order=2).explain(x, 3)
    assert ex.n_forward == 64 * 2
    cells = ex.extras["cells"]
    assert cells[2:6, 2:6].mean() > cells[0, :].abs().mean() + 1e-4


def test_bad_arguments(box_classifier):
    with pytest.raises(ValueError, match="estimator="):
        get_explainer("cshapley", box_classifier, estimator="ols")
    with pytest.raises(ValueError, match="cell"):
        get_explainer("cshapley", box_classifier, cell=5).explain(torch.rand(1, 3, 32, 32))
