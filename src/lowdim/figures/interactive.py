"""Interactive 3-D embedding pages (plotly, with plotly.js embedded so they work offline)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lowdim.figures import theme as plotting
from lowdim.store.records import Embedding

OPTIMIZER_SYMBOLS = {"sgd": "circle", "sgdn": "square", "adam": "diamond"}
# The slider's index: training accuracy, the authors' reindexing index (docs/study.md A7).
PROGRESS_STEPS = np.round(np.linspace(0.1, 1.0, 10), 2)
HOVER = ("%{customdata[0]}<br>epoch %{customdata[1]:.2f}<br>train loss %{customdata[2]:.3f}"
         "<br>train error %{customdata[3]:.3f}<br>test error %{customdata[4]:.3f}<extra></extra>")


def run_traces(index: pd.DataFrame, coords: np.ndarray) -> list[go.Scatter3d]:
    """One trace per (architecture, optimizer), grouped in the legend by architecture."""
    runs = index[index["kind"] == "run"]
    traces = []
    for (arch, opt), rows in runs.groupby(["arch", "optimizer"], sort=True):
        xyz = coords[rows["row"].to_numpy(), :3]
        custom = rows[["run_id", "epoch", "train_loss", "train_error", "test_error"]].to_numpy()
        traces.append(go.Scatter3d(
            x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers", name=f"{arch} · {opt}",
            legendgroup=arch, legendgrouptitle_text=arch, customdata=custom,
            hovertemplate=HOVER, meta={"arch": arch, "optimizer": opt},
            marker={"size": 2.5, "color": plotting.arch_color(arch), "opacity": 0.8,
                    "symbol": OPTIMIZER_SYMBOLS.get(opt, "circle")},
        ))
    return traces


def reference_traces(index: pd.DataFrame, coords: np.ndarray) -> list[go.Scatter3d]:
    """The geodesic from ignorance to truth (black) and the two reference points (red)."""
    path = index.index[index["kind"].isin(["ignorance", "geodesic"])]
    traces = [go.Scatter3d(x=coords[path, 0], y=coords[path, 1], z=coords[path, 2],
                           mode="lines", name="geodesic", legendgroup="reference",
                           legendgrouptitle_text="reference",
                           line={"color": plotting.GEODESIC_COLOR, "width": 4},
                           hoverinfo="skip")]
    for kind, label in (("ignorance", "P₀ (ignorance)"), ("truth", "P* (truth)")):
        row = index.index[index["kind"] == kind]
        traces.append(go.Scatter3d(x=coords[row, 0], y=coords[row, 1], z=coords[row, 2],
                                   mode="markers", name=label, legendgroup="reference",
                                   marker={"size": 7, "color": plotting.REFERENCE_COLOR},
                                   hovertemplate=f"{label}<extra></extra>"))
    return traces


def progress_slider(index: pd.DataFrame, coords: np.ndarray) -> dict:
    """A slider that shows checkpoints whose training accuracy is at most each step."""
    runs = index[index["kind"] == "run"]
    groups = list(runs.groupby(["arch", "optimizer"], sort=True))
    steps = []
    for level in PROGRESS_STEPS:
        xs, ys, zs = [], [], []
        for _, rows in groups:
            keep = rows[(1.0 - rows["train_error"]) <= level + 1e-9]["row"].to_numpy()
            xs.append(coords[keep, 0])
            ys.append(coords[keep, 1])
            zs.append(coords[keep, 2])
        steps.append({"method": "restyle", "label": f"{level:.1f}",
                      "args": [{"x": xs, "y": ys, "z": zs}, list(range(len(groups)))]})
    return {"active": len(steps) - 1, "steps": steps, "pad": {"t": 30},
            "currentvalue": {"prefix": "training accuracy ≤ "}}


def optimizer_buttons(traces: list[go.Scatter3d], n_total: int) -> dict:
    """Buttons that show every optimizer or one at a time (reference traces stay visible)."""
    optimizers = sorted({t.meta["optimizer"] for t in traces})

    def visible(opt: str | None) -> list[bool]:
        flags = [opt is None or t.meta["optimizer"] == opt for t in traces]
        return flags + [True] * (n_total - len(traces))

    buttons = [{"label": "all optimizers", "method": "restyle",
                "args": [{"visible": visible(None)}]}]
    buttons += [{"label": opt, "method": "restyle", "args": [{"visible": visible(opt)}]}
                for opt in optimizers]
    return {"type": "buttons", "direction": "right", "buttons": buttons, "x": 0.0, "y": 1.08,
            "xanchor": "left", "showactive": True}


def embedding_figure(index: pd.DataFrame, emb: Embedding, title: str) -> go.Figure:
    """PC1-PC3 of every checkpoint, coloured by architecture, with the geodesic and P0/P*."""
    coords = np.asarray(emb.coords)
    runs = run_traces(index, coords)
    fig = go.Figure(runs + reference_traces(index, coords))
    lam = emb.eigenvalues
    axes = {name: {"title": {"text": plotting.pc_label(k + 1, lam[k])},
                   **({"color": plotting.NEGATIVE_COLOR} if lam[k] < 0 else {})}
            for k, name in enumerate(("xaxis", "yaxis", "zaxis"))}
    fig.update_layout(
        title=title, template="plotly_white", height=750, scene=axes,
        legend={"groupclick": "togglegroup", "itemsizing": "constant"},
        sliders=[progress_slider(index, coords)],
        updatemenus=[optimizer_buttons(runs, len(fig.data))],
        margin={"l": 0, "r": 0, "t": 60, "b": 0},
    )
    return fig
