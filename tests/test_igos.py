"""I-GOS / iGOS++: line search, masks, BTV, the batched integrated gradient, exactness of the work savings,
ablation switches, the step rule declared once, no per-call state on the explainer."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from conftest import BoxMeanNet, make_classifier
from torch import nn

from saliency_core import get_explainer
from saliency_core.methods.igos import (
    GRAD,
    IGOS,
    TRIAL,
    IGOSPlusPlus,
    IntegratedMaskOptimizer,
    _randn,
    _runs,
    noise_stream,
)
from saliency_core.perturbations import (
    bilateral_tv,
    bilateral_weights,
    blur_baseline,
    compose,
    igospp_btv,
    tv_norm,
    upsample_mask,
)

FAST = {"size": 8, "iterations": 4, "ig_steps": 4}


@pytest.fixture
def box():
    """Box model with a non-saturated softmax (p ≈ 0.7 on the image below) and an image bright in the box."""
    clf = make_classifier(BoxMeanNet(scale=3.0), size=32)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 8:24, 8:24] = 1.0
    return clf, x


class TinyConvNet(nn.Module):
    """A small non-linear classifier (fixed random weights) so that path points and trial points differ."""

    def __init__(self, scale: float = 0.3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 5, stride=2)
        self.fc = nn.Linear(6 * 4 * 4, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(z))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))


@pytest.fixture
def tiny():
    """TinyConvNet (p ≈ 0.54 for its top class) on an image with two bright patches; with the weak
    regularisers of ``WEAK`` the masks move all the way to 0 within a few iterations."""
    clf = make_classifier(TinyConvNet(), size=32, n_classes=10)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 8:24, 8:24] = 1.0
    x[:, 0, 4:12, 20:30] = 0.7
    return clf, x, clf.top1(x)


WEAK = {"l1": 0.1, "tv": 0.5}


# ------------------------------------------------------------------------------------------------ references
def _phi(z, zb, kind, m):
    return z * m + zb * (1 - m) if kind == "del" else zb * m + z * (1 - m)


def reference_igospp(clf, x, target, size, iterations, n, l1=1.0, tv=20.0, alpha0=1000.0, noise=0.2, seed=0,
                     c=1e-4, decay=0.2, floor=1e-5):
    """iGOS++ written out plainly: one autograd graph per gradient, every trial point evaluated in full, one
    after the other; noise from the same per-(iteration, evaluation, term) streams; base = gradient-pass loss."""
    z, zb = clf.normalize(x), clf.normalize(blur_baseline(x, 51, 50.0))
    hw = tuple(z.shape[-2:])
    terms = (("del", "x"), ("ins", "y"), ("del", "xy"), ("ins", "xy"))

    def reg(m):
        return l1 * (1 - m).abs().mean() + tv * igospp_btv(z, m).sum()

    def scores(mx, my, key):
        ups = {"x": upsample_mask(mx, hw, align_corners=True), "y": upsample_mask(my, hw, align_corners=True)}
        ups["xy"] = ups["x"] * ups["y"]
        out = []
        for t, (kind, w) in enumerate(terms):
            gen = noise_stream(seed, *key, t)
            imgs = [_phi(z, zb, kind, k / n * ups[w]) + torch.randn((1, 3, *hw), generator=gen) * noise
                    for k in range(1, n + 1)]
            out.append(clf.net(torch.cat(imgs)).softmax(1)[:, target].mean())
        return out

    mx, my = torch.ones(1, 1, size, size), torch.ones(1, 1, size, size)
    steps = []
    for i in range(iterations):
        a, b = mx.clone().requires_grad_(True), my.clone().requires_grad_(True)
        s = scores(a, b, (i, GRAD, 0))
        ga, gb = torch.autograd.grad(0.5 * (s[0] - s[1] + s[2] - s[3]) + reg(a * b), [a, b])
        base = float((s[0] - s[1] + s[2] - s[3] + reg(a * b)).detach())
        gsq = float((ga * ga).sum() + (gb * gb).sum())
        alpha, j = alpha0, 0
        while alpha >= floor:
            ca, cb = (mx - alpha * ga).clamp(0, 1), (my - alpha * gb).clamp(0, 1)
            with torch.no_grad():
                s = scores(ca, cb, (i, TRIAL, j))
                loss = float(s[0] - s[1] + s[2] - s[3] + reg(ca * cb))
            if loss <= base - c * alpha * gsq:
                break
            alpha, j = alpha * decay, j + 1
        mx, my = (mx - alpha * ga).clamp(0, 1), (my - alpha * gb).clamp(0, 1)
        steps.append(alpha)
    return mx, my, steps


def reference_igos_original(clf, x, target, size, iterations, n, l1=1.0, tv=20.0, alpha0=200.0, noise=0.2, seed=0,
                            c=1e-4, decay=0.2, floor=1e-5):
    """The original I-GOS demo's loop: noisy integrated gradient, noise-free single-image line-search loss with
    a fresh forward at every point, adaptive L1 at the end of iterations ⌊T/2⌋ and ⌊T/1.25⌋ from curve2[i]."""
    z, zb = clf.normalize(x), clf.normalize(blur_baseline(x, 51, 50.0))
    hw = tuple(z.shape[-2:])

    def up(m):
        return upsample_mask(m, hw, align_corners=True)

    def reg(m, l1_):
        return l1_ * (1 - m).abs().mean() + tv * tv_norm(m, 2.0).sum()

    @torch.no_grad()
    def p_clean(m):
        return float(clf.net(_phi(z, zb, "del", up(m))).softmax(1)[0, target])

    mask = torch.ones(1, 1, size, size)
    curve2 = [p_clean(mask)] * 2
    steps = []
    for i in range(iterations):
        a = mask.clone().requires_grad_(True)
        gen = noise_stream(seed, i, GRAD, 0, 0)
        imgs = [_phi(z, zb, "del", k / n * up(a)) + torch.randn((1, 3, *hw), generator=gen) * noise
                for k in range(1, n + 1)]
        s = clf.net(torch.cat(imgs)).softmax(1)[:, target].mean()
        (g,) = torch.autograd.grad(s + reg(a, l1), [a])
        base = p_clean(mask) + float(reg(mask, l1))
        gsq = float((g * g).sum())
        alpha = alpha0
        while alpha >= floor:
            cand = (mask - alpha * g).clamp(0, 1)
            if p_clean(cand) + float(reg(cand, l1)) <= base - c * alpha * gsq:
                break
            alpha *= decay
        mask = (mask - alpha * g).clamp(0, 1)
        steps.append(alpha)
        curve2.append(p_clean(mask))
        if iterations > 3:
            if i == int(iterations / 2):
                if abs(curve2[0] - curve2[i]) <= 1e-3:
                    l1 /= 10
            elif i == int(iterations / 1.25) and abs(curve2[0] - curve2[i]) <= 1e-2:
                l1 /= 5
    return mask, steps, l1


# ------------------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("runtime", [{}, {"batch_size": 3, "ls_batch": 3}, {"batch_size": 64, "ls_bounds": False}])
def test_igospp_equals_the_plain_reference_implementation(tiny, runtime):
    """The work savings (gradient-pass loss as base, bound-based early rejection, chunking that spans terms and
    trial points) leave the iterates unchanged: same masks and steps as the plain loop at a fixed seed."""
    clf, x, target = tiny
    kw = {"size": 4, "iterations": 4, "ig_steps": 3, "seed": 5}
    ex = IGOSPlusPlus(clf, **kw, **WEAK, **runtime).explain(x, target)
    rx, ry, steps = reference_igospp(clf, x, target, 4, 4, 3, seed=5, **WEAK)
    assert ex.extras["step"] == pytest.approx(steps, rel=1e-6)
    torch.testing.assert_close(ex.extras["mask_x"], rx[0, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ex.extras["mask_y"], ry[0, 0], atol=1e-5, rtol=1e-5)
    assert any(a < 1000.0 for a in steps)  # the search backtracked, so trial points were rejected
    assert float(rx.min()) < 0.5 and float(ry.min()) < 0.5  # and the masks moved


def test_igos_original_equals_the_plain_reference_implementation(tiny):
    clf, x, target = tiny
    ex = IGOS(clf, size=4, iterations=5, ig_steps=3, seed=2, batch_size=2, l1=0.1, tv=0.5).explain(x, target)
    mask, steps, l1 = reference_igos_original(clf, x, target, 4, 5, 3, seed=2, l1=0.1, tv=0.5)
    assert ex.extras["step"] == pytest.approx(steps, rel=1e-6)
    torch.testing.assert_close(ex.extras["mask"], mask[0, 0], atol=1e-5, rtol=1e-5)
    assert ex.extras["final_l1"] == pytest.approx(l1)
    assert len(set(steps)) > 1 and float(mask.min()) < 0.5
    assert ex.n_forward - ex.n_backward < 5 + sum(ex.extras["ls_trials"])  # fewer clean passes than the demo


def test_bounds_save_model_passes_without_changing_the_result(tiny):
    clf, x, target = tiny
    kw = {"size": 4, "iterations": 4, "ig_steps": 4, "batch_size": 2, **WEAK}
    a = IGOSPlusPlus(clf, **kw).explain(x, target)
    b = IGOSPlusPlus(clf, ls_bounds=False, **kw).explain(x, target)
    torch.testing.assert_close(a.map, b.map)
    assert a.n_backward == b.n_backward == 4 * 4 * 4
    assert sum(a.extras["ls_images"]) < sum(b.extras["ls_images"])
    # without bounds every tried point costs all its images; the gradient pass also supplies the base loss
    assert b.extras["ls_images"] == [t * 4 * 4 for t in b.extras["ls_trials"]]
    assert a.n_forward == a.n_backward + sum(a.extras["ls_images"])


@pytest.mark.parametrize("kind_term", [0, 1])
@pytest.mark.parametrize("igos_noise", ["all", "official"])
def test_composed_images_equal_the_plain_formula_bit_for_bit(box, kind_term, igos_noise):
    """φ written in place into the reused buffer, with one noise draw per run of path points, is exactly the plain
    per-image code: z·m + Ĩ·(1 − m) (insertion: swapped) plus that image's own draw × noise."""
    clf, x = box
    e = IGOSPlusPlus(clf, size=4, mode="naive", igos_noise=igos_noise, batch_size=8)  # terms: del x, ins x
    c = e._start(x, 3)
    up = upsample_mask(torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(3)), (32, 32),
                       align_corners=True)
    ks, n = range(2, 7), 9
    e._images(c, kind_term, up, ks, n, True, noise_stream(1, 0, TRIAL, 2, kind_term), c.images[: len(ks)])
    gen = noise_stream(1, 0, TRIAL, 2, kind_term)
    plain = []
    for k in ks:
        m = torch.tensor([k / n]).view(1, 1, 1, 1) * up
        if igos_noise == "all":
            draw = torch.randn((1, 3, 32, 32), generator=gen) * 0.2
        else:
            draw = torch.zeros(1, 3, 32, 32)
            draw[:, 0] = torch.randn((1, 32, 32), generator=gen) * (2 * 0.2)
        plain.append(_phi(c.z, c.zb, ("del", "ins")[kind_term], m) + draw)
    assert torch.equal(c.images[: len(ks)], torch.cat(plain))


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 5, 5), (7, 16)])
def test_one_draw_of_n_noise_images_equals_n_draws_of_one(shape):
    """What makes the batched noise exact: torch's CPU normal fill (one uniform per element, blocks of 16); sizes
    that are not a multiple of 16 fall back to one draw per image."""
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    out = torch.empty(5, *shape)
    _randn(g1, shape, 3, out[:3])
    _randn(g1, shape, 2, out[3:])  # a stream continues across calls
    ref = torch.cat([torch.randn((1, *shape), generator=g2) for _ in range(5)])
    assert torch.equal(out, ref)


