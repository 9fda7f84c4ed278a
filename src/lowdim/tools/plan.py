"""The bill of a profile before launch: runs, checkpoints, samples, training device-hours, the
disk of every stage's products (with DVC's cache copy), peak memory and the distance work, with
warnings where this machine cannot hold a stage. Nothing is trained and no data is read.

    python -m lowdim.tools.plan [PARAMS]            # default params.yaml (make plan PROFILE=..)
    python -m lowdim.tools.plan PARAMS --device cuda  # priced with plan_calibration_cuda.json
    python -m lowdim.tools.plan PARAMS --calibration FILE      # priced with another table
    python -m lowdim.tools.plan --calibrate [PARAMS] [--device cpu|cuda] [--out FILE]

The sizes come from the stages' own estimators (``analysis.analysis_set.plan_predictions``,
``geometry.distance_blocks.plan_distances``, ``geometry.inpca.memory_estimate``) and the
checkpoint schedule from ``training.run.checkpoint_steps``; training time from a calibration
table (``lowdim.tools.calibration``): the shipped one, ``plan_calibration_cpu.json`` beside this
module, was measured on the 2-core development CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowdim.analysis.analysis_set import PredictionsPlan, plan_predictions
from lowdim.analysis.trajectories import config_key
from lowdim.config.data import DATASET_SHAPES, DataConfig
from lowdim.config.load import ConfigError
from lowdim.config.profile import Config, load_profile
from lowdim.geometry.distance_blocks import DistancesPlan, plan_distances
from lowdim.geometry.inpca import memory_estimate
from lowdim.paths import find_root
from lowdim.store.arrays import existing_ancestor, human_bytes
from lowdim.store.records import SPACES, RunSpec
from lowdim.tools.calibration import (
    CalibrationError,
    Rate,
    calibrate,
    default_calibration,
    lookup,
    read_table,
    write_table,
)
from lowdim.training.grid import expand_grid
from lowdim.training.local import RUNS_UNCAPPED, worker_count, worker_threads
from lowdim.training.run import checkpoint_steps, iterations_per_epoch

# Split sizes known without reading the data: (train, test) images. Digits has no test split:
# its class counts (scikit-learn's 1,797 digits) are split per class as data.subsets does.
DATASET_SPLITS = {"fashion-mnist": (60_000, 10_000), "cifar10": (50_000, 10_000),
                  "imagenet": (1_281_167, 50_000)}  # ILSVRC-2012 train and val
DIGITS_CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)

# The distances stage's throughput on the 2-core development CPU: its best rate in
# benchmarks/scale.py (0.52 G pair-sample terms per second), and its rate under load (0.23),
# docs/performance.md "The geometry half at the paper's scale".
DISTANCE_RATE = 0.52e9
DISTANCE_RATE_LOADED = 0.23e9
# Those rates are for C = 10 classes; a term's work grows linearly with C (measured on the same
# CPU: 1.9, 1.9 and 1.6 G pair-sample-class terms per second at C = 10, 100 and 1,000).
RATE_CLASSES = 10
# Peak RSS of the interpreter, torch and numba in those stages (0.19 to 1.28 GiB measured there).
INTERPRETER_BYTES = int(1.3 * 2**30)
# meta.json of a run: ~2 KiB of spec, settings and provenance, ~120 bytes per checkpoint.
META_BYTES, META_BYTES_PER_CHECKPOINT = 2048, 120
NPY_HEADER = 128
LINKS = "reflink,hardlink,symlink"


# --------------------------------------------------------------------------- the workload


def split_sizes(data: DataConfig) -> tuple[int, int]:
    """(training images trained on, test images) of the data section, without the data."""
    if data.dataset == "digits":
        test = sum(min(max(int(round(data.test_fraction * n)), 1), n - 1)
                   for n in DIGITS_CLASS_COUNTS)
        train = sum(DIGITS_CLASS_COUNTS) - test
    else:
        train, test = DATASET_SPLITS[data.dataset]
    return (train if data.train_size is None else min(train, data.train_size)), test


def eval_sizes(data: DataConfig, n_train: int, n_test: int) -> dict[str, int]:
    """N of each prediction space: the evaluation subsets (the whole split when null)."""
    def size(asked: int | None, n: int) -> int:
        return n if asked is None else min(asked, n)
    return {"train": size(data.eval_train_size, n_train),
            "test": size(data.eval_test_size, n_test)}


@dataclass(frozen=True)
class Workload:
    """What a profile trains and stacks: runs, their checkpoints, the sample sets."""

    specs: tuple[RunSpec, ...]
    input_shape: tuple[int, int, int]
    classes: int
    n_train: int
    n_test: int
    samples: dict[str, int]        # N per space
    used: dict[str, int]           # N per space after distances.sample_step
    checkpoints: tuple[int, ...]   # T of each run
    geodesic_points: int

    @property
    def points(self) -> int:
        """M: every checkpoint plus ignorance, truth and the geodesic points."""
        return sum(self.checkpoints) + 2 + self.geodesic_points

    @property
    def units(self) -> int:
        """Units of the block cache: one per run, one per reference kind."""
        return len(self.specs) + 3

    @property
    def configurations(self) -> int:
        """Configurations (every factor but the seed), as the trajectories stage groups runs."""
        return len({config_key(s.to_dict()) for s in self.specs})


def workload(config: Config) -> Workload:
    """The workload of a profile: `expand_grid` and the checkpoint schedule of each run."""
    specs = tuple(expand_grid(config.grid, config.models, config.train.lr_reference_batch_size))
    shape, classes = config.data.input_shape, DATASET_SHAPES[config.data.dataset][1]
    n_train, n_test = split_sizes(config.data)
    samples = eval_sizes(config.data, n_train, n_test)
    step = config.distances.sample_step
    return Workload(
        specs=specs, input_shape=shape, classes=classes, n_train=n_train, n_test=n_test,
        samples=samples, used={s: len(range(0, n, step)) for s, n in samples.items()},
        checkpoints=tuple(len(checkpoint_steps(s.epochs, iterations_per_epoch(
            n_train, s.batch_size))) for s in specs),
        geodesic_points=config.predictions.geodesic_points)


def counts(specs: Sequence[RunSpec], field: str) -> dict[Any, int]:
    """Runs per value of a spec field, in order of first appearance."""
    return dict(Counter(getattr(s, field) for s in specs))


# --------------------------------------------------------------------------- training time


@dataclass(frozen=True)
class ArchTime:
    """Estimated training seconds of one architecture's runs (one run at a time)."""

    arch: str
    runs: int
    seconds: float


