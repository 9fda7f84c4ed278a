"""Trajectory-level analyses on the distance tensor at equal progress (docs/study.md A10-A13,
A15, D9, D14).

Inputs are the (G, R, R) tensor of ``lowdim.geometry.geodesic.trajectory_distance_tensor`` (or
its ``ReducedTensor``: what the analyses read of it, gathered a grid point at a time) and a table
with one row per trajectory in the tensor's order. Table columns:

- ``kind``: "run" (one reindexed training run), "average" (the per-configuration mean of its
  seeds, A9) or "geodesic" (the reindexed ignorance -> truth geodesic);
- ``config``: a string key shared by the seeds of one configuration and by their average;
- grid factors ``arch``, ``optimizer``, ``batch_size``, ``lr``, ``weight_decay``, ``augment``,
  ``init``, ``seed``, and ``final_train_error`` for runs (optional ``run_id``).

Choices made here, each documented where it is made:

- which runs enter an analysis is the caller's choice: analyses take ``runs``, a boolean mask over
  the table's rows (``trained(table)`` gives the paper's "final train error <= 10%" cut);
- configurations are listed in order of first appearance in the table;
- feature importance uses scikit-learn's gradient boosting and permutation importance in place of
  AutoGluon (see ``feature_importance``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from lowdim.geometry.geodesic import PROGRESS_GRID, check_distance_tensor
from lowdim.geometry.inpca import inpca
from lowdim.store.records import Embedding

KINDS = ("run", "average", "geodesic")
# Factors that define a configuration (seed does not).
CONFIG_FACTORS = ("arch", "optimizer", "batch_size", "lr", "weight_decay", "augment", "init")
# Columns copied from the table into long-format results, when present.
CARRIED = ("run_id", *CONFIG_FACTORS, "seed", "final_train_error")
# A13's factors (lr is left out, as in the authors' code).
IMPORTANCE_FACTORS = ("arch", "optimizer", "batch_size", "augment", "weight_decay")
EPOCH_BINS = (0, 5, 10, 15, 25, 50, 75, 100, 150)
# Relative tolerance for the symmetry of a distance matrix (as lowdim.geometry.inpca).
SYM_RTOL = 1e-6


# --- the tensor, whole or reduced ---


class ReducedTensor:
    """What the analyses of this module read of a (G, R, R) distance tensor, without the tensor.

    - ``mean``: the (R, R) mean over the grid points (A8), the bits of ``tensor.mean(axis=0)``;
    - ``pairs``: K (row, column) pairs and ``values``, (G, K): ``tensor[:, rows, columns]``.
      ``tensor_pairs(table)`` lists those the analyses use: every trajectory to the geodesic
      (A11, A13) and every run to its configuration's average (A10).

    ``gather_pairs`` collects the values a grid point at a time and ``mean_over_progress`` the
    mean from the tensor's file (``analysis.trajectories.stream_tensor`` does both); every
    analysis here takes a reduced tensor in place of the tensor and gives the same bits
    (tests/test_trajectories_streamed.py). A pair not gathered raises.
    """

    def __init__(self, mean: np.ndarray, pairs: np.ndarray, values: np.ndarray) -> None:
        mean, pairs, values = np.asarray(mean), np.asarray(pairs), np.asarray(values)
        r = mean.shape[0] if mean.ndim == 2 else -1
        if mean.shape != (r, r) or r < 1:
            raise ValueError(f"mean must be a square (R, R) matrix, got shape {mean.shape}")
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must be a (K, 2) array of (row, column), got {pairs.shape}")
        if values.ndim != 2 or values.shape[1] != pairs.shape[0] or values.shape[0] < 1:
            raise ValueError(f"values must be (G, {pairs.shape[0]}), one column per pair, got "
                             f"shape {values.shape}")
        self.mean, self.pairs, self.values = mean, pairs, values
        self.shape = (values.shape[0], r, r)
        self.ndim = 3
        self._column = {(int(i), int(j)): k for k, (i, j) in enumerate(pairs)}

    def take(self, rows: np.ndarray, columns: np.ndarray | int) -> np.ndarray:
        """(G, n) distances of the pairs (rows[k], columns[k]): ``tensor[:, rows, columns]``."""
        rows = np.asarray(rows)
        columns = np.broadcast_to(np.asarray(columns), rows.shape)
        try:
            picked = [self._column[(int(i), int(j))] for i, j in zip(rows, columns, strict=True)]
        except KeyError as missing:
            raise ValueError(f"the reduced tensor holds no distances for the pair {missing}: "
                             "list it in the pairs given to reduce_tensor") from None
        return self.values[:, np.asarray(picked, dtype=np.int64)]


def tensor_pairs(table: pd.DataFrame) -> np.ndarray:
    """(K, 2) the (row, column) pairs the analyses read at every grid point: each trajectory to
    the geodesic (when the table holds one geodesic row), then each run to its configuration's
    average (when the configuration has exactly one)."""
    table = table.reset_index(drop=True)
    kind = table["kind"].to_numpy()
    pairs = []
    geodesic = np.flatnonzero(kind == "geodesic")
    if geodesic.size == 1:
        pairs += [(i, int(geodesic[0])) for i in range(len(table))]
    averages = table.index[kind == "average"]
    by_config = pd.Series(averages, index=table.loc[averages, "config"].to_numpy())
    single = by_config[~by_config.index.duplicated(keep=False)]
    for i in np.flatnonzero(kind == "run"):
        config = table.at[int(i), "config"]
        if config in single.index:
            pairs.append((int(i), int(single[config])))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def gather_pairs(points: Iterable[tuple[int, np.ndarray]], grid_points: int,
                 pairs: np.ndarray) -> np.ndarray:
    """(grid point, (R, R) distances) for each of `grid_points` points (any order) and K
    (row, column) pairs -> (G, K) ``tensor[:, pairs[:, 0], pairs[:, 1]]``, the values of a
    ``ReducedTensor``. Each matrix is checked as ``check_distance_tensor`` checks the tensor
    (finite, real numbers) and only its K pairs are kept: O(G K) memory beside one matrix."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    values = np.empty((grid_points, len(pairs)))
    seen = np.zeros(grid_points, dtype=bool)
    for point, matrix in points:
        matrix = check_distance_tensor(np.asarray(matrix)[None])[0]
        if seen[point]:
            raise ValueError(f"grid point {point} was given twice")
        seen[point] = True
        values[point] = matrix[pairs[:, 0], pairs[:, 1]]
    if not seen.all():
        raise ValueError(f"grid point(s) {np.flatnonzero(~seen)[:5].tolist()} were not given: "
                         f"pass every one of the {grid_points}")
    return values


