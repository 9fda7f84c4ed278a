"""Geodesics on the sphere of square-root probabilities, progress along them, and whole
trajectories: reindexing, averages, distances and length (docs/study.md A3, A6-A9, A15).

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

Trajectories (a run's checkpoints in training order) are reindexed onto ``PROGRESS_GRID`` by A7's
forward-pointer rule with an index the caller chooses (training accuracy by default in the paper,
or lambda), averaged per configuration (A9), and compared at equal progress (A8). Reindexed points
are float64 probabilities; distances between them use ``lowdim.geometry.distances`` (same clamp,
same intensive normalization).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.optimize import minimize_scalar
from tqdm import tqdm

from lowdim.geometry.distances import BC_FLOOR, bhattacharyya, check_probabilities

THETA_EPS = 1e-8
# The authors' default grid for the stored 100-point P0 -> P* geodesic (t = 0.01, ..., 1.00).
GEODESIC_T = np.linspace(0.01, 1.0, 100)
# Inner products are formed this many models at a time (the unit of every block of models).
_MODEL_BLOCK = 64
# Default ceiling on the working set of one block of models in ``progress`` and
# ``progress_closed_form`` (the same default as the distance kernels' max_block_bytes).
MAX_BLOCK_BYTES = 256 * 2**20


def unit_roots(p: np.ndarray) -> np.ndarray:
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
    a0, a1 = unit_roots(p0), unit_roots(p1)
    return a0, a1, chord_angles(a0, a1)


def chord_angles(a0: np.ndarray, a1: np.ndarray) -> np.ndarray:
    """(N, C), (N, C) unit roots -> (N,) per-sample angles from the chord (accurate near 0)."""
    chord = np.linalg.norm(a0 - a1, axis=-1)
    return 2.0 * np.arcsin(np.clip(0.5 * chord, 0.0, 1.0))


def slerp_roots(a0: np.ndarray, a1: np.ndarray, theta: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Unit roots (N, C) x 2, angles (N,), parameters (T,) -> (T, N, C) probabilities gamma(t)^2."""
    ts = ts[:, None, None]  # (T, 1, 1)
    moving = theta >= THETA_EPS
    th = np.where(moving, theta, 1.0)[None, :, None]  # placeholder angle avoids 0/0 below
    w0 = np.sin((1.0 - ts) * th) / np.sin(th)
    w1 = np.sin(ts * th) / np.sin(th)
    gamma = np.where(moving[None, :, None], w0 * a0 + w1 * a1, a0)
    return gamma**2


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
    out = slerp_roots(a0, a1, theta, np.atleast_1d(t_arr))
    return out[0] if t_arr.ndim == 0 else out


