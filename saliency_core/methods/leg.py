"""LEG and LEG-TV (Luo, Barut & Jin, ICCV 2021): linearly estimated gradients with a structured perturbation.

Estimand (paper eq. 2-3): γ = Σ⁻¹ E[(f(x₀+z) − f(x₀)) z], z ~ N(0, Σ).

* **Perturbation** (paper §5.2, appendix §3.2): z lives on a ``grid``×``grid`` lattice (28×28, 8×8-pixel
  blocks on 224² images), Σ = σ²(DᵀD + 11ᵀ/p) with D the first-difference operator of
  :func:`~saliency_core.perturbations.grid_difference_matrix` (``padded=True`` = official, 1624×784, rank 784),
  or the isotropic σ²I (``covariance="isotropic"``). Samples are z = σ·L·ε with L the dense Cholesky factor of
  Σ/σ² (784×784: computed once and cached), nearest-upsampled to the image and added to ONE colour channel at
  a time (``per_channel=True``, official) or to all three channels (``per_channel=False``: one shared field).
* **LEG** (eq. 4): ĝ_c = Σ⁻¹ · mean_i(y_i z_i), y_i = p_c(x + z_i) − p_c(x) (softmax of the explained class;
  ``response="logit"`` uses the logit). Map = bilinear resize of mean_c |ĝ_c| (appendix §3.1).
* **LEG-TV** (Definition 2): min ‖Dg‖₁ s.t. ‖D⁺ᵀ(ȳ − Σg)‖_∞ ≤ L, L = K_L·L_max, L_max = ‖D⁺ᵀȳ‖_∞.
  Solved SPARSELY with the identity D⁺ᵀΣ = σ²(D + u1ᵀ/p), u = D⁺ᵀ1 = D(DᵀD)⁻¹1 (u = 0 unpadded), and
  D⁺ᵀȳ = σ²(Dĝ + u·mean ĝ) (appendix §3.3): no pseudo-inverse, no SVD; σ² cancels.
  Variables g ∈ ℝᵖ, t ∈ ℝᵐ, s ∈ ℝ: min Σt, −t ≤ Dg ≤ t, |Dg + u·s − r| ≤ λ, 1ᵀg = p·s,
  with r = Dĝ + u·mean ĝ and λ = K_L‖r‖_∞. Unpadded D also pins s = mean ĝ (otherwise g + c·1 is optimal for
  every c). cvxpy + CLARABEL by default (the problem is compiled once per grid and re-solved with new
  parameters: that is the warm start along a K_L path); ``solver="highs"`` calls ``scipy.optimize.linprog``
  (HiGHS) on the same sparse LP as a cross-check. :func:`legtv_dense_reference` is the official dense
  formulation (pseudo-inverse), kept only for tests and benchmarks.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
import torch.nn.functional as F

from ..checks import check_bool, check_choice, check_int, check_range
from ..explanation import Explainer
from ..perturbations import grid_difference_matrix
from .registry import register

__all__ = [
    "structured_covariance",
    "covariance_cholesky",
    "covariance_eigenvectors",
    "tv_operator",
    "sample_grid_noise",
    "leg_from_samples",
    "solve_leg_tv",
    "legtv_dense_reference",
    "theorem1_L",
    "consistency_experiment",
    "leg_map",
    "LEG",
    "LEGTV",
]

COVARIANCES = ("structured", "isotropic")
SOLVERS = ("clarabel", "highs", "cvxpy-highs")


# --------------------------------------------------------------------------------------------
# covariance and its factor
# --------------------------------------------------------------------------------------------
def structured_covariance(n: int, padded: bool = True, sigma: float = 1.0, kind: str = "structured") -> np.ndarray:
    """Dense Σ = σ²(DᵀD + 11ᵀ/p) (``kind="structured"``) or σ²I (``"isotropic"``) for an ``n×n`` grid, p = n²."""
    check_choice("covariance", kind, COVARIANCES)
    p = n * n
    if kind == "isotropic":
        return sigma**2 * np.eye(p)
    D = grid_difference_matrix(n, padded)
    return sigma**2 * ((D.T @ D).toarray() + np.full((p, p), 1.0 / p))


@functools.lru_cache(maxsize=16)
def covariance_cholesky(n: int, padded: bool = True, kind: str = "structured") -> np.ndarray:
    """Lower Cholesky factor L of Σ/σ² (cached; read-only array)."""
    L = np.linalg.cholesky(structured_covariance(n, padded, 1.0, kind))
    L.setflags(write=False)
    return L


def covariance_eigenvectors(n: int = 28, padded: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns, reshaped to ``(p, n, n)``) of Σ/σ² (paper Figure 3)."""
    w, V = np.linalg.eigh(structured_covariance(n, padded, 1.0))
    return w, V.T.reshape(-1, n, n)


