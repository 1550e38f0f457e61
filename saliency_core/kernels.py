"""Compiled CPU kernels (Numba) for the inner loop of Extremal Perturbations.

Three operators of :mod:`saliency_core.perturbations`, same parameters and calls, evaluated in float32 on the CPU by
loops compiled with Numba instead of hundreds of small ATen operators per iteration:

* :class:`FastSmoothMaskGenerator` (:class:`~saliency_core.perturbations.SmoothMaskGenerator`): the same sums,

      out(p) = Σ_j v_j e^{βv_j} / (T² + Σ_j (e^{βv_j} − 1)),      v_j = m̄_j·k(p − p_j),

  where j runs over the T² taps of pixel p (a zero-padding tap, and a parameter equal to 0, adds e⁰ − 1 = 0 to the
  denominator and 0 to the numerator, so neither is evaluated), and the hand-written gradient

      ∂L/∂m̄_j = Σ_p k(p − p_j)·e^{βv_j}·(b_p + βv_j·a_p),      a = g·[0 ≤ out ≤ 1]/den,  b = a·(1 − β·out).

  Layout: per parameter row and vertical offset |d_y| (the kernel is symmetric in d_y, so both rows ±d_y share one
  evaluation of the exponentials) and per horizontal tap t, one contiguous loop over the output columns; the
  weights k(d) for each (|d_y|, t, column) are a constant table. exp is 2^y evaluated as a degree-6 polynomial
  times an exact power of two (|relative error| under one float32 ulp), so the loops vectorise on every CPU (a call
  to the math library's exp would not). The masks equal the ATen evaluation's to float32 rounding (tests), not bit
  for bit (summation order, exp, fused multiply-adds).
* :class:`FastPyramidInterpolator` (:class:`~saliency_core.perturbations.PyramidInterpolator`): bit for bit.
* :func:`vecsort_area_loss` (:func:`saliency_core.perturbations.vecsort_area_loss`): the threshold by a radix
  select instead of ``np.partition``; bit for bit, ties included.

Each falls back to the ATen operator for other dtypes and devices (and the generator where β·max|m̄| could overflow
exp).

Why a module of its own: :mod:`saliency_core.perturbations` is in the code closure of nearly every method, and the
result store keys every cached result by the source of that closure; this module is imported only by
:mod:`saliency_core.methods.extremal`, so changing it invalidates only the results of EP and Meaningful Perturbation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, types
from numba.extending import intrinsic

from .checks import check_choice
from .perturbations import PyramidInterpolator, SmoothMaskGenerator, _area_zero_counts, _SquaredDistance
from .perturbations import vecsort_area_loss as _vecsort_area_loss_sorted

__all__ = ["FastSmoothMaskGenerator", "FastPyramidInterpolator", "vecsort_area_loss"]


@intrinsic
def _i32_as_f32(typingctx, x):  # pragma: no cover - compiled by Numba
    """Reinterpret the bits of an int32 as a float32 (an LLVM bitcast)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@njit(inline="always", cache=True, fastmath={"contract"})
def _exp2f(y):  # pragma: no cover - compiled by Numba
    """2^y for float32 y in [−126, 127]: 2^f (f = y − n ∈ [−½, ½], Cephes' exp2f polynomial) times 2^n (bits)."""
    n = np.floor(y + np.float32(0.5))
    x = y - n
    p = np.float32(1.535336188319500e-4)
    p = p * x + np.float32(1.339887440266574e-3)
    p = p * x + np.float32(9.618437357674640e-3)
    p = p * x + np.float32(5.550332471162809e-2)
    p = p * x + np.float32(2.402264791363012e-1)
    p = p * x + np.float32(6.931472028550421e-1)
    p = p * x + np.float32(1.0)
    return p * _i32_as_f32((np.int32(n) + np.int32(127)) << np.int32(23))


