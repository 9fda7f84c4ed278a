"""The Ray backend on a real two-node cluster on this machine: same bytes as the local backend
(runs one at a time, and packs of two with per-architecture resources), a lost node costs
retries, not runs, and the distance matrices computed as Ray tiles are the local ones, byte for
byte.

The cluster is a head node and one worker node, each started with `ray start` in its own
processes and its own short temporary directory. Every process of a node is found by that
directory (or descends from one that names it) and killed by pid: `ray stop` would kill every
Ray process of the machine, other people's clusters included. On Linux Ray replaces 127.0.0.1
by the machine's own address (`services.resolve_ip_for_localhost`), so the test checks that
every node's address belongs to this machine; usage statistics are off, and the cluster uses
token authentication with a token of its own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

# Set for the nodes and for the driver in this process, before Ray is imported (Ray reads its
# configuration once, at import): no usage statistics, and token authentication with this
# cluster's own token, never ~/.ray/auth_token (which a local ray.init() creates, and which a
# head node started afterwards would otherwise pick up).
CLUSTER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
               "RAY_AUTH_TOKEN": secrets.token_hex(32)}
os.environ.update(CLUSTER_ENV)

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from lowdim.cluster.distance_tiles import compute_on_ray  # noqa: E402
from lowdim.config.distances import DistancesRayConfig  # noqa: E402
from lowdim.config.profile import load_profile  # noqa: E402
from lowdim.config.train import RayConfig, TrainConfig  # noqa: E402
from lowdim.geometry.distance_blocks import write_bhattacharyya  # noqa: E402
from lowdim.geometry.distances import DistanceSettings  # noqa: E402
from lowdim.store.block_cache import BlockCache  # noqa: E402
from lowdim.store.records import RunSpec  # noqa: E402
from lowdim.store.runs import is_complete, read_meta, write_run  # noqa: E402
from lowdim.training.grid import expand_grid  # noqa: E402
from lowdim.training.launch import launch  # noqa: E402
from lowdim.training.ledger import (  # noqa: E402
    LaunchSummary,
    check_failures,
    pending,
    write_failure,
)
from lowdim.training.local import launch_local  # noqa: E402
from lowdim.training.ray_backend import bundles, launch_ray, warn_if_unschedulable  # noqa: E402
from lowdim.training.run import DeviceData, train_run  # noqa: E402

RAY = Path(sys.executable).parent / "ray"
# A node's process title while it runs one of our tasks (ray sets "ray::<task name>").
TASK_TITLE = "lowdim.train_bundle"
# The tail of the object-store / socket path that Ray puts under a node's temp dir; AF_UNIX
# paths are limited to 107 bytes.
SOCKET_TAIL = len("/session_2026-01-01_00-00-00_000000_1234567/sockets/plasma_store")


# --------------------------------------------------------------------------- cluster helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _short_dir(base: Path, name: str) -> Path:
    """A temp dir for one node, short enough for Ray's socket paths (under `base` if it fits)."""
    path = base / name
    if len(str(path)) + SOCKET_TAIL > 100:
        path = Path(tempfile.mkdtemp(prefix=f"ray{name}", dir="/tmp"))
    path.mkdir(exist_ok=True)
    return path


def _ray_env() -> dict[str, str]:
    """The environment of every node: this checkout's package, the cluster's settings, and fast
    failure detection so a killed node is noticed in about a second."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, **CLUSTER_ENV,
            "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
            "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "2",
            "RAY_memory_monitor_refresh_ms": "0"}


def _ray_start(args: list[str], temp_dir: Path) -> subprocess.Popen:
    """Start `ray start ... --temp-dir=temp_dir` (1 CPU, a small object store) in the background."""
    cmd = [str(RAY), "start", *args, f"--temp-dir={temp_dir}", "--num-cpus=1",
           "--object-store-memory=100000000", "--disable-usage-stats"]
    return subprocess.Popen(cmd, env=_ray_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _started(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{out[-3000:]}"


def _wait_for_port(port: int, starting: subprocess.Popen, timeout: float = 120.0) -> None:
    """Return once the head's GCS accepts connections on `port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if starting.poll() not in (None, 0) or time.monotonic() > deadline:
                _started(starting)  # reports its output
                raise AssertionError(f"the head never listened on port {port}") from None
            time.sleep(0.2)


