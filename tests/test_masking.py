"""Masking schemes on hand-made arrays (protocols.md §7, tie rule §11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saliency_core.metrics.masking import fill_image, mask_fraction, masked_images, n_masked, rank_pixels


def _img():
    x = torch.tensor([[0.1, 0.2], [0.9, 0.5]])
    return torch.stack([x, x / 2, 1 - x])[None]  # (1, 3, 2, 2)


def test_rank_stable_ties_and_abs():
    s = torch.tensor([[1.0, -3.0], [1.0, 2.0]])
    assert rank_pixels(s).tolist() == [[2, 0], [3, 1]]  # |−3| first, ties 1.0 in row-major order
    r = rank_pixels(torch.zeros(3, 3), "random", seed=1)
    assert sorted(r.flatten().tolist()) == list(range(9))
    assert torch.equal(r, rank_pixels(torch.zeros(3, 3), "random", seed=1))
    with pytest.raises(ValueError, match="ties"):
        rank_pixels(s, "unstable")


def test_n_masked_floor():
    assert n_masked([0.0, 0.5, 1.0], 50176).tolist() == [0, 25088, 50176]
    assert n_masked([1 / 3], 3).tolist() == [1]  # guard against 0.999...
    with pytest.raises(ValueError, match="alpha"):
        n_masked([1.5], 10)


def test_distance_k_sign_and_clip():
    x = _img()
    s = torch.tensor([[1.0, -1.0], [0.0, 2.0]])
    f = fill_image(x, s, "distance", K=51)
    d = 51 / 255
    assert torch.allclose(f[0, 0], torch.tensor([[0.1 - d, 0.2 + d], [0.9 - d, 0.5 - d]]).clamp(0, 1))
    f2 = fill_image(x, s, "distance", K=255)
    assert f2[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0] and f2[0, :, 0, 1].tolist() == [1.0, 1.0, 1.0]


def test_constant_fills_and_masked_order():
    x = _img()
    s = torch.tensor([[4.0, 3.0], [2.0, 1.0]])
    out = masked_images(x, s, [0, 1, 3, 4], "black")
    assert torch.equal(out[0], x[0])
    assert out[1, :, 0, 0].tolist() == [0, 0, 0] and torch.equal(out[1, :, 1], x[0, :, 1])
    assert torch.equal(out[2, :, 1, 1], x[0, :, 1, 1]) and float(out[3].abs().sum()) == 0
    assert float(masked_images(x, s, [4], "white").min()) == 1.0
    assert torch.allclose(masked_images(x, s, [4], "gray"), torch.full((1, 3, 2, 2), 0.5))
    m = masked_images(x, s, [4], "mean_exact")
    assert torch.allclose(m[0, :, 0, 0], x[0].mean((1, 2)))
    m = masked_images(x, s, [4], "mean")  # official: truncated to an integer grey level
    assert torch.allclose(m[0, :, 0, 0], torch.floor(x[0].mean((1, 2)) * 255) / 255)


def test_noise_seeded_range_and_averaging_ready():
    x = torch.rand(1, 3, 16, 16)
    s = torch.rand(16, 16)
    a = mask_fraction(x, s, [1.0], "noise", seed=3)
    b = mask_fraction(x, s, [1.0], "noise", seed=3)
    c = mask_fraction(x, s, [1.0], "noise", seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    k = a * 255
    assert torch.allclose(k, k.round(), atol=1e-4) and float(k.max()) <= 254 and float(k.min()) >= 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="scheme"):
        fill_image(_img(), torch.zeros(2, 2), "blur")
    with pytest.raises(ValueError, match="saliency"):
        masked_images(_img(), torch.zeros(3, 3), [1], "black")


def test_mean_fill_is_the_official_truncated_integer_mean():
    """Official get_mask: background = mean over the integer RGB image, written into the integer image (truncated)."""
    g = torch.Generator().manual_seed(5)
    ints = torch.randint(0, 256, (1, 3, 6, 7), generator=g)
    x = ints.float() / 255.0
    img = ints[0].permute(1, 2, 0).numpy()  # (H, W, 3) integers, as the official code holds the image
    background = img.mean((0, 1))
    official = img.copy()
    official[:, :] = background  # numpy casts the float mean to the integer dtype: truncation
    s = torch.arange(42.0).view(6, 7)
    out = masked_images(x, s, [42], "mean")[0]
    np.testing.assert_array_equal(np.rint(out.permute(1, 2, 0).double().numpy() * 255).astype(int), official)
    exact = masked_images(x, s, [42], "mean_exact")[0]
    torch.testing.assert_close(exact[:, 0, 0], x[0].mean((1, 2)))
    assert bool((out[:, 0, 0] <= exact[:, 0, 0] + 1e-7).all())
    # an exact integer mean is not rounded down by float error
    flat = torch.full((1, 3, 2, 2), 100 / 255)
    assert torch.allclose(masked_images(flat, torch.ones(2, 2), [4], "mean") * 255, torch.full((1, 3, 2, 2), 100.0))
