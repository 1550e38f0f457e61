"""C-Shapley as computed for the LEG tables (``Paradise1008/LEG:methods/CShap.py``, appendix §5.2), our own code.

* The image is cut into ``cell``×``cell``-pixel cells (8: a 28×28 grid of D = 784 cells on 224² images).
* For every cell and every radius k = 0 .. ``max_order`` − 1 (0..7), the L1 ball ("diamond") of radius k around
  the cell is kept and every other pixel is set to the image's mean colour; F = p_c(masked image).
  That is D·max_order coalitions (6,272 model evaluations), evaluated in batches.
* X is the (coalitions × D) keep-indicator matrix and W = diag(w) with the weight of a coalition of S cells
  w = (D − 1)/(C(D, S)·S·D) (``kernel="leg"``, the official variant: the Shapley kernel with D in place of D − S)
  or the Shapley kernel (D − 1)/(C(D, S)·S·(D − S)) (``kernel="shap"``).
* **Estimator.** ``estimator="official"`` (default) is the expression of the LEG repository,

      φ = (XᵀWX)⁻¹ Xᵀ F          (F is NOT weighted),

  which is what the LEG tables measured. Because w falls by about 10⁻¹⁰ per radius, XᵀWX is essentially
  w(1)·I (the singletons) and φ_i is, up to that scale, the sum of F over the diamonds that contain cell i.
  ``estimator="wls"`` is proper weighted least squares, φ = (XᵀWX)⁻¹ XᵀW F; with these weights it collapses to
  "the probability with only this cell kept" (the radius-0 responses). The official expression is not
  invariant to a rescaling of w, so the weights are used at their absolute value (computed in log space).
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

__all__ = ["diamond_coalitions", "cshapley_weights", "cshapley_cells", "cshapley_map", "CShapley", "ESTIMATORS"]

#: "official" = inv(XᵀWX)·Xᵀ·F (LEG repository); "wls" = inv(XᵀWX)·XᵀW·F
ESTIMATORS = ("official", "wls")


def diamond_coalitions(n: int, max_order: int = 8) -> torch.Tensor:
    """``(n*n*max_order, n, n)`` bool: for each cell (row-major) and radius k < max_order (inner loop), the L1 ball."""
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ci = ii.flatten()[:, None, None, None]
    cj = jj.flatten()[:, None, None, None]
    ks = torch.arange(max_order)[None, :, None, None]
    dist = (ii[None, None] - ci).abs() + (jj[None, None] - cj).abs()
    return (dist <= ks).reshape(n * n * max_order, n, n)


def cshapley_weights(sizes: np.ndarray, d: int, kernel: str = "leg") -> np.ndarray:
    """Coalition weights (D − 1)/(C(D, S)·S·D) (``"leg"``) or (D − 1)/(C(D, S)·S·(D − S)) (``"shap"``), float64.

    Computed as exp of the log weight; weights below ~1e-308 underflow to 0, where they are negligible
    against the singletons' (D − 1)/D² in every sum they enter.
    """
    check_choice("kernel", kernel, ("leg", "shap"))
    s = np.asarray(sizes, dtype=np.float64)
    lgamma = np.vectorize(math.lgamma)
    log_comb = lgamma(d + 1.0) - lgamma(s + 1.0) - lgamma(d - s + 1.0)
    last = np.log(d) if kernel == "leg" else np.log(np.maximum(d - s, 1.0))
    return np.exp(np.log(d - 1.0) - log_comb - np.log(s) - last)


def cshapley_cells(X: np.ndarray, responses: np.ndarray, kernel: str = "leg",
                   estimator: str = "official") -> np.ndarray:
    """φ (D,) from the keep-indicators ``X`` (coalitions × D) and the responses F (coalitions,).

    ``"official"``: solve (XᵀWX) φ = XᵀF; ``"wls"``: solve (XᵀWX) φ = XᵀWF (module docstring).
    """
    check_choice("estimator", estimator, ESTIMATORS)
    X = np.asarray(X, dtype=np.float64)
    f = np.asarray(responses, dtype=np.float64)
    w = cshapley_weights(X.sum(1), X.shape[1], kernel)
    gram = X.T @ (w[:, None] * X)
    rhs = X.T @ (f if estimator == "official" else w * f)
    return np.linalg.solve(gram, rhs)


def cshapley_map(responses: np.ndarray | torch.Tensor, n: int, max_order: int, size: tuple[int, int],
                 kernel: str = "leg", estimator: str = "official") -> torch.Tensor:
    """The (H, W) map of an estimator from the responses of :class:`CShapley` (``extras["responses"]``):
    φ of :func:`cshapley_cells` on the ``n``×``n`` grid, bilinearly resized to ``size``. No model call."""
    X = diamond_coalitions(n, max_order).reshape(n * n * max_order, -1).double().numpy()
    phi = cshapley_cells(X, np.asarray(responses, dtype=np.float64), kernel, estimator)
    cells = torch.from_numpy(phi).float().view(1, 1, n, n)
    return F.interpolate(cells, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]


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
        Coalition weight (official variant or the Shapley kernel).
    estimator : {"official", "wls"}
        ``inv(XᵀWX)·Xᵀ·F`` as the LEG repository computes it (default), or weighted least squares.
    fill : {"mean", "black"}
        Fill of removed cells (official: the image's mean RGB).

    Extras: ``cells`` (n, n) φ, ``responses`` (coalitions,) F, ``coalition_sizes``; with
    :func:`cshapley_cells` and :func:`diamond_coalitions` the other estimator is obtained without new model calls.
    """

    def __init__(self, model, cell: int = 8, max_order: int = 8, kernel: str = "leg", estimator: str = "official",
                 fill: str = "mean", batch_size: int = 64) -> None:
        super().__init__(model)
        self.cell = check_int("cell", cell, 1)
        self.max_order = check_int("max_order", max_order, 1, 1000)  # n²·max_order coalitions are built at once
        self.kernel = check_choice("kernel", kernel, ("leg", "shap"))
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.fill = check_choice("fill", fill, ("mean", "black"))
        self.batch_size = check_int("batch_size", batch_size, 1)

    def min_input_size(self) -> int:
        """Two cells per side at least (one cell leaves a single coalition feature: the regression is singular)."""
        return max(super().min_input_size(), 2 * self.cell)

    def _explain(self, x, target):
        h, w = x.shape[-2:]
        if h != w or h % self.cell:
            raise ValueError(f"cell={self.cell} is not valid for a {h}×{w} image; accepted values: a divisor of a "
                             "square image's side")
        n = h // self.cell
        if self.max_order > 2 * n - 1:  # radius 2(n − 1) already covers the grid: more radii repeat the full image
            raise ValueError(f"max_order={self.max_order} is not valid for a {n}×{n} grid of cells; accepted values: "
                             f"an int in [1, {2 * n - 1}]")
        masks = diamond_coalitions(n, self.max_order)
        fill = x.mean(dim=(2, 3), keepdim=True) if self.fill == "mean" else torch.zeros_like(x[:, :, :1, :1])
        ys = []
        for i in range(0, masks.shape[0], self.batch_size):
            m = masks[i : i + self.batch_size].to(x.device)
            up = m[:, None].float().repeat_interleave(self.cell, 2).repeat_interleave(self.cell, 3)
            xb = up * x + (1 - up) * fill
            ys.append(self.model.logits(xb, batch_size=xb.shape[0]).double().softmax(1)[:, target].cpu())
        y = torch.cat(ys).numpy()
        X = masks.reshape(masks.shape[0], -1).double().numpy()
        phi = cshapley_cells(X, y, self.kernel, self.estimator)
        cells = torch.from_numpy(phi).float().view(1, 1, n, n)
        sal = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return sal, {"cells": cells[0, 0], "responses": torch.from_numpy(y), "grid": n,
                     "coalition_sizes": torch.from_numpy(X.sum(1))}
