"""Compiled EP operators (saliency_core.kernels) against the reference evaluations they replace.

The smooth-max generator equals the softmax formula to float32 rounding (values and gradients, several
geometries, parameters exactly 0 on whole rows); the pyramid interpolator and the area loss equal the ATen ones
bit for bit (ties and NaN included); the radix select equals ``np.partition``; the exp2 polynomial is within one
float32 ulp.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_perturbations_ep import _reference_smoothmax

from saliency_core import kernels
from saliency_core.kernels import FastPyramidInterpolator, FastSmoothMaskGenerator, vecsort_area_loss
from saliency_core.perturbations import (
    PyramidInterpolator,
    SmoothMaskGenerator,
    blur_pyramid,
)
from saliency_core.perturbations import vecsort_area_loss as vecsort_sorted


def _run(gen, p, w):
    q = p.clone().requires_grad_(True)
    full, crop = gen(q)
    (full * w).sum().backward()
    return full.detach(), crop.detach(), q.grad


GEOMETRIES = [(224, {}), ((30, 41), dict(step=4, sigma=5.0)), ((17, 64), dict(step=2, sigma=9.0)),
              ((9, 9), dict(step=1, sigma=2.0)), ((40, 33), dict(step=3, sigma=2.0, margin=5, coldness=3.0))]


@pytest.mark.parametrize("shape,kw", GEOMETRIES)
def test_compiled_smooth_mask_equals_the_formula_to_float32_rounding(shape, kw):
    # asymmetric windows both ways, non-square, step 1, small margin; some parameters exactly 0 or 1, one row all 0
    fast, ref = FastSmoothMaskGenerator(shape, **kw), SmoothMaskGenerator(shape, **kw)
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(2, 1, *ref.param_shape, generator=gen)
    p[p > 0.8] = 1.0
    p[p < 0.2] = 0.0
    p[0, 0, 1] = 0.0
    w = torch.randn(2, 1, *ref.full_shape, generator=gen)
    full, crop, grad = _run(fast, p, w)
    assert full.dtype == torch.float32 and full.shape == (2, 1, *ref.full_shape)
    mg = ref.margin
    assert torch.equal(crop, full[..., mg : mg + fast.shape[0], mg : mg + fast.shape[1]])
    truth, _, grad64 = _run(ref, p.double(), w.double())
    assert float((full.double() - truth).abs().max()) < 2e-6  # as the ATen fold's float32 error
    scale = float(grad64.abs().max())
    assert float((grad.double() - grad64).abs().max()) < 2e-5 * max(1.0, scale)
    torch.testing.assert_close(truth, _reference_smoothmax(ref, p.double()), atol=1e-12, rtol=1e-12)
    assert (grad[p == 0] != 0).any()  # zero parameters still get their gradient (k·b terms)


def test_compiled_smooth_mask_is_deterministic_and_close_to_the_aten_fold():
    fast, ref = FastSmoothMaskGenerator(224), SmoothMaskGenerator(224)
    gen = torch.Generator().manual_seed(5)
    p = torch.rand(3, 1, 32, 32, generator=gen)
    w = torch.randn(3, 1, 260, 260, generator=gen)
    a, b = _run(fast, p, w), _run(fast, p, w)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    c = _run(ref, p, w)
    torch.testing.assert_close(a[0], c[0], atol=2e-6, rtol=0)
    torch.testing.assert_close(a[2], c[2], atol=5e-4, rtol=1e-4)  # 1 + β(v − out) cancels at β = 20


def test_compiled_smooth_mask_falls_back_where_it_does_not_apply():
    fast, ref = FastSmoothMaskGenerator(20, step=3, sigma=4.0), SmoothMaskGenerator(20, step=3, sigma=4.0)
    p64 = torch.rand(2, 1, *ref.param_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(fast(p64)[0], ref(p64)[0])  # float64: the ATen fold itself
    big = 5.0 * p64.float()  # β·max|m̄| could overflow exp: the shifted per-block evaluation
    assert torch.equal(fast(big)[0], ref(big)[0])
    with pytest.raises(ValueError, match=r"params has shape \(1, 1, 6, 7\); accepted values: \(K, 1, 7, 7\)"):
        fast(torch.ones(1, 1, 6, 7))


def test_exp2_polynomial_is_within_one_float32_ulp():
    y = np.linspace(-64, 64, 200_001).astype(np.float32)
    out = np.empty_like(y)
    kernels._exp2_array(y, out)
    truth = np.exp2(y.astype(np.float64))
    assert np.max(np.abs(out - truth) / truth) < 1.2e-7
    assert out[np.searchsorted(y, 0.0)] == 1.0 and np.all(np.diff(out) >= 0)


def test_compiled_pyramid_interpolation_is_bitwise_the_aten_one():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 24, 30, generator=gen)
    pyr = blur_pyramid(x, levels=8, sigma_max=5.0)
    ref, fast = PyramidInterpolator(pyr), FastPyramidInterpolator(pyr)
    m = torch.rand(3, 1, 24, 30, generator=gen)
    m[m > 0.8] = 1.0
    m[m < 0.1] = 0.0
    m[0, 0, 0, :3] = torch.tensor([-0.5, 1.5, 0.999999])  # outside [0, 1]: clamped level, extrapolated t
    g = torch.randn(3, 3, 24, 30, generator=gen)
    for flip in (False, True):
        a, b = m.clone().requires_grad_(True), m.clone().requires_grad_(True)
        ya, yb = fast(a, flip=flip), ref(b, flip=flip)
        assert torch.equal(ya, yb)
        ya.backward(g)
        yb.backward(g)
        assert torch.equal(a.grad, b.grad)
    m64 = m.double()
    pyr64 = FastPyramidInterpolator(pyr.double())
    assert torch.equal(pyr64(m64), PyramidInterpolator(pyr.double())(m64))  # float64: the ATen path


@settings(max_examples=80, deadline=None)
@given(n=st.integers(4, 3000), k=st.integers(1, 3), levels=st.sampled_from([0, 2, 4, 9]), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_area_loss_equals_the_sorting_one_bitwise(n, k, levels, seed, dtype):
    # the same reference values on every entry, tied ones included (ties straddling the boundary go to torch.sort,
    # whose order decides which tied entries count as inside the area, as in the official code)
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(k, n, generator=gen, dtype=dtype)
    if levels:  # quantised values: many ties, also straddling the area boundary
        m = (m * levels).round() / levels
    if seed % 5 == 0:
        m[0, :: max(1, n // 7)] = float("nan")
    areas = (torch.rand(k, generator=gen) * 0.98 + 0.01).tolist()
    w = torch.rand(k, generator=gen, dtype=dtype)
    a, b = m.clone().requires_grad_(True), m.clone().requires_grad_(True)
    la, lb = vecsort_area_loss(a, areas), vecsort_sorted(b, areas)
    (torch.nan_to_num(la) * w).sum().backward()
    (torch.nan_to_num(lb) * w).sum().backward()
    assert torch.equal(la, lb) or (torch.isnan(la) == torch.isnan(lb)).all()
    assert torch.equal(torch.nan_to_num(a.grad), torch.nan_to_num(b.grad))


def test_area_loss_arguments():
    m = torch.rand(2, 50)
    with pytest.raises(ValueError, match="reduction"):
        vecsort_area_loss(m, [0.1, 0.2], reduction="max")
    with pytest.raises(ValueError, match="areas has 3 entries; accepted values: 1 or 2"):
        vecsort_area_loss(m, [0.1, 0.2, 0.3])
    torch.testing.assert_close(vecsort_area_loss(m, [0.1]), vecsort_sorted(m, [0.1]))
    assert torch.equal(vecsort_area_loss(m, [0.1, 0.2], "sum"), vecsort_sorted(m, [0.1, 0.2], "sum"))
    # areas whose reference is all ones or all zeros
    assert torch.equal(vecsort_area_loss(m, [1.0, 0.0]), vecsort_sorted(m, [1.0, 0.0]))


@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=300), seed=st.integers(0, 1000))
def test_radix_select_equals_np_partition(data, seed):
    v = np.array(data, dtype=np.float32)
    kth = seed % len(v)
    hist = np.empty(1 << 16, dtype=np.int64)
    assert kernels._kth_smallest_float32(v, kth, hist) == np.partition(v, kth)[kth]


def test_ep_runs_on_the_compiled_operators():
    # the EP method uses the compiled generator, interpolator and area loss (the benchmark measures them)
    import saliency_core.methods.extremal as ep

    assert ep.FastSmoothMaskGenerator is FastSmoothMaskGenerator and ep.vecsort_area_loss is vecsort_area_loss
    assert ep.FastPyramidInterpolator is FastPyramidInterpolator
