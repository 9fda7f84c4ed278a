"""Intensive PCA (InPCA): embedding of a matrix of Bhattacharyya distances (docs/study.md A4, A5).

A pairwise matrix D of intensive Bhattacharyya distances is treated as a matrix of *squared*
distances. Double centring gives W = -1/2 L D L with L = I - 11^T/M; its eigenpairs, sorted by
|lambda| descending with both signs kept, give coordinates X = U sqrt(|Lambda|). Negative
eigenvalues are "time-like" axes of a Minkowski embedding: D_ij = sum_k sign(lambda_k)
(x_ik - x_jk)^2 when all components are kept and D has a zero diagonal.

Numerical choices:

- D is checked for symmetry (max |D - D^T| <= ``eigen.SYM_RTOL`` * max |D|) and then symmetrized
  exactly, so the solvers see the matrix they were given, not only one triangle of it (the
  iterative ones multiply by (D + D^T)/2 unless D is exactly symmetric).
- Eigenvectors get a deterministic sign: the entry of largest magnitude is positive.
- Components whose |lambda| <= ``ZERO_EIG_RTOL`` * max |lambda| (at least the constant direction
  that double centring always removes) are null: out-of-sample projection returns 0 on them instead
  of dividing by ~0.
- Explained stress follows the definition of A5 with ||W||_F^2 from the whole matrix.
- Solvers (``solver``): ``dense`` is ``scipy.linalg.eigh`` of the formed W (every eigenvalue; the
  oracle of the tests); ``randomized`` (randomized block Krylov) and ``lanczos`` (ARPACK) compute
  only the top eigenpairs by |lambda| and never form W (``lowdim.geometry.eigen``): D is read in
  blocks, so a memory-mapped D (``np.load(path, mmap_mode="r")``) keeps memory bounded, and
  ||W||_F^2 comes from one streaming pass over D, so the explained stress needs no full spectrum.
  ``auto`` is dense up to ``AUTO_DENSE_MAX`` points (or when a quarter of the spectrum or more is
  asked for) and randomized above.
- Scale. D may be an ``lowdim.store.products.NpyFile`` (read in row slabs, nothing kept mapped). The
  distances stage saves the centring statistics beside D (``stats=``), so the iterative solvers
  skip their own pass over D. ``device="cuda"`` runs the products with D on a GPU
  (``lowdim.geometry.eigen.DeviceMatrix``); the host is the default. Memory: O(M x basis) vectors
  plus one slab of D; W is never formed.
- Landmarks (``landmarks=L``), for M too large to embed whole: InPCA of the L x L submatrix of
  L evenly spaced points, then every other point placed by the out-of-sample formula
  (``project``, the Gower / Nystrom extension of classical MDS with InPCA's signed scaling).
  Landmark points keep their own coordinates exactly. Eigenvalues, explained stress, column
  means and eigenvectors are then those of the landmark matrix (eigenvalues scale with L, not M;
  the stress is the landmark matrix's, which overstates what the coordinates achieve).
  ``landmark_inpca`` builds the same embedding from the (M, L) distances to the landmarks alone
  (``distances.landmarks``: the whole matrix is never computed), and ``achieved_stress`` gives
  the stress the coordinates achieve, exactly from the whole D or estimated from the distances
  among held-out points (``holdout_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lowdim.geometry.eigen import (
    DEFAULT_BLOCK_BYTES,
    DEFAULT_TOL,
    CentringStats,
    asymmetry_message,
    check_matrix,
    dense_eigenpairs,
    slabs,
    streaming_stats,
    top_eigenpairs,
)
from lowdim.store.records import Embedding, null_eigenvalues

SOLVERS = ("auto", "dense", "lanczos", "randomized")
AUTO_DENSE_MAX = 2000  # auto: dense eigh up to this many points (a second or two on 2 cores)


def _check_square(d: np.ndarray, name: str = "d") -> np.ndarray:
    """Validate an (M, M) finite, symmetric matrix; return it as float64, symmetrized exactly."""
    check_matrix(d, name)
    d = np.asarray(d, dtype=np.float64)
    if not np.isfinite(d).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    message = asymmetry_message(name, float(np.abs(d - d.T).max()), float(np.abs(d).max()))
    if message:
        raise ValueError(message)
    return 0.5 * (d + d.T)


def double_centre(d: np.ndarray) -> np.ndarray:
    """(M, M) symmetric squared-distance-like matrix -> (M, M) W = -1/2 L D L, L = I - 11^T/M."""
    d = _check_square(d)
    rows = d.mean(axis=1, keepdims=True)
    cols = d.mean(axis=0, keepdims=True)
    return -0.5 * (d - rows - cols + d.mean())


def explained_stress(eigenvalues: np.ndarray, frobenius_sq: float) -> np.ndarray:
    """(K,) eigenvalues in the order given, ||W||_F^2 -> (K,) chi_k = 1 - sqrt(1 - cum lambda^2/F).

    Pass eigenvalues sorted by |lambda| descending (both signs) for the usual meaning; K may be
    fewer than M (e.g. a partial eigensolve) as long as ``frobenius_sq`` comes from the whole W.
    A zero matrix (F = 0) has nothing left to explain: chi_k = 1.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or not np.isfinite(lam).all():
        raise ValueError(f"eigenvalues must be a finite 1-D array, got shape {lam.shape}")
    if not np.isfinite(frobenius_sq) or frobenius_sq < 0:
        raise ValueError(f"frobenius_sq must be a finite number >= 0, got {frobenius_sq}")
    cum = np.cumsum(lam**2)
    if frobenius_sq == 0:
        return np.ones_like(lam)
    if lam.size and cum[-1] > frobenius_sq * (1 + 1e-6):
        raise ValueError(
            f"sum of squared eigenvalues ({cum[-1]:.6g}) exceeds frobenius_sq "
            f"({frobenius_sq:.6g}): pass ||W||_F^2 (the sum of squared entries of the centred "
            "matrix), not its square root"
        )
    # Rounding can push the ratio a hair above 1: clip at 0 inside the sqrt.
    return 1.0 - np.sqrt(np.clip(1.0 - cum / frobenius_sq, 0.0, None))


