"""Panels of the special-study figures: initialization corners (D16), sloppy synthetic data (D17),
averaging methods (D19), tangent bases (D18), the joint train+test embedding (D8) and the Euclidean
comparison (D20). Each draws on a given Axes from the products of the study's stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lowdim.figures import theme as plotting
from lowdim.figures.embedding_panels import draw_reference_points, pc_axes
from lowdim.store.records import BASIS_NAMES, Embedding

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
    draw_reference_points(ax, index, x, y, zorder=6)
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
    draw_reference_points(ax, index, x, y, labels=False)
    pc_axes(ax, emb, 0, 1)
    ax.legend(fontsize=7)


# Short labels of the averaging methods (`lowdim.geometry.centroids.AVERAGING_METHODS`, same
# order, tested), as in the paper's appendix.
METHOD_LABELS = {"arithmetic": "AM", "geometric": "GM", "harmonic": "HM", "square_root": "√AM",
                 "bhattacharyya": "Bhattacharyya", "jeffreys": "Jeffreys"}
# One fixed colour per averaging method, in that order (colour-blind safe).
METHOD_COLORS = dict(zip(METHOD_LABELS, ("#0072b2", "#e69f00", "#009e73", "#cc79a7",
                                          "#d55e00", "#56b4e9"), strict=True))
RUN_GREY = "#bbbbbb"


def _references(ax: plt.Axes, x: np.ndarray, y: np.ndarray, kinds: pd.Series) -> None:
    """P0 and P* markers at the rows of kind ignorance and truth."""
    for kind, marker, label in (("ignorance", "o", "P₀"), ("truth", "*", "P*")):
        rows = np.flatnonzero(kinds.to_numpy() == kind)
        ax.scatter(x[rows], y[rows], s=90, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", zorder=5, label=label)


def averaging_embedding_panel(ax: plt.Axes, points: pd.DataFrame, emb: Embedding,
                              averaged_runs: list[str], i: int = 0, j: int = 1) -> None:
    """PC i+1 against PC j+1 of the joint embedding: every run checkpoint in grey, the averaged
    runs in dark grey, one line per average (D19)."""
    x, y = emb.coords[:, i], emb.coords[:, j]
    runs = (points["kind"] == "run").to_numpy()
    ax.scatter(x[runs], y[runs], s=3, lw=0, color=RUN_GREY, rasterized=True, label="checkpoints")
    for run_id in averaged_runs:
        rows = np.flatnonzero((points["run_id"] == run_id).to_numpy())
        ax.plot(x[rows], y[rows], color="#555555", lw=0.6, alpha=0.8)
    for method, color in METHOD_COLORS.items():
        rows = np.flatnonzero((points["method"] == method).to_numpy())
        ax.plot(x[rows], y[rows], color=color, lw=1.3, label=METHOD_LABELS[method])
    _references(ax, x, y, points["kind"])
    pc_axes(ax, emb, i, j)


def _progress_accuracy_lines(ax: plt.Axes, curves: pd.DataFrame) -> None:
    for _, run in curves[curves["method"] == "run"].groupby("run_id"):
        ax.plot(run["progress"], run["accuracy"], color=RUN_GREY, lw=0.8)
    for method, color in METHOD_COLORS.items():
        line = curves[curves["method"] == method]
        ax.plot(line["progress"], line["accuracy"], color=color, lw=1.3, marker=".", ms=3,
                label=METHOD_LABELS[method])


def progress_accuracy_panel(ax: plt.Axes, curves: pd.DataFrame, space: str,
                            zoom_from: float = 0.65) -> None:
    """Accuracy (mean probability of the true class) against progress, one line per average,
    the averaged runs in grey, with an inset for progress >= `zoom_from` (D19)."""
    curves = curves[curves["space"] == space]
    _progress_accuracy_lines(ax, curves)
    ax.set_xlabel(f"progress λ ({space}, mean mode)")
    ax.set_ylabel("mean probability of the true class")
    late = curves[curves["progress"] >= zoom_from]
    if len(late) > 1 and late["progress"].max() > zoom_from:
        inset = ax.inset_axes([0.5, 0.08, 0.47, 0.42])
        _progress_accuracy_lines(inset, curves)
        pad = 0.01
        inset.set_xlim(zoom_from, late["progress"].max() + pad)
        inset.set_ylim(late["accuracy"].min() - pad, late["accuracy"].max() + pad)
        inset.tick_params(labelsize=6)
        inset.set_title(f"progress ≥ {zoom_from:g}", fontsize=7)


def final_values_panel(ax: plt.Axes, curves: pd.DataFrame, space: str) -> None:
    """Dot strip of each average's final progress and accuracy (D19)."""
    curves = curves[curves["space"] == space]
    last = curves[curves["checkpoint"] == curves["checkpoint"].max()].set_index("method")
    for y, (method, color) in enumerate(METHOD_COLORS.items()):
        ax.scatter(last.loc[method, "progress"], y, marker="o", color=color)
        ax.scatter(last.loc[method, "accuracy"], y, marker="s", facecolor="none",
                   edgecolor=color)
    ax.set_yticks(range(len(METHOD_COLORS)),
                  [METHOD_LABELS[m] for m in METHOD_COLORS])
    ax.scatter([], [], marker="o", color="black", label="progress")
    ax.scatter([], [], marker="s", facecolor="none", edgecolor="black", label="accuracy")
    ax.set_xlabel(f"final value ({space})")
    ax.legend(loc="best")


