"""What the special studies share: their result, the configured distance and InPCA settings, and
the joint matrix of a base set plus new points.

Every study computes its distances and embeddings with the settings of the `distances` and
`embedding` sections (method, bc_floor, sample_step, max_block_mib; solver, n_components), so a
study's numbers follow the same settings as the distances and embedding stages. As in the
distances stage, distances run on CUDA when it is available, else on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.geometry.distances import DistanceSettings
from lowdim.geometry.inpca import inpca
from lowdim.store.records import Embedding


@dataclass(frozen=True)
class StudyResult:
    """What ``run_<study>`` returns: products to save (`store.save_products`: tables, arrays,
    embeddings by name), JSON-ready metrics (metrics/<study>.json) and a table to show."""

    products: dict[str, Any]
    metrics: dict[str, Any]
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)


def distance_device() -> str:
    """The device distances run on: CUDA when available, else the CPU (as the distances stage)."""
    from lowdim.device import resolve_device

    return str(resolve_device("auto"))


def distance_options(settings: DistancesConfig, device: str | None = None, *,
                     all_samples: bool = False) -> DistanceSettings:
    """The `DistanceSettings` of the `distances` section on `device` (None: `distance_device()`).

    ``all_samples=True`` sets ``sample_step`` to 1, for distances defined on every sample (the
    convergence analysis at equal progress, A8). Kernel-level functions take its keywords:
    ``bhattacharyya(p, **options.kwargs())``.
    """
    device = distance_device() if device is None else device
    options = DistanceSettings.from_config(settings, device)
    return options.all_samples() if all_samples else options


def embed(d: np.ndarray, settings: EmbeddingConfig, n_components: int | None = None) -> Embedding:
    """(M, M) distances -> InPCA with the configured solver.

    Default: ``embedding.n_components`` axes and, as the embedding stage, the eigenvalues that the
    explained stress at ``embedding.stress_dims`` needs. An explicit ``n_components`` (a study's
    own number of axes) asks for those axes only.
    """
    if n_components is None:
        k = settings.n_components
        return inpca(d, k, solver=settings.solver, n_eigenvalues=max(k, *settings.stress_dims))
    return inpca(d, n_components, solver=settings.solver)


def joint_distance_matrix(d_base: np.ndarray, cross: np.ndarray, d_new: np.ndarray) -> np.ndarray:
    """(M, M) base, (R, M) new-to-base, (R, R) new -> (M + R, M + R), base rows first."""
    d_base, cross, d_new = (np.asarray(x, dtype=np.float64) for x in (d_base, cross, d_new))
    m, r = d_base.shape[0], d_new.shape[0]
    if d_base.shape != (m, m) or d_new.shape != (r, r) or cross.shape != (r, m):
        raise ValueError(f"need d_base (M, M), cross (R, M), d_new (R, R); got {d_base.shape}, "
                         f"{cross.shape}, {d_new.shape}")
    return np.block([[d_base, cross.T], [cross, d_new]])


def check_spaces(name: str, values: Mapping[str, Any], spaces: tuple[str, ...]) -> None:
    """Raise ValueError unless `values` has one entry per prediction space."""
    if set(values) != set(spaces):
        raise ValueError(f"{name} must hold one entry per prediction space "
                         f"({', '.join(spaces)}), got {sorted(values)}")
