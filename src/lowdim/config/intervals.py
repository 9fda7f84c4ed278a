"""The `intervals` section: the uncertainty of the headline metrics by resampling seeds and runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from lowdim.config.load import Positive, Range


@dataclass(frozen=True)
class IntervalsConfig:
    """Jackknife over seeds and a seeded percentile bootstrap of every headline metric
    (``lowdim.analysis.intervals``)."""

    SECTION = "intervals"

    resamples: Annotated[int, Positive] = 200  # bootstrap resamples (each one InPCA per space)
    level: Annotated[float, Range(0, 1)] = 0.90  # coverage of the percentile interval
    # what the bootstrap draws with replacement: "run" (the runs of each configuration, drawn
    # within it) or "seed" (whole seeds: every run of a drawn seed; coarse with few seeds)
    bootstrap: Literal["run", "seed"] = "run"
    seed: int = 0  # seeds the bootstrap's draws
