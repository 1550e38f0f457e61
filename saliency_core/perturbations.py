"""Shared mask and perturbation operators (imports neither methods nor metrics).

Blur kernels and fixed blur baselines, mask upsampling, total variation (TV) and bilateral TV,
grid difference matrices. Method-specific operators (EP's blur pyramid and smooth-max mask generator,
the vecsort area regulariser) live here too, so every method and protocol shares one implementation.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from .checks import check_choice, check_range

__all__ = [
    "gaussian_kernel1d",
    "gaussian_blur",
    "blur_baseline",
    "upsample_mask",
    "blur_pyramid",
    "fade_pyramid",
    "pyramid_apply",
    "PyramidInterpolator",
    "SmoothMaskGenerator",
    "clamp01",
    "area_reference",
    "vecsort_area_loss",
    "tv_norm",
    "bilateral_tv",
    "bilateral_weights",
    "grid_difference_matrix",
    "compose",
    "igospp_btv",
    "rise_blur_kernel",
    "rise_blur",
]


def gaussian_kernel1d(sigma: float, radius: int | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian exp(−t²/2σ²)/Z, t = −r..r; r defaults to ⌈4σ⌉ (TorchRay's half-width)."""
    check_range("sigma", sigma, 0.0, low_inclusive=False)
    r = int(math.ceil(4 * sigma)) if radius is None else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int | None = None, pad: str = "zeros") -> torch.Tensor:
    """Separable Gaussian blur of ``x`` ``(N, C, H, W)``, per channel.

    ``pad="zeros"`` pads with 0 (TorchRay's choice, in normalised space borders fade to the mean colour);
    ``"reflect"`` mirrors without repeating the edge (OpenCV's BORDER_REFLECT_101); ``"replicate"``.
    ``sigma == 0`` returns ``x`` unchanged.
    """
    check_choice("pad", pad, ("zeros", "reflect", "replicate"))
    if sigma == 0:
        return x
    k = gaussian_kernel1d(sigma, radius, x.dtype, x.device)
    r = (k.numel() - 1) // 2
    c = x.shape[1]
    kh = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    kv = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    if pad == "zeros":
        y = F.conv2d(x, kh, padding=(0, r), groups=c)
        return F.conv2d(y, kv, padding=(r, 0), groups=c)
    mode = "reflect" if pad == "reflect" else "replicate"
    if mode == "reflect" and (r >= x.shape[-1] or r >= x.shape[-2]):
        # reflect padding needs r < size: fold repeatedly (reflect-101 extended periodically)
        y = _reflect_pad_large(x, r)
        y = F.conv2d(y, kh, groups=c)
        return F.conv2d(y, kv, groups=c)
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), kh, groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), kv, groups=c)


def _reflect_pad_large(x: torch.Tensor, r: int) -> torch.Tensor:
    h, w = x.shape[-2:]

    def idx(n: int) -> torch.Tensor:
        i = torch.arange(-r, n + r, device=x.device)
        period = 2 * (n - 1) if n > 1 else 1
        i = torch.remainder(i, period)
        return torch.where(i >= n, period - i, i)

    return x[..., idx(h)[:, None], idx(w)[None, :]]


def blur_baseline(x: torch.Tensor, ksize: int = 51, sigma: float = 50.0, pad: str = "reflect") -> torch.Tensor:
    """Fixed-kernel blur, ``ksize``×``ksize`` Gaussian with std ``sigma`` (I-GOS/iGOS++ baseline: 51, σ 50).

    Matches ``cv2.GaussianBlur(img, (ksize, ksize), sigma)`` with OpenCV's default reflect-101 border when
    ``pad="reflect"``. Applied per channel in whatever space ``x`` lives in (blur is linear, so blurring
    [0, 1] pixels and normalising afterwards equals normalising first).
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize={ksize!r} is not valid; accepted values: an odd int >= 1")
    return gaussian_blur(x, sigma, radius=(ksize - 1) // 2, pad=pad)


def upsample_mask(m: torch.Tensor, size: int | tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear upsampling of masks ``(N, 1, h, w)`` to ``size``.

    ``align_corners=True`` is ``nn.UpsamplingBilinear2d`` (I-GOS/iGOS++); ``False`` is TorchRay's resize.
    """
    if isinstance(size, int):
        size = (size, size)
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return F.interpolate(m, size=size, mode="bilinear", align_corners=align_corners)


# --------------------------------------------------------------------------------------------
# Extremal-perturbation operators (appendix §1.1): perturbation pyramids, smooth-max masks, vecsort area
# --------------------------------------------------------------------------------------------
def blur_pyramid(x: torch.Tensor, levels: int = 8, sigma_max: float = 20.0, pad: str = "zeros") -> torch.Tensor:
    """Blur pyramid of ``x`` ``(N, C, H, W)`` → ``(levels, N, C, H, W)``.

    Level l is ``x`` blurred with σ_l = (1 − l/(levels−1))·σ_max (half-width ⌈4σ⌉): level 0 is the most blurred,
    level ``levels − 1`` is ``x`` itself. TorchRay applies it to the *normalised* image with zero padding, so
    blurred borders fade to the mean colour (``pad="zeros"``; ``"reflect"`` avoids that).
    """
    if int(levels) != levels or levels < 2:
        raise ValueError(f"levels={levels!r} is not valid; accepted values: an int >= 2")
    check_range("sigma_max", sigma_max, 0.0)
    out = []
    for lvl in range(levels):
        sigma = (1.0 - lvl / (levels - 1)) * sigma_max
        out.append(gaussian_blur(x, sigma, pad=pad) if sigma > 0 else x)
    return torch.stack(out)


