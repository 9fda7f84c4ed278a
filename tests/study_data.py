"""A small generated analysis set for the special-study tests: run checkpoints that move from
ignorance towards the truth, the reference rows, and the distances stage's matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lowdim.geometry.distances import bhattacharyya, ignorance_point, truth_point
from lowdim.geometry.geodesic import geodesic, progress_closed_form

SPACES = ("train", "test")
# run_id, arch, optimizer, seed: two configurations with two seeds, one with a single seed.
SPECS = [("fc_s_s1", "fc", "sgdn", 1), ("fc_s_s2", "fc", "sgdn", 2), ("fc_a_s1", "fc", "adam", 1),
         ("cnn_a_s1", "cnn", "adam", 1), ("cnn_a_s2", "cnn", "adam", 2)]


@dataclass
class AnalysisSet:
    index: pd.DataFrame               # the predictions stage's index (column `row` = position)
    probs: dict[str, np.ndarray]      # space -> (M, N, C) float32
    distances: dict[str, np.ndarray]  # space -> (M, M), as the distances stage stores them
    progress: pd.DataFrame            # the trajectories stage's progress table, indexed by row


def analysis_set(checkpoints: int = 4, samples: dict[str, int] | None = None, classes: int = 3,
                 identical: tuple[str, ...] = (), seed: int = 0,
                 sample_step: int = 2) -> AnalysisSet:
    """Runs of SPECS with `checkpoints` each along a noisy ignorance -> truth path, then ignorance
    and truth. Runs named in `identical` share the first one's predictions exactly."""
    rng = np.random.default_rng(seed)
    samples = samples or {"train": 14, "test": 10}
    t = np.linspace(0.1, 0.9, checkpoints)
    rows, probs = [], {s: [] for s in SPACES}
    labels = {s: rng.integers(0, classes, n) for s, n in samples.items()}
    ends = {s: (ignorance_point(n, classes), truth_point(labels[s], classes))
            for s, n in samples.items()}
    shared = {}
    for run_id, arch, optimizer, run_seed in SPECS:
        for c in range(checkpoints):
            rows.append({"kind": "run", "run_id": run_id, "arch": arch, "optimizer": optimizer,
                         "batch_size": 64, "lr": 0.1, "weight_decay": 0.0, "augment": "none",
                         "init": "default", "epochs": 2, "seed": run_seed, "checkpoint": c,
                         "train_loss": 5.0 - c, "train_error": 0.9 - 0.2 * c})
        for s in SPACES:
            if run_id in identical[1:]:
                traj = shared[identical[0]][s]
            else:
                noise = rng.dirichlet(np.ones(classes), size=(checkpoints, samples[s]))
                traj = 0.8 * geodesic(*ends[s], t) + 0.2 * noise
                traj = traj / traj.sum(-1, keepdims=True)
            shared.setdefault(run_id, {})[s] = traj
            probs[s].append(traj)
    rows += [{"kind": "ignorance"}, {"kind": "truth"}]
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    stacked = {s: np.concatenate([*probs[s], ends[s][0][None], ends[s][1][None]]).astype(np.float32)
               for s in SPACES}
    distances = {s: bhattacharyya(p, sample_step=sample_step) for s, p in stacked.items()}
    progress = pd.DataFrame({f"{s}_progress": progress_closed_form(p, *ends[s])
                             for s, p in stacked.items()})
    progress.index.name = "row"
    return AnalysisSet(index, stacked, distances, progress)