@functools.lru_cache(maxsize=16)
def tv_operator(n: int, padded: bool = True) -> tuple[sp.csr_matrix, np.ndarray]:
    """(D, u) with u = D⁺ᵀ1 = D(DᵀD)⁻¹1 from one sparse LU solve (u = 0 for the unpadded D)."""
    D = grid_difference_matrix(n, padded).tocsr()
    if not padded:
        u = np.zeros(D.shape[0])
    else:
        w = spla.splu((D.T @ D).tocsc()).solve(np.ones(n * n))
        u = D @ w
    u.setflags(write=False)
    return D, u


def theorem1_L(n_grid: int, n_samples: int, padded: bool = True, epsilon: float = 0.05) -> float:
    """Theorem 1's L = sqrt(2‖D⁺‖₁ log(p/ε)/n), ‖·‖₁ the matrix 1-norm (max column sum).

    D⁺ = (DᵀD)⁻¹Dᵀ for the full-rank padded D (sparse solves, no pinv); unpadded D uses the same formula on
    DᵀD + 11ᵀ/p (whose inverse acts as DᵀD's pseudo-inverse on the mean-free subspace).
    """
    D = grid_difference_matrix(n_grid, padded).tocsc()
    p = n_grid * n_grid
    A = (D.T @ D).toarray()
    if not padded:
        A = A + 1.0 / p
    Dp = sla.cho_solve(sla.cho_factor(A), D.T.toarray())
    if not padded:
        Dp = Dp - Dp.mean(0, keepdims=True)
    norm1 = float(np.abs(Dp).sum(0).max())
    return math.sqrt(2 * norm1 * math.log(p / epsilon) / n_samples)


# --------------------------------------------------------------------------------------------
# sampling and the LEG estimate
# --------------------------------------------------------------------------------------------
def sample_grid_noise(n_samples: int, n: int, sigma: float, covariance: str = "structured", padded: bool = True,
                      generator: torch.Generator | None = None, antithetic: bool = False) -> torch.Tensor:
    """``(n_samples, n*n)`` float64 draws z ~ N(0, Σ) (row-major grid); ``antithetic`` pairs z with −z."""
    check_choice("covariance", covariance, COVARIANCES)
    m = (n_samples + 1) // 2 if antithetic else n_samples
    eps = torch.randn(m, n * n, generator=generator, dtype=torch.float64)
    if covariance == "structured":
        L = torch.from_numpy(np.array(covariance_cholesky(n, padded, "structured")))
        z = eps @ L.T
    else:
        z = eps
    z = sigma * z
    if antithetic:
        z = torch.cat([z, -z])[:n_samples]
    return z


def leg_from_samples(z: torch.Tensor, y: torch.Tensor, sigma: float, covariance: str = "structured",
                     padded: bool = True) -> torch.Tensor:
    """Empirical LEG (eq. 4): Σ⁻¹ mean_i(y_i z_i) with a Cholesky solve. ``z`` (N, p), ``y`` (N,) → (p,) float64."""
    n = int(round(math.sqrt(z.shape[1])))
    ybar = (y.to(torch.float64)[:, None] * z.to(torch.float64)).mean(0)
    if covariance == "isotropic":
        return ybar / sigma**2
    L = covariance_cholesky(n, padded, "structured")
    return torch.from_numpy(sla.cho_solve((L, True), ybar.numpy()) / sigma**2)


