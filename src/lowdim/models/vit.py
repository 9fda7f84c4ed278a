"""Vision transformer (docs/study.md B2 `vit`): pre-LayerNorm, CLS pooling, no dropout."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def check_patch_size(height: int, width: int, patch_size: int) -> None:
    """Raise a ValueError suggesting a patch size unless patch_size divides height and width."""
    if height % patch_size == 0 and width % patch_size == 0:
        return
    common = math.gcd(height, width)
    divisors = [d for d in range(1, common + 1) if common % d == 0]
    suggestion = min(divisors, key=lambda d: (abs(d - patch_size), -d))
    raise ValueError(
        f"image height and width ({height}x{width}) must be divisible by patch_size={patch_size}: "
        f"use e.g. patch_size={suggestion} (sizes that fit: {', '.join(map(str, divisors))})"
    )


class Attention(nn.Module):
    """Multi-head self-attention (B, N, dim) -> (B, N, dim) with heads * dim_head inner width."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        # q, k, v without bias and an output projection with bias, as in the paper's code.
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention output (B, N, dim) of tokens x (B, N, dim)."""
        b, n, _ = x.shape
        # (B, N, 3 * H * D) -> three tensors (B, H, N, D)
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(D)) v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (B, N, dim) -> (B, N, dim)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + attn(LN(x)), then + mlp(LN(.)): same shape (B, N, dim)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViT (B, C, H, W) -> (B, num_classes) on (H/p)(W/p) patch tokens plus a CLS token."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        mlp_dim: int,
    ) -> None:
        super().__init__()
        channels, height, width = input_shape
        check_patch_size(height, width, patch_size)
        self.patch_size = patch_size
        num_patches = (height // patch_size) * (width // patch_size)
        self.patch_embedding = nn.Linear(channels * patch_size * patch_size, dim)
        # Both drawn from the global RNG with randn (std 1), as in the paper's code.
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, dim_head, mlp_dim) for _ in range(depth)))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened patches (B, N, p * p * C) of images (B, C, H, W), row-major over patches."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p)
        # Within a patch the order is (row, column, channel), as the paper's einops pattern.
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        tokens = self.patch_embedding(self.patchify(x))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat((cls, tokens), dim=1) + self.pos_embedding
        return self.head(self.blocks(tokens)[:, 0])
