"""Panels of the figure notebooks: each draws on a given Axes from processed data."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lowdim import plotting
from lowdim.inpca import Embedding

STRESS_MARKS = (1, 3, 10, 20, 50)


def embedding_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding, i: int, j: int) -> None:
    """Scatter PC i+1 against PC j+1: runs by architecture, geodesic, P0 and P* (D1)."""
    x, y = emb.coords[:, i], emb.coords[:, j]
    runs = index["kind"] == "run"
    for arch, rows in index[runs].groupby("arch", sort=True):
        ax.scatter(x[rows["row"]], y[rows["row"]], s=4, alpha=0.6, lw=0,
                   color=plotting.arch_color(arch), label=arch, rasterized=True)
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]  # the path starts at P0
    ax.plot(x[geo], y[geo], color=plotting.GEODESIC_COLOR, lw=1.2, label="geodesic")
    for kind, marker in (("ignorance", "o"), ("truth", "*")):
        row = index.index[index["kind"] == kind]
        ax.scatter(x[row], y[row], s=90, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", zorder=5, label={"ignorance": "P₀", "truth": "P*"}[kind])
    lam = emb.eigenvalues
    ax.set_xlabel(plotting.pc_label(i + 1, lam[i]))
    ax.set_ylabel(plotting.pc_label(j + 1, lam[j]))
    plotting.mark_negative_axes(ax, lam[i] < 0, lam[j] < 0)


def spectrum_panel(ax: plt.Axes, emb: Embedding, top: int = 50) -> None:
    """Bars of the top |λ| on a log axis, red when λ < 0, with χ_k written at a few k (D7)."""
    lam = emb.eigenvalues[:top]
    k = np.arange(1, len(lam) + 1)
    colors = np.where(lam < 0, plotting.NEGATIVE_COLOR, "black")
    ax.bar(k, np.abs(lam), color=colors, width=0.8)
    ax.set_yscale("log")
    ax.set_ylim(top=float(np.abs(lam).max()) * 30)  # room for the χ labels above the bars
    ax.set_xlabel("k")
    ax.set_ylabel("|λ_k|")
    for mark in STRESS_MARKS:
        if mark <= len(lam):
            ax.annotate(f"χ={emb.explained_stress[mark - 1]:.2f}", (mark, abs(lam[mark - 1])),
                        xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7,
                        rotation=90)


def stress_panel(ax: plt.Axes, embeddings: Mapping[str, Embedding], top: int = 50) -> None:
    """Explained stress χ_k against k for each prediction space (D7)."""
    for (space, emb), style in zip(embeddings.items(), ("-", "--"), strict=False):
        chi = emb.explained_stress[:top]
        ax.plot(np.arange(1, len(chi) + 1), chi, style, color="black", label=space)
    ax.set_xlabel("dimensions k")
    ax.set_ylabel("explained stress χ_k")
    ax.set_ylim(0, 1.02)
    ax.legend()


def distance_to_truth_panel(ax: plt.Axes, index: pd.DataFrame, to_truth: pd.Series) -> None:
    """d_B(P, P*) against epoch: a line per run, colour by architecture, style by optimizer."""
    runs = index[index["kind"] == "run"]
    seen = set()
    for _, rows in runs.groupby("run_id", sort=True):
        arch, opt = rows["arch"].iloc[0], rows["optimizer"].iloc[0]
        label = f"{arch}, {opt}" if (arch, opt) not in seen else None
        seen.add((arch, opt))
        ax.plot(rows["epoch"], to_truth.to_numpy()[rows["row"]], lw=0.9, alpha=0.8, label=label,
                color=plotting.arch_color(arch),
                linestyle=plotting.OPTIMIZER_LINESTYLES.get(opt, "-"))
    start = to_truth.to_numpy()[index.index[index["kind"] == "ignorance"]]
    ax.axhline(float(start[0]), color="grey", ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1.0)  # linear over the dense first epoch, log after
    ax.set_xlim(left=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("d_B(P, P*)")
