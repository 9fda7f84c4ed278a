"""Batched tensor transforms on uint8 images: normalization and the paper's simple augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_images(images: torch.Tensor) -> None:
    """Raise ValueError unless `images` is a uint8 tensor (B, C, H, W)."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = (f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor)
               else type(images).__name__)
        raise ValueError(f"images must be a uint8 tensor (B, C, H, W), got {got}")


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, C, H, W) to float32 (x/255 - mean) / std with mean, std (C,)."""
    _check_images(images)
    channels = images.shape[1]
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"mean and std must have shape ({channels},) for {channels}-channel "
                         f"images, got {tuple(mean.shape)} and {tuple(std.shape)}")
    mean = mean.to(images.device, torch.float32).view(1, channels, 1, 1)
    std = std.to(images.device, torch.float32).view(1, channels, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean) / std


def default_padding(height: int) -> int:
    """Crop padding for images of this height: 4 for CIFAR's 32 pixels, at least 1."""
    if height < 1:
        raise ValueError(f"image height = {height}: must be positive")
    return max(1, round(height / 8))


def augment_simple(images: torch.Tensor, padding: int, generator: torch.Generator,
                   *, flip: bool = True) -> torch.Tensor:
    """uint8 (B, C, H, W) -> same: random crop of the zero-padded image, then h-flip (p=0.5)."""
    # Equivalent to torchvision RandomCrop(size, padding, fill=0) + RandomHorizontalFlip(0.5) per
    # image, but as one gather for the whole batch. `flip=False` disables the flip (for tests).
    _check_images(images)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding = {padding!r}: must be a non-negative integer")
    batch, _, height, width = images.shape
    # Draw on the generator's device so a seeded generator gives the same crops on CPU and CUDA
    # for the same images; the draw order (rows, columns, flips) is fixed.
    draw = {"generator": generator, "device": generator.device}
    top = torch.randint(0, 2 * padding + 1, (batch,), **draw).to(images.device)
    left = torch.randint(0, 2 * padding + 1, (batch,), **draw).to(images.device)
    flipped = (torch.rand((batch,), **draw) < 0.5).to(images.device)
    if not flip:
        flipped = torch.zeros_like(flipped)
    padded = F.pad(images, (padding, padding, padding, padding))  # zeros, like fill=0
    rows = top[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols_forward = torch.arange(width, device=images.device)
    cols = left[:, None] + torch.where(flipped[:, None], cols_forward.flip(0), cols_forward)
    index = torch.arange(batch, device=images.device)[:, None, None]
    # Advanced indices around a slice put their broadcast dims first: (B, H, W, C).
    out = padded[index, :, rows[:, :, None], cols[:, None, :]]
    # clone, not .contiguous(): with one channel the permuted view already counts as contiguous
    # and keeps strides (H*W, 1, W, 1), which crashed a wide-resnet backward on the CPU (heap
    # corruption, torch 2.14.1, one thread); canonical strides avoid that path.
    return out.permute(0, 3, 1, 2).clone(memory_format=torch.contiguous_format)
