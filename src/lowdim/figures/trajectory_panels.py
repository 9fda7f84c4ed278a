"""Panels of the trajectory figures (docs/study.md D9-D15): each draws on given Axes from the
products of the trajectories stage."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import dendrogram

from lowdim.figures import theme as plotting
from lowdim.figures.embedding_panels import pc_axes
from lowdim.store.records import Embedding

FACTOR_LABELS = ("arch", "optimizer", "batch_size", "lr", "weight_decay", "augment")


def _by_arch_and_optimizer(ax: plt.Axes, table: pd.DataFrame, x: str, y: str) -> None:
    """Mean of `y` against `x` per (arch, optimizer): colour by arch, line style by optimizer."""
    for (arch, opt), rows in table.groupby(["arch", "optimizer"], sort=True):
        mean = rows.groupby(x)[y].mean()
        ax.plot(mean.index, mean.to_numpy(), color=plotting.arch_color(arch),
                linestyle=plotting.OPTIMIZER_LINESTYLES.get(opt, "-"), lw=1.2,
                label=f"{arch}, {opt}")


def distance_to_geodesic_panel(ax: plt.Axes, to_geodesic: pd.DataFrame) -> None:
    """d_B to the geodesic at equal progress, averaged over seeds (D10)."""
    _by_arch_and_optimizer(ax, to_geodesic, "progress", "distance")
    ax.set_xlabel("progress")
    ax.set_ylabel("distance to geodesic")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)


def tube_width_panel(ax: plt.Axes, tube: pd.DataFrame, ticks: int = 6) -> None:
    """Boxplots of each run's distance to its configuration's mean at `ticks` progress values
    spread over the grid (D11: every 19th of 100 points)."""
    grid = np.sort(tube["progress"].unique())
    picked = grid[np.linspace(0, len(grid) - 1, min(ticks, len(grid))).round().astype(int)]
    data = [tube.loc[np.isclose(tube["progress"], p), "distance"].to_numpy() for p in picked]
    ax.boxplot(data, positions=np.arange(len(picked)), widths=0.6, showfliers=True,
               flierprops={"markersize": 2})
    ax.set_xticks(np.arange(len(picked)), [f"{p:.2f}" for p in picked])
    ax.set_xlabel("progress")
    ax.set_ylabel("distance to mean trajectory")
    ax.set_ylim(bottom=0)


def outlier_panels(axes: Sequence[plt.Axes], outliers: pd.DataFrame) -> None:
    """Outlier checkpoint counts by epoch bin and by architecture, bars split by optimizer (D9)."""
    for ax, by in zip(axes, ("epoch_bin", "arch"), strict=True):
        counts = (outliers.groupby([by, "optimizer"], sort=True, observed=True)["outliers"].sum()
                  .unstack(fill_value=0))
        width = 0.8 / max(len(counts.columns), 1)
        for k, opt in enumerate(counts.columns):
            ax.bar(np.arange(len(counts)) + k * width, counts[opt].to_numpy(), width, label=opt,
                   color=plt.get_cmap("tab10")(k))
        ax.set_xticks(np.arange(len(counts)) + 0.4 - width / 2, counts.index, rotation=45,
                      ha="right")
        ax.set_xlabel({"epoch_bin": "epoch", "arch": "architecture"}[by])
        ax.set_ylabel("outlier checkpoints")
    axes[-1].legend(title="optimizer")


def configuration_label(row: pd.Series) -> str:
    """Dendrogram leaf label: the grid factors of one configuration."""
    return " / ".join(f"{row[f]:g}" if isinstance(row[f], float) else str(row[f])
                      for f in FACTOR_LABELS if f in row)


def dendrogram_panel(ax: plt.Axes, linkage: np.ndarray, configurations: pd.DataFrame) -> list[int]:
    """Horizontal dendrogram of configurations, leaves labelled by factors and coloured by
    architecture (D12); returns the leaf order, top to bottom."""
    labels = [configuration_label(r) for _, r in configurations.iterrows()]
    tree = dendrogram(linkage, orientation="left", labels=labels, ax=ax, color_threshold=0,
                      above_threshold_color="black", leaf_font_size=7)
    arch_of = dict(zip(labels, configurations["arch"], strict=True))
    for tick in ax.get_yticklabels():
        tick.set_color(plotting.arch_color(arch_of[tick.get_text()]))
    ax.set_xlabel("configuration distance (mean over progress)")
    return list(reversed(tree["leaves"]))


def error_bars_panel(ax: plt.Axes, configurations: pd.DataFrame, order: Sequence[int],
                     column: str = "mean_final_train_error") -> None:
    """Side bars of each configuration's mean final error, in dendrogram leaf order (D12)."""
    values = configurations[column].to_numpy()[list(order)]
    colors = [plotting.arch_color(a) for a in configurations["arch"].to_numpy()[list(order)]]
    ax.barh(np.arange(len(order))[::-1], values, color=colors, height=0.7)
    ax.set_yticks([])
    ax.set_xlabel(column.replace("_", " "))


