"""Panels of the special-study figures: initialization corners (D16) and sloppy synthetic data
(D17). Each draws on a given Axes from the products of the study's stage."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lowdim import plotting
from lowdim.figures import pc_axes
from lowdim.inpca import Embedding

NORMAL_COLOR = "#9e9e9e"


def corner_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed colour per corner name ('uniform-0', ...), in sorted order, from tab10."""
    palette = plt.get_cmap("tab10").colors
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def corners_embedding_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding, i: int = 0,
                            j: int = 1) -> None:
    """PC i+1 against PC j+1: normal runs grey, corner runs coloured by corner (phase 1 faint,
    phase 2 solid), the main geodesic black and each corner's geodesic dashed in its colour."""
    x, y = emb.coords[:, i], emb.coords[:, j]
    runs = index[index["kind"] == "run"]
    ax.scatter(x[runs["row"]], y[runs["row"]], s=3, lw=0, color=NORMAL_COLOR, alpha=0.6,
               label="normal runs", rasterized=True)
    corner_runs = index[index["kind"] == "corner_run"]
    colors = corner_colors(corner_runs["corner"])
    p0 = index.index[index["kind"] == "ignorance"]
    for name, rows in corner_runs.groupby("corner", sort=True):
        for phase, alpha in ((1, 0.3), (2, 0.9)):
            sel = rows[rows["phase"] == phase]["row"]
            ax.scatter(x[sel], y[sel], s=4, lw=0, alpha=alpha, color=colors[name],
                       label=name if phase == 2 else None, rasterized=True)
        geo = index.index[(index["kind"] == "corner_geodesic") & (index["corner"] == name)]
        if len(geo):
            path = np.concatenate([p0, geo])
            ax.plot(x[path], y[path], "--", lw=1, color=colors[name])
            end = index.index[(index["kind"] == "corner_truth") & (index["corner"] == name)]
            ax.scatter(x[end], y[end], s=70, marker="*", color=colors[name], edgecolor="black",
                       zorder=5)
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]
    ax.plot(x[geo], y[geo], color=plotting.GEODESIC_COLOR, lw=1.2, label="geodesic")
    for kind, marker in (("ignorance", "o"), ("truth", "*")):
        row = index.index[index["kind"] == kind]
        ax.scatter(x[row], y[row], s=90, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", zorder=6, label={"ignorance": "P₀", "truth": "P*"}[kind])
    pc_axes(ax, emb, i, j)


def convergence_panel(ax: plt.Axes, table: pd.DataFrame) -> None:
    """Median d_B of each corner's phase-2 runs to the normal runs against training accuracy s,
    with the normal runs' own median spread in black."""
    colors = corner_colors(table["corner"])
    for name, rows in table.groupby("corner", sort=True):
        mean = rows.groupby("s")["to_normal"].mean()
        ax.plot(mean.index, mean.to_numpy(), color=colors[name], label=name)
    spread = table.groupby("s")["normal_spread"].first()
    ax.plot(spread.index, spread.to_numpy(), "--", color="black", label="normal vs normal")
    ax.set_yscale("log")
    ax.set_xlabel("training accuracy s")
    ax.set_ylabel("median d_B to the normal runs")
    ax.legend(fontsize=7)


def _c_colors(cs: Sequence[float]) -> dict[float, tuple]:
    values = sorted(set(cs))
    cmap = plt.get_cmap("viridis")
    return {c: cmap(k / max(1, len(values) - 1)) for k, c in enumerate(values)}


GROUP_STYLES = {"default": "-", "corners": "--"}


def stress_by_k_panel(ax: plt.Axes, stress: pd.DataFrame, top: int = 10) -> None:
    """Explained stress χ_k against k, a line per c (colour) and group (style)."""
    colors = _c_colors(stress["c"])
    for (c, group), rows in stress[stress["k"] <= top].groupby(["c", "group"], sort=True):
        ax.plot(rows["k"], rows["explained_stress"], GROUP_STYLES.get(group, ":"), marker=".",
                color=colors[c], label=f"c = {c:g}, {group}")
    ax.set_xlabel("dimensions k")
    ax.set_ylabel("explained stress χ_k")
    ax.legend(fontsize=7)


def stress_by_c_panel(ax: plt.Axes, stress: pd.DataFrame, ks: Sequence[int] = (1, 2, 3)) -> None:
    """χ_k against the decay rate c (symmetric-log axis, so c = 0 shows), for a few k."""
    markers = ("o", "s", "^", "D")
    for k, marker in zip(ks, markers, strict=False):
        for group, rows in stress[stress["k"] == k].groupby("group", sort=True):
            rows = rows.sort_values("c")
            ax.plot(rows["c"], rows["explained_stress"], GROUP_STYLES.get(group, ":"),
                    marker=marker, color="black", label=f"χ_{k}, {group}")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel("decay rate c (sloppier →)")
    ax.set_ylabel("explained stress")
    ax.legend(fontsize=7)


def students_embedding_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding) -> None:
    """PC1-PC2 of the students' checkpoints by optimizer, with the geodesic, P₀ and P*."""
    x, y = emb.coords[:, 0], emb.coords[:, 1]
    runs = index[index["kind"] == "run"]
    palette = plt.get_cmap("Dark2").colors
    for k, (opt, rows) in enumerate(runs.groupby("optimizer", sort=True)):
        ax.scatter(x[rows["row"]], y[rows["row"]], s=5, lw=0, alpha=0.7,
                   color=palette[k % len(palette)], label=opt, rasterized=True)
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]
    ax.plot(x[geo], y[geo], color=plotting.GEODESIC_COLOR, lw=1.2, label="geodesic")
    for kind, marker in (("ignorance", "o"), ("truth", "*")):
        row = index.index[index["kind"] == kind]
        ax.scatter(x[row], y[row], s=90, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", zorder=5)
    pc_axes(ax, emb, 0, 1)
    ax.legend(fontsize=7)
