"""Synthetic "sloppy" data: Gaussian inputs with a decaying spectrum, labelled by a random teacher.

docs/study.md B8, after the authors' ``get_data`` for ``data: synthetic``:

- inputs x in R^d (d = 200) are Gaussian with mean 0 and covariance eigenvalues
  lambda_k = b e^{-c k} / d, k = 0..d-1, with b = 50 c, and b = 1 when c = 0 (isotropic; the
  authors' formula alone would give all-zero inputs there). c = 0.5 is strongly sloppy: lambda
  falls by e^{-0.5} per direction;
- eigen-directions: ``basis="axis"`` (default, the authors') puts lambda_k on coordinate k;
  ``basis="random"`` rotates by a Haar-random orthogonal matrix drawn from the seed. In float32, a
  rotated basis resolves eigenvalues down to about (float32 eps)^2 lambda_0 ~ 1e-14 lambda_0: the
  smaller ones drown in the rounding of the large components. The axis basis keeps every one;
- labels are the argmax of a random teacher, a fully connected tanh network d-50-5 without biases
  whose weights are N(0, 2 / fan_in) (the authors' kaiming_normal, fan_in, relu gain), evaluated in
  float64 so that labels do not depend on the BLAS; or, with ``teacher="random"``, i.i.d. uniform
  labels independent of x;
- 5,000 train and 1,000 test samples; seed 5 (the authors' synthetic-data seed).

One seed fixes everything: independent streams (numpy ``SeedSequence.spawn``) draw the basis, the
train inputs, the test inputs and the random labels, and a torch generator seeded with it draws the
teacher, so changing ``n_test`` does not change the train set.

The inputs are float32 arrays shaped (N, 1, 1, d) like images (C = H = 1): the fc models flatten
their input and take them as they are. They are not uint8, so they do not fit ``Prepared`` as it
stands (see ``SyntheticData``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

TEACHERS = ("fc", "random")
BASES = ("axis", "random")


@dataclass(frozen=True, eq=False)  # eq=False: array fields make field-wise == ambiguous
class SyntheticData:
    """Float32 inputs (N, 1, 1, d) and int64 labels (N,) for train and test, and the spectrum.

    ``basis`` (d, d) has the eigen-directions as columns: the input covariance is
    basis @ diag(eigenvalues) @ basis.T.
    """

    name: str
    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    eigenvalues: np.ndarray
    basis: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(1, 1, d): the shape of one input as an image."""
        _, channels, height, width = self.train_inputs.shape
        return int(channels), int(height), int(width)

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.classes)


def covariance_eigenvalues(d: int, c: float) -> np.ndarray:
    """-> (d,) float64 lambda_k = b e^{-c k} / d, k = 0..d-1, b = 50 c (b = 1 when c = 0)."""
    if isinstance(d, bool) or int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if not (np.isfinite(c) and c >= 0):
        raise ValueError(f"c must be a finite number >= 0 (0 is isotropic), got {c!r}")
    b = 50.0 * c if c > 0 else 1.0
    return b * np.exp(-c * np.arange(int(d))) / d


def input_basis(d: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """-> (d, d) orthonormal columns: the identity ("axis") or Haar-random ("random")."""
    if kind == "axis":
        return np.eye(d)
    if kind == "random":
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        return q * np.sign(np.diag(r))  # sign fix makes the QR factor Haar-distributed
    raise ValueError(f"unknown basis {kind!r}: choose one of {', '.join(BASES)}")


def gaussian_inputs(n: int, eigenvalues: np.ndarray, basis: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """-> (n, d) float32 samples of N(0, basis diag(eigenvalues) basis^T)."""
    z = rng.standard_normal((n, eigenvalues.shape[0])) * np.sqrt(eigenvalues)
    return (z @ basis.T).astype(np.float32)


def teacher_network(d: int, widths: Sequence[int], num_classes: int, seed: int) -> torch.nn.Module:
    """A float64 tanh MLP d-widths-num_classes without biases, weights N(0, 2/fan_in)."""
    generator = torch.Generator().manual_seed(seed)
    layers: list[torch.nn.Module] = []
    fan_in = d
    for i, width in enumerate([*widths, num_classes]):
        linear = torch.nn.Linear(fan_in, width, bias=False, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(width, fan_in, generator=generator,
                                            dtype=torch.float64) * np.sqrt(2.0 / fan_in))
        layers.append(linear)
        if i < len(widths):
            layers.append(torch.nn.Tanh())
        fan_in = width
    return torch.nn.Sequential(*layers).eval()


@torch.no_grad()
def teacher_labels(teacher: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    """(n, d) inputs -> (n,) int64 argmax of the teacher's outputs."""
    x = torch.from_numpy(np.asarray(inputs, dtype=np.float64))
    return teacher(x).argmax(dim=1).numpy().astype(np.int64)


def make_synthetic(
    c: float,
    *,
    d: int = 200,
    n_train: int = 5000,
    n_test: int = 1000,
    teacher: str = "fc",
    teacher_widths: Sequence[int] = (50,),
    num_classes: int = 5,
    basis: str = "axis",
    seed: int = 5,
) -> SyntheticData:
    """Sloppy Gaussian inputs (rate c) and teacher labels, all drawn from ``seed``."""
    if teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}: choose one of {', '.join(TEACHERS)}")
    for key, value in (("n_train", n_train), ("n_test", n_test), ("num_classes", num_classes)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if any(isinstance(w, bool) or int(w) != w or w < 1 for w in teacher_widths):
        raise ValueError(f"teacher_widths must be positive integers, got {teacher_widths!r}")
    lam = covariance_eigenvalues(d, c)
    basis_seq, train_seq, test_seq, label_seq = np.random.SeedSequence(seed).spawn(4)
    directions = input_basis(int(d), basis, np.random.default_rng(basis_seq))
    x_train = gaussian_inputs(int(n_train), lam, directions, np.random.default_rng(train_seq))
    x_test = gaussian_inputs(int(n_test), lam, directions, np.random.default_rng(test_seq))
    if teacher == "fc":
        net = teacher_network(int(d), [int(w) for w in teacher_widths], int(num_classes), seed)
        y_train, y_test = teacher_labels(net, x_train), teacher_labels(net, x_test)
    else:
        rng = np.random.default_rng(label_seq)
        y_train = rng.integers(0, num_classes, size=int(n_train), dtype=np.int64)
        y_test = rng.integers(0, num_classes, size=int(n_test), dtype=np.int64)
    widths = "-".join(str(int(w)) for w in teacher_widths)
    name = f"synthetic-{teacher}{'-' + widths if teacher == 'fc' else ''}-c{c:g}"
    return SyntheticData(
        name=name,
        train_inputs=x_train.reshape(-1, 1, 1, int(d)), train_labels=y_train,
        test_inputs=x_test.reshape(-1, 1, 1, int(d)), test_labels=y_test,
        classes=tuple(str(k) for k in range(int(num_classes))),
        eigenvalues=lam, basis=directions,
    )
