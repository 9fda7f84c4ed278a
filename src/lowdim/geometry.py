"""Geodesics on the sphere of square-root probabilities, and progress along them (PAPER.md A3, A6).

The map p -> a = sqrt(p) sends each per-sample probability vector onto the positive orthant of the
unit sphere S^{C-1}. Between two models the per-sample great circle (slerp)

    gamma_n(t) = [sin((1-t) theta_n) a0_n + sin(t theta_n) a1_n] / sin(theta_n),
    theta_n = arccos(clip(<a0_n, a1_n>, 0, 1)),

is the Fisher-Rao geodesic on the product of simplices; the model at parameter t has probabilities
gamma(t)^2. Samples whose two endpoints coincide (theta_n < ``THETA_EPS``) stay at the start point.

Progress lambda(P) projects a model onto the geodesic between p0 (usually ignorance) and p1 (usually
truth). Numerical choices, shared by both modes:

- square-root vectors are scaled to unit length per sample (the same as renormalizing each
  probability row, which validation allows to be off by 1e-3). Without it, float32 row sums of
  1 + 1e-8 push inner products above 1, the clip flattens the objective near its minimum and
  progress is off by ~1e-4;
- the angle theta_n is computed from the chord, 2 arcsin(|a0_n - a1_n| / 2), which equals
  arccos(<a0_n, a1_n>) for unit vectors in the orthant but stays accurate near 0: arccos of a
  rounded 1 - 1e-16 is already 1.5e-8, so identical endpoints would escape the THETA_EPS test;
- the inner products <a_n, a0_n> and <a_n, a1_n> are clipped to [0, 1], as in the authors' code;
- samples with theta_n < ``THETA_EPS`` carry no information about t and are left out of the
  objective ('prod' mode, where they only add a constant) and of the average ('mean' mode).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from lowdim.distances import check_probabilities

THETA_EPS = 1e-8
# The authors' default grid for the stored 100-point P0 -> P* geodesic (t = 0.01, ..., 1.00).
GEODESIC_T = np.linspace(0.01, 1.0, 100)
# Work on this many models at a time when forming (M, N) inner products, to bound memory.
_MODEL_BLOCK = 64


def _unit_roots(p: np.ndarray) -> np.ndarray:
    """(..., C) probabilities -> (..., C) float64 square roots scaled to unit length per sample."""
    a = np.sqrt(p.astype(np.float64))
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _endpoints(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C), (N, C) -> float64 unit roots a0, a1 and per-sample angles theta (N,)."""
    p0 = check_probabilities(p0, "p0", 2)
    p1 = check_probabilities(p1, "p1", 2)
    if p0.shape != p1.shape:
        raise ValueError(
            f"p0 and p1 must have the same shape (N, C), got {p0.shape} and {p1.shape}"
        )
    a0, a1 = _unit_roots(p0), _unit_roots(p1)
    chord = np.linalg.norm(a0 - a1, axis=-1)
    theta = 2.0 * np.arcsin(np.clip(0.5 * chord, 0.0, 1.0))
    return a0, a1, theta


