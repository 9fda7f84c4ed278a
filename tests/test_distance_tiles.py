"""The distances stage's missing blocks as tiles computed elsewhere (issue 25, item 5), without
a cluster: tiles written into the block cache give the local matrix byte for byte, cover each
missing block once, and refuse predictions other than those they were planned with. Through a
real two-node Ray cluster: tests/test_launch_ray.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lowdim.config.distances import DistancesConfig
from lowdim.config.load import ConfigError
from lowdim.geometry.distance_blocks import (
    compute_tile,
    plan_blocks_to_compute,
    plan_tiles,
    segment_name,
    write_bhattacharyya,
)
from lowdim.geometry.distances import DistanceSettings, resolve_engine
from lowdim.store.block_cache import BlockCache

SETTINGS = DistanceSettings(sample_step=2)


def runs(rng: np.random.Generator, names: list[str], checkpoints: int = 4, n: int = 30,
         c: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(runs x checkpoints, n, c) float32 probabilities with exact zeros, and row labels."""
    p = rng.dirichlet(np.full(c, 0.3), size=(len(names) * checkpoints, n)).astype(np.float32)
    p[::3, :5] = 0.0
    p[::3, :5, 0] = 1.0
    return p, np.repeat(names, checkpoints)


def fill_by_tiles(p, labels, cache, max_rows, dtype="float64"):
    """Plan the missing blocks, compute each tile apart and write it as its own segment, as a
    Ray task does; the tiles."""
    engine = resolve_engine(SETTINGS.method, SETTINGS.device, SETTINGS.bc_floor)
    plan = plan_blocks_to_compute(p, labels, cache, engine, SETTINGS, dtype)
    tiles = plan_tiles(plan, max_rows)
    for tile in tiles:
        blocks = compute_tile(p, tile, SETTINGS, dtype)
        cache.save(tile.namespace, iter(blocks), segment_name([k for k, _ in blocks]))
    return plan, tiles


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tiles_in_the_cache_give_the_local_matrix_byte_for_byte(tmp_path, dtype):
    rng = np.random.default_rng(5)
    p, labels = runs(rng, ["a", "b", "c", "d", "e", "f"])
    write_bhattacharyya(p, labels, None, tmp_path / "local.npy", settings=SETTINGS, dtype=dtype)
    cache = BlockCache(tmp_path / "cache")
    plan, tiles = fill_by_tiles(p, labels, cache, max_rows=9, dtype=dtype)
    # 6 units of 4 rows in fresh groups of 2 units: 3 symmetric tiles and 3 across groups
    assert len(plan.missing) == 21 and len(tiles) == 6
    assert [t.rows_j is None for t in tiles] == [True, False, False, True, False, True]
    keys = [key for t in tiles for key, _, _ in t.blocks]
    assert sorted(keys) == sorted(plan.pairs) and len(set(keys)) == len(keys)  # each once
    _, stats = write_bhattacharyya(p, labels, cache, tmp_path / "tiles.npy", settings=SETTINGS,
                                   dtype=dtype)
    assert (stats.cached, stats.computed, stats.pairs_computed) == (21, 0, 0)
    assert (tmp_path / "tiles.npy").read_bytes() == (tmp_path / "local.npy").read_bytes()


def test_tiles_compute_only_the_blocks_of_new_runs(tmp_path):
    rng = np.random.default_rng(6)
    p, labels = runs(rng, ["a", "b", "c", "d", "e"])
    cache = BlockCache(tmp_path / "cache")
    write_bhattacharyya(p[:12], labels[:12], cache, tmp_path / "old.npy", settings=SETTINGS)
    plan, tiles = fill_by_tiles(p, labels, cache, max_rows=4)  # runs d, e are new
    names = [u.label for u in plan.units]
    assert [names[u] for u in plan.fresh] == ["d", "e"]
    assert [names[u] for u in plan.partners] == ["a", "b", "c"]
    assert len(plan.missing) == 3 + 2 * 3  # d-d, d-e, e-e; each new run against a, b, c
    assert sum(len(t.blocks) for t in tiles) == len(plan.missing)
    assert sum(t.pairs for t in tiles) == 8 * 9 // 2 + 8 * 12  # as the local computation
    write_bhattacharyya(p, labels, None, tmp_path / "local.npy", settings=SETTINGS)
    _, stats = write_bhattacharyya(p, labels, cache, tmp_path / "tiles.npy", settings=SETTINGS)
    assert stats.computed == 0
    assert (tmp_path / "tiles.npy").read_bytes() == (tmp_path / "local.npy").read_bytes()


def test_a_tile_refuses_other_predictions_and_another_engine(tmp_path):
    rng = np.random.default_rng(7)
    p, labels = runs(rng, ["a", "b"])
    engine = resolve_engine(SETTINGS.method, SETTINGS.device, SETTINGS.bc_floor)
    plan = plan_blocks_to_compute(p, labels, BlockCache(tmp_path), engine, SETTINGS, "float64")
    (tile,) = plan_tiles(plan, 100)
    changed = p.copy()
    changed[5] = changed[6]  # a checkpoint of run b differs on this node
    with pytest.raises(ValueError, match=r"the probabilities of b read here differ from those "
                                         r"the tile was planned with: every node must read the "
                                         r"same predictions"):
        compute_tile(changed, tile, SETTINGS)
    other = dataclasses.replace(tile, namespace="fused-triton-v1_step2")
    with pytest.raises(ValueError, match=r"this node computes with the fused-numba-v1 engine, "
                                         r"but the tile was planned for the cache namespace "
                                         r"fused-triton-v1_step2"):
        compute_tile(p, other, SETTINGS)
    with pytest.raises(ValueError, match=r"max_rows = 0: must be a positive integer"):
        plan_tiles(plan, 0)


@pytest.mark.parametrize("section, message", [
    ({"backend": "ray", "cache": False}, r"distances\.backend = 'ray' but distances\.cache = "
     r"false: the Ray tasks write their blocks into the block cache"),
    ({"backend": "ray", "method": "reference"}, r"distances\.backend = 'ray' but distances\."
     r"method = 'reference'"),
    ({"backend": "ray", "ray": {"num_cpus": 0}}, r"distances\.ray\.num_cpus = 0: a task must "
     r"reserve some CPU"),
    ({"backend": "ray", "ray": {"rows_per_task": 0}}, r"distances\.ray\.rows_per_task = 0: "
     r"must be positive"),
])
def test_bad_distances_on_ray_are_named(section, message):
    from lowdim.config.load import from_dict

    with pytest.raises(ConfigError, match=message):
        from_dict({"distances": section}, DistancesConfig)
    assert from_dict({"distances": {"backend": "ray"}}, DistancesConfig).ray.rows_per_task == 4096