# --------------------------------------------------------------------------------------------
# LEG-TV linear program (sparse)
# --------------------------------------------------------------------------------------------
class _CvxLP:
    """The sparse LEG-TV LP compiled once by cvxpy (DPP parameters r, λ, ḡ) and re-solved for new data."""

    def __init__(self, n: int, padded: bool) -> None:
        import cvxpy as cp

        D, u = tv_operator(n, padded)
        p, m = n * n, D.shape[0]
        self.g = cp.Variable(p)
        self.s = cp.Variable()
        self.r = cp.Parameter(m)
        self.lam = cp.Parameter(nonneg=True)
        self.gbar = cp.Parameter()
        Dg = D @ self.g
        cons = [cp.abs(Dg + u * self.s - self.r) <= self.lam, cp.sum(self.g) == p * self.s]
        if not padded:
            cons.append(self.s == self.gbar)
        self.problem = cp.Problem(cp.Minimize(cp.norm1(Dg)), cons)

    def solve(self, r: np.ndarray, lam: float, gbar: float, solver: str) -> tuple[np.ndarray, float, str]:
        import cvxpy as cp

        self.r.value, self.lam.value, self.gbar.value = r, lam, gbar
        name = cp.CLARABEL if solver == "clarabel" else cp.HIGHS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # cvxpy's bound propagation warns on inf bounds
            self.problem.solve(solver=name, warm_start=True)
        if self.g.value is None:
            raise RuntimeError(f"LEG-TV LP failed: status {self.problem.status}")
        return np.asarray(self.g.value, dtype=np.float64), float(self.problem.value), str(self.problem.status)


@functools.lru_cache(maxsize=8)
def _cvx_lp(n: int, padded: bool) -> _CvxLP:
    return _CvxLP(n, padded)


@functools.lru_cache(maxsize=8)
def _highs_matrices(n: int, padded: bool):
    D, u = tv_operator(n, padded)
    p, m = n * n, D.shape[0]
    Im = sp.identity(m, format="csr")
    U = sp.csr_matrix(u.reshape(-1, 1))
    z1 = sp.csr_matrix((m, 1))
    A_ub = sp.vstack([
        sp.hstack([D, -Im, z1]),
        sp.hstack([-D, -Im, z1]),
        sp.hstack([D, sp.csr_matrix((m, m)), U]),
        sp.hstack([-D, sp.csr_matrix((m, m)), -U]),
    ]).tocsc()
    rows = [sp.hstack([sp.csr_matrix(np.ones((1, p))), sp.csr_matrix((1, m)), sp.csr_matrix([[-float(p)]])])]
    if not padded:
        rows.append(sp.hstack([sp.csr_matrix((1, p + m)), sp.csr_matrix([[1.0]])]))
    A_eq = sp.vstack(rows).tocsc()
    c = np.concatenate([np.zeros(p), np.ones(m), [0.0]])
    bounds = [(None, None)] * p + [(0, None)] * m + [(None, None)]
    return A_ub, A_eq, c, bounds


def _solve_highs(n: int, padded: bool, r: np.ndarray, lam: float, gbar: float) -> tuple[np.ndarray, float, str]:
    from scipy.optimize import linprog

    A_ub, A_eq, c, bounds = _highs_matrices(n, padded)
    m = r.shape[0]
    b_ub = np.concatenate([np.zeros(2 * m), r + lam, lam - r])
    b_eq = np.array([0.0] + ([gbar] if not padded else []))
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    if res.x is None:
        raise RuntimeError(f"LEG-TV LP failed: {res.message}")
    return res.x[: n * n], float(res.fun), "optimal" if res.status == 0 else res.message


