"""All-convolutional network (docs/study.md B2 `allcnn`), with BatchNorm after every ReLU."""

from __future__ import annotations

import torch
from torch import nn


def conv_relu_bn(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """Conv (with bias) -> ReLU -> BatchNorm2d: (B, c_in, H, W) -> (B, c_out, H', W')."""
    # docs/study.md says nothing special about this BN, so it keeps PyTorch's default affine=True
    # (unlike fc and the wide ResNets, whose BNs are affine=False). The convs keep their default
    # bias too, as in the paper's code; both choices give the table's 0.399M.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding),
        nn.ReLU(),
        nn.BatchNorm2d(c_out),
    )


class AllCNN(nn.Module):
    """All-CNN (B, C, H, W) -> (B, num_classes); the last conv's output is averaged into logits."""

    def __init__(self, in_channels: int, num_classes: int, channels: tuple[int, int]) -> None:
        super().__init__()
        c1, c2 = channels
        self.net = nn.Sequential(
            conv_relu_bn(in_channels, c1, 3, 1, 1),
            conv_relu_bn(c1, c1, 3, 2, 1),
            conv_relu_bn(c1, c2, 3, 1, 1),
            conv_relu_bn(c2, c2, 3, 2, 1),
            # The logits layer is a 1x1 conv, also followed by ReLU and BN as in the paper.
            conv_relu_bn(c2, num_classes, 1, 1, 0),
            # The paper's AvgPool2d(8) is global pooling on 32x32 inputs (8x8 maps after two
            # stride-2 convs); adaptive pooling gives the same there and also works on 8x8/28x28.
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        return self.net(x)
