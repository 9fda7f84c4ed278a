"""Bhattacharyya distances: closed forms (docs/study.md A2), fast kernel vs reference, bad input."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pandas as pd
import pytest

from lowdim.geometry.distance_blocks import BlockStats, cached_bhattacharyya, unit_labels
from lowdim.geometry.distances import (
    BC_FLOOR,
    DistanceSettings,
    _block_bytes,
    bhattacharyya,
    bhattacharyya_reference,
    distance_to_points,
    ignorance_point,
    plan_blocks,
    truth_point,
)
from lowdim.store.block_cache import BlockCache

# Every method (float32 roots and coefficients) vs the float64 reference: stated tolerance.
FAST_ATOL = 1e-6

# One thread each: on a shared, oversubscribed CPU every parallel region can wait a scheduler
# time slice, and the many small blocks used here would dominate the test time.
pytestmark = pytest.mark.usefixtures("single_thread")


def dirichlet(rng: np.random.Generator, m: int, n: int, c: int, alpha: float = 0.5) -> np.ndarray:
    """(m, n, c) float32 random probabilities, renormalized in float32."""
    x = rng.dirichlet(np.full(c, alpha), size=(m, n)).astype(np.float32)
    return x / x.sum(-1, keepdims=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)




def test_zero_diagonal_symmetry_nonnegative(rng):
    p = dirichlet(rng, 12, 50, 10)
    d = bhattacharyya(p)
    assert d.dtype == np.float64 and d.shape == (12, 12)
    assert np.all(np.diag(d) == 0.0)
    assert np.array_equal(d, d.T)
    assert d.min() >= 0.0
    off = d[~np.eye(12, dtype=bool)]
    assert off.min() > 1e-3  # distinct random models are not at distance 0


def test_identical_rows_at_distance_zero(rng):
    p = dirichlet(rng, 3, 40, 7)
    p = np.concatenate([p, p[:1]])  # row 3 == row 0
    d = bhattacharyya(p)
    assert d[0, 3] == pytest.approx(0.0, abs=1e-6)
    rect = bhattacharyya(p, p.copy())  # rectangular path: no diagonal forcing
    assert np.abs(np.diag(rect)).max() < 1e-6
    assert rect.min() >= 0.0


@pytest.mark.parametrize("c", [2, 3, 10, 100, 1000])
def test_ignorance_to_truth_is_half_log_c(rng, c):
    labels = rng.integers(0, c, size=64)
    d = bhattacharyya(ignorance_point(64, c)[None], truth_point(labels, c)[None])
    assert d[0, 0] == pytest.approx(0.5 * math.log(c), abs=1e-6)


def test_ignorance_to_truth_value_for_cifar10():
    d = distance_to_points(ignorance_point(20, 10)[None], truth_point(np.arange(20) % 10, 10))
    assert d[0] == pytest.approx(1.1513, abs=1e-4)


# ---- C = 1000 (ImageNet) ------------------------------------------------------------------------

IMAGENET_C = 1000
# The kernels' float32 roots and coefficients err by at most (C + 2) * 2**-24 relative per
# coefficient (lowdim.geometry.distances), so by as much in distance: 6e-5 at C = 1000.
C1000_ATOL = (IMAGENET_C + 2) * 2.0**-24


@pytest.mark.parametrize("method", ["reference", "fused"])
def test_geodesic_points_at_1000_classes_closed_form(rng, method):
    """P0, P* and the geodesic between them, as the predictions stage builds them for ImageNet:
    each sample's roots turn by t * theta on the sphere, theta = arccos(C^-1/2), so
    d_B(gamma(s), gamma(t)) = -ln cos(|s - t| theta) for every pair."""
    from lowdim.analysis.analysis_set import reference_points

    labels = rng.integers(0, IMAGENET_C, size=40)
    rows, probs = reference_points({"test": labels}, IMAGENET_C, geodesic_points=8)
    p, t = probs["test"], rows["t"].to_numpy()
    assert p.shape == (10, 40, IMAGENET_C) and np.all(p[0] == np.float32(1 / IMAGENET_C))
    theta = math.acos(IMAGENET_C ** -0.5)
    expected = -np.log(np.cos(np.abs(t[:, None] - t[None, :]) * theta))
    assert expected[0, 1] == pytest.approx(0.5 * math.log(IMAGENET_C), rel=1e-12)
    oracle = bhattacharyya_reference(p)
    np.fill_diagonal(oracle, 0.0)
    np.testing.assert_allclose(oracle, expected, rtol=0, atol=1e-7)  # float32 inputs only
    got = bhattacharyya(p, method=method, max_block_bytes=200_000)
    np.testing.assert_allclose(got, expected, rtol=0, atol=C1000_ATOL)
    assert np.array_equal(got, got.T)


@pytest.mark.parametrize("method", ["reference", "fused"])
@pytest.mark.parametrize("sample_step", [1, 2])
def test_fast_matches_reference_with_1000_classes(rng, method, sample_step):
    p = dirichlet(rng, 9, 31, IMAGENET_C, alpha=0.05)
    q = dirichlet(rng, 4, 31, IMAGENET_C, alpha=0.05)
    kw = dict(sample_step=sample_step, max_block_bytes=60_000, method=method)
    ref = bhattacharyya_reference(p, sample_step=sample_step)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(bhattacharyya(p, **kw), ref, rtol=0, atol=C1000_ATOL)
    np.testing.assert_allclose(bhattacharyya(p, q, **kw),
                               bhattacharyya_reference(p, q, sample_step=sample_step),
                               rtol=0, atol=C1000_ATOL)


def test_float16_stored_predictions_with_1000_classes(rng):
    """The old run store kept float16: with 1000 classes many probabilities of a confident model
    fall below float16's smallest subnormal (6e-8) and become exact zeros. Renormalized, as the
    predictions stage does, they still give finite distances, the oracle's within the bound, and
    within 1 % of the unrounded predictions' (measured: 0.3 % at logit spread 4, as here; 2 % at
    spread 6, where two thirds of the probabilities round to 0)."""
    logits = rng.normal(0, 4, size=(5, 50, IMAGENET_C))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    stored = p.astype(np.float16).astype(np.float32)
    assert (stored == 0).mean() > 0.1  # many zeros: the case of interest
    stored /= stored.sum(-1, keepdims=True)
    got = bhattacharyya(stored)
    assert np.isfinite(got).all() and got.min() >= 0.0
    ref = bhattacharyya_reference(stored)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=C1000_ATOL)
    exact = bhattacharyya_reference(p)
    np.fill_diagonal(exact, 0.0)
    np.testing.assert_allclose(got, exact, rtol=1e-2, atol=0)


def test_distance_to_truth_is_half_cross_entropy(rng):
    n, c = 200, 10
    p = dirichlet(rng, 5, n, c, alpha=2.0)
    labels = rng.integers(0, c, size=n)
    py = p[:, np.arange(n), labels].astype(np.float64)
    assert py.min() > 1e-6  # far above the floor, so the clamp plays no part
    expected = -0.5 * np.log(py).mean(axis=1)
    got = distance_to_points(p, truth_point(labels, c))
    np.testing.assert_allclose(got, expected, atol=FAST_ATOL)


def test_distance_to_ignorance_closed_form(rng):
    n, c = 150, 10
    p = dirichlet(rng, 6, n, c)
    expected = 0.5 * math.log(c) - np.log(np.sqrt(p.astype(np.float64)).sum(-1)).mean(axis=1)
    got = distance_to_points(p, ignorance_point(n, c))
    np.testing.assert_allclose(got, expected, atol=FAST_ATOL)


@pytest.mark.parametrize("method", ["reference", "fused"])
@pytest.mark.parametrize("sample_step", [1, 2, 3])
@pytest.mark.parametrize("max_block_bytes", [256 * 2**20, 60_000, 6000])
def test_fast_matches_reference(rng, sample_step, max_block_bytes, method):
    p = dirichlet(rng, 41, 203, 10, alpha=0.3)
    q = dirichlet(rng, 17, 203, 10, alpha=0.3)
    kw = dict(sample_step=sample_step, max_block_bytes=max_block_bytes, method=method)
    ref = bhattacharyya_reference(p, sample_step=sample_step)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(bhattacharyya(p, **kw), ref, rtol=0, atol=FAST_ATOL)
    ref_pq = bhattacharyya_reference(p, q, sample_step=sample_step)
    np.testing.assert_allclose(bhattacharyya(p, q, **kw), ref_pq, rtol=0, atol=FAST_ATOL)


@pytest.mark.parametrize("method", ["reference", "fused"])
def test_explicit_block_sizes_match_reference(rng, method):
    p = dirichlet(rng, 23, 97, 5, alpha=0.2)
    fast = bhattacharyya(p, block_rows=4, sample_chunk=7, sample_step=2, method=method)
    ref = bhattacharyya_reference(p, sample_step=2)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=FAST_ATOL)
    assert np.array_equal(fast, fast.T)


@pytest.mark.parametrize("m", [1, 10, 5000, 200_000])
@pytest.mark.parametrize("budget", [10_000, 2**20, 256 * 2**20])
def test_block_plan_stays_within_budget(m, budget):
    bi, bj, s = plan_blocks(m, m, 25_000, 10, None, None, budget)
    assert 1 <= bi <= m and 1 <= bj <= m and 1 <= s <= 25_000
    assert _block_bytes(bi, bj, s, 10) <= budget


def test_sample_step_uses_every_other_sample(rng):
    p = dirichlet(rng, 4, 60, 10)
    q = dirichlet(rng, 3, 60, 10)
    np.testing.assert_allclose(
        bhattacharyya(p, q, sample_step=2),
        bhattacharyya(p[:, ::2], q[:, ::2]),
        atol=1e-12,
    )
    assert not np.allclose(bhattacharyya(p, q, sample_step=2), bhattacharyya(p, q), atol=1e-4)


def test_floor_applies_to_exact_zeros():
    a = truth_point(np.zeros(8, dtype=int), 10)
    b = truth_point(np.ones(8, dtype=int), 10)
    d = bhattacharyya(a[None], b[None])
    assert d[0, 0] == pytest.approx(-math.log(BC_FLOOR), rel=1e-6)
    d2 = bhattacharyya(a[None], b[None], bc_floor=1e-4)
    assert d2[0, 0] == pytest.approx(-math.log(1e-4), rel=1e-6)
    ref = bhattacharyya_reference(a[None], b[None])
    assert ref[0, 0] == pytest.approx(-math.log(BC_FLOOR), rel=1e-12)


def test_reference_points():
    ign = ignorance_point(5, 4)
    assert ign.dtype == np.float32 and ign.shape == (5, 4) and np.all(ign == 0.25)
    tr = truth_point(np.array([0, 3, 1]), 4)
    assert tr.dtype == np.float32
    np.testing.assert_array_equal(tr.argmax(1), [0, 3, 1])
    np.testing.assert_array_equal(tr.sum(1), 1.0)


def test_float16_and_float64_inputs_accepted(rng):
    p = dirichlet(rng, 4, 30, 10)
    ref = bhattacharyya_reference(p)
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(bhattacharyya(p.astype(np.float64)), ref, atol=FAST_ATOL)
    h = p.astype(np.float16).astype(np.float32)
    h /= h.sum(-1, keepdims=True)
    assert np.isfinite(bhattacharyya(h.astype(np.float16))).all()


def test_input_is_not_modified(rng):
    p = dirichlet(rng, 5, 20, 10)
    before = p.copy()
    bhattacharyya(p)
    bhattacharyya(p, p[:2].copy())
    np.testing.assert_array_equal(p, before)


def test_progress_bar_runs(rng, capsys):
    p = dirichlet(rng, 6, 20, 10)
    d = bhattacharyya(p, progress=True, max_block_bytes=4000)
    assert d.shape == (6, 6)


# ---- bad input -------------------------------------------------------------------------------


def test_rejects_mismatched_samples_or_classes(rng):
    p = dirichlet(rng, 2, 10, 5)
    with pytest.raises(ValueError, match=r"share the number of samples N and classes C"):
        bhattacharyya(p, dirichlet(rng, 2, 11, 5))
    with pytest.raises(ValueError, match=r"share the number of samples N and classes C"):
        bhattacharyya_reference(p, dirichlet(rng, 2, 10, 4))


def test_rejects_wrong_ndim(rng):
    with pytest.raises(ValueError, match=r"p must be a 3-D array of shape \(M, N, C\)"):
        bhattacharyya(dirichlet(rng, 1, 10, 5)[0])
    with pytest.raises(ValueError, match=r"point must be a 2-D array of shape \(N, C\)"):
        distance_to_points(dirichlet(rng, 2, 10, 5), dirichlet(rng, 1, 10, 5))
    with pytest.raises(ValueError, match=r"point must have shape \(N, C\) = \(10, 5\) to match p"):
        distance_to_points(dirichlet(rng, 2, 10, 5), dirichlet(rng, 1, 9, 5)[0])


def test_rejects_negative_nan_and_unnormalized(rng):
    p = dirichlet(rng, 2, 10, 5)
    bad = p.copy()
    bad[0, 0, 0] = -0.1
    with pytest.raises(ValueError, match=r"p has negative entries"):
        bhattacharyya(bad)
    bad = p.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"q contains NaN or infinite values"):
        bhattacharyya(p, bad)
    with pytest.raises(ValueError, match=r"must sum to 1 within 0.001.*renormalize"):
        bhattacharyya(p * 1.01)
    with pytest.raises(ValueError, match=r"floating-point array of probabilities"):
        bhattacharyya(np.ones((2, 3, 1), dtype=int))


def test_rejects_bad_parameters(rng):
    p = dirichlet(rng, 2, 10, 5)
    with pytest.raises(ValueError, match=r"sample_step must be an integer >= 1"):
        bhattacharyya(p, sample_step=0)
    with pytest.raises(ValueError, match=r"bc_floor must lie in the open interval \(0, 1\)"):
        bhattacharyya(p, bc_floor=0.0)
    with pytest.raises(ValueError, match=r"bc_floor must lie in the open interval \(0, 1\)"):
        bhattacharyya_reference(p, bc_floor=1.0)
    with pytest.raises(ValueError, match=r"max_block_bytes=10 is too small"):
        bhattacharyya(p, max_block_bytes=10)
    with pytest.raises(ValueError, match=r"block_rows must be a positive integer"):
        bhattacharyya(p, block_rows=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        truth_point(np.array([0, 3]), 3)


# ---- incremental distances with a block cache --------------------------------------------------


def grid_of_runs(rng: np.random.Generator, names: list[str], checkpoints: int = 4,
                 n: int = 30, c: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(runs x checkpoints, n, c) probabilities with exact zeros, and each row's run label."""
    p = dirichlet(rng, len(names) * checkpoints, n, c, alpha=0.3)
    p[::3, :5] = truth_point(rng.integers(0, c, size=5), c)
    return p, np.repeat(names, checkpoints)


