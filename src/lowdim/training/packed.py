"""Packed training (issue 7): several runs of one architecture in one optimizer step.

Runs that share an architecture (with its sizes), optimizer, batch size, epochs, learning-rate
schedule and label smoothing train together.
Their parameters are stacked, one row per run, and the forward pass is `torch.func.vmap` over
`functional_call` with each run's own parameters, BatchNorm buffers and minibatch. Everything else
stays per run, exactly as `train.train_run` does it: seed and initialisation (so `init` may differ
inside a pack), data order, augmentation draws (so `augment` may differ), learning rate (its cosine
schedule), weight decay and optimizer state. The optimizers are torch.optim's single-tensor updates
(sgd, sgdn, adam) written for the stacked rows with a per-run learning rate and weight decay. A
packed run therefore follows the trajectory of the same run trained alone, up to floating-point
rounding (vmap computes convolutions as grouped convolutions, linear layers as batched matmuls);
the tests hold predictions equal within 1e-5 at every checkpoint.

BatchNorm: torch.func's documented limitation is an in-place update of an *unbatched* running
statistic by a batched input (``regular.add_(batched)``), which is why its recipes drop running
statistics. Here the buffers are stacked and vmapped like the parameters, so each run's running
mean and variance are batched tensors updated in place under vmap: running statistics are kept per
run and evaluation uses eval-mode BatchNorm, as for a single run.

A run whose loss becomes NaN or infinite ends at that step, exactly as `train_run` ends it
(status ``diverged``, checkpoints up to there); the pack drops its row and the others go on.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from lowdim.config.train import TrainConfig
from lowdim.data import normalize
from lowdim.store.records import RunSpec
from lowdim.training.precision import trains_alone
from lowdim.training.run import (
    SPACES,
    DeviceData,
    Evaluation,
    RunResult,
    checkpoint_steps,
    epoch_order,
    init_model,
    iterations_per_epoch,
    lr_factor,
    run_generators,
    step_progress,
    summarize,
    training_loss,
)
from lowdim.training.settings import crop_padding, observed_settings, provenance, run_padding

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults (docs/study.md B3: default betas and eps)
ADAM_EPS = 1e-8
NESTEROV_MOMENTUM = 0.9
MAX_AUTO_PACK = 64  # a cap on auto-sized packs: larger ones mostly cost memory
MEMORY_SHARE = 0.6  # share of the free device memory an auto-sized pack may plan to use


@dataclass(frozen=True)
class SpeedOptions:
    """Options that change speed, not the maths; `bf16` is the exception, an explicit opt-in."""

    channels_last: bool = False  # NHWC activations for convolutions (tensor-core friendly)
    compile: bool = False        # torch.compile the packed forward and loss
    tf32: bool = False           # TF32 tensor cores for CUDA matmuls and convolutions
    bf16: bool = False           # bfloat16 autocast of the forward pass: changes the maths

    @property
    def any(self) -> bool:
        """True when any option is switched on."""
        return self.channels_last or self.compile or self.tf32 or self.bf16

    @classmethod
    def from_config(cls, train: TrainConfig) -> SpeedOptions:
        """The options of the `train` section."""
        return cls(channels_last=train.channels_last, compile=train.compile, tf32=train.tf32,
                   bf16=train.bf16)


def check_speed_options(options: SpeedOptions, device: torch.device) -> None:
    """Raise ValueError for an option that cannot apply on `device` (tf32 and bf16 need CUDA)."""
    if device.type == "cuda":
        return
    if options.tf32:
        raise ValueError(f"train.tf32 = true, but training runs on {device.type}: TF32 is a "
                         "tensor-core format of CUDA GPUs; set train.tf32: false")
    if options.bf16:
        raise ValueError(f"train.bf16 = true, but training runs on {device.type}: bf16 autocast "
                         "is offered for CUDA only (and changes the maths); set train.bf16: false")


@contextmanager
def float32_mode(device: torch.device, tf32: bool) -> Iterator[None]:
    """On CUDA, strict fp32 (tf32=False) or TF32 (True) for matmuls and cuDNN; restored after."""
    # PyTorch's own default is TF32 convolutions but fp32 matmuls; strict fp32 for both is the
    # reference maths, and `tf32` switches both to tensor cores.
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# --------------------------------------------------------------------------- grouping


def pack_key(spec: RunSpec) -> tuple:
    """What runs of one pack must share: architecture and sizes, optimizer, batch size, epochs,
    precision (only fp32 packs: lowdim.training.precision), schedule and label smoothing."""
    sizes = tuple(sorted((k, tuple(v) if isinstance(v, list | tuple) else v)
                         for k, v in spec.model_size.items()))
    return (spec.arch, sizes, spec.optimizer, spec.batch_size, spec.epochs, spec.precision,
            spec.schedule, spec.label_smoothing)


def compatible_groups(specs: Sequence[RunSpec]) -> list[list[RunSpec]]:
    """The specs grouped by `pack_key`, groups and members in first-seen order."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        groups.setdefault(pack_key(spec), []).append(spec)
    return list(groups.values())