def test_compose_in_place_is_bit_identical():
    g = torch.Generator().manual_seed(0)
    z, zb = torch.randn(1, 3, 20, 20, generator=g), torch.randn(1, 3, 20, 20, generator=g)
    m = torch.rand(4, 1, 1, 1, generator=g) * torch.rand(1, 1, 20, 20, generator=g)
    out = torch.full((4, 3, 20, 20), float("nan"))
    assert compose(z, zb, m, out=out) is out
    assert torch.equal(out, z * m + zb * (1.0 - m)) and torch.equal(out, compose(z, zb, m))


def test_runs_group_consecutive_path_points():
    assert _runs([(0, 3), (0, 4), (1, 1), (1, 2), (1, 4)]) == [(0, range(3, 5)), (1, range(1, 3)), (1, range(4, 5))]


# ------------------------------------------------------------------------------------------------ line search
@pytest.mark.parametrize("cls,kw", [(IGOSPlusPlus, {"mode": "deletion"}), (IGOSPlusPlus, {"mode": "naive"}),
                                    (IGOSPlusPlus, {}), (IGOS, {"variant": "igos_pp"})])
def test_line_search_never_increases_the_loss_and_respects_armijo(box, cls, kw):
    """Without noise the loss at the accepted step is the next iteration's base loss: a non-increasing sequence."""
    clf, x = box
    ex = cls(clf, noise=0.0, **FAST, **kw).explain(x, target=3)
    loss, after, step, acc, gsq = (ex.extras[k] for k in ("loss", "loss_after", "step", "accepted", "grad_sq"))
    assert any(acc)
    for i in range(len(loss) - 1):
        if acc[i]:
            assert after[i] <= loss[i] - 1e-4 * step[i] * gsq[i] + 1e-9
            assert loss[i + 1] == pytest.approx(after[i], rel=1e-5, abs=1e-6)
        assert loss[i + 1] <= loss[i] + 1e-6