def run_seconds(rate: Rate, spec: RunSpec, n_train: int, checkpoints: int,
                samples: Mapping[str, int]) -> float:
    """One run: setup + epochs x training samples (whole batches: a last, smaller batch costs
    about a full step) + checkpoints x (one evaluation call per space + evaluated samples)."""
    trained = spec.epochs * iterations_per_epoch(n_train, spec.batch_size) * spec.batch_size
    return (rate.setup_seconds + trained * rate.train_seconds_per_sample
            + checkpoints * (len(samples) * rate.eval_seconds_per_call
                             + sum(samples.values()) * rate.eval_seconds_per_sample))


def training_time(work: Workload, table: Mapping[str, Any], threads: int | None,
                  source: str) -> tuple[list[ArchTime], list[str]]:
    """Seconds per architecture and the calibration's notes: where it differs from the runs,
    and the load average of the machine while the entries used were measured."""
    seconds: dict[str, float] = {}
    runs: Counter = Counter()
    notes: dict[str, None] = {}
    batches: dict[tuple[str, str, int], set[int]] = {}
    loads: set[float] = set()
    for spec, t in zip(work.specs, work.checkpoints, strict=True):
        rate = lookup(table, spec.arch, spec.model_size, work.input_shape, work.classes,
                      spec.batch_size, spec.precision, threads, source)
        notes.update(dict.fromkeys(rate.notes))
        if "load_average" in rate.entry:
            loads.add(rate.entry["load_average"])
        if rate.batch:
            batches.setdefault((spec.arch, *rate.batch), set()).add(spec.batch_size)
        seconds[spec.arch] = seconds.get(spec.arch, 0.0) + run_seconds(
            rate, spec, work.n_train, t, work.samples)
        runs[spec.arch] += 1
    for (arch, how, b), sizes in batches.items():
        listed = ", ".join(map(str, sorted(sizes)))
        notes[f"{arch}: batch {listed} timed at batch {b} (the calibration's step budget; "
              "cost per sample taken as constant above it)"
              if how == "timed" else
              f"{arch}: batch {listed} priced at batch {b}'s rate (not calibrated at "
              f"{'these batches' if len(sizes) > 1 else 'that batch'})"] = None
    notes = dict.fromkeys(grouped(list(notes)))
    if loads and table.get("cores"):
        notes[f"measured at a load average of {min(loads):g} to {max(loads):g} on "
              f"{table['cores']} cores: a busier machine is slower"] = None
    return [ArchTime(a, runs[a], s) for a, s in seconds.items()], list(notes)