@njit(cache=True, fastmath={"contract"})
def _exp2_array(y, out):  # pragma: no cover - compiled by Numba
    for i in range(y.shape[0]):
        out[i] = _exp2f(y[i])


@njit(cache=True, nogil=True)
def _gather_row(m, k, i, jidx, mrep, live):  # pragma: no cover - compiled by Numba
    """mrep[t, x] = m[k, i, jidx[t, x]] (index w is the zero sentinel); live[t] = any(mrep[t] != 0)."""
    taps, fx = jidx.shape
    for t in range(taps):
        nz = False
        for x in range(fx):
            v = m[k, i, jidx[t, x]]
            mrep[t, x] = v
            nz = nz or v != 0
        live[t] = nz


@njit(cache=True, fastmath={"contract"}, nogil=True)
def _smoothmax_forward(m, jidx, bw, rows, s_out, t_out):  # pragma: no cover - compiled by Numba
    """s_out += Σ (2^y − 1), t_out += Σ y·2^y over the taps, y = m̄·β₂k (β₂ = β·log₂e); outputs (K, FY, FX)."""
    n_masks, h = m.shape[0], m.shape[1]
    taps, fx = jidx.shape
    n_a = bw.shape[0]
    mrep = np.empty((taps, fx), np.float32)
    live = np.empty(taps, np.bool_)
    es = np.empty(fx, np.float32)
    ts = np.empty(fx, np.float32)
    for k in range(n_masks):
        for i in range(h):
            _gather_row(m, k, i, jidx, mrep, live)
            for a in range(n_a):
                r0, r1 = rows[i, a, 0], rows[i, a, 1]
                if r0 < 0 and r1 < 0:
                    continue
                es[:] = 0.0
                ts[:] = 0.0
                for t in range(taps):
                    if not live[t]:
                        continue
                    mt, bt = mrep[t], bw[a, t]
                    for x in range(fx):
                        y = mt[x] * bt[x]
                        e = _exp2f(y)
                        es[x] += e - np.float32(1.0)
                        ts[x] += y * e
                for r in (r0, r1):
                    if r >= 0:
                        so, to = s_out[k, r], t_out[k, r]
                        for x in range(fx):
                            so[x] += es[x]
                            to[x] += ts[x]


@njit(cache=True, fastmath={"contract"}, nogil=True)
def _smoothmax_backward(m, jidx, bw, beta2, rows, a_img, b_img, grad):  # pragma: no cover - compiled by Numba
    """grad[k, i, j] = β₂·Σ_window k·2^y·(b + ln2·y·a) (β·v = ln2·y, β₂k = bw); a_img, b_img (K, FY, FX);
    grad (K, h, w + 1)."""
    n_masks, h = m.shape[0], m.shape[1]
    taps, fx = jidx.shape
    n_a = bw.shape[0]
    ln2 = np.float32(math.log(2.0))
    inv_beta2 = np.float32(1.0) / beta2
    mrep = np.empty((taps, fx), np.float32)
    live = np.empty(taps, np.bool_)
    acc = np.empty((taps, fx), np.float32)
    asum = np.empty(fx, np.float32)
    bsum = np.empty(fx, np.float32)
    for k in range(n_masks):
        for i in range(h):
            _gather_row(m, k, i, jidx, mrep, live)
            acc[:] = 0.0
            for a in range(n_a):
                r0, r1 = rows[i, a, 0], rows[i, a, 1]
                if r0 < 0 and r1 < 0:
                    continue
                asum[:] = 0.0
                bsum[:] = 0.0
                for r in (r0, r1):
                    if r >= 0:
                        ar, br = a_img[k, r], b_img[k, r]
                        for x in range(fx):
                            asum[x] += ar[x]
                            bsum[x] += br[x]
                for t in range(taps):
                    mt, bt, at = mrep[t], bw[a, t], acc[t]
                    if live[t]:
                        for x in range(fx):
                            y = mt[x] * bt[x]
                            at[x] += bt[x] * _exp2f(y) * (bsum[x] + ln2 * y * asum[x])
                    else:  # all parameters of this tap are 0: y = 0, 2^y = 1
                        for x in range(fx):
                            at[x] += bt[x] * bsum[x]
            for t in range(taps):
                for x in range(fx):
                    grad[k, i, jidx[t, x]] += acc[t, x] * inv_beta2