def _inner_products(
    p: np.ndarray, a0: np.ndarray, a1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(M, N, C) probabilities -> clipped <a, a0> and <a, a1>, each (M, N) float64."""
    m = p.shape[0]
    u = np.empty(p.shape[:2])
    v = np.empty(p.shape[:2])
    for s in range(0, m, _MODEL_BLOCK):
        a = unit_roots(p[s : s + _MODEL_BLOCK])
        u[s : s + _MODEL_BLOCK] = np.einsum("mnc,nc->mn", a, a0)
        v[s : s + _MODEL_BLOCK] = np.einsum("mnc,nc->mn", a, a1)
    return np.clip(u, 0.0, 1.0), np.clip(v, 0.0, 1.0)


def progress_block_rows(n: int, c: int, max_block_bytes: int = MAX_BLOCK_BYTES) -> int:
    """Models per block of ``progress`` / ``progress_closed_form`` for (N, C) models.

    A whole number of ``_MODEL_BLOCK`` groups (at least one) whose working set fits
    ``max_block_bytes``: per model its float32 rows (4 N C bytes) and four (N,) float64 rows of
    inner products (u, v, and their informative columns: 32 N bytes), plus a fixed float64
    square-root block of ``_MODEL_BLOCK`` models (three (64, N, C) temporaries). Every block
    starts at a multiple of ``_MODEL_BLOCK``, so its inner products are computed on the same
    groups of models as an unblocked call and each model's result is bitwise the same.
    """
    if isinstance(max_block_bytes, bool) or int(max_block_bytes) != max_block_bytes \
            or max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be a positive integer, got {max_block_bytes!r}")
    per_model = n * (4 * c + 32)
    fixed = 3 * _MODEL_BLOCK * n * c * 8
    groups = (int(max_block_bytes) - fixed) // (per_model * _MODEL_BLOCK)
    return int(max(1, groups)) * _MODEL_BLOCK


def _inner_product_blocks(p: np.ndarray, a0: np.ndarray, a1: np.ndarray, keep: np.ndarray,
                          max_block_bytes: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Blocks of models of (M, N, C) p (an array, a memory map or a blockwise NpyFile, read one
    block at a time): (first model, clipped <a, a0>, clipped <a, a1>), each (rows, kept N)."""
    rows = progress_block_rows(*p.shape[1:], max_block_bytes)
    for start in range(0, p.shape[0], rows):
        u, v = _inner_products(np.asarray(p[start : start + rows]), a0, a1)
        yield start, u[:, keep], v[:, keep]


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
    p: np.ndarray, p0: np.ndarray, p1: np.ndarray, *, xatol: float = 1e-6,
    max_block_bytes: int = MAX_BLOCK_BYTES,
) -> np.ndarray:
    """(M, N, C), (N, C), (N, C) -> (M,) progress in [0, 1]; A6 'prod' mode (angle-sum minimum).

    lambda = argmin_t sum_n arccos(clip(<a_n, gamma_n(t)>, 0, 1)) by bounded Brent (scipy
    ``minimize_scalar(method='bounded')``, tolerance ``xatol``). Bounded Brent never evaluates
    the bounds themselves, so the objective at t = 0 and t = 1 is compared with its answer and the
    best of the three is kept (ties go to the endpoint): lambda(p0) = 0 and lambda(p1) = 1 exactly.

    Models are taken in blocks (``progress_block_rows``: the working set of a block fits
    ``max_block_bytes``), so memory is O(block + M) whatever M, and `p` may be a memory map or a
    blockwise ``lowdim.store.arrays.NpyFile`` read one block at a time. The result does not
    depend on the block size, bit for bit.
    """
    a0, a1, theta = _endpoints(p0, p1)
    p = _check_models(p, a0)
    keep = theta >= THETA_EPS
    th = theta[keep]
    sin_th = np.sin(th)
    out = np.zeros(p.shape[0])
    if th.size == 0:  # every sample has p0 == p1: any t is as good, report the start
        return out

    for start, u, v in _inner_product_blocks(p, a0, a1, keep, max_block_bytes):
        for i in range(u.shape[0]):
            out[start + i] = _angle_sum_minimum(u[i], v[i], th, sin_th, xatol)
    return out


def _angle_sum_minimum(ui: np.ndarray, vi: np.ndarray, th: np.ndarray, sin_th: np.ndarray,
                       xatol: float) -> float:
    """One model's 'prod' progress from its clipped inner products with the endpoints."""

    def cost(t: float) -> float:
        c = (ui * np.sin((1.0 - t) * th) + vi * np.sin(t * th)) / sin_th
        return float(np.arccos(np.clip(c, 0.0, 1.0)).sum())

    res = minimize_scalar(cost, bounds=(0.0, 1.0), method="bounded", options={"xatol": xatol})
    candidates = [(cost(0.0), 0.0), (cost(1.0), 1.0), (float(res.fun), float(res.x))]
    return min(candidates, key=lambda fc: fc[0])[1]