@dataclass(frozen=True)
class StudyTime:
    """The special studies' own training: runs and estimated seconds (None: not priced)."""

    study: str
    runs: int
    seconds: float | None
    what: str


def corner_specs(config: Config, n_train: int) -> list[tuple[RunSpec, int]]:
    """Every corner run's two phases as (spec, training images): phase 1 on the setup's balanced
    subset (subsample) or the whole relabelled split (uniform), phase 2 on the whole split."""
    from lowdim.studies.corners import phase_specs

    cfg = config.studies.corners
    out = []
    for _, setup in cfg.named_setups():
        for seed in cfg.seeds:
            first, second = phase_specs(cfg, setup.arch, seed, config.models.get(setup.arch, {}),
                                        config.train.lr_reference_batch_size)
            images = setup.subsample_size if setup.kind == "subsample" else n_train
            out += [(first, images), (second, n_train)] * len(cfg.iseeds)
    return out


def study_times(config: Config, work: Workload, table: Mapping[str, Any], threads: int | None,
                source: str) -> list[StudyTime]:
    """The corner study priced with the grid's calibration (its runs train on the dataset);
    the synthetic students counted (fc students on a few thousand synthetic vectors: not in the
    calibration, and small beside the grid)."""
    seconds = 0.0
    specs = corner_specs(config, work.n_train)
    for spec, images in specs:
        rate = lookup(table, spec.arch, spec.model_size, work.input_shape, work.classes,
                      spec.batch_size, spec.precision, threads, source)
        seconds += run_seconds(rate, spec, images, len(checkpoint_steps(
            spec.epochs, iterations_per_epoch(images, spec.batch_size))), work.samples)
    syn = config.studies.synthetic
    students = len(syn.students) if syn.students else 1
    groups = 2 if syn.ncorners else 1
    synthetic = len(syn.c) * students * groups * len(syn.optimizers) * len(syn.seeds)
    archs = ", ".join(config.studies.corners.archs)
    return [StudyTime("corners", len(specs) // 2, seconds,
                      f"{archs}: phase 1 to the corner + phase 2, per setup x iseed x seed"),
            StudyTime("synthetic", synthetic, None,
                      f"fc students on {syn.n_train:,} synthetic vectors, {syn.epochs} epochs: "
                      "not priced")]


def grouped(notes: Sequence[str]) -> list[str]:
    """Notes `arch: text` with the same text joined: `fc, vit: text`."""
    archs: dict[str, list[str]] = {}
    for note in notes:
        arch, text = note.split(": ", 1)
        archs.setdefault(text, []).append(arch)
    return [f"{', '.join(a)}: {text}" for text, a in archs.items()]


# --------------------------------------------------------------------------- disk and memory


@dataclass(frozen=True)
class Product:
    """One stage's product on disk."""

    stage: str
    path: str
    bytes: int
    dvc: bool          # a DVC output: copied into the DVC cache unless cache.type links
    what: str


