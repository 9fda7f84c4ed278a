"""A tangent basis over a subset of the runs (`studies.tangents.subset`, docs/study.md A14, D18):
which runs a subset keeps, its errors at config time (against the grid) and at stage time (against
the analysis set), and the subset basis against the plain study run on those runs alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml
from study_data import analysis_set

from lowdim.config.load import ConfigError
from lowdim.config.profile import load_profile
from lowdim.config.studies.tangents import TangentSubset, in_subset, same_value
from lowdim.studies.tangents import run_tangents, subset_mask, tangent_rows
from lowdim.tools.params import validate


def test_a_run_is_kept_when_every_select_axis_matches_and_no_exclude_axis_does():
    subset = TangentSubset(select={"arch": ("allcnn",), "batch_size": (200,)},
                           exclude={"lr": (0.001,), "optimizer": ("sgd",)})
    run = {"arch": "allcnn", "batch_size": 200, "lr": 0.1, "optimizer": "sgdn"}
    assert in_subset(run, subset)
    assert not in_subset({**run, "arch": "fc"}, subset)          # a select axis differs
    assert not in_subset({**run, "batch_size": 500}, subset)
    assert not in_subset({**run, "lr": 0.001}, subset)           # one exclude axis is enough
    assert not in_subset({**run, "optimizer": "sgd"}, subset)
    # a scaled lr is the listed one within rounding; 0 and 0.0 are one weight decay
    assert 0.1 * 3 / 10 != 0.03 and same_value(0.1 * 3 / 10, 0.03)
    assert same_value(np.int64(200), 200) and same_value(0.0, 0) and not same_value(0.1, 0.11)


def test_the_subset_mask_marks_every_checkpoint_of_the_kept_runs():
    # five made-up runs of two checkpoints each, then the references
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e"], "arch": ["allcnn", "allcnn", "allcnn", "fc", "allcnn"],
        "augment": ["none", "none", "simple", "none", "none"],
        "lr": [0.1, 0.001, 0.1, 0.1, 0.1 * 128 / 200 / 0.64], "weight_decay": [0.0] * 5})
    index = pd.concat([runs.loc[runs.index.repeat(2)].assign(kind="run"),
                       pd.DataFrame({"kind": ["ignorance", "truth"]})], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    subset = TangentSubset(select={"arch": ("allcnn",), "augment": ("none",)},
                           exclude={"lr": (0.001,)})
    # a and e (its lr is 0.1 up to rounding) are kept; b (lr 0.001), c (simple), d (fc) are not
    assert subset_mask(index, subset).tolist() == [True, True, False, False, False, False,
                                                   False, False, True, True, False, False]


@pytest.mark.parametrize("select, exclude, message", [
    ({"arch": ("cnn",)}, {"seed": (7,)},
     r"studies\.tangents\.subset\.exclude\.seed lists 7, which no run of the analysis set has "
     r"\(seed: 1, 2\): fix the value or drop it"),
    ({"arch": ("allcnn",)}, None,
     r"studies\.tangents\.subset\.select\.arch lists 'allcnn', which no run of the analysis set "
     r"has \(arch: fc, cnn\)"),
    ({"arch": ("cnn",), "optimizer": ("sgdn",)}, None,
     r"studies\.tangents\.subset keeps none of the analysis set: no run has all the selected "
     r"values"),
    ({"base_lr": (0.1,)}, None,
     r"studies\.tangents\.subset names base_lr, which the analysis set does not record"),
])
def test_a_subset_the_analysis_set_cannot_serve_fails_at_the_stage(root, select, exclude,
                                                                   message):
    # the stage knows no grid: it checks the subset against the runs of the analysis set
    data = analysis_set()
    cfg = load_profile(root / "profiles" / "tiny.yaml", {"studies": {"tangents": {
        "outlier_loss": 4.5, "dims": 4}}})
    study = dataclasses.replace(cfg.studies.tangents,
                                subset=TangentSubset(select=select, exclude=exclude))
    with pytest.raises(ConfigError, match=message):
        run_tangents(study, cfg.distances, cfg.embedding, data.index, data.probs,
                     data.distances, data.progress, distance_device="cpu")


def test_a_subset_with_fewer_than_two_kept_checkpoints_is_refused():
    index = analysis_set(checkpoints=3).index  # losses 5, 4, 3 per run
    only_first = (index["run_id"] == "fc_s_s1").to_numpy()
    with pytest.raises(ValueError, match=r"only 1 run checkpoints of studies\.tangents\.subset "
                                         r"have train loss < 4: raise"):
        tangent_rows(index, 4.0, only_first, "run checkpoints of studies.tangents.subset")


def _quick(root, subset) -> dict:
    raw = yaml.safe_load((root / "profiles" / "quick.yaml").read_text())
    raw["studies"]["tangents"]["subset"] = subset
    return raw


@pytest.mark.parametrize("subset, message", [
    ({"select": {"wd": [0.0]}},
     r"studies\.tangents\.subset\.select\.wd = 'wd' is not known.*use one of arch, optimizer"),
    ({"select": {"arch": ["resnet"]}},
     r"studies\.tangents\.subset\.select\.arch lists 'resnet', which no run of the grid has "
     r"\(arch: fc, allcnn, .*\): fix the value or drop it"),
    ({"select": {"arch": ["fc"]}, "exclude": {"lr": [0.001]}},
     r"studies\.tangents\.subset\.exclude\.lr lists 0\.001, which no run of the grid has "
     r"\(lr: 0\.032, 0\.00032\)"),
    ({"select": {"arch": ["fc"]}, "exclude": {"optimizer": ["sgd", "sgdn", "adam"]}},
     r"studies\.tangents\.subset keeps none of the grid: .* widen select or narrow exclude"),
    ({"select": {"arch": ["fc", "fc"]}},
     r"studies\.tangents\.subset\.select\.arch = \['fc', 'fc'\] repeats a value"),
    ({"select": {"arch": [["fc"]]}},
     r"studies\.tangents\.subset\.select\.arch = \[\['fc'\]\]: list plain values of the run's "
     r"arch, e\.g\. \[allcnn\]"),
    ({"select": {"arch": "fc"}}, r"studies\.tangents\.subset\.select\.arch = 'fc': must be a list"),
    ({"select": {"arch": ["fc"]}, "centres": [0.7, 0.3]},
     r"studies\.tangents\.subset\.centres = \[0\.7, 0\.3\]: give two progress values"),
    ({"exclude": {"arch": ["fc"]}}, r"missing key studies\.tangents\.subset\.select"),
])
def test_a_subset_the_grid_cannot_serve_fails_at_config_time(root, subset, message):
    with pytest.raises(ConfigError, match=message):
        validate(_quick(root, subset))


def test_a_subset_on_the_grid_validates_scaled_rates_included(root):
    # the quick grid gives base_lr 0.1 for sgd at batch 64: its runs train with lr 0.032
    cfg = validate(_quick(root, {"select": {"arch": ["allcnn"], "lr": [0.032],
                                            "weight_decay": [0]}}))
    assert cfg.studies.tangents.subset == TangentSubset(
        select={"arch": ("allcnn",), "lr": (0.032,), "weight_decay": (0,)})
    assert cfg.studies.tangents.subset.centres == (0.3, 0.7)


def _only_runs(data, run_ids):
    """The analysis set with the other runs' rows removed (references kept), rows renumbered."""
    keep = data.index["run_id"].isin(run_ids) | data.index["kind"].isin(["ignorance", "truth"])
    rows = np.flatnonzero(keep.to_numpy())
    index = data.index.iloc[rows].reset_index(drop=True).assign(row=np.arange(len(rows)))
    progress = data.progress.iloc[rows].reset_index(drop=True).rename_axis("row")
    return dataclasses.replace(
        data, index=index, progress=progress,
        probs={s: p[rows] for s, p in data.probs.items()},
        distances={s: d[np.ix_(rows, rows)] for s, d in data.distances.items()})


