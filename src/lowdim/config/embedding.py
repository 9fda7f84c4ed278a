"""The `embedding` section: InPCA of the distance matrices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from lowdim.config.load import Check, Positive

Landmarks = Check(lambda v: v >= 2, "must be null (embed every point) or at least 2")


@dataclass(frozen=True)
class EmbeddingConfig:
    """InPCA settings (docs/study.md A4-A5)."""

    SECTION = "embedding"

    n_components: Annotated[int, Positive] = 50
    stress_dims: tuple[Annotated[int, Positive], ...] = (1, 2, 3, 10, 50)
    solver: Literal["auto", "dense", "lanczos", "randomized"] = "auto"
    # embed this many evenly spaced points, project the rest
    landmarks: Annotated[int, Landmarks] | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # where the eigensolver's products with D run
