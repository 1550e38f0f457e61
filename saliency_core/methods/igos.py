"""I-GOS (Qi, Khorram & Fuxin 2020) and iGOS++ (Khorram, Lawson & Fuxin 2021): integrated-gradient optimised masks.

Both optimise keep-masks M ∈ [0, 1]^{s×s} (s = 224, 28 or 7; 1 keeps the image, low = salient), upsampled
bilinearly with ``align_corners=True`` and composed as φ(I, Ĩ, M) = I·M + Ĩ·(1 − M) in normalised space
(:func:`~saliency_core.perturbations.compose`), where Ĩ is the 51×51, σ = 50 blur of the image (appendix §4.1).

* The descent direction is the "integrated gradient" of appendix §4.1: ∇_M (1/N) Σ_k p_c(φ(α_k M) + noise),
  α_k = k/N. The path points of ALL terms of one step go through the model in chunks of ``batch_size`` images
  (a chunk may span terms), each chunk one forward and one backward.
* The step is the Armijo backtracking line search of the official code (c = 1e-4, ×0.2 down to 1e-5), with
  the same decisions computed with less work:

  - the base loss L(M) is the loss of the gradient pass (``ls_fresh_base=True``: a separate evaluation with fresh
    noise, as the official code does); the noise-free base of the original I-GOS is the loss of the previous
    accepted trial point, which is the current mask;
  - every probability lies in [0, 1], so after the regulariser R (no model pass) and part of the images of a
    trial, L(trial) ≥ R + known terms − (insertion images still to do)/N. When that bound already exceeds the
    Armijo threshold the trial is rejected without evaluating the rest (``ls_bounds``); insertion terms go
    first. Steps that wreck the regulariser (the large first trials) cost no model pass at all;
  - trial points are evaluated in chunks of ``batch_size`` images; ``ls_batch`` > 1 lets a chunk spill into
    the next trial points (speculative, for accelerators).

  Each (iteration, evaluation, term) has its own noise stream (image k gets the k-th draw), so the iterates do
  not depend on ``batch_size``, ``ls_batch`` or ``ls_bounds``: a straightforward sequential implementation of
  the same algorithm with the same streams gives the same masks (``tests/test_igos.py``).
* I-GOS: loss del(M) + l1·mean|1 − M| + tv·TV₂(M). ``variant="original"`` = the original demo (α₀ 200, noise-free
  non-integrated line-search loss, adaptive L1); ``variant="igos_pp"`` = the IGOS_pp repository's I-GOS
  (α₀ 1000, noisy integrated line-search loss, no adaptive L1).
* iGOS++: deletion mask Mx and insertion mask My, loss del(Mx) − ins(My) + del(Mxy) − ins(Mxy) + R(Mx⊙My),
  where the joint terms use up(Mx)⊙up(My) as the official code does, R = l1·mean|1 − M| + tv·BTV(M) with
  BTV = ½[TV₂(M) + bilateral TV₂(up(M))]; the direction is ½∇(deletion/insertion terms) + ∇R and one step
  size is shared by both masks (appendix §4.3).

The returned map is 1 − up(M) (higher = more relevant); ``extras`` hold the s×s masks, losses and step sizes.

Configuration. The step rule (``line_search``, ``fixed_step`` and the ``ls_*`` knobs) is declared once, as
keyword-only arguments with their defaults in the signature of :class:`IntegratedMaskOptimizer`; I-GOS and iGOS++
pass them through (``**step_rule``) and show them in their own signatures (``__init_subclass__`` appends the base's
keyword-only parameters), which ``help()``, ``get_explainer``'s check of misspelt names and ``Explainer.settings()``
read. They stay flat ``name: value`` entries in YAML and papermill parameters and plain JSON values in the cache
key. (A nested options object was the alternative: it would need its own JSON form and nested YAML.)
The paper hyper-parameters (``size``, ``iterations``, ``ig_steps``, ``l1``, ``tv``, ``noise``, ...) stay in each
method's own signature, where a reader of ``help(IGOSPlusPlus)`` looks for them; one helper checks them.
Everything that belongs to one call (the normalised image and baseline, the target, the current l1, the bilateral
weights, the reusable image buffers) lives in a :class:`_Call` passed through the optimisation: nothing per-call
is stored on the explainer.

Work outside the network (per image of a path: compose φ in place in a reused buffer, one noise draw per run of
path points of a term, one in-place add) does the same floating-point operations in the same order as the plain
formula, so the masks are bit-identical to those of the straightforward code on the same machine.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..checks import check_bool, check_choice, check_int, check_range
from ..explanation import Explainer
from ..perturbations import bilateral_weights, blur_baseline, compose, igospp_btv, tv_norm, upsample_mask
from .registry import register

__all__ = [
    "IGOS", "IGOSPlusPlus", "IntegratedMaskOptimizer", "noise_stream", "GRAD", "BASE", "TRIAL", "IGOS_NOISE",
    "IGOSPP_MODES", "IGOSPP_MASKS",
]

IGOS_NOISE = ("all", "official")
IGOSPP_MODES = ("bilateral", "insertion", "naive", "deletion")
IGOSPP_MASKS = ("mxy", "mx", "my")

#: evaluation kinds that key the noise streams
GRAD, BASE, TRIAL = 0, 1, 2


def noise_stream(seed: int, iteration: int, kind: int, index: int, term: int,
                 device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one noise stream: (seed, iteration, evaluation kind, trial index, term) → seeded generator.

    ``kind`` is :data:`GRAD` (the gradient pass), :data:`BASE` (a fresh base-loss evaluation) or :data:`TRIAL`
    (trial point ``index`` of the line search). Image k of the path draws the k-th ``(1, C, H, W)`` sample.
    """
    ss = np.random.SeedSequence(int(seed) & 0xFFFF_FFFF_FFFF_FFFF, spawn_key=(iteration, kind, index, term))
    state = int(ss.generate_state(1, dtype=np.uint64)[0]) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator(device=device).manual_seed(state)