def test_original_igos_clean_line_search_respects_armijo(box):
    clf, x = box
    ex = IGOS(clf, **FAST).explain(x, target=3)
    loss, after, acc, step, gsq = (ex.extras[k] for k in ("loss", "loss_after", "accepted", "step", "grad_sq"))
    assert any(acc)
    for i in range(len(loss)):
        if acc[i]:
            assert after[i] <= loss[i] - 1e-4 * step[i] * gsq[i] + 1e-9
        if i + 1 < len(loss) and acc[i] and ex.extras["l1"][i + 1] == ex.extras["l1"][i]:
            assert loss[i + 1] == pytest.approx(after[i], abs=1e-6)  # the accepted point is the next base
    assert ex.extras["p_del"][-1] < 0.7  # deletion probability went down from p(x) ≈ 0.72


# ------------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("name,kw", [("igos", {}), ("igos_pp", {}), ("igos_pp", {"mode": "insertion"}),
                                     ("igos_pp", {"line_search": False, "fixed_step": 1e4})])
def test_masks_stay_in_unit_interval_and_map_is_one_minus_upsampled_mask(box, name, kw):
    clf, x = box
    ex = get_explainer(name, clf, **FAST, **kw).explain(x, target=3)
    for k in ("mask", "mask_x", "mask_y", "mask_xy"):
        m = ex.extras[k]
        assert m.shape == (8, 8) and float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    up = upsample_mask(ex.extras["mask"][None, None], (32, 32), align_corners=True)[0, 0]
    torch.testing.assert_close(ex.map, 1.0 - up)


