"""Training throughput: one run at a time (authors' loader, resident data) versus packed runs.

For each architecture, in one process on one device, the same runs (differing in seed) train
three ways; the script prints training images per second summed over the runs, and ratios:

  loader    one run at a time with the authors' style of input pipeline: a DataLoader over CPU
            memory with torchvision per-sample transforms (uint8 -> float, random crop with padding,
            horizontal flip, normalize), then a host-to-device copy of every batch. It records no
            checkpoints, which favours it;
  resident  one run at a time with `train_run` (uint8 data on the device, batched augmentation,
            checkpoint predictions on the evaluation subsets);
  packed    the runs in packs of --pack-size with `train_pack` (one vmapped step per pack).

Each run trains --steps optimizer steps at --batch-size on random CIFAR-shaped images (or on the
digits), after an untimed warm-up of each way; --repeat keeps the fastest of several timings (for
shared machines). With --peak-tflops, the achieved FLOP rate of each way (forward + backward FLOPs
counted by torch.utils.flop_counter) is shown as a share of it.

    python benchmarks/training.py                                # paper sizes, GPU if present
    python benchmarks/training.py --device cpu --sizes quick --dataset digits --steps 40 --runs 4
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from lowdim.config.profile import load_profile
from lowdim.data import default_padding
from lowdim.device import resolve_device
from lowdim.store.records import RunSpec
from lowdim.training.packed import SpeedOptions, float32_mode, split_evenly, train_pack
from lowdim.training.run import DeviceData, cosine_factor, init_model, make_optimizer, train_run

LR = {"sgd": 0.1, "sgdn": 0.1, "adam": 0.001}


class AuthorsStyleDataset(torch.utils.data.Dataset):
    """uint8 images (N, C, H, W) in CPU memory, transformed one sample at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: np.ndarray,
                 std: np.ndarray, augment: bool, padding: int) -> None:
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)
        steps = [v2.ToDtype(torch.float32, scale=True)]
        if augment:
            steps += [v2.RandomCrop(images.shape[-1], padding=padding), v2.RandomHorizontalFlip()]
        steps.append(v2.Normalize(mean.tolist(), std.tolist()))
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def train_with_loader(spec: RunSpec, loader: torch.utils.data.DataLoader,
                      input_shape: tuple[int, ...], num_classes: int,
                      device: torch.device) -> None:
    """One run, the authors' way: batches from the loader, copied to the device each step."""
    model = init_model(spec, input_shape, num_classes, device)
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.lr, spec.weight_decay)
    total = spec.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_factor(s, total))
    model.train()
    for _epoch in range(spec.epochs):
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            loss = F.cross_entropy(model(images).float(), labels)
            if not torch.isfinite(loss):
                return
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Seconds `fn()` takes, with the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def training_flops(spec: RunSpec, input_shape: tuple[int, ...], num_classes: int,
                   device: torch.device) -> float:
    """Forward + backward FLOPs of one training image (counted on a batch of the run's size)."""
    model = init_model(spec, input_shape, num_classes, device).train()
    images = torch.randn(spec.batch_size, *input_shape, device=device)
    labels = torch.zeros(spec.batch_size, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(images), labels).backward()
    return counter.get_total_flops() / spec.batch_size