def basis_3d_panel(ax, coords: np.ndarray, arch: np.ndarray, basis: np.ndarray,
                   signs: np.ndarray) -> None:
    """3-D scatter of every checkpoint on the tangent-basis axes, by architecture, with the four
    basis points (D18, Fig. 10); time-like axes are labelled so."""
    for name in sorted(set(arch)):
        rows = arch == name
        ax.scatter(*coords[rows, :3].T, s=3, color=plotting.arch_color(name), label=name,
                   depthshade=False)
    for point, name, marker in zip(basis, BASIS_NAMES, ("o", "*", "^", "v"), strict=True):
        ax.scatter(*point[:3], s=50, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", label=name, depthshade=False)
    for axis, k in zip((ax.set_xlabel, ax.set_ylabel, ax.set_zlabel), range(3), strict=True):
        axis(f"basis axis {k + 1}" + (" (λ<0)" if signs[k] < 0 else ""))


def basis_plane_panel(ax: plt.Axes, coords: np.ndarray, arch: np.ndarray, basis: np.ndarray,
                      signs: np.ndarray, i: int = 0, j: int = 1) -> None:
    """Axes i+1, j+1 of the tangent-basis embedding: checkpoints by architecture, basis points."""
    for name in sorted(set(arch)):
        rows = arch == name
        ax.scatter(coords[rows, i], coords[rows, j], s=3, lw=0, color=plotting.arch_color(name),
                   rasterized=True)
    for point, name, marker in zip(basis, BASIS_NAMES, ("o", "*", "^", "v"), strict=True):
        ax.scatter(point[i], point[j], s=80, marker=marker, color=plotting.REFERENCE_COLOR,
                   edgecolor="black", zorder=5, label=name)
    ax.set_xlabel(f"basis axis {i + 1}" + (" (λ<0)" if signs[i] < 0 else ""))
    ax.set_ylabel(f"basis axis {j + 1}" + (" (λ<0)" if signs[j] < 0 else ""))
    plotting.mark_negative_axes(ax, signs[i] < 0, signs[j] < 0)


def explained_distance_panel(ax: plt.Axes, table: pd.DataFrame) -> None:
    """Explained distance (L1) against the number of axes: true InPCA and the 3 basis axes;
    a star marks a time-like axis (D18, Fig. 11)."""
    for method, style in (("true InPCA", "-"), ("tangent basis", "--")):
        rows = table[table["method"] == method]
        ax.plot(rows["k"], rows["explained"], style, color="black", marker="o", ms=3,
                label=method)
        neg = rows[rows["sign"] < 0]
        ax.scatter(neg["k"], neg["explained"], marker="*", s=80, color=plotting.NEGATIVE_COLOR,
                   zorder=5)
    ax.scatter([], [], marker="*", s=80, color=plotting.NEGATIVE_COLOR, label="time-like axis")
    ax.set_xlabel("dimensions k")
    ax.set_ylabel("explained distance (L1)")
    ax.legend(loc="lower right")


def stress_comparison_panel(ax: plt.Axes, embeddings: Mapping[str, Embedding],
                            top: int = 50) -> None:
    """Explained stress χ_k against k for several embeddings (D8, D20)."""
    styles = ("-", "--", "-.", ":")
    lowest = 1.0
    for (name, emb), style in zip(embeddings.items(), styles * 4, strict=False):
        chi = emb.explained_stress[:top]
        ax.plot(np.arange(1, len(chi) + 1), chi, style, marker=".", label=name)
        lowest = min(lowest, float(chi.min()))
    ax.set_xscale("log")
    ax.set_xlabel("dimensions k")
    ax.set_ylabel("explained stress χ_k")
    # Zoomed on the curves: they differ by a few hundredths.
    ax.set_ylim(max(0.0, lowest - 0.02), 1.005)
    ax.legend(loc="lower right")


def disabled_panel(axes, message: str) -> None:
    """Blank axes with a note, for a study its profile switches off."""
    for ax in np.ravel(axes):
        ax.set_axis_off()
    np.ravel(axes)[0].text(0.0, 0.5, message, transform=np.ravel(axes)[0].transAxes)