def mean_over_progress(tensor: np.ndarray, max_block_bytes: int) -> np.ndarray:
    """(G, R, R) tensor (an array, a memory map or a ``lowdim.store.arrays.NpyFile``) -> its
    (R, R) mean over the grid points (A8), read a block of rows at a time: each block's
    ``mean(axis=0)`` sums the G values of an entry in the order the whole tensor's does (numpy
    reduces a leading axis entry by entry, in order), so the bits are those of
    ``tensor.mean(axis=0)`` (tested); memory: one (G, b, R) block within ``max_block_bytes``."""
    g, r = tensor.shape[0], tensor.shape[1]
    if tensor.ndim != 3 or tensor.shape[2] != r:
        raise ValueError(f"tensor must have shape (G, R, R), got {tensor.shape}")
    rows = max(1, int(max_block_bytes) // (g * r * 8))
    out = np.empty((r, r))
    for start in range(0, r, rows):
        block = np.asarray(tensor[:, start:start + rows], dtype=np.float64)
        out[start:start + rows] = block.mean(axis=0)
    return out


def _tensor(tensor: np.ndarray | ReducedTensor) -> np.ndarray | ReducedTensor:
    """A reduced tensor as it is, else the validated float64 (G, R, R) array."""
    return tensor if isinstance(tensor, ReducedTensor) else check_distance_tensor(tensor)


def _take(tensor: np.ndarray | ReducedTensor, rows: np.ndarray,
          columns: np.ndarray | int) -> np.ndarray:
    """(G, n) ``tensor[:, rows, columns]`` of a tensor or a reduced one."""
    if isinstance(tensor, ReducedTensor):
        return tensor.take(rows, columns)
    return tensor[:, rows, columns]


def _mean(tensor: np.ndarray | ReducedTensor) -> np.ndarray:
    """(R, R) mean over progress of a tensor or a reduced one."""
    return tensor.mean if isinstance(tensor, ReducedTensor) else tensor.mean(axis=0)


# --- validation and selection ---


def _check_table(table: pd.DataFrame, r: int, required: Sequence[str] = ()) -> pd.DataFrame:
    """Validate a trajectory table for R trajectories; return it with a 0..R-1 index."""
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in ("kind", "config", *required) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing}: one row per trajectory, with "
                         "kind, config and the grid factors")
    if len(table) != r:
        raise ValueError(f"table has {len(table)} rows but the tensor has {r} trajectories: give "
                         "one row per trajectory, in the tensor's order")
    unknown = sorted(set(table["kind"].astype(str)) - set(KINDS))
    if unknown:
        raise ValueError(f"table has unknown kind(s) {unknown}; kind must be one of {KINDS}")
    keyed = table["kind"].isin(("run", "average")).to_numpy()
    if table["config"].isna().to_numpy()[keyed].any():
        raise ValueError("every run and average needs a config key; some are missing (NaN/None)")
    return table.reset_index(drop=True)


