"""One training run (docs/study.md B3-B5): seed, optimizer, learning-rate schedule (the paper's
cosine, or the triangular one of the authors' ImageNet pipeline), loss (cross-entropy, optionally
label-smoothed), checkpoint schedule, and inline predictions of every checkpoint on both
evaluation subsets."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from lowdim.config.grid import triangular_peak
from lowdim.data import Prepared, augment_simple, normalize
from lowdim.models import apply_init, build_model
from lowdim.store.records import (
    SPACES,  # defined torch-free there; importable from here as before
    RunSpec,
)
from lowdim.store.runs import PREDICTIONS_DTYPE
from lowdim.training.precision import StepPrecision
from lowdim.training.settings import crop_padding, observed_settings, provenance, run_padding


def checkpoint_steps(epochs: int, iters_per_epoch: int) -> np.ndarray:
    """Optimizer steps after which a checkpoint is recorded (B5), step 0 included: (T,) int64.

    Epochs 0-4: every ⌊iters/4⌋-th batch, after its step; end of epochs 5-25; end of epochs
    26-65 divisible by 4; end of epochs above 65 divisible by 15; end of the last epoch.
    """
    if epochs < 1 or iters_per_epoch < 1:
        raise ValueError(f"epochs ({epochs}) and iterations per epoch ({iters_per_epoch}) "
                         "must be positive")
    every = max(1, iters_per_epoch // 4)
    steps = {0}
    for epoch in range(epochs):
        start = epoch * iters_per_epoch
        if epoch < 5:
            steps.update(start + i + 1 for i in range(0, iters_per_epoch, every))
        elif (epoch <= 25 or (epoch <= 65 and epoch % 4 == 0) or (epoch > 65 and epoch % 15 == 0)
              or epoch == epochs - 1):
            steps.add(start + iters_per_epoch)
    steps.add(epochs * iters_per_epoch)
    return np.array(sorted(steps), dtype=np.int64)


def seed_everything(seed: int) -> None:
    """The one seeding function: Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global RNG, for code that still uses it
    torch.manual_seed(seed)


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """sgd (no momentum), sgdn (Nesterov, momentum 0.9) or adam (coupled L2 decay), as in B3."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "sgdn":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: use sgd, sgdn or adam")


def cosine_factor(step: int, total_steps: int) -> float:
    """Cosine annealing to 0 over `total_steps`, stepped per iteration, no warm-up."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


# The triangular schedule starts at this fraction of the peak rate (the authors' ImageNet
# pipeline: 1e-4 of it at step 0, docs/study.md B1).
TRIANGULAR_START = 1e-4


def triangular_factor(step: int, iters_per_epoch: int, peak_epoch: int, epochs: int) -> float:
    """The triangular schedule at `step`: linear from TRIANGULAR_START at epoch 0 to 1 at
    `peak_epoch`, then linear to 0 at `epochs`, read at the fractional epoch step / iters (the
    authors' pipeline interpolates within each epoch between its values at the epoch's ends,
    which is the same piecewise-linear function, its knots falling on whole epochs)."""
    if not 0 < peak_epoch < epochs:
        raise ValueError(f"the triangular schedule's peak epoch ({peak_epoch}) must lie strictly "
                         f"between 0 and the run's {epochs} epochs")
    epoch = min(step / iters_per_epoch, epochs)
    return float(np.interp(epoch, [0, peak_epoch, epochs], [TRIANGULAR_START, 1.0, 0.0]))


def lr_factor(spec: RunSpec, iters_per_epoch: int) -> Callable[[int], float]:
    """The factor of the run's learning rate before optimizer step `step` (0 first), for its
    schedule: cosine over every step of the run, or triangular-<k>."""
    total = spec.epochs * iters_per_epoch
    peak = triangular_peak(spec.schedule)
    if peak is None:
        return lambda step: cosine_factor(step, total)
    return lambda step: triangular_factor(step, iters_per_epoch, peak, spec.epochs)