def prepared_bytes(work: Workload) -> int:
    """data/prepared: uint8 images and int64 labels of both splits, the subsets' indices."""
    pixels = math.prod(work.input_shape)
    return ((work.n_train + work.n_test) * (pixels + 8) + 8 * sum(work.samples.values())
            + 8 * 4096)


def run_store_bytes(work: Workload) -> int:
    """data/runs: each run's float32 (T, N, C) predictions per space and its meta.json."""
    row = sum(work.samples.values()) * work.classes * 4
    return sum(t * row + len(SPACES) * NPY_HEADER + META_BYTES + META_BYTES_PER_CHECKPOINT * t
               for t in work.checkpoints)


def embedding_bytes(points: int, n_components: int, landmarks: int | None) -> int:
    """One space's embedding (.npz): coordinates and eigenvectors (M, k), column means, and at
    most M eigenvalues and stress values (fewer with an iterative solver)."""
    k = min(n_components, points)
    kept = points if landmarks is None else min(points, landmarks)
    return 8 * (2 * points * k + points + 2 * kept) + 4096


def trajectory_count(work: Workload) -> int:
    """Trajectories of the trajectories stage at most: every run, each configuration's average
    and the geodesic (only runs that train to trajectories.trained_max_error are kept)."""
    return len(work.specs) + work.configurations + 1


def products(config: Config, work: Workload, predictions: PredictionsPlan,
             distances: DistancesPlan) -> list[Product]:
    """The products of the stages estimated here, in pipeline order, the block cache last."""
    emb = embedding_bytes(work.points, config.embedding.n_components, config.embedding.landmarks)
    return [
        Product("data", "data/prepared", prepared_bytes(work), True, "uint8 images"),
        Product("train", "data/runs", run_store_bytes(work), True, "float32 predictions"),
        Product("predictions", "data/predictions", predictions.disk_bytes, True,
                "float32, renormalized"),
        Product("distances", "data/distances", distances.matrix_bytes + 32 * work.points, True,
                f"{distances.dtype} matrices"),
        Product("embedding", "data/embedding", len(SPACES) * emb, True, "float64"),
        Product("trajectories", "data/trajectories", trajectory_bytes(
            work, config.trajectories.grid_points), True, "the (G, R, R) tensors, at most"),
        Product("distances", "data/cache/distances", distances.cache_bytes if distances.cache
                else 0, False, "block cache, cold" if distances.cache else "cache off"),
    ]


def trajectory_bytes(work: Workload, grid_points: int) -> int:
    """data/trajectories at most: per space the (G, R, R) float64 distance tensor, the (R, R)
    trajectory distances and the per-run tables over the grid; the progress of every point."""
    count = trajectory_count(work)
    per_space = 8 * grid_points * count * count + 8 * count * count + 24 * grid_points * count
    return len(SPACES) * per_space + 25 * work.points + 1000 * count


def cache_bookkeeping_bytes(units: int, spaces: int = len(SPACES)) -> int:
    """Disk of the block cache's keys and index (``plan_distances`` counts them in)."""
    return spaces * 200 * units * (units + 1) // 2


@dataclass(frozen=True)
class Memory:
    """Peak memory of one heavy stage, the interpreter not included."""

    stage: str
    bytes: int
    what: str


def memory(config: Config, work: Workload, predictions: PredictionsPlan,
           distances: DistancesPlan, workers: int) -> list[Memory]:
    """Each heavy stage's estimated peak, from the stages' own estimators."""
    emb = config.embedding
    count = trajectory_count(work)
    pixels = math.prod(work.input_shape)
    return [
        Memory("train", workers * (work.n_train + sum(work.samples.values())) * pixels,
               f"the prepared images in each of {workers} worker(s), the networks not counted"),
        Memory("predictions", predictions.ram_bytes, "a block of rows, the index"),
        Memory("distances", distances.ram_bytes,
               f"block budget distances.max_block_mib = {config.distances.max_block_mib}"),
        Memory("embedding", memory_estimate(
            work.points, emb.n_components, n_eigenvalues=max(emb.n_components, *emb.stress_dims),
            solver=emb.solver, landmarks=emb.landmarks),
            f"inpca.memory_estimate, solver {emb.solver}, landmarks {emb.landmarks}"),
        Memory("trajectories", 8 * config.trajectories.grid_points * count * count
               + config.distances.max_block_mib * 2**20,
               f"the (G, R, R) tensor, G = {config.trajectories.grid_points}, R <= {count:,}"),
    ]