def node_processes(temp_dir: Path) -> list[psutil.Process]:
    """Every process of the node started with `temp_dir`: those naming it, and their children."""
    marker = str(temp_dir)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and any(marker in a for a in proc.info["cmdline"] or ()):
            found[proc.pid] = proc
            try:
                found.update({c.pid: c for c in proc.children(recursive=True)})
            except psutil.NoSuchProcess:
                pass
    found.pop(os.getpid(), None)
    return list(found.values())


def kill_node(temp_dir: Path) -> int:
    """SIGKILL every process of the node started with `temp_dir`; the number killed."""
    procs = node_processes(temp_dir)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    return len(procs)


def _wait_for_nodes(address: str, count: int, timeout: float = 60.0) -> list[dict]:
    """The alive nodes, once `count` of them have joined (asked from a short-lived driver)."""
    ray.init(address=address, logging_level="ERROR")
    try:
        deadline = time.monotonic() + timeout
        while len(nodes := [n for n in ray.nodes() if n["Alive"]]) < count:
            assert time.monotonic() < deadline, f"only {len(nodes)} of {count} nodes joined"
            time.sleep(0.5)
        return nodes
    finally:
        ray.shutdown()


@dataclasses.dataclass
class Cluster:
    """A head node and one worker node on this machine, 1 CPU each, each in its own temp dir."""

    address: str
    head_dir: Path
    worker_dir: Path

    def start_worker(self) -> subprocess.Popen:
        return _ray_start([f"--address={self.address}"], self.worker_dir)

    def ensure_worker(self) -> None:
        """Restart the worker node when an earlier test killed it, and wait for both nodes."""
        if not any(p.name() == "raylet" for p in _alive(self.worker_dir)):
            _started(self.start_worker())
        nodes = _wait_for_nodes(self.address, 2)
        local = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs}
        assert {n["NodeManagerAddress"] for n in nodes} <= local, "a node is not on this machine"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The two-node cluster, started once for this module and always killed afterwards."""
    base = tmp_path_factory.mktemp("r")
    port = _free_port()
    nodes = Cluster(f"127.0.0.1:{port}", _short_dir(base, "h"), _short_dir(base, "w"))
    try:
        head = _ray_start(["--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                           "--include-dashboard=false"], nodes.head_dir)
        _wait_for_port(port, head)
        worker = nodes.start_worker()  # while the head starts its other processes
        _started(head)
        _started(worker)
        yield nodes
    finally:
        for temp_dir in (nodes.worker_dir, nodes.head_dir):
            kill_node(temp_dir)
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def two_nodes(cluster) -> Cluster:
    cluster.ensure_worker()
    return cluster


# --------------------------------------------------------------------------- the grid


@pytest.fixture(scope="module")
def tiny_cfg(root):
    """The tiny profile with the Ray backend: 1 CPU and 1 run per task, 2 retries."""
    return load_profile(root / "profiles" / "tiny.yaml", {"train": {
        "backend": "ray", "device": "cpu",
        "ray": {"num_cpus": 1, "num_gpus": 0, "runs_per_task": 1, "max_retries": 2,
                "max_failed_fraction": 0.0}}})


@pytest.fixture(scope="module")
def tiny_specs(tiny_cfg):
    return expand_grid(tiny_cfg.grid, tiny_cfg.models, tiny_cfg.train.lr_reference_batch_size)


@pytest.fixture(scope="module")
def local_store(tiny_specs, tiny_prepared, tiny_cfg, tmp_path_factory):
    """The tiny grid trained by the local backend with the profile's thread count and CPU
    kernels (pinned: in a worker process that starts with them, as a Ray task's does)."""
    store = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(tiny_cfg.train.threads)
    try:
        launch_local(tiny_specs, tiny_prepared, store, torch.device("cpu"), progress=False,
                     cpu_kernels=tiny_cfg.train.cpu_kernels)
    finally:
        torch.set_num_threads(threads)
    return store


# Packs of two, with the native kernels: a local launch packs in its own process, which did not
# start pinned (on Ray a pinned worker may pack: its process starts with the pinned variables).
PACKED = {"pack_size": 2, "cpu_kernels": "native", "ray": {"num_gpus": {"fc": 0, "default": 0}}}


@pytest.fixture(scope="module")
def local_packed_store(tiny_specs, tiny_prepared, tiny_cfg, tmp_path_factory):
    """The tiny grid trained by the local backend in packs of two (`PACKED`), as `launch` does."""
    store = tmp_path_factory.mktemp("local-packed")
    train = dataclasses.replace(tiny_cfg.train, backend="local", pack_size=2,
                                cpu_kernels="native")
    threads = torch.get_num_threads()
    try:
        launch(tiny_specs, tiny_prepared, store, train, progress=False)
    finally:
        torch.set_num_threads(threads)
    return store


# Fields of meta.json that legitimately differ between two trainings of the same run.
TIMING_FIELDS = ("seconds",)


def assert_same_store(store: Path, reference: Path, run_ids: list[str]) -> None:
    """Every run directory holds the same files with the same bytes (meta.json: the same
    content except its timing)."""
    assert sorted(p.name for p in store.iterdir()) == sorted(run_ids)
    for run_id in run_ids:
        ours, theirs = store / run_id, reference / run_id
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
        for path in theirs.iterdir():
            mine = ours / path.name
            if path.name == "meta.json":
                a, b = json.loads(mine.read_text()), json.loads(path.read_text())
                for key in TIMING_FIELDS:
                    a.pop(key), b.pop(key)
                assert a == b, f"{run_id}/meta.json differs"
            else:
                assert mine.read_bytes() == path.read_bytes(), f"{run_id}/{path.name} differs"


def _on_cluster(cfg, address: str):
    ray_cfg = dataclasses.replace(cfg.train.ray, address=address)
    return dataclasses.replace(cfg.train, ray=ray_cfg)


# --------------------------------------------------------------------------- without a cluster


def _spec(seed: int, **kw) -> RunSpec:
    base = dict(arch="fc", optimizer="sgdn", batch_size=256, base_lr=0.1, lr=0.1,
                weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                model_size={"widths": [8]})
    return RunSpec(**{**base, **kw})


def test_bundles_keep_grid_order():
    specs = [_spec(s) for s in range(5)]
    assert bundles(specs, 2) == [specs[0:2], specs[2:4], specs[4:]]
    assert bundles(specs, 9) == [specs]
    with pytest.raises(ValueError, match=r"bundle size 0 must be positive: set "
                                         r"train\.ray\.runs_per_task >= 1"):
        bundles(specs, 0)


def test_failed_run_is_recorded_but_never_complete(tmp_path, tiny_prepared):
    spec = _spec(7)
    write_failure(tmp_path, spec, "fp", "Traceback ...\nValueError: boom", attempts=3)
    meta = read_meta(tmp_path, spec.run_id)
    assert (meta["status"], meta["attempts"], meta["failure"]) == (
        "failed", 3, "Traceback ...\nValueError: boom")
    assert sorted(p.name for p in (tmp_path / spec.run_id).iterdir()) == ["meta.json"]
    assert not is_complete(tmp_path, spec, "fp") and pending([spec], tmp_path, "fp") == [spec]
    # A later successful attempt replaces the record whole.
    write_run(tmp_path, train_run(spec, DeviceData.from_prepared(tiny_prepared,
                                                                 torch.device("cpu"))), "fp")
    assert is_complete(tmp_path, spec, "fp")


@pytest.mark.parametrize("fraction, raises", [(0.0, True), (0.2, True), (0.25, False)])
def test_failure_policy_allows_a_stated_fraction(fraction, raises):
    summary = LaunchSummary(trained=["a", "b"], skipped=["c"], diverged=[],
                            failed={"d": "ValueError: boom"})
    if not raises:
        check_failures(summary, 4, fraction)
        return
    allowed = int(fraction * 4)
    with pytest.raises(RuntimeError, match=(
            rf"1 of 4 runs failed every attempt, more than the {allowed} that "
            rf"train\.ray\.max_failed_fraction = {fraction:g} allows; 2 trained now, 1 were "
            r"already complete\. Failed runs .*\n  d: ValueError: boom")):
        check_failures(summary, 4, fraction)


def test_unschedulable_resources_are_reported(caplog):
    cpu_node = {"Alive": True, "Resources": {"CPU": 4.0}}
    gpu_node = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}
    wants_gpu = RayConfig(num_cpus=2, num_gpus=0.25)
    assert not warn_if_unschedulable(wants_gpu, [cpu_node, gpu_node])
    assert not warn_if_unschedulable(RayConfig(num_cpus=4), [cpu_node])
    assert warn_if_unschedulable(wants_gpu, [cpu_node, {**gpu_node, "Alive": False}])
    assert "no node of the Ray cluster offers 2 CPUs and 0.25 GPUs per task" in caplog.text


