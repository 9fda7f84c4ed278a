"""ConvMixer (docs/study.md B2 `convmixer`): patch conv, then depthwise/pointwise mixing layers."""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """x + fn(x) for an fn that keeps the shape."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + fn(x), same shape as x."""
        return x + self.fn(x)


def mixer_layer(dim: int, kernel_size: int) -> nn.Sequential:
    """Residual depthwise conv then pointwise conv, each -> GELU -> BN: (B, dim, h, w) kept."""
    return nn.Sequential(
        Residual(
            nn.Sequential(
                nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same"),
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )
        ),
        nn.Conv2d(dim, dim, kernel_size=1),
        nn.GELU(),
        nn.BatchNorm2d(dim),
    )


class ConvMixer(nn.Module):
    """ConvMixer (B, C, H, W) -> (B, num_classes) on (H // patch) x (W // patch) patches."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dim: int,
        depth: int,
        kernel_size: int,
        patch_size: int,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size),
            nn.GELU(),
            nn.BatchNorm2d(dim),
            *(mixer_layer(dim, kernel_size) for _ in range(depth)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(dim, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        return self.net(x)