@njit(cache=True, nogil=True)
def _smoothmax_finish(s_acc, t_acc, n_taps, beta2, clamped):  # pragma: no cover - compiled by Numba
    """In place: s_acc ← den = T² + s, t_acc ← out = t/den/β₂; clamped = clamp(out, 0, 1). Arrays (K, FY, FX)."""
    zero, one = np.float32(0.0), np.float32(1.0)
    for k in range(s_acc.shape[0]):
        for r in range(s_acc.shape[1]):
            sf, tf, cf = s_acc[k, r], t_acc[k, r], clamped[k, r]
            for x in range(sf.shape[0]):
                d = sf[x] + n_taps
                o = tf[x] / d / beta2
                sf[x] = d
                tf[x] = o
                c = o if o < one else one
                cf[x] = c if c > zero else zero


@njit(cache=True, nogil=True)
def _smoothmax_grad_images(grad, den, out, beta, a_img, b_img):  # pragma: no cover - compiled by Numba
    """a = g·[0 ≤ out ≤ 1]/den (clamp01's gradient), b = a·(1 − β·out). Arrays (K, FY, FX)."""
    zero, one = np.float32(0.0), np.float32(1.0)
    for k in range(grad.shape[0]):
        for r in range(grad.shape[1]):
            gf, df, of, af, bf = grad[k, r], den[k, r], out[k, r], a_img[k, r], b_img[k, r]
            for x in range(gf.shape[0]):
                o = of[x]
                a = gf[x] / df[x]
                a = a if (o >= zero) & (o <= one) else zero
                af[x] = a
                bf[x] = (one - beta * o) * a


class _NumbaTables:
    """Constant index and weight tables of one generator (float32, CPU).

    Column x of the output has taps t = 0..T−1 on parameter columns j_t(x) = ⌊(x − margin − d_lo)/step⌋ − t
    (``jidx``; w, the zero sentinel, where j_t is outside the grid), at offset d_x = x − margin − step·j_t.
    Parameter row i reaches output row margin + step·i ± |d_y| (``rows``: both signs per |d_y|, −1 where outside
    the output or the window). ``bw`` = β₂·k(|d_y|, d_x), shape (A, T, FX).
    """

    def __init__(self, gen: SmoothMaskGenerator) -> None:
        st, taps = gen.step, 2 * gen.radius + 1
        h, w = gen.param_shape
        fy, fx = gen.full_shape
        dlo, dhi = gen.offsets
        self.taps, self.h, self.w, self.full = taps, h, w, (fy, fx)
        self.beta2 = gen.coldness / math.log(2.0)
        x = np.arange(fx)
        j = (x - gen.margin - dlo)[None, :] // st - np.arange(taps)[:, None]  # (T, FX)
        dx = x[None, :] - gen.margin - st * j
        self.jidx = np.where((j >= 0) & (j < w), j, w).astype(np.int64)
        n_a = max(dhi, -dlo) + 1
        ay = torch.arange(n_a, dtype=torch.float64).view(n_a, 1, 1)
        wt = gen._kernel(ay, torch.from_numpy(dx).double().view(1, taps, fx)).float().double()  # generator's float32
        self.bw = (wt * self.beta2).float().numpy().copy()
        rows = np.full((h, n_a, 2), -1, dtype=np.int64)
        for i in range(h):
            for a in range(n_a):
                for s, d in ((0, a), (1, -a)):
                    r = gen.margin + st * i + d
                    if dlo <= d <= dhi and 0 <= r < fy and not (s == 1 and a == 0):
                        rows[i, a, s] = r
        self.rows = rows


