"""Pointing game (Zhang et al. 2016) as TorchRay benchmarks it (appendix §10), and a synthetic check.

* The saliency map is resized (bilinear, ``align_corners=False``) to the **original image size**; the point is its
  argmax, the first maximum in row-major order.
* A hit means some ground-truth pixel lies at squared distance **strictly below** 15² from the point.
* The accuracy is the **mean of per-class accuracies** hits / (hits + misses), not the per-query accuracy.
* EP's pointing saliency is the sum of the area masks (resized to the image), blurred with σ = 0.09·min(H, W) and
  zero padding (:func:`ep_pointing_saliency`).

:func:`synthetic_pointing_check` pastes an object photo at a known place on a neutral canvas, so the ground truth is
known without a detection dataset; it checks the protocol end-to-end, it is NOT a reproduction of the VOC/COCO numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_image, check_int, check_range
from ..perturbations import gaussian_blur

__all__ = [
    "TORCHRAY_POINTING",
    "pointing_point",
    "pointing_hit",
    "boxes_to_mask",
    "ep_pointing_saliency",
    "PointingGame",
    "paste_object",
    "synthetic_pointing_check",
    "load_boxes",
    "pointing_input",
]

#: The official repository's pointing accuracies in %, all / difficult (facebookresearch/TorchRay:docs/pointing.csv
#: @6a198ee, appendix §1.2). Columns: VOC07 VGG16, VOC07 ResNet50, COCO14 VGG16, COCO14 ResNet50.
TORCHRAY_POINTING: dict[str, tuple[tuple[float, float], ...]] = {
    "center": ((69.6, 42.4), (69.6, 42.4), (27.8, 19.5), (27.8, 19.5)),
    "gradient": ((76.3, 56.9), (72.3, 56.8), (37.7, 31.4), (35.0, 29.4)),
    "deconvnet": ((67.5, 44.2), (68.6, 44.7), (30.7, 23.0), (30.0, 21.9)),
    "guided backprop": ((75.9, 53.0), (77.2, 59.4), (39.1, 31.4), (42.1, 35.3)),
    "excitation backprop": ((77.1, 56.6), (84.5, 70.8), (39.8, 32.8), (49.6, 43.9)),
    "contrastive EBP": ((79.9, 66.5), (90.7, 82.1), (49.7, 44.3), (58.5, 53.6)),
    "RISE": ((86.9, 75.1), (86.4, 78.8), (50.8, 45.3), (54.7, 50.0)),
    "Grad-CAM": ((86.6, 74.0), (90.4, 82.3), (54.2, 49.0), (57.3, 52.3)),
    "Extremal perturbation": ((88.0, 76.1), (88.9, 78.7), (51.5, 45.9), (56.5, 51.5)),
}
TORCHRAY_POINTING_COLUMNS = ("VOC07 VGG16", "VOC07 ResNet50", "COCO14 VGG16", "COCO14 ResNet50")


def _as_2d(saliency: Any) -> torch.Tensor:
    s = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, torch.Tensor) else saliency).float()
    while s.dim() > 2 and s.shape[0] == 1:
        s = s[0]
    if s.dim() != 2 or s.numel() == 0:
        raise ValueError(f"saliency has shape {tuple(s.shape)}; accepted values: an (H, W) map")
    return s


def _check_size(name: str, size: Any) -> tuple[int, int]:
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{name}={size!r} is not valid; accepted values: (H, W), two ints >= 1") from None
    return check_int(f"{name}[0]", h, 1), check_int(f"{name}[1]", w, 1)


def pointing_point(saliency: Any, image_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(row, col) of the first maximum (row-major) of ``saliency`` resized bilinearly to ``image_size`` = (H, W)."""
    s = _as_2d(saliency)
    if image_size is not None:
        image_size = _check_size("image_size", image_size)
    if image_size is not None and tuple(image_size) != tuple(s.shape):
        s = F.interpolate(s[None, None], size=image_size, mode="bilinear", align_corners=False)[0, 0]
    flat = s.flatten().cpu().numpy()
    if not np.isfinite(flat).any():
        raise ValueError("saliency is not valid; accepted values: a map with at least one finite value")
    idx = int(np.argmax(np.where(np.isfinite(flat), flat, -np.inf)))  # numpy: first maximum
    return idx // s.shape[1], idx % s.shape[1]


def pointing_hit(point: tuple[int, int], gt_mask: Any, tolerance: float = 15.0) -> bool:
    """True iff some ground-truth pixel lies at squared distance < tolerance² from ``point`` (strict, as TorchRay)."""
    check_range("tolerance", tolerance, 0.0)
    gt = _check_gt(gt_mask)
    ys, xs = np.nonzero(gt)
    if ys.size == 0:
        return False
    d2 = (ys - point[0]) ** 2 + (xs - point[1]) ** 2
    return bool((d2 < tolerance**2).any())


