"""EP operators: blur/fade pyramids, per-pixel pyramid interpolation, smooth-max mask family, vecsort area term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from saliency_core.perturbations import (
    PyramidInterpolator,
    SmoothMaskGenerator,
    area_reference,
    blur_pyramid,
    fade_pyramid,
    gaussian_blur,
    pyramid_apply,
    vecsort_area_loss,
)


def test_blur_pyramid_endpoints_and_sigmas():
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    p = blur_pyramid(x, levels=8, sigma_max=20.0)
    assert p.shape == (8, 1, 3, 40, 40)
    assert torch.equal(p[-1], x)  # top level = the clean image
    torch.testing.assert_close(p[0], gaussian_blur(x, 20.0, pad="zeros"))
    torch.testing.assert_close(p[3], gaussian_blur(x, (1 - 3 / 7) * 20.0, pad="zeros"))
    # zero padding in normalised space: a constant image fades toward 0 at the border, stays ~constant inside
    c = torch.ones(1, 1, 200, 200)
    b = blur_pyramid(c, sigma_max=20.0)[0, 0, 0]
    assert float(b[100, 100]) == pytest.approx(1.0, abs=1e-4)
    assert float(b[0, 0]) < 0.3


def test_fade_pyramid_endpoints():
    x = torch.randn(1, 3, 8, 8)
    p = fade_pyramid(x, 8)
    assert torch.equal(p[0], torch.zeros_like(x))
    torch.testing.assert_close(p[-1], x)
    torch.testing.assert_close(p[2], x * 2 / 7)


def test_pyramid_apply_hits_levels_and_interpolates():
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    p = blur_pyramid(x, levels=8, sigma_max=5.0)
    for lvl in (0, 3, 7):
        m = torch.full((1, 1, 16, 16), lvl / 7)
        torch.testing.assert_close(pyramid_apply(p, m), p[lvl, 0][None], atol=1e-5, rtol=0)
    m = torch.full((1, 1, 16, 16), 2.5 / 7)
    torch.testing.assert_close(pyramid_apply(p, m), 0.5 * (p[2, 0] + p[3, 0])[None], atol=1e-5, rtol=0)
    # per-pixel: two halves at two levels
    m = torch.zeros(1, 1, 16, 16)
    m[..., 8:] = 1.0
    y = pyramid_apply(p, m)
    torch.testing.assert_close(y[..., :8], p[0, 0][None][..., :8])
    torch.testing.assert_close(y[..., 8:], x[..., 8:])
    # gradient reaches the mask, batched over K masks
    mk = torch.rand(3, 1, 16, 16, requires_grad=True)
    pyramid_apply(p, mk).sum().backward()
    assert mk.grad is not None and mk.grad.shape == (3, 1, 16, 16)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(4, 300), a=st.floats(0.01, 0.99), seed=st.integers(0, 10_000))
def test_vecsort_zero_exactly_on_right_count_of_ones(n, a, seed):
    n_ones = n - math.floor(n * (1 - a))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    m = torch.zeros(n)
    m[perm[:n_ones]] = 1.0
    assert float(vecsort_area_loss(m[None], [a])[0]) == 0.0
    assert float(vecsort_area_loss(m[None], [a], reduction="sum")[0]) == 0.0
    if n_ones < n:  # one extra one costs exactly 1 (sum) or 1/n (mean)
        m2 = m.clone()
        m2[perm[n_ones]] = 1.0
        assert float(vecsort_area_loss(m2[None], [a], reduction="sum")[0]) == pytest.approx(1.0)
        assert float(vecsort_area_loss(m2[None], [a])[0]) == pytest.approx(1.0 / n)


def test_area_reference_and_batched_loss():
    r = area_reference(10, [0.1, 0.35])
    assert r.tolist()[0] == [0] * 9 + [1] and r[1].sum() == 10 - math.floor(10 * 0.65)
    m = torch.rand(2, 1, 5, 5)
    both = vecsort_area_loss(m, [0.1, 0.5])
    torch.testing.assert_close(both, torch.cat([vecsort_area_loss(m[:1], [0.1]), vecsort_area_loss(m[1:], [0.5])]))
    with pytest.raises(ValueError, match="areas"):
        vecsort_area_loss(m, [0.1, 0.2, 0.3])


def test_smooth_mask_geometry_224():
    g = SmoothMaskGenerator(224)
    assert g.param_shape == (32, 32) and g.full_shape == (260, 260) and g.padding == 7 and g.radius == 4
    full, crop = g(torch.ones(2, 1, 32, 32))
    assert full.shape == (2, 1, 260, 260) and crop.shape == (2, 1, 224, 224)
    assert float(crop.min()) > 0.95 and float(full.max()) <= 1.0
    torch.testing.assert_close(crop, full[..., 21:245, 21:245])
    # one parameter at grid (16, 9) → a blob centred on image pixel (7·16, 7·9), value 1 within σ/2 of it
    p = torch.zeros(1, 1, 32, 32)
    p[0, 0, 16, 9] = 1.0
    _, c = g(p)
    assert float(c[0, 0, 112, 63]) == pytest.approx(1.0, abs=1e-5)
    # 30 px away: the only non-zero tap has w = k(30/21); the 80 zero taps weigh e^0 in the smooth max
    w = math.exp(-2 * (30 / 21 - 0.5) ** 2)
    assert float(c[0, 0, 112, 63 + 30]) == pytest.approx(w * math.exp(20 * w) / (math.exp(20 * w) + 80), rel=1e-4)
    assert float(c[0, 0, 0, 0]) < 1e-6
    with pytest.raises(ValueError, match="params"):
        g(torch.ones(1, 1, 31, 32))


def _reference_smoothmax(g: SmoothMaskGenerator, p: torch.Tensor) -> torch.Tensor:
    """Plain-autograd formula (softmax over taps) to check the hand-written backward."""
    t = 2 * g.radius + 1
    by, bx = g.blocks
    cols = F.unfold(p, t, padding=g.padding).view(p.shape[0], t * t, by, 1, bx, 1)
    v = cols * g.weight.to(p).view(1, t * t, 1, g.step, 1, g.step)
    out = (v * torch.softmax(g.coldness * v, dim=1)).sum(1).reshape(p.shape[0], 1, by * g.step, bx * g.step)
    return out[..., : g.full_shape[0], : g.full_shape[1]].clamp(0, 1)


def test_smooth_mask_matches_reference_and_gradcheck():
    g = SmoothMaskGenerator(20, step=3, sigma=4.0)
    p = torch.rand(2, 1, *g.param_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p.requires_grad_(True)
    full, _ = g(p)
    torch.testing.assert_close(full, _reference_smoothmax(g, p))
    w = torch.rand_like(full)
    (ga,) = torch.autograd.grad((full * w).sum(), p)
    (gb,) = torch.autograd.grad((_reference_smoothmax(g, p) * w).sum(), p)
    torch.testing.assert_close(ga, gb)
    assert torch.autograd.gradcheck(lambda q: g(q)[0], (p,))


def test_smooth_mask_chunking_does_not_change_the_result(monkeypatch):
    g = SmoothMaskGenerator(20, step=3, sigma=4.0)
    p = torch.rand(3, 1, *g.param_shape, generator=torch.Generator().manual_seed(2))
    p[p > 0.8] = 1.0
    w = torch.randn(3, 1, *g.full_shape, generator=torch.Generator().manual_seed(3))

    def run(call):
        q = p.clone().requires_grad_(True)
        full = call(q)
        (full * w).sum().backward()
        return full.detach(), q.grad

    fold = [run(lambda q: g(q)[0])]
    for rows in (1, 3):  # one parameter row per chunk; chunks of 3 rows with a shorter last one (7 rows)
        monkeypatch.setattr(SmoothMaskGenerator, "fold_rows", rows)
        fold.append(run(lambda q: g(q)[0]))
    for other in fold[1:]:
        # the same terms, added in another order (and exp2 of a vector's tail elements may differ in the last bit)
        torch.testing.assert_close(other[0], fold[0][0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(other[1], fold[0][1], atol=1e-4, rtol=1e-4)  # cancellation, see below
    # the per-block evaluation (log-sum-exp shifted): one chunk, then 7 blocks per chunk with a partial last one
    blocks = run(lambda q: g._blockwise(q).clamp(0, 1))
    monkeypatch.setattr(SmoothMaskGenerator, "chunk_elements", 7 * g.step**2 * (2 * g.radius + 1) ** 2)
    many = run(lambda q: g._blockwise(q).clamp(0, 1))
    torch.testing.assert_close(many[0], blocks[0], atol=0, rtol=0)
    torch.testing.assert_close(many[1], blocks[1], atol=0, rtol=0)
    # both evaluations and the softmax formula agree to float32 rounding
    torch.testing.assert_close(fold[0][0], _reference_smoothmax(g, p))
    torch.testing.assert_close(blocks[0], fold[0][0])
    # gradients: 1 + β(v − out) cancels at β = 20; each is ~2e-5 from the float64 value here
    torch.testing.assert_close(blocks[1], fold[0][1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("shape,kw", [((30, 41), dict(step=4, sigma=5.0)), ((17, 64), dict(step=2, sigma=9.0)),
                                      ((9, 9), dict(step=1, sigma=2.0)),
                                      ((40, 33), dict(step=3, sigma=2.0, margin=5, coldness=3.0))])
def test_smooth_mask_fold_matches_reference_on_other_geometries(shape, kw):
    # asymmetric windows both ways (d_hi > −d_lo and d_hi < −d_lo), non-square, step 1, small margin
    g = SmoothMaskGenerator(shape, **kw)
    p = torch.rand(2, 1, *g.param_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    p.requires_grad_(True)
    full, crop = g(p)
    ref = _reference_smoothmax(g, p)
    torch.testing.assert_close(full, ref, atol=1e-12, rtol=1e-12)
    mg = g.margin
    assert torch.equal(crop, full[..., mg : mg + shape[0], mg : mg + shape[1]])
    w = torch.randn_like(full)
    (ga,) = torch.autograd.grad((full * w).sum(), p)
    (gb,) = torch.autograd.grad((ref * w).sum(), p)
    torch.testing.assert_close(ga, gb, atol=1e-10, rtol=1e-10)


def test_smooth_mask_float32_error_is_that_of_the_block_evaluation():
    # EP's setting at 224²: both float32 evaluations are within the same distance of the float64 truth
    g = SmoothMaskGenerator(224)
    p = torch.rand(2, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    p[p > 0.7] = 1.0
    truth = g(p)[0]
    fold = g(p.float())[0].double()
    blocks = g._blockwise(p.float()).clamp(0, 1).double()
    err_fold, err_blocks = (fold - truth).abs().max(), (blocks - truth).abs().max()
    assert err_fold < 2e-6 and err_blocks < 2e-6


def _sort_vecsort(m: torch.Tensor, areas) -> torch.Tensor:
    """The sort-based formula mean((sort(m) − r_a)²) (the official code's)."""
    flat = m.reshape(m.shape[0], -1)
    return ((torch.sort(flat, dim=1).values - area_reference(flat.shape[1], areas, flat.dtype)) ** 2).mean(1)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(4, 3000), k=st.integers(1, 3), levels=st.sampled_from([0, 2, 4, 9]), seed=st.integers(0, 10_000))
