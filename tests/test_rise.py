"""RISE: normalisation, masks, seeding, batching, the TorchRay preset."""

from __future__ import annotations

import math

import numpy as np
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


def _bilinear_1d(v: np.ndarray, out: int) -> np.ndarray:
    """Half-pixel linear resize of the last axis of ``v`` to ``out`` samples (src = (i + ½)·n/out − ½, clamped)."""
    n = v.shape[-1]
    res = np.empty(v.shape[:-1] + (out,))
    for i in range(out):
        src = max((i + 0.5) * n / out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n - 1)
        i1 = min(i0 + 1, n - 1)
        lam = src - i0
        res[..., i] = (1 - lam) * v[..., i0] + lam * v[..., i1]
    return res


def _torchray_mask(grid: np.ndarray, shift: tuple[int, int], h: int, w: int) -> np.ndarray:
    """TorchRay's RISE mask re-stated from its description (appendix §5.1), no code of theirs:
    target T = H + c (c = ⌈H/s⌉); reflect-pad the s×s grid by one cell (edge not repeated); bilinear resize to
    (s+2)·c' with c' = ⌈T/s⌉; keep rows/cols c' .. c'+T; then the H×W window at the shift."""
    s = grid.shape[0]
    c = (math.ceil(h / s), math.ceil(w / s))
    t = (h + c[0], w + c[1])
    c2 = (math.ceil(t[0] / s), math.ceil(t[1] / s))
    idx = [1] + list(range(s)) + [s - 2]  # reflection: padded[0] = grid[1], padded[s+1] = grid[s-2]
    padded = grid[np.ix_(idx, idx)]
    up = _bilinear_1d(padded, (s + 2) * c2[1])
    up = _bilinear_1d(up.T, (s + 2) * c2[0]).T
    up = up[c2[0] : c2[0] + t[0], c2[1] : c2[1] + t[1]]
    return up[shift[0] : shift[0] + h, shift[1] : shift[1] + w]


@pytest.mark.parametrize("size,cells", [((224, 224), 7), ((32, 40), 4), ((30, 30), 5)])
def test_torchray_masks_equal_the_restated_formula(size, cells):
    g = torch.Generator().manual_seed(1)
    grids = (torch.rand(6, 1, cells, cells, generator=g) < 0.5).float()
    c = (math.ceil(size[0] / cells), math.ceil(size[1] / cells))
    shifts = torch.stack([torch.randint(0, c[0], (6,), generator=g), torch.randint(0, c[1], (6,), generator=g)], 1)
    ours = rise_masks(grids, shifts, size, "torchray")
    for i in range(6):
        ref = _torchray_mask(grids[i, 0].double().numpy(), tuple(shifts[i].tolist()), *size)
        np.testing.assert_allclose(ours[i, 0].numpy(), ref, atol=1e-5)


def test_torchray_crop_starts_one_cell_in():
    """Only grid cell (1, 1) on (0-based), no shift: the reflected copy must not light the top-left corner."""
    grid = torch.zeros(1, 1, 7, 7)
    grid[0, 0, 1, 1] = 1.0
    m = rise_masks(grid, torch.zeros(1, 2, dtype=torch.long), (224, 224), "torchray")[0, 0]
    corner = float(m[:32, :32].mean())
    assert corner < 0.1  # 0.77 when the crop starts at 0 (the reflection of cell (1, 1) is cell (-1, -1))
    peak = divmod(int(m.argmax()), 224)  # the cell itself: upsampled cell 2 of 9 (37 px each), i.e. 37..74 here
    assert 37 <= peak[0] < 74 and 37 <= peak[1] < 74 and float(m.max()) > 0.95


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
