"""Pre-activation wide ResNets `wr-<depth>-<widen>-<base>` (docs/study.md B2)."""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

WR_PATTERN = re.compile(r"wr-(\d+)-(\d+)-(\d+)")
WR_FORM = "wr-<depth>-<widen>-<base> with (depth - 4) % 6 == 0, e.g. wr-10-4-8 or wr-16-4-64"


def parse_wr_name(name: str) -> tuple[int, int, int]:
    """(depth, widen, base) of a wide ResNet name such as 'wr-10-4-8'."""
    match = WR_PATTERN.fullmatch(name)
    if match is None:
        raise ValueError(f"malformed wide ResNet name {name!r}: write it as {WR_FORM}")
    depth, widen, base = (int(g) for g in match.groups())
    if depth < 10 or (depth - 4) % 6 != 0:
        raise ValueError(
            f"invalid wide ResNet depth {depth} in {name!r}: depth must be 6n + 4 with n >= 1 "
            "blocks per stage (10, 16, 22, 28, ...)"
        )
    if widen < 1 or base < 1:
        raise ValueError(
            f"invalid wide ResNet {name!r}: widen ({widen}) and base ({base}) must be >= 1"
        )
    return depth, widen, base


class WideBlock(nn.Module):
    """Pre-activation block (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        # BNs without affine parameters and convs without bias, as in the paper's code; the
        # stride sits on the second conv (docs/study.md B2), not the first as in Zagoruyko's WRN.
        self.bn1 = nn.BatchNorm2d(c_in, affine=False)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, affine=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            # Projection shortcut only when the shape changes; it has a bias (paper's code).
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual output (B, c_out, H', W') of x (B, c_in, H, W)."""
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """Wide ResNet (B, C, H, W) -> (B, num_classes) with stages of base*widen*(1, 2, 4) channels."""

    def __init__(
        self, in_channels: int, num_classes: int, depth: int, widen: int, base: int
    ) -> None:
        super().__init__()
        blocks_per_stage = (depth - 4) // 6
        widths = (base * widen, 2 * base * widen, 4 * base * widen)
        # The stem conv has no bias either (paper's code); it maps the input to `base` channels.
        self.stem = nn.Conv2d(in_channels, base, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        c_in = base
        for width, stride in zip(widths, (1, 2, 2), strict=True):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(WideBlock(c_in, width, stride if i == 0 else 1))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c_in, affine=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        out = self.stages(self.stem(x))
        out = self.pool(F.relu(self.bn(out))).flatten(1)
        return self.linear(out)
