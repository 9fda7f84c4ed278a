"""The interactive page's figure: traces by architecture and optimizer, toggles, the slider."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lowdim.figures.interactive import PROGRESS_STEPS, embedding_figure
from lowdim.geometry.inpca import inpca


def _analysis() -> tuple[pd.DataFrame, object]:
    rows = []
    for arch in ("fc", "vit"):
        for opt in ("sgd", "adam"):
            for k, err in enumerate((0.9, 0.5, 0.05)):
                rows.append({"kind": "run", "run_id": f"{arch}_{opt}", "arch": arch,
                             "optimizer": opt, "epoch": float(k), "train_loss": 2.0 - k,
                             "train_error": err, "test_error": err})
    rows += [{"kind": "ignorance"}, {"kind": "truth"}] + [{"kind": "geodesic"}] * 3
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    points = np.random.default_rng(0).normal(size=(len(index), 5))
    d = ((points[:, None] - points[None]) ** 2).sum(-1)
    return index, inpca(d, 3)


def test_traces_group_runs_and_reference_points():
    index, emb = _analysis()
    fig = embedding_figure(index, emb, "t")
    names = [t.name for t in fig.data]
    assert names[:4] == ["fc · adam", "fc · sgd", "vit · adam", "vit · sgd"]
    assert names[4:] == ["geodesic", "P₀ (ignorance)", "P* (truth)"]
    assert {t.legendgroup for t in fig.data[:4]} == {"fc", "vit"}
    assert fig.layout.legend.groupclick == "togglegroup"
    # The geodesic starts at ignorance and passes through every geodesic row.
    np.testing.assert_allclose(fig.data[4].x, emb.coords[[12, 14, 15, 16], 0])
    assert "epoch" in fig.data[0].hovertemplate and "train loss" in fig.data[0].hovertemplate


def test_optimizer_buttons_show_one_optimizer():
    index, emb = _analysis()
    buttons = embedding_figure(index, emb, "t").layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["all optimizers", "adam", "sgd"]
    assert buttons[2].args[0]["visible"] == [False, True, False, True, True, True, True]


def test_slider_shows_checkpoints_up_to_each_accuracy():
    index, emb = _analysis()
    slider = embedding_figure(index, emb, "t").layout.sliders[0]
    assert len(slider.steps) == len(PROGRESS_STEPS)
    counts = [len(step.args[0]["x"][0]) for step in slider.steps]  # trace "fc · adam"
    # accuracies 0.1, 0.5, 0.95: one point from 0.1, two from 0.5, all three at 1.0
    assert counts[0] == 1 and counts[4] == 2 and counts[-1] == 3
    assert slider.active == len(PROGRESS_STEPS) - 1
