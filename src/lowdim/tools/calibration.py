"""Seconds per training sample and per evaluated sample of each architecture of a profile on
one device: the calibration table that `lowdim.tools.plan` turns into device-hours.

    python -m lowdim.tools.plan --calibrate [PARAMS] [--device cpu|cuda] [--out FILE]

For each architecture (at the profile's model sizes, input shape and class count) and each of
its batch sizes, a fresh seeded network (``training.run.init_model``) takes optimizer steps
exactly as ``training.run.train_run`` takes them (``make_optimizer``, the cosine schedule,
``StepPrecision``, ``augment_simple`` when the profile augments, ``model_inputs``, cross-entropy)
on random uint8 images, and ``training.run.evaluate`` times eval-mode predictions in batches of
``train.eval_batch_size``. A warm-up step comes first; the timed steps run for about
``seconds`` (at least 3 steps). A batch whose step would take longer than ``step_seconds`` is
timed at a smaller batch (recorded as ``timed_batch``): the per-sample cost is then assumed
constant up to the profile's batch. CPU timings use the torch threads a run gets from
``train.threads`` and ``train.workers`` (``training.local``). The table is JSON, one device per
file; entries of the same architecture, sizes, shape, batch, precision and threads are replaced,
the others kept, so several profiles share one file.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

FORMAT = "lowdim-plan-calibration/1"
HERE = Path(__file__).resolve().parent


def default_calibration(device: str) -> Path:
    """The shipped (or the lab's own) calibration table of a device type, beside this module."""
    return HERE / f"plan_calibration_{device}.json"


class CalibrationError(ValueError):
    """A calibration table that is missing, malformed or has no entry for a network."""


# --------------------------------------------------------------------------- the table


def size_key(model_size: Mapping[str, Any]) -> str:
    """A model-size mapping as canonical JSON (tuples as lists, keys sorted): {} = paper sizes."""
    return json.dumps({k: list(v) if isinstance(v, tuple | list) else v
                       for k, v in model_size.items()}, sort_keys=True)


def entry_key(entry: Mapping[str, Any]) -> tuple:
    """What makes two entries the same measurement target."""
    return (entry["arch"], size_key(entry["model_size"]), tuple(entry["input_shape"]),
            entry["classes"], entry["batch_size"], entry["precision"], entry["threads"])


ENTRY_FIELDS = {"arch": str, "model_size": dict, "input_shape": list, "classes": int,
                "batch_size": int, "timed_batch": int, "precision": str, "threads": int,
                "train_seconds_per_sample": float, "eval_seconds_per_sample": float,
                "eval_seconds_per_call": float, "setup_seconds": float}


def check_table(table: Any, where: str) -> dict[str, Any]:
    """A calibration table read from JSON, its fields checked; CalibrationError otherwise."""
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        raise CalibrationError(f"{where} is not a calibration table (format {FORMAT!r}): "
                               "write one with python -m lowdim.tools.plan --calibrate")
    if table.get("device") not in ("cpu", "cuda") or not isinstance(table.get("entries"), list):
        raise CalibrationError(f"{where}: a calibration table needs device cpu or cuda and a "
                               "list of entries")
    for i, entry in enumerate(table["entries"]):
        for name, kind in ENTRY_FIELDS.items():
            value = entry.get(name) if isinstance(entry, dict) else None
            ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
            if not ok or isinstance(value, bool) or (kind is float and not value >= 0):
                wanted = "non-negative number" if kind is float else kind.__name__
                raise CalibrationError(f"{where}: entries[{i}].{name} = {value!r} is not a "
                                       f"{wanted}")
    return table


def read_table(path: str | Path) -> dict[str, Any]:
    """The calibration table in `path`, checked."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"no calibration table {path}: write one with "
                               "python -m lowdim.tools.plan --calibrate PARAMS [--device "
                               "cpu|cuda] [--out FILE]")
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CalibrationError(f"{path} is not valid JSON ({err})") from err
    return check_table(table, str(path))


def merge_tables(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """`new`'s entries added to `old`'s (same target: `new`'s wins), `new`'s header kept."""
    if old is not None and old["device"] != new["device"]:
        raise CalibrationError(f"the table holds a {old['device']} calibration, not "
                               f"{new['device']}: write this one to another file (--out)")
    entries = {entry_key(e): e for e in (old["entries"] if old else [])}
    entries.update({entry_key(e): e for e in new["entries"]})
    return {**new, "entries": sorted(entries.values(), key=lambda e: (
        e["arch"], size_key(e["model_size"]), e["input_shape"], e["batch_size"],
        e["precision"], e["threads"]))}


@dataclass(frozen=True)
class Rate:
    """The calibrated costs that price one kind of run, and how it was matched."""

    train_seconds_per_sample: float
    eval_seconds_per_sample: float
    eval_seconds_per_call: float
    setup_seconds: float
    entry: Mapping[str, Any]
    notes: tuple[str, ...]   # where the entry differs from the run: sizes, shape, precision
    # ("timed", b): the run's batch was timed at batch b; ("priced", b): no entry has the run's
    # batch, the entry of batch b prices it; None: timed at the run's batch
    batch: tuple[str, int] | None = None


def lookup(table: Mapping[str, Any], arch: str, model_size: Mapping[str, Any],
           input_shape: Sequence[int], classes: int, batch_size: int, precision: str,
           threads: int | None, source: str = "the calibration table") -> Rate:
    """The entry that prices a run: same architecture (required), then the same sizes, shape
    and classes, precision and threads where possible, then the nearest batch size (log scale).
    Each mismatch is a note; no entry of the architecture raises CalibrationError."""
    candidates = [e for e in table["entries"] if e["arch"] == arch]
    if not candidates:
        have = sorted({e["arch"] for e in table["entries"]})
        raise CalibrationError(
            f"{source} has no entry for architecture {arch!r} (it calibrates "
            f"{', '.join(have) or 'nothing'}): run python -m lowdim.tools.plan --calibrate "
            f"PARAMS --device {table['device']} --out FILE on the machine that will train, "
            "then pass --calibration FILE")
    want = {"sizes": size_key(model_size), "shape": list(input_shape), "classes": classes,
            "precision": precision, "threads": threads}

    def mismatches(e: Mapping[str, Any]) -> list[str]:
        got = {"sizes": size_key(e["model_size"]), "shape": e["input_shape"],
               "classes": e["classes"], "precision": e["precision"], "threads": e["threads"]}
        return [k for k in want if want[k] is not None and got[k] != want[k]]

    best = min(candidates, key=lambda e: (
        [k in mismatches(e) for k in want], abs(math.log(e["batch_size"] / batch_size))))
    notes = []
    for k in mismatches(best):
        got = {"sizes": best["model_size"], "shape": best["input_shape"],
               "classes": best["classes"], "precision": best["precision"],
               "threads": best["threads"]}[k]
        if k == "precision":
            why = ("a CPU trains fp32 only; calibrate with --device cuda for theirs"
                   if table["device"] == "cpu" else "run --calibrate for this profile")
            notes.append(f"{arch}: {precision} runs priced at the {got} rate ({why})")
            continue
        shown = dict(model_size) if k == "sizes" else want[k]
        notes.append(f"{arch}: calibrated with {k} {_show(got)}, the profile has {_show(shown)}: "
                     "run --calibrate for this profile")
    batch = (("priced", best["batch_size"]) if best["batch_size"] != batch_size
             else ("timed", best["timed_batch"]) if best["timed_batch"] != batch_size else None)
    return Rate(best["train_seconds_per_sample"], best["eval_seconds_per_sample"],
                best["eval_seconds_per_call"], best["setup_seconds"], best, tuple(notes), batch)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}" if value else \
            "{} (the paper's sizes)"
    return str(tuple(value)) if isinstance(value, list) else str(value)


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Target:
    """One network of a profile to time: its representative spec and the batch sizes it
    trains with."""

    spec: Any                      # a RunSpec of this architecture (optimizer, augment, sizes)
    batch_sizes: tuple[int, ...]


def targets(specs: Sequence[Any], mixed: bool = True) -> list[Target]:
    """One target per (architecture, sizes, precision) of `specs`: its most common optimizer,
    augmentation `simple` when any run augments, every batch size it trains with. `mixed`
    False (a CPU): every run is timed in fp32, the only precision a CPU trains."""
    groups: dict[tuple, list[Any]] = {}
    for spec in specs:
        spec = spec if mixed else replace(spec, precision="fp32")
        groups.setdefault((spec.arch, size_key(spec.model_size), spec.precision), []).append(spec)
    out = []
    for members in groups.values():
        optimizer = Counter(s.optimizer for s in members).most_common(1)[0][0]
        augment = "simple" if any(s.augment == "simple" for s in members) else "none"
        first = next(s for s in members if s.optimizer == optimizer)
        out.append(Target(replace(first, augment=augment, lr=1e-4),
                          tuple(sorted({s.batch_size for s in members}))))
    return out


def timed(fn: Callable[[], None], sync: Callable[[], None]) -> float:
    """Wall seconds of one call of `fn`, the device synchronized after it."""
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def measure_target(target: Target, input_shape: Sequence[int], classes: int, device: Any, *,
                   eval_batch_size: int, seconds: float = 2.0, step_seconds: float = 1.0,
                   padding: int | None = None) -> list[dict[str, Any]]:
    """Calibration entries of one target on `device` (a torch.device), one per timed batch."""
    import torch
    import torch.nn.functional as F

    from lowdim.data import augment_simple
    from lowdim.training.precision import StepPrecision
    from lowdim.training.run import (
        cosine_factor,
        evaluate,
        init_model,
        make_optimizer,
        model_inputs,
    )
    from lowdim.training.settings import crop_padding

    spec = target.spec
    shape = tuple(input_shape)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    gen = torch.Generator().manual_seed(0)
    top = max(target.batch_sizes)
    pool = 2 * top
    mean = torch.full((shape[0],), 0.5, device=device)
    std = torch.full((shape[0],), 0.25, device=device)
    images = torch.randint(0, 256, (pool, *shape), generator=gen, dtype=torch.uint8).to(device)
    labels = torch.randint(0, classes, (pool,), generator=gen).to(device)
    augment_rng = torch.Generator(device=device).manual_seed(1)
    pad = crop_padding(padding, shape[1])

    setup = min(timed(lambda: init_model(spec, shape, classes, device), sync) for _ in range(2))
    model = init_model(spec, shape, classes, device)
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_factor(s, 10**6))
    precision = StepPrecision(spec, device)
    model.train()

    def steps(batch: int, count: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(count):  # the loop body of training.run.train_run
                idx = torch.randint(0, pool, (batch,), generator=gen).to(device)
                x = images[idx]
                if spec.augment == "simple":
                    x = augment_simple(x, pad, augment_rng)
                with precision.autocast():
                    logits = model(model_inputs(x, mean, std))
                    loss = F.cross_entropy(logits.float(), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                precision.backward_and_step(loss, optimizer)
                scheduler.step()
        return run

    # the largest batch whose step stays within step_seconds: probe from 2 images up, x4 a time
    size = min(2, top)
    timed(steps(size, 1), sync)  # warm-up
    took = timed(steps(size, 1), sync)
    while size < top and took * min(top, 4 * size) / size <= 2 * step_seconds:
        size = min(top, 4 * size)
        took = timed(steps(size, 1), sync)
    cap = size if took >= step_seconds else max(size, int(step_seconds * size / took))
    batches = {batch: min(batch, cap) for batch in target.batch_sizes}
    rates: dict[int, tuple[float, int, float]] = {}
    for size in sorted(set(batches.values())):
        warm = timed(steps(size, 1), sync)
        count = int(min(200, max(3, seconds / max(warm, 1e-6))))
        took = timed(steps(size, count), sync)
        rates[size] = (took / (count * size), count, took)

    def evaluation(n: int) -> Callable[[], None]:
        x = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8).to(device)
        y = torch.randint(0, classes, (n,), generator=gen).to(device)
        return lambda: evaluate(model, x, y, mean, std, eval_batch_size)

    # eval: a fixed cost per call (both spaces call once per checkpoint) plus a cost per
    # sample, from two sizes: 2 samples, and as many as fit about seconds / 2 (at most a batch)
    small = evaluation(2)
    small()  # warm-up
    call = min(timed(small, sync) for _ in range(3))
    n_eval = int(min(eval_batch_size, max(4, seconds / 2 / max(call / 2, 1e-9))))
    run_eval = evaluation(n_eval)
    run_eval()  # warm-up
    took = min(timed(run_eval, sync) for _ in range(2))
    eval_rate = max(took - call, 0.0) / (n_eval - 2)
    eval_call = max(call - 2 * eval_rate, 0.0)
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return [{
        "arch": spec.arch, "model_size": json.loads(size_key(spec.model_size)),
        "input_shape": list(shape), "classes": classes, "batch_size": batch,
        "timed_batch": batches[batch], "precision": spec.precision, "threads": threads,
        "optimizer": spec.optimizer, "augment": spec.augment,
        "train_seconds_per_sample": rates[batches[batch]][0],
        "eval_seconds_per_sample": eval_rate, "eval_seconds_per_call": eval_call,
        "eval_batch": n_eval,
        "setup_seconds": setup, "steps_timed": rates[batches[batch]][1],
        "seconds_timed": round(rates[batches[batch]][2], 3),
    } for batch in target.batch_sizes]


def device_name(device: Any) -> str:
    """A readable name of the device: the GPU's, or the CPU's model from /proc/cpuinfo."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibrate(specs: Sequence[Any], input_shape: Sequence[int], classes: int, device_type: str,
              *, eval_batch_size: int, threads: int | None = None, seconds: float = 2.0,
              step_seconds: float = 1.0, padding: int | None = None,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """A calibration table (not yet merged with any file) for every network of `specs` on a
    device of this type; `threads`: torch CPU threads during the timings (None: as they are)."""
    import torch

    from lowdim.device import resolve_device

    if device_type == "cuda" and not torch.cuda.is_available():
        raise CalibrationError("--device cuda: this machine has no CUDA device; calibrate on "
                               "the machine whose GPU will train")
    device = resolve_device(device_type)
    before = torch.get_num_threads()
    entries: list[dict[str, Any]] = []
    try:
        if device.type == "cpu" and threads:
            torch.set_num_threads(threads)
        for target in targets(specs, mixed=device.type == "cuda"):
            if progress:
                progress(f"calibrating {target.spec.arch} ({target.spec.precision}, batch "
                         f"{', '.join(map(str, target.batch_sizes))}) on {device.type}")
            now = os.getloadavg()[0]
            entries += [{**entry, "load_average": round(now, 2)} for entry in measure_target(
                target, input_shape, classes, device, eval_batch_size=eval_batch_size,
                seconds=seconds, step_seconds=step_seconds, padding=padding)]
    finally:
        torch.set_num_threads(before)
    return {"format": FORMAT, "device": device.type, "device_name": device_name(device),
            "torch": torch.__version__, "measured": date.today().isoformat(),
            "cores": os.cpu_count(), "entries": entries}


def write_table(table: Mapping[str, Any], path: str | Path) -> Path:
    """Merge `table` into the table at `path` (when there is one) and write it atomically."""
    from lowdim.store.atomic import write_json

    path = Path(path)
    old = read_table(path) if path.is_file() else None
    merged = merge_tables(old, table)
    write_json(merged, path)
    return path
