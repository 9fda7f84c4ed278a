"""One training run: the checkpoint schedule (docs/study.md B5), optimizers, determinism,
divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowdim.store.records import RunSpec
from lowdim.training.run import (
    DeviceData,
    checkpoint_steps,
    cosine_factor,
    make_optimizer,
    train_run,
)


@pytest.mark.parametrize("epochs, iters, count", [(200, 250, 67), (200, 50, 67), (200, 100, 62),
                                                   (200, 500, 62), (300, 250, 73), (300, 100, 68)])
def test_checkpoint_counts_match_the_paper(epochs, iters, count):
    # B5: 200 epochs at bs 200/1000 (250/50 iterations) -> 67; bs 500 -> 62; 300 epochs -> 73/68.
    assert len(checkpoint_steps(epochs, iters)) == count


def test_checkpoint_steps_of_batch_200():
    steps = checkpoint_steps(200, 250)
    assert steps[:7].tolist() == [0, 1, 63, 125, 187, 249, 251]
    assert 1249 in steps and 1500 in steps and 1750 in steps and 6500 in steps
    assert 7250 in steps and 8250 in steps and 16250 in steps and 19000 in steps
    assert 22750 in steps and steps[-2:].tolist() == [49000, 50000]
    assert np.all(np.diff(steps) > 0)


def test_checkpoint_schedule_short_runs_and_bad_input():
    assert checkpoint_steps(1, 3).tolist() == [0, 1, 2, 3]
    assert checkpoint_steps(2, 8).tolist() == [0, 1, 3, 5, 7, 9, 11, 13, 15, 16]
    with pytest.raises(ValueError, match="must be positive"):
        checkpoint_steps(0, 10)


def test_cosine_schedule_ends_at_zero():
    assert cosine_factor(0, 100) == 1.0
    assert cosine_factor(50, 100) == pytest.approx(0.5)
    assert cosine_factor(100, 100) == pytest.approx(0.0)


def test_optimizers_follow_the_paper():
    params = [torch.nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer("sgd", params, 0.1, 1e-3).param_groups[0]
    sgdn = make_optimizer("sgdn", params, 0.1, 0.0).param_groups[0]
    adam = make_optimizer("adam", params, 0.001, 1e-5)
    assert sgd["momentum"] == 0 and sgd["weight_decay"] == 1e-3
    assert sgdn["momentum"] == 0.9 and sgdn["nesterov"]
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 1e-5
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", params, 0.1, 0.0)


def _spec(**kw) -> RunSpec:
    base = dict(arch="fc", optimizer="sgdn", batch_size=128, base_lr=0.1, lr=0.1,
                weight_decay=0.0, augment="none", init="default", epochs=2, seed=42,
                model_size={"widths": (16,)})
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def data(tiny_prepared):
    return DeviceData.from_prepared(tiny_prepared, torch.device("cpu"))


def test_run_records_every_checkpoint(data, tiny_prepared):
    result = train_run(_spec(), data)
    iters = int(np.ceil(len(tiny_prepared.train_labels) / 128))
    assert result.status == "ok"
    assert result.steps == checkpoint_steps(2, iters).tolist()
    probs = result.stacked("train")
    assert probs.dtype == np.float32  # the run store's dtype
    assert probs.shape == (len(result.steps), 60, 10)
    assert result.stacked("test").shape == (len(result.steps), 40, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert result.epochs[-1] == 2.0
    # Training lowers the training-space loss from about ln 10.
    assert result.loss["train"][-1] < result.loss["train"][0]


@pytest.mark.parametrize("optimizer", ["sgd", "sgdn", "adam"])
def test_same_spec_gives_the_same_bytes(data, optimizer):
    spec = _spec(optimizer=optimizer, augment="simple", lr=0.05 if optimizer != "adam" else 1e-3)
    a, b = train_run(spec, data), train_run(spec, data)
    assert a.stacked("train").tobytes() == b.stacked("train").tobytes()
    assert a.loss == b.loss


def test_different_seeds_differ(data):
    a, b = train_run(_spec(seed=1), data), train_run(_spec(seed=2), data)
    assert not np.array_equal(a.stacked("train"), b.stacked("train"))


def test_augmentation_changes_the_trajectory(data):
    a, b = train_run(_spec(augment="none"), data), train_run(_spec(augment="simple"), data)
    assert np.array_equal(a.stacked("train")[0], b.stacked("train")[0])  # same init
    assert not np.array_equal(a.stacked("train")[-1], b.stacked("train")[-1])


def test_divergence_stops_the_run(data):
    result = train_run(_spec(optimizer="sgd", lr=1e30), data)
    assert result.status == "diverged"
    assert result.diverged_at_step is not None
    assert len(result.steps) >= 1 and result.steps[-1] < result.diverged_at_step
