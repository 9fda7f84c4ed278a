"""The `figures` section: rendering settings shared by every figure notebook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from lowdim.config.load import OneOf, Positive

FIGURE_FORMATS = ("pdf", "png", "svg")


@dataclass(frozen=True)
class FiguresConfig:
    """Rendering settings shared by every figure notebook."""

    SECTION = "figures"

    formats: tuple[Annotated[str, OneOf(FIGURE_FORMATS)], ...] = ("pdf", "png")
    dpi: Annotated[int, Positive] = 150
