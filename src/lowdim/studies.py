"""The special studies' glue: averaging (docs/study.md A9, D19), tangent bases (A14, D18), the joint
train+test embedding (D8) and the Euclidean comparison (D20).

The maths lives in `centroids`, `tangents`, `euclidean`, `inpca` and `distances`; this module picks
rows of the analysis set and assembles matrices. Arrays in, arrays out; no file IO.

**Joint train+test embedding (D8).** docs/study.md leaves the authors' method unknown. A train-space
point and a test-space point of the same model share no samples, so a distance between them is not
defined. Here the joint embedding has one point per model, described by its predictions on the
union of both evaluation subsets. The intensive Bhattacharyya distance is a mean over samples, so on
the union it is exactly the sample-weighted mean of the two spaces' distances:

    D_joint = (n_train D_train + n_test D_test) / (n_train + n_test),

with n the numbers of samples each stored matrix actually used (every `sample_step`-th one).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lowdim.centroids import AVERAGING_METHODS, average_trajectory
from lowdim.distances import check_probabilities
from lowdim.tangents import explained_distance_l1
from lowdim.trajectories import config_key


def configuration_runs(
    index: pd.DataFrame, arch: str | None = None, optimizer: str | None = None
) -> list[str]:
    """Run ids (sorted) of one configuration with at least two runs: the first such configuration
    (by its key) among those with this arch and optimizer, or among all when both are None."""
    runs = index[index["kind"] == "run"].drop_duplicates("run_id")
    if arch is not None:
        runs = runs[runs["arch"] == arch]
    if optimizer is not None:
        runs = runs[runs["optimizer"] == optimizer]
    keys = pd.Series([config_key(r) for r in runs.to_dict("records")], index=runs.index)
    sizes = keys.value_counts()
    eligible = sorted(sizes[sizes >= 2].index)
    if not eligible:
        wanted = f"arch {arch!r}, optimizer {optimizer!r}" if arch or optimizer else "any"
        raise ValueError(f"no configuration ({wanted}) has two or more runs to average: add seeds "
                         "to grid.seed or choose another studies.averaging configuration")
    return sorted(runs.loc[keys == eligible[0], "run_id"])


def stack_runs(index: pd.DataFrame, probs: np.ndarray, run_ids: list[str]) -> np.ndarray:
    """(M, N, C) analysis-set probabilities -> (S, K, N, C) float64, runs aligned by checkpoint."""
    runs = index[index["kind"] == "run"]
    rows = [runs[runs["run_id"] == r].sort_values("checkpoint")["row"].to_numpy()
            for r in run_ids]
    counts = {len(r) for r in rows}
    if 0 in counts or len(counts) != 1:
        raise ValueError(f"runs {run_ids} must each have the same number of checkpoints (> 0) "
                         f"to be averaged at equal checkpoint index, got {sorted(counts)}")
    return np.stack([np.asarray(probs[r], dtype=np.float64) for r in rows])


def averaged_trajectories(
    trajectories: np.ndarray, *, bhattacharyya_iterations: int = 100
) -> dict[str, np.ndarray]:
    """(S, K, N, C) -> {method: (K, N, C)} for the six averaging methods of A9."""
    options = {"bhattacharyya": {"max_iter": bhattacharyya_iterations}}
    return {m: average_trajectory(trajectories, m, **options.get(m, {}))
            for m in AVERAGING_METHODS}


def joint_distance_matrix(d_base: np.ndarray, cross: np.ndarray, d_new: np.ndarray) -> np.ndarray:
    """(M, M) base, (R, M) new-to-base, (R, R) new -> (M + R, M + R), base rows first."""
    d_base, cross, d_new = (np.asarray(x, dtype=np.float64) for x in (d_base, cross, d_new))
    m, r = d_base.shape[0], d_new.shape[0]
    if d_base.shape != (m, m) or d_new.shape != (r, r) or cross.shape != (r, m):
        raise ValueError(f"need d_base (M, M), cross (R, M), d_new (R, R); got {d_base.shape}, "
                         f"{cross.shape}, {d_new.shape}")
    return np.block([[d_base, cross.T], [cross, d_new]])


def true_class_probability(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(M, N, C) models, (N, C) one-hot truth -> (M,) mean probability of the true class.

    The accuracy of A9's averaging figure (labelled "1 - validation error" by the authors).
    """
    probs = check_probabilities(probs, "probs", 3)
    truth = check_probabilities(truth, "truth", 2)
    if probs.shape[1:] != truth.shape:
        raise ValueError(f"truth must have shape (N, C) = {probs.shape[1:]}, got {truth.shape}")
    return np.einsum("mnc,nc->m", np.asarray(probs, dtype=np.float64), truth) / truth.shape[0]


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


def tangent_rows(index: pd.DataFrame, loss_cut: float) -> np.ndarray:
    """Rows of the run checkpoints with train loss < `loss_cut` (A14: the authors keep < 4)."""
    keep = (index["kind"] == "run") & (index["train_loss"] < loss_cut)
    rows = index.loc[keep, "row"].to_numpy()
    if rows.size < 2:
        raise ValueError(f"only {rows.size} run checkpoints have train loss < {loss_cut:g}: raise "
                         "studies.tangents.outlier_loss or train longer")
    return rows


def explained_distance_curve(d: np.ndarray, coords: np.ndarray, signs: np.ndarray,
                             dims: int) -> np.ndarray:
    """(M, M) D, (M, K) coordinates, (K,) signs -> (min(dims, K),) explained distance at k = 1..

    `explained_distance_l1` for each number of leading axes.
    """
    kmax = min(int(dims), np.shape(coords)[1])
    return np.array([explained_distance_l1(d, coords, signs, k) for k in range(1, kmax + 1)])
