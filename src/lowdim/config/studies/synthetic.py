"""The `studies.synthetic` section: sloppy synthetic data (docs/study.md B8, D17).

The students are one fc architecture (`student_widths`, its hidden widths) or several
(`students`, a list of them, e.g. the authors' [[512], [512, 512]]). Each student architecture
trains its own runs and is embedded on its own for each c and group, since the analysis compares
the explained stress of one kind of network across c; `student_architectures` lists them with the
names their products and metrics carry (none for the single `student_widths` student, whose
products and metrics keep the one-student layout).
"""

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
DEFAULT_STUDENT = (64, 32)  # the hidden widths of the one student when neither key is set


def student_name(widths: tuple[int, ...]) -> str:
    """The name of a student architecture in products and metrics: 'fc-512-512'."""
    return "fc-" + "-".join(str(w) for w in widths)


def student_group(student: str | None, group: str) -> str:
    """The group part of a product's stem (`product_name(c, ...)`): the group alone for the
    unnamed single student, else '<student>_<group>' ('fc-512_default')."""
    return group if student is None else f"{student}_{group}"


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
    # one student's hidden widths (null: (64, 32)), or several students' (then student_widths
    # stays null); each student architecture is trained and embedded on its own
    student_widths: Widths | None = None
    students: Annotated[tuple[Widths, ...], Unique()] | None = None
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
        """One way of naming the students; every optimizer has its learning rate."""
        if self.students is not None and self.student_widths is not None:
            raise ConfigError("studies.synthetic sets both student_widths (one student) and "
                              "students (several): keep students, with the one student as one "
                              "of its entries, and set student_widths to null (or drop it)")
        for opt in self.optimizers:
            if opt not in self.lr:
                raise ConfigError(f"studies.synthetic.lr has no entry for optimizer {opt!r}: add "
                                  f"{opt}: lr")

    def student_architectures(self) -> list[tuple[str | None, tuple[int, ...]]]:
        """(name, hidden widths) of each student architecture, in order: each of `students`
        named by `student_name`, or the one unnamed `student_widths` student."""
        if self.students is not None:
            return [(student_name(widths), widths) for widths in self.students]
        return [(None, self.student_widths or DEFAULT_STUDENT)]
