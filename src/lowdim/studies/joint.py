"""The joint train+test embedding (docs/study.md D8) and the Euclidean comparison (D20).

**Joint embedding.** docs/study.md leaves the authors' method unknown. A train-space point and a
test-space point of the same model share no samples, so a distance between them is not defined.
Here the joint embedding has one point per model, described by its predictions on the union of
both evaluation subsets. The intensive Bhattacharyya distance is a mean over samples, so on the
union it is exactly the sample-weighted mean of the two spaces' distances:

    D_joint = (n_train D_train + n_test D_test) / (n_train + n_test),

with n the numbers of samples each stored matrix actually used (every `sample_step`-th one).

**Euclidean comparison.** The same embeddings built from the mean per-sample Euclidean distance
of the probability vectors (`lowdim.geometry.euclidean`, fed to InPCA as the authors did) on the
same sample subset, for each space and jointly. Every InPCA uses the `embedding` settings.

**Scale.** Nothing of size M x M is held in memory: the joint Bhattacharyya matrix is a
`WeightedSum` of the stored matrices, read slab by slab by the solver; each Euclidean matrix is
written block by block into a scratch `.npy` (``8 M^2`` bytes of disk per space, in a temporary
directory under `scratch`, default the system's: set TMPDIR to a disk with room) and its joint
matrix is again a `WeightedSum`. Memory: the solver's slab and its M x basis vectors, and one
block of the Euclidean computation. The dense solver (small M) forms each matrix whole
(`lowdim.studies.common`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.studies.joint import JointConfig
from lowdim.geometry.euclidean import euclidean_distances
from lowdim.geometry.inpca import stress_metrics
from lowdim.store.arrays import NpyFile, check_disk_space
from lowdim.store.lazy import Submatrix
from lowdim.store.records import SPACES, Embedding
from lowdim.studies.common import StudyResult, WeightedSum, check_spaces, embed


def check_scratch_space(probs: Mapping[str, np.ndarray], scratch: str | Path | None) -> None:
    """Stop (OSError) before any Euclidean matrix is computed when the scratch directory's disk
    cannot hold both spaces' (8 M^2 bytes each): at M = 30,000 that is 14.4 GB, which filled
    a system temporary directory half way through the stage once."""
    where = Path(tempfile.gettempdir() if scratch is None else scratch)
    needed = sum(8 * probs[s].shape[0] ** 2 for s in SPACES)
    check_disk_space(needed, where, "the joint study's Euclidean matrices (scratch, removed "
                     "after the stage)", "or point TMPDIR at a disk with room (scratch: None "
                     "means the system's temporary directory), or disable studies.joint.")


def samples_used(num_samples: int, sample_step: int) -> int:
    """Number of samples a matrix computed with every `sample_step`-th sample averaged over."""
    if num_samples < 1 or sample_step < 1:
        raise ValueError(f"need num_samples >= 1 and sample_step >= 1, got {num_samples}, "
                         f"{sample_step}")
    return len(range(0, int(num_samples), int(sample_step)))


def sample_weighted_distances(matrices: Mapping[str, np.ndarray],
                              samples: Mapping[str, int]) -> WeightedSum:
    """{space: (M, M)}, {space: n} -> (M, M) sum_s n_s D_s / sum_s n_s: the distance on the union
    of the spaces' samples (see the module docstring), a `WeightedSum` read block by block
    (``np.asarray`` of it: the whole matrix)."""
    if set(matrices) != set(samples) or not matrices:
        raise ValueError(f"matrices and samples must name the same spaces, got {sorted(matrices)} "
                         f"and {sorted(samples)}")
    if any(n < 1 for n in samples.values()):
        raise ValueError(f"sample counts must be >= 1, got {dict(samples)}")
    return WeightedSum(matrices, samples)


def run_joint(study: JointConfig, distance_settings: DistancesConfig,
              embedding_settings: EmbeddingConfig, probs: Mapping[str, np.ndarray],
              distances: Mapping[str, np.ndarray],
              embeddings: Mapping[str, Embedding], *,
              scratch: str | Path | None = None) -> StudyResult:
    """The joint and Euclidean embeddings from per space (M, N, C) `probs`, the distances stage's
    (M, M) matrices (arrays, memory maps or `NpyFile`s) and the embedding stage's `embeddings`
    (compared in the metrics). `scratch`: where the Euclidean matrices are written meanwhile (a
    temporary directory made there and removed; None: the system's temporary directory).

    With `studies.joint.enabled` false nothing is computed or read (pass empty mappings): no
    products, metrics {"enabled": false}. Products: `bhattacharyya_joint`, `euclidean_joint`,
    `euclidean_<space>` (InPCA, rows in index order); metrics: `enabled`, `samples` (per space),
    `explained_stress` of every embedding (the stored Bhattacharyya ones included); summary: the
    explained stress.
    """
    metrics: dict = {"enabled": study.enabled}
    if not study.enabled:
        return StudyResult(products={}, metrics=metrics)
    for name, values in (("probs", probs), ("distances", distances), ("embeddings", embeddings)):
        check_spaces(name, values, SPACES)
    step = distance_settings.sample_step
    used = {s: samples_used(probs[s].shape[1], step) for s in SPACES}
    check_scratch_space(probs, scratch)
    with tempfile.TemporaryDirectory(prefix="lowdim-joint-", dir=scratch) as tmp:
        euclidean = {}
        for s in SPACES:
            m = probs[s].shape[0]
            stored = NpyFile.create(Path(tmp) / f"euclidean_{s}.npy", (m, m), np.float64)
            euclidean[s] = Submatrix(euclidean_distances(probs[s], sample_step=step, out=stored))
        products = {
            "bhattacharyya_joint": embed(sample_weighted_distances(distances, used),
                                         embedding_settings),
            "euclidean_joint": embed(sample_weighted_distances(euclidean, used),
                                     embedding_settings),
            **{f"euclidean_{s}": embed(euclidean[s], embedding_settings) for s in SPACES}}
    compare = {f"bhattacharyya_{s}": embeddings[s] for s in SPACES} | products
    metrics["samples"] = used
    metrics["explained_stress"] = {name: stress_metrics(emb, embedding_settings.stress_dims)
                                   for name, emb in compare.items()}
    return StudyResult(products=products, metrics=metrics,
                       summary=pd.DataFrame(metrics["explained_stress"]).T)
