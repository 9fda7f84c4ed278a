"""A run's numeric precision (`grid` key `precision`, docs/study.md B3).

`fp32`: the forward pass, backward pass and optimizer step in float32, as every run trained
before runs had a precision. `fp16-mixed`: as the authors' configs with `autocast: True`, the
training forward pass (loss included) under float16 autocast, and the optimizer step through
`torch.amp.GradScaler` (a dynamic loss scale; a step whose gradients overflow is skipped).
Evaluation stays in float32, as in the authors' runner. fp16-mixed needs CUDA and is refused
elsewhere before anything trains; it trains one run at a time (`train_run`), never in a pack.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext

import torch

from lowdim.store.records import DEFAULT_PRECISION, RunSpec

FP16_MIXED = "fp16-mixed"


def check_precision(specs: Iterable[RunSpec], device_type: str) -> None:
    """Raise ValueError for the first run whose precision cannot train on `device_type`."""
    for spec in specs:
        if spec.precision == DEFAULT_PRECISION:
            continue
        if spec.precision != FP16_MIXED:
            raise ValueError(f"run {spec.run_id}: precision {spec.precision!r} is not known: "
                             f"use {DEFAULT_PRECISION} or {FP16_MIXED}")
        if device_type != "cuda":
            raise ValueError(
                f"run {spec.run_id} has precision {FP16_MIXED}, which needs CUDA (float16 "
                f"autocast with a gradient scaler), but training runs on {device_type}: set "
                f"precision: [{DEFAULT_PRECISION}] in that grid block, or train on a GPU")


def trains_alone(spec: RunSpec) -> bool:
    """Whether the run trains with `train_run` even when its launch packs runs."""
    return spec.precision != DEFAULT_PRECISION


class StepPrecision:
    """The training step of one run at its precision: `autocast()` around the forward pass and
    loss, `backward_and_step` for the rest (exactly `loss.backward(); optimizer.step()` in
    fp32)."""

    def __init__(self, spec: RunSpec, device: torch.device) -> None:
        check_precision([spec], device.type)
        self.device_type = device.type
        mixed = spec.precision == FP16_MIXED
        self.scaler = torch.amp.GradScaler(device.type) if mixed else None

    def autocast(self) -> AbstractContextManager:
        """float16 autocast for fp16-mixed; nothing at all for fp32."""
        if self.scaler is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=torch.float16)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Gradients of `loss` and one optimizer step (with fp16-mixed: scaled, and skipped
        when the gradients overflow)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