def progress_closed_form(p: np.ndarray, p0: np.ndarray, p1: np.ndarray, *,
                         max_block_bytes: int = MAX_BLOCK_BYTES) -> np.ndarray:
    """(M, N, C), (N, C), (N, C) -> (M,) progress in [0, 1]; A6 'mean' mode (closed form).

    Per sample, the point of the great circle nearest to a_n satisfies
    tan(t_n theta_n) = <a,a1> / (<a,a0> sin theta_n) - cot theta_n; t_n < 0 goes to 0, t_n is
    clipped to [0, 1], and lambda is the mean of t_n over informative samples. Samples with a_n
    orthogonal to both endpoints (every t equally near) are left out with the degenerate ones; a
    model with no informative sample gets lambda = 0. Blocks of models as ``progress``.
    """
    a0, a1, theta = _endpoints(p0, p1)
    p = _check_models(p, a0)
    keep = theta >= THETA_EPS
    th = theta[keep]
    out = np.empty(p.shape[0])
    for start, u, v in _inner_product_blocks(p, a0, a1, keep, max_block_bytes):
        with np.errstate(divide="ignore", invalid="ignore"):
            # u == 0 < v gives +inf, i.e. t_n theta_n = pi/2 >= theta_n: clipped to 1 below.
            x = v / (u * np.sin(th)) - 1.0 / np.tan(th)
            t_n = np.clip(np.arctan(x) / th, 0.0, 1.0)
        informative = ~np.isnan(t_n)  # u == v == 0
        counts = informative.sum(axis=1)
        sums = np.where(informative, t_n, 0.0).sum(axis=1)
        out[start : start + u.shape[0]] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return out


# --- Trajectories: reindexing onto a common progress grid, averages, distances (A7-A9, A15) ---

# A7's grid s_j = j / 100, j = 1..100 (the same values as GEODESIC_T).
PROGRESS_GRID = np.linspace(0.01, 1.0, 100)
# Two bracketing index values closer than this are one point: output the start (A7, step 3).
INDEX_EPS = 1e-8


def slerp(p_start: np.ndarray, p_end: np.ndarray, fraction: float) -> np.ndarray:
    """(N, C), (N, C), fraction in [0, 1] -> (N, C) float64 point of the per-sample great circle.

    The geodesic (A3) between any two models, evaluated at one parameter: slerp(p, q, 0) = p and
    slerp(p, q, 1) = q (renormalized).
    """
    if np.ndim(fraction) != 0:
        raise ValueError(f"fraction must be a scalar in [0, 1], got shape {np.shape(fraction)}")
    return geodesic(p_start, p_end, float(fraction))


def check_index(index: np.ndarray, k: int) -> np.ndarray:
    """Validate a (K,) reindexing index: finite values in [0, 1]; return float64."""
    index = np.asarray(index)
    if index.shape != (k,):
        raise ValueError(
            f"index must have shape ({k},), one value per checkpoint of the trajectory, "
            f"got {index.shape}"
        )
    if not np.issubdtype(index.dtype, np.number) or np.iscomplexobj(index):
        raise ValueError(f"index must be real numbers, got dtype {index.dtype}")
    index = index.astype(np.float64)
    if not np.isfinite(index).all():
        raise ValueError("index contains NaN or infinite values: every checkpoint needs a value")
    if index.min() < 0.0 or index.max() > 1.0:
        raise ValueError(
            f"index values must lie in [0, 1], got range [{index.min():.6g}, {index.max():.6g}]; "
            "use training accuracy (1 - train error) or progress lambda"
        )
    return index


def _check_grid(grid: np.ndarray) -> np.ndarray:
    """Validate a (G,) progress grid: finite, strictly increasing, within [0, 1]."""
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"grid must be a non-empty 1-D array, got shape {grid.shape}")
    if not np.isfinite(grid).all() or grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError("grid values must be finite and lie in [0, 1]")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be strictly increasing (the checkpoint pointer only moves on)")
    return grid


