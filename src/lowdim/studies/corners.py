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

The runs are given per setup (`studies.corners.named_setups`): an architecture, a kind and, for
`subsample`, the subset's size. The setups of one architecture are embedded together with that
architecture's normal runs (all of them, or those `studies.corners.normal` selects: the authors
used only the runs of the corners' own training settings), and their phase-2 runs are compared
with those normal runs; with
several architectures each gets its own joint set, embedding and comparison (products prefixed
`<arch>_`, metrics under `by_arch`).

Only the "train" prediction space is analysed here. Loss and error columns of the joint set are
always taken against the true labels. `run_corners` is the whole study (notebook 70): training
on `train.device`, the joint set's distances and InPCA with the `distances` and `embedding`
settings, and the convergence analysis.

**Scale.** Memory is O(block + M_j): nothing of one architecture's joint set (M_j rows: the
selected normal runs' checkpoints, the corner runs' checkpoints of both phases, the references)
is held whole. Each corner run's probabilities go to a scratch file as soon as it is trained;
the joint set is written to a scratch ``.npy`` (``4 M_j N C`` bytes of disk) a block of rows at
a time, its M_j x M_j distances to another (``8 M_j^2`` bytes, tile by tile, as the distances
stage writes D) and InPCA reads them slab by slab (the iterative solvers; the dense one, at
M_j <= 2,000, forms the matrix). The convergence analysis builds the reindexed runs a chunk of
grid points at a time and reduces each grid point's (R, R) distances to its medians at once
(``analysis.trajectories.run_distance_points``): no (R, G, N, C) stack, no (G, R, R) tensor.
The scratch files live in a temporary directory (under `scratch`, default the system's: set
TMPDIR to a disk with room), removed at the end; their size is checked before writing.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lowdim.analysis.analysis_set import loss_and_error, renormalize
from lowdim.analysis.trajectories import progress_grid, run_distance_points
from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.models import ModelsConfig
from lowdim.config.studies.corners import CornersConfig, CornerSetup
from lowdim.config.studies.runs import RunSelection
from lowdim.config.train import TrainConfig
from lowdim.data import Prepared
from lowdim.device import resolve_device
from lowdim.geometry.distance_blocks import write_bhattacharyya
from lowdim.geometry.distances import DistanceSettings, truth_point
from lowdim.geometry.geodesic import geodesic
from lowdim.geometry.inpca import stress_metrics
from lowdim.store.arrays import NpyFile, check_disk_space
from lowdim.store.lazy import Submatrix
from lowdim.store.records import RunSpec
from lowdim.studies.common import (
    Rows,
    StudyResult,
    distance_options,
    embed,
    selection_mask,
)
from lowdim.training.grid import scaled_lr
from lowdim.training.run import DeviceData, RunResult, train_run

KINDS = ("uniform", "subsample")
# Rows of the joint set that are runs (their checkpoints), and the reference kinds.
RUN_KINDS = ("run", "corner_run")
# Rows copied into the scratch joint set at a time are at most this many bytes.
SCRATCH_BLOCK_BYTES = 64 * 2**20


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


def corner_name(setup: str, iseed: int) -> str:
    """The corner's label from its setup's name and iseed, e.g. 'uniform-0', 'subsample-200-1'."""
    return f"{setup}-{iseed}"


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


def phase_specs(cfg: CornersConfig, arch: str, seed: int, model_size: Mapping,
                reference_batch_size: int) -> tuple[RunSpec, RunSpec]:
    """The RunSpecs of phase 1 and phase 2 of `arch` (they differ only in their epochs)."""
    base = RunSpec(arch=arch, optimizer=cfg.optimizer, batch_size=cfg.batch_size,
                   base_lr=cfg.base_lr,
                   lr=scaled_lr(cfg.base_lr, cfg.batch_size, reference_batch_size),
                   weight_decay=0.0, augment="none", init="default", epochs=cfg.phase1_epochs,
                   seed=seed, model_size=dict(model_size))
    return base, dataclasses.replace(base, epochs=cfg.phase2_epochs)


