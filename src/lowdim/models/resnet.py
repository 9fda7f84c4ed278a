"""torchvision's ResNets (`resnet18` ... `resnet152`), with the stage widths and depths as sizes.

The network is torchvision's `ResNet` built from torchvision's own `BasicBlock` and `Bottleneck`:
the same 7x7 stride-2 stem with max pooling, the same stages, the same module names and the same
initialisation (Kaiming normal, fan-out, for convolutions; BatchNorm weights 1 and biases 0), so
at the default sizes and under one torch seed its weights equal `torchvision.models.resnetXX`'s
(tests/test_imagenet.py). Two things are sizes here, fixed there: `width`, the channels of the
first stage (doubled at each later stage; torchvision: 64), and `layers`, the blocks of each
stage (torchvision: four stages), so small versions train on a CPU. The input may have any number
of channels. This is the architecture family of the authors' related ImageNet pipeline
(docs/study.md B1), which trains torchvision's `resnet50`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # torchvision is imported when a ResNet is built: it costs every stage that
    # imports lowdim.models about 2 s otherwise
    from torchvision.models.resnet import BasicBlock, Bottleneck

# name -> (torchvision's block class, blocks per stage), as torchvision's constructors define them
RESNETS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("BasicBlock", (2, 2, 2, 2)),
    "resnet34": ("BasicBlock", (3, 4, 6, 3)),
    "resnet50": ("Bottleneck", (3, 4, 6, 3)),
    "resnet101": ("Bottleneck", (3, 4, 23, 3)),
    "resnet152": ("Bottleneck", (3, 8, 36, 3)),
}
DEFAULT_WIDTH = 64


class ResNet(nn.Module):
    """torchvision's ResNet (B, in_channels, H, W) -> logits (B, num_classes), with stage i of
    `layers[i]` blocks at width * 2**i channels (times the block's expansion)."""

    def __init__(self, in_channels: int, num_classes: int,
                 block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...],
                 width: int = DEFAULT_WIDTH) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stages = len(layers)
        for i, blocks in enumerate(layers):
            setattr(self, f"layer{i + 1}",
                    self._stage(block, width * 2**i, blocks, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 2 ** (len(layers) - 1) * block.expansion, num_classes)
        for module in self.modules():  # torchvision's initialisation, in its order
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def _stage(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
               stride: int) -> nn.Sequential:
        """One stage: a first block that may change shape (1x1 conv + BN shortcut), then more."""
        from torchvision.models.resnet import conv1x1

        out = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))
        modules = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out
        modules += [block(out, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build_resnet(name: str, in_channels: int, num_classes: int, *, layers: tuple[int, ...],
                 width: int) -> ResNet:
    """The ResNet `name` (its block type) with validated `layers` and `width`."""
    from torchvision.models import resnet

    block, _ = RESNETS[name]
    return ResNet(in_channels, num_classes, getattr(resnet, block), tuple(layers), width)
