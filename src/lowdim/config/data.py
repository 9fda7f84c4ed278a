"""The `data` section: which dataset, how it is split, the training subset and the evaluation
subsets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from lowdim.config.load import ConfigError, OneOf, Positive, Range

# Input shape and class count of each dataset, so that models are checked before any data is read.
# lowdim.data loads exactly these datasets (its DATASETS are these keys).
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}


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

    @property
    def num_classes(self) -> int:
        """The dataset's class count."""
        return DATASET_SHAPES[self.dataset][1]

    def check(self) -> None:
        """A dataset directory must exist unless torchvision may download into it; a training
        subset needs one example per class (its upper bound, the training split's size, is
        checked when the data stage reads the split)."""
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
