"""Averaging methods (docs/study.md A9, D19): the seeds of one configuration averaged at equal
checkpoint index by six methods, embedded jointly with every run checkpoint, P0 and P*.

The configuration is `studies.averaging.configuration` (grid axes -> values; exactly one
configuration of the analysis set must have them all: ``select_configuration``), or its `arch`
and `optimizer` (the first configuration of that pair with two or more runs:
``configuration_runs``). A configuration is the runs whose ids differ only in the seed; its axes
are the index's columns, and the precision, schedule and label smoothing its run ids name
(``run_options``). The metrics record every axis of the configuration averaged.

The averages are those of `lowdim.geometry.centroids` (AM, GM, HM, square-root mean, Bhattacharyya
and Jeffreys centroids), each renormalized per sample. For each prediction space the stored run x
run matrix of the distances stage is reused and only the averages' rows are computed, with the same
`distances` settings; InPCA of the joint matrix with the `embedding` settings. For each average,
its progress (A6 'mean' mode, closed form) and its accuracy (the mean probability of the true
class, as the authors) at every checkpoint.

**Scale.** The joint matrix is a `common.JointMatrix`: the base rows' block of the stored D read
by slabs (`common.Submatrix`), and the 6 K rows of the averages, (6 K, M) floats, in memory; the
base rows' probabilities are read by blocks (`common.Rows`) for the distances to the averages.
Memory: O(6 K M + S K N C) plus one slab. With the dense solver (``auto`` at M + 6 K <= 2,000)
the joint matrix is formed whole: ``8 (M + 6 K)^2`` bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lowdim.analysis.trajectories import config_key, reference_rows
from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.studies.averaging import (
    CONFIGURATION_AXES,
    AveragingConfig,
    choose_configuration,
    shown,
)
from lowdim.geometry.centroids import AVERAGING_METHODS, average_trajectory
from lowdim.geometry.distances import bhattacharyya, check_probabilities
from lowdim.geometry.geodesic import progress_closed_form
from lowdim.store.lazy import Submatrix
from lowdim.store.records import OPTIONAL_DEFAULTS, SPACES
from lowdim.studies.common import (
    JointMatrix,
    Rows,
    StudyResult,
    check_spaces,
    distance_options,
    embed,
)


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


SEED_SUFFIX = re.compile(r"_s-?[0-9]+$")  # the seed, last in a run id (RunSpec.run_id)
OPTIONS = re.compile(r"_ep[0-9]+((?:_[^_]+)*)$")  # what follows the epochs, seed removed


def configuration_id(run_id: str) -> str:
    """The run id less its seed: the same for every seed of one configuration."""
    return SEED_SUFFIX.sub("", run_id)


def run_options(run_id: str) -> dict[str, Any]:
    """The precision, schedule and label smoothing a run id names after its epochs (only those
    that are not the defaults: fp32, cosine, 0; `RunSpec.run_id`), defaults for the others."""
    options = dict(OPTIONAL_DEFAULTS)
    match = OPTIONS.search(configuration_id(run_id))
    for token in (match.group(1).split("_")[1:] if match else []):
        if token.startswith("fp"):
            options["precision"] = token
        elif re.fullmatch(r"ls[0-9.e+-]+", token):
            options["label_smoothing"] = float(token[2:])
        else:
            options["schedule"] = token
    return options


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def index_configurations(index: pd.DataFrame) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The configurations of the analysis set's runs, sorted by configuration id: their axes
    (the index's columns of `CONFIGURATION_AXES`, and `run_options`) and their run ids (sorted)."""
    runs = index[index["kind"] == "run"].drop_duplicates("run_id")
    columns = [axis for axis in CONFIGURATION_AXES if axis in runs.columns]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in runs.to_dict("records"):
        by_id.setdefault(configuration_id(row["run_id"]), []).append(row)
    configurations, run_ids = [], []
    for _, rows in sorted(by_id.items()):
        first = rows[0]
        configurations.append({**{axis: _plain(first[axis]) for axis in columns},
                               **run_options(first["run_id"])})
        run_ids.append(sorted(row["run_id"] for row in rows))
    return configurations, run_ids


