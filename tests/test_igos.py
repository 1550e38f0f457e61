"""I-GOS / iGOS++: line search, masks, BTV, the batched integrated gradient, ablation switches."""

from __future__ import annotations

import pytest
import torch
from conftest import BoxMeanNet, make_classifier

from saliency_core import get_explainer
from saliency_core.methods.igos import IGOS, IGOSPlusPlus, armijo_search
from saliency_core.perturbations import bilateral_tv, blur_baseline, igospp_btv, tv_norm, upsample_mask

FAST = {"size": 8, "iterations": 4, "ig_steps": 4}


@pytest.fixture
def box():
    """Box model with a non-saturated softmax (p ≈ 0.7 on the image below) and an image bright in the box."""
    clf = make_classifier(BoxMeanNet(scale=3.0), size=32)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 8:24, 8:24] = 1.0
    return clf, x


# ------------------------------------------------------------------------------------------------ line search
def test_armijo_search_returns_the_largest_grid_step_that_satisfies_the_condition():
    g = torch.tensor([3.0, -1.0])
    m0 = torch.tensor([1.0, 0.5])

    def f(m):
        return ((m - 0.2) ** 2).sum()

    calls = []

    def losses(alphas):
        calls.append(len(alphas))
        return torch.stack([f(m0 - a * g) for a in alphas])

    base, gsq = float(f(m0)), float((g * g).sum())
    res = armijo_search(losses, base, gsq, alpha0=1000.0, c=1e-4, decay=0.2, floor=1e-5, group=1)
    grid = [1000.0 * 0.2**j for j in range(20) if 1000.0 * 0.2**j >= 1e-5]
    ok = [a for a in grid if float(f(m0 - a * g)) <= base - 1e-4 * a * gsq]
    assert res["accepted"] and res["alpha"] == pytest.approx(ok[0])
    assert res["loss"] <= base - 1e-4 * res["alpha"] * gsq
    # batching the trial points changes the number of calls, not the answer
    calls.clear()
    res4 = armijo_search(losses, base, gsq, alpha0=1000.0, group=4)
    assert res4["alpha"] == res["alpha"] and res4["n_calls"] == len(calls) < res["n_calls"]


def test_armijo_search_below_the_floor_is_not_accepted():
    res = armijo_search(lambda a: torch.full((len(a),), 10.0), 1.0, 1.0, alpha0=1.0, floor=1e-2, group=3)
    assert not res["accepted"] and res["alpha"] < 1e-2 and res["n_trials"] == 3


@pytest.mark.parametrize("cls,kw", [(IGOSPlusPlus, {"mode": "deletion"}), (IGOSPlusPlus, {"mode": "naive"}),
                                    (IGOS, {"variant": "igos_pp"})])
def test_line_search_never_increases_the_loss_and_respects_armijo(box, cls, kw):
    """Without noise the loss at the accepted step is the next iteration's base loss: a non-increasing sequence."""
    clf, x = box
    e = cls(clf, noise=0.0, **FAST, **kw)
    ex = e.explain(x, target=3)
    loss, after, step, acc = (ex.extras[k] for k in ("loss", "loss_after", "step", "accepted"))
    assert any(acc)
    for i in range(len(loss) - 1):
        if acc[i]:
            assert after[i] <= loss[i] + 1e-7
            assert loss[i + 1] == pytest.approx(after[i], rel=1e-5, abs=1e-6)
        assert loss[i + 1] <= loss[i] + 1e-6


