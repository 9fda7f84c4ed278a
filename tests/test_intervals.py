"""Intervals of the headline metrics (lowdim.analysis.intervals, issue 24): resamples of seeds
and runs, point sets, closed-form jackknife errors, the full-data values against the embedding
and trajectories stages' own computations, determinism, and the parameter section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lowdim.analysis.intervals import (
    bootstrap,
    explained_stresses,
    full_trajectory_metrics,
    jackknife_se,
    percentile_interval,
    point_rows,
    point_runs,
    resampled_trajectory_metrics,
    run_bootstrap,
    seed_bootstrap,
    seed_jackknife,
    stress_of_resample,
    summarize,
    unit_of,
)
from lowdim.analysis.trajectories import (
    build_trajectory_set,
    progress_grid,
    reindex_index,
    run_table,
)
from lowdim.analysis.trajectory_analyses import between_within_ratio, summary_metrics
from lowdim.config.intervals import IntervalsConfig
from lowdim.config.load import ConfigError, load
from lowdim.geometry.distances import ignorance_point, truth_point
from lowdim.geometry.geodesic import geodesic, trajectory_distance_tensor
from lowdim.geometry.inpca import inpca, stress_metrics

DIMS = (1, 2)


def squared_distances(x: np.ndarray) -> np.ndarray:
    """(M, p) points -> (M, M) squared Euclidean distances (InPCA of them is classical MDS)."""
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def seeded_points(h: float, delta: float, shifted: tuple[int, ...] = (3,)):
    """Runs "a" (checkpoints (+-1, 0)) and "b" ((0, +-h)) for seeds 1, 2, 3 in 3-D, the seeds in
    `shifted` moved by delta along z: coordinates, the run of each point and the run labels."""
    base = {"a": np.array([[1.0, 0, 0], [-1.0, 0, 0]]), "b": np.array([[0, h, 0], [0, -h, 0]])}
    points, point_run, seeds, configs = [], [], [], []
    for seed in (1, 2, 3):
        for config, x in base.items():
            point_run += [len(seeds)] * len(x)
            points.append(x + (delta if seed in shifted else 0.0) * np.array([0, 0, 1.0]))
            seeds.append(seed)
            configs.append(config)
    return np.concatenate(points), np.array(point_run), np.array(seeds), np.array(configs)


# --- resamples ---


def test_jackknife_leaves_each_seed_out():
    seeds = np.array([42, 43, 44, 42, 43, 44])
    found = seed_jackknife(seeds)
    assert [r.tolist() for r in found] == [[1, 2, 4, 5], [0, 2, 3, 5], [0, 1, 3, 4]]


@pytest.mark.parametrize("seeds", [[42, 42, 42], [7]])
def test_fewer_than_two_seeds_is_a_clear_error(seeds):
    message = r"resampling by seed needs runs of at least 2 seeds, got 1 .*train more seeds"
    with pytest.raises(ValueError, match=message):
        seed_jackknife(np.array(seeds))
    with pytest.raises(ValueError, match=message):
        bootstrap("run", np.array(seeds), np.array(["a"] * len(seeds)), 5, 0)


def test_seed_bootstrap_draws_whole_seeds_and_has_few_distinct_resamples():
    seeds = np.array([1, 2, 3] * 4)  # 4 configurations x 3 seeds
    found = seed_bootstrap(seeds, 500, np.random.default_rng(0))
    for runs in found:
        assert len(runs) == 12 and np.all(np.diff(runs) >= 0)
        drawn = np.bincount(seeds[runs], minlength=4)[1:] // 4
        assert np.all(np.bincount(seeds[runs], minlength=4)[1:] % 4 == 0)  # whole seeds
        assert drawn.sum() == 3
    # 3 seeds: C(5, 3) = 10 multisets at most, which is why the metrics bootstrap runs
    assert len({tuple(r) for r in found}) == 10


def test_run_bootstrap_stays_within_each_configuration():
    configs = np.array(["a", "a", "a", "b", "b", "c"])
    found = run_bootstrap(configs, 2000, np.random.default_rng(1))
    for runs in found:
        assert sorted(configs[runs].tolist()) == sorted(configs.tolist())
        assert set(runs[configs[runs] == "c"]) == {5}
    assert len({tuple(r) for r in found}) == 10 * 3  # the a-draws times the b-draws


def test_bootstrap_is_determined_by_its_seed():
    seeds, configs = np.array([1, 2, 3] * 3), np.repeat(["a", "b", "c"], 3)
    for kind in ("run", "seed"):
        first = bootstrap(kind, seeds, configs, 20, 7)
        again = bootstrap(kind, seeds, configs, 20, 7)
        other = bootstrap(kind, seeds, configs, 20, 8)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    with pytest.raises(ValueError, match=r"bootstrap = 'runs' is not known: use one of"):
        bootstrap("runs", seeds, configs, 5, 0)
    with pytest.raises(ValueError, match=r"resamples must be a whole number >= 1, got 0"):
        bootstrap("run", seeds, configs, 0, 0)


# --- point sets ---


def test_point_rows_repeat_drawn_runs_and_keep_points_of_no_run():
    point_run = np.array([0, 0, 1, -1, 2, -1])
    assert point_rows(point_run, np.array([0, 1, 2])).tolist() == [0, 1, 2, 3, 4, 5]
    assert point_rows(point_run, np.array([1, 1, 2])).tolist() == [2, 2, 3, 4, 5]
    assert point_rows(point_run, np.array([0, 0])).tolist() == [0, 0, 1, 1, 3, 5]
    with pytest.raises(ValueError, match=r"run positions must lie in \[0, 3\)"):
        point_rows(point_run, np.array([3]))


def test_point_runs_maps_run_ids_and_names_a_stranger():
    found = point_runs(["r2", "r1", None, np.nan, pd.NA, "r2"], ["r1", "r2"])
    assert found.tolist() == [1, 0, -1, -1, -1, 1]
    with pytest.raises(ValueError, match=r"point 0 belongs to run 'r9', which is not in the run"):
        point_runs(["r9"], ["r1"])


# --- the statistics, closed forms ---


def test_identical_seeds_give_zero_standard_error_and_a_degenerate_interval():
    # every seed a copy of the others: each resample is the same points k times over, whose
    # InPCA has the same explained stress (eigenvalues and ||W||_F both scale by k)
    x, point_run, seeds, configs = seeded_points(h=0.5, delta=0.0)
    d = squared_distances(x + np.array([0, 0, 0.1]) * (x[:, :1] > 0))  # rank 3: chi_2 < 1
    full, solver = explained_stresses(d, DIMS, n_components=2)
    assert solver == "dense" and full["explained_stress_2"] < 0.999
    jack = [stress_of_resample(d, point_run, r, DIMS, n_components=2)
            for r in seed_jackknife(seeds)]
    boot = [stress_of_resample(d, point_run, r, DIMS, n_components=2)
            for r in bootstrap("seed", seeds, configs, 15, 0)]
    out = summarize(full, jack, boot, level=0.9)
    for found in out.values():
        assert found["jackknife_se"] == pytest.approx(0.0, abs=1e-12)
        assert found["lo"] == pytest.approx(found["value"], abs=1e-12)
        assert found["hi"] == pytest.approx(found["value"], abs=1e-12)


def test_one_shifted_seed_gives_the_closed_form_standard_error():
    # Seed 3 lies delta above the plane of seeds 1 and 2. W is the Gram matrix of the centred
    # points, with the scatter matrix's eigenvalues. Without seed 3: rank 2, chi_2 = 1. Without
    # seed 1 (or 2): eigenvalues 4, 4 h^2, 2 delta^2 (the z offset of half the points is
    # +-delta/2 and uncorrelated with x, y), so chi_2 = 1 - delta^2 / sqrt(4 + 4 h^4 + delta^4);
    # the jackknife SE of (c, c, 1) is 2/3 (1 - c).
    h, delta = 0.5, 0.6
    x, point_run, seeds, _ = seeded_points(h, delta)
    d = squared_distances(x)
    jack = [stress_of_resample(d, point_run, r, DIMS, n_components=2)["explained_stress_2"]
            for r in seed_jackknife(seeds)]
    chi = 1 - delta**2 / np.sqrt(4 + 4 * h**4 + delta**4)
    # chi_k = 1 - sqrt(1 - ...): a rounding error e of the ratio moves chi by sqrt(e) near 1
    np.testing.assert_allclose(jack, [chi, chi, 1.0], rtol=1e-12, atol=1e-7)
    assert jackknife_se(np.array(jack)) == pytest.approx(2 / 3 * delta**2
                                                         / np.sqrt(4 + 4 * h**4 + delta**4))
    # the full data: eigenvalues 6, 6 h^2 and 8 delta^2 / 3
    lam = np.array([6, 6 * h**2, 8 * delta**2 / 3])
    full, _ = explained_stresses(d, DIMS, n_components=2)
    assert full["explained_stress_2"] == pytest.approx(1 - lam[2] / np.sqrt((lam**2).sum()))


def test_jackknife_se_and_percentile_interval_closed_forms():
    assert jackknife_se(np.array([0.0, 0.0, 3.0])) == pytest.approx(2.0)  # sqrt(2/3 * 6)
    assert jackknife_se(np.array([1.0, 1.0])) == 0.0
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval(np.arange(101.0), 0.5) == pytest.approx((25.0, 75.0))
    with pytest.raises(ValueError, match=r"the jackknife needs at least 2 replicates"):
        jackknife_se(np.array([1.0]))
    with pytest.raises(ValueError, match=r"level must lie in \(0, 1\), got 1"):
        percentile_interval(np.arange(3.0), 1)


def test_summarize_reports_every_field_with_its_unit():
    full = {"embedding.train.explained_stress_3": 0.5,
            "trajectories.test.tube_width_median_at_0.5": 0.25}
    jack = [{k: v + s for k, v in full.items()} for s in (-0.1, 0.0, 0.1)]
    boot = [{k: v + s for k, v in full.items()} for s in np.linspace(-1, 1, 201)]
    out = summarize(full, jack, boot, level=0.9)
    assert out["embedding.train.explained_stress_3"] == {
        "value": 0.5, "jackknife_se": pytest.approx(np.sqrt(2 / 3 * 0.02)), "lo": -0.4,
        "hi": 1.4, "level": 0.9, "resamples": 201, "unit": "1"}
    assert out["trajectories.test.tube_width_median_at_0.5"]["unit"] == "nats"
    assert unit_of("trajectories.train.between_within_arch_ratio") == "1"
    # 6 significant digits, and at least the 6 decimals of the metrics files
    values = {"trajectories.train.between_within_arch_ratio": 2.49850623,
              "trajectories.train.tube_width_median_at_0.5": 0.0018470959}
    rounded = summarize(values, [values, values], [values], level=0.9, digits=6)
    assert [v["value"] for v in rounded.values()] == [2.498506, 0.00184710]
    with pytest.raises(ValueError, match=r"metric 'x.y.z' has no unit"):
        unit_of("x.y.z")
    with pytest.raises(ValueError, match=r"metric 'embedding.train.explained_stress_3' is "
                                         r"missing from 1 resample"):
        summarize(full, jack, [*boot, {}], level=0.9)


def test_copies_of_a_run_are_not_a_pair_of_runs():
    # runs a1, a2 (arch x) and b1 (arch y): d(a1, a2) = 1, d(a1, b1) = 3, d(a2, b1) = 5
    d = np.array([[0.0, 1, 3], [1, 0, 5], [3, 5, 0]])
    arch, ids = np.array(["x", "x", "y"]), np.array(["a1", "a2", "b1"], dtype=object)
    assert between_within_ratio(d, arch, ids) == pytest.approx(4.0)
    drawn = np.array([0, 0, 1, 2])  # a1 twice: pairs (a1, a2) x2 within, (a1, b1) x2 + (a2, b1)
    assert between_within_ratio(d[np.ix_(drawn, drawn)], arch[drawn], ids[drawn]) == (
        pytest.approx(11 / 3))
    # without run ids the copy pair (distance 0) counts as a within pair
    assert between_within_ratio(d[np.ix_(drawn, drawn)], arch[drawn]) == pytest.approx(5.5)


# --- the full data against the stages ---


def test_full_values_are_the_embedding_stages_metrics():
    rng = np.random.default_rng(3)
    x, point_run, seeds, _ = seeded_points(0.7, 0.3)
    x = np.concatenate([x, rng.normal(size=(5, 3))])  # points of no run
    point_run = np.concatenate([point_run, np.full(5, -1)])
    d = squared_distances(x) + 0.05 * squared_distances(rng.normal(size=(len(x), 2))) ** 0.5
    dims = (1, 2, 3, 10)
    full, _ = explained_stresses(d, dims, n_components=4)
    stage = stress_metrics(inpca(d, 4, solver="auto", n_eigenvalues=10), dims)
    assert {k: round(v, 6) for k, v in full.items()} == stage
    everything = np.arange(point_run.max() + 1)
    assert stress_of_resample(d, point_run, everything, dims, n_components=4) == full


LABELS = np.array([0, 1, 2, 1, 0, 2, 1, 1])


def trajectory_set(seed: int = 0):
    """Runs of 3 architectures x 3 seeds (one untrained), each a noisy path from ignorance to
    the truth, then ignorance and truth: the predictions stage's index and probabilities."""
    rng = np.random.default_rng(seed)
    p0, p1 = ignorance_point(len(LABELS), 3), truth_point(LABELS, 3)
    t = np.array([0.0, 0.3, 0.6, 0.9, 1.0])
    rows, probs = [], []
    for arch in ("fc", "cnn", "vit"):
        for run_seed in (1, 2, 3):
            final = 0.5 if (arch, run_seed) == ("cnn", 3) else 0.0
            for k, tk in enumerate(t):
                rows.append({"kind": "run", "run_id": f"{arch}_s{run_seed}", "arch": arch,
                             "optimizer": "sgd", "batch_size": 64, "lr": 0.1,
                             "weight_decay": 0.0, "augment": "none", "init": "default",
                             "epochs": 4, "seed": run_seed, "checkpoint": k, "epoch": float(k),
                             "train_error": 1.0 - tk if k < len(t) - 1 else final,
                             "test_error": 1.0 - tk, "train_loss": 1.0, "test_loss": 1.0})
            noise = rng.dirichlet(np.ones(3), size=(len(t), len(LABELS)))
            path = 0.7 * geodesic(p0, p1, t) + 0.3 * noise
            probs.append(path / path.sum(-1, keepdims=True))
    rows += [{"kind": "ignorance"}, {"kind": "truth"}]
    index = pd.DataFrame(rows)
    index.insert(0, "row", np.arange(len(index)))
    return index, np.concatenate([*probs, p0[None], p1[None]]).astype(np.float32)