def select_configuration(index: pd.DataFrame, selection: Mapping[str, Any]) -> list[str]:
    """Run ids (sorted) of the one configuration that has every value of `selection` (axis ->
    value, `studies.averaging.configuration`); an error names the values to choose from when
    none or several have them, or when it has fewer than two runs."""
    configurations, run_ids = index_configurations(index)
    chosen = choose_configuration(selection, configurations, "studies.averaging.configuration",
                                  "the analysis set's runs")
    if len(run_ids[chosen]) < 2:
        raise ValueError(f"studies.averaging.configuration names {run_ids[chosen]}, a "
                         "configuration with one run: averaging needs two or more; add seeds to "
                         "its grid block (or check which runs diverged)")
    return run_ids[chosen]


def configuration_axes(index: pd.DataFrame, run_id: str) -> dict[str, str]:
    """Every axis of `run_id`'s configuration (as `index_configurations`), values as run ids
    print them: the metrics' record of what was averaged (text, not numbers to compare)."""
    configurations, run_ids = index_configurations(index)
    found = next(conf for conf, ids in zip(configurations, run_ids, strict=True)
                 if run_id in ids)
    return {axis: shown(value) for axis, value in found.items()}


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


def stacked_averages(trajectories: np.ndarray, *, bhattacharyya_iterations: int = 100
                     ) -> np.ndarray:
    """(S, K, N, C) -> (6 K, N, C): the six averaging methods of A9, in ``AVERAGING_METHODS``'
    order, each method's K averages written into the one array as it is computed (a dict of six
    arrays and their stack would hold them twice: 0.8 GB at K = 66, N = 25,000)."""
    options = {"bhattacharyya": {"max_iter": bhattacharyya_iterations}}
    k = trajectories.shape[1]
    stacked = np.empty((len(AVERAGING_METHODS) * k, *trajectories.shape[2:]))
    for i, method in enumerate(AVERAGING_METHODS):
        stacked[i * k:(i + 1) * k] = average_trajectory(trajectories, method,
                                                        **options.get(method, {}))
    return stacked


def by_method(stacked: np.ndarray) -> dict[str, np.ndarray]:
    """(6 K, N, C) stacked averages -> {method: (K, N, C)}, views of it."""
    return dict(zip(AVERAGING_METHODS, np.split(stacked, len(AVERAGING_METHODS)), strict=True))


