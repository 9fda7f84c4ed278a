"""The uncertainty of the headline metrics: a jackknife over seeds and a percentile bootstrap
(issue 24). Every metric of ``metrics/embedding.json`` and ``metrics/trajectories.json`` is
recomputed on resampled sets of runs, with the functions the embedding and trajectories stages
use, and reported as its full-data value, a jackknife standard error and a bootstrap interval.

Resamples. A resample is a multiset of runs: (K,) positions into the list of runs (a run table's
rows), a run drawn twice listed twice, positions sorted so that one multiset gives one point set.

- Jackknife over seeds (``seed_jackknife``): S replicates for S seeds, the i-th keeps every run
  whose seed is not the i-th seed. SE = sqrt((S - 1) / S * sum_i (theta_i - mean theta)^2).
- Bootstrap over seeds (``seed_bootstrap``): S seeds drawn with replacement, every run of each
  drawn seed (seeds are the study's replication unit: a seed fixes a run's initialization and
  data order). With S seeds there are only C(2S - 1, S) distinct resamples: 10 for the quick
  profile's 3 seeds, whose percentile interval is then set by two or three of them.
- Bootstrap over runs within configuration (``run_bootstrap``): each configuration's n runs drawn
  n times with replacement, independently per configuration (a stratified bootstrap). Fine
  grained with few seeds, but it treats runs of different configurations as independent, which
  a shared seed may not make them.

Both bootstraps are seeded (``numpy.random.default_rng(seed)``). The percentile interval at
level L is the (1 - L) / 2 and (1 + L) / 2 quantiles of the bootstrap values (numpy's linear
interpolation). With a few runs per configuration, resampling changes what some metrics measure:
a run drawn twice leaves fewer distinct runs (a bootstrap of n values keeps (n - 1) / n of their
spread on average; a jackknife replicate has one seed fewer), which lowers the tube width (a
spread between seeds) and raises the stress explained by many axes (fewer distinct points to
place). On the quick profile the 90 % intervals of the tube width and of chi_50 lie beside their
full-data values: read them, and the SE, as the spread between seeds, not as confidence intervals.

Point sets. The distance matrix of a space has one point per row of the analysis set: every
checkpoint of every run, and points of no run (ignorance, truth, the geodesic), which every
resample keeps. A run drawn k times enters its points k times (``point_rows``): the InPCA of the
resample weighs it k times, and its trajectory enters its configuration's average k times. Two
copies of one run are not a pair of distinct runs (``summary_metrics`` skips pairs with one
``run_id``).

Cost: one InPCA per space and resample (the embedding stage's settings, and the solver the full
matrix used), the trajectory tensor of the full data once per space (streamed through a temporary
file), and per resample that of the drawn runs at the grid point nearest 0.5 only
(``resampled_trajectory_metrics``); memory: the matrix of a space and one resampled copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lowdim.analysis.trajectories import stream_tensor, trajectory_tensor
from lowdim.analysis.trajectory_analyses import (
    between_within_ratio,
    median_tube_width,
    summary_metrics,
)
from lowdim.geometry.inpca import inpca
from lowdim.store.lazy import Submatrix, in_memory_if_small

BOOTSTRAPS = ("run", "seed")  # what a bootstrap draws: runs within configuration, or seeds
# Each metric's unit: explained stress and the ratio are pure numbers, a tube width is an
# intensive Bhattacharyya distance (nats per sample).
UNITS = {"explained_stress": "1", "between_within_arch_ratio": "1",
         "tube_width_median_at_0.5": "nats"}


# --- resamples: multisets of runs ---


def _seeds(run_seeds: np.ndarray) -> np.ndarray:
    """(R,) seed of each run -> its distinct seeds; at least two are needed to resample."""
    seeds = np.unique(np.asarray(run_seeds))
    if seeds.size < 2:
        raise ValueError(f"resampling by seed needs runs of at least 2 seeds, got {seeds.size} "
                         f"({seeds.tolist()}): train more seeds (grid.seed)")
    return seeds


def seed_jackknife(run_seeds: np.ndarray) -> list[np.ndarray]:
    """(R,) seed of each run -> S replicates, the i-th the positions of runs not of seed i."""
    run_seeds = np.asarray(run_seeds)
    return [np.flatnonzero(run_seeds != seed) for seed in _seeds(run_seeds)]


def seed_bootstrap(run_seeds: np.ndarray, resamples: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """(R,) seed of each run -> `resamples` multisets: S seeds drawn with replacement, every run
    of each drawn seed, once per draw (sorted positions)."""
    run_seeds = np.asarray(run_seeds)
    seeds = _seeds(run_seeds)
    members = [np.flatnonzero(run_seeds == seed) for seed in seeds]
    draws = rng.integers(0, seeds.size, size=(_count(resamples), seeds.size))
    return [np.sort(np.concatenate([members[k] for k in drawn])) for drawn in draws]


def run_bootstrap(run_configs: np.ndarray, resamples: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """(R,) configuration of each run -> `resamples` multisets: the n runs of each configuration
    drawn n times with replacement, configurations independently (sorted positions)."""
    run_configs = np.asarray(run_configs)
    if run_configs.size == 0:
        raise ValueError("no runs to resample")
    groups = [np.flatnonzero(run_configs == c) for c in np.unique(run_configs)]
    return [np.sort(np.concatenate([rng.choice(g, size=g.size) for g in groups]))
            for _ in range(_count(resamples))]


def bootstrap(kind: str, run_seeds: np.ndarray, run_configs: np.ndarray, resamples: int,
              seed: int) -> list[np.ndarray]:
    """The seeded bootstrap of `kind` ("run": within configuration, or "seed"); at least 2
    seeds are required either way (the jackknife needs them)."""
    _seeds(run_seeds)
    rng = np.random.default_rng(seed)
    if kind == "run":
        return run_bootstrap(run_configs, resamples, rng)
    if kind == "seed":
        return seed_bootstrap(run_seeds, resamples, rng)
    raise ValueError(f"bootstrap = {kind!r} is not known: use one of {BOOTSTRAPS}")


def _count(resamples: int) -> int:
    if isinstance(resamples, bool) or int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a whole number >= 1, got {resamples!r}")
    return int(resamples)


# --- point sets ---


def point_runs(point_run_ids: Sequence, run_ids: Sequence) -> np.ndarray:
    """(M,) run id of each point (None, NaN or NA: a point of no run), (R,) run ids -> (M,) position
    of each point's run in `run_ids`, -1 for a point of no run."""
    position = {run_id: k for k, run_id in enumerate(run_ids)}
    if len(position) != len(run_ids):
        raise ValueError("run_ids repeats a run: give each run once")
    out = np.full(len(point_run_ids), -1, dtype=np.int64)
    for m, run_id in enumerate(point_run_ids):
        if run_id is None or pd.isna(run_id):
            continue
        if run_id not in position:
            raise ValueError(f"point {m} belongs to run {run_id!r}, which is not in the run list: "
                             "pass the runs of the same analysis set")
        out[m] = position[run_id]
    return out


