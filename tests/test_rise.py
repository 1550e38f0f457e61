"""RISE: normalisation, masks, seeding, batching, the TorchRay preset."""

from __future__ import annotations

import pytest
import torch
from conftest import BoxMeanNet, make_classifier

from saliency_core import get_explainer
from saliency_core.methods.rise import RISE, rise_masks

X = torch.zeros(1, 3, 32, 32)
X[..., 8:24, 8:24] = 1.0


def test_masks_soft_binary_upsampled_and_cropped():
    g = torch.Generator().manual_seed(0)
    grids = (torch.rand(50, 1, 4, 4, generator=g) < 0.5).float()
    shifts = torch.randint(0, 8, (50, 2), generator=g)
    for style in ("original", "torchray"):
        m = rise_masks(grids, shifts, (32, 32), style)
        assert m.shape == (50, 1, 32, 32) and float(m.min()) >= 0 and float(m.max()) <= 1 + 1e-6
    # zero shift, original style: the top-left pixel samples the first grid cell's plateau
    m = rise_masks(grids[:1], torch.zeros(1, 2, dtype=torch.long), (32, 32))
    assert float(m[0, 0, 0, 0]) == float(grids[0, 0, 0, 0])


def test_constant_model_gives_a_flat_map_equal_to_its_probability():
    """Σ p·M_i/(N·p1) with constant p = 0.1 (10 equal logits) is 0.1·mean(M)/p1 ≈ 0.1 everywhere."""
    flat = make_classifier(BoxMeanNet(scale=0.0), size=32)
    ex = RISE(flat, n_masks=2000, cells=4, p1=0.3).explain(X, target=3)
    assert float(ex.map.mean()) == pytest.approx(0.1, rel=0.05)
    assert ex.n_forward == 2000 and ex.n_forward_calls == 32 and ex.n_backward == 0


def test_box_model_highlights_the_box_and_is_seeded():
    clf = make_classifier(BoxMeanNet(scale=3.0), size=32)
    a = RISE(clf, n_masks=600, cells=4, p1=0.5, seed=1, batch_size=64).explain(X, target=3)
    b = RISE(clf, n_masks=600, cells=4, p1=0.5, seed=1, batch_size=7).explain(X, target=3)
    c = RISE(clf, n_masks=600, cells=4, p1=0.5, seed=2).explain(X, target=3)
    torch.testing.assert_close(a.map, b.map)
    assert not torch.allclose(a.map, c.map)
    inside = a.map[10:22, 10:22].mean()
    outside = torch.cat([a.map[:, :4].flatten(), a.map[:, -4:].flatten()]).mean()
    assert inside > outside


def test_torchray_preset_and_bad_arguments():
    clf = make_classifier(BoxMeanNet(scale=3.0), size=32)
    e = get_explainer("rise_torchray", clf, n_masks=64)
    s = e.settings()
    assert (s["cells"], s["p1"], s["response"], s["normalize"], s["mask_style"]) == (7, 0.5, "sigmoid", "n", "torchray")
    assert get_explainer("rise", clf).settings()["n_masks"] == 6000
    assert e.explain(X, 3).map.shape == (32, 32)
    with pytest.raises(ValueError, match="p1="):
        RISE(clf, p1=0.0)
    with pytest.raises(ValueError, match="response="):
        RISE(clf, response="logit")
