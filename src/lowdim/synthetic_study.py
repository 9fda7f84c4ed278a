"""The sloppy synthetic data study (docs/study.md B8, D17): fc students on Gaussian inputs whose
covariance eigenvalues decay at rate c, their checkpoints embedded with InPCA for each c.

The inputs are float (``lowdim.data.synthetic``), not the uint8 images of the main pipeline, so
the students train in their own small loop here, with the main loop's pieces: the seeding
function, the optimizers, the per-iteration cosine schedule and the checkpoint schedule (B5). The
"train" prediction space is the whole synthetic training set, the "test" space the test set.

Perturbed-initialization corners (B4 ``perturbed_normal``): N(0, 1) weights for every Linear
layer, drawn in module order from a generator seeded with the iseed, are added to the default
initialization. The authors' version also doubled the biases (a quirk); here biases are kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lowdim.models.fc import FC
from lowdim.predictions import reference_points
from lowdim.train import SPACES, checkpoint_steps, cosine_factor, make_optimizer, seed_everything


def perturb_init(model: nn.Module, iseed: int) -> None:
    """Add N(0, 1) weights drawn from `iseed` to every Linear weight of `model`, in place."""
    generator = torch.Generator().manual_seed(iseed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.add_(torch.randn(module.weight.shape, generator=generator))


@dataclass
class StudentRun:
    """One student's trajectory: checkpoint steps and, per space, (T, N, C) float32 predictions
    with their mean cross-entropy and 0/1 error (T,)."""

    steps: np.ndarray
    probs: dict[str, np.ndarray]
    loss: dict[str, np.ndarray]
    error: dict[str, np.ndarray]


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, float,
                                                                             float]:
    """Eval-mode probabilities (N, C), loss and error of float inputs x (N, ...)."""
    was_training = model.training
    model.eval()
    log_probs = F.log_softmax(model(x).float(), dim=1)
    model.train(was_training)
    error = (log_probs.argmax(dim=1) != y).float().mean().item()
    return log_probs.exp().numpy(), F.nll_loss(log_probs, y).item(), error


def train_student(inputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], *,
                  widths: Sequence[int], num_classes: int, optimizer: str, lr: float,
                  batch_size: int, epochs: int, seed: int,
                  iseed: int | None = None) -> StudentRun:
    """Train an fc student on float inputs['train'] (n, 1, 1, d) with labels['train'] (n,) on the
    CPU, recording both spaces at the checkpoint schedule; `iseed` perturbs its initialization."""
    seed_everything(seed)
    x = {s: torch.from_numpy(np.ascontiguousarray(inputs[s], dtype=np.float32)) for s in SPACES}
    y = {s: torch.from_numpy(np.asarray(labels[s], dtype=np.int64)) for s in SPACES}
    n_train = len(y["train"])
    model = FC(int(np.prod(inputs["train"].shape[1:])), num_classes, widths)
    if iseed is not None:
        perturb_init(model, iseed)
    opt = make_optimizer(optimizer, model.parameters(), lr, 0.0)
    iters = math.ceil(n_train / batch_size)
    total = epochs * iters
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(s, total))
    schedule = checkpoint_steps(epochs, iters)
    order_rng = torch.Generator().manual_seed(seed)
    records: dict[str, list] = {s: [] for s in SPACES}

    def checkpoint() -> None:
        for s in SPACES:
            records[s].append(_evaluate(model, x[s], y[s]))

    checkpoint()
    model.train()
    step = 0
    for _epoch in range(epochs):
        order = torch.randperm(n_train, generator=order_rng)
        for i in range(iters):
            batch = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(x["train"][batch]), y["train"][batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scheduler.step()
            step += 1
            if step in schedule:
                checkpoint()
    return StudentRun(
        steps=schedule,
        probs={s: np.stack([r[0] for r in records[s]]).astype(np.float32) for s in SPACES},
        loss={s: np.array([r[1] for r in records[s]]) for s in SPACES},
        error={s: np.array([r[2] for r in records[s]]) for s in SPACES})


def student_rows(run: StudentRun, run_id: str, space: str, **columns: object) -> pd.DataFrame:
    """Index rows of one student's checkpoints in `space`, with extra constant `columns`."""
    t = len(run.steps)
    return pd.DataFrame({"kind": "run", "run_id": run_id, **columns,
                         "checkpoint": np.arange(t), "step": run.steps,
                         f"{space}_loss": run.loss[space], f"{space}_error": run.error[space]})


def analysis_set(runs: Sequence[tuple[pd.DataFrame, np.ndarray]], labels: np.ndarray,
                 num_classes: int, geodesic_points: int, space: str = "train"
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Student checkpoints (rows, (T, N, C)) plus ignorance, truth and the geodesic of `labels`
    (N,): the index (column `row`) and (M, N, C) float32 probabilities."""
    ref_rows, ref_probs = reference_points({space: labels}, num_classes, geodesic_points)
    index = pd.concat([*(rows for rows, _ in runs), ref_rows], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    probs = np.concatenate([*(p for _, p in runs), ref_probs[space]]).astype(np.float32)
    return index, probs


def stress_table(stress: Mapping[tuple[float, str], np.ndarray], top: int) -> pd.DataFrame:
    """Long table c, group, k, explained_stress from {(c, group): (K,) chi_k}, k <= top."""
    return pd.DataFrame([{"c": c, "group": group, "k": k + 1, "explained_stress": float(v)}
                         for (c, group), chi in stress.items() for k, v in enumerate(chi[:top])])


def product_name(c: float, group: str) -> str:
    """The stem of one (c, group) product, e.g. 'c0.5_default'."""
    return f"c{c:g}_{group}"