def point_rows(point_run: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """(M,) run position of each point (-1: none), (K,) resampled run positions -> the rows of
    the resample's point set in the matrix's order: a run drawn k times k times (adjacent), a
    run not drawn not at all, a point of no run once. Every run once gives every row in order."""
    point_run = np.asarray(point_run)
    n_runs = int(point_run.max(initial=-1)) + 1
    runs = np.asarray(runs, dtype=np.int64)
    if runs.size and (runs.min() < 0 or runs.max() >= n_runs):
        raise ValueError(f"run positions must lie in [0, {n_runs}), got {runs.min()}..{runs.max()}")
    copies = np.bincount(runs, minlength=n_runs)
    repeat = np.where(point_run >= 0, copies[np.maximum(point_run, 0)], 1)
    return np.repeat(np.arange(point_run.size), repeat)


# --- the statistics ---


def explained_stresses(d: np.ndarray, dims: Sequence[int], *, n_components: int,
                       solver: str = "auto", landmarks: int | None = None,
                       device: str | None = None) -> tuple[dict[str, float], str]:
    """(M, M) distance matrix (array, memory map, ``NpyFile`` or ``LazyMatrix``; read into
    memory up to ``store.lazy.IN_MEMORY_BYTES``) -> ({"explained_stress_k": chi_k} for each k
    of `dims` with k <= M, the solver used), by ``inpca`` with the embedding stage's settings
    (n_eigenvalues = max(n_components, dims)). The solver used is `solver`, or for "auto" the
    one it stood for: "dense" when every eigenvalue came back (of the landmark matrix, with
    landmarks), else "randomized"."""
    d = in_memory_if_small(d)
    n_eigenvalues = max(n_components, *dims)
    emb = inpca(d, n_components, solver=solver, n_eigenvalues=n_eigenvalues,
                landmarks=landmarks, device=device)
    chi = emb.explained_stress
    if solver == "auto":
        embedded = len(emb.landmarks) or d.shape[0]
        solver = "dense" if len(emb.eigenvalues) == embedded else "randomized"
    return {f"explained_stress_{k}": float(chi[k - 1]) for k in dims if k <= len(chi)}, solver


def stress_of_resample(d: np.ndarray, point_run: np.ndarray, runs: np.ndarray,
                       dims: Sequence[int], **options) -> dict[str, float]:
    """(M, M) matrix (array, memory map or ``NpyFile``), (M,) run position of each point, (K,)
    resampled runs -> the explained stresses of the resample's point set (options: those of
    ``explained_stresses``; pass the solver that the full matrix used, so that "auto" does not
    switch solver with M). The resample's matrix is a ``Submatrix`` of `d`, read a block at a
    time by the iterative solvers (formed whole by the dense one): the in-memory values."""
    rows = point_rows(point_run, runs)
    return explained_stresses(Submatrix(d, rows), dims, **options)[0]


def full_trajectory_metrics(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                            index_values: np.ndarray, grid: np.ndarray, *,
                            bc_floor: float) -> tuple[dict[str, float], np.ndarray]:
    """The trajectories stage's summary metrics of one space (``stream_tensor`` then
    ``summary_metrics``, as ``analyse_space`` and the stage call them; the tensor through a
    temporary file, O(R^2 + G R) memory), and the (T, T) trajectory distances (A8) between its
    T trained runs, in the run table's order, for the resamples."""
    table, reduced = stream_tensor(index, probs, runs, index_values, grid, bc_floor=bc_floor)
    is_run = (table["kind"] == "run").to_numpy()
    return summary_metrics(reduced, table, grid), reduced.mean[np.ix_(is_run, is_run)]


def resampled_trajectory_metrics(index: pd.DataFrame, probs: np.ndarray, runs: pd.DataFrame,
                                 positions: np.ndarray, index_values: np.ndarray,
                                 grid: np.ndarray, distances: np.ndarray, *,
                                 bc_floor: float) -> dict[str, float]:
    """The summary metrics of one space for the runs at `positions` of the run table (repeats
    allowed), as ``summary_metrics`` computes them on that run set's trajectory tensor, with
    only what each metric reads computed anew.

    - between_within_arch_ratio: ``between_within_ratio`` of the trained drawn runs' entries of
      `distances` (``full_trajectory_metrics``): a distance between two runs does not depend on
      which other runs were drawn;
    - tube_width_median_at_0.5: ``median_tube_width`` of ``trajectory_tensor`` of the drawn runs
      at the grid point nearest 0.5 alone (the configuration averages of the drawn runs, reindexed
      and averaged there as the whole tensor has them; one kernel call instead of G).
    Every run once gives the full-data metrics (tested).
    """
    positions = np.asarray(positions, dtype=np.int64)
    trained = runs["trained"].to_numpy(dtype=bool)
    if distances.shape != (trained.sum(), trained.sum()):
        raise ValueError(f"distances must be ({trained.sum()}, {trained.sum()}), between the "
                         f"trained runs of the run table, got shape {distances.shape}")
    kept = positions[trained[positions]]
    among_trained = (np.cumsum(trained) - 1)[kept]
    ratio = between_within_ratio(distances[np.ix_(among_trained, among_trained)],
                                 runs["arch"].astype(str).to_numpy()[kept],
                                 runs["run_id"].to_numpy()[kept])
    grid = np.asarray(grid, dtype=np.float64)
    mid = grid[[int(np.argmin(np.abs(grid - 0.5)))]]
    table, tensor = trajectory_tensor(index, probs, runs.iloc[positions].reset_index(drop=True),
                                      index_values, mid, bc_floor=bc_floor)
    return {"tube_width_median_at_0.5": median_tube_width(tensor, table, mid),
            "between_within_arch_ratio": ratio}


# --- summaries ---


def jackknife_se(values: np.ndarray) -> float:
    """(S,) leave-one-out values -> sqrt((S - 1) / S * sum (theta_i - mean)^2)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"the jackknife needs at least 2 replicates, got shape {values.shape}")
    s = values.size
    return float(np.sqrt((s - 1) / s * np.sum((values - values.mean()) ** 2)))


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """(B,) bootstrap values -> the (1 - level) / 2 and (1 + level) / 2 quantiles (linear)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"the bootstrap needs at least 1 resample, got shape {values.shape}")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def named(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    """Metric values keyed `<prefix>.<key>` (e.g. "embedding.train.explained_stress_1")."""
    return {f"{prefix}.{key}": float(value) for key, value in values.items()}


def unit_of(name: str) -> str:
    """The unit of a metric named `<file>.<space>.<key>` (``UNITS``; explained_stress_k too)."""
    key = name.split(".", 2)[-1]
    for known, unit in UNITS.items():
        if key == known or key.startswith(f"{known}_"):
            return unit
    raise ValueError(f"metric {name!r} has no unit: add its key to UNITS")


def summarize(full: Mapping[str, float], jackknife: Sequence[Mapping[str, float]],
              resampled: Sequence[Mapping[str, float]], *, level: float,
              digits: int = 6) -> dict[str, dict[str, float | int | str]]:
    """Full-data values, jackknife replicates and bootstrap values (dicts keyed by metric) ->
    {metric: {value, jackknife_se, lo, hi, level, resamples, unit}}, numbers to `digits`
    significant digits and at least 6 decimals; every replicate must hold every metric of
    `full`."""
    out = {}
    for name, value in full.items():
        missing = [i for i, r in enumerate([*jackknife, *resampled]) if name not in r]
        if missing:
            raise ValueError(f"metric {name!r} is missing from {len(missing)} resample(s)")
        lo, hi = percentile_interval(np.array([r[name] for r in resampled]), level)
        out[name] = {"value": _round(value, digits),
                     "jackknife_se": _round(jackknife_se(np.array([r[name] for r in jackknife])),
                                            digits),
                     "lo": _round(lo, digits), "hi": _round(hi, digits), "level": level,
                     "resamples": len(resampled), "unit": unit_of(name)}
    return out


def _round(x: float, digits: int) -> float:
    """`x` to `digits` significant digits, and to at least 6 decimals (the metrics files')."""
    x = float(x)
    if x == 0 or not np.isfinite(x):
        return x
    return round(x, max(6, digits - 1 - int(np.floor(np.log10(abs(x))))))
