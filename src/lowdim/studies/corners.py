"""Initialization corners (docs/study.md B7, D16): runs that first reach a far corner of prediction
space, then train on the true labels, embedded with the normal runs of the same architecture.

Phase 1 trains on

- ``uniform``: every training label replaced by a uniform random class drawn with
  ``RandomState(iseed)`` (the authors' relabelling); the model lands near the one-hot corner of the
  relabelled evaluation labels, so each iseed has its own "truth" and its own geodesic from
  ignorance to it;
- ``subsample``: a small class-balanced subset (the same count of every class, drawn with
  ``RandomState(iseed)``) with the true labels.

Phase 2 continues from the phase-1 weights on all training data with the true labels, a fresh
optimizer and a fresh cosine schedule; its checkpoint 0 is phase 1's last checkpoint.

The evaluation subsets are the main pipeline's: the "train" space is a subset of the training
split, so its relabelled labels are the relabelled training labels at those positions; the test
split gets its own draw from the same RandomState, after the training draw.

Only the "train" prediction space is analysed here. Loss and error columns of the joint set are
always taken against the true labels. `run_corners` is the whole study (notebook 70): training
on `train.device`, the joint set's distances and InPCA with the `distances` and `embedding`
settings, and the convergence analysis.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lowdim.analysis.analysis_set import loss_and_error, renormalize
from lowdim.analysis.trajectories import progress_grid
from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.models import ModelsConfig
from lowdim.config.studies.corners import CornersConfig
from lowdim.config.train import TrainConfig
from lowdim.data import Prepared
from lowdim.device import resolve_device
from lowdim.geometry.distances import DistanceSettings, bhattacharyya, truth_point
from lowdim.geometry.geodesic import geodesic, reindex, trajectory_distance_tensor
from lowdim.geometry.inpca import stress_metrics
from lowdim.store.records import RunSpec
from lowdim.studies.common import StudyResult, distance_options, embed
from lowdim.training.grid import scaled_lr
from lowdim.training.run import DeviceData, RunResult, train_run

KINDS = ("uniform", "subsample")
# Rows of the joint set that are runs (their checkpoints), and the reference kinds.
RUN_KINDS = ("run", "corner_run")


@dataclass(frozen=True, eq=False)
class Relabelling:
    """Random labels of one iseed: all training labels (n_train,), and the evaluation subsets'."""

    train_labels: np.ndarray               # (n_train,) int64
    eval_labels: Mapping[str, np.ndarray]  # space -> (N,) int64, consistent with train_labels


def relabel_uniform(prepared: Prepared, iseed: int) -> Relabelling:
    """Uniform random labels for the whole training split (then the test split) from
    RandomState(iseed); the evaluation subsets read theirs at their positions."""
    rng = np.random.RandomState(iseed)  # noqa: NPY002 - the authors' generator, for their draws
    classes = prepared.num_classes
    train = rng.randint(0, classes, size=len(prepared.train_labels)).astype(np.int64)
    test = rng.randint(0, classes, size=len(prepared.test_labels)).astype(np.int64)
    return Relabelling(train, {"train": train[prepared.eval_train_index],
                               "test": test[prepared.eval_test_index]})


def balanced_subset(labels: np.ndarray, size: int, iseed: int) -> np.ndarray:
    """(n,) labels -> (size,) sorted indices holding size / C samples of every class C."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if size % len(classes):
        raise ValueError(f"a balanced subset of {size} samples needs a multiple of the "
                         f"{len(classes)} classes")
    per_class = size // len(classes)
    rng = np.random.RandomState(iseed)  # noqa: NPY002 - the authors' generator
    chosen = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} samples, fewer than the {per_class} "
                             "a balanced subset needs: lower studies.corners.subsample_size")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def corner_name(kind: str, iseed: int) -> str:
    """The corner's label, e.g. 'uniform-0'."""
    return f"{kind}-{iseed}"


def phase_data(data: DeviceData, prepared: Prepared, kind: str, iseed: int,
               subsample_size: int) -> DeviceData:
    """The phase-1 training data of one corner, as tensors on the device of `data`."""
    device = data.train_labels.device
    if kind == "uniform":
        relabel = relabel_uniform(prepared, iseed)
        return dataclasses.replace(
            data, train_labels=torch.from_numpy(relabel.train_labels).to(device),
            eval_labels={s: torch.from_numpy(y).to(device)
                         for s, y in relabel.eval_labels.items()})
    if kind == "subsample":
        keep = torch.from_numpy(balanced_subset(prepared.train_labels, subsample_size, iseed))
        keep = keep.to(device)
        return dataclasses.replace(data, train_images=data.train_images[keep],
                                   train_labels=data.train_labels[keep])
    raise ValueError(f"unknown corner kind {kind!r}: use one of {', '.join(KINDS)}")