def solve_leg_tv(g_hat: np.ndarray | torch.Tensor, n: int, k_l: float = 0.1, padded: bool = True,
                 solver: str = "clarabel", L: float | None = None, sigma: float = 0.02) -> tuple[np.ndarray, dict]:
    """LEG-TV for one channel from its LEG estimate ``g_hat`` (p,) via the sparse LP (module docstring).

    λ = ``k_l``·L_max with L_max = ‖Dĝ + u·mean ĝ‖_∞ (the official relative threshold), or an absolute
    ``L`` in the paper's units (the constraint ‖D⁺ᵀ(ȳ − Σg)‖_∞ ≤ L, i.e. λ = L/σ² after cancelling σ²).
    Returns ``(g (p,), info)`` with info = objective, status, seconds, lam, L_max.
    """
    check_choice("solver", solver, SOLVERS)
    g_hat = np.asarray(g_hat, dtype=np.float64).ravel()
    D, u = tv_operator(n, padded)
    gbar = float(g_hat.mean())
    r = D @ g_hat + u * gbar
    lmax = float(np.abs(r).max())
    lam = float(k_l) * lmax if L is None else float(L) / sigma**2
    t0 = time.perf_counter()
    if lam >= lmax:  # g = const·1 (padded: g = 0 whenever λ ≥ L_max) is feasible with objective 0
        g = np.zeros_like(g_hat) if padded else np.full_like(g_hat, gbar)
        obj, status = 0.0, "trivial"
    elif solver == "highs":
        g, obj, status = _solve_highs(n, padded, r, lam, gbar)
    else:
        g, obj, status = _cvx_lp(n, padded).solve(r, lam, gbar, solver)
    return g, {"objective": obj, "status": status, "seconds": time.perf_counter() - t0, "lam": lam, "L_max": lmax}