def true_class_probability(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(M, N, C) models, (N, C) one-hot truth -> (M,) mean probability of the true class.

    The accuracy of A9's averaging figure (labelled "1 - validation error" by the authors).
    """
    probs = check_probabilities(probs, "probs", 3)
    truth = check_probabilities(truth, "truth", 2)
    if probs.shape[1:] != truth.shape:
        raise ValueError(f"truth must have shape (N, C) = {probs.shape[1:]}, got {truth.shape}")
    return np.einsum("mnc,nc->m", np.asarray(probs, dtype=np.float64), truth) / truth.shape[0]


def curves_table(space: str, averages: Mapping[str, np.ndarray], trajectories: np.ndarray,
                 run_ids: list[str], p0: np.ndarray, p1: np.ndarray) -> pd.DataFrame:
    """Progress and accuracy at every checkpoint of each average ({method: (K, N, C)}) and of
    each averaged run ((S, K, N, C) `trajectories`): space, method, run_id, checkpoint,
    progress, accuracy; method is "run" for the runs, run_id None for the averages."""
    curves = [(m, None, models) for m, models in averages.items()]
    curves += [("run", r, t) for r, t in zip(run_ids, trajectories, strict=True)]
    return pd.concat([pd.DataFrame({
        "space": space, "method": method, "run_id": run_id,
        "checkpoint": np.arange(len(models)),
        "progress": progress_closed_form(models, p0, p1),
        "accuracy": true_class_probability(models, p1)}) for method, run_id, models in curves],
        ignore_index=True)


def points_table(index: pd.DataFrame, base_rows: np.ndarray, methods: list[str],
                 checkpoints: int) -> pd.DataFrame:
    """The rows of the joint embedding: the base rows of the index, then each method's
    averages at checkpoints 0..K-1 (kind "average", row -1)."""
    return pd.concat([
        index.loc[base_rows, ["row", "kind", "run_id", "arch", "optimizer", "checkpoint"]],
        pd.DataFrame({"row": -1, "kind": "average", "method": np.repeat(methods, checkpoints),
                      "checkpoint": np.tile(np.arange(checkpoints), len(methods))}),
    ], ignore_index=True)


def final_metrics(curves: pd.DataFrame, methods: list[str]) -> tuple[dict, pd.DataFrame]:
    """Per space and method, the progress and accuracy at the last checkpoint: the metrics
    ({space: {method: {final_progress, final_accuracy}}}, rounded) and the table to show."""
    last = curves[curves["checkpoint"] == curves["checkpoint"].max()]
    final = (last[last["method"] != "run"]
             .pivot(index="method", columns="space", values=["progress", "accuracy"])
             .loc[methods])
    spaces = list(dict.fromkeys(curves["space"]))
    metrics = {space: {m: {"final_progress": round(float(final.loc[m, ("progress", space)]), 6),
                           "final_accuracy": round(float(final.loc[m, ("accuracy", space)]), 6)}
                       for m in methods} for space in spaces}
    return metrics, final


def run_averaging(study: AveragingConfig, distance_settings: DistancesConfig,
                  embedding_settings: EmbeddingConfig, index: pd.DataFrame,
                  probs: Mapping[str, np.ndarray], distances: Mapping[str, np.ndarray], *,
                  distance_device: str | None = None) -> StudyResult:
    """The averaging study on the analysis set (`index`, per space (M, N, C) `probs`) and the
    distances stage's (M, M) matrices (`distances`; memory-mapped is fine).

    Products: `<space>_embedding` (joint InPCA), `points` (its rows), `curves` (progress and
    accuracy per checkpoint), `runs` (the averaged run ids); metrics: final progress and accuracy
    per space and method, `averaged_runs` and `configuration` (its every axis, as text);
    summary: the final values.
    """
    check_spaces("probs", probs, SPACES)
    check_spaces("distances", distances, SPACES)
    run_ids = (select_configuration(index, study.configuration)
               if study.configuration is not None
               else configuration_runs(index, study.arch, study.optimizer))
    p0_row, p1_row = reference_rows(index)
    base_rows = index.index[index["kind"].isin(["run", "ignorance", "truth"])].to_numpy()
    options = distance_options(distance_settings, distance_device).kwargs()
    products, tables = {}, []
    for space in SPACES:
        p0, p1 = np.asarray(probs[space][p0_row]), np.asarray(probs[space][p1_row])
        trajectories = stack_runs(index, probs[space], run_ids)  # (S, K, N, C)
        stacked = stacked_averages(  # (6 K, N, C), methods in order
            trajectories, bhattacharyya_iterations=study.bhattacharyya_iterations)
        tables.append(curves_table(space, by_method(stacked), trajectories, run_ids, p0, p1))
        d_base = Submatrix(distances[space], base_rows)  # read by slabs, never whole
        cross = bhattacharyya(stacked, Rows(probs[space], base_rows), **options)
        joint = JointMatrix(d_base, cross, bhattacharyya(stacked, **options))
        products[f"{space}_embedding"] = embed(joint, embedding_settings,
                                               embedding_settings.n_components)
    methods = list(AVERAGING_METHODS)
    curves = pd.concat(tables, ignore_index=True)
    products.update({"points": points_table(index, base_rows, methods, trajectories.shape[1]),
                     "curves": curves, "runs": pd.DataFrame({"run_id": run_ids})})
    metrics, final = final_metrics(curves, methods)
    metrics["averaged_runs"] = len(run_ids)  # their ids: the `runs` product
    metrics["configuration"] = configuration_axes(index, run_ids[0])
    return StudyResult(products=products, metrics=metrics, summary=final.round(4))
