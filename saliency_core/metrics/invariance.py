"""Invariance actually achieved by a perturbation box (Hara et al. 2018; Ikeno & Hara 2018, appendix §2).

Both papers call a box R = [lower, upper] (per pixel and channel, in [0, 1] pixel units) *invariant* when the
decision stays c for EVERY perturbation in it (eq. 2.1 of the stochastic paper): a worst case,

    min_{r ∈ R}  f_c(x + r) − max_{j≠c} f_j(x + r)  > 0        (f = logits).

* :func:`worst_case_invariance` searches for a violation. Start points: for each of the ``k`` competitors j with
  the largest logits at x, the **linearised worst corner** of the box for the margin f_c − f_j,
  r_j = upper where ∂(f_c − f_j)/∂x < 0 and lower elsewhere (the first-order minimiser over the box, which moves
  the margin by ⟨|∇|, box⟩ ~ δ‖∇‖₁). From all starts at once (one batch), projected sign-gradient ascent inside
  the box on g(r) = max_{j≠c} f_j(x + r) − f_c(x + r). Reported: ``violated`` (some evaluated point changes the
  top-1) and the smallest margin found. A search can miss a violation but never reports a false one.
* :func:`invariance_rate` is the fraction of uniform draws r ~ U(R) that keep the top-1: the quantity whose
  expectation the stochastic paper penalises (its Prop. 3.1 replaces the worst case by an expectation over
  t ~ U[−1, 1]^d). It is an expectation stand-in, not a test of invariance: in d = 3·224² dimensions uniform draws
  move the margin by about δ‖∇‖₂, far less than the worst corner's δ‖∇‖₁.
* :func:`box_from_explanation` reads the box of an ``invariant_*`` explanation; :func:`scale_box` rescales a box
  (for comparisons at equal mean half-width).
"""

from __future__ import annotations

from typing import Any

import torch

from ..checks import check_image, check_int, check_range, check_target

__all__ = ["box_from_explanation", "box_half_width", "scale_box", "invariance_rate", "worst_case_invariance"]


def _expand(grid: torch.Tensor, patch: int) -> torch.Tensor:
    """``(..., h, w)`` patch grid → ``(..., h·p, w·p)`` (kron with ones(p, p))."""
    if patch == 1:
        return grid
    return grid.repeat_interleave(patch, dim=-2).repeat_interleave(patch, dim=-1)


def box_from_explanation(expl) -> tuple[torch.Tensor, torch.Tensor]:
    """(lower, upper) perturbation bounds (3, H, W) of an invariant-perturbation explanation.

    Stochastic (``extras["w"]``): [−w, +w]. LP (``extras["u"]``, ``extras["v"]`` per patch): [−v, +u], expanded to
    pixels.
    """
    ex = expl.extras
    if "w" in ex:
        return -ex["w"], ex["w"]
    if "u" in ex and "v" in ex:
        p = int(ex.get("patch", 1))
        return -_expand(ex["v"], p), _expand(ex["u"], p)
    raise ValueError(f"method={expl.method!r} is not valid; accepted values: an invariant_* explanation")


def box_half_width(lower: torch.Tensor, upper: torch.Tensor) -> float:
    """Mean half-width of the box, mean((upper − lower)/2)."""
    return float(((upper - lower) / 2).double().mean())


