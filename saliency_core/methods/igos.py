"""I-GOS (Qi, Khorram & Fuxin 2020) and iGOS++ (Khorram, Lawson & Fuxin 2021): integrated-gradient optimised masks.

Both optimise keep-masks M ∈ [0, 1]^{s×s} (s = 224, 28 or 7; 1 keeps the image, low = salient), upsampled
bilinearly with ``align_corners=True`` and composed as φ(I, Ĩ, M) = I·M + Ĩ·(1 − M) in normalised space, where
Ĩ is the 51×51, σ = 50 blur of the image (protocols.md §4.1).

* The descent direction is the "integrated gradient" of protocols.md §4.1: ∇_M (1/N) Σ_k p_c(φ(α_k M) + noise),
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
  size is shared by both masks (protocols.md §4.3).

The returned map is 1 − up(M) (higher = more relevant); ``extras`` hold the s×s masks, losses and step sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..checks import check_bool, check_choice, check_int, check_range
from ..explanation import Explainer
from ..perturbations import blur_baseline, igospp_btv, tv_norm, upsample_mask
from .registry import register

__all__ = [
    "IGOS", "IGOSPlusPlus", "noise_stream", "GRAD", "BASE", "TRIAL", "IGOS_NOISE", "IGOSPP_MODES", "IGOSPP_MASKS",
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


class _IntegratedMaskOptimizer(Explainer):
    """Shared machinery: perturbed images, the gradient pass, the streamed loss evaluations, the loop."""

    # subclasses set: self._terms = [(kind "del"|"ins", which "x"|"y"|"xy", direction coefficient)], self._masks
    # (names of the optimised masks), and implement _regulariser(m_out).
    runtime_args: ClassVar[tuple[str, ...]] = Explainer.runtime_args + ("ls_batch", "ls_bounds")

    def _common_checks(self) -> None:
        limits = {"size": 4096, "iterations": 10_000, "ig_steps": 10_000, "ls_batch": 10_000, "batch_size": None}
        for name, high in limits.items():
            setattr(self, name, check_int(name, getattr(self, name), 1, high))
        self.seed = check_int("seed", self.seed, 0)
        if getattr(self, "adaptive_l1", None) is not None:
            check_bool("adaptive_l1", self.adaptive_l1)
        check_range("noise", self.noise, 0.0)
        check_choice("igos_noise", self.igos_noise, IGOS_NOISE)
        check_range("ls_c", self.ls_c, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("ls_decay", self.ls_decay, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("ls_floor", self.ls_floor, 0.0, low_inclusive=False)
        check_range("fixed_step", self.fixed_step, 0.0, low_inclusive=False)
        check_range("l1", self.l1, 0.0)
        for name in ("line_search", "ls_common_noise", "ls_fresh_base", "ls_bounds", "reproduce_cli_swap"):
            check_choice(name, getattr(self, name), (True, False))

    def min_input_size(self) -> int:
        """One pixel per mask cell at least (a finer mask has cells that touch no pixel)."""
        return max(super().min_input_size(), self.size)

    # -- schedule ------------------------------------------------------------------------------------
    def _schedule(self) -> tuple[int, int]:
        """(optimisation iterations, IG points); the official CLI passes them swapped (protocols.md §4.5.1)."""
        if self.reproduce_cli_swap:
            return self.ig_steps, self.iterations
        return self.iterations, self.ig_steps

    # -- images --------------------------------------------------------------------------------------
    def _ups(self, masks: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per term the upsampled mask; the joint terms use up(Mx)·up(My) (``methods.py`` of IGOS_pp)."""
        hw = tuple(self._z.shape[-2:])
        up = {k: upsample_mask(v, hw, align_corners=True) for k, v in masks.items()}
        return [up["x"] * up["y"] if which == "xy" else up[which] for _, which, _ in self._terms]

    def _sign(self, t: int) -> float:
        return 1.0 if self._terms[t][0] == "del" else -1.0

    def _images(self, t: int, up: torch.Tensor, ks: range, n_points: int, integrated: bool,
                gen: torch.Generator | None) -> torch.Tensor:
        """φ of term ``t`` at path points ``ks`` (α_k = k/N; α = 1 when not ``integrated``), plus its noise."""
        z, zb = self._z, self._zb
        if integrated:
            a = torch.tensor([k / n_points for k in ks], device=z.device, dtype=z.dtype).view(-1, 1, 1, 1)
        else:
            a = torch.ones(len(ks), 1, 1, 1, device=z.device, dtype=z.dtype)
        m = a * up
        x = z * m + zb * (1.0 - m) if self._terms[t][0] == "del" else zb * m + z * (1.0 - m)
        if gen is not None:
            x = x + torch.cat([self._draw(gen, tuple(x.shape[-2:])) for _ in ks])
        return x

    def _draw(self, gen: torch.Generator, hw: tuple[int, int]) -> torch.Tensor:
        """One image of noise: N(0, noise²) on all channels, or the original demo's 2·noise on channel 0."""
        if self.igos_noise == "all":
            return torch.randn((1, 3, *hw), generator=gen, device=self._dev) * self.noise
        out = torch.zeros(1, 3, *hw, device=self._dev)
        out[:, 0] = torch.randn((1, *hw), generator=gen, device=self._dev) * (2 * self.noise)
        return out

    def _gen(self, key: tuple[int, int, int] | None, t: int) -> torch.Generator | None:
        if key is None or self.noise == 0:
            return None
        return noise_stream(self.seed, *key, t, device=self._dev)

    # -- the gradient pass ---------------------------------------------------------------------------
    def _gradient(self, masks: dict[str, torch.Tensor], n_points: int, it: int) -> tuple[dict, float]:
        """Direction g (dict per mask) and the noisy integrated loss at M from the same forwards."""
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in masks.items()}
        ups = self._ups(leaves)
        diff = self._z - self._zb  # dφ/dU = α·(I − Ĩ) for deletion and α·(Ĩ − I) = −α·(I − Ĩ) for insertion
        gens = [self._gen((it, GRAD, 0), t) for t in range(len(self._terms))]
        g_up = [torch.zeros_like(u) for u in ups]
        probs = torch.zeros(len(self._terms), n_points, device=self._dev, dtype=torch.float64)
        specs = [(t, k) for t in range(len(self._terms)) for k in range(1, n_points + 1)]
        for i in range(0, len(specs), self.batch_size):
            chunk = specs[i : i + self.batch_size]
            runs = _runs(chunk)
            xs = [self._images(t, ups[t].detach(), ks, n_points, True, gens[t]) for t, ks in runs]
            xc = torch.cat(xs).requires_grad_(True)
            p = self.model.net(xc).softmax(1)[:, self._target]
            w = torch.tensor([self._sign(t) * self._terms[t][2] / n_points for t, _ in chunk], device=self._dev)
            (p * w).sum().backward()
            gx = xc.grad
            j = 0
            for t, ks in runs:
                a = torch.tensor([k / n_points for k in ks], device=self._dev, dtype=gx.dtype).view(-1, 1, 1, 1)
                gk = (gx[j : j + len(ks)] * diff).sum(1, keepdim=True)  # gx already carries the term weight
                g_up[t] += (1.0 if self._terms[t][0] == "del" else -1.0) * (a * gk).sum(0, keepdim=True)
                probs[t, ks.start - 1 : ks.stop - 1] = p[j : j + len(ks)].detach().double()
                j += len(ks)
        reg = self._regulariser(self._out_mask(leaves))
        total = sum((u * gu).sum() for u, gu in zip(ups, g_up)) + reg
        g = torch.autograd.grad(total, [leaves[k] for k in self._masks])
        sign = torch.tensor([self._sign(t) for t in range(len(self._terms))], device=self._dev, dtype=torch.float64)
        loss = float((sign * probs.mean(1)).sum()) + float(reg.detach())
        return dict(zip(self._masks, [t.detach() for t in g])), loss

    # -- streamed loss evaluations ------------------------------------------------------------------
    def _new_eval(self, masks: dict, key: tuple[int, int, int] | None, n_points: int, integrated: bool,
                  thr: float | None) -> _Eval:
        with torch.no_grad():
            ups = [u.detach() for u in self._ups(masks)]
            reg = float(self._regulariser(self._out_mask(masks)))
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
    def _stream(self, evals: list[_Eval]) -> _Eval | None:
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
            xs = []
            for e, t, ks in chunk:
                if t not in e.gens:
                    e.gens[t] = self._gen(e.keys[t], t) if e.integrated else None
                xs.append(self._images(t, e.ups[t], ks, e.n_points, e.integrated, e.gens[t]))
            xb = torch.cat(xs)
            self._fwd_images += xb.shape[0]
            p = self.model.net(xb).softmax(1)[:, self._target].double().tolist()
            j = 0
            for e, t, ks in chunk:
                e.probs[t].extend(p[j : j + len(ks)])
                j += len(ks)
            for e in {id(e): e for e, _, _ in chunk}.values():
                self._check(e)

    def _line_search(self, masks: dict, g: dict, gsq: float, base: float, it: int, n_points: int,
                     clean: bool, alpha0: float) -> dict[str, Any]:
        """Armijo backtracking: the first (largest) α_j = α₀·decay^j ≥ floor with L(clamp(M − α_j g)) ≤
        base − c·α_j·‖g‖²; none → α_last·decay, unaccepted (the official codes still take that tiny step)."""
        alphas: list[float] = []
        a = float(alpha0)
        while a >= self.ls_floor:
            alphas.append(a)
            a *= self.ls_decay
        fwd0 = self._fwd_images
        for start in range(0, len(alphas), self.ls_batch):
            evals = []
            for j in range(start, min(start + self.ls_batch, len(alphas))):
                cand = {k: (masks[k] - alphas[j] * g[k]).clamp(0.0, 1.0) for k in self._masks}
                key = (it, GRAD, 0) if self.ls_common_noise else (it, TRIAL, j)
                thr = base - self.ls_c * alphas[j] * gsq
                evals.append(self._new_eval(cand, None if clean else key, n_points, not clean, thr))
            acc = self._stream(evals)
            if acc is not None:
                j = start + evals.index(acc)
                return {"alpha": alphas[j], "accepted": True, "loss": acc.loss, "n_trials": j + 1,
                        "probs": [float(np.mean(pt)) for pt in acc.probs], "images": self._fwd_images - fwd0}
        last = alphas[-1] * self.ls_decay if alphas else float(alpha0)
        return {"alpha": last, "accepted": False, "loss": float("nan"), "n_trials": len(alphas), "probs": None,
                "images": self._fwd_images - fwd0}

    def _full_eval(self, masks: dict, key: tuple[int, int, int] | None, n_points: int, integrated: bool) -> _Eval:
        ev = self._new_eval(masks, key, n_points, integrated, None)
        self._stream([ev])
        return ev

    @staticmethod
    def _combine(probs: list[float], signs: list[float], reg: float) -> float:
        return reg + sum(s * p for s, p in zip(signs, probs))

    # -- the loop --------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, target: int, ls_clean: bool, alpha0: float, adaptive_l1: bool) -> dict:
        self._dev = x.device
        self._target = int(target)
        self._z = self.model.normalize(x)
        self._zb = self.model.normalize(blur_baseline(x, 51, 50.0))
        self._l1 = float(self.l1)
        self._fwd_images = 0  # images forwarded by _stream (no-grad loss evaluations)
        return self._loop(ls_clean, alpha0, adaptive_l1)

    def _loop(self, ls_clean: bool, alpha0: float, adaptive_l1: bool) -> dict:
        iterations, n_points = self._schedule()
        s = self.size
        signs = [self._sign(t) for t in range(len(self._terms))]
        masks = {k: torch.ones(1, 1, s, s, device=self._dev) for k in self._masks}
        hist: dict[str, list] = {"loss": [], "loss_after": [], "step": [], "accepted": [], "ls_trials": [],
                                 "ls_images": [], "grad_sq": [], "l1": [], "p_del": []}
        clean: list[float] | None = None  # noise-free, non-integrated term probabilities at the current masks

        def clean_probs() -> list[float]:
            ev = self._full_eval(masks, None, 1, False)
            return [float(pt[0]) for pt in ev.probs]

        curve2: list[float] = []
        if adaptive_l1:
            clean = clean_probs()
            curve2 = [clean[0], clean[0]]
        for i in range(iterations):
            g, loss_int = self._gradient(masks, n_points, i)
            gsq = float(sum((t * t).sum() for t in g.values()))
            if ls_clean:
                if clean is None:
                    clean = clean_probs()
                with torch.no_grad():
                    base = self._combine(clean, signs, float(self._regulariser(self._out_mask(masks))))
            elif self.ls_fresh_base:
                base = self._full_eval(masks, (i, BASE, 0), n_points, True).loss
            else:
                base = loss_int
            if self.line_search:
                res = self._line_search(masks, g, gsq, base, i, n_points, ls_clean, alpha0)
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
            hist["l1"].append(self._l1)
            if adaptive_l1:
                if clean is None:
                    clean = clean_probs()
                curve2.append(clean[0])
                hist["p_del"].append(clean[0])
                # the original demo adapts l1 at the END of iteration i, from curve2[i] = p(M_{i-1})
                # (curve2 holds iteration 0 twice), only when T > 3 (protocols.md §4.2)
                if iterations > 3:
                    if i == int(iterations / 2):
                        if abs(curve2[0] - curve2[i]) <= 1e-3:
                            self._l1 /= 10.0
                    elif i == int(iterations / 1.25) and abs(curve2[0] - curve2[i]) <= 1e-2:
                        self._l1 /= 5.0
        return {"masks": masks, "hist": hist}

    def _out_mask(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        m = None
        for k in self._masks:
            m = masks[k] if m is None else m * masks[k]
        return m

    def _finish(self, x: torch.Tensor, masks: dict, hist: dict,
                returned_mask: str = "mxy") -> tuple[torch.Tensor, dict]:
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
        extras.update(hist)
        extras["final_l1"] = self._l1
        for k in ("_z", "_zb"):  # release the per-call tensors
            self.__dict__.pop(k, None)
        return 1.0 - up, extras


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
class IGOS(_IntegratedMaskOptimizer):
    """I-GOS: one deletion mask, integrated-gradient direction, Armijo line search (protocols.md §4.2-4.3, §4.6).

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
    line_search, fixed_step : bool, float
        ``line_search=False`` takes ``fixed_step`` every iteration (ablation).
    ls_c, ls_decay, ls_floor : float
        Armijo constant, backtracking factor, smallest trial step.
    ls_batch : int
        Trial points a chunk of ``batch_size`` images may spill into (1 = strictly one after the other, best on
        CPU; larger = speculative evaluation for accelerators). Does not change the result.
    ls_bounds : bool
        Reject a trial point as soon as the regulariser and the images evaluated so far prove it fails the
        Armijo condition (every probability is in [0, 1]). Does not change the result.
    ls_common_noise : bool
        Evaluate the trial points with the gradient pass's noise draws (False = fresh noise, official).
    ls_fresh_base : bool
        Evaluate the base loss L(M) with fresh noise (official) instead of reusing the gradient pass's forward.
    reproduce_cli_swap : bool
        Run ``ig_steps`` iterations with ``iterations`` IG points (the official CLI's swapped arguments).
    seed : int
        Seed of the noise streams (see :func:`noise_stream`).
    batch_size : int
        Images per model call (runtime only: the result does not depend on it).
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
        line_search: bool = True,
        fixed_step: float = 50.0,
        ls_c: float = 1e-4,
        ls_decay: float = 0.2,
        ls_floor: float = 1e-5,
        ls_batch: int = 1,
        ls_bounds: bool = True,
        ls_common_noise: bool = False,
        ls_fresh_base: bool = False,
        reproduce_cli_swap: bool = False,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model)
        self.size, self.iterations, self.ig_steps = size, iterations, ig_steps
        self.l1, self.tv, self.alpha0, self.noise, self.igos_noise = l1, tv, alpha0, noise, igos_noise
        self.variant, self.adaptive_l1 = variant, adaptive_l1
        self.line_search, self.fixed_step = line_search, fixed_step
        self.ls_c, self.ls_decay, self.ls_floor, self.ls_batch = ls_c, ls_decay, ls_floor, ls_batch
        self.ls_bounds, self.ls_common_noise, self.ls_fresh_base = ls_bounds, ls_common_noise, ls_fresh_base
        self.reproduce_cli_swap, self.seed, self.batch_size = reproduce_cli_swap, seed, batch_size
        self._common_checks()
        check_choice("variant", variant, ("original", "igos_pp"))
        check_range("tv", tv, 0.0)
        if alpha0 is not None:
            check_range("alpha0", alpha0, 0.0, low_inclusive=False)
        self._terms = [("del", "x", 1.0)]
        self._masks = ("x",)

    def _regulariser(self, m: torch.Tensor) -> torch.Tensor:
        """l1·mean|1 − M| + tv·TV₂(M) at mask resolution."""
        return self._l1 * (1.0 - m).abs().mean() + self.tv * tv_norm(m, 2.0).sum()

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        original = self.variant == "original"
        alpha0 = self.alpha0 if self.alpha0 is not None else (200.0 if original else 1000.0)
        adaptive = self.adaptive_l1 if self.adaptive_l1 is not None else original
        out = self._run(x, target, ls_clean=original, alpha0=alpha0, adaptive_l1=adaptive)
        return self._finish(x, out["masks"], out["hist"])


@register("igos_pp")
class IGOSPlusPlus(_IntegratedMaskOptimizer):
    """iGOS++: bilateral deletion/insertion masks tied by their product, BTV smoothness (protocols.md §4.3, §4.6).

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
    line_search, fixed_step : bool, float
        ``line_search=False`` is the "fixed step size" ablation.
    ls_c, ls_decay, ls_floor, ls_batch, ls_bounds, ls_common_noise, ls_fresh_base :
        Line search (see :class:`IGOS`).
    returned_mask : {"mxy", "mx", "my"}
        Which mask becomes the map (Table 3).
    reproduce_cli_swap : bool
        The official CLI's swapped iterations / IG points.
    seed : int
        Seed of the noise streams (see :func:`noise_stream`).
    batch_size : int
        Images per model call (runtime only).
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
        line_search: bool = True,
        fixed_step: float = 50.0,
        ls_c: float = 1e-4,
        ls_decay: float = 0.2,
        ls_floor: float = 1e-5,
        ls_batch: int = 1,
        ls_bounds: bool = True,
        ls_common_noise: bool = False,
        ls_fresh_base: bool = False,
        returned_mask: str = "mxy",
        reproduce_cli_swap: bool = False,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model)
        self.size, self.iterations, self.ig_steps = size, iterations, ig_steps
        self.l1, self.tv, self.alpha0, self.noise, self.igos_noise = l1, tv, alpha0, noise, igos_noise
        self.btv_sigma, self.mode, self.btv = btv_sigma, mode, btv
        self.line_search, self.fixed_step = line_search, fixed_step
        self.ls_c, self.ls_decay, self.ls_floor, self.ls_batch = ls_c, ls_decay, ls_floor, ls_batch
        self.ls_bounds, self.ls_common_noise, self.ls_fresh_base = ls_bounds, ls_common_noise, ls_fresh_base
        self.returned_mask, self.reproduce_cli_swap = returned_mask, reproduce_cli_swap
        self.seed, self.batch_size = seed, batch_size
        self._common_checks()
        check_choice("mode", mode, IGOSPP_MODES)
        check_choice("returned_mask", returned_mask, IGOSPP_MASKS)
        check_range("tv", tv, 0.0)
        check_range("alpha0", alpha0, 0.0, low_inclusive=False)
        check_range("btv_sigma", btv_sigma, 0.0, low_inclusive=False)
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

    def _regulariser(self, m: torch.Tensor) -> torch.Tensor:
        """l1·mean|1 − M| + tv·BTV(M) (or plain TV₂ with ``btv=False``) on the output mask."""
        smooth = igospp_btv(self._z, m, sigma=self.btv_sigma) if self.btv else tv_norm(m, 2.0)
        return self._l1 * (1.0 - m).abs().mean() + self.tv * smooth.sum()

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self._run(x, target, ls_clean=False, alpha0=float(self.alpha0), adaptive_l1=False)
        return self._finish(x, out["masks"], out["hist"], self.returned_mask)