def inpca(
    d: np.ndarray,
    n_components: int = 50,
    *,
    solver: str = "auto",
    n_eigenvalues: int | None = None,
    tol: float = DEFAULT_TOL,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    stats: CentringStats | None = None,
    landmarks: int | np.ndarray | None = None,
    device: str | None = None,
    block_size: int | None = None,
) -> Embedding:
    """(M, M) symmetric distance matrix -> Embedding with k = min(n_components, M) components.

    ``solver``: one of ``SOLVERS`` (see the module docstring). The dense solver keeps every
    eigenvalue in ``.eigenvalues``; the iterative ones (``lanczos``, ``randomized``) compute the
    top ``n_eigenvalues`` (default and minimum: k) by |lambda| to residual ``tol`` and read D in
    blocks of ``block_bytes``, so D may be memory-mapped or an ``lowdim.store.products.NpyFile``.
    n_components > M is clamped to M. ``stats``: D's centring statistics when already known
    (saved by the distances stage), which saves the iterative solvers a pass over D.
    ``landmarks``: None (every point), a count L or sorted row indices: embed the landmark
    submatrix and project the other points (module docstring). ``device``: None or "cpu"
    (numpy on the host), "cuda", or "auto" (CUDA when available) for the iterative solvers'
    products with D; ``block_size``: vectors per randomized product.
    """
    if not isinstance(d, np.ndarray) and not getattr(d, "blockwise", False):
        d = np.asarray(d)  # np.memmap and NpyFile stay on disk
    device = _product_device(device)
    if landmarks is not None:
        check_matrix(d)
        rows = landmark_rows(d.shape[0], landmarks)
        if len(rows) < d.shape[0]:
            return _landmark_inpca(d, rows, n_components, solver=solver,
                                   n_eigenvalues=n_eigenvalues, tol=tol, block_bytes=block_bytes,
                                   device=device, block_size=block_size)
    k, solver = _check_options(d, n_components, solver, n_eigenvalues)
    m = d.shape[0]
    if solver == "dense":
        return _dense_inpca(d, k)
    count = max(k, n_eigenvalues or k)
    if count >= m:
        raise ValueError(
            f"solver {solver!r} computes fewer than M = {m} eigenpairs, got n_components / "
            f"n_eigenvalues = {count}: ask for fewer or use solver='dense'"
        )
    if stats is None:
        stats = streaming_stats(d, block_bytes)
    elif np.shape(stats.row_means) != (m,):
        raise ValueError(f"stats describe a matrix of {np.shape(stats.row_means)[0]} points, d has "
                         f"{m}: pass the statistics saved with this matrix")
    lam, u = top_eigenpairs(d, count, stats, solver=solver, tol=tol, block_bytes=block_bytes,
                            device=device, block_size=block_size)
    return _embedding(lam, u[:, :k], stats.frobenius_sq, stats.row_means, stats.grand_mean)


