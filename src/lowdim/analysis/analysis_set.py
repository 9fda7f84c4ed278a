"""The analysis set: every checkpoint of every run, plus the reference points, as one index
table and one stacked probability array per prediction space (docs/study.md A1, A3).

The stage runs ``write_analysis_set``: the stacked (M, N, C) float32 arrays are written to disk
run by run (each run renormalized in blocks), never assembled in memory, after
``plan_analysis_set`` has stated the disk and memory they need and ``check_predictions_disk``
has checked the disk. ``build_analysis_set`` is the same in memory, for small sets and tests.
The files and their readers live in ``lowdim.store.analysis_set``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lowdim.geometry.distances import distance_to_points, ignorance_point, truth_point
from lowdim.geometry.geodesic import geodesic
from lowdim.store.analysis_set import INDEX, INT_COLUMNS, SPEC_COLUMNS, AnalysisSet, load_probs
from lowdim.store.arrays import NpyFile, check_disk_space, human_bytes
from lowdim.store.atomic import atomic_directory
from lowdim.store.records import SPACES, RunSpec
from lowdim.store.runs import load_predictions, read_meta, stored_predictions

# A log of an exact zero probability would be -inf; metrics of reference points clip here.
_LOG_FLOOR = float(np.finfo(np.float32).tiny)


def renormalize(probs: np.ndarray) -> np.ndarray:
    """float32 probabilities whose last axis sums to 1 (rounding leaves a sum a few float32 ulps
    from 1; the old float16 store, ~1e-3)."""
    p = np.asarray(probs, dtype=np.float32)
    return p / p.sum(axis=-1, keepdims=True)


def loss_and_error(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and 0/1 error of each point: (M,N,C), (N,) -> (M,), (M,)."""
    p_true = np.take_along_axis(probs, labels[None, :, None], axis=2)[..., 0]
    loss = -np.log(np.maximum(p_true, _LOG_FLOOR)).mean(axis=1)
    error = (probs.argmax(axis=2) != labels[None, :]).mean(axis=1)
    return loss, error


def run_rows(meta: Mapping) -> pd.DataFrame:
    """Index rows of one run's checkpoints, from its meta.json."""
    spec = meta["spec"]
    n = len(meta["steps"])
    rows = {"kind": ["run"] * n, **{c: [meta["run_id"] if c == "run_id" else spec[c]] * n
                                   for c in SPEC_COLUMNS},
            "checkpoint": np.arange(n), "step": meta["steps"], "epoch": meta["epochs"]}
    for space in SPACES:
        rows[f"{space}_loss"] = meta["loss"][space]
        rows[f"{space}_error"] = meta["error"][space]
    return pd.DataFrame(rows)