def test_launch_dispatches_on_the_backend(tmp_path, tiny_prepared, monkeypatch):
    import lowdim.training.ray_backend

    calls = []
    monkeypatch.setattr(lowdim.training.ray_backend, "launch_ray",
                        lambda specs, prepared, store, train, progress: calls.append(train))
    train = TrainConfig(device="cpu", backend="ray")
    launch([_spec(1)], tiny_prepared, tmp_path, train, progress=False)
    assert calls == [train] and list(tmp_path.iterdir()) == []
    summary = launch([_spec(1)], tiny_prepared, tmp_path, TrainConfig(device="cpu"),
                     progress=False)
    assert summary.trained == [_spec(1).run_id]
    assert read_meta(tmp_path, _spec(1).run_id)["status"] == "ok"


# --------------------------------------------------------------------------- on the cluster


@pytest.mark.slow
def test_cluster_run_store_is_byte_identical_to_local(two_nodes, root, tiny_specs,
                                                      tiny_prepared, local_packed_store, tmp_path,
                                                      caplog):
    # Packs of two with a per-architecture num_gpus: every run's bytes as the local backend's
    # packs give them (runs one at a time: test_killed_node_costs_retries_not_runs).
    caplog.set_level(logging.INFO, logger="lowdim.training.ray_backend")
    cfg = load_profile(root / "profiles" / "tiny.yaml", {"train": {
        "backend": "ray", "device": "cpu", **PACKED,
        "ray": {**PACKED["ray"], "num_cpus": 1, "runs_per_task": 1}}})
    train = _on_cluster(cfg, two_nodes.address)
    summary = launch_ray(tiny_specs, tiny_prepared, tmp_path, train, progress=False)
    ids = [s.run_id for s in tiny_specs]
    assert sorted(summary.trained) == sorted(ids) and not summary.failed
    assert_same_store(tmp_path, local_packed_store, ids)
    assert {read_meta(tmp_path, i)["settings"]["pack_size"] for i in ids} == {2}
    assert {read_meta(tmp_path, i)["provenance"]["pack_runs"] for i in ids} == {2}
    nodes = {r.getMessage().rsplit("node ", 1)[1] for r in caplog.records
             if r.getMessage().startswith("run ") and "written" in r.getMessage()}
    assert len(nodes) == 2, f"the runs did not spread over both nodes: {nodes}"
    assert {read_meta(tmp_path, i)["settings"]["cpu_kernels"] for i in ids} == {"native"}

    again = launch_ray(tiny_specs, tiny_prepared, tmp_path, train, progress=False)
    assert again.trained == [] and sorted(again.skipped) == sorted(ids)