def reindex_brackets(
    index: np.ndarray, grid: np.ndarray = PROGRESS_GRID
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K,) index, (G,) grid -> (G,) start checkpoint, (G,) end checkpoint, (G,) slerp fraction.

    A7's forward-pointer rule, exactly as in the authors' ``reparameterize``: for each grid value
    s (in increasing order) the end is the first checkpoint k at or after the pointer, and before
    the last one, with index[k] > s; if there is none, k is the last checkpoint and its index is
    taken as 1.0 (the tail is stretched so that the final checkpoint sits at s = 1). The start is
    k - 1 (k when k = 0). If the two index values differ by less than ``INDEX_EPS`` the output is
    the start (fraction 0); otherwise fraction = clip((s - a_start) / (a_end - a_start), 0, 1).
    Consequences: every s below index[0] maps to the first checkpoint, and the last checkpoint's
    own index value is never read.
    """
    grid = _check_grid(grid)
    index = np.asarray(index, dtype=np.float64)
    last = index.size - 1
    starts = np.empty(grid.size, dtype=np.int64)
    ends = np.empty(grid.size, dtype=np.int64)
    fractions = np.zeros(grid.size)
    k = 0
    for j, s in enumerate(grid):
        while k < last and not index[k] > s:
            k += 1
        a_end = 1.0 if k == last else index[k]
        start = max(0, k - 1)
        a_start = index[start]
        starts[j], ends[j] = start, k
        if abs(a_end - a_start) >= INDEX_EPS:
            fractions[j] = np.clip((s - a_start) / (a_end - a_start), 0.0, 1.0)
        else:
            ends[j] = start  # the start itself, whatever checkpoint k is
    return starts, ends, fractions


def reindex(
    trajectory: np.ndarray, index: np.ndarray, grid: np.ndarray = PROGRESS_GRID
) -> np.ndarray:
    """(K, N, C) checkpoints, (K,) index values in [0, 1] -> (G, N, C) float64 probabilities.

    Reparameterizes one trajectory onto a common grid of G index values (A7): grid point s_j is
    the per-sample slerp (A3) between the two checkpoints that bracket s_j, chosen by
    ``reindex_brackets`` (forward pointer, last checkpoint stretched to index 1.0, start output
    when the bracket has zero width, first checkpoint below index[0]).

    The index is the caller's choice, computed per checkpoint:
    - training accuracy, 1 - train error: the authors' production default (``compute_lambda(
      reparam=True)``), which feeds every progress-axis analysis of the paper;
    - progress lambda along ignorance -> truth (``progress``): the generic routine's default and
      the ICML 2023 convention.
    Neither needs to be monotone in training time; the pointer only moves forward.
    """
    trajectory = check_probabilities(trajectory, "trajectory", 3)
    index = check_index(index, trajectory.shape[0])
    starts, ends, fractions = reindex_brackets(index, grid)
    out = np.empty((starts.size, *trajectory.shape[1:]), dtype=np.float64)
    cached: tuple[int, int] | None = None
    for j, (ks, ke, f) in enumerate(zip(starts, ends, fractions, strict=True)):
        if ks == ke:
            a = unit_roots(trajectory[ks])
            out[j] = a * a
            continue
        if cached != (ks, ke):  # consecutive grid points usually share a bracket
            a0, a1 = unit_roots(trajectory[ks]), unit_roots(trajectory[ke])
            theta = chord_angles(a0, a1)
            cached = (ks, ke)
        out[j] = slerp_roots(a0, a1, theta, np.array([f]))[0]
    return out


def _check_stack(x: np.ndarray, name: str, shape: str) -> np.ndarray:
    """Validate a 4-D stack of probabilities, (A, B, N, C); checks entries as (A*B, N, C)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must be a 4-D array of shape {shape}, got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    check_probabilities(x.reshape(-1, *x.shape[2:]), name, 3)
    return x


def average_trajectories(trajectories: np.ndarray) -> np.ndarray:
    """(S, G, N, C) reindexed seeds -> (G, N, C) float64 arithmetic mean, renormalized (A9).

    The mean of probabilities over seeds at each grid point (AM, the authors' ``avg_model``); each
    averaged row is divided by its sum so that rounding of the inputs does not accumulate.
    """
    trajectories = _check_stack(trajectories, "trajectories", "(S, G, N, C)")
    mean = trajectories.mean(axis=0, dtype=np.float64)
    return mean / mean.sum(axis=-1, keepdims=True)


