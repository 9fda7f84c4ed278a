"""The distances stage on a Ray cluster (`distances.backend: ray`): its missing blocks as tasks.

The driver (the distances stage) hashes each unit of the predictions and reads the block
cache's index exactly as the local computation does (`plan_blocks_to_compute`), cuts the
missing blocks into tiles of at most about `distances.ray.rows_per_task` rows a side
(`plan_tiles`) and submits one task per tile. A task opens the predictions at the driver's
path, checks that each unit it reads has the content the driver hashed, computes its tile with
the kernel the local stage runs (`compute_tile`) and writes its blocks as one segment of the
block cache, where a local run writes its blocks. The stage then assembles the matrices
locally from the cache (`write_distances`): every block is there, nothing is computed, and the
bytes are those of a local run, because the fused engines give each pair the same bits whatever
the tile (on nodes of one CPU type: across CPU types numpy's vectorized log may differ in the
last bit; tested on a two-node cluster in tests/test_launch_ray.py).

So every node reads `data/predictions` and writes the block cache at the driver's paths: a
shared filesystem (NFS, Lustre, ...) mounted at the same place everywhere. Tasks run on the
nodes' CPUs (the numba kernel, `distances.ray.num_cpus` threads each). A failed task is logged
and resubmitted, at most `distances.ray.max_retries` times; a tile that fails every attempt
fails the stage, and the segments already written stay in the cache, so a rerun computes only
the tiles that are left.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lowdim.cluster.ray_common import (
    check_environment,
    connect,
    environment_versions,
    node_fits,
    one_line,
)
from lowdim.config.distances import DistancesRayConfig
from lowdim.geometry.distance_blocks import (
    Tile,
    compute_tile,
    plan_blocks_to_compute,
    plan_tiles,
    segment_name,
)
from lowdim.geometry.distances import DistanceSettings, check_inputs, resolve_engine
from lowdim.store.analysis_set import open_probs
from lowdim.store.block_cache import BlockCache

log = logging.getLogger(__name__)

ERROR_CHARS = 4000  # the tail of a traceback kept in the log


@dataclass(frozen=True)
class TileJob:
    """One task: a tile of one space's matrix."""

    space: str
    number: int  # the tile's place among its space's tiles, for the log
    tile: Tile


@dataclass(frozen=True)
class TileDone:
    """What a task reports: the blocks it wrote, where, and how long it took."""

    keys: tuple[str, ...]
    node: str
    seconds: float


@dataclass
class TileStats:
    """What the cluster did for one space."""

    tiles: int = 0
    blocks: int = 0
    pairs: int = 0                     # row pairs the tiles evaluated
    nodes: Counter = field(default_factory=Counter)  # node id -> tiles computed there
    retries: int = 0