def test_igospp_highlights_the_box(box):
    clf, x = box
    ex = IGOSPlusPlus(clf, **FAST).explain(x, target=3)
    assert ex.map[8:24, 8:24].mean() > 3 * (ex.map.sum() - ex.map[8:24, 8:24].sum()) / (32 * 32 - 256)


# ------------------------------------------------------------------------------------------------ BTV
def test_btv_zero_for_constant_mask_and_matches_the_specified_formula():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 6, 6, generator=g)
    const = torch.full((1, 1, 3, 3), 0.3)
    assert abs(float(igospp_btv(img, const))) < 1e-12 and float(igospp_btv(img, torch.ones(1, 1, 3, 3))) == 0.0
    m = torch.rand(1, 1, 3, 3, generator=g)
    up = upsample_mask(m, (6, 6), align_corners=True)
    sigma = 0.01
    # appendix §4.3: vertical weight from the channel-mean difference squared, horizontal weight = channel mean
    # of exp(−ΔI_c²/σ); means over the difference arrays; BTV = ½[TV₂(M) + bilateral TV₂(up(M))]
    dvi = (img[..., 1:, :] - img[..., :-1, :]).mean(1)
    wv = torch.exp(-(dvi**2) / sigma)
    wh = torch.exp(-((img[..., :, 1:] - img[..., :, :-1]) ** 2) / sigma).mean(1)
    bil = (wv * (up[:, 0, 1:, :] - up[:, 0, :-1, :]) ** 2).mean()
    bil = bil + (wh * (up[:, 0, :, 1:] - up[:, 0, :, :-1]) ** 2).mean()
    tv = ((m[..., 1:, :] - m[..., :-1, :]) ** 2).mean() + ((m[..., :, 1:] - m[..., :, :-1]) ** 2).mean()
    torch.testing.assert_close(igospp_btv(img, m, sigma)[0], 0.5 * (tv + bil))