class _SmoothMaxNumba(torch.autograd.Function):
    """The smooth max (clamped to [0, 1]) by the compiled kernels; params (K, h, w) float32 CPU → (K, FY, FX)."""

    @staticmethod
    def forward(ctx, params, tab, beta):
        n = params.shape[0]
        fy, fx = tab.full
        m = np.zeros((n, tab.h, tab.w + 1), dtype=np.float32)
        m[:, :, : tab.w] = params.detach().numpy()
        den = np.zeros((n, fy, fx), dtype=np.float32)
        out = np.zeros((n, fy, fx), dtype=np.float32)
        clamped = np.empty((n, fy, fx), dtype=np.float32)
        _smoothmax_forward(m, tab.jidx, tab.bw, tab.rows, den, out)
        _smoothmax_finish(den, out, np.float32(tab.taps * tab.taps), np.float32(tab.beta2), clamped)
        ctx.m, ctx.den, ctx.out, ctx.tab, ctx.beta = m, den, out, tab, beta
        return torch.from_numpy(clamped)

    @staticmethod
    def backward(ctx, grad):
        tab, den, out = ctx.tab, ctx.den, ctx.out
        a_img, b_img = np.empty_like(out), np.empty_like(out)
        _smoothmax_grad_images(np.ascontiguousarray(grad.numpy()), den, out, np.float32(ctx.beta), a_img, b_img)
        g = np.zeros((out.shape[0], tab.h, tab.w + 1), dtype=np.float32)
        _smoothmax_backward(ctx.m, tab.jidx, tab.bw, np.float32(tab.beta2), tab.rows, a_img, b_img, g)
        return torch.from_numpy(g[:, :, : tab.w].copy()), None, None


