"""Grid expansion: every combination once, scaled learning rates, stable readable ids."""

from __future__ import annotations

import pytest

from lowdim.config.grid import GridConfig
from lowdim.store.records import RunSpec
from lowdim.training.grid import expand_grid, scaled_lr


def _grid(**axes) -> GridConfig:
    base = dict(arch=("fc", "allcnn"), optimizer=("sgd", "adam"),
                base_lr={"sgd": (0.1,), "adam": (0.001, 0.0005)}, batch_size=(200, 500),
                weight_decay=(0.0, 1e-3), augment=("none", "simple"), init=("default",),
                epochs=(200,), seed=(42, 43))
    base.update(axes)
    return GridConfig(**base)


def test_paper_lr_scaling_rule():
    # docs/study.md B3: sgd 0.1 at bs 200 -> 0.25 at 500, 0.5 at 1000; adam 1e-3 -> 2.5e-3 at 500.
    assert scaled_lr(0.1, 500, 200) == pytest.approx(0.25)
    assert scaled_lr(0.1, 1000, 200) == pytest.approx(0.5)
    assert scaled_lr(0.001, 500, 200) == pytest.approx(0.0025)


def test_expansion_counts_every_combination_once():
    specs = expand_grid(_grid(), {}, 200)
    # 2 archs x (1 sgd lr + 2 adam lrs) x 2 bs x 2 wd x 2 aug x 2 seeds
    assert len(specs) == 2 * 3 * 2 * 2 * 2 * 2
    assert len({s.run_id for s in specs}) == len(specs)


def test_run_id_is_readable_and_stable():
    spec = expand_grid(_grid(arch=("wr-10-4-8",), optimizer=("sgd",), batch_size=(500,),
                             weight_decay=(1e-3,), augment=("simple",), seed=(42,)), {}, 200)[0]
    assert spec.run_id == "wr-10-4-8_sgd_bs500_lr0.25_wd0.001_aug-simple_init-default_ep200_s42"
    assert spec.lr == pytest.approx(0.25)


def test_model_sizes_travel_with_the_spec():
    specs = expand_grid(_grid(), {"fc": {"widths": [8]}}, 200)
    assert all(s.model_size == ({"widths": [8]} if s.arch == "fc" else {}) for s in specs)
    assert specs[0].to_dict()["model_size"] == {"widths": [8]}


def test_colliding_ids_are_refused():
    # 0.1 at reference 200 and 0.10000000001 print the same: two runs would share a directory.
    with pytest.raises(ValueError, match="same run id twice"):
        expand_grid(_grid(base_lr={"sgd": (0.1, 0.1000000000001), "adam": (0.001,)}), {}, 200)


def test_seed_changes_the_run_id():
    a = RunSpec("fc", "sgd", 200, 0.1, 0.1, 0.0, "none", "default", 1, 42)
    b = RunSpec("fc", "sgd", 200, 0.1, 0.1, 0.0, "none", "default", 1, 43)
    assert a.run_id != b.run_id
