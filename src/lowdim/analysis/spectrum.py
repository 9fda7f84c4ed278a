"""The negative eigenvalues of an InPCA, for the embedding stage's metrics file (docs/study.md A4,
D7; Figure S1 draws them red).

InPCA diagonalizes W = -1/2 L D L, which is not positive semi-definite for Bhattacharyya
distances: a negative eigenvalue is a time-like axis. ``negative_eigenvalue_metrics`` counts them
among the eigenvalues the solver computed (all M from the dense solver, the top K by |lambda|
from an iterative one; with landmarks, the landmark matrix's) and gives the share of the stress
to explain, ||W||_F^2 = sum of all lambda^2, that they carry. An eigenvalue negligible against the
largest |lambda| (``lowdim.store.records.null_eigenvalues``, rounding noise of a null direction)
counts as neither sign.
"""

from __future__ import annotations

import numpy as np

from lowdim.store.records import null_eigenvalues

DIGITS = 6  # decimals of the metrics files


def negative_eigenvalue_metrics(eigenvalues: np.ndarray, frobenius_sq: float, *,
                                top: int = 50) -> dict[str, float | int]:
    """(K,) eigenvalues sorted by |lambda| descending (an Embedding's), ||W||_F^2 of the whole
    matrix -> {"computed_eigenvalues": K, "negative_eigenvalues": the negative ones (null ones
    left out), "negative_eigenvalues_top_<top>": those among the first `top`,
    "negative_stress_share": sum of their lambda^2 over ||W||_F^2 (0 for a zero W)}.

    With every eigenvalue computed the share is exact; with the top K only, it is the share of
    the computed negative ones (the rest lie in the tail, each smaller than the K-th |lambda|)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or not np.isfinite(lam).all():
        raise ValueError(f"eigenvalues must be a finite 1-D array, got shape {lam.shape}")
    if np.any(np.diff(np.abs(lam)) > 1e-12 * np.abs(lam).max(initial=0.0)):
        raise ValueError("eigenvalues must be sorted by |lambda|, largest first (as an "
                         "Embedding stores them)")
    if not np.isfinite(frobenius_sq) or frobenius_sq < 0:
        raise ValueError(f"frobenius_sq must be a finite number >= 0, got {frobenius_sq}")
    if isinstance(top, bool) or int(top) != top or top < 1:
        raise ValueError(f"top must be a whole number >= 1, got {top!r}")
    negative = (lam < 0) & ~null_eigenvalues(lam, lam)
    share = float(np.sum(lam[negative] ** 2) / frobenius_sq) if frobenius_sq > 0 else 0.0
    return {"computed_eigenvalues": int(lam.size), "negative_eigenvalues": int(negative.sum()),
            f"negative_eigenvalues_top_{int(top)}": int(negative[:int(top)].sum()),
            "negative_stress_share": round(share, DIGITS)}
