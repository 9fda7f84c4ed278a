"""The synthetic study (docs/study.md B8, lowdim.studies.synthetic): perturbed initialization, the
students trained by the main training loop, the analysis set of one c and the whole study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lowdim.analysis.analysis_set import renormalize
from lowdim.config.profile import load_profile
from lowdim.data.synthetic import make_synthetic
from lowdim.geometry.distances import truth_point
from lowdim.models.fc import FC
from lowdim.studies.synthetic import (
    analysis_set,
    perturb_init,
    run_synthetic,
    slope_overview,
    stress_overview,
    stress_table,
    student_data,
    student_rows,
    student_spec,
    train_student,
)
from lowdim.training.run import checkpoint_steps, seed_everything, train_run


@pytest.fixture(scope="module")
def small():
    data = make_synthetic(0.5, d=12, n_train=60, n_test=30, teacher_widths=(8,), seed=5)
    return ({"train": data.train_inputs, "test": data.test_inputs},
            {"train": data.train_labels, "test": data.test_labels})


@pytest.fixture(scope="module")
def device_data(small):
    return student_data(*small, num_classes=5)


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


def test_student_data_holds_the_float_inputs_as_they_are(small, device_data):
    inputs, labels = small
    assert device_data.train_images.dtype == torch.float32
    np.testing.assert_array_equal(device_data.train_images.numpy(), inputs["train"])
    np.testing.assert_array_equal(device_data.eval_images["test"].numpy(), inputs["test"])
    np.testing.assert_array_equal(device_data.eval_labels["train"].numpy(), labels["train"])
    assert device_data.num_classes == 5


def test_student_is_a_run_of_the_main_training_loop(small, device_data):
    spec = student_spec((8,), "sgdn", 0.05, 20, 2, 42)
    run = train_student(device_data, spec)
    assert np.array_equal(run.steps, checkpoint_steps(2, 3))
    assert run.stacked("train").shape == (len(run.steps), 60, 5)
    assert run.stacked("test").shape == (len(run.steps), 30, 5)
    direct = train_run(spec, device_data, probs_dtype=np.float32)  # the same loop and bytes
    assert run.stacked("train").dtype == np.float32  # small probabilities kept (not float16)
    assert np.array_equal(run.stacked("train"), direct.stacked("train"))
    # Step 0 is the seeded fc model on the raw float inputs (no normalization), in eval mode.
    seed_everything(42)
    model = FC(12, 5, (8,)).eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(small[0]["train"])), dim=1).numpy()
    np.testing.assert_allclose(renormalize(run.stacked("train")[0]), expected, atol=2e-3)
    corner = train_student(device_data, spec, iseed=0)
    assert not np.allclose(corner.stacked("train")[0], run.stacked("train")[0], atol=1e-2)


def test_a_diverging_student_names_the_learning_rate(small):
    inputs, labels = small
    broken = {**inputs, "train": inputs["train"].copy()}
    broken["train"][0, 0, 0, 0] = np.nan  # the first batch's loss is not finite
    data = student_data(broken, labels, num_classes=5)
    spec = student_spec((8,), "adam", 0.01, 60, 1, 1)
    with pytest.raises(RuntimeError, match=r"student adam seed 1 \(iseed None\) diverged at step "
                                           r"1: lower studies\.synthetic\.lr\.adam"):
        train_student(data, spec)


def test_analysis_set_appends_the_references(small, device_data):
    _, labels = small
    run = train_student(device_data, student_spec((8,), "adam", 0.01, 30, 1, 1))
    rows = student_rows(run, "r", "train", c=0.5, optimizer="adam")
    index, probs = analysis_set([(rows, renormalize(run.stacked("train")))], labels["train"], 5, 4)
    assert list(index["kind"].value_counts().sort_index().items()) == [
        ("geodesic", 4), ("ignorance", 1), ("run", len(run.steps)), ("truth", 1)]
    truth = index.index[index["kind"] == "truth"][0]
    assert np.array_equal(probs[truth], truth_point(labels["train"], 5))
    assert np.array_equal(index["row"], np.arange(len(index)))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    table = stress_table({(0.5, "default"): np.array([0.5, 0.9, 1.0])}, top=2)
    assert list(table["k"]) == [1, 2] and list(table["explained_stress"]) == [0.5, 0.9]


def test_run_synthetic_embeds_every_c_and_group(root):
    cfg = load_profile(root / "profiles" / "tiny.yaml", {
        "train": {"device": "cpu"},
        "embedding": {"n_components": 5, "stress_dims": [1, 2, 3]},
        "studies": {"synthetic": {"c": [0.0, 0.5], "d": 12, "n_train": 40, "n_test": 20,
                                  "teacher_widths": [8], "student_widths": [8], "epochs": 1,
                                  "batch_size": 20, "seeds": [42, 43], "ncorners": 1,
                                  "geodesic_points": 4}}})
    result = run_synthetic(cfg.studies.synthetic, cfg.train, cfg.distances, cfg.embedding,
                           distance_device="cpu")
    names = [f"c{c}_{g}" for c in ("0", "0.5") for g in ("default", "corners")]
    assert set(result.products) == {f"{n}_{kind}" for n in names for kind in ("index", "embedding")
                                    } | {"stress", "runs"}
    steps = len(checkpoint_steps(1, 2))
    for name in names:
        index = result.products[f"{name}_index"]
        assert (index["kind"] == "run").sum() == 2 * steps  # one optimizer x two seeds
        assert (index["kind"] == "geodesic").sum() == 4
        assert result.products[f"{name}_embedding"].coords.shape == (len(index), 5)
    corners = result.products["c0.5_corners_index"]
    assert set(corners["iseed"].dropna()) == {0}  # every seed starts from the one corner
    for c in ("c=0", "c=0.5"):
        for group in ("default", "corners"):
            chi = [result.metrics[c][group][f"explained_stress_{k}"] for k in (1, 2, 3)]
            assert 0 < chi[0] <= chi[1] <= chi[2] <= 1
    assert len(result.products["runs"]) == 2 * 2 * 2  # c x group x seed
    assert set(result.summary.columns) == {"final train error", "final test error"}


def test_several_students_train_and_embed_each_on_its_own(root):
    def study(**students):
        cfg = load_profile(root / "profiles" / "tiny.yaml", {
            "train": {"device": "cpu"},
            "embedding": {"n_components": 5, "stress_dims": [1, 2, 3]},
            "studies": {"synthetic": {"c": [0.0, 0.5], "d": 12, "n_train": 40, "n_test": 20,
                                      "teacher_widths": [8], "epochs": 1, "batch_size": 20,
                                      "seeds": [42, 43], "ncorners": 0, "geodesic_points": 4,
                                      **students}}})
        return run_synthetic(cfg.studies.synthetic, cfg.train, cfg.distances, cfg.embedding,
                             distance_device="cpu")

    one = study(student_widths=[8])
    both = study(student_widths=None, students=[[8], [8, 8]])
    names = [f"c{c}_{s}_default" for c in ("0", "0.5") for s in ("fc-8", "fc-8-8")]
    assert set(both.products) == {f"{n}_{kind}" for n in names for kind in ("index", "embedding")
                                  } | {"stress", "runs"}
    # metrics: the one-student tree per student, under `students`
    assert list(both.metrics) == ["students"]
    assert list(both.metrics["students"]) == ["fc-8", "fc-8-8"]
    assert set(one.metrics) == set(both.metrics["students"]["fc-8-8"]) == {
        "c=0", "c=0.5", "slope_against_c"}
    # fc-8 alone is the one-student study: the same runs, rows and embedding
    for c in ("0", "0.5"):
        alone = one.products[f"c{c}_default_index"]
        among = both.products[f"c{c}_fc-8_default_index"]
        assert set(among["student"].dropna()) == {"fc-8"}
        assert among["run_id"].dropna().str.startswith(f"c{c}_fc-8_default_sgdn_s").all()
        pd.testing.assert_frame_equal(among.drop(columns=["run_id", "student"]),
                                      alone.drop(columns=["run_id"]))
        np.testing.assert_allclose(
            both.products[f"c{c}_fc-8_default_embedding"].explained_stress,
            one.products[f"c{c}_default_embedding"].explained_stress, atol=1e-6)
        for k in (1, 2, 3):
            assert both.metrics["students"]["fc-8"][f"c={c}"]["default"][
                f"explained_stress_{k}"] == pytest.approx(
                one.metrics[f"c={c}"]["default"][f"explained_stress_{k}"], abs=1e-6)
    deeper = both.products["c0.5_fc-8-8_default_embedding"].explained_stress
    assert not np.allclose(deeper, one.products["c0.5_default_embedding"].explained_stress)
    # the tables say which student
    stress = both.products["stress"]
    assert list(stress.columns) == ["student", "c", "group", "k", "explained_stress"]
    assert list(dict.fromkeys(stress["student"])) == ["fc-8", "fc-8-8"]
    assert stress_overview(stress).index.names == ["student", "group", "c"]
    assert list(slope_overview(both.metrics).columns) == [("fc-8", "default"),
                                                          ("fc-8-8", "default")]
    assert list(slope_overview(one.metrics).columns) == ["default"]
    assert both.summary.index.names == ["student", "c", "group", "optimizer"]
    assert len(both.products["runs"]) == 2 * 2 * 2  # student x c x seed