def make_data(args, device: torch.device) -> tuple[DeviceData, np.ndarray, np.ndarray]:
    """Device data (small evaluation subsets) and the CPU training arrays for the loader."""
    if args.dataset == "digits":
        from lowdim.data import load_source, prepare

        prepared = prepare(load_source("digits", test_fraction=0.25, split_seed=2),
                           args.eval_size, args.eval_size, 0)
        images, labels = prepared.train_images, prepared.train_labels
        mean, std = prepared.mean.astype(np.float32), prepared.std.astype(np.float32)
    else:
        shape = tuple(int(s) for s in args.shape.split(","))
        rng = np.random.default_rng(0)
        n = args.steps * args.batch_size  # one epoch of exactly --steps steps
        images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.int64)
        mean = np.full(shape[0], 0.5, np.float32)
        std = np.full(shape[0], 0.25, np.float32)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    k = min(args.eval_size, len(labels))
    data = DeviceData(train_images=t(images), train_labels=t(labels),
                      eval_images={"train": t(images[:k]), "test": t(images[-k:])},
                      eval_labels={"train": t(labels[:k]), "test": t(labels[-k:])},
                      mean=t(mean), std=t(std), num_classes=10)
    return data, images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--archs", default="fc,allcnn,wr-10-4-8,convmixer,vit")
    parser.add_argument("--sizes", default="paper", choices=["paper", "quick"],
                        help="model sizes: the paper's (B2) or the quick profile's")
    parser.add_argument("--dataset", default="random", choices=["random", "digits"])
    parser.add_argument("--shape", default="3,32,32", help="image shape of the random data")
    parser.add_argument("--optimizer", default="sgdn", choices=sorted(LR))
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    parser.add_argument("--runs", type=int, default=16, help="runs per architecture")
    parser.add_argument("--pack-size", type=int, default=None, help="default: --runs")
    parser.add_argument("--augment", default="simple", choices=["none", "simple"])
    parser.add_argument("--eval-size", type=int, default=200, help="images per evaluation subset")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: half the CPU cores on CUDA, else 0)")
    parser.add_argument("--ways", default="loader,resident,packed")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak rate for the maths used, to print shares")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each way this many times and keep the fastest (shared machines)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    options = SpeedOptions(channels_last=args.channels_last, compile=args.compile,
                           tf32=args.tf32, bf16=args.bf16)
    workers = args.workers if args.workers is not None else (
        (os.cpu_count() or 2) // 2 if device.type == "cuda" else 0)
    ways = args.ways.split(",")
    data, images, labels = make_data(args, device)
    input_shape = tuple(data.train_images.shape[1:])
    models = load_profile("profiles/quick.yaml").models if args.sizes == "quick" else {}
    padding = default_padding(input_shape[1])
    iters = math.ceil(len(labels) / args.batch_size)
    epochs = max(1, math.ceil(args.steps / iters))
    steps = epochs * iters
    pack_size = args.pack_size or args.runs
    dataset = AuthorsStyleDataset(images, labels, data.mean.cpu().numpy(),
                                  data.std.cpu().numpy(), args.augment == "simple", padding)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    short_loader = torch.utils.data.DataLoader(  # two batches, for warming up
        torch.utils.data.Subset(dataset, range(2 * args.batch_size)),
        batch_size=args.batch_size, num_workers=0)
    short = replace(data, train_images=data.train_images[:2 * args.batch_size],
                    train_labels=data.train_labels[:2 * args.batch_size])

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"torch {torch.__version__}, device {device} ({gpu}), {torch.get_num_threads()} CPU "
          f"threads, {workers} loader workers; {args.dataset} {input_shape}, batch "
          f"{args.batch_size}, {steps} steps x {args.runs} runs per way, packs of {pack_size}, "
          f"{args.optimizer}, augment {args.augment}, sizes {args.sizes}, options {options}")
    header = f"{'arch':<10} {'params':>8} {'GFLOP/img':>9} " + " ".join(
        f"{w + ' img/s':>15}" for w in ways)
    print(header + "   ratios")
    for arch in args.archs.split(","):
        spec = RunSpec(arch=arch, optimizer=args.optimizer, batch_size=args.batch_size,
                       base_lr=LR[args.optimizer], lr=LR[args.optimizer], weight_decay=0.0,
                       augment=args.augment, init="default", epochs=epochs, seed=0,
                       model_size=dict(models.get(arch, {})))
        specs = [replace(spec, seed=42 + k) for k in range(args.runs)]
        warm = [replace(s, epochs=1) for s in specs[:pack_size]]

        def loader_way(specs=specs, loader=loader):
            for s in specs:
                train_with_loader(s, loader, input_shape, data.num_classes, device)

        def resident_way(specs=specs, data=data):
            for s in specs:
                train_run(s, data, eval_batch_size=args.eval_size)

        def packed_way(specs=specs, data=data):
            for pack in split_evenly(specs, pack_size):
                train_pack(pack, data, eval_batch_size=args.eval_size, options=options)

        run = {"loader": loader_way, "resident": resident_way, "packed": packed_way}
        warmups = {"loader": lambda w=warm: loader_way(w[:1], short_loader),
                   "resident": lambda w=warm: resident_way(w[:1], short),
                   "packed": lambda w=warm: packed_way(w, short)}
        throughput = {}
        with float32_mode(device, options.tf32):
            for way in ways:
                timed(warmups[way], device)
                seconds = min(timed(run[way], device) for _ in range(args.repeat))
                throughput[way] = args.runs * steps * args.batch_size / seconds
        model = init_model(spec, input_shape, data.num_classes, torch.device("cpu"))
        params = sum(p.numel() for p in model.parameters())
        flops = training_flops(spec, input_shape, data.num_classes, device)
        cells = []
        for way in ways:
            cell = f"{throughput[way]:>15,.0f}"
            if args.peak_tflops:
                cell += f" ({100 * flops * throughput[way] / (args.peak_tflops * 1e12):.1f}%)"
            cells.append(cell)
        ratios = [f"{b}/{a} {throughput[b] / throughput[a]:.2f}x"
                  for i, a in enumerate(ways) for b in ways[i + 1:]]
        print(f"{arch:<10} {params / 1e6:>7.3f}M {flops / 1e9:>9.4f} " + " ".join(cells)
              + "   " + ", ".join(ratios), flush=True)


if __name__ == "__main__":
    main()
