"""Stored precision of the predictions: how far float16 storage moves the distances and chi_k.

Trains a profile's runs (all of them, or a subset: --seed / --batch-size keep one value of those
axes, --runs N keeps N runs evenly spaced over what is left) with float32 predictions, one torch
thread, and keeps each run's float32 log-probabilities (the log of train_run's float32
probabilities; cached in --cache, so a second call only re-analyses). From them it derives the
float32 probabilities the analysis set would hold under three storages of the run store:

  float32          float32 probabilities (the run store's; as precise as the authors' float32
                   log-probabilities), renormalized: exp of the float32 log-probabilities;
  f16 probs        float16 probabilities, renormalized in float32 (the predictions stage);
  f16 log-probs    float16 log-probabilities, exponentiated in float32, renormalized.

For each it stacks every checkpoint and the reference rows (ignorance, truth and the geodesic
between them, as the predictions stage does) and computes what the distances and embedding
stages compute: the pairwise Bhattacharyya matrix of each space (the library's kernel with the
profile's sample_step and bc_floor), the distances of every row to the truth (P*) and the
ignorance (P0) on all samples, and the InPCA explained stress chi_k at the profile's stress_dims.
The oracle is a float64 recomputation from the float32 predictions (float64 square roots,
coefficients, clip and log). It prints, per space, the largest |difference| from the oracle of
each storage, and the bytes per stored number. The measured tables and the choice they led to
(float32 probabilities): docs/study.md, "Stored precision".

    python benchmarks/storage_precision.py --profile profiles/quick.yaml
    python benchmarks/storage_precision.py --profile profiles/fashion-mnist.yaml --seed 42 \
        --batch-size 100        # 12 runs: one per architecture x optimizer
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from lowdim.analysis.analysis_set import reference_points
from lowdim.config.grid import GridConfig
from lowdim.config.profile import Config, load_profile
from lowdim.data import Prepared, load_source, prepare
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import inpca
from lowdim.store.records import SPACES, RunSpec
from lowdim.training.grid import expand_grid
from lowdim.training.run import DeviceData, train_run

STORAGES = ("float32", "f16 probs", "f16 log-probs")
BYTES = {"float32": 4, "f16 probs": 2, "f16 log-probs": 2}


def prepared_data(cfg: Config) -> Prepared:
    """The profile's prepared data, as the data stage (notebooks/10_data) makes it."""
    d = cfg.data
    raw = load_source(d.dataset, root=d.root, download=d.download, test_fraction=d.test_fraction,
                      split_seed=d.split_seed, image_size=d.image_size)
    return prepare(raw, d.eval_train_size, d.eval_test_size, d.eval_seed,
                   train_size=d.train_size, train_seed=d.train_seed)


def chosen_runs(cfg: Config, seed: int | None, batch_size: int | None,
                runs: int | None) -> list[RunSpec]:
    """The grid's runs with the seed and batch-size axes narrowed to one value when given, then
    `runs` of them evenly spaced (None: all)."""
    given = {k: (v,) for k, v in {"seed": seed, "batch_size": batch_size}.items() if v is not None}
    grid = GridConfig(blocks=[dataclasses.replace(b, **given) for b in cfg.grid.blocks])
    specs = expand_grid(grid, cfg.models, cfg.train.lr_reference_batch_size)
    if runs is None or runs >= len(specs):
        return specs
    return [specs[i] for i in np.linspace(0, len(specs) - 1, runs).round().astype(int)]


def float32_log_probs(spec: RunSpec, data: DeviceData, eval_batch_size: int
                      ) -> dict[str, np.ndarray] | None:
    """(T, N, C) float32 log-probabilities of every checkpoint per space; None if it diverged."""
    result = train_run(spec, data, eval_batch_size=eval_batch_size, probs_dtype=np.float32)
    if result.status != "ok":
        return None
    with np.errstate(divide="ignore"):  # an underflowed probability is a log of -inf
        return {space: np.log(result.stacked(space)) for space in SPACES}