def test_cold_cache_equals_full_computation(rng, tmp_path):
    p, labels = grid_of_runs(rng, ["a", "b", "c"])
    d, stats = cached_bhattacharyya(p, labels, BlockCache(tmp_path),
                                    settings=DistanceSettings(sample_step=2))
    assert np.array_equal(d, bhattacharyya(p, sample_step=2, method="fused"))
    assert stats == BlockStats(units=3, blocks=6, cached=0, computed=6,
                               pairs_computed=12 * 13 // 2)
    (segment,) = tmp_path.rglob("*.npz")  # one file per computation, not per block
    with np.load(segment, allow_pickle=False) as z:
        assert len(z.files) == 6


def test_adding_runs_computes_only_their_blocks(rng, tmp_path):
    cache = BlockCache(tmp_path)
    p, labels = grid_of_runs(rng, ["a", "b", "c", "d", "e"])
    step2 = DistanceSettings(sample_step=2)
    cached_bhattacharyya(p, labels, cache, settings=step2)
    new, new_labels = grid_of_runs(rng, ["n1", "n2"])
    changed = p.copy()
    changed[labels == "c"] = dirichlet(rng, 4, 30, 10)  # run c retrained: its content changed
    # New runs land between old ones, as a new seed does in the grid order.
    grown = np.concatenate([changed[:8], new[:4], changed[8:], new[4:]])
    grown_labels = np.concatenate([labels[:8], new_labels[:4], labels[8:], new_labels[4:]])
    d, stats = cached_bhattacharyya(grown, grown_labels, cache, settings=step2)
    assert np.array_equal(d, bhattacharyya(grown, sample_step=2, method="fused"))
    # 7 units: 28 blocks; the 4 unchanged runs give 10 cached blocks, the 3 new ones 18 more.
    assert (stats.blocks, stats.cached, stats.computed) == (28, 10, 18)
    assert stats.pairs_computed == 12 * 13 // 2 + 12 * 16  # new x new once, new x old
    again, stats = cached_bhattacharyya(grown, grown_labels, cache, settings=step2)
    assert np.array_equal(again, d) and stats.computed == 0 and stats.pairs_computed == 0
    fewer, stats = cached_bhattacharyya(grown[4:], grown_labels[4:], cache, settings=step2)
    assert np.array_equal(fewer, d[4:, 4:]) and stats.computed == 0  # run a removed
    assert len(list(tmp_path.rglob("*.npz"))) == 2


def test_cache_keys_include_the_sample_set(rng, tmp_path):
    cache = BlockCache(tmp_path)
    p, labels = grid_of_runs(rng, ["a", "b"])
    cached_bhattacharyya(p, labels, cache, settings=DistanceSettings(sample_step=2))
    d, stats = cached_bhattacharyya(p, labels, cache, settings=DistanceSettings(sample_step=1))
    assert stats.computed == 3 and np.array_equal(d, bhattacharyya(p, method="fused"))
    d, stats = cached_bhattacharyya(p, labels, cache,
                                    settings=DistanceSettings(sample_step=2, bc_floor=1e-4))
    assert stats.computed == 3
    assert np.array_equal(d, bhattacharyya(p, sample_step=2, bc_floor=1e-4, method="fused"))


def test_memory_mapped_predictions_with_the_cache(rng, tmp_path):
    p, labels = grid_of_runs(rng, ["a", "b", "c"])
    np.save(tmp_path / "train.npy", p)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r", allow_pickle=False)
    several = DistanceSettings(max_block_bytes=200_000)  # several blocks of rows
    d, stats = cached_bhattacharyya(mapped, labels, BlockCache(tmp_path / "cache"),
                                    settings=several)
    assert np.array_equal(d, bhattacharyya(p, method="fused")) and stats.computed == 6


def test_cache_segments_are_written_while_the_blocks_are_computed(rng, tmp_path):
    """flush_seconds=0: a segment as soon as blocks are complete, with the bytes of one segment
    written at the end; the segments of an interrupted computation are reused."""
    p, labels = grid_of_runs(rng, ["a", "b", "c", "d"])
    several = DistanceSettings(max_block_bytes=40_000)  # tiles smaller than a unit pair
    full = bhattacharyya(p, method="fused")
    d, stats = cached_bhattacharyya(p, labels, BlockCache(tmp_path / "end"), settings=several)
    assert np.array_equal(d, full) and stats.computed == 10
    (whole,) = (tmp_path / "end").rglob("*.npz")
    d, stats = cached_bhattacharyya(p, labels, BlockCache(tmp_path / "live", flush_seconds=0),
                                    settings=several)
    assert np.array_equal(d, full) and stats.computed == 10
    segments = sorted((tmp_path / "live").rglob("*.npz"), key=lambda f: f.stat().st_mtime_ns)
    assert len(segments) > 2
    blocks = {}
    for segment in segments:
        with np.load(segment, allow_pickle=False) as z:
            blocks.update({key: z[key].tobytes() for key in z.files})
    with np.load(whole, allow_pickle=False) as z:
        assert blocks == {key: z[key].tobytes() for key in z.files}  # same keys, same bytes
    for segment in segments[len(segments) // 2:]:  # interrupted: the later segments are lost
        segment.unlink()
    d, stats = cached_bhattacharyya(p, labels, BlockCache(tmp_path / "live"), settings=several)
    assert np.array_equal(d, full) and 0 < stats.cached < 10
    with pytest.raises(ValueError, match="flush_seconds must be >= 0"):
        BlockCache(tmp_path, flush_seconds=-1)


def test_reference_method_skips_the_cache(rng, tmp_path, caplog):
    p, labels = grid_of_runs(rng, ["a", "b"])
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distance_blocks"):
        d, stats = cached_bhattacharyya(p, labels, BlockCache(tmp_path),
                                        settings=DistanceSettings(method="reference"))
    assert "without the block cache" in caplog.text
    assert not list(tmp_path.iterdir()) and stats.computed == 3
    np.testing.assert_allclose(d, bhattacharyya_reference(p) * ~np.eye(8, dtype=bool),
                               atol=FAST_ATOL)


def test_unit_labels_from_the_index():
    index = pd.DataFrame({"row": range(5), "kind": ["run", "run", "ignorance", "truth", "geodesic"],
                          "run_id": ["r1", "r2", None, None, None]})
    assert list(unit_labels(index)) == ["r1", "r2", "ignorance", "truth", "geodesic"]
    with pytest.raises(ValueError, match=r"the index has no 'run_id' column"):
        unit_labels(index.drop(columns="run_id"))
    with pytest.raises(ValueError, match=r"some run rows of the index have no run_id"):
        unit_labels(index.assign(run_id=None))


def test_incremental_bad_input(rng, tmp_path):
    p, labels = grid_of_runs(rng, ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must give one label per row of p: 8 rows"):
        cached_bhattacharyya(p, labels[:-1], None)
    with pytest.raises(ValueError, match=r"sample_step must be an integer >= 1"):
        cached_bhattacharyya(p, labels, None, settings=DistanceSettings(sample_step=0))
    cache = BlockCache(tmp_path)
    d, _ = cached_bhattacharyya(p, labels, cache)
    (segment,) = tmp_path.rglob("*.npz")
    with np.load(segment, allow_pickle=False) as z:  # blocks of the wrong shape: recomputed
        damaged = [(key, np.zeros((1, 1))) for key in z.files]
    cache.save(segment.parent.name, damaged, segment.stem)
    again, stats = cached_bhattacharyya(p, labels, cache)
    assert stats.computed == 3 and np.array_equal(again, d)
    segment.write_bytes(b"not a zip file")  # an unreadable segment is ignored
    again, stats = cached_bhattacharyya(p, labels, cache)
    assert stats.computed == 3 and np.array_equal(again, d)


# --------------------------------------------------------------------------- DistanceSettings


@pytest.mark.parametrize(("changes", "message"), [
    ({"sample_step": 0}, r"sample_step must be an integer >= 1, got 0"),
    ({"sample_step": 1.5}, r"sample_step must be an integer >= 1, got 1\.5"),
    ({"sample_step": True}, r"sample_step must be an integer >= 1, got True"),
    ({"bc_floor": 0.0}, r"bc_floor must lie in the open interval \(0, 1\), got 0\.0"),
    ({"bc_floor": 1.0}, r"bc_floor must lie in the open interval \(0, 1\), got 1\.0"),
    ({"method": "fast"}, r"method must be one of auto, reference, fused, got 'fast'"),
    ({"max_block_bytes": 0}, r"max_block_bytes must be a positive integer, got 0"),
    ({"max_block_bytes": 2.5}, r"max_block_bytes must be a positive integer, got 2\.5"),
])
def test_distance_settings_say_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        DistanceSettings(**changes)


def test_distance_settings_from_the_distances_section():
    import torch

    from lowdim.config.distances import DistancesConfig

    section = DistancesConfig(sample_step=3, bc_floor=1e-6, max_block_mib=7, method="reference")
    settings = DistanceSettings.from_config(section, "cuda")
    assert settings == DistanceSettings(sample_step=3, bc_floor=1e-6, method="reference",
                                        device="cuda", max_block_bytes=7 * 2**20)
    assert settings.kwargs() == {"sample_step": 3, "bc_floor": 1e-6, "method": "reference",
                                 "device": "cuda", "max_block_bytes": 7 * 2**20}
    every = settings.all_samples()
    assert every == dataclasses.replace(settings, sample_step=1) and settings.sample_step == 3
    assert DistanceSettings() == DistanceSettings(1, BC_FLOOR, "auto", "cpu", 256 * 2**20)
    assert DistanceSettings(device=torch.device("cpu")).device == "cpu"  # a device's name
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sample_step = 1


def test_distance_settings_reach_the_kernel_unchanged(rng):
    p = dirichlet(rng, 7, 20, 5)
    settings = DistanceSettings(sample_step=2, bc_floor=1e-4, method="reference",
                                max_block_bytes=60_000)
    assert np.array_equal(bhattacharyya(p, **settings.kwargs()),
                          bhattacharyya(p, sample_step=2, bc_floor=1e-4, method="reference",
                                        max_block_bytes=60_000))