def importance_panel(ax: plt.Axes, importance: pd.DataFrame) -> None:
    """Boxplots of permutation importance per grid factor, most important first (D13).

    As the authors' boxplot, only the grid factors are drawn: the members' distances to the
    geodesic are features of the model (A13) but not factors of the grid."""
    factors = importance[~importance["factor"].str.startswith("to_geodesic")]
    order = factors.groupby("factor")["importance"].mean().sort_values(ascending=False).index
    ax.boxplot([importance.loc[importance["factor"] == f, "importance"].to_numpy() for f in order],
               widths=0.6)
    ax.set_xticks(np.arange(1, len(order) + 1), list(order), rotation=30, ha="right")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("permutation importance")


def trajectory_embedding_panel(ax: plt.Axes, table: pd.DataFrame, emb: Embedding) -> None:
    """One point per trajectory (D14): runs small, configuration averages large, the geodesic
    a black star; colour by architecture."""
    x, y = emb.coords[:, 0], emb.coords[:, 1]
    for kind, size, edge in (("run", 14, "none"), ("average", 60, "black")):
        rows = table[table["kind"] == kind]
        for arch, group in rows.groupby("arch", sort=True):
            idx = group.index.to_numpy()
            ax.scatter(x[idx], y[idx], s=size, color=plotting.arch_color(arch), edgecolor=edge,
                       lw=0.6, label=arch if kind == "run" else None, alpha=0.8)
    geo = table.index[table["kind"] == "geodesic"]
    ax.scatter(x[geo], y[geo], s=150, marker="*", color=plotting.GEODESIC_COLOR, label="geodesic")
    pc_axes(ax, emb, 0, 1)


def progress_by_epoch_panel(ax: plt.Axes, index: pd.DataFrame, progress: np.ndarray,
                            archs: Sequence[str]) -> None:
    """Progress lambda against epoch for the runs of `archs`: mean over seeds per optimizer,
    colour by architecture, style by optimizer (D15)."""
    runs = index[(index["kind"] == "run") & index["arch"].isin(archs)].assign(
        progress=progress[index.index[(index["kind"] == "run") & index["arch"].isin(archs)]])
    _by_arch_and_optimizer(ax, runs, "epoch", "progress")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("progress λ")


def paths_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding, archs: Sequence[str]) -> None:
    """PC1-PC2 of every checkpoint in grey with the runs of `archs` drawn as paths (D15)."""
    x, y = emb.coords[:, 0], emb.coords[:, 1]
    runs = index[index["kind"] == "run"]
    ax.scatter(x[runs.index], y[runs.index], s=2, lw=0, color="0.85", rasterized=True)
    for (arch, _run), rows in runs[runs["arch"].isin(archs)].groupby(["arch", "run_id"]):
        idx = rows.sort_values("checkpoint").index.to_numpy()
        ax.plot(x[idx], y[idx], color=plotting.arch_color(arch), lw=0.9, alpha=0.8)
    for arch in archs:
        ax.plot([], [], color=plotting.arch_color(arch), label=arch)
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]
    ax.plot(x[geo], y[geo], color=plotting.GEODESIC_COLOR, lw=1.2, label="geodesic")
    pc_axes(ax, emb, 0, 1)