def phase_specs(cfg: CornersConfig, seed: int, model_size: Mapping,
                reference_batch_size: int) -> tuple[RunSpec, RunSpec]:
    """The RunSpecs of phase 1 and phase 2 (they differ only in their epochs)."""
    base = RunSpec(arch=cfg.arch, optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                   base_lr=cfg.base_lr,
                   lr=scaled_lr(cfg.base_lr, cfg.batch_size, reference_batch_size),
                   weight_decay=0.0, augment="none", init="default", epochs=cfg.phase1_epochs,
                   seed=seed, model_size=dict(model_size))
    return base, dataclasses.replace(base, epochs=cfg.phase2_epochs)


def train_corner(data: DeviceData, prepared: Prepared, cfg: CornersConfig, kind: str, iseed: int,
                 seed: int, *, model_size: Mapping, reference_batch_size: int,
                 eval_batch_size: int = 1000) -> tuple[RunResult, RunResult]:
    """Phase 1 to the corner, then phase 2 on the true labels from phase 1's weights."""
    first, second = phase_specs(cfg, seed, model_size, reference_batch_size)
    phase1 = train_run(first, phase_data(data, prepared, kind, iseed, cfg.subsample_size),
                       eval_batch_size=eval_batch_size, keep_state=True)
    if phase1.status != "ok":
        raise RuntimeError(f"phase 1 of corner {corner_name(kind, iseed)} seed {seed} diverged at "
                           f"step {phase1.diverged_at_step}: lower studies.corners.base_lr")
    phase2 = train_run(second, data, eval_batch_size=eval_batch_size,
                       initial_state=phase1.final_state)
    return phase1, phase2


