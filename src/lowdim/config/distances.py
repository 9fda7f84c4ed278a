"""The `distances` section: how Bhattacharyya distances are computed and stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from lowdim.config.load import Positive, Range


@dataclass(frozen=True)
class DistancesConfig:
    """Bhattacharyya distance settings (docs/study.md A1-A2)."""

    SECTION = "distances"

    sample_step: Annotated[int, Positive] = 2
    bc_floor: Annotated[float, Range(0, 1)] = 1e-8
    max_block_mib: Annotated[int, Positive] = 256
    method: Literal["auto", "reference", "fused"] = "auto"  # see lowdim.geometry.distances
    # reuse cached blocks of unchanged run pairs (lowdim.geometry.distance_blocks)
    cache: bool = True
    dtype: Literal["float64", "float32"] = "float64"  # stored matrices; float32 halves the disk
