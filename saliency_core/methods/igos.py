"""I-GOS (Qi, Khorram & Fuxin 2020) and iGOS++ (Khorram, Lawson & Fuxin 2021): integrated-gradient optimised masks.

Both optimise keep-masks M ∈ [0, 1]^{s×s} (s = 224, 28 or 7; 1 keeps the image, low = salient), upsampled
bilinearly with ``align_corners=True`` and composed as φ(I, Ĩ, M) = I·M + Ĩ·(1 − M) in normalised space, where
Ĩ is the 51×51, σ = 50 blur of the image (protocols.md §4.1).

* The descent direction is the "integrated gradient" of protocols.md §4.1: ∇_M (1/N) Σ_k p_c(φ(α_k M) + noise),
  α_k = k/N. ALL path points of one step, and all deletion / insertion terms, go through the model in ONE
  batch (chunked by ``batch_size``) and ONE backward.
* The step is an Armijo backtracking line search (c = 1e-4, ×0.2 down to 1e-5) whose trial points are evaluated
  ``ls_batch`` at a time in one batched forward; the largest trial step that satisfies the condition is taken,
  exactly what the sequential search returns.
* I-GOS: loss del(M) + l1·mean|1 − M| + tv·TV₂(M). ``variant="original"`` = the original demo (α₀ 200, noise-free
  non-integrated line-search loss, adaptive L1); ``variant="igos_pp"`` = the IGOS_pp repository's I-GOS
  (α₀ 1000, noisy integrated line-search loss, no adaptive L1).
* iGOS++: deletion mask Mx and insertion mask My, loss del(Mx) − ins(My) + del(Mxy) − ins(Mxy) + R(Mxy),
  Mxy = Mx ⊙ My, R = l1·mean|1 − M| + l2·BTV(M) with BTV = ½[TV₂(M) + bilateral TV₂(up(M))]; the direction is
  ½∇(deletion/insertion terms) + ∇R and one step size is shared by both masks (protocols.md §4.3).

The returned map is 1 − up(M) (higher = more relevant); ``extras`` hold the s×s masks, losses and step sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..explanation import Explainer, check_choice, check_range, register
from ..perturbations import blur_baseline, igospp_btv, tv_norm, upsample_mask

__all__ = ["IGOS", "IGOSPlusPlus", "armijo_search", "IGOS_NOISE", "IGOSPP_MODES", "IGOSPP_OUTPUTS"]

IGOS_NOISE = ("all", "official")
IGOSPP_MODES = ("bilateral", "insertion", "naive", "deletion")
IGOSPP_OUTPUTS = ("mxy", "mx", "my")


def armijo_search(
    losses_at: Callable[[list[float]], torch.Tensor],
    base_loss: float,
    grad_sq: float,
    alpha0: float,
    c: float = 1e-4,
    decay: float = 0.2,
    floor: float = 1e-5,
    group: int = 4,
) -> dict[str, Any]:
    """Backtracking line search with batched trial points.

    Trial steps α_j = α₀·decay^j (j = 0, 1, … while α_j ≥ ``floor``) are evaluated ``group`` at a time by
    ``losses_at(alphas) -> (len(alphas),) losses``; the first (largest) α_j with
    L(α_j) ≤ ``base_loss`` − c·α_j·``grad_sq`` is returned. When none qualifies the search stops below the floor
    and returns α_last·decay unaccepted, as the official code does (it then still takes that tiny step).
    Returns ``{"alpha", "accepted", "loss" (at the accepted trial or nan), "n_trials", "n_calls"}``.
    """
    alphas: list[float] = []
    a = float(alpha0)
    while a >= floor:
        alphas.append(a)
        a *= decay
    n_trials = n_calls = 0
    for start in range(0, len(alphas), max(1, int(group))):
        chunk = alphas[start : start + max(1, int(group))]
        vals = losses_at(chunk)
        n_calls += 1
        for i, (al, v) in enumerate(zip(chunk, vals.tolist())):
            if v <= base_loss - c * al * grad_sq:
                return {"alpha": al, "accepted": True, "loss": v, "n_trials": n_trials + i + 1, "n_calls": n_calls}
        n_trials += len(chunk)
    last = alphas[-1] * decay if alphas else float(alpha0)
    return {"alpha": last, "accepted": False, "loss": float("nan"), "n_trials": n_trials, "n_calls": n_calls}


class _IntegratedMaskOptimizer(Explainer):
    """Shared machinery: perturbed batches, integrated scores and gradients, the line search, the loop."""

    # subclasses set: self._terms = [(kind "del"|"ins", which "x"|"y"|"xy", direction coefficient)], self._masks
    # (names of the optimised masks), and implement _regulariser(m_out, z).

    def _common_checks(self) -> None:
        for name in ("size", "iterations", "ig_steps", "ls_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} is not valid; accepted values: an int >= 1")
        check_range("noise", self.noise, 0.0)
        check_choice("igos_noise", self.igos_noise, IGOS_NOISE)
        check_range("ls_c", self.ls_c, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("ls_decay", self.ls_decay, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("ls_floor", self.ls_floor, 0.0, low_inclusive=False)
        check_range("fixed_step", self.fixed_step, 0.0, low_inclusive=False)
        check_range("l1", self.l1, 0.0)

    # -- schedule ------------------------------------------------------------------------------------
    def _schedule(self) -> tuple[int, int]:
        """(optimisation iterations, IG points); the official CLI passes them swapped (protocols.md §4.5.1)."""
        if self.reproduce_cli_swap:
            return self.ig_steps, self.iterations
        return self.iterations, self.ig_steps

    # -- batches -------------------------------------------------------------------------------------
    def _noise(self, n: int, shape: tuple[int, int]) -> torch.Tensor | None:
        if self.noise == 0:
            return None
        h, w = shape
        if self.igos_noise == "all":
            return torch.randn(n, 3, h, w, generator=self._gen, device=self._dev) * self.noise
        # original I-GOS demo: cv2.randn with a scalar fills channel 0 only, added twice: std 2σ on R
        out = torch.zeros(n, 3, h, w, device=self._dev)
        out[:, 0] = torch.randn(n, h, w, generator=self._gen, device=self._dev) * (2 * self.noise)
        return out

    @staticmethod
    def _mask_of(which: str, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        if which == "xy":
            return masks["x"] * masks["y"]
        return masks[which]

    def _out_mask(self, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        m = None
        for k in self._masks:
            m = masks[k] if m is None else m * masks[k]
        return m

    def _path_images(self, masks: dict[str, torch.Tensor], n_points: int, integrated: bool = True) -> torch.Tensor:
        """(T·N, 3, H, W): for every term, φ along the path α_k = k/N (or α = 1 when not ``integrated``)."""
        z, zb = self._z, self._zb
        hw = tuple(z.shape[-2:])
        if integrated:
            alphas = torch.arange(1, n_points + 1, device=self._dev, dtype=z.dtype).view(-1, 1, 1, 1) / n_points
        else:
            alphas = torch.ones(1, 1, 1, 1, device=self._dev, dtype=z.dtype)
        out = []
        for kind, which, _coef in self._terms:
            up = upsample_mask(self._mask_of(which, masks), hw, align_corners=True)
            mk = alphas * up
            if kind == "del":
                out.append(z * mk + zb * (1.0 - mk))
            else:  # insertion: φ(Ĩ, I, M)
                out.append(zb * mk + z * (1.0 - mk))
        return torch.cat(out)

    def _term_scores(self, probs: torch.Tensor, per_term: int) -> torch.Tensor:
        return probs.view(len(self._terms), per_term).mean(1)

    def _loss_from_scores(self, scores: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
        sign = torch.tensor([1.0 if k == "del" else -1.0 for k, _, _ in self._terms], device=scores.device)
        return (sign * scores).sum() + reg

    def _probs(self, x: torch.Tensor) -> torch.Tensor:
        """No-grad target probabilities of normalised images, chunked by ``batch_size``."""
        return self.model.logits(x, batch_size=self.batch_size, normalized=True).softmax(1)[:, self._target]

    # -- one gradient pass -----------------------------------------------------------------------
    def _gradient(self, masks: dict[str, torch.Tensor], n_points: int) -> tuple[dict, float, torch.Tensor | None]:
        """Direction g (dict per mask), loss at M from the same forward, and the noise used."""
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in masks.items()}
        x = self._path_images(leaves, n_points)
        noise = self._noise(x.shape[0], tuple(x.shape[-2:]))
        if noise is not None:
            x = x + noise
        sign = torch.tensor([(1.0 if k == "del" else -1.0) * c for k, _, c in self._terms], device=self._dev)
        w = sign.repeat_interleave(n_points) / n_points
        grads = []
        probs = []
        xd = x.detach()
        for i in range(0, xd.shape[0], self.batch_size):
            xc = xd[i : i + self.batch_size].requires_grad_(True)
            p = self.model.net(xc).softmax(1)[:, self._target]
            (p * w[i : i + self.batch_size]).sum().backward()
            grads.append(xc.grad)
            probs.append(p.detach())
        gx = torch.cat(grads)
        reg = self._regulariser(self._out_mask(leaves))
        total = (x * gx).sum() + reg  # d/dM of this = chain rule through the batch + ∇R
        g = torch.autograd.grad(total, [leaves[k] for k in self._masks])
        scores = self._term_scores(torch.cat(probs), n_points)
        loss = float(self._loss_from_scores(scores, reg.detach()))
        return dict(zip(self._masks, [t.detach() for t in g])), loss, noise

    # -- line-search losses ----------------------------------------------------------------------
    @torch.no_grad()
    def _ls_losses(self, masks: dict, g: dict, alphas: list[float], n_points: int, noise: torch.Tensor | None,
                   clean: bool) -> torch.Tensor:
        cands = [{k: (masks[k] - a * g[k]).clamp(0.0, 1.0) for k in self._masks} for a in alphas]
        xs = [self._path_images(cm, n_points, integrated=not clean) for cm in cands]
        per = xs[0].shape[0]
        x = torch.cat(xs)
        if not clean and self.noise > 0:
            if self.ls_common_noise and noise is not None:
                x = x + noise.repeat(len(alphas), 1, 1, 1)
            else:
                x = x + self._noise(x.shape[0], tuple(x.shape[-2:]))
        p = self._probs(x).view(len(alphas), per)
        out = []
        for j, cm in enumerate(cands):
            scores = self._term_scores(p[j], per // len(self._terms))
            out.append(self._loss_from_scores(scores, self._regulariser(self._out_mask(cm))))
        return torch.stack(out)

    @torch.no_grad()
    def _clean_loss(self, masks: dict) -> tuple[float, float]:
        """Noise-free, non-integrated loss at M and the clean deletion probability p(φ(I, Ĩ, M))."""
        x = self._path_images(masks, 1, integrated=False)
        p = self._probs(x)
        loss = float(self._loss_from_scores(p, self._regulariser(self._out_mask(masks))))
        return loss, float(p[0])

    # -- the loop --------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, target: int, ls_clean: bool, alpha0: float, adaptive_l1: bool) -> dict:
        self._dev = x.device
        self._gen = torch.Generator(device=x.device).manual_seed(int(self.seed))
        self._target = int(target)
        self._z = self.model.normalize(x)
        self._zb = self.model.normalize(blur_baseline(x, 51, 50.0))
        self._l1 = float(self.l1)
        iterations, n_points = self._schedule()
        s = self.size
        masks = {k: torch.ones(1, 1, s, s, device=x.device) for k in self._masks}
        hist: dict[str, list] = {"loss": [], "loss_after": [], "step": [], "accepted": [], "ls_trials": [],
                                 "l1": [], "p_del": []}
        curve2: list[float] = []
        if adaptive_l1:
            _, p0 = self._clean_loss(masks)
            curve2 = [p0, p0]
        for i in range(iterations):
            if adaptive_l1:
                if i == iterations // 2 and abs(curve2[0] - curve2[i]) <= 1e-3:
                    self._l1 /= 10.0
                if i == int(iterations / 1.25) and abs(curve2[0] - curve2[i]) <= 1e-2:
                    self._l1 /= 5.0
            g, loss_int, noise = self._gradient(masks, n_points)
            gsq = float(sum((t * t).sum() for t in g.values()))
            if ls_clean:
                base, _ = self._clean_loss(masks)
            elif self.ls_fresh_base:
                base = float(self._ls_losses(masks, g, [0.0], n_points, noise, clean=False)[0])
            else:
                base = loss_int
            if self.line_search:
                def trial_losses(al, masks=masks, g=g, noise=noise):
                    return self._ls_losses(masks, g, al, n_points, noise, ls_clean)

                res = armijo_search(
                    trial_losses, base, gsq, alpha0,
                    self.ls_c, self.ls_decay, self.ls_floor, self.ls_batch,
                )
            else:
                res = {"alpha": float(self.fixed_step), "accepted": True, "loss": float("nan"), "n_trials": 0}
            masks = {k: (masks[k] - res["alpha"] * g[k]).clamp(0.0, 1.0) for k in self._masks}
            hist["loss"].append(base)
            hist["loss_after"].append(res["loss"])
            hist["step"].append(res["alpha"])
            hist["accepted"].append(bool(res["accepted"]))
            hist["ls_trials"].append(int(res["n_trials"]))
            hist["l1"].append(self._l1)
            if adaptive_l1:
                _, p = self._clean_loss(masks)
                curve2.append(p)
                hist["p_del"].append(p)
        return {"masks": masks, "hist": hist}

    def _finish(self, x: torch.Tensor, masks: dict, hist: dict, output: str = "mxy") -> tuple[torch.Tensor, dict]:
        m_out = self._out_mask(masks)
        mx = masks.get("x", m_out)
        my = masks.get("y", m_out)
        chosen = {"mxy": m_out, "mx": mx, "my": my}[output]
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
        # release the per-call tensors
        for k in ("_z", "_zb", "_gen"):
            self.__dict__.pop(k, None)
        return 1.0 - up, extras


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
        Divide l1 by 10 at ⌊T/2⌋ and by 5 at ⌊T/1.25⌋ when the deletion score has not moved; ``None`` = on for
        ``"original"``, off for ``"igos_pp"``.
    line_search, fixed_step : bool, float
        ``line_search=False`` takes ``fixed_step`` every iteration (ablation).
    ls_c, ls_decay, ls_floor, ls_batch : float, float, float, int
        Armijo constant, backtracking factor, smallest trial step, trial points per batched evaluation.
    ls_common_noise : bool
        Evaluate the trial points with the gradient pass's noise draws (False = fresh noise, official).
    ls_fresh_base : bool
        Evaluate the base loss L(M) with fresh noise (official) instead of reusing the gradient pass's forward.
    reproduce_cli_swap : bool
        Run ``ig_steps`` iterations with ``iterations`` IG points (the official CLI's swapped arguments).
    seed : int
        Seed of the noise generator.
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
        ls_batch: int = 4,
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
        self.ls_common_noise, self.ls_fresh_base = ls_common_noise, ls_fresh_base
        self.reproduce_cli_swap, self.seed, self.batch_size = reproduce_cli_swap, seed, batch_size
        self._common_checks()
        check_choice("variant", variant, ("original", "igos_pp"))
        check_range("tv", tv, 0.0)
        if alpha0 is not None:
            check_range("alpha0", alpha0, 0.0, low_inclusive=False)
        self._terms = [("del", "x", 1.0)]
        self._masks = ("x",)

    def _regulariser(self, m: torch.Tensor) -> torch.Tensor:
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
    l1, l2 : float
        Weights of mean|1 − Mxy| and of the smoothness term on Mxy (1 / 20; the README preset is 10 / 20).
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
    ls_c, ls_decay, ls_floor, ls_batch, ls_common_noise, ls_fresh_base :
        Line search (see :class:`IGOS`).
    output : {"mxy", "mx", "my"}
        Which mask becomes the map (Table 3).
    reproduce_cli_swap : bool
        The official CLI's swapped iterations / IG points.
    seed : int
        Noise generator seed.
    """

    def __init__(
        self,
        model,
        size: int = 28,
        iterations: int = 15,
        ig_steps: int = 20,
        l1: float = 1.0,
        l2: float = 20.0,
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
        ls_batch: int = 4,
        ls_common_noise: bool = False,
        ls_fresh_base: bool = False,
        output: str = "mxy",
        reproduce_cli_swap: bool = False,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        super().__init__(model)
        self.size, self.iterations, self.ig_steps = size, iterations, ig_steps
        self.l1, self.l2, self.alpha0, self.noise, self.igos_noise = l1, l2, alpha0, noise, igos_noise
        self.btv_sigma, self.mode, self.btv = btv_sigma, mode, btv
        self.line_search, self.fixed_step = line_search, fixed_step
        self.ls_c, self.ls_decay, self.ls_floor, self.ls_batch = ls_c, ls_decay, ls_floor, ls_batch
        self.ls_common_noise, self.ls_fresh_base = ls_common_noise, ls_fresh_base
        self.output, self.reproduce_cli_swap, self.seed, self.batch_size = output, reproduce_cli_swap, seed, batch_size
        self._common_checks()
        check_choice("mode", mode, IGOSPP_MODES)
        check_choice("output", output, IGOSPP_OUTPUTS)
        check_range("l2", l2, 0.0)
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
        smooth = igospp_btv(self._z, m, sigma=self.btv_sigma) if self.btv else tv_norm(m, 2.0)
        return self._l1 * (1.0 - m).abs().mean() + self.l2 * smooth.sum()

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self._run(x, target, ls_clean=False, alpha0=float(self.alpha0), adaptive_l1=False)
        return self._finish(x, out["masks"], out["hist"], self.output)