def test_original_igos_clean_line_search_decreases_the_clean_loss(box):
    clf, x = box
    ex = IGOS(clf, **FAST).explain(x, target=3)
    loss, after, acc = ex.extras["loss"], ex.extras["loss_after"], ex.extras["accepted"]
    for i in range(len(loss)):
        if acc[i]:
            assert after[i] <= loss[i] - 1e-4 * ex.extras["step"][i] * 0.0
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
    # protocols.md §4.3: vertical weight from the channel-mean difference squared, horizontal weight = channel mean
    # of exp(−ΔI_c²/σ); means over the difference arrays; BTV = ½[TV₂(M) + bilateral TV₂(up(M))]
    dvi = (img[..., 1:, :] - img[..., :-1, :]).mean(1)
    wv = torch.exp(-(dvi**2) / sigma)
    wh = torch.exp(-((img[..., :, 1:] - img[..., :, :-1]) ** 2) / sigma).mean(1)
    bil = (wv * (up[:, 0, 1:, :] - up[:, 0, :-1, :]) ** 2).mean()
    bil = bil + (wh * (up[:, 0, :, 1:] - up[:, 0, :, :-1]) ** 2).mean()
    tv = ((m[..., 1:, :] - m[..., :-1, :]) ** 2).mean() + ((m[..., :, 1:] - m[..., :, :-1]) ** 2).mean()
    torch.testing.assert_close(igospp_btv(img, m, sigma)[0], 0.5 * (tv + bil))


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
def test_batched_integrated_gradient_equals_a_per_path_point_loop(box):
    clf, x = box
    e = IGOSPlusPlus(clf, size=4, ig_steps=5, noise=0.0, batch_size=3)
    e._dev, e._target, e._l1 = x.device, 3, 1.0
    e._gen = torch.Generator().manual_seed(0)
    e._z = clf.normalize(x)
    e._zb = clf.normalize(blur_baseline(x, 51, 50.0))
    g0 = torch.Generator().manual_seed(1)
    masks = {"x": torch.rand(1, 1, 4, 4, generator=g0), "y": torch.rand(1, 1, 4, 4, generator=g0)}
    g, loss, _ = e._gradient(masks, 5)
    # reference: one image per path point, terms summed with the iGOS++ weights
    mx = masks["x"].clone().requires_grad_(True)
    my = masks["y"].clone().requires_grad_(True)
    total = 0.0
    for kind, m in (("del", mx), ("ins", my), ("del", mx * my), ("ins", mx * my)):
        for k in range(1, 6):
            up = upsample_mask(m, (32, 32), align_corners=True) * (k / 5)
            img = e._z * up + e._zb * (1 - up) if kind == "del" else e._zb * up + e._z * (1 - up)
            p = clf.net(img).softmax(1)[0, 3]
            total = total + (0.5 if kind == "del" else -0.5) * p / 5
    total = total + e._regulariser(mx * my)
    rx, ry = torch.autograd.grad(total, [mx, my])
    torch.testing.assert_close(g["x"], rx, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(g["y"], ry, atol=1e-6, rtol=1e-4)


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
    # no noise: the seed no longer matters; with noise it does
    a = IGOSPlusPlus(clf, noise=0.0, seed=1, **FAST).explain(x, target=3).map
    b = IGOSPlusPlus(clf, noise=0.0, seed=2, **FAST).explain(x, target=3).map
    torch.testing.assert_close(a, b)
    c = IGOSPlusPlus(clf, seed=2, **FAST).explain(x, target=3).map
    assert not torch.allclose(base.map, c)
    # no BTV: plain TV on the mask, a different regulariser value for the same mask
    e1, e2 = IGOSPlusPlus(clf, **FAST), IGOSPlusPlus(clf, btv=False, **FAST)
    for e in (e1, e2):
        e._z, e._l1 = clf.normalize(x), 1.0
    m = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(e1._regulariser(m)) != pytest.approx(float(e2._regulariser(m)))
    # output selection (Table 3)
    mx = IGOSPlusPlus(clf, output="mx", **FAST).explain(x, target=3)
    torch.testing.assert_close(mx.extras["mask"], base.extras["mask_x"])
    torch.testing.assert_close(base.extras["mask"], base.extras["mask_x"] * base.extras["mask_y"])


def test_cli_swap_and_adaptive_l1_and_official_noise(box):
    clf, x = box
    ex = IGOSPlusPlus(clf, size=4, iterations=2, ig_steps=3, reproduce_cli_swap=True).explain(x, target=3)
    assert len(ex.extras["step"]) == 3 and ex.n_backward == 3 * 4 * 2
    flat = make_classifier(BoxMeanNet(scale=0.0), size=32)  # the deletion score never moves
    ex = IGOS(flat, size=4, iterations=15, ig_steps=2, l1=1.0).explain(x, target=3)
    assert ex.extras["final_l1"] == pytest.approx(1.0 / 50)
    assert IGOS(flat, size=4, iterations=15, ig_steps=2, variant="igos_pp").explain(x, 3).extras["final_l1"] == 1.0
    e = IGOS(clf, igos_noise="official")
    e._gen, e._dev = torch.Generator().manual_seed(0), x.device
    n = e._noise(200, (16, 16))
    assert float(n[:, 1:].abs().max()) == 0.0 and float(n[:, 0].std()) == pytest.approx(0.4, rel=0.05)


def test_determinism_and_model_not_mutated(box):
    clf, x = box
    fp = clf.state_fingerprint()
    a = IGOSPlusPlus(clf, seed=3, batch_size=5, **FAST).explain(x, target=3)
    b = IGOSPlusPlus(clf, seed=3, batch_size=64, **FAST).explain(x, target=3)
    torch.testing.assert_close(a.map, b.map)
    assert clf.state_fingerprint() == fp
    assert a.n_forward_calls < a.n_forward


@pytest.mark.parametrize("kw,msg", [({"mode": "both"}, "mode="), ({"output": "m"}, "output="),
                                    ({"igos_noise": "red"}, "igos_noise="), ({"size": 0}, "size="),
                                    ({"ls_decay": 1.5}, "ls_decay=")])
def test_bad_arguments(box, kw, msg):
    with pytest.raises(ValueError, match=msg):
        IGOSPlusPlus(box[0], **kw)
    with pytest.raises(ValueError, match="variant="):
        IGOS(box[0], variant="new")
