"""Place any model's predictions in an existing embedding: "where does my model land?".

A model enters prediction space through its probabilities on the evaluation subset of one space
(the fixed, ordered samples that every run was evaluated on). Its checkpoints, (T, N, C), are placed
the way the pipeline would have placed them had they been in the grid:

- **distance rows**: d_B to every embedded point, on the same sample subset (``sample_step``) and
  with the same clamp (``bc_floor``) as the distances stage, so that the rows are those the stored
  matrix would hold;
- **coordinates**: the out-of-sample (Gower/Nystrom) extension of the stored InPCA,
  ``lowdim.geometry.inpca.project``; an embedded point placed again lands on its own coordinates;
- **progress** lambda: the projection onto the ignorance -> truth geodesic
(``lowdim.geometry.geodesic``), on
  all samples, as the trajectory analyses use it;
- **nearest runs**: the k run checkpoints with the smallest distance, as rows of the index table.

Predictions come from a ``.npy`` file (``load_predictions_file``) or from a torch model and the
prepared data (``predict``, eval mode, batched, the same preprocessing as training). They
are validated (shape, finite, rows sum to 1 within ``SUM_TOL``; log-probabilities on request) and
renormalized in float32 like the predictions stage.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lowdim.analysis.analysis_set import loss_and_error, renormalize
from lowdim.geometry.distances import DistanceSettings, bhattacharyya
from lowdim.geometry.geodesic import progress
from lowdim.geometry.inpca import project
from lowdim.store.analysis_set import load_index, open_probs
from lowdim.store.distance_matrices import load_distance_matrix
from lowdim.store.products import load_embedding
from lowdim.store.records import SPACES, Embedding

if TYPE_CHECKING:  # `predict` imports them when it runs: placing stored predictions needs no torch
    import torch

    from lowdim.data import Prepared

SUM_TOL = 1e-3  # the same tolerance as the distances module's check of probability rows
NEAREST_COLUMNS = ("row", "run_id", "arch", "optimizer", "seed", "checkpoint", "epoch")
# Stored and recomputed distance rows agree to float32 rounding; a different sample_step or
# bc_floor moves them by far more than this.
_CONSISTENCY_TOL = 1e-4


@dataclass(frozen=True, eq=False)
class EmbeddedSpace:
    """One prediction space of a pipeline's products: what placing a new model needs."""

    space: str
    index: pd.DataFrame      # the analysis set's index table, one row per embedded point
    probs: np.ndarray        # (M, N, C) float32 probabilities of the embedded points (an array
                             # or, from load_space, an NpyFile read a block of rows at a time)
    embedding: Embedding     # the stored InPCA of those M points
    settings: DistanceSettings  # the distances stage's (sample subset, clamp, method)
    origin: str = ""         # where it was loaded from, for messages

    @property
    def num_samples(self) -> int:
        """N, the samples of this space's evaluation subset."""
        return int(self.probs.shape[1])

    @property
    def num_classes(self) -> int:
        """C, the classes of the dataset."""
        return int(self.probs.shape[2])

    def reference(self, kind: str) -> np.ndarray:
        """(N, C) probabilities of the single 'ignorance' or 'truth' row."""
        rows = self.index.index[self.index["kind"] == kind]
        if len(rows) != 1:
            raise ValueError(f"the {self.space} space must hold exactly one {kind} row, "
                             f"found {len(rows)}")
        return np.asarray(self.probs[int(rows[0])])


@dataclass(frozen=True, eq=False)
class Placement:
    """Where T checkpoints land: coordinates, progress, distances and nearest run checkpoints."""

    coords: np.ndarray       # (T, k) out-of-sample InPCA coordinates
    progress: np.ndarray     # (T,) lambda in [0, 1]
    distances: np.ndarray    # (T, M) d_B to every embedded point (sample_step subset)
    loss: np.ndarray         # (T,) mean cross-entropy on the space's samples
    error: np.ndarray        # (T,) 0/1 error on the space's samples
    nearest: pd.DataFrame    # k rows per checkpoint: query, rank, distance, NEAREST_COLUMNS

    def summary(self, dims: int = 3) -> pd.DataFrame:
        """One row per placed checkpoint: PC1..PC<dims>, progress, loss, error, nearest run."""
        table = pd.DataFrame(self.coords[:, :dims],
                             columns=[f"PC{i + 1}" for i in range(min(dims, self.coords.shape[1]))])
        table.insert(0, "query", np.arange(len(table)))
        table["progress"] = self.progress
        table["loss"], table["error"] = self.loss, self.error
        first = self.nearest[self.nearest["rank"] == 1].set_index("query")
        for column in ("run_id", "checkpoint", "distance"):
            if column in first:
                table[f"nearest_{column}"] = first[column].reindex(table["query"]).to_numpy()
        return table