def _check_grid_length(grid: np.ndarray, g: int) -> np.ndarray:
    grid = np.asarray(grid, dtype=np.float64)
    if grid.shape != (g,):
        raise ValueError(f"grid must have shape ({g},), one value per tensor grid point, "
                         f"got {grid.shape}")
    return grid


def _run_rows(table: pd.DataFrame, runs: np.ndarray | None) -> np.ndarray:
    """Positions of the rows of kind "run" that the optional boolean mask `runs` keeps."""
    is_run = (table["kind"] == "run").to_numpy()
    if runs is not None:
        runs = np.asarray(runs)
        if runs.dtype != bool or runs.shape != (len(table),):
            raise ValueError(f"runs must be a boolean mask of shape ({len(table)},) over the "
                             f"table's rows, got dtype {runs.dtype} and shape {runs.shape}")
        is_run = is_run & runs
    return np.flatnonzero(is_run)


def _single_row(table: pd.DataFrame, kind: str) -> int:
    rows = np.flatnonzero((table["kind"] == kind).to_numpy())
    if rows.size != 1:
        raise ValueError(f"table must hold exactly one row of kind '{kind}', found {rows.size}")
    return int(rows[0])


def _check_distance_matrix(d: np.ndarray, name: str) -> np.ndarray:
    """Validate a square, finite, symmetric, non-negative (K, K) matrix; return it symmetrized."""
    d = np.asarray(d)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"{name} must be a square (K, K) matrix, got shape {d.shape}")
    if d.shape[0] < 2:
        raise ValueError(f"{name} must cover at least 2 items, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise ValueError(f"{name} must be a real numeric matrix, got dtype {d.dtype}")
    d = d.astype(np.float64)
    if not np.isfinite(d).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    asym = np.abs(d - d.T).max()
    if asym > SYM_RTOL * np.abs(d).max():
        raise ValueError(f"{name} must be symmetric: max |d - d.T| = {asym:.3g}")
    if d.min() < 0:
        raise ValueError(f"{name} has negative entries (min {d.min():.3g}); distances are >= 0")
    return 0.5 * (d + d.T)


def trained(table: pd.DataFrame, max_error: float = 0.10) -> np.ndarray:
    """Table with kind, final_train_error -> (R,) bool: runs whose final train error <= max_error.

    The paper's "trained" cut (A10-A12: final train error <= 10%). Rows that are not runs, and
    runs without a final error (NaN), are False.
    """
    if not (0.0 <= max_error <= 1.0):
        raise ValueError(f"max_error must lie in [0, 1], got {max_error}")
    table = _check_table(table, len(table), ("final_train_error",))
    error = pd.to_numeric(table["final_train_error"], errors="coerce").to_numpy(
        dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return (table["kind"] == "run").to_numpy() & (error <= max_error)


def _long_format(values: np.ndarray, rows: np.ndarray, table: pd.DataFrame,
                 grid: np.ndarray) -> pd.DataFrame:
    """(G, n) values of n table rows -> long table: one row per (trajectory, grid point)."""
    g = grid.size
    out = pd.DataFrame({"row": np.repeat(rows, g)})
    for column in ("config", *CARRIED):
        if column in table.columns:
            out[column] = np.repeat(table[column].to_numpy()[rows], g)
    out["progress"] = np.tile(grid, rows.size)
    out["distance"] = values.T.reshape(-1)
    return out


# --- A10, A11: distances at equal progress ---


def tube_width(tensor: np.ndarray, table: pd.DataFrame, grid: np.ndarray = PROGRESS_GRID, *,
               runs: np.ndarray | None = None) -> pd.DataFrame:
    """(G, R, R) tensor, table -> long table of each run's distance to its configuration's
    average at equal progress (A10).

    Columns: row (the run's position in the tensor), config, the table's factor columns present
    (run_id, arch, optimizer, ..., seed, final_train_error), progress, distance. ``runs`` (a
    boolean mask over the table's rows) restricts the runs reported, e.g. ``trained(table)``.
    """
    tensor = _tensor(tensor)
    table = _check_table(table, tensor.shape[1])
    grid = _check_grid_length(grid, tensor.shape[0])
    rows = _run_rows(table, runs)
    averages = table.index[table["kind"] == "average"]
    by_config = pd.Series(averages, index=table.loc[averages, "config"].to_numpy())
    repeated = by_config.index[by_config.index.duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"configuration(s) {repeated[:3]} have more than one average trajectory")
    configs = table.loc[rows, "config"]
    absent = sorted(set(configs) - set(by_config.index))
    if absent:
        raise ValueError(f"no average trajectory (kind 'average') for configuration(s) "
                         f"{absent[:3]}: add each configuration's average to the tensor")
    partners = by_config.loc[configs.to_numpy()].to_numpy()
    return _long_format(_take(tensor, rows, partners), rows, table, grid)


def distance_to_geodesic(tensor: np.ndarray, table: pd.DataFrame,
                         grid: np.ndarray = PROGRESS_GRID, *,
                         runs: np.ndarray | None = None) -> pd.DataFrame:
    """(G, R, R) tensor, table -> long table of each run's distance to the geodesic at equal
    progress (A11); the table must hold exactly one row of kind "geodesic".

    Columns as ``tube_width``; ``runs`` restricts the runs reported.
    """
    tensor = _tensor(tensor)
    table = _check_table(table, tensor.shape[1])
    grid = _check_grid_length(grid, tensor.shape[0])
    rows = _run_rows(table, runs)
    geo = _single_row(table, "geodesic")
    return _long_format(_take(tensor, rows, geo), rows, table, grid)


# --- A12: configurations and their clustering ---


def _configuration_table(table: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """One row per configuration of the given runs, in order of first appearance."""
    runs = table.loc[rows]
    factors = [c for c in CONFIG_FACTORS if c in table.columns]
    for column in factors:
        counts = runs.groupby("config", sort=False)[column].nunique(dropna=False)
        mixed = counts.index[counts > 1].tolist()
        if mixed:
            raise ValueError(f"configuration(s) {mixed[:3]} mix several values of '{column}': "
                             "the config key must be shared only by seeds of one configuration")
    grouped = runs.groupby("config", sort=False)
    out = pd.DataFrame({"config": grouped.size().index})
    for column in factors:
        out[column] = grouped[column].first().to_numpy()
    out["n_runs"] = grouped.size().to_numpy()
    if "final_train_error" in table.columns:
        out["mean_final_train_error"] = grouped["final_train_error"].mean().to_numpy()
    return out


def configuration_distances(tensor: np.ndarray, table: pd.DataFrame, *,
                            runs: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(G, R, R) tensor, table -> configurations (K rows) and their (K, K) distance matrix (A12).

    D[a, b] = mean over t of the mean of dists[t, i, j] over all runs i of a and j of b (the two
    means commute); the diagonal is zeroed. Runs only (averages and the geodesic are left out),
    restricted by ``runs``. The configurations table has config, the factor columns present,
    n_runs and mean_final_train_error (when the table has final_train_error).
    """
    tensor = _tensor(tensor)
    table = _check_table(table, tensor.shape[1])
    rows = _run_rows(table, runs)
    if rows.size == 0:
        raise ValueError("no runs selected: the table has no row of kind 'run' in the mask")
    configurations = _configuration_table(table, rows)
    codes = pd.Categorical(table.loc[rows, "config"],
                           categories=configurations["config"]).codes
    member = np.zeros((rows.size, len(configurations)))
    member[np.arange(rows.size), codes] = 1.0
    member /= member.sum(axis=0, keepdims=True)  # column a averages over a's runs
    traj = _mean(tensor)[np.ix_(rows, rows)]
    d = member.T @ traj @ member
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return configurations, d


def configuration_to_geodesic(tensor: np.ndarray, table: pd.DataFrame,
                              configurations: pd.DataFrame, *,
                              runs: np.ndarray | None = None) -> np.ndarray:
    """(G, R, R) tensor, table, K configurations -> (K,) mean over runs and progress of the
    distance to the geodesic row: A13's d2geod, in the configurations' order."""
    tensor = _tensor(tensor)
    table = _check_table(table, tensor.shape[1])
    rows = _run_rows(table, runs)
    geo = _single_row(table, "geodesic")
    per_run = pd.Series(_take(tensor, rows, geo).mean(axis=0), index=rows)
    means = per_run.groupby(table.loc[rows, "config"].to_numpy()).mean()
    absent = sorted(set(configurations["config"]) - set(means.index))
    if absent:
        raise ValueError(f"configuration(s) {absent[:3]} have no selected run in the table")
    return means.loc[configurations["config"].to_numpy()].to_numpy()


def cluster_configurations(distance: np.ndarray) -> np.ndarray:
    """(K, K) configuration distances -> (K-1, 4) scipy linkage matrix (A12).

    Complete linkage on the condensed matrix, with optimal leaf ordering (scipy). The diagonal is
    ignored. Feed the result to ``scipy.cluster.hierarchy.dendrogram`` or ``fcluster``.
    """
    d = _check_distance_matrix(distance, "distance")
    return linkage(squareform(d, checks=False), method="complete", optimal_ordering=True)


# --- A13: feature importance ---


def _pair_codes(values: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(K,) factor values, pair indices -> ordinal code of each pair's sorted string pair."""
    values = values.astype(str)
    a, b = values[i], values[j]
    first = np.where(a <= b, a, b)
    second = np.where(a <= b, b, a)
    pairs = np.char.add(np.char.add(first, " | "), second)
    return pd.factorize(pairs, sort=True)[0].astype(np.float64)


def feature_importance(distance: np.ndarray, configurations: pd.DataFrame,
                       factors: Sequence[str] = IMPORTANCE_FACTORS, *,
                       to_geodesic: np.ndarray | None = None, n_repeats: int = 10,
                       seed: int = 0, estimator=None) -> pd.DataFrame:
    """(K, K) configuration distances, K configurations -> long table [factor, repeat,
    importance] of permutation importances for predicting pair distances (A13).

    Every pair a < b of configurations is one training row. Each factor gives one feature: the
    pair of its two values as strings, sorted so that (x, y) and (y, x) are the same category,
    then ordinal-encoded (one column per factor, so permuting a column permutes exactly that
    factor). With ``to_geodesic`` ((K,), e.g. ``configuration_to_geodesic``) the numeric
    features to_geodesic_first / to_geodesic_second (d2geod of a and b) are added and reported
    too. Target: the pair's distance.

    In place of AutoGluon: scikit-learn's ``GradientBoostingRegressor(random_state=seed)`` (or a
    clone of ``estimator``) fitted on all pairs, then ``sklearn.inspection.permutation_importance``
    on the same data (as the authors, training data), ``n_repeats`` shuffles, score R^2: an
    importance is the drop in R^2 when that feature is shuffled. The authors' deduplication of
    rows with equal targets is not needed (pairs are taken once, a < b) and not done (it would also
    drop genuine ties). A factor with one value across the configurations carries no information:
    it is left out of the model and reported with importance 0 in every repeat.
    """
    d = _check_distance_matrix(distance, "distance")
    k = d.shape[0]
    if not isinstance(configurations, pd.DataFrame) or len(configurations) != k:
        raise ValueError(f"configurations must be a DataFrame with one row per row of distance "
                         f"({k}), got {len(configurations)} rows")
    missing = [f for f in factors if f not in configurations.columns]
    if missing:
        raise ValueError(f"configurations lack the factor column(s) {missing}")
    if k < 3:
        raise ValueError(f"feature importance needs at least 3 configurations, got {k}")
    if isinstance(n_repeats, bool) or int(n_repeats) != n_repeats or n_repeats < 1:
        raise ValueError(f"n_repeats must be an integer >= 1, got {n_repeats!r}")
    i, j = np.triu_indices(k, 1)
    features: dict[str, np.ndarray] = {}
    for factor in factors:
        values = configurations[factor].to_numpy()
        if pd.Series(values).astype(str).nunique() > 1:
            features[factor] = _pair_codes(values, i, j)
    if to_geodesic is not None:
        g = np.asarray(to_geodesic, dtype=np.float64)
        if g.shape != (k,) or not np.isfinite(g).all():
            raise ValueError(f"to_geodesic must be a finite array of shape ({k},), one value per "
                             f"configuration, got shape {g.shape}")
        features["to_geodesic_first"], features["to_geodesic_second"] = g[i], g[j]
    names = [*factors, *(f for f in features if f not in factors)]
    importances = {name: np.zeros(int(n_repeats)) for name in names}
    if features:
        # scikit-learn is imported here only: about a second that no other analysis needs.
        from sklearn.base import clone
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.inspection import permutation_importance

        x = np.column_stack(list(features.values()))
        y = d[i, j]
        model = (GradientBoostingRegressor(random_state=seed) if estimator is None
                 else clone(estimator))
        model.fit(x, y)
        result = permutation_importance(model, x, y, n_repeats=int(n_repeats),
                                        random_state=seed)
        for name, row in zip(features, result.importances, strict=True):
            importances[name] = row
    return pd.DataFrame({
        "factor": np.repeat(names, int(n_repeats)),
        "repeat": np.tile(np.arange(int(n_repeats)), len(names)),
        "importance": np.concatenate([importances[name] for name in names]),
    })


# --- D14: one point per trajectory ---


def trajectory_embedding(distances: np.ndarray, n_components: int = 10) -> Embedding:
    """(R, R) trajectory distances (mean over progress, A8) -> InPCA Embedding, one point per
    trajectory (D14), with all eigenvalues and the explained stress
    (``lowdim.geometry.inpca.inpca``)."""
    distances = np.asarray(distances)
    if distances.ndim == 3:
        raise ValueError("distances must be the (R, R) trajectory distance matrix: pass "
                         "trajectory_distances(tensor), not the (G, R, R) tensor")
    if distances.ndim == 2 and distances.shape[0] == distances.shape[1] and distances.size:
        diag = np.abs(np.diagonal(distances)).max()
        if np.isfinite(diag) and diag > 1e-12 * max(np.abs(distances).max(), 1e-300):
            raise ValueError(f"distances must have a zero diagonal (a trajectory is at distance "
                             f"0 from itself), got max |diagonal| = {diag:.3g}")
    return inpca(distances, n_components=n_components)


# --- A15, D9: outliers ---


def _bin_labels(edges: np.ndarray) -> list[str]:
    spans = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return [*spans, f">{edges[-1]:g}"]


def outlier_counts(index: pd.DataFrame, *, loss_cut: float = 4.0,
                   epoch_bins: Sequence[float] = EPOCH_BINS) -> pd.DataFrame:
    """Index table (one row per checkpoint) -> long table of outlier counts (A15, D9).

    Over rows of kind "run" (columns train_loss, epoch, arch, optimizer), a checkpoint is an
    outlier when train_loss >= loss_cut (CE >= 4, i.e. d_B(P, truth) >= 2). Epoch bins follow the
    edges: "0-5" is [0, 5], then (5, 10], ..., (100, 150] and ">150" = (150, inf). One row per
    (architecture, optimizer) present and epoch bin, zero counts included: columns epoch_bin (an
    ordered categorical), arch, optimizer, outliers, checkpoints.
    """
    required = ("kind", "train_loss", "epoch", "arch", "optimizer")
    if not isinstance(index, pd.DataFrame):
        raise ValueError(f"index must be a pandas DataFrame, got {type(index).__name__}")
    missing = [c for c in required if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks the column(s) {missing}: pass the analysis set's index "
                         "table (one row per checkpoint)")
    edges = np.asarray(epoch_bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 1 or not np.isfinite(edges).all() or np.any(
            np.diff(edges) <= 0):
        raise ValueError(f"epoch_bins must be finite, strictly increasing edges, got {epoch_bins}")
    if not np.isfinite(loss_cut):
        raise ValueError(f"loss_cut must be a finite number, got {loss_cut}")
    runs = index[index["kind"] == "run"]
    epoch = pd.to_numeric(runs["epoch"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    loss = pd.to_numeric(runs["train_loss"], errors="coerce").to_numpy(dtype=float,
                                                                       na_value=np.nan)
    if np.isnan(epoch).any() or np.isnan(loss).any():
        raise ValueError("index has run rows without epoch or train_loss")
    if len(runs) and epoch.min() < edges[0]:
        raise ValueError(f"epoch {epoch.min():g} lies below the first bin edge {edges[0]:g}")
    labels = _bin_labels(edges)
    bins = pd.cut(epoch, bins=[*edges, np.inf], labels=labels, right=True, include_lowest=True)
    frame = pd.DataFrame({"epoch_bin": bins, "arch": runs["arch"].to_numpy(),
                          "optimizer": runs["optimizer"].to_numpy(),
                          "outliers": (loss >= loss_cut).astype(int), "checkpoints": 1})
    combos = frame[["arch", "optimizer"]].drop_duplicates().sort_values(["arch", "optimizer"])
    full = combos.merge(pd.DataFrame({"epoch_bin": pd.Categorical(labels, categories=labels,
                                                                  ordered=True)}), how="cross")
    counts = frame.groupby(["arch", "optimizer", "epoch_bin"], observed=True)[
        ["outliers", "checkpoints"]].sum().reset_index()
    out = full.merge(counts, on=["arch", "optimizer", "epoch_bin"], how="left")
    out[["outliers", "checkpoints"]] = out[["outliers", "checkpoints"]].fillna(0).astype(int)
    out["epoch_bin"] = pd.Categorical(out["epoch_bin"], categories=labels, ordered=True)
    return out[["epoch_bin", "arch", "optimizer", "outliers", "checkpoints"]]


# --- summary numbers for the metrics file ---


def summary_metrics(tensor: np.ndarray, table: pd.DataFrame, grid: np.ndarray = PROGRESS_GRID,
                    *, runs: np.ndarray | None = None) -> dict[str, float]:
    """(G, R, R) tensor, table -> {"tube_width_median_at_0.5", "between_within_arch_ratio"}:
    ``median_tube_width`` of the tensor and ``between_within_ratio`` of the selected runs'
    trajectory distances (A8, the tensor's mean over progress)."""
    tensor = _tensor(tensor)
    table = _check_table(table, tensor.shape[1], ("arch",))
    grid = _check_grid_length(grid, tensor.shape[0])
    rows = _run_rows(table, runs)
    run_ids = table.loc[rows, "run_id"].to_numpy() if "run_id" in table.columns else None
    return {"tube_width_median_at_0.5": median_tube_width(tensor, table, grid, runs=runs),
            "between_within_arch_ratio": between_within_ratio(
                _mean(tensor)[np.ix_(rows, rows)],
                table.loc[rows, "arch"].astype(str).to_numpy(), run_ids)}


def median_tube_width(tensor: np.ndarray, table: pd.DataFrame,
                      grid: np.ndarray = PROGRESS_GRID, *,
                      runs: np.ndarray | None = None) -> float:
    """(G, R, R) tensor, table -> median over the selected runs of the tube width (A10) at the
    grid point nearest 0.5; NaN without runs. Only that grid point is read: a (1, R, R) tensor
    at it gives the same number."""
    tensor = _tensor(tensor)
    grid = _check_grid_length(grid, tensor.shape[0])
    mid = float(grid[np.argmin(np.abs(grid - 0.5))])
    widths = tube_width(tensor, table, grid, runs=runs)
    at_mid = widths.loc[widths["progress"] == mid, "distance"]
    return float(at_mid.median()) if len(at_mid) else float("nan")


def between_within_ratio(distances: np.ndarray, arch: np.ndarray,
                         run_ids: np.ndarray | None = None) -> float:
    """(R, R) trajectory distances between runs (A8), (R,) architecture of each, optional (R,)
    run ids -> mean distance over pairs of distinct runs of different architectures divided by
    the mean over pairs of the same architecture. Above 1: architecture separates trajectories.

    Runs with one (non-null) ``run_id`` are copies of one run (a bootstrap that drew it twice,
    ``lowdim.analysis.intervals``): no pair of them counts. Nothing to average (one
    architecture only, or one run per architecture) gives NaN; a zero within-architecture mean
    gives inf.
    """
    distances = np.asarray(distances, dtype=np.float64)
    arch = np.asarray(arch)
    if distances.ndim != 2 or distances.shape != (arch.size, arch.size):
        raise ValueError(f"distances must be ({arch.size}, {arch.size}), one row per run of "
                         f"arch, got shape {distances.shape}")
    i, j = np.triu_indices(arch.size, 1)
    if run_ids is not None:
        ids = np.asarray(run_ids, dtype=object)
        if ids.shape != arch.shape:
            raise ValueError(f"run_ids must have shape {arch.shape}, got {ids.shape}")
        distinct = ~((ids[i] == ids[j]) & pd.notna(ids[i]))
        i, j = i[distinct], j[distinct]
    same = arch[i] == arch[j]
    between = distances[i, j][~same].mean() if (~same).any() else np.nan
    within = distances[i, j][same].mean() if same.any() else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(between) / np.float64(within))