def train_corner(data: DeviceData, prepared: Prepared, cfg: CornersConfig, setup: CornerSetup,
                 iseed: int, seed: int, *, model_size: Mapping, reference_batch_size: int,
                 eval_batch_size: int = 1000) -> tuple[RunResult, RunResult]:
    """Phase 1 of `setup`'s architecture to its corner, then phase 2 on the true labels from
    phase 1's weights."""
    first, second = phase_specs(cfg, setup.arch, seed, model_size, reference_batch_size)
    phase1 = train_run(first, phase_data(data, prepared, setup.kind, iseed, setup.subsample_size),
                       eval_batch_size=eval_batch_size, keep_state=True)
    if phase1.status != "ok":
        raise RuntimeError(f"phase 1 of corner {corner_name(setup.name, iseed)} of "
                           f"{setup.arch} seed {seed} diverged at step "
                           f"{phase1.diverged_at_step}: lower studies.corners.base_lr")
    phase2 = train_run(second, data, eval_batch_size=eval_batch_size,
                       initial_state=phase1.final_state)
    return phase1, phase2


def corner_rows(result: RunResult, setup: str, kind: str, iseed: int, phase: int, space: str,
                true_labels: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows and (T, N, C) float32 probabilities of one phase's checkpoints in `space` (setup:
    its name, `CornersConfig.named_setups`); loss and error against the true labels."""
    probs = renormalize(result.stacked(space))
    loss, error = loss_and_error(probs, true_labels)
    name = corner_name(setup, iseed)
    t = len(result.steps)
    rows = pd.DataFrame({
        "kind": "corner_run", "run_id": f"{name}_s{result.spec.seed}_phase{phase}",
        "arch": result.spec.arch, "setup": setup, "corner": name, "corner_kind": kind,
        "iseed": iseed, "seed": result.spec.seed,
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
              num_classes: int, geodesic_points: int, normal: RunSelection | None = None, *,
              out: str | Path | None = None) -> tuple[pd.DataFrame, np.ndarray | NpyFile]:
    """Corner runs (of `arch`), the normal runs of `arch` (those `normal` selects, when given),
    ignorance, truth and the main geodesic from the main analysis set, and one truth point and
    geodesic per relabelled corner.

    Returns the joint index (column `row` = position) and (M, N, C) float32 probabilities: in
    memory, or with `out` written to that ``.npy`` file a block of rows at a time and returned
    as an ``NpyFile`` (the main analysis set is read only at the rows kept, a block at a time).
    """
    runs = (main_index["kind"] == "run") & (main_index["arch"] == arch)
    if normal is not None:
        runs &= selection_mask(main_index, normal, "studies.corners.normal")
    main_rows = main_index[runs | main_index["kind"].isin(["ignorance", "truth", "geodesic"])]
    if not (main_rows["kind"] == "run").any():
        if normal is not None:
            raise ValueError(f"studies.corners.normal keeps no run of {arch!r} of the main "
                             "analysis set: widen its select or narrow its exclude (or check "
                             "which runs diverged)")
        raise ValueError(f"the main analysis set holds no run of {arch!r}: studies.corners.arch "
                         "must be trained by the main grid")
    p0 = np.asarray(main_probs[main_rows.index[main_rows["kind"] == "ignorance"][0]])
    main = main_rows[["kind", "run_id", "arch", "optimizer", "seed", "checkpoint", "step", "epoch",
                      "t", "train_loss", "train_error"]].assign(corner="")
    parts = [(main, Rows(main_probs, main_rows.index.to_numpy()))]
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
    blocks = [probs for _, probs in parts]
    if out is None:
        return index, np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks])
    return index, stack_to_file(blocks, out)


def stack_to_file(blocks: Sequence, path: str | Path, max_block_bytes: int = SCRATCH_BLOCK_BYTES
                  ) -> NpyFile:
    """The (M_1 + ... + M_k, N, C) float32 concatenation of (M_i, N, C) arrays, ``Rows`` or
    ``NpyFile``s, written to the ``.npy`` file `path` a block of rows at a time."""
    shapes = {tuple(b.shape[1:]) for b in blocks}
    if len(shapes) != 1:
        raise ValueError(f"the joint set's parts must share their (N, C) shape (the same "
                         f"evaluation samples and classes), got {sorted(shapes)}")
    row_shape = shapes.pop()
    row_bytes = int(np.prod(row_shape)) * 4
    total = sum(len(b) for b in blocks)
    check_disk_space(total * row_bytes, Path(path).parent, "the corner study's joint set",
                     "set TMPDIR to a disk with room")
    stored = NpyFile.create(path, (total, *row_shape), np.float32)
    step, start = max(1, max_block_bytes // row_bytes), 0
    for block in blocks:
        for a in range(0, len(block), step):
            stored.write_rows(start + a, np.asarray(block[a:a + step], dtype=np.float32))
        start += len(block)
    return stored


def joint_distances(probs: np.ndarray | NpyFile, settings: DistanceSettings,
                    path: str | Path) -> NpyFile:
    """The (M, M) float64 distances of the joint set, written to the ``.npy`` file `path` tile by
    tile (``write_bhattacharyya``, no block cache): the bytes ``bhattacharyya`` returns."""
    m = len(probs)
    check_disk_space(8 * m * m, Path(path).parent, "the corner study's joint distances",
                     "set TMPDIR to a disk with room")
    write_bhattacharyya(probs, ["joint"] * m, None, path, settings=settings)
    return NpyFile(path)


def spill(probs: np.ndarray, path: str | Path) -> NpyFile:
    """Write one run's (T, N, C) probabilities to the ``.npy`` file `path`; read them from there."""
    check_disk_space(np.asarray(probs).nbytes, Path(path).parent, "a corner run's predictions",
                     "set TMPDIR to a disk with room")
    np.save(path, np.asarray(probs, dtype=np.float32))
    return NpyFile(path)


