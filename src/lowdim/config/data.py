"""The `data` section: which dataset, how it is split, the training subset and the evaluation
subsets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from lowdim.config.load import ConfigError, OneOf, Positive, Range

# Input shape and class count of each dataset, so that models are checked before any data is read.
# lowdim.data loads exactly these datasets (its DATASETS are these keys). ImageNet's images are
# resized when prepared (data.image_size): its entry holds the default size, and
# `DataConfig.input_shape` the one a profile asks for. Its 1,000 classes are ILSVRC-2012's; a folder
# with fewer class folders (a subset) trains on the classes it holds.
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "imagenet": ((3, 64, 64), 1000),
}
# Datasets whose images are resized to data.image_size when prepared.
RESIZED = ("imagenet",)


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, how it is split, the training subset (train_size: null = the whole training
    split), and the evaluation subsets that define prediction spaces, drawn from the examples
    trained on."""

    SECTION = "data"

    dataset: Annotated[str, OneOf(tuple(DATASET_SHAPES))] = "digits"
    root: str | None = None
    download: bool = False
    test_fraction: Annotated[float, Range(0, 1)] = 0.25
    split_seed: int = 2
    train_size: Annotated[int, Positive] | None = None
    train_seed: int = 0
    eval_train_size: Annotated[int, Positive] | None = None
    eval_test_size: Annotated[int, Positive] | None = None
    eval_seed: int = 0
    # imagenet only: the side of the square images it is prepared at (null: 64)
    image_size: Annotated[int, Positive] | None = None

    @property
    def num_classes(self) -> int:
        """The dataset's class count."""
        return DATASET_SHAPES[self.dataset][1]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one prepared image: the dataset's own, or data.image_size squared."""
        (channels, height, width), _ = DATASET_SHAPES[self.dataset]
        if self.image_size is None:
            return channels, height, width
        return channels, self.image_size, self.image_size

    def check(self) -> None:
        """A dataset directory must exist unless torchvision may download into it; a training
        subset needs one example per class (its upper bound, the training split's size, is
        checked when the data stage reads the split); image_size resizes ImageNet only, which
        cannot be downloaded."""
        if self.image_size is not None and self.dataset not in RESIZED:
            raise ConfigError(
                f"data.image_size = {self.image_size} but data.dataset = {self.dataset!r}: only "
                f"{', '.join(RESIZED)} is resized when prepared; {self.dataset} keeps its "
                f"{DATASET_SHAPES[self.dataset][0][1]}x{DATASET_SHAPES[self.dataset][0][2]} "
                "images: set data.image_size: null"
            )
        if self.dataset == "imagenet" and self.download:
            raise ConfigError(
                "data.download = true but ImageNet cannot be downloaded (its licence requires an "
                "account at image-net.org): put its folders under data.root (root/train/<wnid>/, "
                "root/val/<wnid>/, torchvision's layout) and set data.download: false"
            )
        if self.train_size is not None and self.train_size < self.num_classes:
            raise ConfigError(
                f"data.train_size = {self.train_size}: a class-balanced training subset needs at "
                f"least one example of each of the {self.num_classes} classes of {self.dataset}, "
                f"so at least {self.num_classes}; or null for the whole training split"
            )
        if self.root is not None and not Path(self.root).is_dir() and not self.download:
            raise ConfigError(
                f"data.root = {self.root!r}: this dataset directory does not exist; create it "
                "with the dataset's files, point data.root at the right place, or set "
                "data.download: true"
            )
