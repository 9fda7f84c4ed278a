"""The `studies.synthetic` section: sloppy synthetic data (docs/study.md B8, D17)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from lowdim.config.load import OPTIMIZERS, Check, ConfigError, OneOf, Positive, Unique

TEACHERS = ("fc", "random")
DecayRate = Check(lambda v: v >= 0, "the decay rate must be >= 0 (0 is isotropic)")
Classes = Check(lambda v: v >= 2, "must be at least 2")
LearningRate = Check(lambda v: v > 0, "a learning rate must be positive")
Corners = Check(lambda v: v >= 0, "must be >= 0 (0 skips the perturbed-initialization corners)")
Widths = tuple[Annotated[int, Positive], ...]


@dataclass(frozen=True)
class SyntheticConfig:
    """Sloppy synthetic data (docs/study.md B8, D17): fc students on Gaussian inputs whose
    covariance eigenvalues decay at rate c, labelled by a random teacher."""

    SECTION = "studies.synthetic"

    c: Annotated[tuple[Annotated[float, DecayRate], ...], Unique()] = (0.0, 0.001, 0.5)
    d: Annotated[int, Positive] = 200
    n_train: Annotated[int, Positive] = 500
    n_test: Annotated[int, Positive] = 200
    num_classes: Annotated[int, Classes] = 5
    # fc (argmax of a random tanh network) | random labels
    teacher: Annotated[str, OneOf(TEACHERS)] = "fc"
    teacher_widths: Widths = (50,)
    data_seed: int = 5  # the authors' synthetic-data seed
    student_widths: Widths = (64, 32)
    optimizers: Annotated[tuple[Annotated[str, OneOf(OPTIMIZERS)], ...], Unique()] = (
        "sgdn", "adam")
    lr: dict[Annotated[str, OneOf(OPTIMIZERS)], Annotated[float, LearningRate]] = field(
        default_factory=lambda: {"sgdn": 0.05, "adam": 0.001})
    batch_size: Annotated[int, Positive] = 50
    epochs: Annotated[int, Positive] = 10
    seeds: Annotated[tuple[int, ...], Unique()] = (42, 43)
    # perturbed-init iseeds 0..ncorners-1; 0 skips them
    ncorners: Annotated[int, Corners] = 2
    geodesic_points: Annotated[int, Positive] = 20

    def check(self) -> None:
        """Every optimizer has its learning rate."""
        for opt in self.optimizers:
            if opt not in self.lr:
                raise ConfigError(f"studies.synthetic.lr has no entry for optimizer {opt!r}: add "
                                  f"{opt}: lr")