def split_evenly(group: Sequence[RunSpec], pack_size: int) -> list[list[RunSpec]]:
    """`group` in the fewest packs of at most `pack_size`, sizes differing by at most one."""
    if isinstance(pack_size, bool) or not isinstance(pack_size, int) or pack_size < 1:
        raise ValueError(f"pack_size = {pack_size!r}: must be a positive integer")
    if not group:
        return []
    count = math.ceil(len(group) / pack_size)
    base, extra = divmod(len(group), count)
    packs, start = [], 0
    for j in range(count):
        size = base + (j < extra)
        packs.append(list(group[start:start + size]))
        start += size
    return packs


def pack_size_for_memory(free_bytes: int, per_run_bytes: int, share: float = MEMORY_SHARE,
                         limit: int = MAX_AUTO_PACK) -> int:
    """Runs that fit in `share` of `free_bytes` at `per_run_bytes` each, between 1 and `limit`."""
    if per_run_bytes <= 0:
        raise ValueError(f"per_run_bytes = {per_run_bytes}: must be positive")
    return max(1, min(limit, int(share * free_bytes) // per_run_bytes))


def uses_packing(pack_size: int | str, options: SpeedOptions, device: torch.device) -> bool:
    """Whether to train with `train_packs` rather than one `train_run` at a time."""
    # On a CPU 'auto' means one run at a time, so the CPU path (and its bytes) stays as it was.
    one_at_a_time = pack_size == 1 or (pack_size == "auto" and device.type != "cuda")
    return not one_at_a_time or options.any


# --------------------------------------------------------------------------- pack state


def _stacked_rows(models: Sequence[torch.nn.Module]) -> torch.Tensor:
    """Every parameter of each model, flattened in module order: (P, N)."""
    return torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                        for m in models])


