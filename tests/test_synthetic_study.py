"""The synthetic study's students (docs/study.md B8): perturbed initialization, the float training
loop and the analysis set of one c."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowdim.data.synthetic import make_synthetic
from lowdim.distances import truth_point
from lowdim.models.fc import FC
from lowdim.synthetic_study import (
    analysis_set,
    perturb_init,
    stress_table,
    student_rows,
    train_student,
)
from lowdim.train import checkpoint_steps


@pytest.fixture(scope="module")
def small():
    data = make_synthetic(0.5, d=12, n_train=60, n_test=30, teacher_widths=(8,), seed=5)
    return ({"train": data.train_inputs, "test": data.test_inputs},
            {"train": data.train_labels, "test": data.test_labels})


def test_perturbed_init_adds_standard_normal_weights():
    torch.manual_seed(0)
    model = FC(12, 5, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    perturb_init(model, iseed=3)
    generator = torch.Generator().manual_seed(3)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for i, linear in enumerate(linears):
        key = f"net.{[1, 4][i]}"
        added = linear.weight.detach() - before[f"{key}.weight"]
        torch.testing.assert_close(added, torch.randn(linear.weight.shape, generator=generator),
                                   rtol=0, atol=1e-6)
        assert torch.equal(linear.bias.detach(), before[f"{key}.bias"])  # biases are kept


def test_student_records_the_checkpoint_schedule(small):
    inputs, labels = small
    kw = {"widths": (8,), "num_classes": 5, "optimizer": "sgdn", "lr": 0.05, "batch_size": 20,
          "epochs": 2, "seed": 42}
    run = train_student(inputs, labels, **kw)
    assert np.array_equal(run.steps, checkpoint_steps(2, 3))
    assert run.probs["train"].shape == (len(run.steps), 60, 5)
    assert run.probs["test"].shape == (len(run.steps), 30, 5)
    np.testing.assert_allclose(run.probs["train"].sum(-1), 1.0, atol=1e-5)
    again = train_student(inputs, labels, **kw)
    assert np.array_equal(run.probs["train"], again.probs["train"])
    corner = train_student(inputs, labels, **kw, iseed=0)
    assert not np.allclose(corner.probs["train"][0], run.probs["train"][0])


def test_analysis_set_appends_the_references(small):
    inputs, labels = small
    run = train_student(inputs, labels, widths=(8,), num_classes=5, optimizer="adam", lr=0.01,
                        batch_size=30, epochs=1, seed=1)
    rows = student_rows(run, "r", "train", c=0.5, optimizer="adam")
    index, probs = analysis_set([(rows, run.probs["train"])], labels["train"], 5, 4)
    assert list(index["kind"].value_counts().sort_index().items()) == [
        ("geodesic", 4), ("ignorance", 1), ("run", len(run.steps)), ("truth", 1)]
    truth = index.index[index["kind"] == "truth"][0]
    assert np.array_equal(probs[truth], truth_point(labels["train"], 5))
    assert np.array_equal(index["row"], np.arange(len(index)))
    table = stress_table({(0.5, "default"): np.array([0.5, 0.9, 1.0])}, top=2)
    assert list(table["k"]) == [1, 2] and list(table["explained_stress"]) == [0.5, 0.9]