def legtv_dense_reference(ybar: np.ndarray, n: int, sigma: float = 0.02, k_l: float = 0.1, padded: bool = True,
                          solver: str = "highs") -> tuple[np.ndarray, float]:
    """The official DENSE formulation (pseudo-inverse, dense D⁺ᵀΣ; appendix §3.3 "as coded"): tests only.

    min ‖Dg‖₁ s.t. ‖D⁺ᵀȳ − D⁺ᵀΣg‖_∞ ≤ k_l·‖D⁺ᵀȳ‖_∞. Returns (g, objective).
    """
    import cvxpy as cp

    D = grid_difference_matrix(n, padded).toarray()
    Sigma = structured_covariance(n, padded, sigma)
    Dpt = np.linalg.pinv(D).T
    A = Dpt @ Sigma
    b = Dpt @ np.asarray(ybar, dtype=np.float64)
    g = cp.Variable(n * n)
    prob = cp.Problem(cp.Minimize(cp.norm1(D @ g)), [cp.norm_inf(b - A @ g) <= k_l * np.abs(b).max()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        prob.solve(solver=cp.HIGHS if solver == "highs" else cp.CLARABEL)
    return np.asarray(g.value), float(prob.value)


# --------------------------------------------------------------------------------------------
# explainers
# --------------------------------------------------------------------------------------------
def leg_map(g: torch.Tensor, size: int | tuple[int, int] = 224) -> torch.Tensor:
    """Heat map of per-channel grid estimates ``g`` (C, n, n): bilinear resize of mean_c |g_c| (``cv2.resize``)."""
    if isinstance(size, int):
        size = (size, size)
    m = torch.as_tensor(g).abs().mean(0)[None, None].float()
    return F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]


@register("leg")
class LEG(Explainer):
    """Linearly Estimated Gradient (paper eq. 4) with the structured perturbation (appendix §3.1).

    Parameters
    ----------
    n_samples : int
        Perturbations per channel (``per_channel=True``: 3·n_samples model evaluations) — 2000 in the LEG tables.
    sigma : float
        Noise scale in [0, 1] pixel units (0.02).
    grid : int
        Lattice size (28: 8×8-pixel blocks on 224² images); nearest upsampling to the image.
    per_channel : bool
        Official: perturb one colour channel at a time and estimate one ĝ per channel; False: one field on all
        three channels (n_samples evaluations, one ĝ).
    covariance : {"structured", "isotropic"}
        Σ = σ²(DᵀD + 11ᵀ/p) or σ²I.
    padded : bool
        Official full-rank D with a zero border (True).
    quantize : {None, "trunc"}
        ``"trunc"`` reproduces the official ``(·×255).astype(int)``: truncation toward zero, no clipping.
    clip : bool
        Clip perturbed images to [0, 1] (official: no).
    antithetic : bool
        Pair z with −z (the official ``sample_method="symmetric"``).
    response : {"prob", "logit"}
        y = Δ softmax probability of the explained class (official) or Δ logit.
    """

    def __init__(self, model, n_samples: int = 2000, sigma: float = 0.02, grid: int = 28, per_channel: bool = True,
                 covariance: str = "structured", padded: bool = True, quantize: str | None = None,
                 clip: bool = False, antithetic: bool = False, response: str = "prob", seed: int = 0,
                 batch_size: int = 64) -> None:
        super().__init__(model)
        self.n_samples = check_int("n_samples", n_samples, 1, 1_000_000)
        self.sigma = float(check_range("sigma", sigma, 0.0, low_inclusive=False))
        self.grid = check_int("grid", grid, 2)
        self.per_channel = check_bool("per_channel", per_channel)
        self.covariance = check_choice("covariance", covariance, COVARIANCES)
        self.padded = check_bool("padded", padded)
        self.quantize = check_choice("quantize", quantize, (None, "trunc"))
        self.clip = check_bool("clip", clip)
        self.antithetic = check_bool("antithetic", antithetic)
        self.response = check_choice("response", response, ("prob", "logit"))
        self.seed = check_int("seed", seed, 0)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def min_input_size(self) -> int:
        """One pixel per lattice cell at least (a finer lattice has cells that touch no pixel)."""
        return max(super().min_input_size(), self.grid)

    # -- model responses ----------------------------------------------------------------------
    def _score(self, xb: torch.Tensor, target: int) -> torch.Tensor:
        out = self.model.logits(xb, batch_size=xb.shape[0])
        if self.response == "prob":
            out = out.double().softmax(1)
        return out[:, target].double().cpu()

    def _perturbed(self, x: torch.Tensor, z: torch.Tensor, channel: int | None) -> torch.Tensor:
        b = z.shape[0]
        up = F.interpolate(z.view(b, 1, self.grid, self.grid).float(), size=x.shape[-2:], mode="nearest")
        xb = x.expand(b, -1, -1, -1).clone()
        if channel is None:
            xb += up.to(x.device)
        else:
            xb[:, channel : channel + 1] += up.to(x.device)
        if self.quantize == "trunc":
            base = torch.round(x * 255.0)
            xb = torch.trunc(base + (xb - x) * 255.0) / 255.0
        if self.clip:
            xb = xb.clamp(0.0, 1.0)
        return xb

    def leg_estimates(self, x: torch.Tensor, target: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per-channel LEG ĝ ``(C, grid, grid)`` float64 (C = 3 per channel, else 1) and bookkeeping."""
        gen = torch.Generator().manual_seed(self.seed)
        f0 = float(self._score(x, target)[0])
        channels: list[int | None] = [0, 1, 2] if self.per_channel else [None]
        t_sample = t_model = 0.0
        gs = []
        for c in channels:
            t0 = time.perf_counter()
            z = sample_grid_noise(self.n_samples, self.grid, self.sigma, self.covariance, self.padded, gen,
                                  self.antithetic)
            t_sample += time.perf_counter() - t0
            ys = []
            for i in range(0, self.n_samples, self.batch_size):
                t0 = time.perf_counter()
                xb = self._perturbed(x, z[i : i + self.batch_size], c)
                t1 = time.perf_counter()
                ys.append(self._score(xb, target) - f0)
                t_model += time.perf_counter() - t1
                t_sample += t1 - t0
            y = torch.cat(ys)
            gs.append(leg_from_samples(z, y, self.sigma, self.covariance, self.padded))
        g = torch.stack(gs).view(len(channels), self.grid, self.grid)
        return g, {"p_clean": f0, "seconds_sampling": t_sample, "seconds_model": t_model}

    def _to_map(self, g: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return leg_map(g, size)

    def _explain(self, x, target):
        g, info = self.leg_estimates(x, target)
        return self._to_map(g, x.shape[-2:]), {"leg": g.float(), **info}


@register("leg_tv")
class LEGTV(LEG):
    """LEG-TV (paper Definition 2) on top of :class:`LEG`'s samples, solved by the sparse LP per channel.

    Parameters (beyond :class:`LEG`)
    --------------------------------
    k_l : float
        K_L: λ = K_L·L_max (0.1 in the LEG tables, 0.3 in the figures).
    path : tuple of float, optional
        Solve for every K_L in ``path`` (descending, re-using the compiled problem); solutions in
        ``extras["path"]``. The map always uses ``k_l`` (added to the path when missing).
    l_rule : {"relative", "theorem1"}
        ``"theorem1"``: absolute L = sqrt(2‖D⁺‖₁ log(p/ε)/n) (Theorem 1; conservative, often g = 0).
    epsilon : float
        ε of Theorem 1.
    solver : {"clarabel", "highs", "cvxpy-highs"}
    """

    def __init__(self, model, n_samples: int = 2000, sigma: float = 0.02, grid: int = 28, per_channel: bool = True,
                 covariance: str = "structured", padded: bool = True, quantize: str | None = None,
                 clip: bool = False, antithetic: bool = False, response: str = "prob", seed: int = 0,
                 k_l: float = 0.1, path: tuple[float, ...] | None = None, l_rule: str = "relative",
                 epsilon: float = 0.05, solver: str = "clarabel", batch_size: int = 64) -> None:
        super().__init__(model, n_samples=n_samples, sigma=sigma, grid=grid, per_channel=per_channel,
                         covariance=covariance, padded=padded, quantize=quantize, clip=clip, antithetic=antithetic,
                         response=response, seed=seed, batch_size=batch_size)
        self.k_l = float(check_range("k_l", k_l, 0.0, 1.0))
        self.path = None if path is None else tuple(float(check_range("path", k, 0.0, 1.0)) for k in path)
        self.l_rule = check_choice("l_rule", l_rule, ("relative", "theorem1"))
        self.epsilon = float(check_range("epsilon", epsilon, 0.0, 1.0, low_inclusive=False, high_inclusive=False))
        self.solver = check_choice("solver", solver, SOLVERS)

    def _explain(self, x, target):
        g, info = self.leg_estimates(x, target)
        ks = sorted(set(self.path or ()) | {self.k_l}, reverse=True)
        L_abs = theorem1_L(self.grid, self.n_samples, self.padded, self.epsilon) if self.l_rule == "theorem1" else None
        if L_abs is not None:
            ks = [self.k_l]
        sols = {k: [] for k in ks}
        lp_seconds, objectives = 0.0, []
        for c in range(g.shape[0]):
            for k in ks:
                gt, li = solve_leg_tv(g[c].numpy(), self.grid, k, self.padded, self.solver, L_abs, self.sigma)
                sols[k].append(torch.from_numpy(gt).view(self.grid, self.grid))
                lp_seconds += li["seconds"]
                objectives.append(li["objective"])
        tv = {k: torch.stack(v) for k, v in sols.items()}
        extras = {"leg": g.float(), "leg_tv": tv[self.k_l].float(), "leg_map": self._to_map(g, x.shape[-2:]),
                  "lp_seconds": lp_seconds,
                  "lp_objectives": objectives, **info}
        if self.path:
            extras["path"] = {k: v.float() for k, v in tv.items()}
        if L_abs is not None:
            extras["L_theorem1"] = L_abs
        return self._to_map(tv[self.k_l], x.shape[-2:]), extras


# --------------------------------------------------------------------------------------------
# consistency experiment (paper §5.1 made visible): a function whose LEG is known in closed form
# --------------------------------------------------------------------------------------------
def _dplus_t(n: int, padded: bool = True) -> np.ndarray:
    """Dense D⁺ᵀ = D(DᵀD)⁻¹ for the full-rank padded D (a Cholesky solve, no pseudo-inverse); small grids only."""
    if not padded:
        raise ValueError("padded=False is not valid here; accepted values: True (full-rank D)")
    D = grid_difference_matrix(n, True)
    A = (D.T @ D).toarray()
    return (D @ sla.cho_solve(sla.cho_factor(A), np.eye(n * n))).astype(np.float64)


def consistency_experiment(grid: int = 12, sigma: float = 0.02, ns: tuple[int, ...] = (250, 1000, 4000, 16000),
                           repeats: int = 3, covariances: tuple[str, ...] = ("structured", "isotropic"),
                           noise: float = 4.0, quad: float = 0.25, epsilon: float = 0.05, k_l: float | None = None,
                           l_scale: float = 1.0, seed: int = 0):
    """Error of LEG and LEG-TV against the closed-form LEG as the number of samples n grows.

    f(z) = aᵀz + (quad/σ)·½zᵀBz + noise·σ·‖a‖₂·ε with a piecewise-constant ``a`` (a box: TV-sparse), B a fixed
    random symmetric matrix and ε ~ N(0, 1). For ANY centred Gaussian z the odd moments vanish, so
    γ = Σ⁻¹E[(f(z) − f(0))z] = a exactly: the estimand is the same for the structured Σ and for σ²I.
    LEG-TV uses the high-confidence-set threshold of Theorem 1 with the variance estimated from the samples:
    λ = sqrt(2 log(2m/ε)/n)·max_j sd_i(v_ij), v_i = D⁺ᵀΣ⁻¹y_i z_i (per-sample LEG seen through D⁺ᵀ), so
    λ ∝ n^{-1/2} as in the theorem, times ``l_scale`` (``k_l`` instead uses the fixed relative rule
    λ = K_L·L_max).
    The structured case uses the sparse LP; σ²I needs the dense D⁺ᵀ (tiny grids only).
    Returns a tidy DataFrame (covariance, estimator, n, repeat, error) with error = ‖γ̂ − a‖_F/‖a‖_F.
    """
    import cvxpy as cp
    import pandas as pd

    p = grid * grid
    a = np.zeros((grid, grid))
    q = grid // 4
    a[q : grid - q, q + 1 : grid - q + 1] = 1.0
    a = a.ravel()
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((p, p)) / math.sqrt(p)
    B = (B + B.T) / 2
    D, u = tv_operator(grid, True)
    Dpt = _dplus_t(grid)
    m = D.shape[0]
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for cov in covariances:
        L = covariance_cholesky(grid, True, "structured") if cov == "structured" else None
        for n in ns:
            for r in range(repeats):
                z = sample_grid_noise(n, grid, sigma, cov, True, gen).numpy()
                eps = torch.randn(n, generator=gen, dtype=torch.float64).numpy()
                y = z @ a + (quad / sigma) * 0.5 * np.einsum("ip,pq,iq->i", z, B, z) + noise * sigma * \
                    np.linalg.norm(a) * eps
                yz = y[:, None] * z / sigma**2
                per = sla.cho_solve((L, True), yz.T).T if cov == "structured" else yz  # per-sample Σ⁻¹ y z (σ² out)
                g_hat = per.mean(0)
                rows.append({"covariance": cov, "estimator": "LEG", "n": n, "repeat": r,
                             "error": float(np.linalg.norm(g_hat - a) / np.linalg.norm(a))})
                if cov == "structured":
                    V = per @ D.T + np.outer(per.mean(1), u)  # rows: D ĝ_i + u·mean ĝ_i  (= D⁺ᵀΣ ĝ_i / σ²)
                else:
                    V = per @ Dpt.T * 1.0  # D⁺ᵀ ĝ_i (σ²I: D⁺ᵀΣ = σ²D⁺ᵀ)
                lam = l_scale * math.sqrt(2 * math.log(2 * m / epsilon) / n) * float(V.std(0, ddof=1).max())
                if cov == "structured":
                    r_vec = D @ g_hat + u * g_hat.mean()
                    lam_use = k_l * float(np.abs(r_vec).max()) if k_l is not None else lam
                    g_tv, _ = solve_leg_tv(g_hat, grid, 1.0, True, "clarabel", L=lam_use * sigma**2, sigma=sigma)
                else:
                    g = cp.Variable(p)
                    b = Dpt @ g_hat
                    lam_use = k_l * float(np.abs(b).max()) if k_l is not None else lam
                    prob = cp.Problem(cp.Minimize(cp.norm1(D @ g)), [cp.norm_inf(Dpt @ g - b) <= lam_use])
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        prob.solve(solver=cp.CLARABEL)
                    g_tv = np.asarray(g.value)
                rows.append({"covariance": cov, "estimator": "LEG-TV", "n": n, "repeat": r,
                             "error": float(np.linalg.norm(g_tv - a) / np.linalg.norm(a))})
    return pd.DataFrame(rows)
