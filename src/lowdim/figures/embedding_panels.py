"""Panels of the figure notebooks: each draws on a given Axes from processed data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lowdim.figures import theme as plotting
from lowdim.store.records import Embedding

STRESS_MARKS = (1, 3, 10, 20, 50)


def embedding_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding, i: int, j: int) -> None:
    """Scatter PC i+1 against PC j+1: runs by architecture, geodesic, P0 and P* (D1)."""
    x, y = emb.coords[:, i], emb.coords[:, j]
    runs = index["kind"] == "run"
    for arch, rows in index[runs].groupby("arch", sort=True):
        ax.scatter(x[rows["row"]], y[rows["row"]], s=4, alpha=0.6, lw=0,
                   color=plotting.arch_color(arch), label=arch, rasterized=True)
    draw_reference_points(ax, index, x, y)
    pc_axes(ax, emb, i, j)


def draw_reference_points(ax: plt.Axes, index: pd.DataFrame, x: np.ndarray, y: np.ndarray,
                          *, labels: bool = True, zorder: int = 5) -> None:
    """The geodesic from P0 (black line) and the P0 and P* markers (red), at coordinates x, y."""
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]  # the path starts at P0
    ax.plot(x[geo], y[geo], color=plotting.GEODESIC_COLOR, lw=1.2, label="geodesic")
    for kind, marker in (("ignorance", "o"), ("truth", "*")):
        row = index.index[index["kind"] == kind]
        label = {"ignorance": "P₀", "truth": "P*"}[kind] if labels else None
        ax.scatter(x[row], y[row], s=90, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", zorder=zorder, label=label)


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


def stress_panel(ax: plt.Axes, embeddings: Mapping[str, Embedding], top: int = 50,
                 metrics: Mapping[str, Mapping] | None = None) -> None:
    """Explained stress χ_k against k for each prediction space (D7).

    A landmark embedding's own χ_k is the landmark matrix's, which overstates what the
    coordinates achieve: where `metrics` (metrics/embedding.json, by space) records landmarks,
    that curve is labelled so and the stress the coordinates achieve (its
    ``explained_stress_<k>``) is drawn over it as points."""
    metrics = metrics or {}
    for (space, emb), style in zip(embeddings.items(), ("-", "--"), strict=False):
        chi = emb.explained_stress[:top]
        landmarks = metrics.get(space, {}).get("landmarks")
        label = f"{space}, landmark matrix ({landmarks} points)" if landmarks else space
        ax.plot(np.arange(1, len(chi) + 1), chi, style, color="black", label=label)
        if landmarks:
            ks, values = achieved_points(metrics[space], top)
            ax.plot(ks, values, "o" if style == "-" else "s", color="black", mfc="white",
                    label=f"{space}, achieved by the coordinates")
    ax.set_xlabel("dimensions k")
    ax.set_ylabel("explained stress χ_k")
    ax.set_ylim(0, 1.02)
    ax.legend()


def achieved_points(metrics: Mapping, top: int) -> tuple[list[int], list[float]]:
    """The k <= `top` and χ_k that a landmark embedding's metrics entry records as achieved by
    its coordinates (``explained_stress_<k>``), in increasing k."""
    prefix = "explained_stress_"
    found = sorted((int(key[len(prefix):]), float(value)) for key, value in metrics.items()
                   if key.startswith(prefix) and int(key[len(prefix):]) <= top)
    return [k for k, _ in found], [v for _, v in found]


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


PC_PAIRS = ((0, 1), (0, 2), (1, 2))


def triplot(axes: Sequence[plt.Axes], index: pd.DataFrame, emb: Embedding) -> None:
    """PC1-PC2, PC1-PC3 and PC2-PC3 on three axes; time-like axes get red spines (D3)."""
    for ax, (i, j) in zip(axes, PC_PAIRS, strict=True):
        embedding_panel(ax, index, emb, i, j)


def colored_embedding_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding,
                            values: np.ndarray, *, label: str, vmin: float, vmax: float,
                            bins: int | None = None, cmap: str = "viridis") -> None:
    """PC1-PC2 of every run checkpoint coloured by `values` (M,), clipped to [vmin, vmax],
    in `bins` discrete steps when given (D4: loss, D5: error); the geodesic in black."""
    runs = index.index[index["kind"] == "run"]
    colormap = plt.get_cmap(cmap, bins) if bins else plt.get_cmap(cmap)
    points = ax.scatter(emb.coords[runs, 0], emb.coords[runs, 1],
                        c=np.clip(values[runs], vmin, vmax), cmap=colormap, vmin=vmin, vmax=vmax,
                        s=4, lw=0, rasterized=True)
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]
    ax.plot(emb.coords[geo, 0], emb.coords[geo, 1], color=plotting.GEODESIC_COLOR, lw=1)
    ax.figure.colorbar(points, ax=ax, label=label)
    pc_axes(ax, emb, 0, 1)


def pc_axes(ax: plt.Axes, emb: Embedding, i: int, j: int) -> None:
    """Label the axes PC i+1 and PC j+1 and mark time-like ones."""
    lam = emb.eigenvalues
    ax.set_xlabel(plotting.pc_label(i + 1, lam[i]))
    ax.set_ylabel(plotting.pc_label(j + 1, lam[j]))
    plotting.mark_negative_axes(ax, lam[i] < 0, lam[j] < 0)


SPREAD_PROGRESS = (0.01, 0.51, 0.99)  # A15: geodesic points whose neighbourhoods are coloured


def spread_centres(index: pd.DataFrame, progress: Sequence[float] = SPREAD_PROGRESS) -> np.ndarray:
    """Rows of the geodesic points nearest to each progress value (the geodesic's `t`)."""
    geo = index[index["kind"] == "geodesic"]
    if geo.empty:
        raise ValueError("the analysis set has no geodesic rows: rebuild the predictions stage")
    t = geo["t"].to_numpy()
    return np.array([int(geo["row"].iloc[np.argmin(np.abs(t - p))]) for p in progress])


def spread_distances(d: np.ndarray, centres: Sequence[int]) -> np.ndarray:
    """(M, M) distance matrix, K centre rows -> (M, K) distance of every point to each centre.

    Reads the K rows of the centres only (a distance matrix is symmetric: column j is row j),
    so a memory-mapped matrix (``load_distance_matrix(..., mmap=True)``) is never read whole:
    O(K M) memory at any M.
    """
    shape = np.shape(d)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"d must be a square (M, M) distance matrix, got shape {shape}")
    rows = np.asarray(centres)
    if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"centres must be a non-empty 1-D array of row indices, got {centres!r}")
    if rows.min() < 0 or rows.max() >= shape[0]:
        raise ValueError(f"centres must be rows of the matrix, in [0, {shape[0] - 1}], got "
                         f"{rows.tolist()}: the analysis set and the distances come from "
                         "different runs of the pipeline")
    return np.array(d[rows], dtype=np.float64).T


