"""The vocabulary of products: the prediction spaces, a run's specification (its `run_id` names
the run's directory in the store), an InPCA embedding, the names of a tangent basis.

Plain records, free of torch and of the maths that makes them, so that every stage can read
products without importing the code that wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SPACES = ("train", "test")
# The precision of a run that names none: left out of its run id and its stored spec, so runs
# trained before runs had a precision keep their ids and stay complete. Likewise the learning-rate
# schedule (cosine, the paper's) and label smoothing (none): named only when they differ.
DEFAULT_PRECISION = "fp32"
DEFAULT_SCHEDULE = "cosine"
DEFAULT_LABEL_SMOOTHING = 0.0
# Fields left out of a run's id and stored spec while they hold these values.
OPTIONAL_DEFAULTS = {"precision": DEFAULT_PRECISION, "schedule": DEFAULT_SCHEDULE,
                     "label_smoothing": DEFAULT_LABEL_SMOOTHING}


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one training run. `lr` is the learning rate it trains with;
    `base_lr` the one at the reference batch size that scales to it (docs/study.md B3).
    `precision`: fp32, or fp16-mixed (float16 autocast with a dynamic loss scale; CUDA only).
    `schedule`: the learning-rate schedule, cosine or triangular-<peak epoch> (lowdim.config.grid);
    `label_smoothing`: the training loss's label smoothing (0: plain cross-entropy).
    """

    arch: str
    optimizer: str
    batch_size: int
    base_lr: float
    lr: float
    weight_decay: float
    augment: str
    init: str
    epochs: int
    seed: int
    model_size: Mapping[str, Any] = field(default_factory=dict)
    precision: str = DEFAULT_PRECISION
    schedule: str = DEFAULT_SCHEDULE
    label_smoothing: float = DEFAULT_LABEL_SMOOTHING

    @property
    def run_id(self) -> str:
        """A readable id that changes whenever a grid factor changes (the precision, schedule
        and label smoothing are named only when they are not the defaults: fp32, cosine, 0)."""
        precision = "" if self.precision == DEFAULT_PRECISION else f"_{self.precision}"
        schedule = "" if self.schedule == DEFAULT_SCHEDULE else f"_{self.schedule}"
        smoothing = ("" if self.label_smoothing == DEFAULT_LABEL_SMOOTHING
                     else f"_ls{self.label_smoothing:g}")
        return (
            f"{self.arch}_{self.optimizer}_bs{self.batch_size}_lr{self.lr:g}"
            f"_wd{self.weight_decay:g}_aug-{self.augment}_init-{self.init}"
            f"_ep{self.epochs}{precision}{schedule}{smoothing}_s{self.seed}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (model sizes as lists), the form stored in meta.json; precision,
        schedule and label smoothing only when they are not the defaults, as in the run id."""
        d = asdict(self)
        d["model_size"] = {k: list(v) if isinstance(v, tuple | list) else v
                           for k, v in self.model_size.items()}
        for name, default in OPTIONAL_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d


ZERO_EIG_RTOL = 1e-10


@dataclass(frozen=True, eq=False)
class Embedding:
    """InPCA result for M base points with k = min(n_components, M) kept components."""

    # (K,) eigenvalues of W sorted by |lambda| descending, both signs: all K = M from the dense
    # solver, the top K >= k from an iterative one
    eigenvalues: np.ndarray
    coords: np.ndarray  # (M, k) = U[:, :k] * sqrt(|lambda[:k]|)
    explained_stress: np.ndarray  # (K,) chi_k for k = 1..K
    frobenius_sq: float  # ||W||_F^2 from the whole matrix (whatever K is)
    column_means: np.ndarray  # (M,) column means of D, for out-of-sample projection
    grand_mean: float  # mean of all entries of D
    eigenvectors: np.ndarray  # (M, k) unit eigenvectors matching coords ((L, k) with landmarks)
    # (L,) rows of the landmark points whose matrix was diagonalized; empty: every point. With
    # landmarks, eigenvalues, stress, column_means and eigenvectors are the landmark matrix's.
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def signs(self) -> np.ndarray:
        """-> (k,) signature of the kept axes: +1 space-like, -1 time-like, 0 null."""
        lam = self.eigenvalues[: self.coords.shape[1]]
        return np.where(null_eigenvalues(lam, self.eigenvalues), 0.0, np.sign(lam))


def null_eigenvalues(lam: np.ndarray, all_lam: np.ndarray) -> np.ndarray:
    """(k,), (K,) -> (k,) bool: eigenvalues negligible against the largest |lambda|."""
    return np.abs(lam) <= ZERO_EIG_RTOL * np.abs(all_lam).max(initial=0.0)


BASIS_NAMES = ("P0", "P*", "start average", "end average")