@dataclass
class PackState:
    """The active runs of a pack, one row each: parameters, buffers, optimizer state, RNGs."""

    results: list[RunResult]
    flat: torch.Tensor                 # (P, N) parameters, a leaf that requires grad
    buffers: dict[str, torch.Tensor]   # name -> (P, *shape), BatchNorm statistics
    order_rngs: list[torch.Generator]
    augment_rngs: list[torch.Generator]
    base_lr: torch.Tensor              # (P, 1) float64, before the cosine factor
    weight_decay: torch.Tensor | None  # (P, 1) float64; None when every run has none
    first_bad_step: torch.Tensor       # (P,) int64: first step with a non-finite loss, or -1
    slots: dict[str, torch.Tensor] = field(default_factory=dict)  # optimizer state, (P, N)
    order: torch.Tensor | None = None  # (P, n_train) this epoch's sample order

    @property
    def specs(self) -> list[RunSpec]:
        """The specs of the active runs."""
        return [r.spec for r in self.results]

    def keep(self, rows: Sequence[int]) -> None:
        """Drop every run not in `rows` (indices into the active runs)."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.flat.device)
        self.results = [self.results[i] for i in rows]
        self.order_rngs = [self.order_rngs[i] for i in rows]
        self.augment_rngs = [self.augment_rngs[i] for i in rows]
        self.flat = self.flat.detach()[index].requires_grad_(True)
        self.base_lr, self.first_bad_step = self.base_lr[index], self.first_bad_step[index]
        if self.weight_decay is not None:
            self.weight_decay = self.weight_decay[index]
        self.buffers = {k: v[index] for k, v in self.buffers.items()}
        self.slots = {k: v[index] for k, v in self.slots.items()}
        if self.order is not None:
            self.order = self.order[index]


def per_run_column(values: Sequence[float], device: torch.device) -> torch.Tensor:
    """Per-run scalars as a (P, 1) float64 column on `device`."""
    return torch.tensor(values, dtype=torch.float64).view(-1, 1).to(device)


def optimizer_update(name: str, flat: torch.Tensor, grad: torch.Tensor,
                     slots: dict[str, torch.Tensor], lr: torch.Tensor,
                     weight_decay: torch.Tensor | None, step: int) -> None:
    """One torch.optim step on stacked rows (P, N) in place; lr, weight_decay: (P, 1) float64.

    The single-tensor algorithms of torch.optim: `sgd` (no momentum), `sgdn` (momentum 0.9,
    Nesterov, no dampening) and `adam` (default betas and eps, coupled L2 decay); `step` counts
    the steps already taken (0 for the first); weight_decay None means 0 for every run. The
    per-run scalars are computed in float64 and rounded once, as torch.optim's Python floats are.
    """
    with torch.no_grad():
        if weight_decay is not None:
            grad = grad.addcmul(flat, weight_decay.to(flat.dtype))  # grad + wd * param
        if name == "sgd":
            flat.addcmul_(grad, (-lr).to(flat.dtype))
        elif name == "sgdn":
            buf = slots.get("momentum")
            if buf is None:
                buf = slots["momentum"] = grad.clone()
            else:
                buf.mul_(NESTEROV_MOMENTUM).add_(grad)
            flat.addcmul_(grad.add(buf, alpha=NESTEROV_MOMENTUM), (-lr).to(flat.dtype))
        elif name == "adam":
            beta1, beta2 = ADAM_BETAS
            exp_avg = slots.setdefault("exp_avg", torch.zeros_like(flat))
            exp_avg_sq = slots.setdefault("exp_avg_sq", torch.zeros_like(flat))
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            t = float(step + 1)
            bias_correction1, bias_correction2 = 1 - beta1**t, 1 - beta2**t
            neg_step_size = (-lr / bias_correction1).to(flat.dtype)
            denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(ADAM_EPS)
            flat.add_(exp_avg * neg_step_size / denom)
        else:
            raise ValueError(f"unknown optimizer {name!r}: use sgd, sgdn or adam")


def augment_pack(images: torch.Tensor, padding: int, generators: Sequence[torch.Generator],
                 enabled: Sequence[bool]) -> torch.Tensor:
    """uint8 (P, B, C, H, W) -> same: each run's batch augmented as `augment_simple` does it.

    Run p draws its crops and flips from generators[p] in augment_simple's order (rows, columns,
    flips), so its images equal augment_simple(images[p], padding, generators[p]); runs with
    enabled[p] False are left untouched and draw nothing. One gather serves the whole pack.
    """
    if not any(enabled):
        return images
    runs, batch, channels, height, width = images.shape
    device = images.device
    tops, lefts, flips = [], [], []
    for generator, on in zip(generators, enabled, strict=True):
        if on:
            draw = {"generator": generator, "device": generator.device}
            tops.append(torch.randint(0, 2 * padding + 1, (batch,), **draw).to(device))
            lefts.append(torch.randint(0, 2 * padding + 1, (batch,), **draw).to(device))
            flips.append((torch.rand((batch,), **draw) < 0.5).to(device))
        else:  # the identity crop of the padded image
            tops.append(torch.full((batch,), padding, dtype=torch.long, device=device))
            lefts.append(tops[-1])
            flips.append(torch.zeros((batch,), dtype=torch.bool, device=device))
    top, left, flipped = torch.cat(tops), torch.cat(lefts), torch.cat(flips)
    padded = F.pad(images.reshape(runs * batch, channels, height, width),
                   (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(height, device=device)
    cols_forward = torch.arange(width, device=device)
    cols = left[:, None] + torch.where(flipped[:, None], cols_forward.flip(0), cols_forward)
    index = torch.arange(runs * batch, device=device)[:, None, None]
    out = padded[index, :, rows[:, :, None], cols[:, None, :]]  # (P*B, H, W, C)
    return out.permute(0, 3, 1, 2).reshape(images.shape).contiguous()


def _pack_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(P, B, C, H, W) stored as (B, H, W, P, C), so vmap's grouped conv input is NHWC."""
    return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)


