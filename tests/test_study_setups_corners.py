"""Corner setups (`studies.corners.setups`, docs/study.md B7, D16): several (architecture, kind,
subset size) pairings in one study, each validated, named and compared with the normal runs of its
own architecture; the flat keys keep meaning one architecture with every kind."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml

from lowdim.config.load import ConfigError
from lowdim.config.profile import load_profile
from lowdim.config.studies.corners import CornersConfig, CornerSetup
from lowdim.studies.corners import corner_truths, joint_set, run_corners, setups_table
from lowdim.tools.params import validate

AUTHORS = [{"arch": "allcnn", "kind": "subsample", "subsample_size": 200},
           {"arch": "fc", "kind": "subsample", "subsample_size": 2000},
           {"arch": "wr-10-1-8", "kind": "uniform"}]


def _quick(root, **corners) -> dict:
    raw = yaml.safe_load((root / "profiles" / "quick.yaml").read_text())
    section = raw["studies"]["corners"]
    for key in ("arch", "kinds", "subsample_size"):  # as a profile with setups writes it
        section.pop(key)
    section.update(corners)
    return raw


def test_the_authors_setups_load_in_order_with_their_names(root):
    cfg = validate(_quick(root, setups=AUTHORS)).studies.corners
    assert cfg.setups == (CornerSetup("allcnn", "subsample", 200),
                          CornerSetup("fc", "subsample", 2000), CornerSetup("wr-10-1-8", "uniform"))
    assert [name for name, _ in cfg.named_setups()] == ["subsample-200", "subsample-2000",
                                                        "uniform"]
    assert cfg.archs == ("allcnn", "fc", "wr-10-1-8")


def test_the_flat_keys_are_one_setup_per_kind_named_by_the_kind():
    cfg = CornersConfig(arch="allcnn", kinds=("uniform", "subsample"), subsample_size=50)
    assert cfg.named_setups() == (("uniform", CornerSetup("allcnn", "uniform")),
                                  ("subsample", CornerSetup("allcnn", "subsample", 50)))
    assert cfg.archs == ("allcnn",)


@pytest.mark.parametrize("setups, flat, message", [
    ([{"arch": "vit-large", "kind": "uniform"}], {},
     r"studies\.corners\.setups\[0\]\.arch = 'vit-large' is not in grid\.arch \(.*\): each "
     r"setup is compared with the normal runs of its architecture"),
    ([{"arch": "fc", "kind": "uniform"}, {"arch": "fc", "kind": "random"}], {},
     r"studies\.corners\.setups\[1\]\.kind = 'random' is not known.*use one of uniform, "
     r"subsample"),
    ([{"arch": "fc", "kind": "subsample", "subsample_size": 205}], {},
     r"studies\.corners\.setups\[0\]\.subsample_size = 205: a balanced subset needs a multiple "
     r"of the 10 classes"),
    ([{"arch": "fc", "kind": "subsample", "subsample_size": 0}], {},
     r"studies\.corners\.setups\[0\]\.subsample_size = 0: must be positive"),
    ([{"arch": "fc", "kind": "subsample"}], {},
     r"studies\.corners\.setups\[0\] is a subsample corner without subsample_size: give the "
     r"size of its balanced subset"),
    ([{"arch": "fc", "kind": "uniform", "subsample_size": 200}], {},
     r"studies\.corners\.setups\[0\]\.subsample_size = 200: only a subsample corner has a "
     r"subset; drop the key from this uniform setup"),
    ([{"arch": "fc", "kind": "uniform"}, {"arch": "allcnn", "kind": "uniform"},
      {"arch": "fc", "kind": "uniform"}], {},
     r"studies\.corners\.setups\[2\] repeats setups\[0\] \(fc, uniform\): list each setup once"),
    ([{"arch": "fc", "kind": "uniform", "widths": [8]}], {},
     r"unknown parameter key studies\.corners\.setups\[0\]\.widths"),
    ([], {}, r"studies\.corners\.setups is an empty list"),
    ([{"arch": "fc", "kind": "uniform"}], {"arch": "allcnn", "kinds": ["uniform"]},
     r"studies\.corners sets both setups and arch, kinds: with setups, each setup names its own "
     r"arch, kind and subsample_size; drop studies\.corners\.arch and kinds"),
    ([{"arch": "fc", "kind": "uniform"}], {"subsample_size": 50},
     r"studies\.corners sets both setups and subsample_size"),
])
def test_bad_setups_are_named(root, setups, flat, message):
    with pytest.raises(ConfigError, match=message):
        validate(_quick(root, setups=setups, **flat))


def test_two_subset_sizes_of_one_architecture_are_two_setups(root):
    cfg = validate(_quick(root, setups=[
        {"arch": "fc", "kind": "subsample", "subsample_size": 50},
        {"arch": "fc", "kind": "subsample", "subsample_size": 100}])).studies.corners
    assert [name for name, _ in cfg.named_setups()] == ["subsample-50", "subsample-100"]
    assert cfg.archs == ("fc",)  # one architecture: one joint set, metrics as with flat keys


def test_the_setups_table_prefixes_products_only_for_several_architectures():
    one = setups_table(CornersConfig(arch="allcnn", kinds=("uniform", "subsample"),
                                     subsample_size=50))
    assert one.drop(columns="subsample_size").to_dict("list") == {
        "arch": ["allcnn", "allcnn"], "setup": ["uniform", "subsample"],
        "kind": ["uniform", "subsample"], "prefix": ["", ""]}
    assert one["subsample_size"].isna().tolist() == [True, False]
    assert one["subsample_size"].iloc[1] == 50
    several = setups_table(CornersConfig(setups=(CornerSetup("fc", "uniform"),
                                                 CornerSetup("allcnn", "subsample", 20))))
    assert list(several["prefix"]) == ["fc_", "allcnn_"]
    assert list(several["setup"]) == ["uniform", "subsample-20"]


def test_only_uniform_setups_of_the_architecture_get_a_corner_truth(tiny_prepared):
    cfg = CornersConfig(iseeds=(0, 1), setups=(CornerSetup("fc", "uniform"),
                                               CornerSetup("allcnn", "subsample", 20),
                                               CornerSetup("allcnn", "uniform")))
    truths = corner_truths(tiny_prepared, cfg, "allcnn")
    assert list(truths) == ["uniform-0", "uniform-1"]
    labels = np.random.RandomState(1).randint(0, 10, len(tiny_prepared.train_labels))
    assert np.array_equal(truths["uniform-1"], labels[tiny_prepared.eval_train_index])
    assert corner_truths(tiny_prepared, dataclasses.replace(cfg, setups=cfg.setups[1:2]),
                         "allcnn") == {}


def _main_set(labels: np.ndarray, archs: dict[str, int], checkpoints: int = 4,
              seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """A main analysis set on the train space: `archs[a]` runs of each architecture a, train error
    falling from 0.9 to 0.05, random predictions, then ignorance, truth and a 3-point geodesic."""
    from lowdim.analysis.analysis_set import reference_points

    rng = np.random.default_rng(seed)
    ids = [f"{arch}-{i}" for arch, n in archs.items() for i in range(n)]
    rows = pd.DataFrame({
        "kind": "run", "run_id": np.repeat(ids, checkpoints),
        "arch": np.repeat([i.rsplit("-", 1)[0] for i in ids], checkpoints), "optimizer": "sgdn",
        "seed": np.repeat(np.arange(len(ids)), checkpoints),
        "checkpoint": np.tile(np.arange(checkpoints), len(ids)), "step": 0, "epoch": 0.0,
        "train_loss": 1.0, "train_error": np.tile(np.linspace(0.9, 0.05, checkpoints), len(ids))})
    probs = rng.dirichlet(np.ones(10), size=(len(rows), len(labels))).astype(np.float32)
    ref_rows, ref_probs = reference_points({"train": labels}, 10, 3)
    index = pd.concat([rows, ref_rows], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    return index, np.concatenate([probs, ref_probs["train"]])


def test_a_setup_is_joined_with_the_normal_runs_of_its_own_architecture(tiny_prepared):
    labels = tiny_prepared.train_labels[tiny_prepared.eval_train_index]
    main_index, main_probs = _main_set(labels, {"fc": 2, "allcnn": 3})
    for arch, runs in (("fc", 2), ("allcnn", 3)):
        index, probs = joint_set([], main_index, main_probs, arch, {}, 10, 3)
        normal = index[index["kind"] == "run"]
        assert set(normal["arch"]) == {arch} and normal["run_id"].nunique() == runs
        # its rows are the main set's rows of that architecture, in order, probabilities too
        source = main_index.index[main_index["arch"] == arch]
        assert np.array_equal(probs[normal.index], main_probs[source])


def test_two_architectures_are_trained_embedded_and_compared_apart(root, tiny_prepared):
    # fc with random labels and allcnn with a 20-image subset: each joint set holds its own
    # architecture's normal runs and corner runs, metrics and products per architecture.
    small = dataclasses.replace(tiny_prepared, train_images=tiny_prepared.train_images[:200],
                                train_labels=tiny_prepared.train_labels[:200],
                                eval_train_index=tiny_prepared.eval_train_index[
                                    tiny_prepared.eval_train_index < 200])
    cfg = load_profile(root / "profiles" / "tiny.yaml", {
        "models": {"fc": {"widths": [8]}, "allcnn": {"channels": [4, 4]}},
        "embedding": {"n_components": 10, "stress_dims": [1, 2]},
        "studies": {"corners": {"arch": "fc", "kinds": ["uniform", "subsample"],
                                "subsample_size": 200, "iseeds": [0], "seeds": [42],
                                "phase1_epochs": 1, "phase2_epochs": 1, "batch_size": 100,
                                "geodesic_points": 3, "grid_points": 4}}})
    study = dataclasses.replace(cfg.studies.corners, setups=(
        CornerSetup("fc", "uniform"), CornerSetup("allcnn", "subsample", 20)))
    labels = small.train_labels[small.eval_train_index]
    main_index, main_probs = _main_set(labels, {"fc": 2, "allcnn": 3})
    result = run_corners(study, cfg.train, cfg.models, cfg.distances, cfg.embedding, small,
                         main_index, main_probs, distance_device="cpu")
    assert set(result.metrics) == {"by_arch"}
    assert list(result.metrics["by_arch"]) == ["fc", "allcnn"]
    assert set(result.metrics["by_arch"]["fc"]["corners"]) == {"uniform-0"}
    assert set(result.metrics["by_arch"]["allcnn"]["corners"]) == {"subsample-20-0"}
    assert set(result.products) == {"setups", *(f"{a}_{p}" for a in ("fc", "allcnn")
                                                for p in ("index", "embedding", "convergence"))}
    for arch, runs, truths in (("fc", 2, 1), ("allcnn", 3, 0)):
        index = result.products[f"{arch}_index"]
        counts = index["kind"].value_counts()
        assert set(index.loc[index["kind"].isin(["run", "corner_run"]), "arch"]) == {arch}
        assert index.loc[index["kind"] == "run", "run_id"].nunique() == runs
        assert counts.get("corner_truth", 0) == truths  # only the uniform corner has its truth
        assert result.products[f"{arch}_embedding"].coords.shape[0] == len(index)
        table = result.products[f"{arch}_convergence"]
        assert set(table["corner"]) == set(result.metrics["by_arch"][arch]["corners"])
        stress = result.metrics["by_arch"][arch]["train"]
        assert 0 < stress["explained_stress_1"] <= stress["explained_stress_2"] <= 1
    # the allcnn corner trained on 20 images (2 per class), and phase 1 ran on its setup's arch
    log = result.summary
    assert list(log["arch"]) == ["fc", "fc", "allcnn", "allcnn"]
    assert list(log["corner"]) == ["uniform-0"] * 2 + ["subsample-20-0"] * 2
