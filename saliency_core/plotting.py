"""One figure style for the whole book.

Conventions: signed maps on a symmetric diverging scale (``RdBu_r``, centred at 0); unsigned maps and masks on
a sequential scale from 0 (``magma``); galleries are rows = images, columns = methods, one colour bar per family;
curves come from tidy DataFrames through seaborn. Captions live in the book's markdown, not in titles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["use_style", "to_numpy_image", "show_map", "gallery", "overlay", "curves", "SEQUENTIAL", "DIVERGING"]

SEQUENTIAL = "magma"
DIVERGING = "RdBu_r"


def use_style(dpi: int = 90) -> None:
    """Set the book's matplotlib/seaborn style (seeded elsewhere; this only sets looks)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    mpl.rcParams.update({
        "figure.dpi": dpi,
        "savefig.dpi": 120,
        "image.interpolation": "nearest",
        "axes.titlesize": 9,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "figure.autolayout": False,
    })


def to_numpy_image(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(3, H, W)`` / ``(1, 3, H, W)`` tensor in [0, 1] → ``(H, W, 3)`` array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dim() == 4:
            x = x[0]
        x = x.permute(1, 2, 0).numpy()
    return np.clip(x, 0, 1)


def _as_np(m: torch.Tensor | np.ndarray) -> np.ndarray:
    return m.detach().cpu().float().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=float)


def show_map(ax: plt.Axes, m: torch.Tensor | np.ndarray, signed: bool | None = None, vmax: float | None = None,
             image: torch.Tensor | np.ndarray | None = None, alpha: float = 1.0):
    """Draw a saliency map on ``ax``: diverging symmetric scale if signed, else sequential from 0 (from the
    minimum if an unsigned map is negative somewhere)."""
    a = _as_np(m)
    if signed is None:
        signed = bool((a < 0).any() and (a > 0).any())
    if image is not None:
        ax.imshow(to_numpy_image(image))
    if signed:
        v = vmax if vmax is not None else float(np.percentile(np.abs(a), 99.5)) or 1.0
        im = ax.imshow(a, cmap=DIVERGING, vmin=-v, vmax=v, alpha=alpha)
    else:
        # from 0 for a non-negative map; from its minimum for a score that is relevant when high but lives below 0
        # (e.g. the invariant perturbation's -mean(w))
        lo = min(0.0, float(a.min()))
        v = vmax if vmax is not None else float(a.max())
        if v <= lo:  # constant map
            v = lo + 1.0
        im = ax.imshow(a, cmap=SEQUENTIAL, vmin=lo, vmax=v, alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return im


def overlay(ax: plt.Axes, image: torch.Tensor, m: torch.Tensor | np.ndarray, alpha: float = 0.55):
    """Image with a sequential-scale map on top."""
    return show_map(ax, m, signed=False, image=image, alpha=alpha)


def _scaled(a: np.ndarray, signed: bool) -> np.ndarray:
    """Per-map scaling behind :func:`gallery`'s shared colour bars: signed → [-1, 1] by the 99.5th percentile of
    |a|; unsigned → [0, 1] from 0 (or the minimum, for a negative score) to the maximum."""
    if signed:
        v = float(np.percentile(np.abs(a), 99.5)) or 1.0
        return np.clip(a / v, -1.0, 1.0)
    lo = min(0.0, float(a.min()))
    span = float(a.max()) - lo
    return (a - lo) / span if span > 0 else np.zeros_like(a)


def gallery(
    images: Sequence[torch.Tensor],
    maps: Mapping[str, Sequence[torch.Tensor | np.ndarray]],
    row_labels: Sequence[str] | None = None,
    signed: Mapping[str, bool] | None = None,
    normalize: str = "per_map",
    size: float = 1.7,
    show_image: bool = True,
    colorbar: bool = True,
):
    """Rows = images, columns = methods (first column the image), one colour bar per family (signed, unsigned).

    ``normalize="per_map"`` scales each map to its own max (or symmetric 99.5-percentile when signed) —
    saliency maps of different methods are not on a common scale, so the colour bars read "0 → the map's own
    maximum" and "−v → +v". Returns the figure.
    """
    if normalize != "per_map":
        raise ValueError(f"normalize={normalize!r} is not valid; accepted values: per_map")
    methods = list(maps)
    ncol = len(methods) + int(show_image)
    fig, axes = plt.subplots(len(images), ncol, figsize=(size * ncol + (0.6 if colorbar else 0), size * len(images)),
                             squeeze=False)
    families: dict[bool, Any] = {}
    for i, img in enumerate(images):
        c0 = 0
        if show_image:
            axes[i, 0].imshow(to_numpy_image(img))
            axes[i, 0].set_xticks([])
            axes[i, 0].set_yticks([])
            axes[i, 0].grid(False)
            if row_labels is not None:
                axes[i, 0].set_ylabel(row_labels[i], fontsize=8)
            c0 = 1
        for j, name in enumerate(methods):
            a = _as_np(maps[name][i])
            s = None if signed is None else signed.get(name)
            if s is None:
                s = bool((a < 0).any() and (a > 0).any())
            families[s] = show_map(axes[i, c0 + j], _scaled(a, s), signed=s, vmax=1.0)
            if i == 0:
                axes[i, c0 + j].set_xlabel(name, fontsize=8)
                axes[i, c0 + j].xaxis.set_label_position("top")
    if show_image and row_labels is None:
        axes[0, 0].set_xlabel("image", fontsize=8)
        axes[0, 0].xaxis.set_label_position("top")
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    if colorbar and families:
        fig_w = fig.get_figwidth()
        fig.subplots_adjust(right=1 - (0.75 * len(families)) / fig_w)
        top, bottom = axes[0, -1].get_position().y1, axes[-1, -1].get_position().y0
        x0 = axes[0, -1].get_position().x1
        for k, (is_signed, im) in enumerate(sorted(families.items())):
            cax = fig.add_axes((x0 + (0.12 + 0.75 * k) / fig_w, bottom, 0.1 / fig_w, top - bottom), label="colorbar")
            cb = fig.colorbar(im, cax=cax)
            cb.set_ticks([-1, 0, 1] if is_signed else [0, 1])
            cb.set_ticklabels(["−max", "0", "+max"] if is_signed else ["0", "max"])
            cb.ax.tick_params(labelsize=6)
            cb.set_label("signed" if is_signed else "unsigned", fontsize=7, labelpad=1)
    return fig


def curves(df, x: str, y: str, hue: str | None = None, ax: plt.Axes | None = None, legend_values=None,
           errorbar=("se", 1), **kw):
    """Line plot of a tidy DataFrame with seaborn; ``legend_values`` maps hue level → a number shown in the legend
    (e.g. the AUC)."""
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    df = df.reset_index(drop=True)  # concatenated frames repeat index labels, which seaborn cannot reindex
    sns.lineplot(data=df, x=x, y=y, hue=hue, ax=ax, errorbar=errorbar, **kw)
    if legend_values is not None and hue is not None and ax.get_legend() is not None:
        handles, labels = ax.get_legend_handles_labels()
        labels = [f"{lab} ({legend_values[lab]:.3f})" if lab in legend_values else lab for lab in labels]
        ax.legend(handles, labels, fontsize=8, frameon=False)
    return ax