# --------------------------------------------------------------------------- the trainer


class PackTrainer:
    """Trains a pack of compatible runs step by step; `train_pack` drives it through the epochs."""

    def __init__(self, specs: Sequence[RunSpec], data: DeviceData, *,
                 eval_batch_size: int = 1000, augment_padding: int | None = None,
                 options: SpeedOptions = SpeedOptions(),
                 pack_size: int | str | None = None) -> None:
        if not specs:
            raise ValueError("a pack needs at least one run")
        alone = [s for s in specs if trains_alone(s)]
        if alone:
            raise ValueError(f"run {alone[0].run_id} has precision {alone[0].precision}: packs "
                             "train fp32 only (a per-run loss scale in a pack is not "
                             "implemented); train it with train_run, as launch_local does")
        keys = {pack_key(s) for s in specs}
        if len(keys) > 1:
            raise ValueError("runs of one pack must share architecture, sizes, optimizer, batch "
                             "size, epochs, precision, schedule and label smoothing; got "
                             f"{len(keys)} different kinds: group them with compatible_groups "
                             "first")
        self.device = data.train_images.device
        check_speed_options(options, self.device)
        self.data, self.options, self.eval_batch_size = data, options, eval_batch_size
        self.n_train, *shape = data.train_images.shape
        self.spec = specs[0]
        self.iters = iterations_per_epoch(self.n_train, self.spec.batch_size)
        self.total = self.spec.epochs * self.iters
        self.lr_factor = lr_factor(self.spec, self.iters)
        self.checkpoints = set(checkpoint_steps(self.spec.epochs, self.iters).tolist())
        self.padding = crop_padding(augment_padding, shape[1])
        self.pack_size = len(specs) if pack_size is None else pack_size  # the setting recorded
        self.started = time.perf_counter()
        models = [init_model(s, tuple(shape), data.num_classes, self.device) for s in specs]
        generators = [run_generators(s.seed, self.device) for s in specs]
        self.state = PackState(
            results=[RunResult(spec=s, iters_per_epoch=self.iters) for s in specs],
            flat=_stacked_rows(models).requires_grad_(True),
            buffers={name: torch.stack([dict(m.named_buffers())[name] for m in models])
                     for name, _ in models[0].named_buffers()},
            order_rngs=[g[0] for g in generators], augment_rngs=[g[1] for g in generators],
            base_lr=per_run_column([s.lr for s in specs], self.device),
            weight_decay=(per_run_column([s.weight_decay for s in specs], self.device)
                          if any(s.weight_decay != 0 for s in specs) else None),
            first_bad_step=torch.full((len(specs),), -1, dtype=torch.long, device=self.device),
        )
        self.results = list(self.state.results)  # every run, in the order of `specs`
        self.shapes = [(name, p.shape) for name, p in models[0].named_parameters()]
        # The template only supplies the forward code; every tensor comes from the pack.
        self.template = copy.deepcopy(models[0]).to("meta")
        self._train_losses = self._compiled(self._losses)
        self._eval_logits = self._compiled(vmap(self._run_logits, in_dims=(0, 0, None)))
        self.step = 0

    def _compiled(self, fn: Callable) -> Callable:
        return torch.compile(fn) if self.options.compile else fn

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views (P, *shape) of each parameter into the stacked rows."""
        pieces = flat.split([math.prod(shape) for _, shape in self.shapes], dim=1)
        return {name: piece.view(len(flat), *shape)
                for (name, shape), piece in zip(self.shapes, pieces, strict=True)}

    def _run_logits(self, params: dict, buffers: dict, images: torch.Tensor) -> torch.Tensor:
        """One run's logits (B, K) of normalized images (B, C, H, W)."""
        # vmap has no batching rule for the fused attention kernels (it would loop over the
        # runs); the math kernel is plain batched matmuls and softmax.
        with (torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.options.bf16),
              sdpa_kernel(SDPBackend.MATH)):
            return functional_call(self.template, (params, buffers), (images,)).float()

    def _losses(self, flat: torch.Tensor, buffers: dict, images: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        """Each run's mean cross-entropy (P,) on its own batch (P, B, C, H, W), labels (P, B)."""
        logits = vmap(self._run_logits)(self._params(flat), buffers, images)
        smoothing = self.spec.label_smoothing
        return vmap(lambda x, y: training_loss(x, y, smoothing))(logits, labels)

    @property
    def active(self) -> int:
        """Runs still training."""
        return len(self.state.results)

    def begin_epoch(self) -> None:
        """Draw each active run's sample order for the next epoch."""
        self.state.order = torch.stack([
            epoch_order(self.n_train, rng, torch.device("cpu")) for rng in self.state.order_rngs
        ]).to(self.device)

    def train_step(self, i: int) -> None:
        """Batch `i` of the epoch: forward, divergence check, backward, optimizer step."""
        state, size = self.state, self.spec.batch_size
        batch = state.order[:, i * size:(i + 1) * size]  # (P, B)
        images = augment_pack(self.data.train_images[batch], self.padding, state.augment_rngs,
                              [s.augment == "simple" for s in state.specs])
        x = normalize(images.flatten(0, 1), self.data.mean, self.data.std).view(images.shape)
        if self.options.channels_last:
            x = _pack_channels_last(x)
        self.template.train()
        losses = self._train_losses(state.flat, state.buffers, x, self.data.train_labels[batch])
        # Noted on the device, read at the next check: no host sync per step. A run with a
        # non-finite loss only spoils its own rows (every op is per run) until it is dropped.
        state.first_bad_step = torch.where(
            (state.first_bad_step < 0) & ~torch.isfinite(losses), self.step, state.first_bad_step)
        (grad,) = torch.autograd.grad(losses.sum(), state.flat)
        optimizer_update(self.spec.optimizer, state.flat, grad, state.slots,
                         state.base_lr * self.lr_factor(self.step),
                         state.weight_decay, self.step)
        self.step += 1

    def drop_diverged(self) -> None:
        """End the runs whose loss became non-finite since the last check, as train_run ends
        them: status diverged at that step, checkpoints up to it (one host sync)."""
        first_bad = self.state.first_bad_step.tolist()
        if all(step < 0 for step in first_bad):
            return
        seconds = time.perf_counter() - self.started
        for result, step in zip(self.state.results, first_bad, strict=True):
            if step >= 0:
                result.status, result.diverged_at_step = "diverged", step + 1
                result.seconds = seconds
        self.state.keep([p for p, step in enumerate(first_bad) if step < 0])

    @torch.no_grad()
    def evaluate(self, space: str) -> list[Evaluation]:
        """Eval-mode predictions of every active run on one evaluation subset."""
        images, labels = self.data.eval_images[space], self.data.eval_labels[space]
        # About eval_batch_size images in flight in all, as for a single run.
        chunk = max(1, self.eval_batch_size // self.active)
        self.template.eval()
        parts = []
        for i in range(0, len(images), chunk):
            x = normalize(images[i:i + chunk], self.data.mean, self.data.std)
            if self.options.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self._eval_logits(self._params(self.state.flat.detach()),
                                       self.state.buffers, x)
            parts.append(F.log_softmax(logits, dim=-1))
        log_probs = torch.cat(parts, dim=1)  # (P, N, K)
        return [summarize(log_probs[p], labels) for p in range(self.active)]

    def checkpoint(self) -> None:
        """Record the current step's predictions for every active run."""
        evaluations = {space: self.evaluate(space) for space in SPACES}
        for p, result in enumerate(self.state.results):
            result.record(self.step, {space: evaluations[space][p] for space in SPACES})

    def finish(self) -> list[RunResult]:
        """Every run's result, in the order of the specs; the survivors' time is set now, and
        every run's settings and provenance."""
        seconds = time.perf_counter() - self.started
        for result in self.state.results:
            result.seconds = seconds
        opts = self.options
        for result in self.results:
            result.settings = observed_settings(
                self.device, eval_batch_size=self.eval_batch_size,
                padding=run_padding(result.spec.augment, self.padding), pack_size=self.pack_size,
                channels_last=opts.channels_last, compile=opts.compile, bf16=opts.bf16)
            result.provenance = provenance(self.device, bf16=opts.bf16,
                                           pack_runs=len(self.results))
        return self.results


def train_pack(specs: Sequence[RunSpec], data: DeviceData, *, eval_batch_size: int = 1000,
               augment_padding: int | None = None, options: SpeedOptions = SpeedOptions(),
               on_step: Callable[[int, int], None] | None = None,
               pack_size: int | str | None = None) -> list[RunResult]:
    """Train compatible runs together; each result as `train_run` would give it, in spec order.

    `seconds` of a run is the pack's wall time (for a diverged run, until its divergence was
    noticed: at the next checkpoint or epoch end). `pack_size` is the setting the pack was
    planned with, recorded in each run's settings (None: the pack's own size).
    """
    trainer = PackTrainer(specs, data, eval_batch_size=eval_batch_size,
                          augment_padding=augment_padding, options=options, pack_size=pack_size)
    with float32_mode(trainer.device, options.tf32):
        trainer.checkpoint()
        for _epoch in range(trainer.spec.epochs):
            trainer.begin_epoch()
            for i in range(trainer.iters):
                trainer.train_step(i)
                if trainer.step in trainer.checkpoints:
                    trainer.drop_diverged()
                    if not trainer.active:
                        return trainer.finish()
                    trainer.checkpoint()
                if on_step is not None:
                    on_step(trainer.step, trainer.total)
            trainer.drop_diverged()  # at least once an epoch, so a diverged pack stops early
            if not trainer.active:
                return trainer.finish()
        return trainer.finish()  # inside float32_mode: the settings record its TF32 state


# --------------------------------------------------------------------------- sizing and driving


def measure_run_bytes(spec: RunSpec, data: DeviceData, options: SpeedOptions,
                      eval_batch_size: int) -> int:
    """CUDA memory one more run adds to a pack: the growth of a training step from 1 to 2 runs."""
    peaks = []
    for runs in (1, 2):
        probe = [replace(spec, seed=spec.seed + k) for k in range(runs)]
        torch.cuda.synchronize(data.train_images.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(data.train_images.device)
        base = torch.cuda.memory_allocated(data.train_images.device)
        trainer = PackTrainer(probe, data, eval_batch_size=eval_batch_size, options=options)
        trainer.begin_epoch()
        trainer.train_step(0)
        trainer.train_step(1 % trainer.iters)  # the optimizer state exists after the first step
        peaks.append(torch.cuda.max_memory_allocated(data.train_images.device) - base)
        del trainer
    return max(peaks[1] - peaks[0], 1)


def auto_pack_size(spec: RunSpec, data: DeviceData, options: SpeedOptions = SpeedOptions(),
                   eval_batch_size: int = 1000) -> int:
    """Pack size for runs like `spec`: 1 on a CPU; on CUDA what fits in the free memory."""
    device = data.train_images.device
    if device.type != "cuda":
        return 1
    per_run = measure_run_bytes(spec, data, options, eval_batch_size)
    torch.cuda.empty_cache()  # the probes' cached blocks are free for the pack
    free, _total = torch.cuda.mem_get_info(device)
    return pack_size_for_memory(free, per_run)


def plan_packs(specs: Sequence[RunSpec], data: DeviceData, pack_size: int | str,
               options: SpeedOptions = SpeedOptions(),
               eval_batch_size: int = 1000) -> list[list[RunSpec]]:
    """The specs as packs: compatible runs together, at most `pack_size` ('auto': by memory)."""
    packs = []
    for group in compatible_groups(specs):
        size = (auto_pack_size(group[0], data, options, eval_batch_size) if pack_size == "auto"
                else pack_size)
        packs += split_evenly(group, min(size, len(group)))
    return packs


def train_packs(specs: Sequence[RunSpec], data: DeviceData, *, pack_size: int | str,
                options: SpeedOptions = SpeedOptions(), eval_batch_size: int = 1000,
                augment_padding: int | None = None, progress: bool = True) -> Iterator[RunResult]:
    """Train `specs` pack by pack (`plan_packs`), yielding each run's result as its pack ends."""
    packs = plan_packs(specs, data, pack_size, options, eval_batch_size)
    runs_bar = tqdm(total=len(specs), desc="runs", unit="run", disable=not progress)
    for pack in packs:
        runs_bar.set_postfix_str(f"{pack[0].arch} {pack[0].optimizer} x{len(pack)}")
        steps_bar, on_step = step_progress(progress)
        results = train_pack(pack, data, eval_batch_size=eval_batch_size,
                             augment_padding=augment_padding, options=options, on_step=on_step,
                             pack_size=pack_size)
        steps_bar.close()
        yield from results
        runs_bar.update(len(pack))
    runs_bar.close()