# --------------------------------------------------------------------------- this machine


def free_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing ancestor)."""
    return shutil.disk_usage(existing_ancestor(Path(path))).free


def total_ram() -> int:
    """Physical memory of this machine in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def dvc_cache_type(root: Path) -> str | None:
    """`cache.type` of the repository's DVC config (config.local first), None when unset."""
    for name in ("config.local", "config"):
        path = root / ".dvc" / name
        if not path.is_file():
            continue
        section = None
        for line in path.read_text().splitlines():
            header = re.match(r"\s*\[\s*([^\]]+?)\s*\]", line)
            if header:
                section = header.group(1).strip("'\"")
                continue
            setting = re.match(r"\s*type\s*=\s*(\S+)", line)
            if section == "cache" and setting:
                return setting.group(1)
    return None


def copies(cache_type: str | None) -> bool:
    """Whether DVC may copy outputs into its cache: unset (DVC's default reflink,copy: a copy
    unless the filesystem has reflinks) or a list that names copy."""
    return cache_type is None or "copy" in cache_type.split(",")


def warnings(items: Sequence[Product], peaks: Sequence[Memory], *, free: int, where: Path,
             ram: int, with_copy: bool) -> list[str]:
    """Where a stage will not fit this machine: the disk under data/, the RAM."""
    found = []
    workspace = sum(p.bytes for p in items)
    need = workspace + (sum(p.bytes for p in items if p.dvc) if with_copy else 0)
    if need > free:
        found.append(
            f"disk: the products need {human_bytes(need)}"
            f"{' with DVC cache copies' if with_copy else ''} on the filesystem of {where}, "
            f"which has {human_bytes(free)} available. Free space there, store the matrices as "
            "float32 (distances.dtype), evaluate fewer samples or keep fewer runs"
            + (f", or link instead of copying: dvc config cache.type {LINKS}"
               if with_copy and workspace <= free else ""))
    advice = {"distances": "lower distances.max_block_mib",
              "embedding": "set embedding.landmarks (e.g. 20000) or solver randomized",
              "trajectories": "train fewer runs or lower trajectories.grid_points",
              "predictions": "lower distances.max_block_mib",
              "train": "use fewer train.workers"}
    for peak in peaks:
        if peak.bytes + INTERPRETER_BYTES > ram:
            found.append(f"memory: the {peak.stage} stage needs about "
                         f"{human_bytes(peak.bytes + INTERPRETER_BYTES)} (interpreter included), "
                         f"this machine has {human_bytes(ram)}: {advice[peak.stage]}")
    return found


# --------------------------------------------------------------------------- the bill


@dataclass(frozen=True)
class Bill:
    """Everything the command prints, computed."""

    source: str
    config: Config
    work: Workload
    predictions: PredictionsPlan
    distances: DistancesPlan
    times: list[ArchTime]
    studies: list[StudyTime]
    time_notes: list[str]
    table: Mapping[str, Any]
    calibration: str
    workers: int
    threads: int | None
    products: list[Product]
    memory: list[Memory]
    cache_type: str | None
    free: int
    where: Path
    ram: int
    warnings: list[str]