def spread_labels(to_centres: np.ndarray, radius: float) -> np.ndarray:
    """(M, K) distances to K centres -> (M,) index of the nearest centre within `radius`, else -1.

    A15's "spread" colouring: points near the geodesic at early, middle and late progress.
    """
    to_centres = np.asarray(to_centres, dtype=np.float64)
    if to_centres.ndim != 2 or to_centres.shape[1] == 0:
        raise ValueError(f"to_centres must be (M, K) with K >= 1, got shape {to_centres.shape}")
    if not radius > 0:
        raise ValueError(f"radius = {radius}: must be positive")
    nearest = to_centres.argmin(axis=1)
    inside = to_centres[np.arange(len(to_centres)), nearest] <= radius
    return np.where(inside, nearest, -1)


def spread_panel(ax: plt.Axes, index: pd.DataFrame, emb: Embedding, labels: np.ndarray,
                 progress: Sequence[float] = SPREAD_PROGRESS) -> None:
    """PC1-PC2: run checkpoints near each spread centre in its colour, the rest grey (D6)."""
    runs = index.index[index["kind"] == "run"]
    x, y = emb.coords[:, 0], emb.coords[:, 1]
    far = runs[labels[runs] < 0]
    ax.scatter(x[far], y[far], s=3, lw=0, color="0.8", rasterized=True, label="elsewhere")
    colors = plt.get_cmap("plasma")(np.linspace(0.1, 0.85, len(progress)))
    for k, (p, color) in enumerate(zip(progress, colors, strict=True)):
        near = runs[labels[runs] == k]
        ax.scatter(x[near], y[near], s=5, lw=0, color=color, rasterized=True,
                   label=f"near progress {p:.2f} ({len(near)})")
    geo = index.index[index["kind"].isin(["ignorance", "geodesic"])]
    ax.plot(x[geo], y[geo], color=plotting.GEODESIC_COLOR, lw=1)
    pc_axes(ax, emb, 0, 1)