def _check_gt(gt_mask: Any) -> np.ndarray:
    """An (H, W) boolean mask: bools, or 0/1 numbers (a mask of other values is refused, not thresholded)."""
    a = np.asarray(gt_mask)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"gt_mask has shape {a.shape}; accepted values: an (H, W) boolean mask")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        raise ValueError(f"gt_mask has values other than 0/1 (dtype {a.dtype}); accepted values: an (H, W) boolean "
                         "mask")
    return a.astype(bool)


def boxes_to_mask(boxes: Sequence[Sequence[float]], image_size: tuple[int, int]) -> np.ndarray:
    """Union of boxes (x0, y0, x1, y1) in pixels, x1/y1 exclusive, as an (H, W) boolean mask (VOC ground truth)."""
    h, w = _check_size("image_size", image_size)
    m = np.zeros((h, w), dtype=bool)
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = _check_box(f"boxes[{i}]", b)
        m[max(y0, 0): max(min(y1, h), 0), max(x0, 0): max(min(x1, w), 0)] = True
    return m


def _check_box(name: str, box: Any) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) finite numbers with x0 < x1 and y0 < y1, rounded to pixels."""
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        vals = []
    if len(vals) != 4 or not all(np.isfinite(vals)) or not (vals[0] < vals[2] and vals[1] < vals[3]):
        raise ValueError(f"{name}={box!r} is not valid; accepted values: (x0, y0, x1, y1) finite pixels with "
                         "x0 < x1 and y0 < y1")
    x0, y0, x1, y1 = (int(round(v)) for v in vals)
    return x0, y0, x1, y1


def ep_pointing_saliency(masks: torch.Tensor, image_size: tuple[int, int] | None = None,
                         smooth: float = 0.09) -> torch.Tensor:
    """TorchRay's EP pointing saliency: area masks (K, H, W) resized to ``image_size``, summed, then blurred with
    σ = smooth·min(H, W) and zero padding (which pulls the argmax away from the border and breaks plateau ties)."""
    check_range("smooth", smooth, 0.0)
    m = torch.as_tensor(masks).float()
    if m.dim() == 2:
        m = m[None]
    if m.dim() != 3 or m.numel() == 0 or not bool(torch.isfinite(m).all()):
        raise ValueError(f"masks has shape {tuple(m.shape)}; accepted values: finite (K, H, W) or (H, W) masks")
    if image_size is not None:
        image_size = _check_size("image_size", image_size)
    if image_size is not None and tuple(image_size) != tuple(m.shape[-2:]):
        m = F.interpolate(m[:, None], size=image_size, mode="bilinear", align_corners=False)[:, 0]
    s = m.sum(0, keepdim=True)[None]
    if smooth > 0:
        s = gaussian_blur(s, smooth * min(s.shape[-2:]), pad="zeros")
    return s[0, 0]


@dataclass
class PointingGame:
    """Accumulates hits per class; :meth:`accuracy` is the mean of per-class accuracies (TorchRay)."""

    tolerance: float = 15.0
    hits: dict[Any, int] = field(default_factory=dict)
    misses: dict[Any, int] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tolerance = check_range("tolerance", self.tolerance, 0.0)

    def evaluate(self, saliency: Any, gt_mask: Any, cls: Any, image_id: str = "",
                 image_size: tuple[int, int] | None = None) -> bool:
        """Score one (image, class) query; ``image_size`` defaults to the ground-truth mask's size."""
        gt = _check_gt(gt_mask)
        point = pointing_point(saliency, image_size or gt.shape)
        hit = pointing_hit(point, gt, self.tolerance)
        self.hits[cls] = self.hits.get(cls, 0) + int(hit)
        self.misses[cls] = self.misses.get(cls, 0) + int(not hit)
        self.rows.append({"image": image_id, "class": cls, "row": point[0], "col": point[1], "hit": hit})
        return hit

    def per_class(self) -> dict[Any, float]:
        return {c: self.hits[c] / (self.hits[c] + self.misses[c]) for c in self.hits}

    def accuracy(self) -> float:
        """Mean over classes with at least one query of hits / (hits + misses); nan when empty."""
        pc = self.per_class()
        return float(np.mean(list(pc.values()))) if pc else float("nan")


