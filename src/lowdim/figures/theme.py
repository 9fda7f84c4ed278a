"""One theme, fixed palettes, and `savefig`, the only function that writes figures."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt

from lowdim.store.atomic import atomic_file

# docs/study.md D1: the authors' architecture colours.
ARCH_COLORS = {
    "allcnn": "#e41a1c",
    "convmixer": "#377eb8",
    "fc": "#4daf4a",
    "vit": "#984ea3",
    "wr-10-4-8": "#ff7f00",
    "wr-16-4-64": "#ffff33",
    # The shipped profiles' other sizes, each its own colour, none of the paper's: the quick
    # profile's Figure 16 pair (wr-10-1-8 -> wr-16-1-8) must be told apart at a glance.
    "wr-10-1-8": "#a65628",
    "wr-16-1-8": "#17becf",
    "wr-16-4-16": "#f781bf",
    "wr-10-1-4": "#999999",       # the tiny profile's pair
    "wr-16-1-4": "#1f3a93",
    "resnet18": "#6a3d9a",        # the imagenet profile's pair
    "resnet50": "#b2df8a",
}
# Colours for any other architecture, picked from its name (stable, but two such names may
# share one: give them entries above when a profile uses both).
_EXTRA_COLORS = ("#66c2a5", "#8da0cb", "#e78ac3", "#a6d854", "#bcbd22", "#8c564b", "#7f7f7f")
OPTIMIZER_LINESTYLES = {"sgd": "-", "sgdn": "--", "adam": ":"}
REFERENCE_COLOR = "red"      # P0 and P* markers (D1)
GEODESIC_COLOR = "black"
NEGATIVE_COLOR = "red"       # time-like axes and negative eigenvalues (A4, D7)

THEME = {
    "figure.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "svg.hashsalt": "lowdim",     # stable SVG ids
    "pdf.compression": 6,
    "pdf.fonttype": 42,           # TrueType fonts embedded whole: text stays text in editors
    "ps.fonttype": 42,
}


def use_theme() -> None:
    """Apply the project's matplotlib theme."""
    mpl.rcParams.update(THEME)


def arch_color(arch: str) -> str:
    """The fixed colour of an architecture; unknown names get a stable colour from their name."""
    if arch in ARCH_COLORS:
        return ARCH_COLORS[arch]
    digest = int(hashlib.sha256(arch.encode()).hexdigest(), 16)
    return _EXTRA_COLORS[digest % len(_EXTRA_COLORS)]


def mark_negative_axes(ax: plt.Axes, x_negative: bool, y_negative: bool) -> None:
    """Red spines on axes whose eigenvalue is negative (time-like, docs/study.md A4)."""
    for spine, negative in (("bottom", x_negative), ("left", y_negative)):
        if negative:
            ax.spines[spine].set_color(NEGATIVE_COLOR)
            ax.spines[spine].set_linewidth(1.5)
    if x_negative:
        ax.xaxis.label.set_color(NEGATIVE_COLOR)
    if y_negative:
        ax.yaxis.label.set_color(NEGATIVE_COLOR)


def pc_label(k: int, eigenvalue: float) -> str:
    """Axis label 'PC k' with its sign when time-like."""
    return f"PC{k}" + (" (λ<0)" if eigenvalue < 0 else "")


def savefig(fig: plt.Figure, stem: str, directory: str | Path,
            formats: Sequence[str] = ("pdf", "png"), dpi: int = 150) -> list[Path]:
    """Write `<directory>/<stem>.<ext>` for each format, atomically, with fixed metadata."""
    directory = Path(directory)
    written = []
    for ext in formats:
        final = directory / f"{stem}.{ext}"
        with atomic_file(final) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, metadata=_fixed_metadata(ext))
        written.append(final)
    return written


def _fixed_metadata(ext: str) -> dict[str, str | None]:
    # No dates or versions in the files, so re-rendering the same figure gives the same bytes.
    if ext == "pdf":
        return {"Creator": "lowdim", "Producer": None, "CreationDate": None}
    if ext == "png":
        return {"Software": None}
    if ext == "svg":
        return {"Creator": None, "Date": None}
    return {}



def save_html(fig, stem: str, directory: str | Path) -> Path:
    """Write a plotly figure to `<directory>/<stem>.html`, self-contained (plotly.js inside, so
    it works offline) and with a fixed element id, so the same figure gives the same bytes."""
    final = Path(directory) / f"{stem}.html"
    with atomic_file(final) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True, div_id=f"lowdim-{stem}",
                       config={"displaylogo": False})
    return final
