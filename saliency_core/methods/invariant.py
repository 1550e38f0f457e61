"""Maximal invariant data perturbation: stochastic (Ikeno & Hara 2018) and LP / LP(Smooth) (Hara et al. 2018).

Both methods look for a box of perturbations around ``x`` inside which the model's decision stays ``c``
(appendix §2). A pixel whose box is large is irrelevant; the score (higher = more relevant) is the
negative box size.

* :class:`StochasticInvariantPerturbation` (``"invariant_stochastic"``): Algorithm 1 of Ikeno & Hara,
  penalty formulation optimised with Adam on fresh uniform draws t ~ U[−1, 1]^d (all M draws of one step in
  ONE batch).
* :class:`LPInvariantPerturbation` (``"invariant_lp"``; ``"invariant_lp_smooth"`` = the same with 10 noisy
  linearisation points): the linear programme of Hara et al. solved with HiGHS or Clarabel (no CPLEX).

How invariant the returned boxes really are is measured in :mod:`saliency_core.metrics.invariance` (a worst-case
search and the uniform-draw rate). :func:`slack_row_rule` measures how close an LP solution is to the rule that a
single slack-setting constraint row implies (a thresholded patch gradient).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_bool, check_choice, check_int, check_optional_int, check_range
from ..explanation import Explainer
from .registry import register

__all__ = [
    "StochasticInvariantPerturbation",
    "LPInvariantPerturbation",
    "LPSmoothInvariantPerturbation",
    "margin_jacobian",
    "solve_invariance_lp",
    "slack_row_rule",
]

#: LP solvers: "highs" = scipy.optimize.linprog(method="highs"); the others through cvxpy
LP_SOLVERS = ("highs", "cvxpy-highs", "clarabel")


def _check_patch(patch: int | None, h: int, w: int) -> None:
    if patch is not None and (h % patch or w % patch):
        raise ValueError(f"patch={patch!r} is not valid for a {h}x{w} image; accepted values: a divisor of {h} and {w}")


def _expand(grid: torch.Tensor, patch: int | None) -> torch.Tensor:
    """``(..., h, w)`` patch grid → ``(..., h·p, w·p)`` (kron with ones(p, p))."""
    if patch is None or patch == 1:
        return grid
    return grid.repeat_interleave(patch, dim=-2).repeat_interleave(patch, dim=-1)


# --------------------------------------------------------------------------------------------
# stochastic optimisation (Ikeno & Hara 2018, Algorithm 1)
# --------------------------------------------------------------------------------------------
@register("invariant_stochastic")
class StochasticInvariantPerturbation(Explainer):
    r"""Maximal invariant perturbation by stochastic optimisation (Ikeno & Hara 2018, arXiv 1807.05077).

    Solves, for w ∈ [0, C]^d (one value per pixel and channel, or shared over ``patch``×``patch`` blocks),

    .. math::  \max_w\ \mathrm{mean}(w) - \rho\,\mathrm{mean}_{m,j}\ \max\{0, y_j(x+t_m\odot w) - y_c(x+t_m\odot w)\}

    with fresh t_m ~ U[−1, 1]^d, m = 1..M, every iteration (Algorithm 1), Adam (β 0.9/0.999, ε 1e-8),
    and w ← min(max(w, 0), C) after each step, starting from w = 0. ``y`` is the softmax (``output="prob"``,
    the official notebook) or the logits. The mean over j runs over all K classes (j = c contributes 0).

    **Penalty normalisation.** The official code (``sato9hara/PertMap`` stochastic notebook, cell 10) uses
    ρ = 100 on *means*. Multiplying the loss by d (which leaves the maximiser unchanged, and Adam's trajectory
    unchanged up to ε, since Adam is invariant to a constant rescaling of the gradient):

    .. math::  d\,[\mathrm{mean}(w) - \rho\,\tfrac{1}{MK}\textstyle\sum_{m,j} h_{jc}]
               = \sum_i w_i - \tfrac{\rho d}{K}\,\sum_{j\ne c} \tfrac{1}{M}\sum_m h_{jc}(x+t_m\odot w),

    i.e. the paper's eq. (3.3) with λ = ρ·d/K = 100·d/1000 = **0.1·d** (paper, Section 4.1), d = 3·224·224.

    Parameters
    ----------
    M : int
        Draws t per iteration, evaluated as one batch (paper: 32).
    lr : float
        Adam step size (paper: 0.01).
    iterations : int
        Adam steps (official notebook: 500).
    penalty : float
        ρ on means (official: 100 ≡ λ = 0.1·d on sums, see above).
    C : float
        Upper bound of w. The official *call* uses ``max_w=1.0`` (the paper's natural choice for [0, 1] images);
        the official function's *signature default* is 0.1.
    output : {"prob", "logit"}
        Hinge on softmax probabilities (official) or on logits.
    patch : int or None
        Share w over ``patch``×``patch`` blocks (per channel); None = per pixel (official).
    clip_input : bool
        Clamp x + t⊙w to [0, 1] (the official code does not).
    seed : int
        Seed of the t draws (a ``torch.Generator``).

    Perturbations live in [0, 1] pixel space; the classifier normalises inside its forward pass.
    Score = −mean_channels(w) (higher = more relevant). ``extras``: ``w`` (3, H, W), ``objective`` (per
    iteration, mean(w) − ρ·mean hinge, the maximised quantity), ``violation`` (mean hinge per iteration),
    ``changed`` (fraction of the M draws whose top-1 ≠ c, per iteration).
    """

    def __init__(self, model, n_draws: int = 32, lr: float = 0.01, iterations: int = 500, penalty: float = 100.0,
                 w_max: float = 1.0, response: str = "prob", patch: int | None = None, clip_input: bool = False,
                 seed: int = 0) -> None:
        super().__init__(model)
        self.n_draws = check_int("n_draws", n_draws, 1, 100_000)
        self.lr = check_range("lr", lr, 0.0, low_inclusive=False)
        self.iterations = check_int("iterations", iterations, 1, 100_000)
        self.penalty = check_range("penalty", penalty, 0.0)
        self.w_max = check_range("w_max", w_max, 0.0, low_inclusive=False)
        self.response = check_choice("response", response, ("prob", "logit"))
        self.patch = check_optional_int("patch", patch, 1)
        self.clip_input = check_bool("clip_input", clip_input)
        self.seed = check_int("seed", seed, 0)

    def min_input_size(self) -> int:
        """One patch at least."""
        return max(super().min_input_size(), self.patch or 1)

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        _, ch, h, wd = x.shape
        _check_patch(self.patch, h, wd)
        p = self.patch or 1
        w = torch.zeros(1, ch, h // p, wd // p, device=x.device, requires_grad=True)
        opt = torch.optim.Adam([w], lr=self.lr, betas=(0.9, 0.999), eps=1e-8)
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        objective, violation, changed = [], [], []
        for _ in range(self.iterations):
            t = torch.rand(self.n_draws, ch, h, wd, generator=gen, device=x.device) * 2.0 - 1.0
            xp = x + t * _expand(w, self.patch)
            if self.clip_input:
                xp = xp.clamp(0.0, 1.0)
            y = self.model(xp)
            top = y.argmax(1)
            if self.response == "prob":
                y = y.softmax(dim=1)
            hinge = F.relu(y - y[:, target : target + 1]).mean()
            size = w.mean()
            loss = -size + self.penalty * hinge
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                w.clamp_(0.0, self.w_max)
            objective.append(float((size - self.penalty * hinge).detach()))
            violation.append(float(hinge.detach()))
            changed.append(float((top != target).float().mean()))
        wfull = _expand(w.detach(), self.patch)[0]
        score = -wfull.mean(0)
        extras = {
            "w": wfull.cpu(),
            "objective": torch.tensor(objective),
            "violation": torch.tensor(violation),
            "changed": torch.tensor(changed),
        }
        return score, extras


# --------------------------------------------------------------------------------------------
# LP / LP(Smooth) (Hara et al. 2018)
# --------------------------------------------------------------------------------------------
def margin_jacobian(model, x: torch.Tensor, chunk: int = 25,
                    classes: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(K,)`` at ``x`` (1, 3, H, W) and the input gradient of every logit ``(K, 3, H, W)``
    (or of the listed ``classes`` only, ``(len(classes), 3, H, W)``).

    Batched autograd: ``x`` is repeated ``chunk`` times, each copy back-propagates the one-hot of one class
    (one backward call per chunk of classes; the copies are independent, so copy k receives ∇f_k).
    ``ceil(K / chunk)`` batched forward/backward calls instead of K separate backward passes.
    """
    with torch.no_grad():
        z = model.logits(x)[0]
    cls = torch.arange(z.shape[0]) if classes is None else torch.as_tensor(classes, dtype=torch.long)
    k = cls.numel()
    jac = torch.empty((k,) + tuple(x.shape[1:]), dtype=x.dtype)
    for s in range(0, k, chunk):
        n = min(chunk, k - s)
        xb = x.detach().expand(n, -1, -1, -1).clone().requires_grad_(True)
        out = model(xb)
        idx = cls[s : s + n].to(x.device)
        (grad,) = torch.autograd.grad(out[torch.arange(n, device=x.device), idx].sum(), xb)
        jac[s : s + n] = grad.detach().cpu()
    return z.cpu(), jac


def solve_invariance_lp(A: np.ndarray, B: np.ndarray, rhs: np.ndarray, delta: float, slack_weight: float,
                        solver: str = "highs") -> dict[str, Any]:
    """max Σu + Σv − s·r  s.t.  A u + B v − r ≤ rhs,  0 ≤ u, v ≤ δ,  r ≥ 0  (A, B ≥ 0 elementwise).

    Rows whose left side cannot exceed the right side anywhere in the box (δ·rowsum(A + B) ≤ rhs) are
    redundant and dropped before solving (an exact presolve: it does not change the optimum).
    ``solver``: ``"highs"`` (``scipy.optimize.linprog(method="highs")``), ``"cvxpy-highs"`` or ``"clarabel"`` (cvxpy).
    Returns u, v, r, the objective, the status, the number of rows kept and the solve time.
    """
    check_choice("solver", solver, LP_SOLVERS)
    n = A.shape[1]
    keep = delta * (A.sum(1) + B.sum(1)) > rhs
    A, B, rhs = A[keep], B[keep], rhs[keep]
    t0 = time.perf_counter()
    if A.shape[0] == 0:
        u = np.full(n, delta)
        v = np.full(n, delta)
        r, status, obj = 0.0, "optimal (no active rows)", 2 * n * delta
    elif solver == "highs":
        from scipy.optimize import linprog

        c = np.concatenate([-np.ones(2 * n), [slack_weight]])
        a_ub = np.hstack([A, B, -np.ones((A.shape[0], 1))])
        bounds = [(0.0, delta)] * (2 * n) + [(0.0, None)]
        res = linprog(c, A_ub=a_ub, b_ub=rhs, bounds=bounds, method="highs")
        if res.x is None:
            raise RuntimeError(f"LP failed: {res.message}")
        u, v, r = res.x[:n], res.x[n : 2 * n], float(res.x[-1])
        status, obj = res.message, -float(res.fun)
    else:
        import cvxpy as cp

        uu = cp.Variable(n)
        vv = cp.Variable(n)
        rr = cp.Variable()
        cons = [A @ uu + B @ vv - rr <= rhs, uu >= 0, uu <= delta, vv >= 0, vv <= delta, rr >= 0]
        prob = cp.Problem(cp.Maximize(cp.sum(uu) + cp.sum(vv) - slack_weight * rr), cons)
        prob.solve(solver={"cvxpy-highs": cp.HIGHS, "clarabel": cp.CLARABEL}[solver])
        if uu.value is None:
            raise RuntimeError(f"LP failed with solver={solver!r}: status {prob.status}")
        u = np.clip(np.asarray(uu.value), 0.0, delta)
        v = np.clip(np.asarray(vv.value), 0.0, delta)
        r, status, obj = max(float(rr.value), 0.0), str(prob.status), float(prob.value)
    return {"u": u, "v": v, "r": r, "objective": obj, "status": status, "rows_kept": int(keep.sum()),
            "solve_s": time.perf_counter() - t0}


@register("invariant_lp")
class LPInvariantPerturbation(Explainer):
    r"""Maximal invariant perturbation by linear programming: LP and LP(Smooth) (Hara et al. 2018, arXiv 1806.07004).

    Linearisation points x_i = x + n_i, n_0 = 0 and, for LP(Smooth), n_i ~ N(0, σ²) i = 1..``smooth_points``
    (σ = ``smooth_sigma`` in [0, 1] pixel units). At each point the 999 logit margins z_ij = f_c(x_i) − f_j(x_i)
    and their gradients h_ij = ∇f_c(x_i) − ∇f_j(x_i) come from batched autograd (:func:`margin_jacobian`).

    Variables: u, v ∈ [0, δ] per ``patch``×``patch`` block and channel (2·3·(H/p)(W/p) values; 4704 at 224²),
    one shared slack r ≥ 0. Every pixel of block k may move independently in [−v_k, +u_k]; the exact worst
    first-order margin drop is Σ_block |h⁻| u + Σ_block h⁺ v, so the LP is (appendix §2.2)

    .. math:: \max\ \Sigma u + \Sigma v - \lambda\,(2\,\mathrm{xdim})\,r \quad \text{s.t.}\quad
              |H^-_{ij}|\,u + H^+_{ij}\,v - r \le \mathrm{RHS}_{ij}

    with λ = ``slack`` (1e-4 → slack weight 0.4704 at 224², the paper's "λ ≈ 0.5").

    ``lp_rhs="taylor"`` (default): RHS_ij = z_ij − h_ij·n_i, the first-order expansion around x_i evaluated at
    x + Δ. ``lp_rhs="official"``: RHS_ij = z_ij + g_{i,k}·n_i with g_{i,k} the raw gradient of class *index*
    k = 0..K−2 (not h, not skipping c, + sign), as in the official notebook (cell 15). Both agree for plain LP.

    ``classes`` (a budget option, not in the paper; default None = all K − 1 competitors): keep only the
    ``classes`` competitors with the largest logits at x; this cuts the Jacobian from K to ``classes`` + 1 rows.
    ``batch_size`` = classes per batched backward call (runtime only).
    ``solver``: ``"highs"`` (default: ``scipy.optimize.linprog(method="highs")``, measured 6.7× faster than HiGHS
    through cvxpy on the 100-class Lite0 LP, same optimum: 0.52 s vs 3.46 s; benchmarks/invariant.py),
    ``"cvxpy-highs"`` or ``"clarabel"`` through cvxpy. No commercial solver.

    Score = 2δ − mean_channels(u + v), kron-upsampled to H×W (higher = more relevant).
    ``extras``: ``u``, ``v`` (3, H/p, W/p), ``r``, LP status and objective, ``rows`` / ``rows_kept``
    (redundant rows are dropped exactly, see :func:`solve_invariance_lp`), ``grad_s``, ``build_s``, ``solve_s``.
    """

    def __init__(self, model, delta: float = 0.1, slack: float = 1e-4, patch: int = 8, smooth_points: int = 0,
                 smooth_sigma: float = 0.05, lp_rhs: str = "taylor", solver: str = "highs", classes: int | None = None,
                 seed: int = 0, batch_size: int = 25) -> None:
        super().__init__(model)
        self.delta = check_range("delta", delta, 0.0, low_inclusive=False)
        self.slack = check_range("slack", slack, 0.0)
        self.patch = check_int("patch", patch, 1)
        self.smooth_points = check_int("smooth_points", smooth_points, 0, 10_000)
        self.smooth_sigma = check_range("smooth_sigma", smooth_sigma, 0.0)
        self.lp_rhs = check_choice("lp_rhs", lp_rhs, ("taylor", "official"))
        self.solver = check_choice("solver", solver, LP_SOLVERS)
        self.classes = check_optional_int("classes", classes, 1)
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def min_input_size(self) -> int:
        """One patch at least."""
        return max(super().min_input_size(), self.patch)

    def lp_rows(self, x: torch.Tensor, target: int) -> dict[str, Any]:
        """The LP data for image ``x`` (1, 3, H, W): ``A`` = patch sums of |h⁻|, ``B`` = of h⁺ (rows × 3·(H/p)(W/p)),
        ``rhs``, the gradient / build times, ``competitors`` (the classes j of the rows of one linearisation point,
        in order) and ``points`` (linearisation points; row = point·len(competitors) + competitor)."""
        _, ch, h, wd = x.shape
        _check_patch(self.patch, h, wd)
        p = self.patch
        gen = torch.Generator().manual_seed(self.seed)
        noises = [torch.zeros_like(x).cpu()]
        for _ in range(self.smooth_points):
            noises.append(torch.randn(x.shape, generator=gen) * self.smooth_sigma)
        k = self.model.num_classes
        others = [j for j in range(k) if j != target]
        if self.classes is not None and self.classes < k - 1:
            # budget option: only the `classes` competitors with the largest logits at x (not in the paper)
            z0 = self.model.logits(x)[0].cpu()
            ranked = [int(j) for j in z0.argsort(descending=True, stable=True).tolist() if j != target]
            others = sorted(ranked[: self.classes])
        # rows of the Jacobian needed: c, the competitors, and (official RHS) the raw class indices 0..len-1
        need = sorted(set([target] + others + (list(range(len(others))) if self.lp_rhs == "official" else [])))
        pos = {j: i for i, j in enumerate(need)}
        rows_a, rows_b, rows_rhs = [], [], []
        grad_s = build_s = 0.0
        for n in noises:
            t0 = time.perf_counter()
            z, jac = margin_jacobian(self.model, x + n.to(x.device), chunk=self.batch_size, classes=need)
            t1 = time.perf_counter()
            oi = [pos[j] for j in others]
            hmat = jac[pos[target]].unsqueeze(0) - jac[oi]  # (K-1, 3, H, W)
            zmat = z[target] - z[others]
            if self.lp_rhs == "taylor":
                rhs = zmat - (hmat.flatten(1) @ n.flatten())
            else:
                raw = [pos[j] for j in range(len(others))]
                rhs = zmat + (jac[raw].flatten(1) @ n.flatten())
            # |h⁻| = −min(h, 0) and h⁺ = max(h, 0), with one new (K−1)·3·H·W buffer instead of three
            # (600 MB each for ImageNet at 224²; first-touch allocation dominated the build time)
            neg = torch.clamp(hmat, max=0.0).neg_()
            rows_a.append(F.avg_pool2d(neg, p, p).flatten(1) * (p * p))
            del neg
            rows_b.append(F.avg_pool2d(hmat.clamp_(min=0.0), p, p).flatten(1) * (p * p))  # hmat not used again
            rows_rhs.append(rhs)
            del jac, hmat
            grad_s += t1 - t0
            build_s += time.perf_counter() - t1
        t0 = time.perf_counter()
        A = torch.cat(rows_a).double().numpy()
        B = torch.cat(rows_b).double().numpy()
        rhs = torch.cat(rows_rhs).double().numpy()
        build_s += time.perf_counter() - t0
        return {"A": A, "B": B, "rhs": rhs, "grad_s": grad_s, "build_s": build_s, "competitors": others,
                "points": len(noises)}

    def _explain(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        _, ch, h, wd = x.shape
        p = self.patch
        rows = self.lp_rows(x, target)
        A, rhs, grad_s, build_s = rows["A"], rows["rhs"], rows["grad_s"], rows["build_s"]
        sol = solve_invariance_lp(A, rows["B"], rhs, self.delta, self.slack * 2 * A.shape[1], self.solver)
        gh, gw = h // p, wd // p
        u = torch.from_numpy(sol["u"]).float().view(ch, gh, gw)
        v = torch.from_numpy(sol["v"]).float().view(ch, gh, gw)
        score = _expand(2 * self.delta - (u + v).mean(0), p)
        extras = {"u": u, "v": v, "r": sol["r"], "objective": sol["objective"], "status": sol["status"],
                  "rows": int(A.shape[0]), "rows_kept": sol["rows_kept"], "grad_s": grad_s, "build_s": build_s,
                  "solve_s": sol["solve_s"], "patch": p, "rhs": torch.from_numpy(rhs).float()}
        return score.to(x.device), extras


@register("invariant_lp_smooth")
class LPSmoothInvariantPerturbation(LPInvariantPerturbation):
    """LP(Smooth): :class:`LPInvariantPerturbation` with ``smooth_points=10`` noisy linearisation points."""

    def __init__(self, model, delta: float = 0.1, slack: float = 1e-4, patch: int = 8, smooth_points: int = 10,
                 smooth_sigma: float = 0.05, lp_rhs: str = "taylor", solver: str = "highs", classes: int | None = None,
                 seed: int = 0, batch_size: int = 25) -> None:
        super().__init__(model, delta=delta, slack=slack, patch=patch, smooth_points=smooth_points,
                         smooth_sigma=smooth_sigma, lp_rhs=lp_rhs, solver=solver, classes=classes, seed=seed,
                         batch_size=batch_size)


def slack_row_rule(A: np.ndarray, B: np.ndarray, rhs: np.ndarray, u: np.ndarray, v: np.ndarray, delta: float,
                   slack_weight: float, tol: float = 1e-6) -> dict[str, Any]:
    """How close an LP solution (u, v) is to the rule implied by the single row that sets the slack r.

    With r > 0 and one row k* attaining r = max_k (A u + B v − rhs)_k, raising u_i by ε gains ε in the objective
    and costs slack_weight·A_{k*i}·ε, so the optimum is u_i = δ·[A_{k*i} < 1/slack_weight] and
    v_i = δ·[B_{k*i} < 1/slack_weight]: a **thresholded patch gradient** of that row's competitor
    (|h⁻| and h⁺ summed over the patch). Returns ``row`` (k*), ``r``, ``threshold`` (1/slack_weight),
    ``agreement`` (fraction of the 2·n variables equal to the rule's value, within tol·δ), ``rows_at_r`` (rows
    within tol·max(1, r) of r: more than one means the rule is only approximate) and ``rule_u``/``rule_v``.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    lhs = A @ np.asarray(u, dtype=np.float64) + B @ np.asarray(v, dtype=np.float64) - np.asarray(rhs, np.float64)
    k = int(np.argmax(lhs))
    r = max(float(lhs[k]), 0.0)
    thr = 1.0 / slack_weight if slack_weight > 0 else np.inf
    rule_u = np.where(A[k] < thr, delta, 0.0)
    rule_v = np.where(B[k] < thr, delta, 0.0)
    agree = np.concatenate([np.abs(u - rule_u), np.abs(v - rule_v)]) <= tol * max(delta, 1e-12) + 1e-9
    return {"row": k, "r": r, "threshold": thr, "agreement": float(agree.mean()),
            "rows_at_r": int((lhs >= lhs[k] - tol * max(1.0, abs(r))).sum()), "rule_u": rule_u, "rule_v": rule_v}
