"""Weight initialisation schemes (docs/study.md B4), applied after a model is built."""

from __future__ import annotations

import torch
from torch import nn

from lowdim.config.grid import INIT_SCHEMES  # the parameter file names them; applied here


def apply_init(model: nn.Module, scheme: str, generator: torch.Generator | None = None) -> None:
    """Re-initialise `model` in place: 'default' keeps PyTorch's init, the others redraw Linear
    weights ('kaiming': kaiming_normal_ fan_in/relu; 'std_normal': N(0, 1)); biases are kept."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}: choose one of {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return  # the paper's main grid: PyTorch's default init, left untouched
    # Linear layers only, in module order, so a given generator state gives the same weights.
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(
                module.weight, mode="fan_in", nonlinearity="relu", generator=generator
            )
        else:
            nn.init.normal_(module.weight, mean=0.0, std=1.0, generator=generator)
