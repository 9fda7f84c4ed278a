"""Six ways to average a set of models at equal checkpoint index (docs/study.md A9, App. E.4).

Each method takes S models' probabilities (S, N, C) and returns one (N, C) model, renormalized per
sample (float64):

- ``arithmetic``: mean of p (AM);
- ``geometric``: exp(mean log p) (GM);
- ``harmonic``: 1 / mean(1/p) (HM);
- ``square_root``: (mean sqrt p)^2, the mean on the sphere of square-root probabilities;
- ``bhattacharyya``: the minimizer of sum_i d_B(p_i, q), by the concave-convex iteration of Nielsen
  and Boltz (2011) started from AM;
- ``jeffreys``: the Jeffreys (symmetric Kullback-Leibler) centroid AM / W0(e AM / GM) of Nielsen
  (2013), W0 the principal branch of Lambert W, renormalized (the authors' convention); with
  ``exact=True`` the true minimizer over the simplex instead (see ``jeffreys_centroid``).

**Zero probabilities.** Logs and inverses (GM, HM, Jeffreys) see the probabilities clipped below at
``floor`` (default ``PROB_FLOOR = 1e-8``). Stored probabilities can be exact zeros (float32
softmax underflow; float16 rounded anything below ~6e-8 to 0 in runs of the old store format);
without a floor one model's stored 0 would make the geometric and harmonic means exactly 0 in
that class, and two confident models that disagree would leave a sample with no mass at all. The
floor treats a stored 0 as "of the order of the storage resolution". AM, the square-root mean
and the Bhattacharyya centroid take no logs and use no floor.

**Bhattacharyya centroid.** For categorical distributions with natural parameters
theta_c = log(p_c / p_C) and log-normalizer F, d_B(p, q) = (F(theta_p) + F(theta_q))/2 -
F((theta_p + theta_q)/2). The concave-convex procedure solves grad F(theta') = mean_i grad F((theta
+ theta_i)/2); in expectation parameters this reads, per sample,

    q' = mean_i  sqrt(q * p_i) / BC(q, p_i),     BC(q, p) = sum_c sqrt(q_c p_c),

and never increases sum_i d_B(p_i, q). Working in expectation parameters needs no logit map, so
the authors' 1e-5/1e-8 guards in the logit maps have no counterpart here; the only guard is that BC
is clipped below at ``BC_FLOOR`` (from ``lowdim.geometry.distances``), which matters only if
rounding separates the supports of q and some p_i (in exact arithmetic q keeps the union of the
supports).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import lambertw
from tqdm import tqdm

from lowdim.geometry.distances import BC_FLOOR, check_probabilities

PROB_FLOOR = 1e-8

Centroid = Callable[..., np.ndarray]


def _check(probs: np.ndarray) -> np.ndarray:
    """Validate (S, N, C) probabilities and return them as float64."""
    return check_probabilities(probs, "probs", 3).astype(np.float64)


def _check_floor(floor: float) -> float:
    if not 0.0 < floor < 1.0:
        raise ValueError(f"floor must lie in the open interval (0, 1), got {floor}")
    return float(floor)


def _renormalize(q: np.ndarray) -> np.ndarray:
    """(N, C) non-negative -> (N, C) rows summing to 1."""
    total = q.sum(axis=-1, keepdims=True)
    if not np.all(total > 0):
        raise ValueError("an average has a sample with no probability mass left; "
                         "raise the floor or check the inputs")
    return q / total


def arithmetic_mean(probs: np.ndarray) -> np.ndarray:
    """(S, N, C) -> (N, C) mean of p (AM)."""
    return _renormalize(_check(probs).mean(axis=0))


def geometric_mean(probs: np.ndarray, *, floor: float = PROB_FLOOR) -> np.ndarray:
    """(S, N, C) -> (N, C) exp(mean log max(p, floor)), renormalized (GM)."""
    p = np.maximum(_check(probs), _check_floor(floor))
    return _renormalize(np.exp(np.log(p).mean(axis=0)))


def harmonic_mean(probs: np.ndarray, *, floor: float = PROB_FLOOR) -> np.ndarray:
    """(S, N, C) -> (N, C) 1 / mean(1 / max(p, floor)), renormalized (HM)."""
    p = np.maximum(_check(probs), _check_floor(floor))
    return _renormalize(1.0 / (1.0 / p).mean(axis=0))


def square_root_mean(probs: np.ndarray) -> np.ndarray:
    """(S, N, C) -> (N, C) (mean sqrt p)^2, renormalized: the mean on the sphere of roots."""
    return _renormalize(np.sqrt(_check(probs)).mean(axis=0) ** 2)


def bhattacharyya_centroid(
    probs: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """(S, N, C) -> (N, C) minimizer of sum_i d_B(p_i, q): concave-convex iteration from AM.

    At most ``max_iter`` iterations (100, as the authors); stops early once no entry of q moves by
    more than ``tol``. ``callback(iteration, q)`` is called with the start (iteration 0, AM) and
    after every iteration, e.g. to record the objective. Memory: two float64 copies of probs.
    """
    if isinstance(max_iter, bool) or int(max_iter) != max_iter or max_iter < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    p = _check(probs)
    roots = np.sqrt(p)  # (S, N, C)
    q = _renormalize(p.mean(axis=0))
    if callback is not None:
        callback(0, q)
    for iteration in range(1, int(max_iter) + 1):
        rq = np.sqrt(q)
        terms = roots * rq  # sqrt(q p_i), (S, N, C)
        bc = np.maximum(terms.sum(axis=-1, keepdims=True), BC_FLOOR)
        new = _renormalize((terms / bc).mean(axis=0))
        step = float(np.abs(new - q).max())
        q = new
        if callback is not None:
            callback(iteration, q)
        if step <= tol:
            break
    return q


def _jeffreys_terms(probs: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(S, N, C) -> AM and GM of the floored probabilities, each (N, C), not renormalized."""
    p = np.maximum(_check(probs), _check_floor(floor))
    return p.mean(axis=0), np.exp(np.log(p).mean(axis=0))