def paste_object(obj: torch.Tensor, canvas_size: int = 224, obj_size: int = 96, top_left: tuple[int, int] | None = None,
                 background: float = 0.5, generator: torch.Generator | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Paste ``obj`` (3, h, w) in [0, 1], resized to ``obj_size``², onto a uniform grey canvas.

    Returns the (3, S, S) image and the (S, S) ground-truth mask of the pasted square. ``top_left`` (row, col)
    defaults to a seeded random position (``generator``).
    """
    check_image(obj, "obj")
    canvas_size = check_int("canvas_size", canvas_size, 1)
    obj_size = check_int("obj_size", obj_size, 1)
    check_range("background", background, 0.0, 1.0)
    if obj_size > canvas_size:
        raise ValueError(f"obj_size={obj_size!r} is not valid; accepted values: an int <= canvas_size={canvas_size}")
    if obj.dim() == 4:
        obj = obj[0]
    if top_left is not None:  # the object must fit on the canvas (a clipped paste would misplace the ground truth)
        if not isinstance(top_left, (tuple, list)) or len(top_left) != 2:
            raise ValueError(f"top_left={top_left!r} is not valid; accepted values: (row, col), two ints in "
                             f"[0, {canvas_size - obj_size}]")
        top_left = tuple(check_int(f"top_left[{i}]", v, 0, canvas_size - obj_size) for i, v in enumerate(top_left))
    o = F.interpolate(obj[None].float(), size=(obj_size, obj_size), mode="bilinear", align_corners=False,
                      antialias=True)[0].clamp(0, 1)
    if top_left is None:
        r, c = (int(v) for v in torch.randint(0, canvas_size - obj_size + 1, (2,), generator=generator))
    else:
        r, c = int(top_left[0]), int(top_left[1])
    img = torch.full((3, canvas_size, canvas_size), float(background))
    img[:, r: r + obj_size, c: c + obj_size] = o
    gt = np.zeros((canvas_size, canvas_size), dtype=bool)
    gt[r: r + obj_size, c: c + obj_size] = True
    return img, gt


def synthetic_pointing_check(
    images: torch.Tensor,
    labels: Sequence[int],
    saliency_fn: Callable[[torch.Tensor, int], Any],
    canvas_size: int = 224,
    obj_size: int = 96,
    tolerance: float = 15.0,
    seed: int = 0,
    image_ids: Sequence[str] | None = None,
) -> tuple[PointingGame, list[dict[str, Any]]]:
    """Pointing game on synthetic scenes: each object photo (N, 3, H, W) is pasted at a seeded random place on a
    grey canvas and ``saliency_fn(scene (1, 3, S, S), label)`` must point inside (within ``tolerance`` px) the
    pasted square. Returns the game (class-mean accuracy) and per-scene rows (including the scene tensors' boxes).
    """
    check_image(images, "images", batch=True)
    seed = check_int("seed", seed, 0)
    if len(labels) != images.shape[0] or (image_ids is not None and len(image_ids) != images.shape[0]):
        raise ValueError(f"labels has {len(labels)} entries; accepted values: {images.shape[0]} (one per image, as "
                         "image_ids)")
    gen = torch.Generator().manual_seed(seed)
    game = PointingGame(tolerance=tolerance)
    scenes = []
    for i in range(images.shape[0]):
        scene, gt = paste_object(images[i], canvas_size, obj_size, generator=gen)
        sal = saliency_fn(scene[None], int(labels[i]))
        iid = image_ids[i] if image_ids is not None else str(i)
        game.evaluate(sal, gt, int(labels[i]), image_id=iid)
        ys, xs = np.nonzero(gt)
        scenes.append({"image": iid, "scene": scene, "box": (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                                             int(ys.max()) + 1)})
    return game, scenes


def load_boxes(path: str | Path) -> dict[str, list[tuple[int, tuple[float, float, float, float]]]]:
    """Read a boxes CSV (columns ``file, class_index, x0, y0, x1, y1``, original-image pixels, x1/y1 exclusive).

    Returns {file name: [(class_index, box), ...]}; several rows per file/class form the union ground truth.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"boxes={str(path)!r} is not a file; accepted values: a CSV file,class_index,x0,y0,x1,y1")
    out: dict[str, list] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
                _check_box("box", box)
                cls = int(row["class_index"])
                if not row["file"] or cls < 0:
                    raise ValueError
                out.setdefault(Path(row["file"]).name, []).append((cls, box))
            except (KeyError, ValueError, TypeError):
                raise ValueError(f"{path.name}: row {row} is not valid; accepted values: "
                                 "file,class_index,x0,y0,x1,y1") from None
    return out


def pointing_input(image, short_side: int = 224) -> torch.Tensor:
    """TorchRay's pointing input: resize the shorter side to ``short_side`` (no crop) → (1, 3, h, w) in [0, 1]."""
    from torchvision.transforms import functional as TF

    img = TF.resize(image.convert("RGB"), short_side)
    return TF.to_tensor(img)[None]
