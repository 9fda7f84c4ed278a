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
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.studies.joint import JointConfig
from lowdim.geometry.euclidean import euclidean_distances
from lowdim.geometry.inpca import stress_metrics
from lowdim.store.records import SPACES, Embedding
from lowdim.studies.common import StudyResult, check_spaces, embed


def samples_used(num_samples: int, sample_step: int) -> int:
    """Number of samples a matrix computed with every `sample_step`-th sample averaged over."""
    if num_samples < 1 or sample_step < 1:
        raise ValueError(f"need num_samples >= 1 and sample_step >= 1, got {num_samples}, "
                         f"{sample_step}")
    return len(range(0, int(num_samples), int(sample_step)))


def sample_weighted_distances(matrices: Mapping[str, np.ndarray],
                              samples: Mapping[str, int]) -> np.ndarray:
    """{space: (M, M)}, {space: n} -> (M, M) sum_s n_s D_s / sum_s n_s: the distance on the union
    of the spaces' samples (see the module docstring)."""
    if set(matrices) != set(samples) or not matrices:
        raise ValueError(f"matrices and samples must name the same spaces, got {sorted(matrices)} "
                         f"and {sorted(samples)}")
    shapes = {np.shape(d) for d in matrices.values()}
    if len(shapes) != 1:
        raise ValueError(f"the spaces' matrices must share one shape (the same models), got "
                         f"{sorted(shapes)}")
    if any(n < 1 for n in samples.values()):
        raise ValueError(f"sample counts must be >= 1, got {dict(samples)}")
    total = sum(samples.values())
    return sum(np.asarray(matrices[s], dtype=np.float64) * (samples[s] / total) for s in matrices)


def run_joint(study: JointConfig, distance_settings: DistancesConfig,
              embedding_settings: EmbeddingConfig, probs: Mapping[str, np.ndarray],
              distances: Mapping[str, np.ndarray],
              embeddings: Mapping[str, Embedding]) -> StudyResult:
    """The joint and Euclidean embeddings from per space (M, N, C) `probs`, the distances stage's
    (M, M) matrices and the embedding stage's `embeddings` (compared in the metrics).

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
    euclidean = {s: euclidean_distances(probs[s], sample_step=step) for s in SPACES}
    products = {
        "bhattacharyya_joint": embed(sample_weighted_distances(distances, used),
                                     embedding_settings),
        "euclidean_joint": embed(sample_weighted_distances(euclidean, used), embedding_settings),
        **{f"euclidean_{s}": embed(euclidean[s], embedding_settings) for s in SPACES}}
    compare = {f"bhattacharyya_{s}": embeddings[s] for s in SPACES} | products
    metrics["samples"] = used
    metrics["explained_stress"] = {name: stress_metrics(emb, embedding_settings.stress_dims)
                                   for name, emb in compare.items()}
    return StudyResult(products=products, metrics=metrics,
                       summary=pd.DataFrame(metrics["explained_stress"]).T)
