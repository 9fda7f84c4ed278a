"""The in-memory form of one dataset source, before preparation, with its shape checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)  # eq=False: array fields make field-wise == ambiguous
class RawDataset:
    """One dataset source: uint8 images (N, C, H, W), int64 labels (N,), and the class names."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        check_images_labels(self.name, "train", self.train_images, self.train_labels,
                            len(self.classes))
        check_images_labels(self.name, "test", self.test_images, self.test_labels,
                            len(self.classes))
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(
                f"{self.name}: train images are {self.train_images.shape[1:]} but test images are "
                f"{self.test_images.shape[1:]}; both splits need the same (C, H, W)"
            )


def check_images_labels(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                        num_classes: int) -> None:
    """Raise ValueError unless images are uint8 (N, C, H, W) and labels int64 (N,) in range."""
    where = f"{name} {split}"
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"{where} images must be a uint8 array of shape (N, C, H, W), got "
            f"{_describe(images)}"
        )
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
        raise ValueError(f"{where} labels must be an int64 array of shape (N,), got "
                         f"{_describe(labels)}")
    if len(images) != len(labels):
        raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise ValueError(f"{where}: no images")
    if num_classes < 1:
        raise ValueError(f"{name}: no class names")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{where} labels span {low}..{high} but there are {num_classes} classes "
            f"(labels must be in 0..{num_classes - 1})"
        )


def _describe(array: object) -> str:
    """`dtype (shape)` of an array, or its type name, for error messages."""
    if isinstance(array, np.ndarray):
        return f"{array.dtype} {array.shape}"
    return type(array).__name__
