"""Intensive PCA (InPCA): embedding of a matrix of Bhattacharyya distances (PAPER.md A4, A5).

A pairwise matrix D of intensive Bhattacharyya distances is treated as a matrix of *squared*
distances. Double centring gives W = -1/2 L D L with L = I - 11^T/M; its eigenpairs, sorted by
|lambda| descending with both signs kept, give coordinates X = U sqrt(|Lambda|). Negative
eigenvalues are "time-like" axes of a Minkowski embedding: D_ij = sum_k sign(lambda_k)
(x_ik - x_jk)^2 when all components are kept and D has a zero diagonal.

Numerical choices:

- D is checked for symmetry (max |D - D^T| <= ``SYM_RTOL`` * max |D|) and then symmetrized exactly,
  so the dense symmetric solver sees the matrix it was given, not only one triangle of it.
- Eigenvectors get a deterministic sign: the entry of largest magnitude is positive.
- Components whose |lambda| <= ``ZERO_EIG_RTOL`` * max |lambda| (at least the constant direction
  that double centring always removes) are null: out-of-sample projection returns 0 on them instead
  of dividing by ~0.
- Explained stress follows the definition of A5 with ||W||_F^2 from the whole matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

SYM_RTOL = 1e-6
ZERO_EIG_RTOL = 1e-10


def _check_square(d: np.ndarray, name: str = "d") -> np.ndarray:
    """Validate an (M, M) finite, symmetric matrix; return it as float64, symmetrized exactly."""
    d = np.asarray(d)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"{name} must be a square (M, M) matrix, got shape {d.shape}")
    if d.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise ValueError(f"{name} must be a real numeric matrix, got dtype {d.dtype}")
    d = d.astype(np.float64)
    if not np.isfinite(d).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    asym = np.abs(d - d.T).max()
    scale = np.abs(d).max()
    if asym > SYM_RTOL * scale:
        raise ValueError(
            f"{name} must be symmetric: max |d - d.T| = {asym:.3g} exceeds {SYM_RTOL:g} x max |d| "
            f"= {SYM_RTOL * scale:.3g}"
        )
    return 0.5 * (d + d.T)


def double_centre(d: np.ndarray) -> np.ndarray:
    """(M, M) symmetric squared-distance-like matrix -> (M, M) W = -1/2 L D L, L = I - 11^T/M."""
    d = _check_square(d)
    rows = d.mean(axis=1, keepdims=True)
    cols = d.mean(axis=0, keepdims=True)
    return -0.5 * (d - rows - cols + d.mean())


@dataclass(frozen=True, eq=False)
class Embedding:
    """InPCA result for M base points with k = min(n_components, M) kept components."""

    eigenvalues: np.ndarray  # (K,) all eigenvalues of W, sorted by |lambda| descending, both signs
    coords: np.ndarray  # (M, k) = U[:, :k] * sqrt(|lambda[:k]|)
    explained_stress: np.ndarray  # (K,) chi_k for k = 1..K
    frobenius_sq: float  # ||W||_F^2 from the whole matrix
    column_means: np.ndarray  # (M,) column means of D, for out-of-sample projection
    grand_mean: float  # mean of all entries of D
    eigenvectors: np.ndarray  # (M, k) unit eigenvectors matching coords

    @property
    def signs(self) -> np.ndarray:
        """-> (k,) signature of the kept axes: +1 space-like, -1 time-like, 0 null."""
        lam = self.eigenvalues[: self.coords.shape[1]]
        return np.where(_null(lam, self.eigenvalues), 0.0, np.sign(lam))


def _null(lam: np.ndarray, all_lam: np.ndarray) -> np.ndarray:
    """(k,), (K,) -> (k,) bool: eigenvalues negligible against the largest |lambda|."""
    return np.abs(lam) <= ZERO_EIG_RTOL * np.abs(all_lam).max(initial=0.0)


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


def inpca(d: np.ndarray, n_components: int = 50) -> Embedding:
    """(M, M) symmetric distance matrix -> Embedding with k = min(n_components, M) components.

    Dense ``scipy.linalg.eigh`` of the whole centred matrix, so every eigenvalue is kept in
    ``.eigenvalues`` (for the spectrum and explained stress); n_components > M is clamped to M.
    """
    if isinstance(n_components, bool) or int(n_components) != n_components or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}")
    d = _check_square(d)
    m = d.shape[0]
    k = min(int(n_components), m)
    w = double_centre(d)
    lam, vec = scipy.linalg.eigh(w)
    order = np.argsort(-np.abs(lam), kind="stable")
    lam = lam[order]
    u = vec[:, order[:k]]
    # Deterministic sign per axis: the largest-magnitude entry of each eigenvector is positive.
    pivot = np.abs(u).argmax(axis=0)
    u = u * np.where(u[pivot, np.arange(k)] < 0, -1.0, 1.0)
    frob = float(np.einsum("ij,ij->", w, w))
    col_means = d.mean(axis=0)
    return Embedding(
        eigenvalues=lam,
        coords=u * np.sqrt(np.abs(lam[:k])),
        explained_stress=explained_stress(lam, frob),
        frobenius_sq=frob,
        column_means=col_means,
        grand_mean=float(col_means.mean()),
        eigenvectors=u,
    )


def project(d_rows: np.ndarray, embedding: Embedding) -> np.ndarray:
    """(R, M) or (M,) distances of new points to the M base points -> (R, k) or (k,) coordinates.

    Gower / Nystrom extension with per-row centring and signed scaling (A4):
    c = -1/2 (d - mean(d) - column_means + grand_mean), x = c U / (sign(lambda) sqrt|lambda|).
    Null components (|lambda| negligible) get coordinate 0.
    """
    d_rows = np.asarray(d_rows, dtype=np.float64)
    single = d_rows.ndim == 1
    rows = np.atleast_2d(d_rows)
    m = embedding.column_means.shape[0]
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
    null = _null(lam, embedding.eigenvalues)
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