@pytest.mark.slow
def test_distance_tiles_on_the_cluster_give_the_local_matrices(two_nodes, tmp_path):
    # Runs before the test that kills a node (no restart). The analysis set of 7 runs of 4
    # checkpoints per space, on disk where both nodes read it; 3 runs' blocks are cached already
    # (an earlier grid), the rest are tiles of <= 8 rows.
    rng = np.random.default_rng(3)
    labels = np.repeat([f"run{i}" for i in range(7)], 4)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    probs = {}
    for space, n in (("train", 24), ("test", 16)):
        probs[space] = rng.dirichlet(np.full(10, 0.3), size=(28, n)).astype(np.float32)
        np.save(predictions / f"{space}.npy", probs[space])
    settings = DistanceSettings(sample_step=2)
    cache = BlockCache(tmp_path / "cache")
    for space, p in probs.items():
        write_bhattacharyya(p, labels, None, tmp_path / f"local-{space}.npy", settings=settings)
        write_bhattacharyya(p[:12], labels[:12], cache, tmp_path / "old.npy", settings=settings)
    cluster = DistancesRayConfig(address=two_nodes.address, num_cpus=1, rows_per_task=8)
    stats = compute_on_ray(predictions, labels, cache, cluster, settings=settings)
    # per space: 4 new runs in 2 groups (3 tiles) x (old runs in 2 groups): 4 more tiles
    assert [(s.tiles, s.blocks, s.retries) for s in stats.values()] == [(7, 22, 0)] * 2
    nodes = set().union(*(s.nodes for s in stats.values()))
    assert len(nodes) == 2, f"the tiles did not spread over both nodes: {nodes}"
    for space, p in probs.items():
        _, done = write_bhattacharyya(p, labels, cache, tmp_path / f"ray-{space}.npy",
                                      settings=settings)
        assert done.computed == 0 and done.cached == 28
        assert (tmp_path / f"ray-{space}.npy").read_bytes() == (
            tmp_path / f"local-{space}.npy").read_bytes()
    again = compute_on_ray(predictions, labels, cache, cluster, settings=settings)
    assert [s.tiles for s in again.values()] == [0, 0]  # nothing left: no task, no connection