def trained(cfg: Config, specs: list[RunSpec], prepared: Prepared, cache: Path
            ) -> list[dict[str, np.ndarray]]:
    """Every ok run's float32 log-probabilities, trained here or read from the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    data = DeviceData.from_prepared(prepared, torch.device("cpu"))
    out = []
    for i, spec in enumerate(specs):
        path = cache / f"{spec.run_id}.npz"
        if not path.exists():
            started = time.perf_counter()
            logs = float32_log_probs(spec, data, cfg.train.eval_batch_size)
            np.savez(path, ok=logs is not None, **(logs or {}))
            print(f"  [{i + 1}/{len(specs)}] {spec.run_id}: "
                  f"{'ok' if logs else 'diverged'} in {time.perf_counter() - started:.0f} s",
                  flush=True)
        with np.load(path) as f:
            if f["ok"]:
                out.append({space: f[space] for space in SPACES})
    return out


def renormalized(p: np.ndarray) -> np.ndarray:
    """float32 rows summing to 1 (the predictions stage's renormalization)."""
    p = np.asarray(p, dtype=np.float32)
    return p / p.sum(axis=-1, keepdims=True)


def stored_probabilities(log_probs: np.ndarray, storage: str) -> np.ndarray:
    """The float32 probabilities the analysis set holds when the run store keeps `storage`."""
    if storage == "float32":
        return renormalized(np.exp(log_probs))
    if storage == "f16 probs":
        return renormalized(np.exp(log_probs).astype(np.float16))
    if storage == "f16 log-probs":
        return renormalized(np.exp(log_probs.astype(np.float16).astype(np.float32)))
    raise ValueError(f"unknown storage {storage!r}: use one of {', '.join(STORAGES)}")


def float64_distances(p: np.ndarray, q: np.ndarray | None, sample_step: int, bc_floor: float,
                      chunk_bytes: int = 128 * 2**20) -> np.ndarray:
    """(M1, N, C), (M2, N, C) or None -> (M1, M2) float64 d_B: float64 roots, coefficients,
    clip and log, a sample chunk at a time (the oracle)."""
    a = np.sqrt(p[:, ::sample_step].astype(np.float64))
    b = a if q is None else np.sqrt(q[:, ::sample_step].astype(np.float64))
    m1, n, _ = a.shape
    m2 = b.shape[0]
    out = np.zeros((m1, m2))
    step = max(1, chunk_bytes // (8 * m1 * m2))
    for s in range(0, n, step):
        bc = np.matmul(a[:, s:s + step].transpose(1, 0, 2), b[:, s:s + step].transpose(1, 2, 0))
        out -= np.log(np.clip(bc, bc_floor, 1.0)).sum(axis=0)
    return out / n


@dataclasses.dataclass
class Geometry:
    """What the distances and embedding stages make of one space's stacked probabilities."""

    d: np.ndarray           # (M, M) pairwise distances (sample_step)
    to_truth: np.ndarray    # (M,) on all samples
    to_ignorance: np.ndarray
    chi: np.ndarray         # explained stress at the stress dims


def geometry(p: np.ndarray, truth: int, ignorance: int, cfg: Config, oracle: bool) -> Geometry:
    """Distances and chi_k of stacked probabilities p (M, N, C); rows `truth` and `ignorance`
    are the reference points. oracle: float64 recomputation, else the library's kernel."""
    step, floor = cfg.distances.sample_step, cfg.distances.bc_floor
    if oracle:
        d = float64_distances(p, None, step, floor)
        d = 0.5 * (d + d.T)
        np.fill_diagonal(d, 0.0)
        to = {k: float64_distances(p, p[[r]], 1, floor)[:, 0]
              for k, r in (("truth", truth), ("ignorance", ignorance))}
    else:
        d = bhattacharyya(p, sample_step=step, bc_floor=floor)
        to = {k: bhattacharyya(p, p[[r]], bc_floor=floor)[:, 0]
              for k, r in (("truth", truth), ("ignorance", ignorance))}
    dims = cfg.embedding.stress_dims
    emb = inpca(d, max(dims), solver="dense")
    chi = np.array([emb.explained_stress[k - 1] for k in dims])
    return Geometry(d, to["truth"], to["ignorance"], chi)


def compare(runs: list[dict[str, np.ndarray]], prepared: Prepared, cfg: Config) -> list[dict]:
    """One row per space and storage: the largest |difference| from the float64 oracle."""
    labels = {"train": prepared.train_labels[prepared.eval_train_index],
              "test": prepared.test_labels[prepared.eval_test_index]}
    _, refs = reference_points(labels, prepared.num_classes, cfg.predictions.geodesic_points)
    rows = []
    for space in SPACES:
        log_probs = np.concatenate([r[space] for r in runs])
        m = len(log_probs)
        truth, ignorance = m + 1, m  # reference_points: ignorance, truth, then the geodesic
        exact = geometry(np.concatenate([stored_probabilities(log_probs, "float32"),
                                         refs[space]]), truth, ignorance, cfg, oracle=True)
        for storage in STORAGES:
            p = np.concatenate([stored_probabilities(log_probs, storage), refs[space]])
            got = geometry(p, truth, ignorance, cfg, oracle=False)
            rows.append({
                "space": space, "storage": storage, "M": len(p), "bytes": BYTES[storage],
                "d": np.abs(got.d - exact.d).max(),
                "d runs": np.abs(got.d[:m, :m] - exact.d[:m, :m]).max(),
                "d to P*": np.abs(got.to_truth - exact.to_truth).max(),
                "d to P0": np.abs(got.to_ignorance - exact.to_ignorance).max(),
                **{f"chi_{k}": abs(g - e) for k, g, e in
                   zip(cfg.embedding.stress_dims, got.chi, exact.chi, strict=True)},
                "max d to P*": exact.to_truth[:m].max(),
            })
    return rows


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = {k: max(len(k), 9 if k not in ("space", "storage") else 13) for k in keys}
    print("  ".join(k.rjust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join((f"{v:.2e}" if isinstance(v, float) else str(v)).rjust(widths[k])
                        for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--seed", type=int, default=None, help="keep only this seed")
    parser.add_argument("--batch-size", type=int, default=None, help="keep only this batch size")
    parser.add_argument("--runs", type=int, default=None, help="N runs evenly over the grid")
    parser.add_argument("--cache", default=None,
                        help="directory of the runs' float32 log-probabilities "
                             "(default: scratch/storage_precision/<profile>)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_profile(args.profile)
    specs = chosen_runs(cfg, args.seed, args.batch_size, args.runs)
    cache = Path(args.cache or Path("scratch/storage_precision") / cfg.profile)
    prepared = prepared_data(cfg)
    print(f"{cfg.profile}: {len(specs)} runs, train N = {len(prepared.eval_train_index)}, "
          f"test N = {len(prepared.eval_test_index)}, C = {prepared.num_classes}, "
          f"sample_step {cfg.distances.sample_step}, bc_floor {cfg.distances.bc_floor:g}, "
          f"threads {torch.get_num_threads()} torch / {os.environ.get('NUMBA_NUM_THREADS')} numba")
    started = time.process_time()
    runs = trained(cfg, specs, prepared, cache)
    print(f"{len(runs)} ok runs; training {time.process_time() - started:.0f} s CPU")
    started = time.process_time()
    rows = compare(runs, prepared, cfg)
    seconds = time.process_time() - started
    print(f"largest |difference| from the float64 oracle (analysis {seconds:.0f} s CPU):")
    print_table(rows)


if __name__ == "__main__":
    main()