@dataclass(eq=False)
class _Call:
    """The state of one explanation, built by :meth:`IntegratedMaskOptimizer._start` and passed through the loop."""

    z: torch.Tensor  # the image in normalised space (1, 3, H, W)
    zb: torch.Tensor  # its blurred baseline Ĩ, normalised
    diff: torch.Tensor  # z − zb: dφ/dU of a deletion image (of an insertion image: −diff)
    target: int
    l1: float  # the current sparsity weight (the original I-GOS divides it during the run)
    btv_weights: tuple[torch.Tensor, torch.Tensor] | None  # iGOS++'s bilateral edge weights of this image
    images: torch.Tensor  # (batch_size, 3, H, W): the images of one model call, composed in place
    scratch: torch.Tensor  # same shape: noise draws and other per-chunk products
    fwd_images: int = 0  # images forwarded by the no-grad loss evaluations

    @property
    def device(self) -> torch.device:
        return self.z.device


@dataclass(eq=False)
class _Eval:
    """One loss evaluation L(M') = Σ_t s_t·mean_k p_{t,k} + R, streamed image by image (see ``_stream``)."""

    ups: list[torch.Tensor]  # per term: upsampled mask (1, 1, H, W), detached
    keys: list[tuple[int, int, int] | None]  # per term: (iteration, kind, index) of its noise stream, None = none
    n_points: int
    integrated: bool
    reg: float
    thr: float | None  # Armijo threshold; None = evaluate everything
    order: list[int]  # terms in evaluation order (insertion first)
    probs: list[list[float]] = field(default_factory=list)
    gens: dict[int, torch.Generator] = field(default_factory=dict)
    pos: int = 0  # images done, in ``order``
    status: str = "pending"  # pending | done | rejected
    loss: float = float("nan")