def trajectory_rows(index: pd.DataFrame) -> dict[str, np.ndarray]:
    """run_id -> rows of its checkpoints in order, for the normal runs and the phase-2 corner
    runs (the runs that train on the true labels)."""
    runs = index[(index["kind"] == "run")
                 | ((index["kind"] == "corner_run") & (index["phase"] == 2))]
    return {r: g.sort_values("checkpoint")["row"].to_numpy()
            for r, g in runs.groupby("run_id", sort=True)}


def convergence(index: pd.DataFrame, probs: np.ndarray | NpyFile, grid: np.ndarray,
                settings: DistanceSettings, *, scratch_dir: str | Path | None = None
                ) -> pd.DataFrame:
    """Distance of each phase-2 corner run to the normal runs at equal progress (A7-A8).

    Runs are reindexed by training accuracy (1 - train error on the true labels). For each corner
    run and grid value s: `to_normal`, the median d_B to the normal runs at s; `normal_spread`,
    the median d_B between two different normal runs at s (the tube the corner joins or not).
    `to_normal` is NaN below the accuracy a corner run starts from (reindexing would hold its
    first checkpoint there, comparing it with less trained normal runs).
    Distances use every sample (`settings.sample_step` is not used); the other `settings`
    (bc_floor, method, device, max_block_bytes) go to ``run_distance_points``, which yields one
    grid point's (R, R) distances at a time (reduced here at once; `scratch_dir` for its scratch
    file when one grid point exceeds the block budget).
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
    n_idx, c_idx = np.flatnonzero(normal), np.flatnonzero(~normal)
    upper = np.triu_indices(len(n_idx), k=1)
    spread = np.empty(len(grid))
    to_normal = np.empty((len(c_idx), len(grid)))
    for point, matrix in run_distance_points(
            probs, [rows_of[r] for r in run_ids], accuracy, grid, bc_floor=settings.bc_floor,
            method=settings.method, device=settings.device,
            max_block_bytes=settings.max_block_bytes, scratch_dir=scratch_dir):
        spread[point] = np.median(matrix[np.ix_(n_idx, n_idx)][upper])
        to_normal[:, point] = np.median(matrix[np.ix_(c_idx, n_idx)], axis=1)
    tables = []
    for k, r in enumerate(c_idx):
        meta = first.loc[rows_of[run_ids[r]][0]]
        reached = grid >= accuracy[rows_of[run_ids[r]][0]]
        tables.append(pd.DataFrame({
            "corner": meta["corner"], "run_id": run_ids[r], "seed": int(meta["seed"]), "s": grid,
            "to_normal": np.where(reached, to_normal[k], np.nan), "normal_spread": spread}))
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
                  model_sizes: Mapping[str, Mapping], reference_batch_size: int,
                  eval_batch_size: int = 1000, spill_dir: str | Path | None = None
                  ) -> tuple[list[tuple[pd.DataFrame, np.ndarray | NpyFile]], pd.DataFrame]:
    """Both phases of every setup x iseed x seed (`model_sizes`: arch -> size keywords): their
    (rows, (T, N, C) train-space probabilities) in that order, and a log table (one row per
    phase: arch, corner, status, checkpoints, final errors against its own and the true labels,
    seconds). With `spill_dir` each phase's probabilities are written there as it ends and
    returned as ``NpyFile``s, so that memory holds one run, not all of them."""
    true_labels = prepared.train_labels[prepared.eval_train_index]
    parts, log = [], []
    todo = list(itertools.product(cfg.named_setups(), cfg.iseeds, cfg.seeds))
    for (name, setup), iseed, seed in tqdm(todo, desc="corner runs (both phases)", unit="run"):
        started = time.perf_counter()
        phases = train_corner(data, prepared, cfg, setup, iseed, seed,
                              model_size=model_sizes.get(setup.arch, {}),
                              reference_batch_size=reference_batch_size,
                              eval_batch_size=eval_batch_size)
        for phase, result in enumerate(phases, start=1):
            rows, probs = corner_rows(result, name, setup.kind, iseed, phase, "train",
                                      true_labels)
            if spill_dir is not None:
                probs = spill(probs, Path(spill_dir) / f"corner_run_{len(parts)}.npy")
            parts.append((rows, probs))
            log.append({"arch": setup.arch, "corner": corner_name(name, iseed), "seed": seed,
                        "phase": phase, "status": result.status,
                        "checkpoints": len(rows),
                        "final error (own labels)": result.error["train"][-1],
                        "final error (true labels)": rows["train_error"].iloc[-1]})
        log[-1]["seconds"] = round(time.perf_counter() - started, 1)
    return parts, pd.DataFrame(log)


def corner_truths(prepared: Prepared, cfg: CornersConfig, arch: str) -> dict[str, np.ndarray]:
    """corner name -> (N,) relabelled train-space labels of every `uniform` corner of `arch`."""
    return {corner_name(name, i): relabel_uniform(prepared, i).eval_labels["train"]
            for name, setup in cfg.named_setups()
            if setup.arch == arch and setup.kind == "uniform" for i in cfg.iseeds}


def setups_table(cfg: CornersConfig) -> pd.DataFrame:
    """One row per setup: arch, setup (its name), kind, subsample_size (<NA> for uniform) and
    prefix, the stem prefix of its architecture's products ('' with one architecture)."""
    several = len(cfg.archs) > 1
    named = cfg.named_setups()
    return pd.DataFrame({
        "arch": [s.arch for _, s in named], "setup": [name for name, _ in named],
        "kind": [s.kind for _, s in named],
        "subsample_size": pd.array([s.subsample_size for _, s in named], dtype="Int64"),
        "prefix": [f"{s.arch}_" if several else "" for _, s in named]})


