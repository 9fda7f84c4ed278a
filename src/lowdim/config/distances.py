"""The `distances` section: how Bhattacharyya distances are computed and stored, and where."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from lowdim.config.cluster import Address, Resource, Retries
from lowdim.config.load import Check, ConfigError, Positive, Range

Landmarks = Check(lambda v: v >= 2, "must be null (the whole M x M matrix) or at least 2")


@dataclass(frozen=True)
class DistancesRayConfig:
    """The distances stage on Ray (`backend: ray`): which cluster, and the tasks' size."""

    # "auto": the running cluster (RAY_ADDRESS); None: start one
    address: Annotated[str, Address] | None = "auto"
    num_cpus: Annotated[float, Resource] = 1.0  # CPUs per task (the fused kernel's threads)
    # rows of a tile's side: a task computes at most about rows_per_task^2 row pairs
    rows_per_task: Annotated[int, Positive] = 4096
    max_retries: Annotated[int, Retries] = 2  # resubmissions of a tile after a failure

    def check(self) -> None:
        """A task reserves some CPU, or Ray would start every tile at once."""
        if self.num_cpus == 0:
            raise ConfigError("distances.ray.num_cpus = 0: a task must reserve some CPU, or Ray "
                              "would start every tile at once")


@dataclass(frozen=True)
class DistancesConfig:
    """Bhattacharyya distance settings (docs/study.md A1-A2)."""

    SECTION = "distances"

    sample_step: Annotated[int, Positive] = 2
    bc_floor: Annotated[float, Range(0, 1)] = 1e-8
    max_block_mib: Annotated[int, Positive] = 256
    method: Literal["auto", "reference", "fused"] = "auto"  # see lowdim.geometry.distances
    # reuse cached blocks of unchanged run pairs (lowdim.geometry.distance_blocks)
    cache: bool = True
    dtype: Literal["float64", "float32"] = "float64"  # stored matrices; float32 halves the disk
    # where the missing blocks are computed: here, or as tasks on a Ray cluster
    # (lowdim.cluster.distance_tiles, docs/cluster.md); the matrices' bytes are the same
    backend: Literal["local", "ray"] = "local"
    ray: DistancesRayConfig = field(default_factory=DistancesRayConfig)
    # null: the whole M x M matrix | L: only the distances of every point to L evenly spaced
    # landmark points (an (M, L) matrix, about M / (2 L) times less work), for the landmark
    # embedding; embedding.landmarks must then be the same L (docs/performance.md)
    landmarks: Annotated[int, Landmarks] | None = None
    # with landmarks: held-out non-landmark points whose V x V distances estimate the stress
    # the embedding's coordinates achieve (lowdim.geometry.inpca.achieved_stress)
    landmark_holdout: Annotated[int, Landmarks] = 1000
    # with landmarks: where they go. even: evenly spaced rows | farthest: half evenly spaced,
    # half where those reach least (lowdim.geometry.landmarks; covers diverged runs' points)
    landmark_choice: Literal["even", "farthest"] = "even"

    def check(self) -> None:
        """On Ray, the tasks write their blocks into the block cache, which the reference
        method never uses (its bits depend on the blocks); landmark rows are computed here."""
        if self.backend == "ray" and self.landmarks is not None:
            raise ConfigError("distances.backend = 'ray' with distances.landmarks set: the Ray "
                              "tasks compute the whole matrix; set distances.backend: local "
                              "for the landmark rows, or distances.landmarks: null")
        if self.backend != "ray":
            return
        if not self.cache:
            raise ConfigError("distances.backend = 'ray' but distances.cache = false: the Ray "
                              "tasks write their blocks into the block cache and the stage "
                              "assembles the matrices from it; set distances.cache: true, or "
                              "distances.backend: local")
        if self.method == "reference":
            raise ConfigError("distances.backend = 'ray' but distances.method = 'reference': "
                              "the reference method's bits depend on the block shapes, so its "
                              "blocks are never cached and cannot be computed elsewhere; set "
                              "distances.method: auto (or fused), or distances.backend: local")