def _product_device(device: str | None) -> str | None:
    """None (numpy on the host) for None / "cpu"; "auto": CUDA when available, else None."""
    if device is None or device == "cpu":
        return None
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else None
    return device


def memory_estimate(m: int, n_components: int, *, n_eigenvalues: int | None = None,
                    solver: str = "auto", landmarks: int | None = None,
                    block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Bytes ``inpca`` needs for M points, besides the interpreter (one slab of D included)."""
    points = m if landmarks is None else min(m, int(landmarks))
    k = min(n_components, points)
    count = max(k, n_eigenvalues or k)
    dense = solver == "dense" or (solver == "auto"
                                  and (points <= AUTO_DENSE_MAX or 4 * count >= points))
    if dense:  # D, W and the eigenvectors
        work = 3 * 8 * points * points
    else:  # basis, its image, Ritz vectors (eigen.block_krylov_eigenpairs), the landmark matrix
        b = min(max(8, count // 3), 32)
        basis = min(points, max(3 * count + 6 * b, count + max(b, count // 2) + b))
        work = 8 * points * (2 * basis + 4 * count) + 8 * basis * basis
        if points < m:
            work += 8 * points * points
    return int(work + block_bytes + 8 * m * (k + 4))


def landmark_rows(m: int, landmarks: int | np.ndarray) -> np.ndarray:
    """M, a count L or row indices -> (L,) sorted landmark rows; a count gives L evenly spaced
    rows, the first and the last included (all M rows when L >= M)."""
    if isinstance(landmarks, (int, np.integer)) and not isinstance(landmarks, bool):
        if landmarks < 2:
            raise ValueError(f"landmarks must be at least 2 points, got {landmarks}")
        count = min(int(landmarks), m)
        return np.unique(np.rint(np.linspace(0, m - 1, count)).astype(np.int64))
    rows = np.asarray(landmarks)
    if (rows.ndim != 1 or rows.size < 2 or not np.issubdtype(rows.dtype, np.integer)
            or rows[0] < 0 or rows[-1] >= m or np.any(np.diff(rows) <= 0)):
        raise ValueError(f"landmarks must be a count >= 2 or sorted, unique row indices in "
                         f"[0, {m - 1}], got {landmarks!r}")
    return rows.astype(np.int64)


def _landmark_inpca(d: np.ndarray, rows: np.ndarray, n_components: int, *, solver: str,
                    n_eigenvalues: int | None, tol: float, block_bytes: int, device: str | None,
                    block_size: int | None) -> Embedding:
    """InPCA of D[rows, rows], then every point projected from its distances to the landmarks.

    Reads D twice in row slabs of ``block_bytes`` (the landmark rows, then every row); memory:
    the (L, L) landmark matrix plus one slab.
    """
    check_matrix(d)
    m, count = d.shape[0], len(rows)
    step = max(1, block_bytes // (8 * m))  # whole rows of D per read
    sub = np.empty((count, count))
    for start in range(0, count, step):
        part = slice(start, min(start + step, count))
        sub[part] = np.asarray(d[rows[part]], dtype=np.float64)[:, rows]
    columns = ((part, np.asarray(d[part], dtype=np.float64)[:, rows])
               for part in slabs(m, block_bytes))
    return _landmark_embedding(sub, columns, m, rows, n_components, solver=solver,
                               n_eigenvalues=n_eigenvalues, tol=tol, block_bytes=block_bytes,
                               device=device, block_size=block_size)


def _landmark_embedding(sub: np.ndarray, columns, m: int, rows: np.ndarray, n_components: int,
                        **options) -> Embedding:
    """InPCA of the (L, L) landmark matrix `sub`, then the points of each (part, (R, L) distances
    to the landmarks) of `columns` projected; the landmarks keep their own coordinates."""
    base = inpca(sub, n_components, **options)
    del sub
    coords = np.empty((m, base.coords.shape[1]))
    for part, block in columns:
        coords[part] = project(block, base)
    coords[rows] = base.coords  # exactly their own coordinates, not the projection's rounding
    return Embedding(eigenvalues=base.eigenvalues, coords=coords,
                     explained_stress=base.explained_stress, frobenius_sq=base.frobenius_sq,
                     column_means=base.column_means, grand_mean=base.grand_mean,
                     eigenvectors=base.eigenvectors, landmarks=rows)


def landmark_inpca(columns: np.ndarray, rows: np.ndarray, n_components: int = 50, *,
                   solver: str = "auto", n_eigenvalues: int | None = None,
                   tol: float = DEFAULT_TOL, block_bytes: int = DEFAULT_BLOCK_BYTES,
                   device: str | None = None, block_size: int | None = None) -> Embedding:
    """(M, L) distances of every point to L landmarks, (L,) their sorted rows -> Embedding.

    ``columns`` is D[:, rows] (by symmetry the landmark rows of D, transposed: what the
    distances stage writes under ``distances.landmarks``); it may be an ``NpyFile`` or
    memory-mapped. InPCA of the (L, L) block columns[rows], then every point projected from
    its row of `columns`: the same embedding as ``inpca(D, landmarks=rows)`` without the
    M x M matrix. Reads the L landmark rows, then every row once, in slabs of ``block_bytes``;
    memory: the (L, L) block, one slab and the (M, k) coordinates. The stress of the result
    is the landmark matrix's: ``achieved_stress`` measures what the coordinates achieve.
    """
    shape = np.shape(columns)
    rows = np.asarray(rows)
    if len(shape) != 2 or shape[0] < 2 or shape[1] < 2:
        raise ValueError(f"columns must be an (M, L) matrix of distances to L >= 2 landmarks, "
                         f"got shape {shape}")
    m, count = shape
    if rows.shape != (count,):
        raise ValueError(f"rows must give the {count} landmark rows of the {count} columns, got "
                         f"shape {rows.shape}")
    rows = landmark_rows(m, rows)  # sorted, unique, in range
    sub = np.asarray(columns[rows], dtype=np.float64)
    if np.any(np.diag(sub) != 0):
        raise ValueError("columns[rows] must have a zero diagonal (a landmark's distance to "
                         "itself): pass D[:, rows] with the rows it was computed for")
    step = max(1, block_bytes // (8 * count))
    parts = (slice(i, min(i + step, m)) for i in range(0, m, step))
    blocks = ((part, np.asarray(columns[part], dtype=np.float64)) for part in parts)
    return _landmark_embedding(sub, blocks, m, rows, n_components, solver=solver,
                               n_eigenvalues=n_eigenvalues, tol=tol, block_bytes=block_bytes,
                               device=_product_device(device), block_size=block_size)


def holdout_rows(m: int, landmarks: np.ndarray, count: int) -> np.ndarray:
    """(V,) sorted rows of `count` points evenly spaced among the M - L non-landmark rows (all
    of them when fewer): the held-out points of ``achieved_stress``."""
    rest = np.setdiff1d(np.arange(m), np.asarray(landmarks))
    if count < 2 or rest.size < 2:
        raise ValueError(f"need at least 2 held-out points: count = {count}, {rest.size} "
                         "points are not landmarks; lower the landmarks or raise the count")
    if count >= rest.size:
        return rest.astype(np.int64)
    return rest[np.unique(np.rint(np.linspace(0, rest.size - 1, count)).astype(np.int64))]


def achieved_stress(d: np.ndarray, coords: np.ndarray, signs: np.ndarray,
                    block_bytes: int = DEFAULT_BLOCK_BYTES,
                    stats: CentringStats | None = None) -> np.ndarray:
    """(P, P) distances among P points, their (P, k) coordinates, (k,) axis signs -> (k,) chi.

    The explained stress the coordinates achieve, cumulatively over the first k axes:
    chi_k = 1 - ||W - G_k||_F / ||W||_F with W = -1/2 J D J (J centres over these P points)
    and G_k = X_k S_k X_k^T the signed Gram matrix of the first k centred coordinates (the
    double centring of their Minkowski distances). For the exact InPCA of D it equals
    ``explained_stress``; for a landmark embedding it is lower than the landmark matrix's.
    Pass the whole M x M D for the exact value, or the (V, V) distances among held-out points
    (``holdout_rows``) and their coordinates for an estimate that never needs the whole D.

    One pass over D in row slabs (D may be an ``NpyFile`` or memory-mapped), and one more for
    its centring statistics unless ``stats`` gives them: with T = X^T W X and Q = X^T X,
    ||W - G_k||^2 = ||W||^2 - 2 sum_{a<=k} s_a T_aa + sum_{a,b<=k} s_a s_b Q_ab^2; memory O(P k).
    """
    check_matrix(d)
    x = np.asarray(coords, dtype=np.float64)
    s = np.asarray(signs, dtype=np.float64)
    p = d.shape[0]
    if x.ndim != 2 or x.shape[0] != p or s.shape != (x.shape[1],):
        raise ValueError(f"coords must be ({p}, k) for the {p} points of d and signs (k,), got "
                         f"{x.shape} and {s.shape}")
    if not np.isfinite(x).all():
        raise ValueError("coords contains NaN or infinite values")
    if stats is None:
        stats = streaming_stats(d, block_bytes)
    elif np.shape(stats.row_means) != (p,):
        raise ValueError(f"stats describe {np.shape(stats.row_means)[0]} points, d has {p}")
    x = x - x.mean(axis=0)
    dx = np.empty_like(x)  # D X, slab by slab
    for part in slabs(p, block_bytes):
        dx[part] = np.asarray(d[part], dtype=np.float64) @ x
    # W X = -1/2 (D X - 1 r^T X) for centred X (the other centring terms vanish)
    wx = -0.5 * (dx - stats.row_means @ x)
    trace = np.cumsum(s * np.einsum("ia,ia->a", x, wx))
    q = (x.T @ x) ** 2 * np.outer(s, s)
    gram = np.diagonal(np.cumsum(np.cumsum(q, axis=0), axis=1))
    if stats.frobenius_sq == 0:
        return np.ones(x.shape[1])
    left = np.clip(stats.frobenius_sq - 2 * trace + gram, 0.0, None)
    return 1.0 - np.sqrt(left / stats.frobenius_sq)


def _check_options(d: np.ndarray, n_components: int, solver: str,
                   n_eigenvalues: int | None) -> tuple[int, str]:
    """Validate the arguments of ``inpca``; return k and the solver that ``auto`` stands for."""
    for name, value in (("n_components", n_components), ("n_eigenvalues", n_eigenvalues)):
        if value is None and name == "n_eigenvalues":
            continue
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver = {solver!r} is not known: use one of {', '.join(SOLVERS)}")
    check_matrix(d)
    m = d.shape[0]
    k = min(int(n_components), m)
    if solver == "auto":
        wanted = max(k, n_eigenvalues or k)
        solver = "dense" if m <= AUTO_DENSE_MAX or 4 * wanted >= m else "randomized"
    return k, solver


def _dense_inpca(d: np.ndarray, k: int) -> Embedding:
    """(M, M) D, k -> Embedding from the dense eigendecomposition of the formed W."""
    d = _check_square(d)
    w = double_centre(d)
    lam, vec = dense_eigenpairs(w)
    frob = float(np.einsum("ij,ij->", w, w))
    col_means = d.mean(axis=0)
    return _embedding(lam, vec[:, :k], frob, col_means, float(col_means.mean()))


def _embedding(lam: np.ndarray, u: np.ndarray, frob: float, col_means: np.ndarray,
               grand_mean: float) -> Embedding:
    """(K,) eigenvalues by |lambda|, (M, k) their leading eigenvectors -> Embedding."""
    k = u.shape[1]
    # Deterministic sign per axis: the largest-magnitude entry of each eigenvector is positive.
    pivot = np.abs(u).argmax(axis=0)
    u = u * np.where(u[pivot, np.arange(k)] < 0, -1.0, 1.0)
    return Embedding(
        eigenvalues=lam,
        coords=u * np.sqrt(np.abs(lam[:k])),
        explained_stress=explained_stress(lam, frob),
        frobenius_sq=frob,
        column_means=col_means,
        grand_mean=grand_mean,
        eigenvectors=u,
    )


def project(d_rows: np.ndarray, embedding: Embedding) -> np.ndarray:
    """(R, M) or (M,) distances of new points to the M base points -> (R, k) or (k,) coordinates.

    A landmark embedding takes the distances to its L landmarks, or to all of its points (the
    landmark columns are used).

    Gower / Nystrom extension with per-row centring and signed scaling (A4):
    c = -1/2 (d - mean(d) - column_means + grand_mean), x = c U / (sign(lambda) sqrt|lambda|).
    Null components (|lambda| negligible) get coordinate 0.
    """
    d_rows = np.asarray(d_rows, dtype=np.float64)
    single = d_rows.ndim == 1
    rows = np.atleast_2d(d_rows)
    m = embedding.column_means.shape[0]
    points = embedding.coords.shape[0]
    if embedding.landmarks.size and rows.ndim == 2 and rows.shape[1] == points != m:
        rows = rows[:, embedding.landmarks]  # distances to every point: keep the landmarks'
    if rows.ndim != 2 or rows.shape[1] != m:
        raise ValueError(
            f"d_rows must have shape (R, {m}) or ({m},): distances to the {m} base points, "
            f"got {d_rows.shape}"
        )
    if not np.isfinite(rows).all():
        raise ValueError("d_rows contains NaN or infinite values")
    c = -0.5 * (
        rows - rows.mean(axis=1, keepdims=True) - embedding.column_means + embedding.grand_mean
    )
    k = embedding.coords.shape[1]
    lam = embedding.eigenvalues[:k]
    null = null_eigenvalues(lam, embedding.eigenvalues)
    scale = np.where(null, 1.0, np.sign(lam) * np.sqrt(np.abs(lam)))
    x = np.where(null, 0.0, (c @ embedding.eigenvectors) / scale)
    return x[0] if single else x


def minkowski_sq_distances(coords: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """(M, k) coordinates, (k,) signs in {-1, 0, +1} -> (M, M) sum_k sign_k (x_ik - x_jk)^2."""
    x = np.asarray(coords, dtype=np.float64)
    s = np.asarray(signs, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"coords must be a 2-D (M, k) array, got shape {x.shape}")
    if s.shape != (x.shape[1],):
        raise ValueError(f"signs must have shape ({x.shape[1]},) to match coords, got {s.shape}")
    if not np.isin(s, (-1.0, 0.0, 1.0)).all():
        raise ValueError("signs must contain only -1, 0 or +1 (e.g. np.sign of the eigenvalues)")
    if not np.isfinite(x).all():
        raise ValueError("coords contains NaN or infinite values")
    # Gram form avoids an (M, M, k) temporary.
    gram = (x * s) @ x.T
    norms = np.diag(gram)
    out = norms[:, None] + norms[None, :] - 2.0 * gram
    out = 0.5 * (out + out.T)
    np.fill_diagonal(out, 0.0)
    return out


def stress_metrics(emb: Embedding, dims: Sequence[int]) -> dict[str, float]:
    """The metrics-file entry of one space: explained stress at each k in `dims` that exists."""
    available = len(emb.explained_stress)
    return {f"explained_stress_{k}": round(float(emb.explained_stress[k - 1]), 6)
            for k in dims if k <= available}


def check_stored_landmarks(stored: np.ndarray, m: int, landmarks: int | None) -> None:
    """Stop unless the distances stage stored as many landmark rows as ``embedding.landmarks``
    names (``landmark_rows(m, landmarks)`` has; the rows themselves may be evenly spaced or
    chosen by ``distances.landmark_choice``): the two settings must agree."""
    stored = np.asarray(stored)
    if landmarks is not None and stored.size == landmark_rows(m, landmarks).size:
        return
    raise ValueError(
        f"the distances hold the distances to {stored.size} landmarks only "
        f"(distances.landmarks = {stored.size}) but embedding.landmarks = {landmarks}: set "
        f"embedding.landmarks: {stored.size} (the same rows), or distances.landmarks: null and "
        "run the distances stage again for the whole matrix")


def landmark_metrics(emb: Embedding, achieved: np.ndarray, dims: Sequence[int],
                     holdout: int) -> dict[str, float]:
    """The metrics-file entry of a landmark embedding: ``explained_stress_<k>`` is the stress
    its coordinates achieve (`achieved`: exact from the whole matrix when ``holdout`` is 0,
    else estimated on that many held-out points), ``landmark_matrix_stress_<k>`` the landmark
    matrix's own (optimistic), ``landmarks`` L and ``stress_holdout_points`` V (0: exact)."""
    out = {f"explained_stress_{k}": round(float(achieved[k - 1]), 6)
           for k in dims if k <= len(achieved)}
    out |= {f"landmark_matrix_stress_{k}": value
            for k, value in ((int(key.rsplit("_", 1)[1]), v)
                             for key, v in stress_metrics(emb, dims).items())}
    return out | {"landmarks": int(emb.landmarks.size), "stress_holdout_points": int(holdout)}
