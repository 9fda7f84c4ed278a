"""The analysis set: every checkpoint of every run, plus the reference points, as one index
table and one stacked probability array per prediction space (docs/study.md A1, A3)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lowdim.atomic import atomic_directory
from lowdim.distances import distance_to_points, ignorance_point, truth_point
from lowdim.geometry import geodesic
from lowdim.grid import RunSpec
from lowdim.runs import load_predictions, read_meta
from lowdim.train import SPACES

INDEX = "index.parquet"
SPEC_COLUMNS = ("run_id", "arch", "optimizer", "batch_size", "base_lr", "lr", "weight_decay",
                "augment", "init", "epochs", "seed")
INT_COLUMNS = ("batch_size", "epochs", "seed", "checkpoint", "step")
# A log of an exact zero probability would be -inf; metrics of reference points clip here.
_LOG_FLOOR = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class AnalysisSet:
    """One row per run checkpoint or reference point, and the probabilities of each row."""

    index: pd.DataFrame               # columns: row, kind, SPEC_COLUMNS, checkpoint, step, ...
    probs: Mapping[str, np.ndarray]   # space -> (M, N, C) float32, rows in index order
    excluded: tuple[str, ...] = ()    # diverged runs left out


def renormalize(probs: np.ndarray) -> np.ndarray:
    """float32 probabilities whose last axis sums to 1 (float16 storage loses ~1e-3)."""
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
    """Stack every ok run of `specs` from the store and append the reference points."""
    metas = [_require_meta(store, s) for s in specs]
    kept = [m for m in metas if m["status"] == "ok"]
    excluded = tuple(m["run_id"] for m in metas if m["status"] != "ok")
    ref_rows, ref_probs = reference_points(labels, num_classes, geodesic_points)
    index = pd.concat([*(run_rows(m) for m in kept), ref_rows], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    for column in INT_COLUMNS:
        index[column] = index[column].astype("Int64")
    probs = {}
    for space in SPACES:
        stacked = [renormalize(load_predictions(store, m["run_id"], space)) for m in kept]
        probs[space] = np.concatenate([*stacked, ref_probs[space]])
    return AnalysisSet(index=index, probs=probs, excluded=excluded)


def _require_meta(store: str | Path, spec: RunSpec) -> dict:
    meta = read_meta(store, spec.run_id)
    if meta is None:
        raise FileNotFoundError(f"run {spec.run_id} is missing from {store}: run the train stage "
                                "(dvc repro train) before the predictions stage")
    return meta


def save_analysis_set(analysis: AnalysisSet, directory: str | Path) -> None:
    """Write index.parquet and <space>.npy atomically (temporary directory, then rename)."""
    with atomic_directory(directory) as tmp:
        analysis.index.to_parquet(tmp / INDEX, index=False)
        for space, probs in analysis.probs.items():
            np.save(tmp / f"{space}.npy", probs)


def load_index(directory: str | Path) -> pd.DataFrame:
    """The index table of an analysis set."""
    return pd.read_parquet(Path(directory) / INDEX)


def load_probs(directory: str | Path, space: str) -> np.ndarray:
    """Stacked probabilities of one space, memory-mapped: (M, N, C) float32."""
    return np.load(Path(directory) / f"{space}.npy", mmap_mode="r", allow_pickle=False)


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
