"""RISE (Petsiuk, Das & Saenko 2018): randomised input sampling (appendix §5.1).

Saliency = Σ_i p(x ⊙ M_i)·M_i / (N·p1): N random binary s×s grids (cell on with probability p1), upsampled
bilinearly, cropped at a random shift in [0, c) per axis (c = ⌈H/s⌉), multiplied with the *normalised* image
(masked pixels become the mean colour) and scored with the softmax of the target.

``RISE`` follows the original code (``eclique/RISE``: N = 6000, s = 8, p1 = 0.1, softmax, /(N·p1); grids
upsampled to (s+1)·c); ``RISETorchRay`` (registered ``"rise_torchray"``) TorchRay's variant (N = 8000, s = 7,
p = 0.5, sigmoid, /N) with its reflect-padded upsampling, cropped from one (upsampled) cell in
(:func:`rise_masks`). All draws come from one seeded generator; masks are built and evaluated in chunks of
``batch_size``, so the result does not depend on the batch size.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..checks import check_choice, check_int, check_range
from ..explanation import Explainer
from .registry import register

__all__ = ["RISE", "RISETorchRay", "rise_masks"]


def rise_masks(
    grids: torch.Tensor, shifts: torch.Tensor, size: tuple[int, int], style: str = "original"
) -> torch.Tensor:
    """Upsample binary grids ``(n, 1, s, s)`` and crop at ``shifts`` ``(n, 2)`` → soft masks ``(n, 1, H, W)``.

    With c = ⌈H/s⌉ (per axis) and shifts in [0, c):

    * ``style="original"`` (``eclique/RISE``): bilinear (half-pixel, ``align_corners=False``) to (s+1)·c, then the
      H×W window at the shift (RISE uses skimage's order-1 resize, the same interpolation away from the border).
    * ``style="torchray"``: TorchRay resizes the grid to T = H + c with reflection padding: the grid is
      reflect-padded by one cell on every side, upsampled bilinearly to (s+2)·c' with c' = ⌈T/s⌉, and the T×T
      window starting ONE upsampled cell in (at c') is kept, so the reflected copies never enter at the top/left;
      the H×W window at the shift is then cut from it (rows c' + shift .. c' + shift + H of the upsampled grid).
    """
    check_choice("style", style, ("original", "torchray"))
    h, w = size
    s = grids.shape[-1]
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    if style == "original":
        up = F.interpolate(grids, size=((s + 1) * ch, (s + 1) * cw), mode="bilinear", align_corners=False)
        oy = ox = 0
    else:
        th, tw = h + ch, w + cw
        c2h, c2w = math.ceil(th / s), math.ceil(tw / s)
        padded = F.pad(grids, (1, 1, 1, 1), mode="reflect")
        up = F.interpolate(padded, size=((s + 2) * c2h, (s + 2) * c2w), mode="bilinear", align_corners=False)
        oy, ox = c2h, c2w
    n = grids.shape[0]
    iy = oy + shifts[:, 0].view(n, 1) + torch.arange(h, device=grids.device).view(1, h)
    ix = ox + shifts[:, 1].view(n, 1) + torch.arange(w, device=grids.device).view(1, w)
    rows = torch.gather(up[:, 0], 1, iy.view(n, h, 1).expand(n, h, up.shape[-1]))
    return torch.gather(rows, 2, ix.view(n, 1, w).expand(n, h, w)).unsqueeze(1)


@register("rise")
class RISE(Explainer):
    """RISE with the original code's defaults.

    Parameters
    ----------
    n_masks : int
        N random masks (6000).
    cells : int
        Grid side s (8).
    p1 : float
        Probability that a cell is kept (0.1).
    response : {"prob", "sigmoid"}
        Score of the target class: softmax probability (original) or sigmoid of the logit (TorchRay).
    normalize : {"n_p1", "n"}
        Divide the weighted sum by N·p1 (original) or N (TorchRay).
    mask_style : {"original", "torchray"}
        Mask upsampling (see :func:`rise_masks`).
    seed : int
        Seed of the mask generator.
    """

    def __init__(
        self,
        model,
        n_masks: int = 6000,
        cells: int = 8,
        p1: float = 0.1,
        response: str = "prob",
        normalize: str = "n_p1",
        mask_style: str = "original",
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model)
        n_masks = check_int("n_masks", n_masks, 1, 10_000_000)
        cells = check_int("cells", cells, 1)
        batch_size = check_int("batch_size", batch_size, 1)
        seed = check_int("seed", seed, 0)
        check_range("p1", p1, 0.0, 1.0, low_inclusive=False)
        check_choice("response", response, ("prob", "sigmoid"))
        check_choice("normalize", normalize, ("n_p1", "n"))
        check_choice("mask_style", mask_style, ("original", "torchray"))
        self.n_masks, self.cells, self.p1, self.response = n_masks, cells, p1, response
        self.normalize, self.mask_style, self.seed, self.batch_size = normalize, mask_style, seed, batch_size

    def min_input_size(self) -> int:
        """One pixel per grid cell at least."""
        return max(super().min_input_size(), self.cells)

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        h, w = x.shape[-2:]
        s = self.cells
        gen = torch.Generator().manual_seed(int(self.seed))
        grids = (torch.rand(self.n_masks, 1, s, s, generator=gen) < self.p1).float()
        ch, cw = math.ceil(h / s), math.ceil(w / s)
        shifts = torch.stack([torch.randint(0, ch, (self.n_masks,), generator=gen),
                              torch.randint(0, cw, (self.n_masks,), generator=gen)], 1)
        z = self.model.normalize(x)
        sal = torch.zeros(h, w, device=x.device, dtype=torch.float64)
        scores = []
        with torch.no_grad():
            for i in range(0, self.n_masks, self.batch_size):
                sl = slice(i, i + self.batch_size)
                m = rise_masks(grids[sl].to(x.device), shifts[sl].to(x.device), (h, w), self.mask_style)
                logits = self.model.net(z * m)
                p = logits.softmax(1)[:, target] if self.response == "prob" else logits[:, target].sigmoid()
                sal += (p.double().view(-1, 1, 1) * m[:, 0].double()).sum(0)
                scores.append(p.cpu())
        denom = self.n_masks * (self.p1 if self.normalize == "n_p1" else 1.0)
        return (sal / denom).float(), {"scores": torch.cat(scores), "mask_mean": float(grids.mean())}


@register("rise_torchray")
class RISETorchRay(RISE):
    """TorchRay's RISE preset: N = 8000, s = 7, p = 0.5, sigmoid scores, /N, reflect-padded grids cropped from one
    cell in (:func:`rise_masks`; the pointing game's RISE, appendix §10)."""

    def __init__(
        self,
        model,
        n_masks: int = 8000,
        cells: int = 7,
        p1: float = 0.5,
        response: str = "sigmoid",
        normalize: str = "n",
        mask_style: str = "torchray",
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, n_masks=n_masks, cells=cells, p1=p1, response=response, normalize=normalize,
                         mask_style=mask_style, seed=seed, batch_size=batch_size)