def test_trajectory_metrics_are_the_trajectories_stages_and_every_run_once_gives_them():
    index, probs = trajectory_set()
    runs = run_table(index, 0.1)
    assert runs["trained"].sum() == 8
    grid = progress_grid(20)
    values = reindex_index(index, None, "accuracy")
    # the stage: summary_metrics of analyse_space's tensor, which equals the whole trajectory
    # set's tensor (trajectories.trajectory_tensor's docstring); built here that way
    table, stacked = build_trajectory_set(index, probs, runs, values, grid)
    stage = summary_metrics(trajectory_distance_tensor(stacked, bc_floor=1e-8), table, grid)
    full, distances = full_trajectory_metrics(index, probs, runs, values, grid, bc_floor=1e-8)
    assert full == pytest.approx(stage, rel=1e-9)
    assert distances.shape == (8, 8)
    again = resampled_trajectory_metrics(index, probs, runs, np.arange(len(runs)), values, grid,
                                         distances, bc_floor=1e-8)
    assert again == pytest.approx(full, rel=1e-12)


def test_a_resample_of_runs_equals_the_whole_computation_on_its_run_table():
    index, probs = trajectory_set(1)
    runs = run_table(index, 0.1)
    grid = progress_grid(20)
    values = reindex_index(index, None, "accuracy")
    _, distances = full_trajectory_metrics(index, probs, runs, values, grid, bc_floor=1e-8)
    for positions in bootstrap("run", runs["seed"].to_numpy(), runs["config"].to_numpy(), 4, 5):
        fast = resampled_trajectory_metrics(index, probs, runs, positions, values, grid,
                                            distances, bc_floor=1e-8)
        whole, _ = full_trajectory_metrics(index, probs, runs.iloc[positions], values, grid,
                                           bc_floor=1e-8)
        assert fast == pytest.approx(whole, rel=1e-6)


# --- the parameter section ---


def test_the_intervals_section_is_validated(root):
    tiny = root / "profiles" / "tiny.yaml"
    assert isinstance(load(tiny, {}, IntervalsConfig), IntervalsConfig)
    for value, message in (
            ({"level": 1.0}, r"intervals\.level = 1\.0: must be in \(0, 1\)"),
            ({"resamples": 0}, r"intervals\.resamples = 0: must be positive"),
            ({"bootstrap": "runs"}, r"intervals\.bootstrap = 'runs': must be one of run, seed"),
            ({"resample": 5}, r"unknown parameter key intervals\.resample \(did you mean "
                              r"'resamples'\?\)")):
        with pytest.raises(ConfigError, match=message):
            load(tiny, {"intervals": value}, IntervalsConfig)