def test_the_subset_basis_is_the_plain_basis_of_its_runs_alone(root):
    data = analysis_set()
    tangents = {"centres": [0.2, 0.5], "width": 0.1, "outlier_loss": 4.5, "dims": 4}
    plain = load_profile(root / "profiles" / "tiny.yaml", {"studies": {"tangents": tangents}})
    study = dataclasses.replace(plain.studies.tangents, subset=TangentSubset(
        select={"arch": ("fc",)}, exclude={"optimizer": ("adam",)}, centres=(0.3, 0.6)))
    both = run_tangents(study, plain.distances, plain.embedding, data.index, data.probs,
                        data.distances, data.progress, distance_device="cpu")
    every = run_tangents(plain.studies.tangents, plain.distances, plain.embedding, data.index,
                         data.probs, data.distances, data.progress, distance_device="cpu")
    # the basis over every run is unchanged by the subset
    assert set(both.metrics) == {*every.metrics, "subset_checkpoints", "subset_runs"}
    assert both.metrics["checkpoints"] == every.metrics["checkpoints"]
    for space in ("train", "test"):
        assert {m: x for m, x in both.metrics[space].items()
                if not m.startswith("subset_")} == every.metrics[space]
        np.testing.assert_array_equal(both.products[f"{space}_coords"],
                                      every.products[f"{space}_coords"])
    # the subset's basis: the plain study at the subset's centres on fc_s_s1 and fc_s_s2 alone
    alone = _only_runs(data, ["fc_s_s1", "fc_s_s2"])
    at = dataclasses.replace(plain.studies.tangents, centres=(0.3, 0.6))
    ref = run_tangents(at, plain.distances, plain.embedding, alone.index, alone.probs,
                       alone.distances, alone.progress, distance_device="cpu")
    assert both.metrics["subset_runs"] == 2
    assert both.metrics["subset_checkpoints"] == ref.metrics["checkpoints"] == 2 * 3
    runs = data.index.index[data.index["run_id"].isin(["fc_s_s1", "fc_s_s2"])].to_numpy()
    np.testing.assert_array_equal(both.products["subset_rows"], runs)
    np.testing.assert_array_equal(both.products["subset_kept"], ref.products["kept"])
    for space in ("train", "test"):
        assert {m.removeprefix("subset_"): x for m, x in both.metrics[space].items()
                if m.startswith("subset_")} == ref.metrics[space]
        np.testing.assert_allclose(both.products[f"subset_{space}_coords"],
                                   ref.products[f"{space}_coords"], rtol=0, atol=1e-12)
    assert list(both.summary.columns) == ["tangent basis", "true InPCA", "subset: tangent basis",
                                          "subset: true InPCA"]
