"""Dataset sources by name: the bundled digits, Fashion-MNIST, CIFAR-10 and ImageNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lowdim.config.data import DATASET_SHAPES
from lowdim.data.cifar import load_cifar10
from lowdim.data.fashion import load_fashion_mnist
from lowdim.data.imagenet import load_imagenet
from lowdim.data.raw import RawDataset
from lowdim.data.subsets import stratified_split

DATASETS = tuple(DATASET_SHAPES)  # the parameter file names them (data.dataset); loaded here
_DIGITS_MAX = 16  # scikit-learn's digits are 4x4-block counts of set pixels: 0..16


def digits_to_uint8(values: np.ndarray) -> np.ndarray:
    """Digits pixel counts (N, 64) in 0..16 to uint8 images (N, 1, 8, 8) in 0..255."""
    scaled = np.rint(values.astype(np.float64) * (255 / _DIGITS_MAX))
    return scaled.astype(np.uint8).reshape(-1, 1, 8, 8)


def load_digits(test_fraction: float, split_seed: int) -> RawDataset:
    """scikit-learn's 1,797 digits as uint8 (N, 1, 8, 8), split per class into train and test."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = digits_to_uint8(bunch.data)
    labels = bunch.target.astype(np.int64)
    # The source has no test split: hold out a seeded, class-stratified fraction.
    train, test = stratified_split(labels, test_fraction, split_seed)
    return RawDataset(
        "digits", images[train], labels[train], images[test], labels[test],
        classes=tuple(str(c) for c in range(10)),
    )


def load_source(name: str, root: str | Path | None = None, download: bool = False,
                test_fraction: float = 0.25, split_seed: int = 2,
                image_size: int | None = None) -> RawDataset:
    """The named dataset as uint8 images (N, C, H, W) and int64 labels for train and test;
    `image_size` (ImageNet only; None: 64) is the side its images are resized to."""
    if image_size is not None and name != "imagenet":
        raise ValueError(f"image_size = {image_size}: only imagenet is resized; {name} keeps "
                         "its own image size (pass image_size=None)")
    if name == "digits":
        return load_digits(test_fraction, split_seed)
    if name == "fashion-mnist":
        return load_fashion_mnist(root, download)
    if name == "cifar10":
        return load_cifar10(root, download)
    if name == "imagenet":
        return load_imagenet(root, download, image_size)
    raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
