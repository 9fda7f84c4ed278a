"""Independent oracles for the numerical functions of docs/study.md A5, A6 and A9.

Every expected value here is computed without the package's code path: closed forms written out
per sample, brute-force minimisation of the defining objective over the probability simplex (or
over t in [0, 1]), and numpy's eigendecomposition of the double-centred matrix. Each test also
checks that the oracles it compares against differ from one another by far more than its
tolerance, so that swapping one method (or mode) for another fails.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from lowdim.geometry.centroids import AVERAGING_METHODS, centroid, jeffreys_centroid
from lowdim.geometry.geodesic import progress, progress_closed_form
from lowdim.geometry.inpca import explained_stress, inpca

# ------------------------------------------------------------------------------------------------
# Centroids (A9)
# ------------------------------------------------------------------------------------------------

# (S models, N samples, C classes). Strictly positive, so the floor of GM / HM / Jeffreys
# (1e-8) never acts. With two models the Bhattacharyya centroid *is* the square-root mean (the
# midpoint of the great circle: -log cos a1 - log cos a2 with a1 + a2 fixed is least at
# a1 = a2), so only the three-model cases separate all six methods.
CENTROID_CASES = {
    "two_models_two_classes": np.array([
        [[0.9, 0.1], [0.35, 0.65]],
        [[0.2, 0.8], [0.95, 0.05]],
    ]),
    "three_models_two_classes": np.array([
        [[0.9, 0.1], [0.35, 0.65]],
        [[0.2, 0.8], [0.95, 0.05]],
        [[0.6, 0.4], [0.7, 0.3]],
    ]),
    "three_models_three_classes": np.array([
        [[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]],
        [[0.1, 0.6, 0.3], [0.5, 0.4, 0.1]],
        [[0.25, 0.25, 0.5], [0.3, 0.05, 0.65]],
    ]),
}
# The closed forms and the implementation agree to ~1e-16. Brute force locates a convex minimum
# to ~1e-8 only (the objective is flat to rounding within ~sqrt(eps) of it; observed
# 5e-10 ... 7e-9, the Bhattacharyya iteration at its default 100 steps included), so 1e-7 there.
CLOSED_FORM_ATOL = 1e-12
CENTROID_ATOL = 1e-7
CLOSED_FORMS = {"arithmetic", "geometric", "harmonic", "square_root"}


def normalised(q: list[float]) -> np.ndarray:
    return np.array(q) / sum(q)


def oracle_arithmetic(ps: np.ndarray) -> np.ndarray:
    """(S, C) -> (C,) sum_i p_i / S."""
    return np.array([sum(p[c] for p in ps) / len(ps) for c in range(ps.shape[1])])


def oracle_geometric(ps: np.ndarray) -> np.ndarray:
    """(S, C) -> (C,) (prod_i p_i)^(1/S), normalised."""
    return normalised([float(np.prod([p[c] for p in ps])) ** (1.0 / len(ps))
                       for c in range(ps.shape[1])])


def oracle_harmonic(ps: np.ndarray) -> np.ndarray:
    """(S, C) -> (C,) S / sum_i (1 / p_i), normalised."""
    return normalised([len(ps) / sum(1.0 / p[c] for p in ps) for c in range(ps.shape[1])])


def oracle_square_root(ps: np.ndarray) -> np.ndarray:
    """(S, C) -> (C,) (sum_i sqrt(p_i) / S)^2, normalised."""
    return normalised([(sum(np.sqrt(p[c]) for p in ps) / len(ps)) ** 2
                       for c in range(ps.shape[1])])


def summed_bhattacharyya(ps: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(S, C), (..., C) -> (...) sum_i -log sum_c sqrt(p_ic q_c) (A2, one sample)."""
    return sum(-np.log(np.sqrt(p * q).sum(-1)) for p in ps)


