"""The prepared data product: splits, normalization statistics and evaluation subsets, on disk;
optionally trained on a class-balanced subset of the training split (data.train_size)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lowdim.data.raw import RawDataset
from lowdim.data.subsets import evaluation_subset, training_subset
from lowdim.store.atomic import atomic_directory
from lowdim.store.inputs import read_input

FORMAT_VERSION = 1
ARRAYS = ("train_images", "train_labels", "test_images", "test_labels",
          "eval_train_index", "eval_test_index", "mean", "std")
# Written only when training on a subset, so that train_size: null leaves the product unchanged.
OPTIONAL_ARRAYS = ("train_source_index",)
META_FILE = "meta.json"


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (C,) float32 of uint8 images (N, C, H, W) over [0, 1]."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError("images must be a uint8 array (N, C, H, W)")
    if images.size == 0:
        raise ValueError("images are empty: no statistics to compute")
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        # A histogram of the 256 levels gives exact float64 moments with no float copy of the data.
        counts = np.bincount(images[:, channel].ravel(), minlength=256).astype(np.float64)
        weights = counts / counts.sum()
        mean = float(weights @ levels)
        means.append(mean)
        stds.append(float(np.sqrt(weights @ (levels - mean) ** 2)))
    if min(stds) == 0.0:
        raise ValueError(f"a channel is constant (std {stds}): it cannot be normalized")
    return np.array(means, dtype=np.float32), np.array(stds, dtype=np.float32)


@dataclass(frozen=True, eq=False)  # eq=False: array fields make field-wise == ambiguous
class Prepared:
    """Train and test uint8 images (N, C, H, W) and labels, eval subsets, channel mean/std (C,).

    With a training subset (data.train_size), the train arrays hold only its examples and
    `train_source_index` (N,) says where each lies in the source's training split; otherwise
    it is None and the train arrays are the whole split.
    """

    dataset: str
    classes: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    eval_train_index: np.ndarray
    eval_test_index: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    train_source_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Reuse RawDataset's checks of images, labels and classes.
        RawDataset(self.dataset, self.train_images, self.train_labels, self.test_images,
                   self.test_labels, tuple(self.classes))
        for field, n in (("eval_train_index", len(self.train_labels)),
                         ("eval_test_index", len(self.test_labels))):
            _check_index(getattr(self, field), n, f"{self.dataset} {field}")
        for field in ("mean", "std"):
            value = getattr(self, field)
            if not (isinstance(value, np.ndarray) and value.dtype == np.float32
                    and value.shape == (self.input_shape[0],)):
                raise ValueError(f"{self.dataset} {field} must be float32 "
                                 f"({self.input_shape[0]},), got {value!r}")
        if not np.all(self.std > 0):
            raise ValueError(f"{self.dataset} std must be positive, got {self.std}")
        index = self.train_source_index
        if index is not None and not (
                isinstance(index, np.ndarray) and index.dtype == np.int64
                and index.shape == self.train_labels.shape and index[0] >= 0
                and np.all(np.diff(index) > 0)):
            raise ValueError(f"{self.dataset} train_source_index must be an int64 array, strictly "
                             "increasing and non-negative, with one entry per training example "
                             f"({len(self.train_labels)})")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        channels, height, width = self.train_images.shape[1:]
        return int(channels), int(height), int(width)

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)


def _check_index(index: np.ndarray, n: int, where: str) -> None:
    """Raise ValueError unless `index` is a non-empty, sorted, unique int64 array into range(n)."""
    if not (isinstance(index, np.ndarray) and index.dtype == np.int64 and index.ndim == 1):
        raise ValueError(f"{where} must be an int64 array (K,)")
    if index.size == 0 or index[0] < 0 or index[-1] >= n or np.any(np.diff(index) <= 0):
        raise ValueError(f"{where} must be non-empty, strictly increasing and within 0..{n - 1}")


def prepare(raw: RawDataset, eval_train_size: int | None, eval_test_size: int | None,
            eval_seed: int, train_size: int | None = None, train_seed: int = 0) -> Prepared:
    """Prepared data: the raw splits, train-set channel statistics and the evaluation subsets.

    `train_size` (None: the whole training split) keeps a class-balanced subset of the training
    split drawn with `train_seed` (subsets.training_subset); the statistics and the "train"
    evaluation subset are then computed on those examples only, the ones the runs train on.
    """
    train_images, train_labels, source_index = raw.train_images, raw.train_labels, None
    if train_size is not None:
        source_index = training_subset(raw.train_labels, train_size, train_seed)
        train_images, train_labels = train_images[source_index], train_labels[source_index]
    mean, std = channel_stats(train_images)
    # One seed for both subsets: they index different splits, so the draws do not interact.
    return Prepared(
        dataset=raw.name, classes=tuple(raw.classes),
        train_images=train_images, train_labels=train_labels,
        test_images=raw.test_images, test_labels=raw.test_labels,
        eval_train_index=evaluation_subset(train_labels, eval_train_size, eval_seed),
        eval_test_index=evaluation_subset(raw.test_labels, eval_test_size, eval_seed),
        mean=mean, std=std, train_source_index=source_index,
    )


def _arrays(prepared: Prepared) -> tuple[str, ...]:
    """The names of the arrays `prepared` holds: ARRAYS, plus the optional ones it has."""
    return ARRAYS + tuple(n for n in OPTIONAL_ARRAYS if getattr(prepared, n) is not None)


def save_prepared(prepared: Prepared, directory: str | Path) -> None:
    """Write one .npy per array plus meta.json into `directory`, replacing it atomically."""
    with atomic_directory(directory) as staging:
        names = _arrays(prepared)
        for name in names:
            np.save(staging / f"{name}.npy", getattr(prepared, name), allow_pickle=False)
        meta = {"format": FORMAT_VERSION, "dataset": prepared.dataset,
                "classes": list(prepared.classes), "arrays": list(names)}
        # meta.json last: a folder with it has every array.
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        for path in staging.iterdir():
            _fsync(path)


def _fsync(path: Path) -> None:
    """Flush a written file to disk, so a crash right after the rename leaves whole files."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def load_prepared(directory: str | Path) -> Prepared:
    """The Prepared data written by save_prepared (arrays loaded without pickle)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist: {directory} is not a prepared "
                                "dataset; run the data stage (dvc repro) to create it")
    meta = read_input(meta_path, lambda p: json.loads(p.read_text()), "data")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT_VERSION}; "
                         "re-run the data stage to rebuild it")
    listed = meta.get("arrays", ARRAYS)
    names = ARRAYS + tuple(n for n in OPTIONAL_ARRAYS if n in listed)
    arrays = {name: read_input(directory / f"{name}.npy",
                               lambda p: np.load(p, allow_pickle=False), "data")
              for name in names}
    return Prepared(dataset=meta["dataset"], classes=tuple(meta["classes"]), **arrays)