def _w0(z: np.ndarray) -> np.ndarray:
    """Principal branch of Lambert W for z >= 0, real."""
    return lambertw(z, 0).real


def jeffreys_positive_centroid(probs: np.ndarray, *, floor: float = PROB_FLOOR) -> np.ndarray:
    """(S, N, C) -> (N, C) AM / W0(e AM / GM), not renormalized: the Jeffreys centroid of
    positive measures (Nielsen 2013), where d/dq_c sum_i J(p_i, q) = 0 for every class."""
    a, g = _jeffreys_terms(probs, floor)
    # AM >= GM entrywise, so the argument is >= e and W0 >= 1: no division by ~0.
    return a / _w0(np.e * a / g)


def _exact_jeffreys(a: np.ndarray, g: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """(N, C) AM and GM -> (N, C) minimizer of sum_i J(p_i, q) over the simplex.

    Stationarity with a multiplier mu per sample: log(q_c/g_c) + 1 - a_c/q_c = mu, i.e.
    q_c(mu) = a_c / W0(e^{1-mu} a_c / g_c). h(mu) = sum_c q_c(mu) - 1 is increasing and convex,
    with h'(mu) = sum_c q_c / (1 + W0). Newton's method started to the right of the root
    (mu = 1 - log sum_c g_c, where sum_c q_c >= e^{mu-1} sum_c g_c = 1 because W0(z) <= z)
    then decreases monotonically to it.
    """
    mu = 1.0 - np.log(g.sum(axis=-1, keepdims=True))
    for _ in range(max_iter):
        w = _w0(np.exp(1.0 - mu) * a / g)
        q = a / w
        h = q.sum(axis=-1, keepdims=True) - 1.0
        if np.abs(h).max() <= 1e-14:
            break
        mu = mu - h / (q / (1.0 + w)).sum(axis=-1, keepdims=True)
    return q


def jeffreys_centroid(
    probs: np.ndarray, *, floor: float = PROB_FLOOR, exact: bool = False
) -> np.ndarray:
    """(S, N, C) -> (N, C) Jeffreys (symmetric KL) centroid, renormalized.

    Default (the authors' convention, docs/study.md A9): the positive-measure centroid
    AM / W0(e AM / GM) renormalized per sample. Renormalizing it does not give the minimizer over
    the simplex, only a close approximation (Nielsen 2013); ``exact=True`` returns the minimizer
    itself by a per-sample Newton solve for the Lagrange multiplier (see ``_exact_jeffreys``).
    Probabilities are clipped below at ``floor`` first.
    """
    if exact:
        a, g = _jeffreys_terms(probs, floor)
        return _renormalize(_exact_jeffreys(a, g))
    return _renormalize(jeffreys_positive_centroid(probs, floor=floor))


AVERAGING_METHODS: dict[str, Centroid] = {
    "arithmetic": arithmetic_mean,
    "geometric": geometric_mean,
    "harmonic": harmonic_mean,
    "square_root": square_root_mean,
    "bhattacharyya": bhattacharyya_centroid,
    "jeffreys": jeffreys_centroid,
}


def centroid(probs: np.ndarray, method: str, **options) -> np.ndarray:
    """(S, N, C) -> (N, C) average by the named method; options go to that method."""
    if method not in AVERAGING_METHODS:
        raise ValueError(f"unknown averaging method {method!r}: choose one of "
                         f"{', '.join(AVERAGING_METHODS)}")
    return AVERAGING_METHODS[method](probs, **options)


def average_trajectory(
    trajectories: np.ndarray, method: str, *, progress: bool = False, **options
) -> np.ndarray:
    """(S, K, N, C) trajectories -> (K, N, C): the named average at each checkpoint index."""
    if method not in AVERAGING_METHODS:
        raise ValueError(f"unknown averaging method {method!r}: choose one of "
                         f"{', '.join(AVERAGING_METHODS)}")
    shape = np.shape(trajectories)
    if len(shape) != 4:
        raise ValueError("trajectories must be a 4-D array (S, K, N, C): S runs with K "
                         f"checkpoints each, aligned by checkpoint index; got shape {shape}")
    steps = tqdm(range(shape[1]), desc=f"{method} average", disable=not progress)
    return np.stack([centroid(trajectories[:, k], method, **options) for k in steps])