class FastSmoothMaskGenerator(SmoothMaskGenerator):
    """:class:`~saliency_core.perturbations.SmoothMaskGenerator` with the float32 CPU evaluation compiled (Numba).

    Same constructor, call and output (to float32 rounding). ``gen(params)`` with params ``(K, 1, h, w)`` returns
    ``(full, crop)``; params that are not float32 on the CPU, or whose β·max|m̄| could overflow exp, take the
    parent's ATen evaluation.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._tables: _NumbaTables | None = None

    def __call__(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if params.dim() != 4 or params.shape[1] != 1 or tuple(params.shape[-2:]) != self.param_shape:
            raise ValueError(f"params has shape {tuple(params.shape)}; accepted values: (K, 1, {self.param_shape[0]}, "
                             f"{self.param_shape[1]})")
        if params.device.type != "cpu" or params.dtype != torch.float32 or \
                not self.coldness * float(params.detach().abs().max()) <= 0.5 * math.log(torch.finfo(params.dtype).max):
            return super().__call__(params)
        if self._tables is None:
            self._tables = _NumbaTables(self)
        full = _SmoothMaxNumba.apply(params[:, 0].contiguous(), self._tables, self.coldness).unsqueeze(1)
        mg = self.margin
        return full, full[..., mg : mg + self.shape[0], mg : mg + self.shape[1]]


@njit(cache=True, nogil=True)
def _lerp_forward(m, table, n_levels, flip, out, level):  # pragma: no cover - compiled by Numba
    """out[k, c, y, x] = P_κ + t·D_κ at source column s (x = W−1−s when ``flip``), w = m·(L−1),
    κ = clamp(⌊w⌋, 0, L−2), t = w − κ; ``level`` keeps κ per source pixel for the backward pass."""
    n_masks, hh, ww = m.shape
    nc = table.shape[1] // 2
    scale = np.float32(n_levels - 1)
    top = np.float32(n_levels - 2)
    zero = np.float32(0.0)
    tbuf = np.empty(ww, np.float32)
    for k in range(n_masks):
        for y in range(hh):
            mk, lk, tb = m[k, y], level[k, y], tbuf
            for s in range(ww):
                w = mk[s] * scale
                kf = min(max(np.floor(w), zero), top)
                tb[s] = w - kf
                lk[s] = np.int32(kf)
            for c in range(nc):
                o = out[k, c, y]
                for s in range(ww):
                    lv = lk[s]
                    v = tb[s] * table[lv, nc + c, y, s] + table[lv, c, y, s]
                    if flip:
                        o[ww - 1 - s] = v
                    else:
                        o[s] = v


@njit(cache=True, nogil=True)
def _lerp_backward(grad, table, n_levels, flip, level, gm):  # pragma: no cover - compiled by Numba
    """gm[k, y, s] = (Σ_c g[k, c, y, x]·D_κ,c[y, s])·(L−1), x = s (or W−1−s when ``flip``)."""
    n_masks, hh, ww = level.shape
    nc = table.shape[1] // 2
    scale = np.float32(n_levels - 1)
    for k in range(n_masks):
        for y in range(hh):
            lk, gk = level[k, y], gm[k, y]
            gk[:] = 0.0
            for c in range(nc):
                g = grad[k, c, y]
                for s in range(ww):
                    gx = g[ww - 1 - s] if flip else g[s]
                    gk[s] += gx * table[lk[s], nc + c, y, s]
            for s in range(ww):
                gk[s] *= scale


class _PyramidLerpNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, m, table, n_levels, flip):
        n, _, hh, ww = m.shape
        mm = np.ascontiguousarray(m.detach()[:, 0].numpy())
        out = np.empty((n, table.shape[1] // 2, hh, ww), dtype=np.float32)
        level = np.empty((n, hh, ww), dtype=np.int32)
        tab = table.numpy()
        _lerp_forward(mm, tab, n_levels, flip, out, level)
        ctx.level, ctx.tab, ctx.n_levels, ctx.flip = level, tab, n_levels, flip
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        level = ctx.level
        gm = np.empty(level.shape, dtype=np.float32)
        _lerp_backward(np.ascontiguousarray(grad.numpy()), ctx.tab, ctx.n_levels, ctx.flip, level, gm)
        return torch.from_numpy(gm).unsqueeze(1), None, None, None


class FastPyramidInterpolator(PyramidInterpolator):
    """:class:`~saliency_core.perturbations.PyramidInterpolator` with the float32 CPU evaluation compiled (Numba).

    Same values and mask gradients bit for bit (the same float32 operations in the same order, no fused
    multiply-add); ``flip=True`` reads the mask and the table backwards instead of flipping copies. Other dtypes
    and devices take the parent's ATen evaluation.
    """

    def __call__(self, m: torch.Tensor, flip: bool = False) -> torch.Tensor:
        if m.device.type != "cpu" or m.dtype != torch.float32 or self.table.dtype != torch.float32 or \
                m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(self.table.shape[-2:]):
            return super().__call__(m, flip=flip)
        return _PyramidLerpNumba.apply(m, self.table, self.n_levels, bool(flip))


@njit(cache=True, nogil=True)
def _float32_key(bits):  # pragma: no cover - compiled by Numba
    """Order-preserving map of float32 bits to uint32 (negatives reversed below the positives)."""
    return bits ^ (np.uint32(0xFFFFFFFF) if bits >> np.uint32(31) else np.uint32(0x80000000))


@njit(cache=True, nogil=True)
def _kth_smallest_float32(v, kth, hist):  # pragma: no cover - compiled by Numba
    """The kth smallest (0-based) entry of float32 ``v``: a two-level radix select on the order-preserving keys
    (16 high bits, then the 16 low bits of the entries in the selected bucket), O(n); ``hist`` (65536,) int64."""
    keys = v.view(np.uint32)
    hist[:] = 0
    for i in range(keys.shape[0]):
        hist[_float32_key(keys[i]) >> np.uint32(16)] += 1
    below, hi = 0, 0
    while below + hist[hi] <= kth:
        below += hist[hi]
        hi += 1
    hist[:] = 0
    for i in range(keys.shape[0]):
        key = _float32_key(keys[i])
        if key >> np.uint32(16) == hi:
            hist[key & np.uint32(0xFFFF)] += 1
    lo = 0
    while below + hist[lo] <= kth:
        below += hist[lo]
        lo += 1
    key = np.uint32((hi << 16) | lo)
    bits = key ^ (np.uint32(0x80000000) if key >> np.uint32(31) else np.uint32(0xFFFFFFFF))
    return np.array([bits], dtype=np.uint32).view(np.float32)[0]


@njit(cache=True, nogil=True)
def _area_reference_row(v, n0, theta, ref):  # pragma: no cover - compiled by Numba
    """ref = not (v <= θ) when exactly n0 entries are <= θ (True returned); False when θ is tied across the
    boundary."""
    at_most = 0
    for i in range(v.shape[0]):
        below = v[i] <= theta
        at_most += below
        ref[i] = not below
    return at_most == n0


def vecsort_area_loss(m: torch.Tensor, areas, reduction: str = "mean") -> torch.Tensor:
    """:func:`saliency_core.perturbations.vecsort_area_loss` with the threshold found by a radix select.

    R_a(m) = ‖vecsort(m) − r_a‖² = ‖m − r̃‖², r̃ = 1 on the n − ⌊n(1−a)⌋ largest entries and 0 elsewhere. The
    threshold θ (the ⌊n(1−a)⌋-th smallest entry) comes from an O(n) radix select for float32 (``np.partition`` for
    float64) and r̃ = not (m <= θ) from one compiled pass. Only when θ is tied across the boundary is the row sorted
    with ``torch.sort``, as in the official code, so that the tied entries get the reference values TorchRay's
    sort gives them (its sort is not stable: which of several exactly equal entries count as inside the area is
    decided by the sort's internal order, and an index-order rule measurably moves the masks away from TorchRay's).
    Values and gradients equal :func:`saliency_core.perturbations.vecsort_area_loss`'s bit for bit. Tensors that are
    not float32/float64 on the CPU take that function.
    """
    check_choice("reduction", reduction, ("mean", "sum"))
    if m.device.type != "cpu" or m.dtype not in (torch.float32, torch.float64):
        return _vecsort_area_loss_sorted(m, areas, reduction)
    flat = m.reshape(m.shape[0], -1)
    n_rows, n = flat.shape
    zeros = _area_zero_counts(n, areas)
    if len(zeros) == 1 and n_rows > 1:
        zeros = zeros * n_rows
    if len(zeros) != n_rows:
        raise ValueError(f"areas has {len(zeros)} entries; accepted values: 1 or {n_rows} (one per mask)")
    vals_t = flat.detach().contiguous()
    vals = vals_t.numpy()
    ref_np = np.empty(vals.shape, dtype=np.bool_)
    ref = torch.empty_like(vals_t)
    hist = np.empty(1 << 16, dtype=np.int64)
    for r, n0 in enumerate(zeros):
        v = vals[r]
        if n0 <= 0 or n0 >= n:
            ref[r] = 1.0 if n0 <= 0 else 0.0
            continue
        theta = _kth_smallest_float32(v, n0 - 1, hist) if v.dtype == np.float32 else np.partition(v, n0 - 1)[n0 - 1]
        if _area_reference_row(v, n0, v.dtype.type(theta), ref_np[r]):
            ref[r] = torch.from_numpy(ref_np[r])
        else:  # θ is tied across the boundary: the sort decides which tied entries get 0 (the official order)
            idx = torch.sort(vals_t[r]).indices
            ref[r].scatter_(0, idx, (torch.arange(n) >= n0).to(flat.dtype))
    return _SquaredDistance.apply(flat, ref, reduction == "mean")