def summed_jeffreys(ps: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(S, C), (..., C) -> (...) sum_i KL(p_i||q) + KL(q||p_i) = sum_ic (p - q)(log p - log q)."""
    return sum(((p - q) * (np.log(p) - np.log(q))).sum(-1) for p in ps)


def simplex_argmin(objective, c: int) -> np.ndarray:
    """Minimiser over the open simplex of a convex objective (vectorised over (..., C)).

    A dense grid finds the basin; bounded Brent (C = 2) or Nelder-Mead (C = 3) then polishes.
    """
    if c == 2:
        x = np.linspace(0.0, 1.0, 2001)[1:-1]
        i = int(np.argmin(objective(np.stack([x, 1.0 - x], -1))))
        lo, hi = x[max(i - 1, 0)], x[min(i + 1, x.size - 1)]
        res = minimize_scalar(lambda t: float(objective(np.array([t, 1.0 - t]))),
                              bounds=(lo, hi), method="bounded", options={"xatol": 1e-14})
        return np.array([res.x, 1.0 - res.x])
    assert c == 3
    step = 1.0 / 300
    pts = np.array([(i * step, j * step) for i in range(1, 300) for j in range(1, 300 - i)])
    grid = np.column_stack([pts, 1.0 - pts.sum(1)])
    start = pts[int(np.argmin(objective(grid)))]

    def f(xy: np.ndarray) -> float:
        q = np.array([xy[0], xy[1], 1.0 - xy[0] - xy[1]])
        return float(objective(q)) if np.all(q > 0) else np.inf

    res = minimize(f, start, method="Nelder-Mead", options={
        "xatol": 1e-11, "fatol": 1e-15, "maxiter": 5000,
        "initial_simplex": start + np.array([[0.0, 0.0], [step, 0.0], [0.0, step]])})
    assert res.success, res.message
    return np.array([res.x[0], res.x[1], 1.0 - res.x.sum()])


def positive_jeffreys_coordinate(values: np.ndarray) -> float:
    """argmin_{q > 0} sum_i (v_i - q)(log v_i - log q): one class of the positive-measure
    Jeffreys centroid. Convex in q, minimum between min v and max v (the derivative changes
    sign there), found by bounded Brent on log q."""
    def f(log_q: float) -> float:
        q = np.exp(log_q)
        return float(((values - q) * (np.log(values) - log_q)).sum())

    lo, hi = np.log(values.min()), np.log(values.max())
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-14})
    return float(np.exp(res.x))


def oracle_bhattacharyya(ps: np.ndarray) -> np.ndarray:
    return simplex_argmin(lambda q: summed_bhattacharyya(ps, q), ps.shape[1])


def oracle_jeffreys_exact(ps: np.ndarray) -> np.ndarray:
    return simplex_argmin(lambda q: summed_jeffreys(ps, q), ps.shape[1])


def oracle_jeffreys_default(ps: np.ndarray) -> np.ndarray:
    """The authors' convention (A9): the Jeffreys centroid over positive measures, which
    separates by class, renormalised."""
    return normalised([positive_jeffreys_coordinate(ps[:, c]) for c in range(ps.shape[1])])


ORACLES = {
    "arithmetic": oracle_arithmetic,
    "geometric": oracle_geometric,
    "harmonic": oracle_harmonic,
    "square_root": oracle_square_root,
    "bhattacharyya": oracle_bhattacharyya,
    "jeffreys": oracle_jeffreys_default,
}


@functools.cache
def oracle_centroid(case: str, name: str) -> np.ndarray:
    """(S, N, C) -> (N, C), one sample at a time (every objective separates by sample)."""
    oracle = {**ORACLES, "jeffreys_exact": oracle_jeffreys_exact}[name]
    probs = CENTROID_CASES[case]
    return np.stack([oracle(probs[:, n]) for n in range(probs.shape[1])])


def test_every_averaging_method_has_an_oracle():
    assert set(ORACLES) == set(AVERAGING_METHODS)


@pytest.mark.parametrize("method", sorted(ORACLES))
@pytest.mark.parametrize("case", sorted(CENTROID_CASES))
def test_centroid_matches_its_independent_oracle(case, method):
    probs = CENTROID_CASES[case]
    # Default options, as the pipeline calls them.
    atol = CLOSED_FORM_ATOL if method in CLOSED_FORMS else CENTROID_ATOL
    np.testing.assert_allclose(centroid(probs, method), oracle_centroid(case, method),
                               rtol=0, atol=atol)


@pytest.mark.parametrize("case", sorted(CENTROID_CASES))
def test_exact_jeffreys_centroid_is_the_brute_force_minimiser_on_the_simplex(case):
    probs = CENTROID_CASES[case]
    expected = oracle_centroid(case, "jeffreys_exact")
    np.testing.assert_allclose(jeffreys_centroid(probs, exact=True), expected,
                               rtol=0, atol=CENTROID_ATOL)
    # ... and the default (renormalised positive-measure centroid) is measurably another point.
    assert np.abs(jeffreys_centroid(probs) - expected).max() > 100 * CENTROID_ATOL


@pytest.mark.parametrize("case", sorted(CENTROID_CASES))
def test_centroid_oracles_differ_by_far_more_than_the_tolerance(case):
    values = {name: oracle_centroid(case, name) for name in [*ORACLES, "jeffreys_exact"]}
    for (a, qa), (b, qb) in itertools.combinations(values.items(), 2):
        gap = np.abs(qa - qb).max()
        if case.startswith("two_models") and {a, b} == {"bhattacharyya", "square_root"}:
            assert gap < CENTROID_ATOL, (a, b)  # the two-model identity (see CENTROID_CASES)
        else:
            assert gap > 100 * CENTROID_ATOL, (a, b, gap)


# ------------------------------------------------------------------------------------------------
# Progress lambda (A6)
# ------------------------------------------------------------------------------------------------

N_SAMPLES, N_CLASSES = 12, 4
# Two-stage grid: 1001 points on [0, 1], then 1001 points on +-1e-3 around the best one, i.e. a
# resolution of 2e-6; the implementation's Brent tolerance is 1e-6.
PROGRESS_ATOL = 1e-5


def oracle_slerp(p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, C) x 2, t (T, N) -> (T, N, C) root vectors gamma_n(t) of A3, written out."""
    a0, a1 = np.sqrt(p0), np.sqrt(p1)
    theta = np.arccos(np.clip((a0 * a1).sum(-1), 0.0, 1.0))  # (N,)
    t = t[..., None]
    return (np.sin((1.0 - t) * theta[:, None]) * a0
            + np.sin(t * theta[:, None]) * a1) / np.sin(theta)[:, None]


def sample_angles(p: np.ndarray, p0: np.ndarray, p1: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N, C) model, endpoints, t (T, N) -> (T, N) arccos(clip(<sqrt p_n, gamma_n(t)>, 0, 1))."""
    gamma = oracle_slerp(p0, p1, t)
    return np.arccos(np.clip((np.sqrt(p) * gamma).sum(-1), 0.0, 1.0))


def two_stage_argmin(cost, width: int) -> np.ndarray:
    """cost: t (T, width) -> (T, width); per column, argmin over t in [0, 1] on a 2e-6 grid."""
    coarse = np.repeat(np.linspace(0.0, 1.0, 1001)[:, None], width, axis=1)
    best = coarse[np.argmin(cost(coarse), axis=0), np.arange(width)]
    fine = np.clip(best[None, :] + np.linspace(-1e-3, 1e-3, 1001)[:, None], 0.0, 1.0)
    return fine[np.argmin(cost(fine), axis=0), np.arange(width)]


def oracle_progress_prod(p: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> float:
    """A6 'prod': argmin_t sum_n angle_n(t), by grid search."""
    def cost(t: np.ndarray) -> np.ndarray:  # (T, 1) -> (T, 1)
        ts = np.repeat(t, p.shape[0], axis=1)
        return sample_angles(p, p0, p1, ts).sum(-1, keepdims=True)

    return float(two_stage_argmin(cost, 1)[0])


def oracle_progress_mean(p: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> float:
    """A6 'mean': each sample's own nearest point of its geodesic segment (argmin over t in
    [0, 1] of its angle, by grid search), averaged over samples."""
    return float(two_stage_argmin(lambda t: sample_angles(p, p0, p1, t), p.shape[0]).mean())


@pytest.fixture(scope="module")
def progress_setting() -> dict[str, np.ndarray]:
    """Ignorance, truth, two random endpoints, and random noise for six models."""
    rng = np.random.default_rng(26)
    labels = rng.integers(0, N_CLASSES, size=N_SAMPLES)
    p0, p1 = rng.dirichlet(np.full(N_CLASSES, 2.0), size=(2, N_SAMPLES))
    return {
        "ignorance": np.full((N_SAMPLES, N_CLASSES), 1.0 / N_CLASSES),
        "truth": np.eye(N_CLASSES)[labels],
        "p0": p0,
        "p1": p1,
        "noise": rng.dirichlet(np.full(N_CLASSES, 0.8), size=(6, N_SAMPLES)),
    }


ENDPOINTS = {"ignorance_truth": ("ignorance", "truth"), "random_endpoints": ("p0", "p1")}
MODES = {"prod": (progress, oracle_progress_prod),
         "mean": (progress_closed_form, oracle_progress_mean)}


def off_geodesic_models(setting: dict[str, np.ndarray], ends: str):
    """Endpoints and six models off their geodesic: 70 % a linear (not geodesic) mixture of the
    endpoints at weights 0.1 ... 1, 30 % random noise, so that progress is spread out."""
    a, b = (setting[name] for name in ENDPOINTS[ends])
    w = np.linspace(0.1, 1.0, 6)[:, None, None]
    return 0.7 * ((1.0 - w) * a + w * b) + 0.3 * setting["noise"], a, b


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("ends", sorted(ENDPOINTS))
def test_progress_off_the_geodesic_matches_brute_force(progress_setting, ends, mode):
    implementation, oracle = MODES[mode]
    models, p0, p1 = off_geodesic_models(progress_setting, ends)
    expected = np.array([oracle(p, p0, p1) for p in models])
    # interior and spread out
    assert 0.01 < expected.min() and expected.max() < 0.99
    assert expected.max() - expected.min() > 0.4
    np.testing.assert_allclose(implementation(models, p0, p1), expected, rtol=0,
                               atol=PROGRESS_ATOL)


@pytest.mark.parametrize("ends", sorted(ENDPOINTS))
def test_the_two_progress_modes_differ_off_the_geodesic(progress_setting, ends):
    # Each mode matches its own brute force; the two brute forces (and so the two
    # implementations) disagree on every model by far more than that tolerance.
    models, p0, p1 = off_geodesic_models(progress_setting, ends)
    prod_oracle = np.array([oracle_progress_prod(p, p0, p1) for p in models])
    mean_oracle = np.array([oracle_progress_mean(p, p0, p1) for p in models])
    gaps = np.abs(prod_oracle - mean_oracle)
    assert gaps.min() > 50 * PROGRESS_ATOL and gaps.max() > 500 * PROGRESS_ATOL
    np.testing.assert_allclose(progress(models, p0, p1), prod_oracle, rtol=0,
                               atol=PROGRESS_ATOL)
    np.testing.assert_allclose(progress_closed_form(models, p0, p1), mean_oracle, rtol=0,
                               atol=PROGRESS_ATOL)


# ------------------------------------------------------------------------------------------------
# Explained stress (A5)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stress_matrix() -> np.ndarray:
    """(M, M) symmetric, zero diagonal, not Euclidean: squared distances of points in a
    Minkowski space (two space-like axes, one time-like) plus symmetric noise, so W has a
    large negative eigenvalue and full rank."""
    rng = np.random.default_rng(5)
    m = 10
    x = rng.normal(size=(m, 3)) * np.array([3.0, 1.0, 2.0])
    signs = np.array([1.0, 1.0, -1.0])
    d = ((x[:, None, :] - x[None, :, :]) ** 2 * signs).sum(-1)
    noise = rng.normal(scale=0.3, size=(m, m))
    d = d + noise + noise.T
    np.fill_diagonal(d, 0.0)
    return d


def oracle_spectrum(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D -> W = -1/2 L D L, its eigenvalues and eigenvectors sorted by |lambda| descending."""
    m = d.shape[0]
    centring = np.eye(m) - np.ones((m, m)) / m
    w = -0.5 * centring @ d @ centring
    lam, vec = np.linalg.eigh(w)
    order = np.argsort(-np.abs(lam), kind="stable")
    return w, lam[order], vec[:, order]