def scale_box(lower: torch.Tensor, upper: torch.Tensor, half_width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The box multiplied by the factor that gives it mean half-width ``half_width`` (same shape, same centre 0)."""
    check_range("half_width", half_width, 0.0)
    cur = box_half_width(lower, upper)
    f = half_width / cur if cur > 0 else 0.0
    return lower * f, upper * f


@torch.no_grad()
def invariance_rate(model, x: torch.Tensor, target: int, lower: torch.Tensor, upper: torch.Tensor,
                    n_samples: int = 256, seed: int = 0, batch_size: int = 64, clip: bool = False) -> float:
    """Fraction of uniform draws Δ ~ U[lower, upper] (per pixel and channel) with top-1(x + Δ) = ``target``.

    The expectation stand-in of the stochastic paper's Prop. 3.1 (module docstring), not a worst-case test.
    """
    n_samples = check_int("n_samples", n_samples, 1)
    check_image(x, "x", min_size=getattr(model, "min_input_size", 1))
    target = check_target(target, model.num_classes)
    seed = check_int("seed", seed, 0)
    batch_size = check_int("batch_size", batch_size, 1)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    gen = torch.Generator().manual_seed(seed)
    lo = lower.to(torch.float32).unsqueeze(0)
    hi = upper.to(torch.float32).unsqueeze(0)
    kept = 0
    for s in range(0, n_samples, batch_size):
        n = min(batch_size, n_samples - s)
        t = torch.rand((n,) + tuple(x.shape[1:]), generator=gen)
        xp = x.cpu() + lo + t * (hi - lo)
        if clip:
            xp = xp.clamp(0.0, 1.0)
        kept += int((model.logits(xp.to(model.device), batch_size=n).argmax(1) == target).sum())
    return kept / n_samples


def _margins(logits: torch.Tensor, target: int) -> torch.Tensor:
    """f_c − max_{j≠c} f_j per row."""
    other = logits.clone()
    other[:, target] = -torch.inf
    return logits[:, target] - other.max(1).values


def worst_case_invariance(model, x: torch.Tensor, target: int, lower: torch.Tensor, upper: torch.Tensor,
                          k: int = 5, iterations: int = 20, step: float = 0.25, clip: bool = False) -> dict[str, Any]:
    """Search the box for a point that changes the top-1 (module docstring).

    Parameters
    ----------
    k : int
        Competitors (largest logits at x, j ≠ c) whose linearised worst corners start the ascent.
    iterations : int
        Projected sign-gradient steps from every start (0 = the corners only).
    step : float
        Step per coordinate as a fraction of the box width (upper − lower), decayed as step/√(t+1).
    clip : bool
        Clamp x + r to [0, 1] (the papers' boxes are not clipped).

    Returns
    -------
    dict with ``violated`` (bool), ``min_margin`` (smallest f_c − max_{j≠c} f_j found, logits),
    ``corner_margins`` (margin at each linearised worst corner, ``k`` values), ``clean_margin``, ``competitors``
    (the k classes), ``history`` (smallest margin after each step, including step 0 = the corners),
    ``flipped_to`` (top-1 at the best point), ``n_forward`` / ``n_backward`` (model passes).
    """
    k = check_int("k", k, 1)
    iterations = check_int("iterations", iterations, 0)
    check_range("step", step, 0.0, low_inclusive=False)
    check_image(x, "x", min_size=getattr(model, "min_input_size", 1))
    target = check_target(target, model.num_classes)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    with model.guard():  # eval mode, frozen parameters, everything restored on exit
        return _worst_case(model, x, target, lower, upper, k, iterations, step, clip)


def _worst_case(model, x, target, lower, upper, k, iterations, step, clip) -> dict[str, Any]:
    dev = model.device
    x = x.to(dev, torch.float32)
    lo = lower.to(dev, torch.float32).unsqueeze(0)
    hi = upper.to(dev, torch.float32).unsqueeze(0)
    width = hi - lo
    n_fwd = n_bwd = 0
    with torch.no_grad():
        z0 = model.logits(x)[0]
        n_fwd += 1
    ranked = [int(j) for j in z0.argsort(descending=True, stable=True).tolist() if j != target]
    comps = ranked[: min(k, len(ranked))]
    kk = len(comps)
    # gradients of f_c − f_j at x for the k competitors: one batched backward (copy i carries competitor i)
    xb = x.expand(kk, -1, -1, -1).clone().requires_grad_(True)
    out = model(xb)
    idx = torch.arange(kk, device=dev)
    cj = torch.tensor(comps, device=dev)
    (grad,) = torch.autograd.grad((out[:, target] - out[idx, cj]).sum(), xb)
    n_fwd += kk
    n_bwd += kk
    r = torch.where(grad < 0, hi.expand_as(grad), lo.expand_as(grad))  # linearised worst corners

    def evaluate(r_: torch.Tensor, need_grad: bool):
        xp = x + r_
        if clip:
            xp = xp.clamp(0.0, 1.0)
        if not need_grad:
            with torch.no_grad():
                lg = model(xp)
            return _margins(lg, target), lg.argmax(1), None
        rr = r_.detach().clone().requires_grad_(True)
        xp = x + rr
        if clip:
            xp = xp.clamp(0.0, 1.0)
        lg = model(xp)
        m = _margins(lg, target)
        (g,) = torch.autograd.grad(m.sum(), rr)  # ascent on −margin = max_j f_j − f_c
        return m.detach(), lg.detach().argmax(1), g

    best_margin = torch.tensor(float("inf"))
    best_top = target
    history = []
    corner_margins = None
    for t in range(iterations + 1):
        m, top, g = evaluate(r, need_grad=t < iterations)
        n_fwd += kk
        if g is not None:
            n_bwd += kk
        if corner_margins is None:
            corner_margins = m.cpu()
        i = int(m.argmin())
        if float(m[i]) < float(best_margin):
            best_margin, best_top = m[i].cpu(), int(top[i])
        history.append(float(best_margin))
        if g is None:
            break
        r = torch.minimum(torch.maximum(r - step / (t + 1) ** 0.5 * width * torch.sign(g), lo), hi)
    return {"violated": bool(float(best_margin) < 0), "min_margin": float(best_margin),
            "corner_margins": corner_margins, "clean_margin": float(_margins(z0[None], target)[0]),
            "competitors": comps, "history": history, "flipped_to": best_top, "n_forward": n_fwd,
            "n_backward": n_bwd}