def make_bill(params: str | Path, *, device: str = "cpu", calibration: str | Path | None = None,
              root: Path | None = None) -> Bill:
    """The bill of a parameter file, priced with the calibration table of `device`."""
    root = find_root() if root is None else root
    config = load_profile(params)
    work = workload(config)
    path = Path(calibration) if calibration else default_calibration(device)
    table = read_table(path)
    workers = worker_count(config.train.workers, len(work.specs)) if table["device"] == "cpu" \
        else 1
    threads = (worker_threads(config.train.threads, worker_count(config.train.workers,
                                                                 RUNS_UNCAPPED))
               if table["device"] == "cpu" else None)
    times, notes = training_time(work, table, threads, str(path))
    studies = study_times(config, work, table, threads, str(path))
    pred = plan_predictions(len(work.specs), sum(work.checkpoints), work.samples, work.classes,
                            work.geodesic_points, config.distances.max_block_mib * 2**20)
    dist = plan_distances(work.points, work.used, work.classes, dtype=config.distances.dtype,
                          cache=config.distances.cache,
                          max_block_bytes=config.distances.max_block_mib * 2**20,
                          units=work.units, method=config.distances.method, device="cpu",
                          landmarks=config.distances.landmarks,
                          holdout=config.distances.landmark_holdout)
    items = products(config, work, pred, dist)
    peaks = memory(config, work, pred, dist, workers)
    cache_type = dvc_cache_type(root)
    where = existing_ancestor(root / "data")
    free, ram = free_bytes(where), total_ram()
    found = warnings(items, peaks, free=free, where=where, ram=ram, with_copy=copies(cache_type))
    return Bill(str(params), config, work, pred, dist, times, studies, notes, table, str(path),
                workers,
                threads, items, peaks, cache_type, free, where, ram, found)


def duration(seconds: float) -> str:
    """Seconds for people: 4.2 s, 42 s, 3.5 min, 2.1 h, 1,234 h."""
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    hours = seconds / 3600
    return f"{hours:,.1f} h" if hours < 1000 else f"{hours:,.0f} h"


def terms(n: float) -> str:
    """A count of pair-sample terms: 1.16 G, 2,825 T."""
    return f"{n / 1e12:,.4g} T" if n >= 1e12 else f"{n / 1e9:,.4g} G"


def by(values: Mapping[Any, int]) -> str:
    """`a: 3, b: 2`."""
    return ", ".join(f"{k}: {v:,}" for k, v in values.items())


def render(bill: Bill) -> str:
    """The bill as text."""
    return "\n".join([*header_lines(bill), "", *training_lines(bill), "", *disk_lines(bill), "",
                      *memory_lines(bill), "", *work_lines(bill), "", *warning_lines(bill)])


