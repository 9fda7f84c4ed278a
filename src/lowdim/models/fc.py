"""Fully connected network (docs/study.md B2 `fc`): MLP with ReLU then BatchNorm1d(affine=False)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FC(nn.Module):
    """MLP (B, C, H, W) -> (B, num_classes): Linear -> ReLU -> BN(affine=False) per hidden width."""

    def __init__(self, in_features: int, num_classes: int, widths: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = in_features
        for width in widths:
            # BN after the activation and without affine parameters, as in the paper's code:
            # the only trainable parameters are the Linear weights and biases.
            layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.BatchNorm1d(width, affine=False)]
            fan_in = width
        layers.append(nn.Linear(fan_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        return self.net(x)