def test_explained_stress_matches_its_definition(stress_matrix):
    d = stress_matrix
    m = d.shape[0]
    w, lam, vec = oracle_spectrum(d)
    assert lam[1] < 0 and abs(lam[1]) > 2 * abs(lam[2])  # a time-like axis in second place
    ks = [1, 2, 3, 5, m]
    # chi_k = 1 - sqrt(1 - sum_{i<=k} lambda_i^2 / sum_all lambda_i^2)
    chi = np.array([1.0 - np.sqrt(max(0.0, 1.0 - (lam[:k] ** 2).sum() / (lam**2).sum()))
                    for k in ks])
    # = 1 - ||W - W_k||_F / ||W||_F, W_k the rank-k eigen-truncation (the second form of A5)
    for k, value in zip(ks, chi, strict=True):
        w_k = (vec[:, :k] * lam[:k]) @ vec[:, :k].T
        assert value == pytest.approx(1.0 - np.linalg.norm(w - w_k) / np.linalg.norm(w),
                                      abs=1e-12)
    assert chi[-1] == pytest.approx(1.0, abs=1e-12)

    emb = inpca(d, n_components=m, solver="dense")
    got = emb.explained_stress[np.array(ks) - 1]
    # (1 - chi)^2 = the unexplained fraction: compared there, as sqrt amplifies the rounding of
    # ||W||_F^2 near chi = 1 (1e-15 -> 3e-8)
    np.testing.assert_allclose((1.0 - got) ** 2, (1.0 - chi) ** 2, rtol=0, atol=1e-13)
    np.testing.assert_allclose(got[:-1], chi[:-1], rtol=0, atol=1e-12)
    direct = explained_stress(lam, float((w**2).sum()))
    np.testing.assert_allclose((1.0 - direct) ** 2, (1.0 - emb.explained_stress) ** 2, rtol=0,
                               atol=1e-13)
    # Sorting by signed lambda, or stress as a fraction of sum lambda^2, would be far off.
    signed = np.sort(lam)[::-1]
    wrong_order = 1.0 - np.sqrt(np.clip(1.0 - np.cumsum(signed**2) / (lam**2).sum(), 0, 1))
    assert np.abs(wrong_order[:3] - chi[:3]).max() > 0.05
    assert np.abs(np.cumsum(lam**2)[:3] / (lam**2).sum() - chi[:3]).max() > 0.05


@pytest.mark.parametrize("solver", ["lanczos", "randomized"])
def test_iterative_solvers_explained_stress_matches_its_definition(stress_matrix, solver):
    # These never form W: ||W||_F^2 comes from a streaming pass over D.
    _, lam, _ = oracle_spectrum(stress_matrix)
    k = 4
    chi = 1.0 - np.sqrt(1.0 - np.cumsum(lam[:k] ** 2) / (lam**2).sum())
    emb = inpca(stress_matrix, n_components=k, solver=solver)
    np.testing.assert_allclose(emb.explained_stress[:k], chi, rtol=0, atol=1e-9)
