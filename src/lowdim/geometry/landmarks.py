"""Where the landmarks of the landmark route go (``distances.landmark_choice``).

Evenly spaced rows (``lowdim.geometry.inpca.landmark_rows``) cover the bulk of the checkpoints,
but a point far from every landmark (a diverged run's checkpoint) is placed by extrapolation,
and on the quick profile two such points carried most of the embedding's residual
(docs/performance.md, "The landmark route"). ``farthest_landmarks`` keeps half of the landmarks
evenly spaced and adds the rest where the current landmarks reach least: in ``rounds`` rounds,
the points whose distance to their nearest landmark is largest (farthest-point sampling, a few
points per round rather than one, so each round is one blocked pass). The selection reads the
predictions on every ``selection_step``-th of the distances' samples: a cheap, noisier distance
is enough to find the far points, and the landmark distances themselves are then computed on
every sample by the distances stage. Cost: about L x M pairs on 1 / ``selection_step`` of the
samples; memory: O(M).
"""

from __future__ import annotations

import numpy as np

from lowdim.geometry.distances import BC_FLOOR, check_inputs, distance_blocks, resolve_engine
from lowdim.geometry.inpca import landmark_rows

LANDMARK_CHOICES = ("even", "farthest")


def nearest_landmark_distance(p: np.ndarray, rows: np.ndarray, **kw) -> np.ndarray:
    """(M,) distance of every row of p to its nearest row among `rows` (0 for those rows)."""
    m = len(p)
    nearest = np.full(m, np.inf)
    for ri, _, block in distance_blocks(p, np.arange(m), rows, **kw):
        nearest[ri] = np.minimum(nearest[ri], block.min(axis=1))
    nearest[rows] = 0.0
    return nearest


def farthest_landmarks(p: np.ndarray, count: int, *, rounds: int = 8, selection_step: int = 4,
                       sample_step: int = 1, bc_floor: float = BC_FLOOR, method: str = "auto",
                       device: str = "cpu", max_block_bytes: int = 256 * 2**20) -> np.ndarray:
    """(M, N, C) predictions, L -> (L,) sorted landmark rows: half of them evenly spaced (the
    first and last row included), the rest added in `rounds` rounds, each taking the points
    farthest from their nearest landmark so far. All M rows when L >= M."""
    m = len(p)
    if rounds < 1 or selection_step < 1:
        raise ValueError(f"rounds = {rounds} and selection_step = {selection_step} must be >= 1")
    total = len(landmark_rows(m, count))  # the count the even choice gives (min(L, M))
    chosen = landmark_rows(m, max(2, total // 2))
    step = sample_step * selection_step
    p, _ = check_inputs(p, None, step, bc_floor)
    kw = {"sample_step": step, "bc_floor": bc_floor, "device": device, "check": False,
          "engine": resolve_engine(method, device, bc_floor), "max_block_bytes": max_block_bytes}
    nearest = nearest_landmark_distance(p, chosen, **kw)
    left = total - len(chosen)
    for r in range(rounds):
        take = -(-left // (rounds - r))  # spread what is left over the remaining rounds
        if take <= 0:
            break
        candidates = nearest.copy()
        candidates[chosen] = -np.inf  # a landmark is never taken twice, even among duplicates
        new = np.sort(np.argsort(-candidates, kind="stable")[:take])
        chosen = np.union1d(chosen, new)
        nearest = np.minimum(nearest, nearest_landmark_distance(p, new, **kw))
        left = total - len(chosen)
    return chosen.astype(np.int64)