def load_space(predictions_dir: str | Path, embedding_dir: str | Path, space: str, *,
               settings: DistanceSettings,
               distances_dir: str | Path | None = None) -> EmbeddedSpace:
    """An EmbeddedSpace from the predictions and embedding stages' directories.

    ``settings`` must be the distances stage's (``DistanceSettings.from_config`` of params
    ``distances``; its ``sample_step`` and ``bc_floor`` fix the rows). When ``distances_dir`` is
    given, one stored distance row is recomputed with them and compared, so settings that do not
    match the stored matrix fail here instead of misplacing the model.

    Memory is O(block + M) at any M: the probabilities are an ``NpyFile`` (rows read on demand,
    a block at a time, by the distance kernel), and of the stored (M, M) matrix only the one
    compared row is read, through a memory map.
    """
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}: choose one of {', '.join(SPACES)}")
    for label, path in (("predictions_dir", predictions_dir), ("embedding_dir", embedding_dir)):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{label} {path} does not exist: run the pipeline first "
                                    "(dvc repro embedding) or point to its outputs")
    index = load_index(predictions_dir)
    probs = open_probs(predictions_dir, space)
    embedding = load_embedding(embedding_dir, space)
    m = embedding.coords.shape[0]  # every embedded point (column_means: the landmarks')
    if not len(index) == probs.shape[0] == m:
        raise ValueError(
            f"{predictions_dir} holds {probs.shape[0]} {space} points ({len(index)} index rows) "
            f"but the embedding in {embedding_dir} has {m}: they come from different runs of the "
            "pipeline; run dvc repro so that both are current"
        )
    result = EmbeddedSpace(space=space, index=index, probs=probs, embedding=embedding,
                           settings=settings, origin=f"{Path(predictions_dir) / space}.npy")
    if distances_dir is not None:
        _check_settings(result, load_distance_matrix(distances_dir, space, mmap=True),
                        distances_dir)
    return result


def _distance_rows(p: np.ndarray, space: EmbeddedSpace) -> np.ndarray:
    """(T, N, C) -> (T, M) d_B to every embedded point, with the distances stage's settings."""
    with warnings.catch_warnings():
        # The embedded points may be a read-only memory map; the kernel only reads them, but
        # torch warns when it wraps a read-only block (sample_step = 1 passes the map itself).
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return bhattacharyya(p, space.probs, **space.settings.kwargs())


def _check_settings(space: EmbeddedSpace, matrix: np.ndarray, where: str | Path) -> None:
    """Recompute the distances of one run row and compare them with the stored matrix, of
    which only that row is read (`matrix` may be memory-mapped)."""
    m = len(space.index)
    if np.shape(matrix) != (m, m):
        raise ValueError(f"the stored distance matrix in {where} has shape {np.shape(matrix)}, "
                         f"not ({m}, {m}) as the analysis set: they come from different runs of "
                         "the pipeline; run dvc repro so that both are current")
    runs = space.index.index[space.index["kind"] == "run"]
    row = int(runs[-1]) if len(runs) else 0  # a trained checkpoint: far from the reference rows
    recomputed = _distance_rows(np.array(space.probs[row : row + 1]), space)[0]
    gap = float(np.abs(recomputed - np.array(matrix[row])).max())
    settings = space.settings
    if gap > _CONSISTENCY_TOL:
        raise ValueError(
            f"distances recomputed with sample_step={settings.sample_step}, "
            f"bc_floor={settings.bc_floor:g} differ from the stored matrix in {where} by up to "
            f"{gap:.3g}: pass the distances settings of the profile the pipeline ran with"
        )