def corner_rows(result: RunResult, kind: str, iseed: int, phase: int, space: str,
                true_labels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows and (T, N, C) float32 probabilities of one phase's checkpoints in `space`; loss and
    error against the true labels."""
    probs = renormalize(result.stacked(space))
    loss, error = loss_and_error(probs, true_labels)
    name = corner_name(kind, iseed)
    t = len(result.steps)
    rows = pd.DataFrame({
        "kind": "corner_run", "run_id": f"{name}_s{result.spec.seed}_phase{phase}",
        "corner": name, "corner_kind": kind, "iseed": iseed, "seed": result.spec.seed,
        "phase": phase, "checkpoint": np.arange(t), "step": result.steps,
        "epoch": result.epochs, "train_loss": loss, "train_error": error})
    return rows, probs


def reference_block(p0: np.ndarray, labels: np.ndarray, num_classes: int, points: int, *,
                    truth_kind: str, geodesic_kind: str, corner: str
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """A truth point one-hot on `labels` (N,) and the geodesic from p0 (N, C) to it at t = 1/n,
    ..., 1: rows and (points + 1, N, C) probabilities."""
    p1 = truth_point(labels, num_classes)
    t = np.linspace(1.0 / points, 1.0, points)
    probs = np.concatenate([p1[None], geodesic(p0, p1, t)]).astype(np.float32)
    rows = pd.DataFrame({"kind": [truth_kind] + [geodesic_kind] * points,
                         "t": np.concatenate([[1.0], t]), "corner": corner})
    return rows, probs


def joint_set(corner_parts: Sequence[tuple[pd.DataFrame, np.ndarray]], main_index: pd.DataFrame,
              main_probs: np.ndarray, arch: str, corner_labels: Mapping[str, np.ndarray],
              num_classes: int, geodesic_points: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Corner runs, the normal runs of `arch`, ignorance, truth and the main geodesic from the
    main analysis set, and one truth point and geodesic per relabelled corner.

    Returns the joint index (column `row` = position) and (M, N, C) float32 probabilities.
    """
    keep = ((main_index["kind"] == "run") & (main_index["arch"] == arch)
            | main_index["kind"].isin(["ignorance", "truth", "geodesic"]))
    main_rows = main_index[keep]
    if not (main_rows["kind"] == "run").any():
        raise ValueError(f"the main analysis set holds no run of {arch!r}: studies.corners.arch "
                         "must be trained by the main grid")
    p0 = np.asarray(main_probs[main_rows.index[main_rows["kind"] == "ignorance"][0]])
    main = main_rows[["kind", "run_id", "optimizer", "seed", "checkpoint", "step", "epoch", "t",
                      "train_loss", "train_error"]].assign(corner="")
    parts = [(main, np.asarray(main_probs[main_rows.index.to_numpy()], dtype=np.float32))]
    parts += list(corner_parts)
    for name, labels in corner_labels.items():
        parts.append(reference_block(p0, labels, num_classes, geodesic_points,
                                     truth_kind="corner_truth",
                                     geodesic_kind="corner_geodesic", corner=name))
    index = pd.concat([rows for rows, _ in parts], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    for column in ("seed", "checkpoint", "step", "iseed", "phase"):
        if column in index:
            index[column] = index[column].astype("Int64")
    return index, np.concatenate([probs for _, probs in parts])


def trajectory_rows(index: pd.DataFrame) -> dict[str, np.ndarray]:
    """run_id -> rows of its checkpoints in order, for the normal runs and the phase-2 corner
    runs (the runs that train on the true labels)."""
    runs = index[(index["kind"] == "run")
                 | ((index["kind"] == "corner_run") & (index["phase"] == 2))]
    return {r: g.sort_values("checkpoint")["row"].to_numpy()
            for r, g in runs.groupby("run_id", sort=True)}


def convergence(index: pd.DataFrame, probs: np.ndarray, grid: np.ndarray,
                settings: DistanceSettings) -> pd.DataFrame:
    """Distance of each phase-2 corner run to the normal runs at equal progress (A7-A8).

    Runs are reindexed by training accuracy (1 - train error on the true labels). For each corner
    run and grid value s: `to_normal`, the median d_B to the normal runs at s; `normal_spread`,
    the median d_B between two different normal runs at s (the tube the corner joins or not).
    `to_normal` is NaN below the accuracy a corner run starts from (reindexing would hold its
    first checkpoint there, comparing it with less trained normal runs).
    Distances use every sample (`settings.sample_step` is not used); the other `settings`
    (bc_floor, method, device, max_block_bytes) go to `geometry.trajectory_distance_tensor`.
    Long table: corner, run_id, seed, s, to_normal, normal_spread.
    """
    rows_of = trajectory_rows(index)
    run_ids = list(rows_of)
    first = index.set_index("row")
    kinds = [first.loc[rows_of[r][0], "kind"] for r in run_ids]
    normal = np.array([k == "run" for k in kinds])
    if normal.sum() < 2 or normal.all():
        raise ValueError("the convergence analysis needs at least two normal runs and one corner "
                         "run: add seeds or optimizers of studies.corners.arch to the grid")
    accuracy = 1.0 - index["train_error"].to_numpy(dtype=np.float64)
    stacked = np.stack([reindex(np.asarray(probs[rows_of[r]]), accuracy[rows_of[r]], grid)
                        .astype(np.float32) for r in run_ids])
    tensor = trajectory_distance_tensor(
        stacked, bc_floor=settings.bc_floor, device=settings.device, method=settings.method,
        max_block_bytes=settings.max_block_bytes)  # (G, R, R)
    n_idx = np.flatnonzero(normal)
    pairs = tensor[:, n_idx][:, :, n_idx]
    upper = np.triu_indices(len(n_idx), k=1)
    spread = np.median(pairs[:, upper[0], upper[1]], axis=1)  # (G,)
    tables = []
    for r in np.flatnonzero(~normal):
        meta = first.loc[rows_of[run_ids[r]][0]]
        reached = grid >= accuracy[rows_of[run_ids[r]][0]]
        tables.append(pd.DataFrame({
            "corner": meta["corner"], "run_id": run_ids[r], "seed": int(meta["seed"]), "s": grid,
            "to_normal": np.where(reached, np.median(tensor[:, r, n_idx], axis=1), np.nan),
            "normal_spread": spread}))
    return pd.concat(tables, ignore_index=True)


def convergence_metrics(table: pd.DataFrame, index: pd.DataFrame,
                        at: Sequence[float] = (0.5, 1.0)) -> dict[str, dict[str, float]]:
    """Per corner: median distance to the normal runs and its ratio to the normal spread at the
    grid values nearest to `at` (None where its runs start beyond that accuracy), and the final
    train error of its phase-2 runs."""
    out = {}
    grid = np.sort(table["s"].unique())
    final = (index[(index["kind"] == "corner_run") & (index["phase"] == 2)]
             .sort_values("checkpoint").groupby("run_id").last())
    for corner, group in table.groupby("corner", sort=True):
        entry = {}
        for s in at:
            nearest = grid[np.argmin(np.abs(grid - s))]
            here = group[group["s"] == nearest]
            to_normal = float(here["to_normal"].mean())  # NaN when no run has reached s
            spread = float(here["normal_spread"].iloc[0])
            known = np.isfinite(to_normal)
            entry[f"to_normal_at_{s:g}"] = round(to_normal, 6) if known else None
            entry[f"normal_spread_at_{s:g}"] = round(spread, 6)
            ratio = to_normal / spread if known and spread > 0 else None
            entry[f"ratio_at_{s:g}"] = None if ratio is None else round(ratio, 4)
        entry["final_train_error"] = round(
            float(final.loc[final["corner"] == corner, "train_error"].mean()), 6)
        out[corner] = entry
    return out


def train_corners(data: DeviceData, prepared: Prepared, cfg: CornersConfig, *,
                  model_size: Mapping, reference_batch_size: int, eval_batch_size: int = 1000
                  ) -> tuple[list[tuple[pd.DataFrame, np.ndarray]], pd.DataFrame]:
    """Both phases of every kind x iseed x seed: their (rows, (T, N, C) train-space
    probabilities) in that order, and a log table (one row per phase: status, checkpoints,
    final errors against its own and the true labels, seconds)."""
    true_labels = prepared.train_labels[prepared.eval_train_index]
    parts, log = [], []
    todo = list(itertools.product(cfg.kinds, cfg.iseeds, cfg.seeds))
    for kind, iseed, seed in tqdm(todo, desc="corner runs (both phases)", unit="run"):
        started = time.perf_counter()
        phases = train_corner(data, prepared, cfg, kind, iseed, seed, model_size=model_size,
                              reference_batch_size=reference_batch_size,
                              eval_batch_size=eval_batch_size)
        for phase, result in enumerate(phases, start=1):
            rows, probs = corner_rows(result, kind, iseed, phase, "train", true_labels)
            parts.append((rows, probs))
            log.append({"corner": corner_name(kind, iseed), "seed": seed,
                        "phase": phase, "status": result.status,
                        "checkpoints": len(rows),
                        "final error (own labels)": result.error["train"][-1],
                        "final error (true labels)": rows["train_error"].iloc[-1]})
        log[-1]["seconds"] = round(time.perf_counter() - started, 1)
    return parts, pd.DataFrame(log)


def corner_truths(prepared: Prepared, cfg: CornersConfig) -> dict[str, np.ndarray]:
    """corner name -> (N,) relabelled train-space labels of every `uniform` corner."""
    if "uniform" not in cfg.kinds:
        return {}
    return {corner_name("uniform", i): relabel_uniform(prepared, i).eval_labels["train"]
            for i in cfg.iseeds}


def run_corners(study: CornersConfig, train: TrainConfig, models: ModelsConfig,
                distance_settings: DistancesConfig, embedding_settings: EmbeddingConfig,
                prepared: Prepared, main_index: pd.DataFrame, main_probs: np.ndarray, *,
                distance_device: str | None = None) -> StudyResult:
    """The corners study: train every corner (on `train.device`, at the `models` size of
    `study.arch`), embed the joint set with the normal runs of `study.arch` from the main
    analysis set (`main_index`, (M, N, C) train-space `main_probs`), and compare the phase-2 runs
    with the normal runs.

    Products: `index` (the joint set), `embedding` (its InPCA), `convergence` (long table);
    metrics: `train` (explained stress) and `corners` (per corner, `convergence_metrics`);
    summary: the training log.
    """
    data = DeviceData.from_prepared(prepared, resolve_device(train.device))
    parts, log = train_corners(data, prepared, study,
                               model_size=models.get(study.arch, {}),
                               reference_batch_size=train.lr_reference_batch_size,
                               eval_batch_size=train.eval_batch_size)
    index, probs = joint_set(parts, main_index, main_probs, study.arch,
                             corner_truths(prepared, study), prepared.num_classes,
                             study.geodesic_points)
    d = bhattacharyya(probs, **distance_options(distance_settings, distance_device).kwargs())
    embedding = embed(d, embedding_settings)
    table = convergence(index, probs, progress_grid(study.grid_points),
                        distance_options(distance_settings, distance_device, all_samples=True))
    metrics = {"train": stress_metrics(embedding, embedding_settings.stress_dims),
               "corners": convergence_metrics(table, index)}
    return StudyResult(products={"index": index, "embedding": embedding, "convergence": table},
                       metrics=metrics, summary=log)