@contextmanager
def numba_threads(count: int) -> Iterator[None]:
    """The fused CPU kernel's threads: `count` (at most numba's own limit); restored after."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


# --------------------------------------------------------------------------- worker side


def compute_tile_task(directory: str, job: TileJob, shape: tuple[int, ...],
                      settings: DistanceSettings, dtype: str, cache_root: str, threads: int,
                      versions: dict[str, str]) -> TileDone:
    """In a Ray worker: compute one tile from the predictions at `directory` and write its
    blocks as one segment of the block cache at `cache_root`."""
    import ray

    started = time.perf_counter()
    check_environment(versions)
    p = open_probs(directory, job.space)
    if tuple(p.shape) != tuple(shape):
        raise ValueError(f"{directory}/{job.space}.npy has shape {tuple(p.shape)} on this node "
                         f"but {tuple(shape)} on the driver: every node must read the driver's "
                         "predictions (a shared filesystem, mounted at the same path)")
    with numba_threads(threads):
        blocks = compute_tile(p, job.tile, settings, dtype)
    keys = tuple(sorted(key for key, _ in blocks))
    BlockCache(cache_root).save(job.tile.namespace, iter(blocks), segment_name(keys))
    return TileDone(keys, ray.get_runtime_context().get_node_id(),
                    time.perf_counter() - started)


# --------------------------------------------------------------------------- driver side


def plan_jobs(probs: dict[str, Any], labels: Sequence[str], cache: BlockCache,
              settings: DistanceSettings, dtype: str, rows_per_task: int
              ) -> dict[str, list[TileJob]]:
    """Space -> the tiles of its missing blocks, as the local computation would find them."""
    engine = resolve_engine(settings.method, settings.device, settings.bc_floor)
    if not engine.deterministic:
        raise ValueError(f"distances on Ray need a deterministic engine (the fused kernels), "
                         f"not {engine.name}: its bits depend on the blocks, so its blocks are "
                         "never cached; set distances.method: auto or fused")
    jobs = {}
    for space, p in probs.items():
        p, _ = check_inputs(p, None, settings.sample_step, settings.bc_floor)
        plan = plan_blocks_to_compute(p, labels, cache, engine, settings, dtype)
        tiles = plan_tiles(plan, rows_per_task)
        jobs[space] = [TileJob(space, i, tile) for i, tile in enumerate(tiles)]
        log.info("%s: %d of %d blocks missing from the cache, as %d tiles", space,
                 len(plan.missing), len(plan.pairs), len(tiles))
    return jobs


def compute_on_ray(predictions_dir: str | Path, labels: Sequence[str], cache: BlockCache | None,
                   ray_cfg: DistancesRayConfig, *, settings: DistanceSettings,
                   spaces: Sequence[str] = ("train", "test"), dtype: str = "float64",
                   progress: bool = False) -> dict[str, TileStats]:
    """Compute every block the cache lacks for the matrices of `spaces` as Ray tasks, each
    writing its blocks into `cache`; the stage then assembles the matrices from it.

    `settings.device` must be the CPU (the tasks run the numba kernel on the nodes' CPUs).
    Raises RuntimeError when a tile fails every attempt (after `ray_cfg.max_retries`).
    """
    if cache is None:
        raise ValueError("distances.backend = 'ray' needs the block cache (the tasks write their "
                         "blocks there and the stage assembles the matrices from it), but this "
                         "stage has none: give it a cache_dir, set distances.cache: true, and "
                         "make room for the cache on its disk")
    if str(settings.device) != "cpu":
        raise ValueError(f"distances on Ray compute on the nodes' CPUs, but the settings name "
                         f"device {settings.device!r}: plan with device 'cpu' so that the "
                         "driver's cache namespace is the tasks' one")
    directory = Path(predictions_dir).resolve()
    probs = {space: open_probs(directory, space) for space in spaces}
    jobs = plan_jobs(probs, labels, cache, settings, dtype, ray_cfg.rows_per_task)
    stats = {space: TileStats() for space in spaces}
    todo = [job for space in spaces for job in jobs[space]]
    if not todo:
        return stats
    import ray

    started_here = connect(ray_cfg.address, "distances.ray.address")
    try:
        if not node_fits({"CPU": ray_cfg.num_cpus}, ray.nodes()):
            log.warning("no node of the Ray cluster offers %g CPUs per task: tasks wait until "
                        "such a node joins (lower distances.ray.num_cpus?)", ray_cfg.num_cpus)
        shapes = {space: tuple(p.shape) for space, p in probs.items()}
        _run_tiles(todo, str(directory), shapes, settings, dtype, str(Path(cache.root).resolve()),
                   ray_cfg, stats, progress)
    finally:
        if started_here:
            ray.shutdown()
    return stats


def _run_tiles(todo: list[TileJob], directory: str, shapes: dict[str, tuple[int, ...]],
               settings: DistanceSettings, dtype: str, cache_root: str,
               ray_cfg: DistancesRayConfig, stats: dict[str, TileStats], progress: bool) -> None:
    """Submit every tile, record each as its task returns, resubmit failed ones."""
    import ray

    task = ray.remote(compute_tile_task)
    versions = environment_versions()
    threads = max(1, int(ray_cfg.num_cpus))

    def submit(job: TileJob) -> Any:
        return task.options(num_cpus=ray_cfg.num_cpus, max_retries=0, retry_exceptions=False,
                            name="lowdim.distance_tile").remote(
            directory, job, shapes[job.space], settings, dtype, cache_root, threads, versions)

    attempts: Counter = Counter()
    in_flight = {submit(job): job for job in todo}
    log.info("submitted %d distance tiles as Ray tasks (%g CPUs each)", len(todo),
             ray_cfg.num_cpus)
    with tqdm(total=len(todo), desc="tiles", unit="tile", disable=not progress) as bar:
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            job = in_flight.pop(ref)
            try:
                done = ray.get(ref)
            except ray.exceptions.RayError as err:  # raised in the task, or a lost node
                cause = getattr(err, "cause", None) or err
                attempts[(job.space, job.number)] += 1
                attempt = attempts[(job.space, job.number)]
                if attempt > ray_cfg.max_retries:
                    log.error("%s tile %d: failed all %d attempts; last error:\n%s", job.space,
                              job.number, attempt, str(err)[-ERROR_CHARS:])
                    raise RuntimeError(
                        f"{job.space} tile {job.number} failed all {attempt} attempts "
                        f"({one_line(cause)}); the tiles written so far stay in the block "
                        "cache, so rerunning the stage computes only the rest") from None
                log.warning("%s tile %d: attempt %d of %d failed: %s; retrying", job.space,
                            job.number, attempt, ray_cfg.max_retries + 1, one_line(cause))
                stats[job.space].retries += 1
                in_flight[submit(job)] = job
                continue
            space = stats[job.space]
            space.tiles += 1
            space.blocks += len(done.keys)
            space.pairs += job.tile.pairs
            space.nodes[done.node] += 1
            log.info("%s tile %d: %d blocks written (node %s, %.1f s)", job.space, job.number,
                     len(done.keys), done.node, done.seconds)
            bar.update(1)


def describe(stats: dict[str, TileStats]) -> str:
    """One line per space: tiles, blocks, pairs and nodes."""
    return "\n".join(f"{space}: {s.tiles} tiles, {s.blocks} blocks, {s.pairs} row pairs on "
                     f"{len(s.nodes)} node(s), {s.retries} retries" for space, s in stats.items())

