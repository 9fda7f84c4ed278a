"""Architecture registry: `build_model(name, input_shape, num_classes, **size)` (docs/study.md B2).

Names are `fc`, `allcnn`, `convmixer`, `vit`, wide ResNets `wr-<depth>-<widen>-<base>` and
torchvision's ResNets `resnet18`, `resnet34`, `resnet50`, `resnet101`, `resnet152` (the authors'
related ImageNet pipeline, docs/study.md B1). Size keywords override a family's defaults, which
are the paper's CIFAR-10 sizes (torchvision's for the ResNets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from torch import nn

from lowdim.config.data import DATASET_SHAPES
from lowdim.config.load import ConfigError
from lowdim.models.allcnn import AllCNN
from lowdim.models.convmixer import ConvMixer
from lowdim.models.fc import FC
from lowdim.models.init import INIT_SCHEMES, apply_init
from lowdim.models.resnet import DEFAULT_WIDTH, RESNETS, build_resnet
from lowdim.models.vit import ViT
from lowdim.models.wide_resnet import WR_FORM, WideResNet, parse_wr_name

__all__ = [
    "INIT_SCHEMES",
    "apply_init",
    "architecture_names",
    "build_model",
    "check_sizes",
    "parameter_count",
]

InputShape = tuple[int, int, int]

# The paper's six CIFAR-10 architectures, in docs/study.md B2's order.
PAPER_ARCHITECTURES = ("fc", "allcnn", "wr-10-4-8", "wr-16-4-64", "convmixer", "vit")
# torchvision's ResNets, for ImageNet (docs/study.md B1)
RESNET_ARCHITECTURES = tuple(RESNETS)


@dataclass(frozen=True)
class Family:
    """A model family: its size keywords with the paper's defaults, and its constructor."""

    defaults: Mapping[str, int | tuple[int, ...]]
    build: Callable[..., nn.Module]  # (input_shape, num_classes, **size) -> module


def _build_allcnn(input_shape: InputShape, num_classes: int, channels: tuple[int, ...]) -> AllCNN:
    """AllCNN from validated sizes; `channels` must be (c1, c2)."""
    if len(channels) != 2:
        raise ValueError(
            f"allcnn channels must be two widths (c1, c2), e.g. (96, 144); got {channels}"
        )
    return AllCNN(input_shape[0], num_classes, (channels[0], channels[1]))


def _build_convmixer(
    input_shape: InputShape, num_classes: int, *, patch_size: int, **size: int
) -> ConvMixer:
    """ConvMixer from validated sizes; the image must hold at least one patch."""
    _, height, width = input_shape
    if patch_size > min(height, width):
        raise ValueError(
            f"convmixer patch_size={patch_size} is larger than the {height}x{width} image: "
            f"use patch_size <= {min(height, width)}"
        )
    return ConvMixer(input_shape[0], num_classes, patch_size=patch_size, **size)