def compare_arch(parts: Sequence[tuple[pd.DataFrame, np.ndarray]], arch: str,
                 cfg: CornersConfig, embedding_settings: EmbeddingConfig, prepared: Prepared,
                 main_index: pd.DataFrame, main_probs: np.ndarray,
                 distance_settings: DistanceSettings, all_samples: DistanceSettings,
                 scratch: str | Path) -> tuple[dict, dict]:
    """The joint set of `arch`'s corner runs (`parts`) with its normal runs, its InPCA and the
    convergence analysis: products (`index`, `embedding`, `convergence`) and metrics (`train`:
    explained stress; `corners`: `convergence_metrics`). The joint set and its distances are
    written to files in the directory `scratch` (module docstring, Scale)."""
    scratch = Path(scratch)
    index, probs = joint_set(parts, main_index, main_probs, arch,
                             corner_truths(prepared, cfg, arch), prepared.num_classes,
                             cfg.geodesic_points, cfg.normal, out=scratch / f"{arch}_joint.npy")
    d = joint_distances(probs, distance_settings, scratch / f"{arch}_distances.npy")
    embedding = embed(Submatrix(d), embedding_settings)
    table = convergence(index, probs, progress_grid(cfg.grid_points), all_samples,
                        scratch_dir=scratch)
    metrics = {"train": stress_metrics(embedding, embedding_settings.stress_dims),
               "corners": convergence_metrics(table, index)}
    return {"index": index, "embedding": embedding, "convergence": table}, metrics