def reference_points(labels: Mapping[str, np.ndarray], num_classes: int,
                     geodesic_points: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Ignorance, truth and the geodesic between them (t = 1/n, ..., 1): rows and probabilities."""
    t = np.linspace(1.0 / geodesic_points, 1.0, geodesic_points)
    kinds = ["ignorance", "truth"] + ["geodesic"] * geodesic_points
    rows = pd.DataFrame({"kind": kinds, "t": np.concatenate([[0.0, 1.0], t])})
    probs = {}
    for space, y in labels.items():
        p0 = ignorance_point(len(y), num_classes)
        p1 = truth_point(y, num_classes)
        probs[space] = np.concatenate([p0[None], p1[None], geodesic(p0, p1, t)]).astype(np.float32)
        rows[f"{space}_loss"], rows[f"{space}_error"] = loss_and_error(probs[space], y)
    return rows, probs


def build_analysis_set(store: str | Path, specs: Sequence[RunSpec],
                       labels: Mapping[str, np.ndarray], num_classes: int,
                       geodesic_points: int) -> AnalysisSet:
    """Stack every ok run of `specs` from the store and append the reference points (in memory:
    for large grids ``write_analysis_set`` streams the same arrays to disk)."""
    kept, excluded = _split_runs(store, specs)
    ref_rows, ref_probs = reference_points(labels, num_classes, geodesic_points)
    index = _index(kept, ref_rows)
    probs = {}
    for space in SPACES:
        stacked = [renormalize(load_predictions(store, m["run_id"], space)) for m in kept]
        probs[space] = np.concatenate([*stacked, ref_probs[space]])
    return AnalysisSet(index=index, probs=probs, excluded=excluded)


def _split_runs(store: str | Path, specs: Sequence[RunSpec]) -> tuple[list[dict], tuple[str, ...]]:
    """meta.json of the ok runs of `specs`, and the ids of the diverged ones. Runs of the old
    float16 format are read as they are; a format this version cannot read stops here."""
    metas = [_require_meta(store, s) for s in specs]
    for meta in metas:
        stored_predictions(meta)
    kept = [m for m in metas if m["status"] == "ok"]
    return kept, tuple(m["run_id"] for m in metas if m["status"] != "ok")


def _index(kept: Sequence[Mapping], ref_rows: pd.DataFrame) -> pd.DataFrame:
    index = pd.concat([*(run_rows(m) for m in kept), ref_rows], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    for column in INT_COLUMNS:
        index[column] = index[column].astype("Int64")
    return index


@dataclass(frozen=True)
class PredictionsPlan:
    """What the predictions stage will write for a grid, stated before it starts."""

    runs: int                  # ok runs stacked
    points: int                # M: checkpoints of those runs plus the reference rows
    samples: dict[str, int]    # N per space (all samples: the distances subsample later)
    classes: int               # C
    disk_bytes: int            # the stacked float32 arrays and the index
    ram_bytes: int             # one shard of rows, the reference rows, the index

    def describe(self) -> str:
        spaces = ", ".join(f"{s} N = {n}" for s, n in self.samples.items())
        return (f"predictions: {self.runs} runs, M = {self.points} points, {spaces}, "
                f"C = {self.classes}: disk {human_bytes(self.disk_bytes)} (float32), memory about "
                f"{human_bytes(self.ram_bytes)} plus the interpreter")


def plan_analysis_set(store: str | Path, specs: Sequence[RunSpec],
                      labels: Mapping[str, np.ndarray], num_classes: int, geodesic_points: int,
                      max_block_bytes: int = 256 * 2**20) -> PredictionsPlan:
    """The disk and memory ``write_analysis_set`` needs, from the runs' meta.json alone."""
    kept, _ = _split_runs(store, specs)
    return plan_predictions(len(kept), sum(len(m["steps"]) for m in kept),
                            {space: len(y) for space, y in labels.items()}, num_classes,
                            geodesic_points, max_block_bytes)


def plan_predictions(runs: int, checkpoints: int, samples: Mapping[str, int], num_classes: int,
                     geodesic_points: int, max_block_bytes: int = 256 * 2**20
                     ) -> PredictionsPlan:
    """The disk and memory of an analysis set of `runs` runs holding `checkpoints` checkpoints
    in all, with N = `samples[space]` samples per space (``plan_analysis_set`` without a store:
    ``lowdim.tools.plan`` states it before anything is trained)."""
    points = checkpoints + 2 + geodesic_points
    samples = dict(samples)
    row = {space: n * num_classes * 4 for space, n in samples.items()}
    refs = max(row.values()) * (2 + geodesic_points) * 3  # float32 rows and a float64 geodesic
    return PredictionsPlan(
        runs=runs, points=points, samples=samples, classes=num_classes,
        disk_bytes=sum(points * r + 4096 for r in row.values()) + 400 * points,
        ram_bytes=int(min(max_block_bytes, points * max(row.values())) * 3 + refs
                      + 2000 * points),
    )


def check_predictions_disk(plan: PredictionsPlan, directory: str | Path) -> None:
    """Stop (OSError) when the stacked arrays cannot fit beside the old product."""
    check_disk_space(
        plan.disk_bytes, directory, f"the predictions stage ({plan.points} points x "
        f"{' + '.join(str(n) for n in plan.samples.values())} samples x {plan.classes} classes, "
        "float32)",
        "or stack fewer numbers: evaluate fewer samples (data.eval_train_size / "
        "data.eval_test_size) or keep fewer checkpoints or runs. (distances.sample_step thins "
        "the samples only in the distances stage, embedding.landmarks only the embedding.)")


def write_analysis_set(store: str | Path, specs: Sequence[RunSpec],
                       labels: Mapping[str, np.ndarray], num_classes: int, geodesic_points: int,
                       directory: str | Path, *, max_block_bytes: int = 256 * 2**20,
                       progress: bool = False) -> AnalysisSet:
    """``build_analysis_set`` streamed to `directory` shard by shard, never whole in memory.

    Each run's stored probabilities (float32; float16 in a run of the old format) are
    renormalized in float32 in blocks of at most ``max_block_bytes`` and written (pwrite) into
    ``<space>.npy`` at the run's rows; then the reference rows and ``index.parquet``. The bytes
    equal ``save_analysis_set`` of ``build_analysis_set`` (renormalization is per row). Written
    atomically; returns the set with its arrays memory-mapped from `directory`.
    """
    kept, excluded = _split_runs(store, specs)
    ref_rows, ref_probs = reference_points(labels, num_classes, geodesic_points)
    index = _index(kept, ref_rows)
    with atomic_directory(directory) as tmp:
        for space in SPACES:
            shape = (len(index), len(labels[space]), num_classes)
            out = NpyFile.create(tmp / f"{space}.npy", shape, np.float32)
            row = 0
            for meta in tqdm(kept, desc=f"stacking {space}", disable=not progress):
                run = load_predictions(store, meta["run_id"], space)
                if run.shape[1:] != shape[1:]:
                    raise ValueError(f"run {meta['run_id']} has {space} predictions of shape "
                                     f"{run.shape[1:]}, expected {shape[1:]} (N, C): retrain it")
                step = max(1, max_block_bytes // max(1, 12 * int(np.prod(shape[1:]))))
                for start in range(0, len(run), step):
                    out.write_rows(row + start, renormalize(run[start:start + step]))
                row += len(run)
                del run  # unmapped before the next run
            out.write_rows(row, ref_probs[space])
        index.to_parquet(tmp / INDEX, index=False)
    probs = {space: load_probs(directory, space) for space in SPACES}
    return AnalysisSet(index=index, probs=probs, excluded=excluded)


def _require_meta(store: str | Path, spec: RunSpec) -> dict:
    meta = read_meta(store, spec.run_id)
    if meta is None:
        raise FileNotFoundError(f"run {spec.run_id} is missing from {store}: run the train stage "
                                "(dvc repro train) before the predictions stage")
    return meta


def reference_distances(probs: Mapping[str, np.ndarray], index: pd.DataFrame, *,
                        bc_floor: float) -> pd.DataFrame:
    """d_B of every row to the truth and ignorance rows, on all samples of each space.

    Columns `row`, `<space>_to_truth`, `<space>_to_ignorance`; (M, N, C) arrays in index order.
    `bc_floor` is the distances stage's clamp, so this table and the matrices agree.
    """
    table = pd.DataFrame({"row": index["row"].to_numpy()})
    for space, p in probs.items():
        for kind in ("truth", "ignorance"):
            point = np.asarray(p[_single_row(index, kind)])
            table[f"{space}_to_{kind}"] = distance_to_points(p, point, bc_floor=bc_floor)
    return table


def _single_row(index: pd.DataFrame, kind: str) -> int:
    rows = index.index[index["kind"] == kind]
    if len(rows) != 1:
        raise ValueError(f"the analysis set must hold exactly one {kind} row, found {len(rows)}")
    return int(rows[0])