def training_loss(logits: torch.Tensor, labels: torch.Tensor,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of logits (B, C) against labels (B,), label-smoothed when asked (the
    target puts 1 - s + s/C on the label and s/C on every other class)."""
    if label_smoothing == 0.0:
        return F.cross_entropy(logits, labels)  # the exact call of runs before label smoothing
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch: every sample once, the last batch possibly smaller."""
    return math.ceil(n_train / batch_size)


def init_model(spec: RunSpec, input_shape: tuple[int, ...], num_classes: int,
               device: torch.device) -> torch.nn.Module:
    """The run's seeded (B4), freshly initialised model, built on the CPU, moved to `device`."""
    seed_everything(spec.seed)
    model = build_model(spec.arch, tuple(input_shape), num_classes, **spec.model_size)
    # Initialised before the move, so the CPU generator draws the same weights on any device.
    apply_init(model, spec.init, torch.Generator().manual_seed(spec.seed))
    return model.to(device)


def run_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """The run's two RNG streams: data order (CPU) and augmentation draws (on `device`)."""
    order_rng = torch.Generator().manual_seed(seed)
    augment_rng = torch.Generator(device=device).manual_seed(seed + 1)
    return order_rng, augment_rng


def epoch_order(n_train: int, order_rng: torch.Generator, device: torch.device) -> torch.Tensor:
    """One epoch's shuffled sample indices (n_train,) int64 on `device`, drawn on the CPU."""
    return torch.randperm(n_train, generator=order_rng).to(device)


@dataclass
class Evaluation:
    """Predictions of one checkpoint on one evaluation subset."""

    probs: np.ndarray  # (N, C) float32 (the run store's dtype) unless asked otherwise
    loss: float        # mean cross-entropy
    error: float       # mean 0/1 error


def summarize(log_probs: torch.Tensor, labels: torch.Tensor,
              probs_dtype: type = PREDICTIONS_DTYPE) -> Evaluation:
    """Probabilities (the run store's float32 unless `probs_dtype`), mean cross-entropy and 0/1
    error of log-probabilities (N, C)."""
    loss = F.nll_loss(log_probs, labels).item()
    error = (log_probs.argmax(dim=1) != labels).float().mean().item()
    return Evaluation(log_probs.exp().cpu().numpy().astype(probs_dtype), loss, error)


def model_inputs(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A batch as the model sees it: uint8 images (B, C, H, W) normalized; float tensors are
    already features (lowdim.studies.synthetic's inputs) and pass as they are."""
    return images if images.is_floating_point() else normalize(images, mean, std)


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             mean: torch.Tensor, std: torch.Tensor, batch_size: int,
             probs_dtype: type = PREDICTIONS_DTYPE) -> Evaluation:
    """Eval-mode predictions on un-augmented uint8 images (N,C,H,W): probabilities, loss, error."""
    was_training = model.training
    model.eval()
    log_probs = torch.cat([
        F.log_softmax(model(model_inputs(images[i:i + batch_size], mean, std)).float(), dim=1)
        for i in range(0, len(images), batch_size)
    ])
    model.train(was_training)
    return summarize(log_probs, labels, probs_dtype)


@dataclass
class RunResult:
    """The trajectory of one run: per-checkpoint predictions and metrics."""

    spec: RunSpec
    steps: list[int] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    probs: dict[str, list[np.ndarray]] = field(default_factory=lambda: {s: [] for s in SPACES})
    loss: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SPACES})
    error: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SPACES})
    status: str = "ok"
    diverged_at_step: int | None = None
    seconds: float = 0.0
    iters_per_epoch: int = 0
    final_state: dict[str, torch.Tensor] | None = None  # the weights at the end, when asked for
    settings: dict[str, Any] = field(default_factory=dict)    # lowdim.training.settings
    provenance: dict[str, Any] = field(default_factory=dict)  # device, precision, versions

    def record(self, step: int, evaluations: dict[str, Evaluation]) -> None:
        """Append one checkpoint."""
        self.steps.append(step)
        self.epochs.append(step / self.iters_per_epoch)
        for space, ev in evaluations.items():
            self.probs[space].append(ev.probs)
            self.loss[space].append(ev.loss)
            self.error[space].append(ev.error)

    def stacked(self, space: str) -> np.ndarray:
        """Predictions of every checkpoint: (T, N, C), float32 unless asked otherwise."""
        return np.stack(self.probs[space])


