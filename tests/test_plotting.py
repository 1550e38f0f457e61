"""The style module's colour conventions: signed maps symmetric and diverging, unsigned maps sequential from 0."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from saliency_core import plotting  # noqa: E402


def test_scaled_maps_fill_the_shared_colour_bars():
    a = np.array([[0.0, 1.0], [2.0, 4.0]])
    assert plotting._scaled(a, signed=False).tolist() == [[0.0, 0.25], [0.5, 1.0]]
    neg = -a  # a score relevant when high but below zero (invariant perturbation: -mean w)
    s = plotting._scaled(neg, signed=False)
    assert s.min() == 0.0 and s.max() == 1.0 and s[0, 0] == 1.0
    signed = plotting._scaled(np.array([-2.0, 1.0, 0.0]), signed=True)
    assert signed.min() >= -1 and signed.max() <= 1 and signed[2] == 0.0
    assert plotting._scaled(np.zeros((2, 2)), signed=False).tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_gallery_one_colour_bar_per_family():
    imgs = [torch.rand(3, 8, 8) for _ in range(2)]
    maps = {"u": [torch.rand(8, 8)] * 2, "s": [torch.randn(8, 8)] * 2, "u2": [torch.rand(8, 8)] * 2}
    fig = plotting.gallery(imgs, maps)
    bars = [ax for ax in fig.axes if ax.get_label() == "colorbar"]
    assert sorted(b.get_ylabel() for b in bars) == ["signed", "unsigned"]
    fig = plotting.gallery(imgs, {"u": maps["u"]}, colorbar=False)
    assert not [ax for ax in fig.axes if ax.get_label() == "colorbar"]
    with pytest.raises(ValueError, match="normalize"):
        plotting.gallery(imgs, maps, normalize="global")


def test_show_map_sequential_from_zero_and_symmetric_when_signed():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    im = plotting.show_map(ax, np.array([[0.5, 2.0]]))
    assert im.get_clim() == (0.0, 2.0)
    im = plotting.show_map(ax, np.array([[-1.0, 3.0]]), signed=True)
    lo, hi = im.get_clim()
    assert lo == -hi and hi > 0
