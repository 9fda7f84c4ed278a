"""The `studies.tangents` section: tangent bases (docs/study.md A14, D18)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from lowdim.config.load import Check, Positive

Centres = Check(lambda c: len(c) == 2 and 0.0 <= c[0] < c[1] <= 1.0,
                "give two progress values [start, end] with 0 <= start < end <= 1, e.g. [0.2, 0.8]")


@dataclass(frozen=True)
class TangentsConfig:
    """Tangent bases (docs/study.md A14, D18): kernel averages near the start and the end."""

    SECTION = "studies.tangents"

    width: Annotated[float, Positive] = 0.05  # Gaussian kernel width in progress lambda
    centres: Annotated[tuple[float, ...], Centres] = (0.2, 0.8)  # [start, end] progress centres
    # checkpoints with train loss >= this are left out
    outlier_loss: Annotated[float, Positive] = 4.0
    dims: Annotated[int, Positive] = 8  # axes of the true InPCA in the comparison