def check_predictions(preds: np.ndarray, space: EmbeddedSpace, *, log_probs: bool = False,
                      name: str = "model predictions") -> np.ndarray:
    """(T, N, C) or (N, C) probabilities (or log-probabilities) -> (T, N, C) float32, validated.

    N and C must be the space's; rows must be finite and sum to 1 within ``SUM_TOL`` (after exp
    when ``log_probs``). Rows are then renormalized in float32, as the predictions stage does.
    """
    x = np.asarray(preds)
    n, c = space.num_samples, space.num_classes
    expected = (f"(T, {n}, {c}): T checkpoints, the {n} samples of the '{space.space}' "
                f"evaluation subset in the pipeline's order (prepared data "
                f"eval_{space.space}_index, as in {space.origin or 'the predictions stage'}), "
                f"and {c} classes")
    if x.ndim == 2:
        x = x[None]  # one checkpoint
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape {expected}; got shape {np.shape(preds)}")
    if x.shape[1] != n:
        raise ValueError(f"{name} have N = {x.shape[1]} samples per checkpoint but the "
                         f"'{space.space}' space expects N = {n}: shape {expected}")
    if x.shape[2] != c:
        raise ValueError(f"{name} have C = {x.shape[2]} classes but the '{space.space}' space "
                         f"expects C = {c}: shape {expected}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be floating-point probabilities, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} hold no checkpoint (T = 0)")
    x = x.astype(np.float64)
    if np.isnan(x).any() or np.isposinf(x).any() or (not log_probs and np.isinf(x).any()):
        raise ValueError(f"{name} contain NaN or infinite values")
    if log_probs:
        x = np.exp(x)
    elif x.min() < 0:
        hint = (" (all entries <= 0: if these are log-probabilities, e.g. log_softmax outputs, "
                "pass log_probs=True)" if x.max() <= 0 else "")
        raise ValueError(f"{name} have negative entries (min {x.min():.3g}); probabilities "
                         f"must be >= 0{hint}")
    dev = float(np.abs(x.sum(axis=-1) - 1.0).max())
    if dev > SUM_TOL:
        raise ValueError(f"{name}: probability rows must sum to 1 within {SUM_TOL:g} (worst "
                         f"deviation {dev:.3g}); if these are logits, apply a softmax first"
                         + ("" if log_probs else ", if log-probabilities pass log_probs=True"))
    return renormalize(x)


def load_predictions_file(path: str | Path) -> np.ndarray:
    """A user's .npy of predictions (T, N, C), read without pickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: save your model's predictions with "
                                "numpy.save (an array of shape (T, N, C))")
    return np.load(path, allow_pickle=False)


def predict(model: torch.nn.Module, prepared: Prepared, space: str, *,
                      batch_size: int = 1000, device: str | torch.device | None = None
                      ) -> np.ndarray:
    """A torch model's predictions on one space's evaluation subset: (N, C) float32.

    The same path as the training loop's checkpoints (``lowdim.training.run.evaluate``): eval mode,
    no gradient, un-augmented images normalized with the prepared mean and std, batched,
    probabilities kept in float32 (the run store's dtype) and renormalized. The model's
    train/eval mode is restored afterwards. ``device`` defaults to the model's.
    """
    import torch

    from lowdim.training.run import evaluate

    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}: choose one of {', '.join(SPACES)}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    index = prepared.eval_train_index if space == "train" else prepared.eval_test_index
    images = prepared.train_images if space == "train" else prepared.test_images
    labels = prepared.train_labels if space == "train" else prepared.test_labels

    def to(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    result = evaluate(model, to(images[index]), to(labels[index]), to(prepared.mean),
                      to(prepared.std), batch_size)
    return renormalize(result.probs)


def place(preds: np.ndarray, space: EmbeddedSpace, *, k_nearest: int = 5,
          log_probs: bool = False) -> Placement:
    """(T, N, C) or (N, C) predictions -> their Placement in the embedded space."""
    if isinstance(k_nearest, bool) or int(k_nearest) != k_nearest or k_nearest < 1:
        raise ValueError(f"k_nearest must be a positive integer, got {k_nearest!r}")
    p = check_predictions(preds, space, log_probs=log_probs)
    rows = _distance_rows(p, space)
    coords = project(rows, space.embedding)
    lam = progress(p, space.reference("ignorance"), space.reference("truth"))
    labels = space.reference("truth").argmax(axis=1)
    loss, error = loss_and_error(p, labels)
    return Placement(coords=coords, progress=lam, distances=rows, loss=loss, error=error,
                     nearest=nearest_runs(rows, space.index, int(k_nearest)))


def nearest_runs(distances: np.ndarray, index: pd.DataFrame, k: int) -> pd.DataFrame:
    """(T, M) distances -> the k nearest run checkpoints of each of the T queries, as index rows.

    Columns: query, rank (1 = nearest), distance, then the index's NEAREST_COLUMNS that exist.
    """
    runs = np.flatnonzero(index["kind"].to_numpy() == "run")
    if runs.size == 0:
        raise ValueError("the embedding holds no run checkpoint to compare with")
    k = min(k, runs.size)
    d = distances[:, runs]
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    columns = [c for c in NEAREST_COLUMNS if c in index.columns]
    frames = []
    for q in range(d.shape[0]):
        picked = index.iloc[runs[order[q]]][columns].reset_index(drop=True)
        picked.insert(0, "distance", d[q, order[q]])
        picked.insert(0, "rank", np.arange(1, k + 1))
        picked.insert(0, "query", q)
        frames.append(picked)
    return pd.concat(frames, ignore_index=True)