def trajectory_distance_tensor(
    trajectories: np.ndarray,
    *,
    bc_floor: float = BC_FLOOR,
    device: str = "cpu",
    method: str = "auto",
    max_block_bytes: int = 256 * 2**20,
    progress_bar: bool = False,
) -> np.ndarray:
    """(R, G, N, C) reindexed trajectories -> (G, R, R) float64 d_B at equal grid index (A8).

    dists[t, i, j] = d_B(P_i(s_t), P_j(s_t)) on all samples, by
    ``lowdim.geometry.distances.bhattacharyya``
    (float32 kernel, float64 accumulation; ``method`` and ``max_block_bytes`` as there): exactly
    symmetric with a zero diagonal. Pass float32 trajectories to halve memory; the kernel
    computes in float32 either way.
    """
    trajectories = _check_stack(trajectories, "trajectories", "(R, G, N, C)")
    r, g = trajectories.shape[:2]
    out = np.empty((g, r, r))
    for t in tqdm(range(g), desc="trajectory distances", disable=not progress_bar):
        out[t] = bhattacharyya(trajectories[:, t], bc_floor=bc_floor, device=device,
                               method=method, max_block_bytes=max_block_bytes)
    return out


def check_distance_tensor(tensor: np.ndarray) -> np.ndarray:
    """Validate a (G, R, R) tensor of distances at equal progress; return it as float64."""
    tensor = np.asarray(tensor)
    if tensor.ndim != 3 or tensor.shape[1] != tensor.shape[2]:
        raise ValueError(
            f"tensor must have shape (G, R, R): G grid points, R trajectories, got {tensor.shape}"
        )
    if 0 in tensor.shape:
        raise ValueError(f"tensor is empty (shape {tensor.shape})")
    if not np.issubdtype(tensor.dtype, np.number) or np.iscomplexobj(tensor):
        raise ValueError(f"tensor must hold real numbers, got dtype {tensor.dtype}")
    tensor = tensor.astype(np.float64, copy=False)
    if not np.isfinite(tensor).all():
        raise ValueError("tensor contains NaN or infinite values")
    return tensor


def trajectory_distances(tensor: np.ndarray) -> np.ndarray:
    """(G, R, R) distances at equal progress -> (R, R) mean over progress (A8)."""
    return check_distance_tensor(tensor).mean(axis=0)


def riemann_length(trajectory: np.ndarray, *, bc_floor: float = BC_FLOOR) -> float:
    """(K, N, C) checkpoints in order -> sum_k 2 sqrt(d_B(P_k, P_k+1)) (A15, the ICML paper).

    Consecutive d_B use the intensive normalization and clamp of ``lowdim.geometry.distances``, but
    are computed here in float64 from the chord of unit square-root vectors (rows renormalized, as
    elsewhere in this module): BC_n = 1 - |a_n - b_n|^2 / 2, -log BC_n = -log1p(-|a_n - b_n|^2 / 2).
    Forming BC = sum_c sqrt(p q) directly would leave rounding of ~1e-16 per sample, i.e. a
    spurious sqrt(1e-16) = 1e-8 per step, and the float32 kernel ~1e-7: both dominate the tiny
    steps of a finely sampled path. For small steps 2 sqrt(d_B) ~ sqrt(2) x the RMS per-sample
    angle, so a finely sampled geodesic has length sqrt(2) sqrt(mean_n theta_n^2).
    """
    if not (0.0 < bc_floor < 1.0):
        raise ValueError(f"bc_floor must lie in the open interval (0, 1), got {bc_floor}")
    trajectory = check_probabilities(trajectory, "trajectory", 3)
    total = 0.0
    prev = unit_roots(trajectory[0])
    for k in range(1, trajectory.shape[0]):
        cur = unit_roots(trajectory[k])
        half_chord_sq = 0.5 * ((prev - cur) ** 2).sum(axis=-1)  # 1 - BC, exact near 0
        neg_log_bc = -np.log1p(-np.clip(half_chord_sq, 0.0, 1.0 - bc_floor))
        total += 2.0 * np.sqrt(neg_log_bc.mean())
        prev = cur
    return float(total)
