"""C-Shapley as used in the LEG tables (protocols.md §5.2, ``Paradise1008/LEG:methods/CShap.py``), our own code.

* The image is cut into ``cell``×``cell``-pixel cells (8: a 28×28 grid of D = 784 cells on 224² images).
* For every cell and every radius k = 0 .. ``max_order`` − 1 (0..7), the L1 ball ("diamond") of radius k around
  the cell is kept and every other pixel is set to the image's mean colour; y = p_c(masked image).
  That is D·max_order coalitions (6,272 model evaluations), evaluated in batches.
* φ = weighted least squares of y on the keep-indicators, without an intercept, with weight
  (D − 1)/(C(D, S)·S·D) for a coalition of S cells (``kernel="leg"``, the official variant: the Shapley kernel
  with D in place of D − S) or the Shapley kernel (D − 1)/(C(D, S)·S·(D − S)) (``kernel="shap"``).
  Weights are computed in log space and rescaled (WLS is scale-invariant); they fall by many orders of
  magnitude with S, so in floating point the fit is driven by the small coalitions (as in the official code).
* The cell map φ is bilinearly resized to the image (signed; higher = more relevant).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_choice, check_int
from ..explanation import Explainer
from .registry import register

__all__ = ["diamond_coalitions", "CShapley"]


def diamond_coalitions(n: int, max_order: int = 8) -> torch.Tensor:
    """``(n*n*max_order, n, n)`` bool: for each cell (row-major) and radius k < max_order (inner loop), the L1 ball."""
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ci = ii.flatten()[:, None, None, None]
    cj = jj.flatten()[:, None, None, None]
    ks = torch.arange(max_order)[None, :, None, None]
    dist = (ii[None, None] - ci).abs() + (jj[None, None] - cj).abs()
    return (dist <= ks).reshape(n * n * max_order, n, n)


def _log_weights(sizes: np.ndarray, d: int, kernel: str) -> np.ndarray:
    s = sizes.astype(np.float64)
    lgamma = np.vectorize(math.lgamma)
    log_comb = lgamma(d + 1.0) - lgamma(s + 1.0) - lgamma(d - s + 1.0)
    last = np.log(d) if kernel == "leg" else np.log(np.maximum(d - s, 1.0))
    return np.log(d - 1.0) - log_comb - np.log(s) - last


@register("cshapley")
class CShapley(Explainer):
    """C-Shapley, LEG-table replica (see the module docstring).

    Parameters
    ----------
    cell : int
        Cell size in pixels (8); the image size must be a multiple of it.
    max_order : int
        Radii 0 .. max_order − 1 (8 → 6,272 evaluations at 224²).
    kernel : {"leg", "shap"}
        Regression weight (official variant or the Shapley kernel).
    fill : {"mean", "black"}
        Fill of removed cells (official: the image's mean RGB).
    """

    def __init__(self, model, cell: int = 8, max_order: int = 8, kernel: str = "leg", fill: str = "mean",
                 batch_size: int = 64) -> None:
        super().__init__(model)
        self.cell = check_int("cell", cell, 1)
        self.max_order = check_int("max_order", max_order, 1)
        self.kernel = check_choice("kernel", kernel, ("leg", "shap"))
        self.fill = check_choice("fill", fill, ("mean", "black"))
        self.batch_size = check_int("batch_size", batch_size, 1)

    def _explain(self, x, target):
        h, w = x.shape[-2:]
        if h != w or h % self.cell:
            raise ValueError(f"cell={self.cell} is not valid for a {h}×{w} image; accepted values: a divisor of a "
                             "square image's side")
        n = h // self.cell
        masks = diamond_coalitions(n, self.max_order)
        fill = x.mean(dim=(2, 3), keepdim=True) if self.fill == "mean" else torch.zeros_like(x[:, :, :1, :1])
        ys = []
        for i in range(0, masks.shape[0], self.batch_size):
            m = masks[i : i + self.batch_size].to(x.device)
            up = m[:, None].float().repeat_interleave(self.cell, 2).repeat_interleave(self.cell, 3)
            xb = up * x + (1 - up) * fill
            ys.append(self.model.logits(xb, batch_size=xb.shape[0]).double().softmax(1)[:, target].cpu())
        y = torch.cat(ys).numpy()
        A = masks.reshape(masks.shape[0], -1).double().numpy()
        sizes = A.sum(1)
        d = n * n
        lw = _log_weights(sizes, d, self.kernel)
        sw = np.exp(0.5 * (lw - lw.max()))
        phi = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)[0]
        cells = torch.from_numpy(phi).float().view(1, 1, n, n)
        sal = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return sal, {"cells": cells[0, 0], "coalition_sizes": torch.from_numpy(sizes)}