class IntegratedMaskOptimizer(Explainer):
    """Shared machinery of I-GOS and iGOS++ and the ONE declaration of their step rule.

    Subclasses set ``self._terms`` = [(kind "del"|"ins", which mask "x"|"y"|"xy", direction coefficient)] and
    ``self._masks`` (names of the optimised masks), implement ``_regulariser(call, m_out)``, and forward their
    ``**step_rule`` keyword arguments here.

    Parameters
    ----------
    line_search : bool
        Armijo backtracking (True) or ``fixed_step`` every iteration (the "fixed step size" ablation).
    fixed_step : float
        The step of ``line_search=False``.
    ls_c, ls_decay, ls_floor : float
        Armijo constant c, backtracking factor, smallest trial step (1e-4, 0.2, 1e-5 as the official codes).
    ls_batch : int
        Trial points a chunk of ``batch_size`` images may spill into (1 = strictly one after the other, best on
        CPU; larger = speculative evaluation for accelerators). Runtime only: does not change the result.
    ls_bounds : bool
        Reject a trial point as soon as the regulariser and the images evaluated so far prove it fails the
        Armijo condition (every probability is in [0, 1]). Runtime only: does not change the result.
    ls_common_noise : bool
        Evaluate the trial points with the gradient pass's noise draws (False = fresh noise, official).
    ls_fresh_base : bool
        Evaluate the base loss L(M) with fresh noise (official) instead of reusing the gradient pass's forward.
    """

    runtime_args: ClassVar[tuple[str, ...]] = Explainer.runtime_args + ("ls_batch", "ls_bounds")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Show the step rule in each subclass's signature: its own parameters, then the keyword-only ones of
        :meth:`IntegratedMaskOptimizer.__init__` in place of ``**step_rule`` (``help()``, ``get_explainer``'s check
        of the names and ``settings()`` all read it; the declaration and the defaults stay here only)."""
        super().__init_subclass__(**kwargs)
        own = inspect.signature(cls.__init__)
        shared = [p for p in inspect.signature(IntegratedMaskOptimizer.__init__).parameters.values()
                  if p.kind is p.KEYWORD_ONLY]
        params = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(params) < len(own.parameters):  # the subclass forwards **step_rule
            cls.__init__.__signature__ = own.replace(parameters=params + shared)

    def __init__(
        self,
        model,
        *,
        line_search: bool = True,
        fixed_step: float = 50.0,
        ls_c: float = 1e-4,
        ls_decay: float = 0.2,
        ls_floor: float = 1e-5,
        ls_batch: int = 1,
        ls_bounds: bool = True,
        ls_common_noise: bool = False,
        ls_fresh_base: bool = False,
    ) -> None:
        super().__init__(model)
        self.line_search = check_bool("line_search", line_search)
        self.fixed_step = float(check_range("fixed_step", fixed_step, 0.0, low_inclusive=False))
        self.ls_c = float(check_range("ls_c", ls_c, 0.0, 1.0, low_inclusive=False, high_inclusive=False))
        self.ls_decay = float(check_range("ls_decay", ls_decay, 0.0, 1.0, low_inclusive=False, high_inclusive=False))
        self.ls_floor = float(check_range("ls_floor", ls_floor, 0.0, low_inclusive=False))
        self.ls_batch = check_int("ls_batch", ls_batch, 1, 10_000)
        self.ls_bounds = check_bool("ls_bounds", ls_bounds)
        self.ls_common_noise = check_bool("ls_common_noise", ls_common_noise)
        self.ls_fresh_base = check_bool("ls_fresh_base", ls_fresh_base)

    def _set_common(self, *, size: int, iterations: int, ig_steps: int, l1: float, tv: float, noise: float,
                    igos_noise: str, reproduce_cli_swap: bool, seed: int, batch_size: int) -> None:
        """Check and store the hyper-parameters both methods declare in their own signatures."""
        self.size = check_int("size", size, 1, 4096)
        self.iterations = check_int("iterations", iterations, 1, 10_000)
        self.ig_steps = check_int("ig_steps", ig_steps, 1, 10_000)
        self.l1 = float(check_range("l1", l1, 0.0))
        self.tv = float(check_range("tv", tv, 0.0))
        self.noise = float(check_range("noise", noise, 0.0))
        self.igos_noise = check_choice("igos_noise", igos_noise, IGOS_NOISE)
        self.reproduce_cli_swap = check_bool("reproduce_cli_swap", reproduce_cli_swap)
        self.seed = check_int("seed", seed, 0, 2**64 - 1)
        self.batch_size = check_int("batch_size", batch_size, 1, 1_000_000)

    def min_input_size(self) -> int:
        """One pixel per mask cell at least (a finer mask has cells that touch no pixel)."""
        return max(super().min_input_size(), self.size)

    # -- schedule ------------------------------------------------------------------------------------
    def _schedule(self) -> tuple[int, int]:
        """(optimisation iterations, IG points); the official CLI passes them swapped (appendix §4.5.1)."""
        if self.reproduce_cli_swap:
            return self.ig_steps, self.iterations
        return self.iterations, self.ig_steps

    # -- per-call state --------------------------------------------------------------------------------
    def _start(self, x: torch.Tensor, target: int) -> _Call:
        """The per-call state for image ``x`` (1, 3, H, W) in [0, 1] and class ``target``."""
        z = self.model.normalize(x)
        zb = self.model.normalize(blur_baseline(x, 51, 50.0))
        # a model call holds at most batch_size images, and never more than ls_batch evaluations have
        n = min(self.batch_size, len(self._terms) * max(self.ig_steps, self.iterations) * self.ls_batch)
        return _Call(z=z, zb=zb, diff=z - zb, target=int(target), l1=float(self.l1),
                     btv_weights=self._btv_weights(z), images=torch.empty((n, *z.shape[1:]), device=z.device),
                     scratch=torch.empty((n, *z.shape[1:]), device=z.device))

    def _btv_weights(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    # -- images --------------------------------------------------------------------------------------
    def _ups(self, c: _Call, masks: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per term the upsampled mask; the joint terms use up(Mx)·up(My) (``methods.py`` of IGOS_pp)."""
        hw = tuple(c.z.shape[-2:])
        up = {k: upsample_mask(v, hw, align_corners=True) for k, v in masks.items()}
        return [up["x"] * up["y"] if which == "xy" else up[which] for _, which, _ in self._terms]

    def _sign(self, t: int) -> float:
        return 1.0 if self._terms[t][0] == "del" else -1.0

    def _images(self, c: _Call, t: int, up: torch.Tensor, ks: range, n_points: int, integrated: bool,
                gen: torch.Generator | None, out: torch.Tensor) -> None:
        """Write φ of term ``t`` at path points ``ks`` (α_k = k/N; α = 1 when not ``integrated``), plus its
        noise, into ``out`` (len(ks), 3, H, W): φ(I, Ĩ, α·up) for deletion, φ(Ĩ, I, α·up) for insertion."""
        if integrated:
            a = torch.tensor([k / n_points for k in ks], device=c.device, dtype=c.z.dtype).view(-1, 1, 1, 1)
            m = a * up
        else:
            m = up
        first, second = (c.z, c.zb) if self._terms[t][0] == "del" else (c.zb, c.z)
        compose(first, second, m, out=out)
        if gen is not None:
            out.add_(self._draw(c, gen, len(ks)))

    def _draw(self, c: _Call, gen: torch.Generator, n: int) -> torch.Tensor:
        """The next ``n`` noise images of stream ``gen`` (in ``c.scratch``): N(0, noise²) on all channels, or the
        original demo's 2·noise on channel 0. One call draws what ``n`` calls of one image would draw."""
        hw = tuple(c.z.shape[-2:])
        out = c.scratch[:n]
        if self.igos_noise == "all":
            _randn(gen, (3, *hw), n, out)
            return out.mul_(self.noise)
        ch0 = torch.empty((n, *hw), device=c.device)
        _randn(gen, hw, n, ch0)
        out.zero_()
        out[:, 0] = ch0.mul_(2 * self.noise)
        return out

    def _gen(self, key: tuple[int, int, int] | None, t: int, device: torch.device) -> torch.Generator | None:
        if key is None or self.noise == 0:
            return None
        return noise_stream(self.seed, *key, t, device=device)

    # -- the gradient pass ---------------------------------------------------------------------------
    def _gradient(self, c: _Call, masks: dict[str, torch.Tensor], n_points: int, it: int) -> tuple[dict, float]:
        """Direction g (dict per mask) and the noisy integrated loss at M from the same forwards."""
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in masks.items()}
        ups = self._ups(c, leaves)
        ups_d = [u.detach() for u in ups]
        n_terms = len(self._terms)
        gens = [self._gen((it, GRAD, 0), t, c.device) for t in range(n_terms)]
        g_up = [torch.zeros_like(u) for u in ups]
        probs = torch.zeros(n_terms, n_points, device=c.device, dtype=torch.float64)
        specs = [(t, k) for t in range(n_terms) for k in range(1, n_points + 1)]
        for i in range(0, len(specs), self.batch_size):
            chunk = specs[i : i + self.batch_size]
            runs = _runs(chunk)
            j = 0
            for t, ks in runs:
                self._images(c, t, ups_d[t], ks, n_points, True, gens[t], c.images[j : j + len(ks)])
                j += len(ks)
            xc = c.images[: len(chunk)].detach().requires_grad_(True)
            p = self.model.net(xc).softmax(1)[:, c.target]
            w = torch.tensor([self._sign(t) * self._terms[t][2] / n_points for t, _ in chunk], device=c.device)
            (p * w).sum().backward()
            gx = xc.grad
            j = 0
            for t, ks in runs:
                # dφ/dU = α·(I − Ĩ) for deletion and α·(Ĩ − I) = −α·(I − Ĩ) for insertion; gx carries the weight
                a = torch.tensor([k / n_points for k in ks], device=c.device, dtype=gx.dtype).view(-1, 1, 1, 1)
                gk = torch.mul(gx[j : j + len(ks)], c.diff, out=c.scratch[: len(ks)]).sum(1, keepdim=True)
                g_up[t] += self._sign(t) * (a * gk).sum(0, keepdim=True)
                probs[t, ks.start - 1 : ks.stop - 1] = p[j : j + len(ks)].detach().double()
                j += len(ks)
        reg = self._regulariser(c, self._out_mask(leaves))
        total = sum((u * gu).sum() for u, gu in zip(ups, g_up)) + reg
        g = torch.autograd.grad(total, [leaves[k] for k in self._masks])
        sign = torch.tensor([self._sign(t) for t in range(n_terms)], device=c.device, dtype=torch.float64)
        loss = float((sign * probs.mean(1)).sum()) + float(reg.detach())
        return dict(zip(self._masks, [t.detach() for t in g])), loss

    # -- streamed loss evaluations ------------------------------------------------------------------
    def _new_eval(self, c: _Call, masks: dict, key: tuple[int, int, int] | None, n_points: int, integrated: bool,
                  thr: float | None) -> _Eval:
        with torch.no_grad():
            ups = [u.detach() for u in self._ups(c, masks)]
            reg = float(self._regulariser(c, self._out_mask(masks)))
        n_t = len(self._terms)
        order = [t for t in range(n_t) if self._sign(t) < 0] + [t for t in range(n_t) if self._sign(t) > 0]
        ev = _Eval(ups=ups, keys=[key] * n_t, n_points=n_points if integrated else 1, integrated=integrated,
                   reg=reg, thr=thr, order=order, probs=[[] for _ in range(n_t)])
        self._check(ev)
        return ev

    def _lower_bound(self, ev: _Eval) -> float:
        """L ≥ R + Σ_t s_t·(known p)/N − (insertion images still to evaluate)/N, since every p ∈ [0, 1]."""
        lo = ev.reg
        for t in range(len(self._terms)):
            s, done = self._sign(t), len(ev.probs[t])
            lo += s * sum(ev.probs[t]) / ev.n_points
            if s < 0:
                lo -= (ev.n_points - done) / ev.n_points
        return lo

    def _check(self, ev: _Eval) -> None:
        total = len(self._terms) * ev.n_points
        if ev.pos == total:
            ev.loss = ev.reg + sum(self._sign(t) * float(np.mean(ev.probs[t])) for t in range(len(self._terms)))
            ev.status = "done" if ev.thr is None or ev.loss <= ev.thr else "rejected"
        elif ev.thr is not None and self.ls_bounds and self._lower_bound(ev) > ev.thr:
            ev.status = "rejected"

    @torch.no_grad()
    def _stream(self, c: _Call, evals: list[_Eval]) -> _Eval | None:
        """Evaluate ``evals`` (consecutive trial points, or one full evaluation) in chunks of ``batch_size``.

        Returns the first one that is accepted (all images done and L ≤ thr, or thr None) or None when all are
        rejected. A chunk takes the remaining images of the first pending evaluation, then spills into the next.
        """
        while True:
            first = next((e for e in evals if e.status != "rejected"), None)
            if first is None or first.status == "done":
                return first
            chunk: list[tuple[_Eval, int, range]] = []
            room = self.batch_size
            for e in evals:
                if e.status != "pending" or room == 0:
                    continue
                while room and e.pos < len(self._terms) * e.n_points:
                    t = e.order[e.pos // e.n_points]
                    k0 = e.pos % e.n_points + 1
                    ks = range(k0, min(e.n_points, k0 + room - 1) + 1)
                    chunk.append((e, t, ks))
                    e.pos += len(ks)
                    room -= len(ks)
            j = 0
            for e, t, ks in chunk:
                if t not in e.gens:
                    e.gens[t] = self._gen(e.keys[t], t, c.device) if e.integrated else None
                self._images(c, t, e.ups[t], ks, e.n_points, e.integrated, e.gens[t], c.images[j : j + len(ks)])
                j += len(ks)
            c.fwd_images += j
            p = self.model.net(c.images[:j]).softmax(1)[:, c.target].double().tolist()
            j = 0
            for e, t, ks in chunk:
                e.probs[t].extend(p[j : j + len(ks)])
                j += len(ks)
            for e in {id(e): e for e, _, _ in chunk}.values():
                self._check(e)

    def _line_search(self, c: _Call, masks: dict, g: dict, gsq: float, base: float, it: int, n_points: int,
                     clean: bool, alpha0: float) -> dict[str, Any]:
        """Armijo backtracking: the first (largest) α_j = α₀·decay^j ≥ floor with L(clamp(M − α_j g)) ≤
        base − c·α_j·‖g‖²; none → α_last·decay, unaccepted (the official codes still take that tiny step)."""
        alphas: list[float] = []
        a = float(alpha0)
        while a >= self.ls_floor:
            alphas.append(a)
            a *= self.ls_decay
        fwd0 = c.fwd_images
        for start in range(0, len(alphas), self.ls_batch):
            evals = []
            for j in range(start, min(start + self.ls_batch, len(alphas))):
                cand = {k: (masks[k] - alphas[j] * g[k]).clamp(0.0, 1.0) for k in self._masks}
                key = (it, GRAD, 0) if self.ls_common_noise else (it, TRIAL, j)
                thr = base - self.ls_c * alphas[j] * gsq
                evals.append(self._new_eval(c, cand, None if clean else key, n_points, not clean, thr))
            acc = self._stream(c, evals)
            if acc is not None:
                j = start + evals.index(acc)
                return {"alpha": alphas[j], "accepted": True, "loss": acc.loss, "n_trials": j + 1,
                        "probs": [float(np.mean(pt)) for pt in acc.probs], "images": c.fwd_images - fwd0}
        last = alphas[-1] * self.ls_decay if alphas else float(alpha0)
        return {"alpha": last, "accepted": False, "loss": float("nan"), "n_trials": len(alphas), "probs": None,
                "images": c.fwd_images - fwd0}

    def _full_eval(self, c: _Call, masks: dict, key: tuple[int, int, int] | None, n_points: int,
                   integrated: bool) -> _Eval:
        ev = self._new_eval(c, masks, key, n_points, integrated, None)
        self._stream(c, [ev])
        return ev

    @staticmethod
    def _combine(probs: list[float], signs: list[float], reg: float) -> float:
        return reg + sum(s * p for s, p in zip(signs, probs))

    # -- the loop --------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, target: int, ls_clean: bool, alpha0: float, adaptive_l1: bool) -> dict:
        c = self._start(x, target)
        iterations, n_points = self._schedule()
        s = self.size
        signs = [self._sign(t) for t in range(len(self._terms))]
        masks = {k: torch.ones(1, 1, s, s, device=c.device) for k in self._masks}
        hist: dict[str, list] = {"loss": [], "loss_after": [], "step": [], "accepted": [], "ls_trials": [],
                                 "ls_images": [], "grad_sq": [], "l1": [], "p_del": []}
        clean: list[float] | None = None  # noise-free, non-integrated term probabilities at the current masks

        def clean_probs() -> list[float]:
            ev = self._full_eval(c, masks, None, 1, False)
            return [float(pt[0]) for pt in ev.probs]

        curve2: list[float] = []
        if adaptive_l1:
            clean = clean_probs()
            curve2 = [clean[0], clean[0]]
        for i in range(iterations):
            g, loss_int = self._gradient(c, masks, n_points, i)
            gsq = float(sum((t * t).sum() for t in g.values()))
            if ls_clean:
                if clean is None:
                    clean = clean_probs()
                with torch.no_grad():
                    base = self._combine(clean, signs, float(self._regulariser(c, self._out_mask(masks))))
            elif self.ls_fresh_base:
                base = self._full_eval(c, masks, (i, BASE, 0), n_points, True).loss
            else:
                base = loss_int
            if self.line_search:
                res = self._line_search(c, masks, g, gsq, base, i, n_points, ls_clean, alpha0)
            else:
                res = {"alpha": float(self.fixed_step), "accepted": True, "loss": float("nan"), "n_trials": 0,
                       "probs": None, "images": 0}
            masks = {k: (masks[k] - res["alpha"] * g[k]).clamp(0.0, 1.0) for k in self._masks}
            # the accepted noise-free trial point IS the new mask: its probabilities are the next clean ones
            clean = res["probs"] if (ls_clean and res["accepted"]) else None
            hist["loss"].append(base)
            hist["loss_after"].append(res["loss"])
            hist["step"].append(res["alpha"])
            hist["accepted"].append(bool(res["accepted"]))
            hist["ls_trials"].append(int(res["n_trials"]))
            hist["ls_images"].append(int(res["images"]))
            hist["grad_sq"].append(gsq)
            hist["l1"].append(c.l1)
            if adaptive_l1:
                if clean is None:
                    clean = clean_probs()
                curve2.append(clean[0])
                hist["p_del"].append(clean[0])
                # the original demo adapts l1 at the END of iteration i, from curve2[i] = p(M_{i-1})
                # (curve2 holds iteration 0 twice), only when T > 3 (appendix §4.2)
                if iterations > 3:
                    if i == int(iterations / 2):
                        if abs(curve2[0] - curve2[i]) <= 1e-3:
                            c.l1 /= 10.0
                    elif i == int(iterations / 1.25) and abs(curve2[0] - curve2[i]) <= 1e-2:
                        c.l1 /= 5.0
        return {"masks": masks, "hist": hist, "final_l1": c.l1}

    def _out_mask(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        m = None
        for k in self._masks:
            m = masks[k] if m is None else m * masks[k]
        return m

    def _finish(self, x: torch.Tensor, out: dict, returned_mask: str = "mxy") -> tuple[torch.Tensor, dict]:
        masks = out["masks"]
        m_out = self._out_mask(masks)
        mx = masks.get("x", m_out)
        my = masks.get("y", m_out)
        chosen = {"mxy": m_out, "mx": mx, "my": my}[returned_mask]
        up = upsample_mask(chosen, tuple(x.shape[-2:]), align_corners=True)[0, 0]
        extras: dict[str, Any] = {
            "mask": chosen[0, 0].cpu(),
            "mask_xy": m_out[0, 0].cpu(),
            "mask_x": mx[0, 0].cpu(),
            "mask_y": my[0, 0].cpu(),
            "saliency_grid": (1.0 - chosen[0, 0]).cpu(),
        }
        extras.update(out["hist"])
        extras["final_l1"] = out["final_l1"]
        return 1.0 - up, extras


def _randn(gen: torch.Generator, shape: tuple[int, ...], n: int, out: torch.Tensor) -> None:
    """``n`` consecutive draws of ``torch.randn((1, *shape), generator=gen)`` into ``out`` (n, *shape).

    PyTorch's CPU normal fill draws one uniform per element and transforms them in blocks of 16, so when an image
    has a multiple of 16 elements one draw of n images equals n draws of one (tests/test_igos.py checks it)."""
    numel = int(np.prod(shape))
    if out.device.type == "cpu" and numel % 16 == 0:
        torch.randn((n, *shape), generator=gen, out=out)
        return
    for j in range(n):
        torch.randn((1, *shape), generator=gen, out=out[j : j + 1])


def _runs(chunk: list[tuple[int, int]]) -> list[tuple[int, range]]:
    """Group consecutive (term, k) pairs into (term, range of k)."""
    out: list[tuple[int, range]] = []
    for t, k in chunk:
        if out and out[-1][0] == t and out[-1][1].stop == k:
            out[-1] = (t, range(out[-1][1].start, k + 1))
        else:
            out.append((t, range(k, k + 1)))
    return out


@register("igos")
class IGOS(IntegratedMaskOptimizer):
    """I-GOS: one deletion mask, integrated-gradient direction, Armijo line search (appendix §4.2-4.3, §4.6).

    Parameters
    ----------
    size : int
        Mask resolution s (s×s cells; 224, 28 or 7 in the papers).
    iterations, ig_steps : int
        Optimisation iterations and IG path points N (15 / 20).
    l1, tv : float
        Weights of mean|1 − M| and TV₂(M) (β = 2, means over the difference arrays): 1 / 20.
    alpha0 : float, optional
        First trial step; ``None`` = 200 (``variant="original"``) or 1000 (``"igos_pp"``).
    noise : float
        Std of the Gaussian noise added to every path image in normalised space (0 disables it).
    igos_noise : {"all", "official"}
        ``"all"``: N(0, noise²) on all channels; ``"official"``: the original demo's std 2·noise on channel 0 only.
    variant : {"original", "igos_pp"}
        Original demo (noise-free, non-integrated line-search loss) or the IGOS_pp repository's I-GOS
        (noisy integrated line-search loss).
    adaptive_l1 : bool, optional
        Divide l1 by 10 after iteration ⌊T/2⌋ and by 5 after ⌊T/1.25⌋ when the noise-free deletion score has
        not moved (as the demo: only when T > 3, comparing with the score one iteration back); ``None`` = on for
        ``"original"``, off for ``"igos_pp"``.
    reproduce_cli_swap : bool
        Run ``ig_steps`` iterations with ``iterations`` IG points (the official CLI's swapped arguments).
    seed : int
        Seed of the noise streams (see :func:`noise_stream`).
    batch_size : int
        Images per model call (runtime only: the result does not depend on it).
    **step_rule
        ``line_search``, ``fixed_step``, ``ls_c``, ``ls_decay``, ``ls_floor``, ``ls_batch``, ``ls_bounds``,
        ``ls_common_noise``, ``ls_fresh_base``: keyword-only, declared with their defaults in
        :class:`IntegratedMaskOptimizer`.
    """

    def __init__(
        self,
        model,
        size: int = 28,
        iterations: int = 15,
        ig_steps: int = 20,
        l1: float = 1.0,
        tv: float = 20.0,
        alpha0: float | None = None,
        noise: float = 0.2,
        igos_noise: str = "all",
        variant: str = "original",
        adaptive_l1: bool | None = None,
        reproduce_cli_swap: bool = False,
        seed: int = 0,
        batch_size: int = 16,
        **step_rule: Any,
    ) -> None:
        super().__init__(model, **step_rule)
        self._set_common(size=size, iterations=iterations, ig_steps=ig_steps, l1=l1, tv=tv, noise=noise,
                         igos_noise=igos_noise, reproduce_cli_swap=reproduce_cli_swap, seed=seed,
                         batch_size=batch_size)
        self.variant = check_choice("variant", variant, ("original", "igos_pp"))
        self.alpha0 = None if alpha0 is None else float(check_range("alpha0", alpha0, 0.0, low_inclusive=False))
        self.adaptive_l1 = None if adaptive_l1 is None else check_bool("adaptive_l1", adaptive_l1)
        self._terms = [("del", "x", 1.0)]
        self._masks = ("x",)

    def _regulariser(self, c: _Call, m: torch.Tensor) -> torch.Tensor:
        """l1·mean|1 − M| + tv·TV₂(M) at mask resolution."""
        return c.l1 * (1.0 - m).abs().mean() + self.tv * tv_norm(m, 2.0).sum()

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        original = self.variant == "original"
        alpha0 = self.alpha0 if self.alpha0 is not None else (200.0 if original else 1000.0)
        adaptive = self.adaptive_l1 if self.adaptive_l1 is not None else original
        return self._finish(x, self._run(x, target, ls_clean=original, alpha0=alpha0, adaptive_l1=adaptive))


@register("igos_pp")
class IGOSPlusPlus(IntegratedMaskOptimizer):
    """iGOS++: bilateral deletion/insertion masks tied by their product, BTV smoothness (appendix §4.3, §4.6).

    Parameters
    ----------
    size, iterations, ig_steps : int
        Mask resolution (224 / 28 / 7), iterations and IG points (15 / 20).
    l1, tv : float
        Weights of mean|1 − Mxy| and of the smoothness term (BTV) on Mxy (the official ``L1`` / ``L2``: 1 / 20; the
        README preset is 10 / 20).
    alpha0 : float
        First trial step of the line search (1000).
    noise, igos_noise : float, {"all", "official"}
        IG-path noise (N(0, 0.2²) on all channels in normalised space; 0 = the "no noise" ablation).
    btv_sigma : float
        σ of the bilateral weights exp(−ΔI²/σ) (0.01; ΔI in normalised space).
    mode : {"bilateral", "insertion", "naive", "deletion"}
        Table 2 ablations: ``"bilateral"`` = iGOS++; ``"insertion"`` = one insertion mask, loss −ins(M) + R(M);
        ``"naive"`` = I-GOS + insertion with one mask, loss del(M) − ins(M) + R(M) (iGOS+); ``"deletion"`` =
        one deletion mask with iGOS++'s regulariser.
    btv : bool
        False = plain TV₂ at mask resolution instead of BTV (the "no BTV" ablation).
    returned_mask : {"mxy", "mx", "my"}
        Which mask becomes the map (Table 3).
    reproduce_cli_swap : bool
        The official CLI's swapped iterations / IG points.
    seed : int
        Seed of the noise streams (see :func:`noise_stream`).
    batch_size : int
        Images per model call (runtime only).
    **step_rule
        ``line_search`` (False = the "fixed step size" ablation), ``fixed_step``, ``ls_c``, ``ls_decay``,
        ``ls_floor``, ``ls_batch``, ``ls_bounds``, ``ls_common_noise``, ``ls_fresh_base``: keyword-only, declared
        with their defaults in :class:`IntegratedMaskOptimizer`.
    """

    def __init__(
        self,
        model,
        size: int = 28,
        iterations: int = 15,
        ig_steps: int = 20,
        l1: float = 1.0,
        tv: float = 20.0,
        alpha0: float = 1000.0,
        noise: float = 0.2,
        igos_noise: str = "all",
        btv_sigma: float = 0.01,
        mode: str = "bilateral",
        btv: bool = True,
        returned_mask: str = "mxy",
        reproduce_cli_swap: bool = False,
        seed: int = 0,
        batch_size: int = 16,
        **step_rule: Any,
    ) -> None:
        super().__init__(model, **step_rule)
        self._set_common(size=size, iterations=iterations, ig_steps=ig_steps, l1=l1, tv=tv, noise=noise,
                         igos_noise=igos_noise, reproduce_cli_swap=reproduce_cli_swap, seed=seed,
                         batch_size=batch_size)
        self.alpha0 = float(check_range("alpha0", alpha0, 0.0, low_inclusive=False))
        self.btv_sigma = float(check_range("btv_sigma", btv_sigma, 0.0, low_inclusive=False))
        self.mode = check_choice("mode", mode, IGOSPP_MODES)
        self.btv = check_bool("btv", btv)
        self.returned_mask = check_choice("returned_mask", returned_mask, IGOSPP_MASKS)
        if mode == "bilateral":
            self._terms = [("del", "x", 0.5), ("ins", "y", 0.5), ("del", "xy", 0.5), ("ins", "xy", 0.5)]
            self._masks = ("x", "y")
        elif mode == "insertion":
            self._terms = [("ins", "y", 1.0)]
            self._masks = ("y",)
        elif mode == "naive":
            self._terms = [("del", "x", 1.0), ("ins", "x", 1.0)]
            self._masks = ("x",)
        else:
            self._terms = [("del", "x", 1.0)]
            self._masks = ("x",)

    def _btv_weights(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return bilateral_weights(z, self.btv_sigma) if self.btv else None

    def _regulariser(self, c: _Call, m: torch.Tensor) -> torch.Tensor:
        """l1·mean|1 − M| + tv·BTV(M) (or plain TV₂ with ``btv=False``) on the output mask."""
        smooth = (igospp_btv(c.z, m, sigma=self.btv_sigma, weights=c.btv_weights) if self.btv
                  else tv_norm(m, 2.0))
        return c.l1 * (1.0 - m).abs().mean() + self.tv * smooth.sum()

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self._run(x, target, ls_clean=False, alpha0=self.alpha0, adaptive_l1=False)
        return self._finish(x, out, self.returned_mask)