FAMILIES: dict[str, Family] = {
    "fc": Family(
        {"widths": (1024, 512, 256, 128)},
        lambda shape, k, widths: FC(shape[0] * shape[1] * shape[2], k, widths),
    ),
    "allcnn": Family({"channels": (96, 144)}, _build_allcnn),
    "convmixer": Family(
        {"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 2}, _build_convmixer
    ),
    "vit": Family(
        {"patch_size": 4, "dim": 512, "depth": 6, "heads": 8, "dim_head": 64, "mlp_dim": 512},
        ViT,
    ),
    **{name: Family({"layers": layers, "width": DEFAULT_WIDTH},
                    lambda shape, k, _name=name, **size: build_resnet(_name, shape[0], k, **size))
       for name, (_block, layers) in RESNETS.items()},
}


def architecture_names() -> list[str]:
    """The paper's six architecture names (any other `wr-<depth>-<widen>-<base>` also builds,
    and so do torchvision's ResNets, RESNET_ARCHITECTURES)."""
    return list(PAPER_ARCHITECTURES)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _is_positive_int(value: Any) -> bool:
    """True for a positive integer, numpy integers included (bools excluded)."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value > 0


def _check_input_shape(input_shape: Any) -> InputShape:
    """input_shape as a (channels, height, width) tuple of positive ints, or a ValueError."""
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(_is_positive_int(s) for s in shape):
        raise ValueError(
            "input_shape must be (channels, height, width) as three positive integers, "
            f"e.g. (1, 8, 8), (1, 28, 28) or (3, 32, 32); got {input_shape!r}"
        )
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_sizes(name: str, family: Family, size: dict[str, Any]) -> dict[str, Any]:
    """The family's defaults updated by `size`, with every keyword and value checked."""
    valid = ", ".join(family.defaults)
    unknown = sorted(set(size) - set(family.defaults))
    if unknown:
        raise ValueError(
            f"unknown size keyword(s) {', '.join(unknown)} for {name!r}: valid ones are {valid}"
        )
    sizes = dict(family.defaults)
    for key, value in size.items():
        if isinstance(family.defaults[key], tuple):
            ok = isinstance(value, (tuple, list)) and len(value) > 0
            ok = ok and all(_is_positive_int(v) for v in value)
            value = tuple(int(v) for v in value) if ok else value
            expected = "a non-empty sequence of positive integers"
        else:
            ok = _is_positive_int(value)
            value = int(value) if ok else value
            expected = "a positive integer"
        if not ok:
            raise ValueError(f"{name} size {key}={value!r} is invalid: it must be {expected}")
        sizes[key] = value
    return sizes


def build_model(name: str, input_shape: InputShape, num_classes: int, **size: Any) -> nn.Module:
    """A freshly initialised model mapping images (B, *input_shape) to logits (B, num_classes)."""
    if not isinstance(name, str):
        raise TypeError(f"architecture name must be a string such as 'fc'; got {name!r}")
    shape = _check_input_shape(input_shape)
    if not _is_positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    num_classes = int(num_classes)
    if name.startswith("wr-"):
        depth, widen, base = parse_wr_name(name)
        if size:
            raise ValueError(
                f"wide ResNet {name!r} takes no size keywords (got {', '.join(sorted(size))}): "
                f"depth, widen and base come from the name, written {WR_FORM}"
            )
        return WideResNet(shape[0], num_classes, depth, widen, base)
    if name not in FAMILIES:
        raise ValueError(
            f"unknown architecture {name!r}: choose one of {', '.join(PAPER_ARCHITECTURES)}, "
            f"a torchvision ResNet ({', '.join(RESNET_ARCHITECTURES)}), or any wide ResNet "
            f"written {WR_FORM}"
        )
    family = FAMILIES[name]
    return family.build(shape, num_classes, **_check_sizes(name, family, size))


def check_sizes(models: Mapping[str, Mapping[str, Any]], grid_arch: Sequence[str],
                dataset: str, input_shape: InputShape | None = None) -> None:
    """Raise ConfigError naming the key unless every architecture of the `models` section and of
    `grid.arch` builds at its size for `dataset` (its images `input_shape`, default the dataset's
    own: `DataConfig.input_shape` where a profile resizes them): parameter files name networks,
    and only building them says whether a name or size is valid (run where networks are built
    anyway)."""
    for name, size in models.items():
        _check_builds(name, size, dataset, f"models.{name}", input_shape)
    for i, name in enumerate(grid_arch):
        if name not in models:
            _check_builds(name, {}, dataset, f"grid.arch[{i}]", input_shape)


def _check_builds(name: str, size: Mapping[str, Any], dataset: str, key: str,
                  input_shape: InputShape | None = None) -> None:
    shape, num_classes = DATASET_SHAPES[dataset]
    input_shape = shape if input_shape is None else input_shape
    try:
        build_model(name, input_shape, num_classes, **size)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{key} = {name!r}: {err}") from None