@dataclass(frozen=True)
class DeviceData:
    """The prepared data as tensors on the training device (uint8 images; or float features,
    which `model_inputs` passes unnormalized)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: dict[str, torch.Tensor]
    eval_labels: dict[str, torch.Tensor]
    mean: torch.Tensor
    std: torch.Tensor
    num_classes: int

    @classmethod
    def from_prepared(cls, prepared: Prepared, device: torch.device) -> DeviceData:
        """Move images (uint8), labels and normalization statistics to `device` once."""
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return cls(
            train_images=t(prepared.train_images), train_labels=t(prepared.train_labels),
            eval_images={"train": t(prepared.train_images[prepared.eval_train_index]),
                         "test": t(prepared.test_images[prepared.eval_test_index])},
            eval_labels={"train": t(prepared.train_labels[prepared.eval_train_index]),
                         "test": t(prepared.test_labels[prepared.eval_test_index])},
            mean=t(prepared.mean.astype(np.float32)), std=t(prepared.std.astype(np.float32)),
            num_classes=prepared.num_classes,
        )


def step_progress(progress: bool) -> tuple[tqdm, Callable[[int, int], None]]:
    """A bar of training steps (the caller closes it) and the `on_step` callback that moves it."""
    bar = tqdm(desc="steps", unit="step", leave=False, mininterval=2.0, disable=not progress)

    def on_step(step: int, total: int) -> None:
        bar.total = total
        bar.update(1)

    return bar, on_step


def train_run(spec: RunSpec, data: DeviceData, *, eval_batch_size: int = 1000,
              augment_padding: int | None = None,
              on_step: Callable[[int, int], None] | None = None,
              initial_state: Mapping[str, torch.Tensor] | None = None,
              keep_state: bool = False, probs_dtype: type = PREDICTIONS_DTYPE) -> RunResult:
    """Train one run from its spec; stops early and marks the run diverged on a NaN/inf loss.

    `initial_state` (a state dict) replaces the initial weights, so a run continues from another
    run's end with a fresh optimizer and schedule (the corner runs, B7); `keep_state` stores the
    final weights in `RunResult.final_state`. `probs_dtype` is the dtype of the recorded
    probabilities: float32, the run store's (float16 would round confident predictions' small
    class probabilities to 0, docs/study.md "Stored precision").
    The run's `precision` (lowdim.training.precision) is checked against the device first.
    """
    device = data.train_images.device
    precision = StepPrecision(spec, device)  # fp16-mixed off CUDA: refused before anything
    n_train, *shape = data.train_images.shape
    model = init_model(spec, tuple(shape), data.num_classes, device)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.weight_decay)
    iters = iterations_per_epoch(n_train, spec.batch_size)
    total = spec.epochs * iters
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(spec, iters))
    checkpoints = set(checkpoint_steps(spec.epochs, iters).tolist())
    order_rng, augment_rng = run_generators(spec.seed, device)
    padding = crop_padding(augment_padding, shape[1])

    result = RunResult(spec=spec, iters_per_epoch=iters)
    started = time.perf_counter()

    def finish() -> RunResult:
        result.seconds = time.perf_counter() - started
        result.settings = observed_settings(device, eval_batch_size=eval_batch_size,
                                            padding=run_padding(spec.augment, padding))
        result.provenance = provenance(device)
        return result

    def checkpoint(step: int) -> None:
        result.record(step, {s: evaluate(model, data.eval_images[s], data.eval_labels[s],
                                         data.mean, data.std, eval_batch_size, probs_dtype)
                                for s in SPACES})

    checkpoint(0)
    model.train()
    step = 0
    for _epoch in range(spec.epochs):
        order = epoch_order(n_train, order_rng, device)
        for i in range(iters):
            batch = order[i * spec.batch_size:(i + 1) * spec.batch_size]
            images = data.train_images[batch]
            if spec.augment == "simple":
                images = augment_simple(images, padding, augment_rng)
            with precision.autocast():
                logits = model(model_inputs(images, data.mean, data.std))
                loss = training_loss(logits.float(), data.train_labels[batch],
                                     spec.label_smoothing)
            if not torch.isfinite(loss):
                result.status, result.diverged_at_step = "diverged", step + 1
                return finish()
            optimizer.zero_grad(set_to_none=True)
            precision.backward_and_step(loss, optimizer)
            scheduler.step()
            step += 1
            if step in checkpoints:
                checkpoint(step)
            if on_step is not None:
                on_step(step, total)
    if keep_state:
        result.final_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return finish()
