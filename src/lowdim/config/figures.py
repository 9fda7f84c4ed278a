"""The `figures` section: rendering settings shared by every figure notebook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from lowdim.config.load import Check, Positive

# The files dvc.yaml declares as every figure stage's outs: a stage must write exactly these.
FIGURE_FORMATS = ("pdf", "png")
DeclaredFormats = Check(
    lambda v: len(v) == len(FIGURE_FORMATS) and set(v) == set(FIGURE_FORMATS),
    "dvc.yaml declares the .pdf and the .png of every figure as its stage's outs, so a figure "
    "stage that writes another set fails: use [pdf, png] (for another format, add its files to "
    "the figure stages' outs in dvc.yaml and the format to lowdim.config.figures.FIGURE_FORMATS)")


@dataclass(frozen=True)
class FiguresConfig:
    """Rendering settings shared by every figure notebook."""

    SECTION = "figures"

    formats: Annotated[tuple[str, ...], DeclaredFormats] = FIGURE_FORMATS
    dpi: Annotated[int, Positive] = 150