def shown_path(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def header_lines(bill: Bill) -> list[str]:
    c, w = bill.config, bill.work
    blocks = len(c.grid.blocks)
    ck = sorted(set(w.checkpoints))
    per_run = (f"{ck[0]}" if len(ck) == 1 else
               f"{ck[0]}-{ck[-1]} ({by(dict(sorted(Counter(w.checkpoints).items())))} runs)")
    spaces = "; ".join(f"{s} N = {n:,} -> {w.used[s]:,}" for s, n in w.samples.items())
    return [
        f"The bill of {bill.source} (profile {c.profile}): {c.data.dataset} "
        f"{w.input_shape}, {w.classes} classes",
        f"runs: {len(w.specs):,} (grid of {blocks} block{'s' * (blocks > 1)})",
        f"  by architecture: {by(counts(w.specs, 'arch'))}",
        f"  by optimizer:    {by(counts(w.specs, 'optimizer'))}",
        f"  by epochs:       {by(counts(w.specs, 'epochs'))}",
        f"  by batch size:   {by(counts(w.specs, 'batch_size'))}",
        f"  by precision:    {by(counts(w.specs, 'precision'))}",
        f"data: {w.n_train:,} training images, {w.n_test:,} test images",
        f"checkpoints: {per_run} per run, {sum(w.checkpoints):,} in all",
        f"  M = {w.points:,} points per space ({w.geodesic_points} geodesic points, ignorance "
        "and truth included)",
        f"samples per space (N -> after distances.sample_step = {c.distances.sample_step}): "
        f"{spaces}; C = {w.classes}",
    ]


def training_lines(bill: Bill) -> list[str]:
    t = bill.table
    total = sum(a.seconds for a in bill.times)
    threads = f", {bill.threads} torch thread(s) per run" if bill.threads else ""
    lines = [f"training, estimated from {shown_path(bill.calibration)}",
             f"  measured on {t['device']} ({t.get('device_name', '?')}) "
             f"{t.get('measured', '?')}{threads}",
             "  a run: setup + epochs x training images x s/sample",
             "         + checkpoints x (2 eval calls + evaluated images x s/sample)",
             "  arch                 runs   per run       total"]
    for a in sorted(bill.times, key=lambda a: -a.seconds):
        lines.append(f"  {a.arch:<18} {a.runs:>6,} {duration(a.seconds / a.runs):>9} "
                     f"{duration(a.seconds):>11}")
    unit = "device-hours" if t["device"] == "cuda" else "CPU-hours (one run at a time)"
    hours = total / 3600
    lines.append(f"  total: {hours:,.0f} {unit}" if hours >= 100 else
                 f"  total: {hours:.3g} {unit}, {duration(total)}")
    for s in bill.studies:
        cost = "" if s.seconds is None else f"{duration(s.seconds):>11}"
        runs = "run " if s.runs == 1 else "runs"
        lines.append(f"  + studies.{s.study:<10} {s.runs:>6,} {runs} {cost}  ({s.what})")
    if bill.config.train.backend == "ray":
        lines.append("  train.backend = ray: divide by the runs the cluster trains at once "
                     "(its GPUs / train.ray.num_gpus, or CPUs / num_cpus)")
    elif t["device"] == "cpu":
        lines.append(f"  with train.workers = {bill.config.train.workers}: {bill.workers} runs at "
                     f"once here, about {duration(total / bill.workers)} of wall time if the "
                     "cores are free")
    else:
        lines.append("  one run at a time per GPU: packing (train.pack_size) or a shared GPU "
                     "(train.ray.num_gpus < 1) shortens it")
    if t["device"] == "cpu":
        lines.append(f"  for a GPU's estimate: python -m lowdim.tools.plan --calibrate "
                     f"{bill.source} --device cuda")
        lines.append("  on the lab's GPU, then the same command as this one with --device cuda")
    lines += [f"  note: {n}" for n in bill.time_notes]
    return lines


def disk_lines(bill: Bill) -> list[str]:
    lines = ["disk (apparent sizes)", "  stage         product                 size"]
    for p in bill.products:
        lines.append(f"  {p.stage:<13} {p.path:<22} {human_bytes(p.bytes):>10}  {p.what}"
                     + ("" if p.dvc else ", not a DVC output"))
    if bill.distances.cache:
        lines.append(f"  (the block cache's bookkeeping: "
                     f"{human_bytes(cache_bookkeeping_bytes(bill.work.units))} of keys on disk)")
    lines.append("  studies, figures, executed notebooks, metrics: not estimated (tens of MiB "
                 "on the quick profile)")
    work = sum(p.bytes for p in bill.products)
    dvc = sum(p.bytes for p in bill.products if p.dvc)
    setting = bill.cache_type or "unset (DVC's default reflink,copy)"
    lines += [f"  workspace: {human_bytes(work)}; with DVC's cache copy of its outputs: "
              f"{human_bytes(work + dvc)} (.dvc/cache adds {human_bytes(dvc)})",
              f"  cache.type here: {setting}"]
    if copies(bill.cache_type):
        lines.append(f"  recommended for large workspaces: dvc config cache.type {LINKS}")
        lines.append(f"  (then {human_bytes(work)} in all; dvc checkout --relink after the "
                     "change; outputs become read-only links:")
        lines.append("  dvc unprotect a path before editing it by hand)")
    lines.append(f"  free on the filesystem of {bill.where}: {human_bytes(bill.free)}")
    return lines


def memory_lines(bill: Bill) -> list[str]:
    lines = [f"peak memory (plus the interpreter, torch and numba: up to "
             f"{human_bytes(INTERPRETER_BYTES)} measured, docs/performance.md)"]
    lines += [f"  {m.stage:<13} {human_bytes(m.bytes):>10}  {m.what}" for m in bill.memory]
    lines.append(f"  this machine: {human_bytes(bill.ram)} of RAM")
    return lines


def work_lines(bill: Bill) -> list[str]:
    d, w = bill.distances, bill.work
    count = trajectory_count(w)
    traj = (bill.config.trajectories.grid_points * count * (count + 1) // 2
            * sum(w.samples.values()))
    rate = f"{DISTANCE_RATE / 1e9:.2f} G/s"
    per_class = w.classes / RATE_CLASSES  # the rates are for C = 10
    scaled = (f" (x {per_class:g}: the rates are for C = {RATE_CLASSES}, the work grows with "
              f"C = {w.classes})" if w.classes != RATE_CLASSES else "")
    return [
        f"distances: {terms(d.pair_samples)} pair-sample terms (M (M + 1) / 2 x N after "
        "sample_step, summed over spaces)",
        f"  about {duration(d.pair_samples * per_class / DISTANCE_RATE)} of CPU time at {rate}, "
        f"{duration(d.pair_samples * per_class / DISTANCE_RATE_LOADED)} at "
        f"{DISTANCE_RATE_LOADED / 1e9:.2f} G/s{scaled}: the distances stage's best and loaded "
        "rates",
        "  on the 2-core development CPU (benchmarks/scale.py; docs/performance.md, \"The "
        "geometry half",
        "  at the paper's scale\"); no GPU rate has been measured",
        f"trajectories: at most {terms(traj)} pair-sample terms (G x R (R + 1) / 2 x N, "
        f"every sample, R <= {count:,}),",
        f"  about {duration(traj * per_class / DISTANCE_RATE)} of CPU time at {rate}",
    ]


def warning_lines(bill: Bill) -> list[str]:
    if not bill.warnings:
        return ["warnings: none (this machine's disk and RAM hold every stage)"]
    return [f"WARNING: {w}" for w in bill.warnings]


# --------------------------------------------------------------------------- the command


def run_calibration(params: str, device: str, out: str | None, seconds: float) -> Path:
    """Time every network of the profile on `device` and merge the entries into `out`."""
    config = load_profile(params)
    work = workload(config)
    threads = (worker_threads(config.train.threads, worker_count(config.train.workers,
                                                                 RUNS_UNCAPPED))
               if device == "cpu" else None)
    table = calibrate(work.specs, work.input_shape, work.classes, device,
                      eval_batch_size=config.train.eval_batch_size, threads=threads,
                      seconds=seconds, padding=config.train.augment_padding,
                      progress=lambda line: print(line, flush=True))
    path = write_table(table, out or default_calibration(device))
    for e in table["entries"]:
        print(f"  {e['arch']:<12} batch {e['batch_size']:>5} (timed {e['timed_batch']:>4}): "
              f"train {e['train_seconds_per_sample'] * 1e3:.4g} ms/sample, eval "
              f"{e['eval_seconds_per_sample'] * 1e3:.4g} ms/sample, setup "
              f"{e['setup_seconds']:.3g} s")
    print(f"wrote {path}")
    return path


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lowdim.tools.plan", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("params", nargs="?", default="params.yaml", help="parameter file")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="device type to price (and to calibrate on)")
    p.add_argument("--calibration", help="calibration table (default: plan_calibration_"
                   "<device>.json beside lowdim/tools/plan.py)")
    p.add_argument("--calibrate", action="store_true",
                   help="time every network of the profile here and write the table")
    p.add_argument("--out", help="with --calibrate: the table to write or extend")
    p.add_argument("--seconds", type=float, default=2.0,
                   help="with --calibrate: timed seconds per network and batch")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if args.calibrate:
            run_calibration(args.params, args.device, args.out, args.seconds)
            return 0
        print(render(make_bill(args.params, device=args.device, calibration=args.calibration)))
    except (ConfigError, CalibrationError) as err:
        print(f"{args.params}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
