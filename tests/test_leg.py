"""LEG / LEG-TV / C-Shapley: operator identities, sparse vs dense LP, consistency on linear models, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliency_core import get_explainer
from saliency_core.methods.leg import (
    covariance_cholesky,
    leg_from_samples,
    legtv_dense_reference,
    sample_grid_noise,
    solve_leg_tv,
    structured_covariance,
    theorem1_L,
    tv_operator,
)
from saliency_core.perturbations import grid_difference_matrix


@pytest.mark.parametrize("n", [3, 5, 8])
@pytest.mark.parametrize("padded", [True, False])
def test_identity_dplus_sigma(n, padded):
    """D⁺ᵀΣ = σ²(D + u1ᵀ/p) with u = D⁺ᵀ1 (u = 0 unpadded), protocols.md §3.3."""
    sigma, p = 0.02, n * n
    D = grid_difference_matrix(n, padded).toarray()
    Dpt = np.linalg.pinv(D).T
    S = structured_covariance(n, padded, sigma)
    D_sp, u = tv_operator(n, padded)
    assert np.allclose(D_sp.toarray(), D)
    assert np.allclose(u, Dpt @ np.ones(p), atol=1e-10)
    lhs = Dpt @ S
    rhs = sigma**2 * (D + np.outer(u, np.ones(p)) / p)
    assert np.abs(lhs - rhs).max() < 1e-12 * max(1.0, np.abs(lhs).max()) + 1e-16
    if not padded:
        assert np.abs(u).max() < 1e-10


def test_official_operator_properties():
    D = grid_difference_matrix(28, True)
    assert D.shape == (1624, 784)
    ev = np.linalg.eigvalsh((D.T @ D).toarray())
    assert ev.min() > 1e-3  # rank 784
    Du = grid_difference_matrix(28, False)
    evu = np.linalg.eigvalsh((Du.T @ Du).toarray())
    assert np.sum(evu < 1e-9) == 1  # rank 783, null space = constants
    S0 = structured_covariance(28, True, 1.0)
    assert np.allclose(np.diag(S0), 4 + 1 / 784)
    es = np.linalg.eigvalsh(S0)
    assert es.max() / es.min() == pytest.approx(136.4, abs=0.1)
    L = covariance_cholesky(28, True)
    assert np.allclose(L @ L.T, S0)


@pytest.mark.parametrize("padded", [True, False])
def test_sparse_lp_equals_dense(padded):
    n, sigma = 8, 0.02
    rng = np.random.default_rng(1)
    truth = np.zeros((n, n))
    truth[2:6, 3:7] = 1.0
    g_hat = truth.ravel() + 0.3 * rng.standard_normal(n * n)
    ybar = structured_covariance(n, padded, sigma) @ g_hat
    g_dense, obj_dense = legtv_dense_reference(ybar, n, sigma, 0.1, padded, "highs")
    for solver in ("clarabel", "highs"):
        g, info = solve_leg_tv(g_hat, n, 0.1, padded, solver)
        assert info["objective"] == pytest.approx(obj_dense, rel=1e-6)
        if padded:  # unique optimum on this instance
            assert np.abs(g - g_dense).max() < 1e-4
        else:  # the unpadded dense LP is defined up to a constant (and L1 optima need not be unique):
            # ours pins mean(g) = mean(ĝ); the shifted dense optimum is feasible for ours with the same objective
            assert g.mean() == pytest.approx(g_hat.mean(), abs=1e-6)
            D_sp, _ = tv_operator(n, padded)
            shifted = g_dense - g_dense.mean() + g_hat.mean()
            r = D_sp @ g_hat
            assert np.abs(D_sp @ shifted - r).max() <= 0.1 * np.abs(r).max() * (1 + 1e-6)
        # feasibility of the paper's constraint, checked with the dense operator
        D = grid_difference_matrix(n, padded).toarray()
        Dpt = np.linalg.pinv(D).T
        b = Dpt @ ybar
        S = structured_covariance(n, padded, sigma)
        assert np.abs(b - Dpt @ S @ g).max() <= 0.1 * np.abs(b).max() * (1 + 1e-6)


def test_lp_trivial_and_theorem1():
    g_hat = np.random.default_rng(0).standard_normal(25)
    g, info = solve_leg_tv(g_hat, 5, 1.0, True)
    assert info["status"] == "trivial" and np.all(g == 0)
    assert theorem1_L(5, 100) > theorem1_L(5, 10000) > 0
    with pytest.raises(ValueError, match="solver"):
        solve_leg_tv(g_hat, 5, 0.1, True, "mosek")


def test_sampling_covariance_and_determinism():
    n = 6
    z = sample_grid_noise(40000, n, 0.5, generator=torch.Generator().manual_seed(0))
    emp = (z.T @ z / z.shape[0]).numpy()
    S = structured_covariance(n, True, 0.5)
    assert np.abs(emp - S).max() < 0.06 * np.abs(S).max()
    z1 = sample_grid_noise(10, n, 0.5, generator=torch.Generator().manual_seed(3))
    z2 = sample_grid_noise(10, n, 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z1, z2)
    za = sample_grid_noise(10, n, 0.5, generator=torch.Generator().manual_seed(3), antithetic=True)
    assert torch.allclose(za[:5], -za[5:])


@pytest.mark.parametrize("covariance", ["structured", "isotropic"])
def test_leg_estimator_consistent_on_linear_function(covariance):
    """f(z) = aᵀz + ½zᵀBz has LEG = a for any centred Gaussian; the error shrinks like n^{-1/2}."""
    n, sigma = 6, 0.1
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.standard_normal(n * n))
    B = torch.from_numpy(rng.standard_normal((n * n, n * n)))
    gen = torch.Generator().manual_seed(0)
    errs = []
    for m in (500, 50000):
        z = sample_grid_noise(m, n, sigma, covariance, generator=gen)
        y = z @ a + 0.5 * ((z @ B) * z).sum(1)
        errs.append(float((leg_from_samples(z, y, sigma, covariance) - a).norm() / a.norm()))
    assert errs[1] < errs[0] / 4
    assert errs[1] < 0.15


def test_leg_recovers_linear_model_gradient(linear_classifier):
    """Logit output of a linear model: LEG per channel = the weights summed over each grid block."""
    clf = linear_classifier
    x = torch.full((1, 3, 32, 32), 0.5)
    W = clf.net.fc.weight.detach()[1].view(3, 32, 32)
    truth = W.view(3, 8, 4, 8, 4).sum((2, 4)).double()
    errs = []
    for n in (100, 3000):
        ex = get_explainer("leg", clf, n_samples=n, grid=8, sigma=0.05, response="logit", seed=0).explain(x, 1)
        errs.append(float((ex.extras["leg"].double() - truth).norm() / truth.norm()))
        assert ex.n_forward == 3 * n + 1
    assert errs[1] < errs[0] / 3 and errs[1] < 0.2


def test_leg_tv_finds_box_and_is_deterministic(box_classifier):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    kw = dict(n_samples=300, grid=8, sigma=0.05, seed=1, batch_size=128)
    ex = get_explainer("leg_tv", box_classifier, path=(0.3, 0.1), k_l=0.1, **kw).explain(x, 3)
    m = ex.map
    inside = m[8:24, 8:24].mean()
    outside = torch.cat([m[:6].flatten(), m[26:].flatten()]).mean()
    assert inside > 5 * outside
    assert set(ex.extras["path"]) == {0.3, 0.1}
    assert ex.extras["leg_tv"].shape == (3, 8, 8)
    ex2 = get_explainer("leg_tv", box_classifier, path=(0.3, 0.1), k_l=0.1, **kw).explain(x, 3)
    assert torch.equal(ex.map, ex2.map)
    ex3 = get_explainer("leg", box_classifier, **{**kw, "seed": 2}).explain(x, 3)
    assert not torch.equal(get_explainer("leg", box_classifier, **kw).explain(x, 3).map, ex3.map)
    # sparser with larger K_L
    tv = lambda g: float((g[:, 1:] - g[:, :-1]).abs().sum() + (g[:, :, 1:] - g[:, :, :-1]).abs().sum())  # noqa: E731
    assert tv(ex.extras["path"][0.3]) <= tv(ex.extras["path"][0.1]) + 1e-6


def test_quantize_trunc_and_per_channel(box_classifier):
    from saliency_core.methods.leg import LEG

    x = torch.full((1, 3, 32, 32), 100 / 255)
    leg = LEG(box_classifier, n_samples=4, grid=8, quantize="trunc", sigma=0.05)
    z = sample_grid_noise(4, 8, 0.05, generator=torch.Generator().manual_seed(0)).float()
    xb = leg._perturbed(x, z, 1)
    k = xb * 255
    assert torch.allclose(k, torch.round(k), atol=1e-4)
    assert torch.equal(xb[:, 0], x.expand(4, -1, -1, -1)[:, 0])  # only channel 1 moves
    ex = get_explainer("leg", box_classifier, n_samples=20, grid=8, per_channel=False).explain(x, 3)
    assert ex.extras["leg"].shape == (1, 8, 8) and ex.n_forward == 21


def test_bad_inputs(box_classifier):
    with pytest.raises(ValueError, match="quantize"):
        get_explainer("leg", box_classifier, quantize="round")
    with pytest.raises(ValueError, match="covariance"):
        get_explainer("leg", box_classifier, covariance="diag")
    with pytest.raises(ValueError, match="k_l"):
        get_explainer("leg_tv", box_classifier, k_l=2.0)


def test_kernel_shap_closed_form_wls_exact_on_linear_model(box_classifier):
    """Logit 3 is linear in the pixels: KernelSHAP's WLS recovers each superpixel's exact contribution."""
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ex = get_explainer("kernel_shap", box_classifier, n_samples=200, superpixels="slic", n_segments=12,
                       fill="white").explain(x, 3)
    seg = ex.extras["segments"]
    inbox = torch.zeros(32, 32, dtype=torch.bool)
    inbox[8:24, 8:24] = True
    for k in range(int(seg.max()) + 1):
        sel = (seg == k) & inbox
        expect = 10.0 / (3 * 256) * float((x[0][:, sel] - 1.0).sum())
        assert float(ex.map[seg == k][0]) == pytest.approx(expect, abs=1e-4)