def test_vecsort_selection_matches_sort_bitwise_with_ties(n, k, levels, seed):
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(k, n, generator=gen)
    if levels:  # quantised values: many ties, also straddling the area boundary
        m = (m * levels).round() / levels
    areas = (torch.rand(k, generator=gen) * 0.98 + 0.01).tolist()
    w = torch.rand(k, generator=gen)
    a, b = m.clone().requires_grad_(True), m.clone().requires_grad_(True)
    la, lb = vecsort_area_loss(a, areas), _sort_vecsort(b, areas)
    (la * w).sum().backward()
    (lb * w).sum().backward()
    assert torch.equal(a.grad, b.grad)  # same reference value on every entry, tied ones included
    torch.testing.assert_close(la, lb, atol=1e-6, rtol=1e-6)  # only the summation order differs


def test_pyramid_interpolator_equals_pyramid_apply_bitwise():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 24, 30, generator=gen)
    p = blur_pyramid(x, levels=8, sigma_max=5.0)
    interp = PyramidInterpolator(p)
    m = torch.rand(3, 1, 24, 30, generator=gen)
    m[m > 0.8] = 1.0
    m[m < 0.1] = 0.0
    g = torch.randn(3, 3, 24, 30, generator=gen)
    for flip in (False, True):
        a, b = m.clone().requires_grad_(True), m.clone().requires_grad_(True)
        ya = interp(a, flip=flip)
        yb = pyramid_apply(p, b)
        if flip:
            yb = torch.flip(yb, dims=(3,))
        assert torch.equal(ya, yb)
        ya.backward(g)
        yb.backward(g)
        assert torch.equal(a.grad, b.grad)
    with pytest.raises(ValueError, match="ONE image"):
        PyramidInterpolator(torch.zeros(8, 2, 3, 4, 4))


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 5.0), (torch.float64, 30.0)])
def test_smooth_mask_large_parameters_take_the_shifted_path(dtype, scale):
    # β·max(params) above ½·log(finfo.max): exp would overflow without the shift, which must then be applied
    g = SmoothMaskGenerator(20, step=3, sigma=4.0)
    p = scale * torch.rand(2, 1, *g.param_shape, dtype=dtype, generator=torch.Generator().manual_seed(4))
    assert g.coldness * float(p.max()) > 0.5 * math.log(torch.finfo(dtype).max)
    p.requires_grad_(True)
    full, _ = g(p)
    ref = _reference_smoothmax(g, p)
    assert torch.isfinite(full).all()
    torch.testing.assert_close(full, ref, rtol=1e-5, atol=1e-4)  # outputs up to `scale`, float32 rounding
    w = torch.rand_like(full)
    (ga,) = torch.autograd.grad((full * w).sum(), p)
    (gb,) = torch.autograd.grad((ref * w).sum(), p)
    assert torch.isfinite(ga).all()
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-4)
