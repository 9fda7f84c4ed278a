"""The `embedding` section: InPCA of the distance matrices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from lowdim.config.load import Check, ConfigError, Positive

if TYPE_CHECKING:  # only a type here: the embedding stage never loads the distances section
    from lowdim.config.distances import DistancesConfig

Landmarks = Check(lambda v: v >= 2, "must be null (embed every point) or at least 2")


@dataclass(frozen=True)
class EmbeddingConfig:
    """InPCA settings (docs/study.md A4-A5)."""

    SECTION = "embedding"

    n_components: Annotated[int, Positive] = 50
    stress_dims: tuple[Annotated[int, Positive], ...] = (1, 2, 3, 10, 50)
    solver: Literal["auto", "dense", "lanczos", "randomized"] = "auto"
    # embed this many evenly spaced points, project the rest; with distances.landmarks set
    # (only the landmark rows computed), the same L
    landmarks: Annotated[int, Landmarks] | None = None
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # where the eigensolver's products with D run


def check_with(embedding: EmbeddingConfig, distances: DistancesConfig) -> None:
    """Landmark distances (distances.landmarks: L) hold only the rows of L landmarks, so the
    embedding must embed those same L points: the two settings name one set of rows."""
    if distances.landmarks is None or embedding.landmarks == distances.landmarks:
        return
    raise ConfigError(
        f"distances.landmarks = {distances.landmarks} but embedding.landmarks = "
        f"{embedding.landmarks}: the distances stage then computes only the distances to "
        f"{distances.landmarks} landmarks, which the embedding must use; set "
        f"embedding.landmarks: {distances.landmarks}, or distances.landmarks: null for the "
        "whole matrix")