def test_precomputed_bilateral_weights_give_the_same_btv():
    g = torch.Generator().manual_seed(1)
    img, m = torch.rand(1, 3, 12, 12, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    w = bilateral_weights(img, 0.05)
    assert w[0].shape == (1, 1, 11, 12) and w[1].shape == (1, 1, 12, 11)
    assert torch.equal(igospp_btv(img, m, 0.05, weights=w), igospp_btv(img, m, 0.05))
    up = upsample_mask(m, (12, 12), align_corners=True)
    assert torch.equal(bilateral_tv(img, up, 0.05, weights=w), bilateral_tv(img, up, 0.05))


def test_btv_makes_mask_edges_cheap_where_the_image_has_edges():
    img = torch.zeros(1, 3, 8, 8)
    img[..., :, 4:] = 1.0  # a vertical image edge between columns 3 and 4
    on_edge = torch.ones(1, 1, 8, 8)
    on_edge[..., :, 4:] = 0.0
    off_edge = torch.ones(1, 1, 8, 8)
    off_edge[..., :, 2:] = 0.0
    assert float(tv_norm(on_edge)) == float(tv_norm(off_edge))  # plain TV cannot tell them apart
    assert float(bilateral_tv(img, on_edge)) < 1e-6 < float(bilateral_tv(img, off_edge))


# ------------------------------------------------------------------------------------------------ IG direction
def test_batched_integrated_gradient_equals_a_per_path_point_loop(tiny):
    clf, x, target = tiny
    e = IGOSPlusPlus(clf, size=4, ig_steps=5, noise=0.0, batch_size=3)
    c = e._start(x, target)
    g0 = torch.Generator().manual_seed(1)
    masks = {"x": torch.rand(1, 1, 4, 4, generator=g0), "y": torch.rand(1, 1, 4, 4, generator=g0)}
    with clf.guard():
        g, loss = e._gradient(c, masks, 5, 0)
    # reference: one image per path point; the joint terms compose with up(Mx)·up(My) as the official code does
    mx = masks["x"].clone().requires_grad_(True)
    my = masks["y"].clone().requires_grad_(True)
    ux, uy = upsample_mask(mx, (32, 32), align_corners=True), upsample_mask(my, (32, 32), align_corners=True)
    total, value = 0.0, 0.0
    for kind, u in (("del", ux), ("ins", uy), ("del", ux * uy), ("ins", ux * uy)):
        for k in range(1, 6):
            p = clf.net(_phi(c.z, c.zb, kind, u * (k / 5))).softmax(1)[0, target]
            total = total + (0.5 if kind == "del" else -0.5) * p / 5
            value += (1.0 if kind == "del" else -1.0) * float(p.detach()) / 5
    r = e._regulariser(c, mx * my)
    rx, ry = torch.autograd.grad(total + r, [mx, my])
    torch.testing.assert_close(g["x"], rx, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(g["y"], ry, atol=1e-6, rtol=1e-4)
    assert loss == pytest.approx(value + float(r.detach()), abs=1e-5)


def test_joint_terms_use_the_product_of_upsampled_masks(box):
    clf, x = box
    e = IGOSPlusPlus(clf, size=4)
    c = e._start(x, 3)
    g0 = torch.Generator().manual_seed(2)
    masks = {"x": torch.rand(1, 1, 4, 4, generator=g0), "y": torch.rand(1, 1, 4, 4, generator=g0)}
    ups = e._ups(c, masks)
    ux, uy = (upsample_mask(masks[k], (32, 32), align_corners=True) for k in ("x", "y"))
    torch.testing.assert_close(ups[2], ux * uy)
    assert not torch.allclose(ups[2], upsample_mask(masks["x"] * masks["y"], (32, 32), align_corners=True))


# ------------------------------------------------------------------------------------------------ switches
def test_ablation_switches_change_what_they_claim(box):
    clf, x = box
    base = IGOSPlusPlus(clf, **FAST).explain(x, target=3)
    assert base.n_backward == 4 * 4 * 4  # iterations × 4 terms × N path points
    ins = IGOSPlusPlus(clf, mode="insertion", **FAST).explain(x, target=3)
    assert ins.n_backward == 4 * 4 and torch.all(ins.extras["mask_y"] == ins.extras["mask"])
    naive = IGOSPlusPlus(clf, mode="naive", **FAST).explain(x, target=3)
    assert naive.n_backward == 4 * 2 * 4
    fixed = IGOSPlusPlus(clf, line_search=False, fixed_step=7.0, **FAST).explain(x, target=3)
    assert fixed.extras["step"] == [7.0] * 4 and fixed.extras["ls_trials"] == [0] * 4
    assert fixed.n_forward == fixed.n_backward  # no line-search passes at all
    # no noise: the seed no longer matters; with noise it does
    a = IGOSPlusPlus(clf, noise=0.0, seed=1, **FAST).explain(x, target=3).map
    b = IGOSPlusPlus(clf, noise=0.0, seed=2, **FAST).explain(x, target=3).map
    torch.testing.assert_close(a, b)
    c = IGOSPlusPlus(clf, seed=2, **FAST).explain(x, target=3).map
    assert not torch.allclose(base.map, c)
    # no BTV: plain TV on the mask, a different regulariser value for the same mask
    e1, e2 = IGOSPlusPlus(clf, **FAST), IGOSPlusPlus(clf, btv=False, **FAST)
    m = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    r1, r2 = (float(e._regulariser(e._start(x, 3), m)) for e in (e1, e2))
    assert r1 != pytest.approx(r2)
    # output selection (Table 3)
    mx = IGOSPlusPlus(clf, returned_mask="mx", **FAST).explain(x, target=3)
    torch.testing.assert_close(mx.extras["mask"], base.extras["mask_x"])
    torch.testing.assert_close(base.extras["mask"], base.extras["mask_x"] * base.extras["mask_y"])


def test_fresh_base_and_common_noise_switches(tiny):
    clf, x, target = tiny
    kw = {"size": 4, "iterations": 2, "ig_steps": 3}
    plain = IGOSPlusPlus(clf, **kw).explain(x, target)
    fresh = IGOSPlusPlus(clf, ls_fresh_base=True, **kw).explain(x, target)
    # a fresh base costs one full evaluation (4 terms × N images) per iteration, and a different base loss
    assert fresh.n_forward - sum(fresh.extras["ls_images"]) - fresh.n_backward == 2 * 4 * 3
    assert fresh.extras["loss"][0] != pytest.approx(plain.extras["loss"][0], abs=1e-9)
    common = IGOSPlusPlus(clf, ls_common_noise=True, ls_bounds=False, **kw).explain(x, target)
    # with the gradient pass's noise, the trial at α → 0 would reproduce the base loss exactly
    assert common.settings["ls_common_noise"] and "ls_bounds" not in common.settings


def test_cli_swap_and_adaptive_l1_and_official_noise(box):
    clf, x = box
    ex = IGOSPlusPlus(clf, size=4, iterations=2, ig_steps=3, reproduce_cli_swap=True).explain(x, target=3)
    assert len(ex.extras["step"]) == 3 and ex.n_backward == 3 * 4 * 2
    flat = make_classifier(BoxMeanNet(scale=0.0), size=32)  # the deletion score never moves
    ex = IGOS(flat, size=4, iterations=15, ig_steps=2, l1=1.0).explain(x, target=3)
    assert ex.extras["final_l1"] == pytest.approx(1.0 / 50)
    # l1 changes at the END of iterations 7 and 12: iterations 8 and 13 are the first to use the new value
    assert ex.extras["l1"][7] == 1.0 and ex.extras["l1"][8] == pytest.approx(0.1)
    assert ex.extras["l1"][12] == pytest.approx(0.1) and ex.extras["l1"][13] == pytest.approx(0.02)
    assert IGOS(flat, size=4, iterations=15, ig_steps=2, variant="igos_pp").explain(x, 3).extras["final_l1"] == 1.0
    assert IGOS(flat, size=4, iterations=3, ig_steps=2).explain(x, 3).extras["final_l1"] == 1.0  # T ≤ 3: never
    e = IGOS(clf, igos_noise="official", batch_size=8)
    c = e._start(x, 3)
    gen = noise_stream(0, 0, GRAD, 0, 0)
    n = torch.cat([e._draw(c, gen, 8).clone() for _ in range(25)])
    assert n.shape == (200, 3, 32, 32)
    assert float(n[:, 1:].abs().max()) == 0.0 and float(n[:, 0].std()) == pytest.approx(0.4, rel=0.05)


def test_noise_streams_are_distinct_and_reproducible():
    draws = {key: torch.randn(8, generator=noise_stream(0, *key)) for key in
             [(0, GRAD, 0, 0), (0, GRAD, 0, 1), (1, GRAD, 0, 0), (0, TRIAL, 0, 0), (0, TRIAL, 1, 0)]}
    vals = list(draws.values())
    assert all(not torch.equal(vals[i], vals[j]) for i in range(len(vals)) for j in range(i))
    torch.testing.assert_close(draws[(0, TRIAL, 1, 0)], torch.randn(8, generator=noise_stream(0, 0, TRIAL, 1, 0)))


def test_determinism_and_model_not_mutated(box):
    clf, x = box
    fp = clf.state_fingerprint()
    a = IGOSPlusPlus(clf, seed=3, batch_size=5, **FAST).explain(x, target=3)
    b = IGOSPlusPlus(clf, seed=3, batch_size=64, ls_batch=4, **FAST).explain(x, target=3)
    torch.testing.assert_close(a.map, b.map)
    assert clf.state_fingerprint() == fp
    assert a.n_forward_calls < a.n_forward
    assert a.settings == b.settings  # batch_size, ls_batch and ls_bounds are runtime arguments


@pytest.mark.parametrize("kw,msg", [({"mode": "both"}, "mode="), ({"returned_mask": "m"}, "returned_mask="),
                                    ({"igos_noise": "red"}, "igos_noise="), ({"size": 0}, "size="),
                                    ({"size": 2.5}, "size="), ({"size": True}, "size="),
                                    ({"iterations": 10**6}, "iterations="), ({"ig_steps": 0}, "ig_steps="),
                                    ({"batch_size": 0}, "batch_size="), ({"seed": -1}, "seed="),
                                    ({"l1": -1.0}, "l1="), ({"tv": float("nan")}, "tv="), ({"noise": -0.1}, "noise="),
                                    ({"alpha0": 0.0}, "alpha0="), ({"btv_sigma": 0}, "btv_sigma="),
                                    ({"btv": 1}, "btv="), ({"reproduce_cli_swap": "no"}, "reproduce_cli_swap="),
                                    ({"line_search": 0}, "line_search="), ({"fixed_step": 0.0}, "fixed_step="),
                                    ({"ls_c": 1.0}, "ls_c="), ({"ls_floor": 0.0}, "ls_floor="),
                                    ({"ls_decay": 1.5}, "ls_decay="), ({"ls_batch": 0}, "ls_batch="),
                                    ({"ls_batch": 2.5}, "ls_batch="), ({"ls_bounds": "yes"}, "ls_bounds="),
                                    ({"ls_common_noise": None}, "ls_common_noise="),
                                    ({"ls_fresh_base": 1}, "ls_fresh_base=")])
def test_bad_arguments(box, kw, msg):
    with pytest.raises(ValueError, match=msg) as err:
        IGOSPlusPlus(box[0], **kw)
    assert "\n" not in str(err.value) and "accepted values" in str(err.value)
    with pytest.raises(ValueError, match="variant="):
        IGOS(box[0], variant="new")
    with pytest.raises(ValueError, match="adaptive_l1="):
        IGOS(box[0], adaptive_l1="on")
    with pytest.raises(TypeError, match="ls_cc"):  # a misspelt step-rule knob is not swallowed by **step_rule
        IGOS(box[0], ls_cc=1e-4)
    with pytest.raises(ValueError, match="ls_cc=0.0001 is not a parameter of method='igos_pp' \\(did you mean 'ls_c'"):
        get_explainer("igos_pp", box[0], ls_cc=1e-4)


STEP_RULE = ("line_search", "fixed_step", "ls_c", "ls_decay", "ls_floor", "ls_batch", "ls_bounds", "ls_common_noise",
             "ls_fresh_base")


@pytest.mark.parametrize("cls", [IGOS, IGOSPlusPlus])
def test_step_rule_declared_once_and_settings_are_plain_json(box, cls):
    base = inspect.signature(IntegratedMaskOptimizer.__init__).parameters
    assert all(base[k].kind is inspect.Parameter.KEYWORD_ONLY for k in STEP_RULE)
    code = cls.__init__.__code__
    assert not set(STEP_RULE) & set(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])  # declared once
    shown = inspect.signature(cls).parameters  # ... and shown in the method's signature with the same defaults
    assert all(shown[k].default == base[k].default for k in STEP_RULE) and list(shown)[-len(STEP_RULE):] == [
        *STEP_RULE]
    e = cls(box[0], iterations=4.0, l1=1, ls_c=1e-3)  # papermill/YAML may give 4.0 and 1
    st = e.settings()
    assert st["iterations"] == 4 and isinstance(st["iterations"], int) and isinstance(st["l1"], float)
    assert st["ls_c"] == 1e-3 and st["ls_decay"] == base["ls_decay"].default
    assert "ls_batch" not in st and "ls_bounds" not in st and "batch_size" not in st  # runtime only
    assert json.loads(json.dumps(st)) == st
    assert cls(box[0], **st).settings() == st  # the settings rebuild the same explainer


def test_no_per_call_state_on_the_explainer(box):
    clf, x = box
    e = IGOSPlusPlus(clf, **FAST)
    before = dict(vars(e))
    e.explain(x, target=3)
    assert vars(e).keys() == before.keys()
    assert not any(isinstance(v, torch.Tensor) for v in vars(e).values())