def run_corners(study: CornersConfig, train: TrainConfig, models: ModelsConfig,
                distance_settings: DistancesConfig, embedding_settings: EmbeddingConfig,
                prepared: Prepared, main_index: pd.DataFrame, main_probs: np.ndarray, *,
                distance_device: str | None = None,
                scratch: str | Path | None = None) -> StudyResult:
    """The corners study: train every corner of every setup (on `train.device`, at the `models`
    size of its architecture), embed each architecture's corner runs with its normal runs from
    the main analysis set (`main_index`, (M, N, C) train-space `main_probs`), and compare the
    phase-2 runs with those normal runs. The corner runs' predictions, each joint set and its
    distances live in a temporary directory under `scratch` (None: the system's), removed at
    the end.

    Products: `setups` (`setups_table`), and per architecture `index` (the joint set),
    `embedding` (its InPCA) and `convergence` (long table), their names prefixed `<arch>_` when
    the setups span several architectures. Metrics with one architecture: `train` (explained
    stress) and `corners` (per corner, `convergence_metrics`); with several: the same pair per
    architecture under `by_arch`. Summary: the training log.
    """
    data = DeviceData.from_prepared(prepared, resolve_device(train.device))
    archs = study.archs
    options = distance_options(distance_settings, distance_device)
    all_samples = distance_options(distance_settings, distance_device, all_samples=True)
    products, by_arch = {"setups": setups_table(study)}, {}
    with tempfile.TemporaryDirectory(prefix="lowdim-corners-", dir=scratch) as tmp:
        parts, log = train_corners(data, prepared, study,
                                   model_sizes={arch: models.get(arch, {}) for arch in archs},
                                   reference_batch_size=train.lr_reference_batch_size,
                                   eval_batch_size=train.eval_batch_size, spill_dir=tmp)
        for arch in archs:
            mine = [(rows, probs) for rows, probs in parts if rows["arch"].iloc[0] == arch]
            found, by_arch[arch] = compare_arch(mine, arch, study, embedding_settings, prepared,
                                                main_index, main_probs, options, all_samples,
                                                tmp)
            prefix = f"{arch}_" if len(archs) > 1 else ""
            products.update({prefix + name: product for name, product in found.items()})
    metrics = by_arch[archs[0]] if len(archs) == 1 else {"by_arch": by_arch}
    return StudyResult(products=products, metrics=metrics, summary=log)