@pytest.mark.slow
def test_run_failing_every_attempt_is_recorded_and_fails_the_stage(cluster, tiny_cfg,
                                                                   tiny_specs, tiny_prepared,
                                                                   tmp_path, caplog):
    good, bad = tiny_specs[0], dataclasses.replace(tiny_specs[0], arch="no-such-arch")
    strict = dataclasses.replace(_on_cluster(tiny_cfg, cluster.address), ray=RayConfig(
        address=cluster.address, max_retries=1, max_failed_fraction=0.0))
    ray.init(address=cluster.address, logging_level="ERROR")  # one driver for both launches
    try:
        with pytest.raises(RuntimeError, match=r"1 of 2 runs failed every attempt, more than "
                                               r"the 0 that train\.ray\.max_failed_fraction"):
            launch_ray([good, bad], tiny_prepared, tmp_path, strict, progress=False)
        meta = read_meta(tmp_path, bad.run_id)
        assert (meta["status"], meta["attempts"]) == ("failed", 2)
        assert "no-such-arch" in meta["failure"] and "Traceback" in meta["failure"]
        assert sorted(p.name for p in (tmp_path / bad.run_id).iterdir()) == ["meta.json"]
        assert "attempt 1 of 2 failed on node" in caplog.text

        lenient = dataclasses.replace(strict, ray=dataclasses.replace(
            strict.ray, max_failed_fraction=0.5))
        summary = launch_ray([good, bad], tiny_prepared, tmp_path, lenient, progress=False)
        assert summary.skipped == [good.run_id] and list(summary.failed) == [bad.run_id]
        assert "no-such-arch" in summary.failed[bad.run_id]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_killed_node_costs_retries_not_runs(two_nodes, tiny_cfg, tiny_specs, tiny_prepared,
                                            local_store, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lowdim.training.ray_backend")
    train = _on_cluster(tiny_cfg, two_nodes.address)
    result: dict = {}

    def launch() -> None:
        try:
            result["summary"] = launch_ray(tiny_specs, tiny_prepared, tmp_path, train,
                                           progress=False)
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            result["error"] = err

    driver = threading.Thread(target=launch)
    driver.start()
    deadline = time.monotonic() + 120
    while not any(TASK_TITLE in " ".join(p.cmdline()) for p in _alive(two_nodes.worker_dir)):
        assert driver.is_alive() and time.monotonic() < deadline, \
            "no run ever started on the worker node"
        time.sleep(0.05)
    killed = kill_node(two_nodes.worker_dir)
    driver.join(timeout=150)
    assert not driver.is_alive(), "the launch did not finish after the node was killed"
    assert "error" not in result, result.get("error")

    ids = [s.run_id for s in tiny_specs]
    assert killed > 1 and sorted(result["summary"].trained) == sorted(ids)
    assert not result["summary"].failed
    assert_same_store(tmp_path, local_store, ids)  # runs one at a time, pinned kernels
    assert {read_meta(tmp_path, i)["settings"]["cpu_kernels"] for i in ids} == {"pinned"}
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries and "attempt 1 of 3 failed" in retries[0], caplog.text


def _alive(temp_dir: Path) -> list[psutil.Process]:
    procs = []
    for proc in node_processes(temp_dir):
        try:
            proc.cmdline()
            procs.append(proc)
        except psutil.Error:
            pass
    return procs