def fade_pyramid(x: torch.Tensor, levels: int = 8) -> torch.Tensor:
    """"Fade" pyramid: level l is x·l/(levels−1), i.e. a fade to 0 (the mean colour in normalised space)."""
    if int(levels) != levels or levels < 2:
        raise ValueError(f"levels={levels!r} is not valid; accepted values: an int >= 2")
    w = torch.linspace(0.0, 1.0, levels, dtype=x.dtype, device=x.device).view(-1, *([1] * x.dim()))
    return w * x.unsqueeze(0)


def pyramid_apply(pyramid: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-pixel interpolation in a pyramid by mask value.

    ``pyramid``: ``(L, 1, C, H, W)`` or ``(L, C, H, W)`` (one image); ``m``: ``(K, 1, H, W)`` in [0, 1].
    With w = m·(L−1), k = min(⌊w⌋, L−2), t = w − k the output is (1−t)·P_k + t·P_{k+1}, so m = 1 gives the
    top level (the clean image) and m = 0 the bottom one (the most perturbed). Gradients flow to ``m``.
    """
    if pyramid.dim() == 5:
        if pyramid.shape[1] != 1:
            raise ValueError("pyramid_apply takes the pyramid of ONE image: (L, 1, C, H, W) or (L, C, H, W)")
        pyramid = pyramid[:, 0]
    n_levels, c = pyramid.shape[0], pyramid.shape[1]
    w = m * (n_levels - 1)  # no clamp here: it would zero the gradient of saturated (m = 1) pixels
    k = w.detach().floor().clamp_(0, n_levels - 2)
    t = w - k
    idx = k.long().expand(m.shape[0], c, *m.shape[-2:])
    lo = torch.gather(pyramid[:-1], 0, idx)
    hi = torch.gather(pyramid[1:], 0, idx)
    return lo + t * (hi - lo)


class PyramidInterpolator:
    """:func:`pyramid_apply` for many masks on one fixed pyramid (EP's inner loop).

    The tables P_k and D_k = P_{k+1} − P_k are stacked once as ``(L−1, 2C, H, W)``, so each call is one gather
    and one multiply-add, with a hand-written backward ∂out/∂m = (L−1)·Σ_c g_c·D_k,c. ``flip=True`` returns the
    horizontally flipped result, computed from a flipped table and the flipped mask (no flip of the 3-channel
    output and its gradient). Forward values and mask gradients equal :func:`pyramid_apply`'s bit for bit; the
    pyramid is treated as a constant (no gradient to it).
    """

    def __init__(self, pyramid: torch.Tensor) -> None:
        if pyramid.dim() == 5:
            if pyramid.shape[1] != 1:
                raise ValueError("PyramidInterpolator takes the pyramid of ONE image: (L, 1, C, H, W) or (L, C, H, W)")
            pyramid = pyramid[:, 0]
        pyramid = pyramid.detach()
        self.n_levels = int(pyramid.shape[0])
        if self.n_levels < 2:
            raise ValueError(f"pyramid has {self.n_levels} levels; accepted values: >= 2")
        self.table = torch.cat([pyramid[:-1], pyramid[1:] - pyramid[:-1]], dim=1).contiguous()
        self._flipped: torch.Tensor | None = None

    def __call__(self, m: torch.Tensor, flip: bool = False) -> torch.Tensor:
        table = self.table
        if flip:
            if self._flipped is None:
                self._flipped = self.table.flip(-1).contiguous()
            table, m = self._flipped, m.flip(-1)
        return _PyramidLerp.apply(m, table, self.n_levels)


class _PyramidLerp(torch.autograd.Function):
    """out = P_k + t·D_k with w = m·(L−1), k = clamp(⌊w⌋, 0, L−2), t = w − k (the ops of :func:`pyramid_apply`)."""

    @staticmethod
    def forward(ctx, m, table, n_levels):
        c = table.shape[1] // 2
        w = m * (n_levels - 1)
        k = w.floor().clamp_(0, n_levels - 2)
        t = w - k
        g = torch.gather(table, 0, k.long().expand(m.shape[0], 2 * c, *m.shape[-2:]))
        lo, d = g[:, :c], g[:, c:]
        out = (t * d).add_(lo)
        ctx.save_for_backward(d)
        ctx.n_levels = n_levels
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (d,) = ctx.saved_tensors
        return (grad_out * d).sum(1, keepdim=True) * (ctx.n_levels - 1), None, None


def clamp01(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] with the gradient passing on the closed interval (PyTorch 1.x semantics, which TorchRay ran
    under); recent ``torch.clamp`` gives a zero gradient at the bounds, freezing masks that reach exactly 1."""
    return torch.where((x >= 0) & (x <= 1), x, x.clamp(0.0, 1.0))


class SmoothMaskGenerator:
    """Smooth max-convolution mask family of Extremal Perturbations (appendix §1.1, item 2).

    Parameters m̄ live on a ⌈H/step⌉×⌈W/step⌉ grid; parameter (i, j) sits at image pixel (step·i, step·j).
    An output pixel p pools the (2r+1)² nearest parameters, r = 1 + ⌈σ/step⌉, each weighted by
    k(d/σ) = exp(−2·max(d/σ − ½, 0)²) (d = Euclidean distance in pixels from p to the parameter's position), with the
    smooth max Σ_k v_k·softmax(coldness·v)_k of the weighted values v_k. Parameters outside the grid count as 0
    (zero padding of 1 + ⌈(margin + σ)/step⌉ cells). The full output covers ``margin`` pixels before the image and
    extends past its end (260×260 for 224², step 7, σ 21, margin 21); it is clamped to [0, 1] and the image part
    is ``full[..., margin:margin+H, margin:margin+W]``.

    ``gen(params)`` with params ``(K, 1, h, w)`` returns ``(full, crop)``. Two exact evaluations of the same sums:

    * the default (:class:`_SmoothMaxFold`) computes each parameter's terms e^{βv} and v·e^{βv} over its window of
      pixels and adds them into the output images (a stride-``step`` transposed convolution, "fold"). A zero-padding
      tap adds exactly e⁰ = 1 and 0, so it is counted instead of computed (≈30 % of the taps at 224²), and the
      kernel is symmetric in x, so only |dx| is tabulated (35 of the 63 columns of a window). exp is evaluated as
      exp2 with log₂e folded into the weights (a vectorised polynomial on every CPU, whereas ``torch.exp`` goes to
      the math library's exp, which is slow on some CPUs);
    * when β·max|m̄| could overflow exp (never in EP, whose parameters stay in [0, 1]), the per-block evaluation
      with a per-pixel log-sum-exp shift (:class:`_SmoothMaxPool`).

    Both have hand-written backward passes that recompute the exponentials in cache-sized chunks instead of storing
    them. The two agree with the softmax formula to float rounding (tests), not bit for bit (summation order).
    """

    #: rows of parameters per chunk of the fold (a 224² image: 16 rows ≈ 0.5 MB per intermediate in float32)
    fold_rows = 16
    #: target number of elements of one chunk's (blocks, step², taps) intermediates in the shifted evaluation
    chunk_elements = 1 << 17

    def __init__(self, shape: tuple[int, int] | int = 224, step: int = 7, sigma: float = 21.0,
                 coldness: float = 20.0, margin: float | None = None) -> None:
        if isinstance(shape, int):
            shape = (shape, shape)
        if int(step) != step or step < 1:
            raise ValueError(f"step={step!r} is not valid; accepted values: an int >= 1")
        check_range("sigma", sigma, 0.0, low_inclusive=False)
        check_range("coldness", coldness, 0.0, low_inclusive=False)
        self.shape = (int(shape[0]), int(shape[1]))
        self.step, self.sigma, self.coldness = int(step), float(sigma), float(coldness)
        self.margin = int(round(self.sigma if margin is None else margin))
        self.radius = 1 + int(math.ceil(self.sigma / self.step))
        self.padding = 1 + int(math.ceil((self.margin + self.sigma) / self.step))
        self.param_shape = tuple(int(math.ceil(z / self.step)) for z in self.shape)
        taps = 2 * self.radius + 1
        # blocks of `step` output pixels; block q's window is padded parameter rows q..q+2r
        self.blocks = tuple(z + 2 * self.padding - taps + 1 for z in self.param_shape)
        self.full_shape = tuple(self.step * b - self.step + 1 for b in self.blocks)
        # output row p = step·q + u is at image row p − margin; the window's tap k ∈ [−r, r] is parameter
        # q + k + r − padding, at image row step·(q + k + r − padding) → offset d = u − step·k + step·(padding − r)
        # − margin, independent of q, so one (taps², step, step) weight pattern serves every block. Per axis the
        # offsets d from a parameter to the pixels it reaches are [d_lo, d_hi] = [step·(padding − 2r) − margin,
        # step·(padding + 1) − margin − 1] ([−28, 34] for the defaults).
        self.offsets = (self.step * (self.padding - 2 * self.radius) - self.margin,
                        self.step * (self.padding + 1) - self.margin - 1)
        off = self.step * (self.padding - self.radius) - self.margin
        u = torch.arange(self.step, dtype=torch.float64)
        k = torch.arange(-self.radius, self.radius + 1, dtype=torch.float64)
        d1 = u[None, :] - self.step * k[:, None] + off  # (taps, step)
        self.weight = self._kernel(d1[:, None, :, None], d1[None, :, None, :]).reshape(taps * taps, self.step,
                                                                                       self.step).float()
        self._scaled: dict = {}
        self._folds: dict = {}
        if self.margin + self.shape[0] > self.full_shape[0] or self.margin + self.shape[1] > self.full_shape[1]:
            raise ValueError(f"sigma={sigma!r} with step={step!r} is not valid for the smooth mask (its padded "
                             f"output {self.full_shape} is shorter than margin + image {self.margin} + {self.shape}); "
                             "accepted values: another sigma or step, e.g. sigma = 3·step (TorchRay: 21 and 7)")

    def _kernel(self, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """k(d/σ) = exp(−2·max(d/σ − ½, 0)²) in float64, d = √(dy² + dx²)."""
        z = torch.sqrt(dy**2 + dx**2) / self.sigma
        return torch.exp(-2.0 * (z - 0.5).clamp(min=0.0) ** 2)

    def _scaled_weight(self, params: torch.Tensor) -> torch.Tensor:
        """coldness·w as a (step², taps²) matrix (pixel-in-block × tap), cached per device and dtype."""
        key = (params.device, params.dtype)
        if key not in self._scaled:
            w = self.weight.to(dtype=torch.float64).reshape(self.weight.shape[0], -1).t() * self.coldness
            self._scaled[key] = w.to(device=params.device, dtype=params.dtype).contiguous()
        return self._scaled[key]

    def _fold(self, params: torch.Tensor) -> _FoldTables:
        key = (params.device, params.dtype)
        if key not in self._folds:
            self._folds[key] = _FoldTables(self, params.dtype, params.device)
        return self._folds[key]

    def __call__(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if params.dim() != 4 or params.shape[1] != 1 or tuple(params.shape[-2:]) != self.param_shape:
            raise ValueError(f"params has shape {tuple(params.shape)}; accepted values: (K, 1, {self.param_shape[0]}, "
                             f"{self.param_shape[1]})")
        if self.coldness * float(params.detach().abs().max()) <= 0.5 * math.log(torch.finfo(params.dtype).max):
            full = _SmoothMaxFold.apply(params[:, 0], self._fold(params), self.fold_rows).unsqueeze(1)
        else:
            full = clamp01(self._blockwise(params))
        mg = self.margin
        crop = full[..., mg : mg + self.shape[0], mg : mg + self.shape[1]]
        return full, crop

    def _blockwise(self, params: torch.Tensor) -> torch.Tensor:
        """The unclamped smooth max block by block, exponents shifted per pixel (any parameter range)."""
        n = params.shape[0]
        taps = 2 * self.radius + 1
        by, bx = self.blocks
        st = self.step
        # (K, taps², by·bx) → block-major, taps last: (K·by·bx, taps²)
        cols = F.unfold(params, taps, padding=self.padding).transpose(1, 2).reshape(n * by * bx, taps * taps)
        cols = cols.contiguous()  # the reshape of a single image is a strided view: the chunks need rows
        bw = self._scaled_weight(params)
        chunk = max(1, self.chunk_elements // bw.numel())
        pooled = _SmoothMaxPool.apply(cols, bw, self.coldness, chunk)  # (K·by·bx, step²)
        pooled = pooled.view(n, by, bx, st, st).permute(0, 1, 3, 2, 4).reshape(n, 1, by * st, bx * st)
        return pooled[..., : self.full_shape[0], : self.full_shape[1]]


class _FoldTables:
    """Constant tables of :class:`_SmoothMaxFold` for one generator, dtype and device.

    Per axis a parameter at image position step·i reaches the pixels at offsets d ∈ [d_lo, d_hi]; output pixels
    live on a canvas with ``o0`` extra leading rows/columns, so that every window fits. The vertical offsets are
    tabulated signed, d_y = d_lo + step·t + u (t < taps, u < step), the horizontal ones as |d_x| < ``A``
    (``plus_runs`` and ``minus_cols``: the views of the horizontal fold).
    """

    def __init__(self, gen: SmoothMaskGenerator, dtype: torch.dtype, device) -> None:
        st, taps = gen.step, 2 * gen.radius + 1
        h, w = gen.param_shape
        self.dtype, self.device, self._buffers = dtype, device, {}
        dlo, dhi = gen.offsets
        self.step, self.taps, self.h, self.w = st, taps, h, w
        self.full = gen.full_shape
        self.A = a_n = max(dhi, -dlo) + 1
        self.o0 = o0 = max(0, -(gen.margin + dlo))
        self.rows = o0 + max(gen.full_shape[0], gen.margin + st * (h - 1) + dhi + 1)
        self.cols = o0 + max(gen.full_shape[1], gen.margin + st * (w - 1) + dhi + 1)
        self.b0 = o0 + gen.margin + dlo  # canvas row of a parameter row's first window row (t = u = 0)
        # horizontal fold: offset +|d_x| = a of parameter column j lands on canvas column o0 + margin + step·j + a;
        # the offsets a0 .. a0+n−1 that share ⌊a/step⌋ go in one strided view (``plus_runs``: (a0, n, first column));
        # −|d_x| one offset at a time (``minus_cols``: (a, first column)), its columns decrease with a
        self.plus_runs = self._runs(0, dhi, o0 + gen.margin)
        self.minus_cols = [(a, o0 + gen.margin - a) for a in range(1, -dlo + 1)]
        self.beta = gen.coldness
        self.beta2 = gen.coldness / math.log(2.0)  # β·log₂e: e^{βv} = 2^{β₂v}
        dy = torch.arange(dlo, dhi + 1, dtype=torch.float64).view(taps, st, 1, 1)
        ax = torch.arange(a_n, dtype=torch.float64).view(1, 1, 1, a_n)
        wt = gen._kernel(dy, ax).float().double()  # the block path's float32 weights
        # (taps, step, w·A): tiled over the parameter columns, so that every product runs over long contiguous rows
        self.bw2 = (wt * self.beta2).expand(taps, st, w, a_n).reshape(taps, st, w * a_n).to(dtype=dtype, device=device)
        self.wt = wt.reshape(taps, st * a_n).to(dtype=dtype, device=device)  # (taps, step·A)
        self.bw2_col = self.bw2[:, :, :a_n].reshape(taps, st * a_n).contiguous()  # β₂k of one column: (taps, step·A)
        # taps of a canvas pixel that fall on zero padding: each adds e⁰ = 1 to the denominator
        ny = self._reached(self.rows, h, gen.margin, dlo, dhi)
        nx = self._reached(self.cols, w, gen.margin, dlo, dhi)
        self.n_pad = (taps * taps - ny.view(-1, 1) * nx.view(1, -1)).to(dtype=dtype, device=device)  # (rows, cols)

    def _runs(self, lo: int, hi: int, base: int) -> list[tuple[int, int, int]]:
        """(a0, n, x0) per run of table indices lo..hi that share t = a // step: index a of column j goes to canvas
        column base + step·j + a."""
        st = self.step
        return [(a0, min(hi + 1, (a0 // st + 1) * st) - a0, base + a0)
                for a0 in [lo] + list(range((lo // st + 1) * st, hi + 1, st))]

    def buffer(self, name: str, *shape: int, zero: bool = False) -> torch.Tensor:
        """A work buffer kept between calls (large temporaries allocated afresh each iteration cost page faults);
        its previous content is overwritten, or zeroed with ``zero=True``."""
        buf = self._buffers.get(name)
        if buf is None or tuple(buf.shape) != shape:
            buf = self._buffers[name] = torch.empty(shape, dtype=self.dtype, device=self.device)
        return buf.zero_() if zero else buf

    def run_view(self, canvas: torch.Tensor, n: int, x0: int) -> torch.Tensor:
        """The (2, K, rows, w, n) view of canvas columns x0 + step·j + i, j < w, i < n (canvas: (2, K, rows, cols))."""
        s0, s1, sr, _ = canvas.stride()
        return canvas.as_strided((2, canvas.shape[1], self.rows, self.w, n), (s0, s1, sr, self.step, 1),
                                 canvas.storage_offset() + x0)

    def col_view(self, canvas: torch.Tensor, x0: int) -> torch.Tensor:
        """The (2, K, rows, w) view of canvas columns x0 + step·j, j < w."""
        return canvas[..., x0 : x0 + self.step * (self.w - 1) + 1 : self.step]

    def _reached(self, n: int, params: int, margin: int, dlo: int, dhi: int) -> torch.Tensor:
        d = torch.arange(n).view(-1, 1) - self.o0 - margin - self.step * torch.arange(params).view(1, -1)
        return ((d >= dlo) & (d <= dhi)).sum(1)


class _SmoothMaxFold(torch.autograd.Function):
    """Smooth max by parameter windows: out(p) = Σ_j v_j e^{βv_j} / (n_pad(p) + Σ_j e^{βv_j}), v_j = m̄_j·k(p − p_j).

    ``params`` (K, h, w) → clamped (K, H', W'). Forward: per chunk of parameter rows and vertical tap t, the terms
    e = 2^{β₂ v} and v·e of the window rows t·step..t·step+step−1 are added into per-row images (vertical fold),
    whose columns are then added at x ± |d_x| (horizontal fold). Backward (∂out/∂m̄_j = Σ_p g·k·e·(1 + β(v − out))
    /den): the images a = g/den and b = a(1 − β·out) are gathered back over the same windows (the transpose of the
    horizontal fold), the window rows are strided views of them, and per chunk
    ∂m̄_j = Σ_window k·e·(b + βv·a), with k contracted by a matrix-vector product.
    """

    @staticmethod
    def forward(ctx, params, tab, rows):
        n = params.shape[0]
        st, taps, h, w, a_n = tab.step, tab.taps, tab.h, tab.w, tab.A
        rows = max(1, min(int(rows), h))
        c = params.reshape(n, h, 1, w, 1).expand(n, h, 1, w, a_n).reshape(n, h, 1, w * a_n)
        acc = tab.buffer("acc", 2, n, tab.rows, w * a_n, zero=True)  # Σ e, Σ β₂v·e per canvas row, (column, |d_x|)
        buf = tab.buffer("terms", 2, n, rows, st, w * a_n)
        for j0 in range(0, h, rows):  # rows of parameters outermost: their window rows of acc stay in cache over t
            k = min(rows, h - j0)
            q = buf[:, :, :k]
            for t in range(taps):
                torch.mul(c[:, j0 : j0 + k], tab.bw2[t], out=q[1])  # β₂v
                torch.exp2(q[1], out=q[0])
                q[1].mul_(q[0])
                r0 = tab.b0 + st * (t + j0)
                acc[:, :, r0 : r0 + st * k].add_(q.view(2, n, st * k, w * a_n))
        acc = acc.view(2, n, tab.rows, w, a_n)
        canvas = tab.buffer("canvas", 2, n, tab.rows, tab.cols, zero=True)
        for a0, k, x0 in tab.plus_runs:
            tab.run_view(canvas, k, x0).add_(acc[..., a0 : a0 + k])
        for a, x0 in tab.minus_cols:
            tab.col_view(canvas, x0).add_(acc[..., a])
        o0, (fy, fx) = tab.o0, tab.full
        win = (slice(None), slice(o0, o0 + fy), slice(o0, o0 + fx))
        den = canvas[0].add_(tab.n_pad)[win]
        out = canvas[1][win].div_(den).div_(tab.beta2).contiguous()
        den = den.contiguous()
        ctx.save_for_backward(params, den, out)
        ctx.tab, ctx.rows = tab, rows
        return out.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad):
        params, den, out = ctx.saved_tensors
        tab, rows = ctx.tab, ctx.rows
        n = params.shape[0]
        st, taps, h, w, a_n = tab.step, tab.taps, tab.h, tab.w, tab.A
        a_img = torch.where((out >= 0) & (out <= 1), grad, 0.0).div_(den)  # clamp01: gradient on [0, 1]
        b_img = (1.0 - tab.beta * out).mul_(a_img)
        o0, (fy, fx) = tab.o0, tab.full
        g_c = tab.buffer("canvas", 2, n, tab.rows, tab.cols, zero=True)
        g_c[0, :, o0 : o0 + fy, o0 : o0 + fx] = b_img
        g_c[1, :, o0 : o0 + fy, o0 : o0 + fx] = a_img
        pool = tab.buffer("acc", 2, n, tab.rows, w * a_n, zero=True).view(2, n, tab.rows, w, a_n)  # b, a gathered
        for a0, k, x0 in tab.plus_runs:
            pool[..., a0 : a0 + k].add_(tab.run_view(g_c, k, x0))
        for a, x0 in tab.minus_cols:
            pool[..., a].add_(tab.col_view(g_c, x0))
        c = params.reshape(n, h, w, 1)
        gc = params.new_zeros(n, h, w)
        v2_buf = tab.buffer("v", n * rows * w * st * a_n)  # contiguous prefixes serve the last, shorter chunk
        z_buf = tab.buffer("z", n * rows * w * st * a_n)
        ln2 = math.log(2.0)
        for j0 in range(0, h, rows):
            k = min(rows, h - j0)
            vk = v2_buf[: n * k * w * st * a_n].view(n, k, w, st * a_n)
            zk = z_buf[: n * k * w * st * a_n].view(n, k, w, st, a_n)
            for t in range(taps):
                r0 = tab.b0 + st * (t + j0)
                g = pool[:, :, r0 : r0 + st * k].view(2, n, k, st, w, a_n).transpose(3, 4)  # (2, K, k, w, st, A)
                torch.mul(c[:, j0 : j0 + k], tab.bw2_col[t], out=vk)  # β₂v
                torch.addcmul(g[0], vk.view(n, k, w, st, a_n), g[1], value=ln2, out=zk)  # b + βv·a
                zk.mul_(torch.exp2_(vk).view(n, k, w, st, a_n))
                gc[:, j0 : j0 + k].add_(torch.mv(zk.view(-1, st * a_n), tab.wt[t]).view(n, k, w))
        return gc, None, None


class _SmoothMaxPool(torch.autograd.Function):
    """Smooth max per output pixel of one block: out_u = Σ_k v_uk e^{βv_uk} / Σ_k e^{βv_uk}, v_uk = c_k·w_uk.

    ``cols`` (B, T): the T parameters of each block; ``bw`` (U, T) = β·w for the U pixels of a block. Analytic
    gradient ∂out_u/∂v_uk = s_uk (1 + β(v_uk − out_u)), s = softmax(βv). The (B, U, T) intermediates are built
    ``chunk`` blocks at a time in reused buffers (cache-resident), and recomputed in the backward pass rather than
    stored. Each pixel's exponents are shifted by their maximum (the log-sum-exp shift, saved for the backward
    pass; a global or per-block shift could underflow all of a pixel's terms): this path serves the parameter
    ranges where exp could overflow.
    """

    @staticmethod
    def forward(ctx, cols, bw, beta, chunk):
        n_blocks, taps = cols.shape
        n_pix = bw.shape[0]
        shift = cols.new_empty(n_blocks, n_pix, 1)  # per pixel: max_k β·v_uk
        den = cols.new_empty(n_blocks, n_pix)
        out = cols.new_empty(n_blocks, n_pix)
        ch = min(chunk, n_blocks)
        u_buf = cols.new_empty(ch, n_pix, taps)
        e_buf = cols.new_empty(ch, n_pix, taps)
        for c3, den_i, out_i, sh in zip(cols.unsqueeze(1).split(ch), den.split(ch), out.split(ch), shift.split(ch),
                                        strict=True):
            u, e = (u_buf, e_buf) if c3.shape[0] == ch else (u_buf[: c3.shape[0]], e_buf[: c3.shape[0]])
            torch.mul(c3, bw, out=u)  # u = β·v (all-zero windows give exactly 0)
            torch.amax(u, -1, keepdim=True, out=sh)
            torch.sub(u, sh, out=e).exp_()
            torch.sum(e, -1, out=den_i)
            torch.sum(u.mul_(e), -1, out=out_i)
        out.div_(den).div_(beta)  # Σ βv e / (β Σ e)
        ctx.save_for_backward(cols, bw, out, den, shift)
        ctx.beta, ctx.chunk = beta, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        cols, bw, out, den, shift = ctx.saved_tensors
        beta, chunk = ctx.beta, ctx.chunk
        n_blocks, taps = cols.shape
        n_pix = bw.shape[0]
        # ∂L/∂c_k = Σ_u g_u s_uk (1 + βv_uk − β·out_u) w_uk with βv_uk = c_k·bw_uk, s_uk = e_uk/den_u:
        #         = Σ_u (e∘w)_uk·b_u + c_k·Σ_u (e∘w∘bw)_uk·a_u,   a = g/den, b = a·(1 − β·out),
        # two batched (1×U)·(U×T) products per chunk; e∘w = exp(βv − shift + log w) comes out of one exp pass.
        a = grad_out / den
        b = (1.0 - beta * out).mul_(a)
        w = bw / beta
        log_w = w.log()
        gcols = cols.new_empty(n_blocks, taps)
        g2 = cols.new_empty(n_blocks, taps)
        ch = min(chunk, n_blocks)
        buf = cols.new_empty(ch, n_pix, taps)
        for c3, a3, b3, gc, gc2, sh in zip(cols.unsqueeze(1).split(ch), a.unsqueeze(1).split(ch),
                                           b.unsqueeze(1).split(ch), gcols.unsqueeze(1).split(ch),
                                           g2.unsqueeze(1).split(ch), shift.split(ch), strict=True):
            ew = buf if c3.shape[0] == ch else buf[: c3.shape[0]]
            torch.addcmul(log_w, c3, bw, out=ew)
            ew.sub_(sh).exp_()
            torch.bmm(b3, ew, out=gc)
            torch.bmm(a3, ew.mul_(bw), out=gc2)
        return gcols.addcmul_(g2, cols), None, None, None


def _area_zero_counts(n: int, areas) -> list[int]:
    """⌊n(1−a)⌋ per area (computed in float64), the number of zeros of the reference r_a."""
    areas = torch.as_tensor(list(areas) if not isinstance(areas, torch.Tensor) else areas, dtype=torch.float64)
    if areas.dim() == 0:
        areas = areas.view(1)
    return torch.floor(n * (1.0 - areas.cpu())).long().tolist()


def area_reference(n: int, areas, dtype=torch.float32, device=None) -> torch.Tensor:
    """r_a per area: ⌊n(1−a)⌋ zeros followed by ones (TorchRay's reference), shape ``(K, n)``."""
    n_zeros = torch.tensor(_area_zero_counts(n, areas)).view(-1, 1)
    return (torch.arange(n).view(1, -1) >= n_zeros).to(dtype=dtype, device=device)


def vecsort_area_loss(m: torch.Tensor, areas, reduction: str = "mean") -> torch.Tensor:
    """Area regulariser R_a(m) = ‖vecsort(m) − r_a‖² per mask (Fong et al. 2019, eq. for R_a).

    ``m``: ``(K, ...)`` masks (flattened per row); ``areas``: K fractions (or one). ``reduction="mean"`` divides
    by the number of pixels, as the official code; ``"sum"`` is the paper's squared norm. Returns ``(K,)``; it is
    exactly 0 iff each mask has ⌈n·a⌉-style ones (n − ⌊n(1−a)⌋ of them) and zeros elsewhere.

    ‖vecsort(m) − r_a‖² = ‖m − r̃‖² with r̃ the reference moved back to the unsorted positions: 1 on the
    n − ⌊n(1−a)⌋ largest entries. Those are found with a selection (``np.partition`` on CPU, ``kthvalue`` elsewhere;
    O(n)) instead of a full sort;
    only when the threshold value is tied across the boundary (rare, mostly in the first iterations) is the row
    sorted with ``torch.sort``, so the tied entries get the same reference values, hence the same gradient, as
    the sort-based formula.
    """
    check_choice("reduction", reduction, ("mean", "sum"))
    flat = m.reshape(m.shape[0], -1)
    n_rows, n = flat.shape
    zeros = _area_zero_counts(n, areas)
    if len(zeros) == 1 and n_rows > 1:
        zeros = zeros * n_rows
    if len(zeros) != n_rows:
        raise ValueError(f"areas has {len(zeros)} entries; accepted values: 1 or {n_rows} (one per mask)")
    vals = flat.detach()
    ref = torch.empty_like(vals)
    for r, n0 in enumerate(zeros):
        if n0 <= 0 or n0 >= n:
            ref[r] = 1.0 if n0 <= 0 else 0.0
            continue
        if vals.device.type == "cpu" and vals.dtype in (torch.float32, torch.float64):
            # NumPy's introselect: ~10x faster than torch.kthvalue on CPU, same value
            theta = torch.as_tensor(np.partition(vals[r].numpy(), n0 - 1)[n0 - 1])
        else:
            theta = torch.kthvalue(vals[r], n0).values
        below = vals[r] <= theta
        if int(below.sum()) == n0:  # the n0 smallest are exactly the entries <= θ
            torch.logical_not(below, out=below)
            ref[r] = below
        else:  # θ is tied across the boundary: the sort decides which tied entries get 0
            idx = torch.sort(vals[r]).indices
            ref[r].scatter_(0, idx, (torch.arange(n, device=flat.device) >= n0).to(flat.dtype))
    return _SquaredDistance.apply(flat, ref, reduction == "mean")


class _SquaredDistance(torch.autograd.Function):
    """mean or sum over each row of (x − r)², r constant; the backward is autograd's for that expression, bit for bit
    ((g/n)·2(x − r) for the mean), without its intermediate graph."""

    @staticmethod
    def forward(ctx, x, ref, mean):
        diff = x - ref
        sq = diff * diff
        ctx.save_for_backward(diff)
        ctx.mean = mean
        return sq.mean(1) if mean else sq.sum(1)

    @staticmethod
    def backward(ctx, grad):
        (diff,) = ctx.saved_tensors
        g = grad.unsqueeze(1)
        if ctx.mean:
            g = g / diff.shape[1]
        return g * (2.0 * diff), None, None


def tv_norm(m: torch.Tensor, beta: float = 2.0, reduction: str = "mean") -> torch.Tensor:
    """Anisotropic total variation per mask: mean|Δ_v m|^β + mean|Δ_h m|^β (I-GOS's TV₂ for β = 2).

    ``m``: ``(N, 1, h, w)`` → ``(N,)`` (``reduction="mean"``: means over the difference arrays, as I-GOS;
    ``"sum"``: sums).
    """
    check_choice("reduction", reduction, ("mean", "sum"))
    dv = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta)
    dh = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta)
    agg = (lambda t: t.flatten(1).mean(1)) if reduction == "mean" else (lambda t: t.flatten(1).sum(1))
    return agg(dv) + agg(dh)


def bilateral_weights(image: torch.Tensor, sigma: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge weights of :func:`bilateral_tv` for ``image`` ``(1 or N, 3, H, W)``: ``(w_v, w_h)``, shapes
    ``(…, 1, H−1, W)`` and ``(…, 1, H, W−1)``; they depend on the image only (compute once per image)."""
    dv_i = image[..., 1:, :] - image[..., :-1, :]
    dh_i = image[..., :, 1:] - image[..., :, :-1]
    wv = torch.exp(-(dv_i.mean(1, keepdim=True) ** 2) / sigma)
    wh = torch.exp(-(dh_i**2) / sigma).mean(1, keepdim=True)
    return wv, wh


def bilateral_tv(image: torch.Tensor, m: torch.Tensor, sigma: float = 0.01, beta: float = 2.0,
                 weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Bilateral TV of masks ``m`` ``(N, 1, H, W)`` at the image resolution, weighted by image edges.

    BTV(m) = mean_u w_v(u)|Δ_v m(u)|^β + mean_u w_h(u)|Δ_h m(u)|^β,
    with w = exp(−ΔI(u)²/σ) so mask changes are cheap where the image changes (iGOS++).
    As in the official code (appendix §4.3) the vertical weight squares the channel-*mean* difference,
    the horizontal weight averages exp(−ΔI_c²/σ) over channels. ``image``: ``(1 or N, 3, H, W)``;
    ``weights``: :func:`bilateral_weights` of ``image`` and ``sigma`` if already computed (same result).
    """
    wv, wh = bilateral_weights(image, sigma) if weights is None else weights
    dv = (m[..., 1:, :] - m[..., :-1, :]).abs().pow(beta)
    dh = (m[..., :, 1:] - m[..., :, :-1]).abs().pow(beta)
    return (wv * dv).flatten(1).mean(1) + (wh * dh).flatten(1).mean(1)


def grid_difference_matrix(n: int, padded: bool = True) -> sp.csr_matrix:
    """First-difference operator D on an ``n×n`` grid in row-major order (LEG, appendix §3.2).

    Rows: x[i,j] − x[i,j+1] (horizontal) and x[i,j] − x[i+1,j] (vertical), 2n(n−1) rows.
    ``padded=True`` prepends 4n rows of differences against a zero border (each boundary cell minus the zero
    outside it, one row per side: top, bottom, left, right), making D full rank (1624×784 for n = 28) and every
    diagonal entry of DᵀD equal to 4; unpadded D (1512×784) has the constants as null space.
    """
    if n < 2:
        raise ValueError(f"n={n!r} is not valid; accepted values: an int >= 2")
    p = n * n
    idx = np.arange(p).reshape(n, n)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    r = 0
    if padded:
        for side in (idx[0, :], idx[-1, :], idx[:, 0], idx[:, -1]):
            for k in side:
                rows.append(r)
                cols.append(int(k))
                vals.append(1.0)
                r += 1
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1, :], idx[1:, :])):
        for i, j in zip(a.ravel(), b.ravel()):
            rows += [r, r]
            cols += [int(i), int(j)]
            vals += [1.0, -1.0]
            r += 1
    return sp.csr_matrix((vals, (rows, cols)), shape=(r, p))


# --------------------------------------------------------------------------------------------
# I-GOS / iGOS++ and RISE operators (appended by the iGOS++ chapter)
# --------------------------------------------------------------------------------------------
def compose(image: torch.Tensor, baseline: torch.Tensor, m: torch.Tensor,
            out: torch.Tensor | None = None) -> torch.Tensor:
    """φ(I, Ĩ, M) = I·M + Ĩ·(1 − M) (appendix §4.1); ``m`` broadcasts over channels, M = 1 keeps I.

    ``out``: a tensor of the broadcast shape to write into (no new image-sized result); the products and the sum
    are the same operations in the same order, so the values are bit-identical (no fused multiply-add).
    """
    if out is None:
        return image * m + baseline * (1.0 - m)
    torch.mul(image, m, out=out)
    return out.add_(baseline * (1.0 - m))


def igospp_btv(image: torch.Tensor, m: torch.Tensor, sigma: float = 0.01, beta: float = 2.0,
               align_corners: bool = True, weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """iGOS++'s smoothness term on masks ``m`` ``(N, 1, s, s)``: ½[TV_β(M) + BTV_β(I, up(M))] (appendix §4.3).

    TV_β is :func:`tv_norm` at mask resolution, the bilateral part :func:`bilateral_tv` of the mask upsampled
    (bilinear, ``align_corners``) to the image size, with the official code's asymmetric edge weights
    (``weights``: :func:`bilateral_weights` of ``image`` and ``sigma``, to compute them once per image).
    """
    up = upsample_mask(m, tuple(image.shape[-2:]), align_corners=align_corners)
    return 0.5 * (tv_norm(m, beta) + bilateral_tv(image, up, sigma=sigma, beta=beta, weights=weights))


def rise_blur_kernel(klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's insertion blur kernel: ``scipy.ndimage.gaussian_filter`` of a centred delta (``klen``², σ ``nsig``).

    scipy's default ``mode="reflect"`` folds the truncated tails back into the window, so the kernel is
    nearly a box (max/min weight ≈ 1.14 for 11, σ 5); it is separable: outer(k1, k1), Σ = 1.
    """
    from scipy.ndimage import gaussian_filter1d

    delta = np.zeros(klen)
    delta[klen // 2] = 1.0
    k1 = torch.from_numpy(gaussian_filter1d(delta, nsig)).float()
    return torch.outer(k1, k1)


def rise_blur(z: torch.Tensor, klen: int = 11, nsig: float = 5.0) -> torch.Tensor:
    """RISE's insertion substrate: per-channel conv2d of ``z`` (normalised space) with :func:`rise_blur_kernel`,
    zero padding (so borders fade toward the mean colour)."""
    k = rise_blur_kernel(klen, nsig).to(z.dtype).to(z.device)
    c = z.shape[1]
    return F.conv2d(z, k.view(1, 1, klen, klen).expand(c, 1, klen, klen), padding=klen // 2, groups=c)
