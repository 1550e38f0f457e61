"""Extremal Perturbations (Fong, Patrick & Vedaldi 2019), the smallest sufficient area, and Meaningful Perturbation
(Fong & Vedaldi 2017, the "Mask" baseline).

Implemented from the formulas and the description in appendix §1 (no official code copied):

    m_a = argmax_{m ∈ M}  Φ(m ⊗ x) − λ_t · mean((vecsort(m) − r_a)²),      λ_t = λ₀ · g^t

with M the smooth max-convolution family (:class:`~saliency_core.perturbations.SmoothMaskGenerator`, evaluated by
the compiled :class:`~saliency_core.kernels.FastSmoothMaskGenerator`), m ⊗ x the
per-pixel interpolation in an 8-level blur pyramid (:func:`~saliency_core.perturbations.pyramid_apply`), SGD with
momentum = dampening = 0.9 on parameters initialised to 1 and clamped to [0, 1], and a deterministic horizontal flip
of the perturbed batch on even iterations (jitter). All areas of one image (and, for ``variant="dual"``, the preserve
and the delete copies) are optimised in ONE batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..checks import check_bool, check_choice, check_int, check_optional_int, check_range
from ..explanation import Explainer
from ..kernels import FastPyramidInterpolator, FastSmoothMaskGenerator, vecsort_area_loss
from ..perturbations import (
    blur_pyramid,
    fade_pyramid,
    gaussian_blur,
    tv_norm,
    upsample_mask,
)
from .registry import register

__all__ = ["ExtremalPerturbation", "MeaningfulPerturbation", "smallest_sufficient_area", "SufficientArea",
           "check_areas"]


def check_areas(areas: Any) -> tuple[float, ...]:
    """Validate a non-empty sequence of area fractions in the open interval (0, 1); return it as a tuple."""
    if isinstance(areas, (int, float)) and not isinstance(areas, bool):
        areas = (areas,)
    try:
        out = tuple(float(a) for a in areas)
    except (TypeError, ValueError):
        raise ValueError(f"areas={areas!r} is not valid; accepted values: a non-empty sequence of numbers in (0, 1)") \
            from None
    if not out or any(not (0.0 < a < 1.0) for a in out):
        raise ValueError(f"areas={areas!r} is not valid; accepted values: a non-empty sequence of numbers in (0, 1)")
    return out


def _reward(logits: torch.Tensor, target: int, kind: str) -> torch.Tensor:
    """Per-row reward: the target logit ("simple") or its margin over the best other class ("contrastive").

    Outputs with spatial dimensions (fully convolutional models) are averaged over positions first.
    """
    if logits.dim() > 2:
        logits = logits.flatten(2).mean(2)
    y = logits[:, target]
    if kind == "simple":
        return y
    other = logits.clone()
    other[:, target] = -math.inf
    return y - other.max(dim=1).values


@register("extremal_perturbation")
class ExtremalPerturbation(Explainer):
    """Extremal perturbation masks at fixed areas (Fong, Patrick & Vedaldi, ICCV 2019).

    Parameters (defaults = TorchRay's ``extremal_perturbation`` at 6a198ee, appendix §1.4)
    ----------
    areas : area fractions a ∈ (0, 1); all are optimised in one batch.
    variant : ``"preserve"`` (maximise Φ(m ⊗ x)), ``"delete"`` (minimise Φ((1−m) ⊗ x); m marks the deleted
        region), ``"dual"`` (both, in the same batch).
    reward : ``"simple"`` (target logit) or ``"contrastive"`` (target logit − best other logit).
    iterations, lr, momentum, dampening : SGD on the mask parameters (800, 0.01, 0.9, 0.9).
    lambda0, lambda_growth : area weight λ_t = λ₀·g^t (300, 1.0035).
    jitter : flip the perturbed batch horizontally on even iterations (deterministic, as the official code).
    perturbation : ``"blur"`` (8-level pyramid, σ_max 20) or ``"fade"`` (to the mean colour).
    levels, max_blur, pad : pyramid levels, σ_max and blur padding (``"zeros"`` = official, ``"reflect"``).
    step, sigma, coldness : smooth-mask family (7 px, 21 px, 20); the margin is σ.
    parametrization : ``"smooth"`` (the paper's family) or ``"pixel"`` (one free parameter per pixel, for the
        ablation; no margin, so the area term is on the image mask).
    smooth : post-hoc blur of the output masks with σ = smooth·min(H, W), zero padding (0 = none; 0.09 in pointing).
    area_on : ``"padded"`` — the area term on the full 260² mask including the invisible margin (official
        behaviour, appendix §1.3.1); ``"crop"`` — on the 224² mask the model sees (paper-literal reading).
    combine : the returned map: ``"sum"`` of the area masks (the pointing game's saliency) or ``"first"`` area's mask.
        With the default single area both are the mask itself.
    seed : EP is deterministic (ones initialisation, alternating flips); ``seed`` is kept for API uniformity and
        recorded in the settings, nothing is drawn from it.
    batch_size : runtime only; images per model call (None = the whole batch of areas at once). Chunks accumulate
        gradients, so results do not depend on it beyond floating-point rounding.

    Extras: ``areas``; ``masks`` (K, H, W), the image masks of the last forward pass (before the final update, as
    the official code); ``params`` (K, h, w); ``rewards`` (K,), the reward term of the energy at the last forward
    pass per area (preserve: Φ(m ⊗ x); delete: −Φ((1−m) ⊗ x); dual: their sum); ``preserve_scores`` /
    ``delete_scores`` (K,), the reward of m ⊗ x / (1−m) ⊗ x recomputed once without flip after optimisation;
    ``clean_score`` Φ(x); ``history`` dict of (T, K) tensors ``energy``, ``reward``, ``area_loss``, and
    ``lambda`` (T,); ``mask_area`` (K,) mean of each image mask.
    """

    def __init__(
        self,
        model,
        areas: Sequence[float] = (0.1,),
        variant: str = "preserve",
        reward: str = "simple",
        iterations: int = 800,
        lr: float = 0.01,
        momentum: float = 0.9,
        dampening: float = 0.9,
        lambda0: float = 300.0,
        lambda_growth: float = 1.0035,
        jitter: bool = True,
        perturbation: str = "blur",
        levels: int = 8,
        max_blur: float = 20.0,
        pad: str = "zeros",
        step: int = 7,
        sigma: float = 21.0,
        coldness: float = 20.0,
        parametrization: str = "smooth",
        smooth: float = 0.0,
        area_on: str = "padded",
        combine: str = "sum",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model)
        self.areas = check_areas(areas)
        self.variant = check_choice("variant", variant, ("preserve", "delete", "dual"))
        self.reward = check_choice("reward", reward, ("simple", "contrastive"))
        self.iterations = check_int("iterations", iterations, 1, 100_000)
        self.lr = check_range("lr", lr, 0.0, low_inclusive=False)
        self.momentum = check_range("momentum", momentum, 0.0, 1.0, high_inclusive=False)
        self.dampening = check_range("dampening", dampening, 0.0, 1.0)
        self.lambda0 = check_range("lambda0", lambda0, 0.0)
        self.lambda_growth = check_range("lambda_growth", lambda_growth, 0.0, low_inclusive=False)
        self.jitter = check_bool("jitter", jitter)
        self.perturbation = check_choice("perturbation", perturbation, ("blur", "fade"))
        self.levels = check_int("levels", levels, 2)
        self.max_blur = check_range("max_blur", max_blur, 0.0)
        self.pad = check_choice("pad", pad, ("zeros", "reflect", "replicate"))
        self.step = check_int("step", step, 1)
        self.sigma = check_range("sigma", sigma, 0.0, low_inclusive=False)
        self.coldness = check_range("coldness", coldness, 0.0, low_inclusive=False)
        self.parametrization = check_choice("parametrization", parametrization, ("smooth", "pixel"))
        self.smooth = check_range("smooth", smooth, 0.0)
        self.area_on = check_choice("area_on", area_on, ("padded", "crop"))
        self.combine = check_choice("combine", combine, ("sum", "first"))
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_optional_int("batch_size", batch_size, 1)

    # ------------------------------------------------------------------------------------------
    def _pyramid(self, z: torch.Tensor) -> torch.Tensor:
        if self.perturbation == "blur":
            return blur_pyramid(z, self.levels, self.max_blur, pad=self.pad)[:, 0]
        return fade_pyramid(z, self.levels)[:, 0]

    def _masks(self, gen, params):
        if gen is None:
            return params, params
        return gen(params)

    def _forward_rewards(self, interp, crop, target, flip, grad):
        """Rewards per batch row for the perturbed inputs of masks ``crop`` (K, 1, H, W); dual → 2K rows."""
        k = crop.shape[0]
        rows = []
        if self.variant in ("preserve", "dual"):
            rows.append(crop)
        if self.variant in ("delete", "dual"):
            rows.append(1.0 - crop)
        mall = torch.cat(rows)
        bs = self.batch_size or mall.shape[0]
        out = []
        for i in range(0, mall.shape[0], bs):
            mi = mall[i: i + bs]
            xin = interp(mi, flip=flip)  # = hflip(pyramid_apply(pyr, mi)) when flip
            r = _reward(self.model.net(xin), target, self.reward)
            if grad:
                # per chunk: backward now into the detached mask leaf (frees the activations)
                sign = torch.ones_like(r)
                if self.variant == "delete":
                    sign = -sign
                elif self.variant == "dual":
                    sign = torch.where(torch.arange(i, i + r.shape[0], device=r.device) < k, 1.0, -1.0)
                r.backward(-sign)
            out.append(r.detach())
        r = torch.cat(out)
        if self.variant == "preserve":
            return r, r, None
        if self.variant == "delete":
            return -r, None, r
        return r[:k] - r[k:], r[:k], r[k:]

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        h, w = x.shape[-2:]
        k = len(self.areas)
        z = self.model.normalize(x)
        with torch.no_grad():
            pyr = self._pyramid(z)  # (L, 3, H, W)
            interp = FastPyramidInterpolator(pyr)  # level tables built once for all iterations
        if self.parametrization == "smooth":
            gen = FastSmoothMaskGenerator((h, w), self.step, self.sigma, self.coldness)
            pshape = gen.param_shape
        else:
            gen, pshape = None, (h, w)
        params = torch.ones(k, 1, *pshape, device=x.device, requires_grad=True)
        opt = torch.optim.SGD([params], lr=self.lr, momentum=self.momentum, dampening=self.dampening)
        areas_t = torch.tensor(self.areas, device=x.device)
        hist_e, hist_r, hist_a, hist_l = [], [], [], []
        lam = float(self.lambda0)
        crop = None
        for t in range(self.iterations):
            opt.zero_grad(set_to_none=False)
            full, crop = self._masks(gen, params)
            # rewards: chunked forward + backward into the mask graph (the model is the cost)
            crop_leaf = crop.detach().requires_grad_(True)
            rew, _, _ = self._forward_rewards(interp, crop_leaf, target, self.jitter and t % 2 == 0, grad=True)
            area_mask = full if self.area_on == "padded" else crop
            aloss = vecsort_area_loss(area_mask, areas_t)
            # −energy = −Σ reward + λ Σ R_a ; reward gradient already sits in crop_leaf.grad
            torch.autograd.backward([crop, lam * aloss.sum()], [crop_leaf.grad, None])
            hist_e.append(rew - lam * aloss.detach())
            hist_r.append(rew)
            hist_a.append(aloss.detach())
            hist_l.append(lam)
            opt.step()
            with torch.no_grad():
                params.clamp_(0.0, 1.0)
            lam *= self.lambda_growth
        masks = crop.detach()
        with torch.no_grad():
            pres, dele = self._forward_rewards_eval(interp, masks, target)
            clean = _reward(self.model.net(z), target, self.reward)[0]
        out_masks = masks
        if self.smooth > 0:
            out_masks = gaussian_blur(masks, self.smooth * min(h, w), pad="zeros")
        sal = out_masks[:, 0].sum(0) if self.combine == "sum" else out_masks[0, 0]
        extras = {
            "areas": list(self.areas),
            "masks": out_masks[:, 0].cpu(),
            "params": params.detach()[:, 0].cpu(),
            "rewards": hist_r[-1].cpu(),
            "preserve_scores": pres.cpu(),
            "delete_scores": dele.cpu(),
            "clean_score": float(clean),
            "mask_area": masks.flatten(1).mean(1).cpu(),
            "history": {
                "energy": torch.stack(hist_e).cpu(),
                "reward": torch.stack(hist_r).cpu(),
                "area_loss": torch.stack(hist_a).cpu(),
                "lambda": torch.tensor(hist_l),
            },
        }
        return sal, extras

    @torch.no_grad()
    def _forward_rewards_eval(self, interp, masks, target):
        """Scores of m ⊗ x and (1−m) ⊗ x without flip, both variants, one batch (2K rows): (preserve, delete)."""
        mall = torch.cat([masks, 1.0 - masks])
        bs = self.batch_size or mall.shape[0]
        out = []
        for i in range(0, mall.shape[0], bs):
            out.append(_reward(self.model.net(interp(mall[i: i + bs])), target, self.reward))
        r = torch.cat(out)
        k = masks.shape[0]
        return r[:k], r[k:]


# ----------------------------------------------------------------------------------------------
# smallest sufficient area a* = min{a : Φ(m_a ⊗ x) ≥ τ Φ(x)}
# ----------------------------------------------------------------------------------------------
@dataclass
class SufficientArea:
    """Result of :func:`smallest_sufficient_area`.

    ``a_star`` is the smallest evaluated area whose preserved score reaches ``threshold`` (nan when none does);
    ``curve`` maps every evaluated area to its score; ``masks`` to its (H, W) mask; ``n_optimised`` counts the
    areas that had to be optimised (the rest came from the cache).
    """

    a_star: float
    threshold: float
    clean_score: float
    curve: dict[float, float] = field(default_factory=dict)
    masks: dict[float, torch.Tensor] = field(default_factory=dict)
    n_optimised: int = 0

    def records(self) -> list[dict[str, float]]:
        """Tidy rows (area, score, sufficient) sorted by area, for a DataFrame."""
        return [{"area": a, "score": s, "sufficient": bool(s >= self.threshold)} for a, s in sorted(self.curve.items())]


def _per_area_results(ep: ExtremalPerturbation, x, target, areas, cache, image_id):
    """Preserve score and mask per area, optimising the missing areas in ONE batch and caching each area alone."""
    base = {k: v for k, v in ep.settings().items() if k not in ("areas", "combine", "smooth")}
    results: dict[float, dict] = {}
    missing = []
    for a in areas:
        key = {**base, "area": round(a, 8), "model": ep.model.key, "image": image_id, "target": int(target)}
        hit = None
        if isinstance(cache, dict):
            hit = cache.get(repr(sorted(key.items())))
        elif cache is not None:
            hit = cache.load("ep_area", key)
        if hit is not None:
            results[a] = hit
        else:
            missing.append((a, key))
    if missing:
        params = {**ep.settings(), "areas": tuple(a for a, _ in missing), "smooth": 0.0}
        runner = ExtremalPerturbation(ep.model, batch_size=ep.batch_size, **params)
        expl = runner.explain(x, target)
        for i, (a, key) in enumerate(missing):
            res = {"score": float(expl.extras["preserve_scores"][i]), "mask": expl.extras["masks"][i].clone(),
                   "clean": float(expl.extras["clean_score"])}
            results[a] = res
            if isinstance(cache, dict):
                cache[repr(sorted(key.items()))] = res
            elif cache is not None:
                cache.get_or_compute("ep_area", key, lambda res=res: res)
    return results, len(missing)


def smallest_sufficient_area(
    ep: ExtremalPerturbation,
    x: torch.Tensor,
    target: int | None = None,
    tau: float = 0.9,
    areas: Sequence[float] = (0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8),
    rounds: int = 2,
    probes: int = 1,
    cache: Any = None,
    image_id: str | None = None,
) -> SufficientArea:
    """The extremal area a* = min{a : Φ(m_a ⊗ x) ≥ τ·Φ(x)} of Fong et al. (2019).

    A batched sweep over ``areas`` (one optimisation batch) brackets a*, then ``rounds`` rounds each optimise
    ``probes`` equally spaced areas inside the bracket in one batch (probes = 1 is bisection). Φ is ``ep``'s reward
    of the preserved image m_a ⊗ x, recomputed without flip after optimisation (``variant`` is forced to preserve
    semantics by using the preserve score). ``cache``: a dict (in-memory memo) or a
    :class:`~saliency_core.cache.ResultCache` (``load(kind, key)``, ``get_or_compute(kind, key, fn)``); areas already
    optimised with the same settings, model, image (``image_id``, default: a hash of ``x``) and target are reused.
    With logits, τ·Φ(x) assumes Φ(x) > 0.
    """
    areas = tuple(sorted(check_areas(areas)))
    check_range("tau", tau, 0.0, low_inclusive=False)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if target is None:
        target = ep.model.top1(x)
    if image_id is None:
        import hashlib

        image_id = "sha256:" + hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]
    res, n_opt = _per_area_results(ep, x, target, areas, cache, image_id)
    clean = next(iter(res.values()))["clean"]
    thr = tau * clean
    curve = {a: r["score"] for a, r in res.items()}
    masks = {a: r["mask"] for a, r in res.items()}
    ok = [a for a in sorted(curve) if curve[a] >= thr]
    lo = max([a for a in sorted(curve) if curve[a] < thr and (not ok or a < ok[0])], default=0.0)
    hi = ok[0] if ok else None
    for _ in range(int(rounds)):
        if hi is None:
            break
        new = tuple(lo + (hi - lo) * (i + 1) / (probes + 1) for i in range(probes))
        new = tuple(a for a in new if a > 0 and a not in curve)
        if not new:
            break
        r2, n2 = _per_area_results(ep, x, target, new, cache, image_id)
        n_opt += n2
        for a, r in r2.items():
            curve[a], masks[a] = r["score"], r["mask"]
        for a in sorted(new):
            if curve[a] >= thr:
                hi = min(hi, a)
            else:
                lo = max(lo, a)
        ok = [a for a in sorted(curve) if curve[a] >= thr]
        hi = ok[0] if ok else None
        lo = max([a for a in curve if curve[a] < thr and a < (hi or 1.0)], default=0.0)
    a_star = hi if hi is not None else float("nan")
    return SufficientArea(a_star=a_star, threshold=thr, clean_score=clean, curve=curve, masks=masks,
                          n_optimised=n_opt)


# ----------------------------------------------------------------------------------------------
# Meaningful perturbation (Fong & Vedaldi 2017), the "Mask" baseline
# ----------------------------------------------------------------------------------------------
@register("mask")
class MeaningfulPerturbation(Explainer):
    """Meaningful perturbation, "Mask" (Fong & Vedaldi, ICCV 2017): a deletion keep-mask m (1 = keep) minimising

        λ₁·‖1 − m‖₁ + λ₂·Σ|∇m|^β + p_c(m ⊗ x)

    with m ⊗ x the per-pixel interpolation between x (m = 1) and its blur (σ = ``blur_sigma``, m = 0), m a
    ``mask_size``² grid bilinearly upsampled, Adam, random jitter of up to ``jitter`` px, clamp to [0, 1].
    the appendix is silent on this method; the defaults follow the 2017 paper as far as we know it
    (λ₁ = 1e-4, λ₂ = 1e-2, β = 3, blur σ 10, 28×28 mask, Adam lr 0.1, 500 iterations, jitter 4 px, softmax score) —
    **not confirmed** against the paper's text; the norms are sums over the 28×28 mask. Built on the shared operators
    (two-level pyramid = image and blur; TV of :func:`~saliency_core.perturbations.tv_norm`).

    The map is 1 − m upsampled (higher = more salient, deleting it drops the score). Extras: ``mask`` (keep-mask at
    input size), ``params``, ``history`` (score, loss per iteration), ``final_score``.
    """

    def __init__(self, model, l1: float = 1e-4, tv: float = 1e-2, tv_beta: float = 3.0, blur_sigma: float = 10.0,
                 mask_size: int = 28, lr: float = 0.1, iterations: int = 500, jitter: int = 4, response: str = "prob",
                 seed: int = 0) -> None:
        super().__init__(model)
        self.l1 = check_range("l1", l1, 0.0)
        self.tv = check_range("tv", tv, 0.0)
        self.tv_beta = check_range("tv_beta", tv_beta, 0.0, low_inclusive=False)
        self.blur_sigma = check_range("blur_sigma", blur_sigma, 0.0, low_inclusive=False)
        self.mask_size = check_int("mask_size", mask_size, 2)
        self.lr = check_range("lr", lr, 0.0, low_inclusive=False)
        self.iterations = check_int("iterations", iterations, 1, 100_000)
        self.jitter = check_int("jitter", jitter, 0)
        self.response = check_choice("response", response, ("prob", "logit"))
        self.seed = check_int("seed", seed, 0)

    def min_input_size(self) -> int:
        """One pixel per mask cell at least."""
        return max(super().min_input_size(), self.mask_size)

    def _explain(self, x, target):
        h, w = x.shape[-2:]
        gen = torch.Generator().manual_seed(self.seed)
        z = self.model.normalize(x)
        with torch.no_grad():
            pyr = torch.stack([gaussian_blur(z, self.blur_sigma, pad="reflect"), z])[:, 0]  # m=0 → blur, 1 → x
            interp = FastPyramidInterpolator(pyr)  # = pyramid_apply(pyr, ·), tables built once for all iterations
        params = torch.ones(1, 1, self.mask_size, self.mask_size, device=x.device, requires_grad=True)
        opt = torch.optim.Adam([params], lr=self.lr)
        hist_s, hist_l = [], []
        j = self.jitter
        for _ in range(self.iterations):
            opt.zero_grad()
            m = upsample_mask(params, (h, w), align_corners=False)
            xin = interp(m)
            if j > 0:
                dy, dx = (int(v) for v in torch.randint(-j, j + 1, (2,), generator=gen))
                xin = torch.roll(xin, shifts=(dy, dx), dims=(2, 3))
            out = self.model.net(xin)
            s = out.softmax(1)[:, target] if self.response == "prob" else out[:, target]
            loss = self.l1 * (1 - params).abs().sum() + self.tv * tv_norm(params, self.tv_beta, "sum").sum() + s.sum()
            loss.backward()
            opt.step()
            with torch.no_grad():
                params.clamp_(0.0, 1.0)
            hist_s.append(float(s.detach()))
            hist_l.append(float(loss.detach()))
        with torch.no_grad():
            m = upsample_mask(params, (h, w), align_corners=False)
            out = self.model.net(interp(m))
            final = out.softmax(1)[0, target] if self.response == "prob" else out[0, target]
        sal = 1.0 - m[0, 0]
        return sal, {"mask": m[0, 0].cpu(), "params": params.detach()[0, 0].cpu(), "final_score": float(final),
                     "history": {"score": torch.tensor(hist_s), "loss": torch.tensor(hist_l)}}