def geodesic(p0: np.ndarray, p1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """(N, C), (N, C), t scalar or (T,) in [0, 1] -> (N, C) or (T, N, C) float64 probabilities.

    Rows of the result sum to 1 to rounding; gamma(0) and gamma(1) are p0 and p1 renormalized.
    """
    a0, a1, theta = _endpoints(p0, p1)
    t_arr = np.asarray(t, dtype=np.float64)
    if t_arr.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-D array, got shape {t_arr.shape}")
    if t_arr.size and (not np.isfinite(t_arr).all() or t_arr.min() < 0.0 or t_arr.max() > 1.0):
        raise ValueError("t must lie in [0, 1] (beyond it the great circle leaves the orthant)")
    ts = np.atleast_1d(t_arr)[:, None, None]  # (T, 1, 1)
    moving = theta >= THETA_EPS
    th = np.where(moving, theta, 1.0)[None, :, None]  # placeholder angle avoids 0/0 below
    w0 = np.sin((1.0 - ts) * th) / np.sin(th)
    w1 = np.sin(ts * th) / np.sin(th)
    gamma = np.where(moving[None, :, None], w0 * a0 + w1 * a1, a0)
    out = gamma**2
    return out[0] if t_arr.ndim == 0 else out


def _inner_products(
    p: np.ndarray, a0: np.ndarray, a1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M, N, C) probabilities -> clipped <a, a0> and <a, a1>, each (M, N) float64."""
    m = p.shape[0]
    u = np.empty(p.shape[:2])
    v = np.empty(p.shape[:2])
    for s in range(0, m, _MODEL_BLOCK):
        a = _unit_roots(p[s : s + _MODEL_BLOCK])
        u[s : s + _MODEL_BLOCK] = np.einsum("mnc,nc->mn", a, a0)
        v[s : s + _MODEL_BLOCK] = np.einsum("mnc,nc->mn", a, a1)
    return np.clip(u, 0.0, 1.0), np.clip(v, 0.0, 1.0)


def _check_models(p: np.ndarray, a0: np.ndarray) -> np.ndarray:
    """Validate (M, N, C) models against the (N, C) endpoints."""
    p = check_probabilities(p, "p", 3)
    if p.shape[1:] != a0.shape:
        raise ValueError(
            f"p must have shape (M, N, C) with (N, C) = {a0.shape} as the endpoints, "
            f"got {p.shape}"
        )
    return p


def progress(
    p: np.ndarray, p0: np.ndarray, p1: np.ndarray, *, xatol: float = 1e-6
) -> np.ndarray:
    """(M, N, C), (N, C), (N, C) -> (M,) progress in [0, 1]; A6 'prod' mode (angle-sum minimum).

    lambda = argmin_t sum_n arccos(clip(<a_n, gamma_n(t)>, 0, 1)) by bounded Brent (scipy
    ``minimize_scalar(method='bounded')``, tolerance ``xatol``). Bounded Brent never evaluates
    the bounds themselves, so the objective at t = 0 and t = 1 is compared with its answer and the
    best of the three is kept (ties go to the endpoint): lambda(p0) = 0 and lambda(p1) = 1 exactly.
    """
    a0, a1, theta = _endpoints(p0, p1)
    p = _check_models(p, a0)
    u, v = _inner_products(p, a0, a1)
    keep = theta >= THETA_EPS
    u, v, th = u[:, keep], v[:, keep], theta[keep]
    sin_th = np.sin(th)
    out = np.zeros(p.shape[0])
    if th.size == 0:  # every sample has p0 == p1: any t is as good, report the start
        return out

    for i in range(p.shape[0]):
        ui, vi = u[i], v[i]

        def cost(t: float, ui: np.ndarray = ui, vi: np.ndarray = vi) -> float:
            c = (ui * np.sin((1.0 - t) * th) + vi * np.sin(t * th)) / sin_th
            return float(np.arccos(np.clip(c, 0.0, 1.0)).sum())

        res = minimize_scalar(cost, bounds=(0.0, 1.0), method="bounded", options={"xatol": xatol})
        candidates = [(cost(0.0), 0.0), (cost(1.0), 1.0), (float(res.fun), float(res.x))]
        out[i] = min(candidates, key=lambda fc: fc[0])[1]
    return out


def progress_closed_form(p: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """(M, N, C), (N, C), (N, C) -> (M,) progress in [0, 1]; A6 'mean' mode (closed form).

    Per sample, the point of the great circle nearest to a_n satisfies
    tan(t_n theta_n) = <a,a1> / (<a,a0> sin theta_n) - cot theta_n; t_n < 0 goes to 0, t_n is
    clipped to [0, 1], and lambda is the mean of t_n over informative samples. Samples with a_n
    orthogonal to both endpoints (every t equally near) are left out with the degenerate ones; a
    model with no informative sample gets lambda = 0.
    """
    a0, a1, theta = _endpoints(p0, p1)
    p = _check_models(p, a0)
    u, v = _inner_products(p, a0, a1)
    keep = theta >= THETA_EPS
    u, v, th = u[:, keep], v[:, keep], theta[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        # u == 0 < v gives +inf, i.e. t_n theta_n = pi/2 >= theta_n: clipped to 1 below.
        x = v / (u * np.sin(th)) - 1.0 / np.tan(th)
        t_n = np.clip(np.arctan(x) / th, 0.0, 1.0)
    informative = ~np.isnan(t_n)  # u == v == 0
    counts = informative.sum(axis=1)
    sums = np.where(informative, t_n, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
