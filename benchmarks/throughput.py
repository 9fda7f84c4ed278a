"""Training and evaluation throughput of the paper's six architectures at the paper's sizes
(docs/study.md B2), on CIFAR-shaped random input, with FLOP counts and the paper grid's cost.

For each architecture: images/s of a training step (forward, backward, SGD-Nesterov step) and
of eval-mode inference, measured on this machine's device; conv and matmul FLOPs per image of
inference (torch's FlopCounterMode, elementwise work not counted), a training image taken as 3x
that (forward plus a backward of twice its cost: the usual estimate; the counter itself counts
ConvMixer's depthwise-convolution backward as if it were dense, 7.3 GFLOP per image instead of
about 0.6); and, from those, the cost of the
paper's runs (B3-B6: 200 epochs of 50,000 images, about 67 checkpoints, each evaluating 50,000
train and 10,000 test images): hours per run as measured here, and GPU-hours estimated from
FLOPs at an assumed sustained GPU rate (--gpu-tflops). Times are printed as ratios against the
first architecture (the baseline, measured in the same run).

    python benchmarks/throughput.py [--batch 200] [--step-tflop 0.2] [--seconds 5] [--threads N]
                                    [--gpu-tflops 10] [--arch fc vit ...]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lowdim.models import PAPER_ARCHITECTURES, build_model, parameter_count

SHAPE = (3, 32, 32)
CLASSES = 10
TRAIN_IMAGES, TEST_IMAGES, EPOCHS, CHECKPOINTS = 50_000, 10_000, 200, 67  # docs/study.md B3-B5
GRID_RUNS = 2_296  # docs/study.md B6


def random_batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-shaped standardized images (batch, 3, 32, 32) and labels (batch,)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, *SHAPE, generator=gen).to(device)
    labels = torch.randint(0, CLASSES, (batch,), generator=gen).to(device)
    return images, labels


def forward_flops(model: torch.nn.Module, images: torch.Tensor) -> float:
    """Conv/matmul FLOPs per image of eval-mode inference on `images` (B, 3, 32, 32)."""
    counter = FlopCounterMode(display=False)
    model.eval()
    with counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() / len(images)


def images_per_second(step, batch: int, seconds: float, device: torch.device) -> float:
    """Throughput of `step()` on `batch` images: one warm-up call, then calls for `seconds`."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        step()
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
    return calls * batch / (time.perf_counter() - start)


def measure(name: str, batch: int, step_flops: float, seconds: float,
            device: torch.device) -> dict[str, float]:
    """Parameters, FLOPs per image and images/s (train step, eval) of one architecture, on
    batches of at most `batch` images and at most `step_flops` per training step."""
    torch.manual_seed(0)
    model = build_model(name, SHAPE, CLASSES).to(device)
    forward = forward_flops(model, random_batch(2, device)[0])
    batch = max(2, min(batch, int(step_flops // (3 * forward))))
    images, labels = random_batch(batch, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def train_step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step() -> None:
        model(images)

    model.train()
    train_ips = images_per_second(train_step, batch, seconds, device)
    model.eval()
    eval_ips = images_per_second(eval_step, batch, seconds, device)
    return {"batch": batch, "params": parameter_count(model), "fwd_flops": forward,
            "train_flops": 3 * forward,
            "train_ips": train_ips, "eval_ips": eval_ips}


def run_cost(m: dict[str, float], gpu_flops: float) -> tuple[float, float]:
    """Hours of one paper run at the measured throughput, and GPU-hours from FLOPs."""
    train_images = EPOCHS * TRAIN_IMAGES
    eval_images = CHECKPOINTS * (TRAIN_IMAGES + TEST_IMAGES)
    measured = (train_images / m["train_ips"] + eval_images / m["eval_ips"]) / 3600
    flops = train_images * m["train_flops"] + eval_images * m["fwd_flops"]
    return measured, flops / gpu_flops / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=200, help="images per step (paper: 200)")
    parser.add_argument("--step-tflop", type=float, default=0.2,
                        help="smaller batches for big networks: at most this many TFLOP a step")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measure")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--gpu-tflops", type=float, default=10.0,
                        help="assumed sustained GPU rate on these networks, TFLOP/s")
    parser.add_argument("--arch", nargs="*", default=list(PAPER_ARCHITECTURES))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} torch threads"
    print(f"torch {torch.__version__} on {where}; costs assume "
          f"{EPOCHS} epochs x {TRAIN_IMAGES} images + {CHECKPOINTS} checkpoints x "
          f"{TRAIN_IMAGES + TEST_IMAGES} eval images per run, {GRID_RUNS} runs split evenly "
          f"over {len(args.arch)} architectures, GPU at {args.gpu_tflops:g} TFLOP/s sustained")
    header = (f"{'arch':<11}{'batch':>6}{'params':>8}{'GFLOP/img':>10}{'train img/s':>12}"
              f"{'eval img/s':>11}{'time/img':>9}{'GFLOP/s':>8}{'h/run':>8}{'GPU-h/run':>10}"
              f"{'GPU-h grid':>11}")
    print(header)
    per_arch = GRID_RUNS / len(args.arch)
    baseline, total = None, 0.0
    for name in args.arch:
        m = measure(name, args.batch, args.step_tflop * 1e12, args.seconds, device)
        baseline = baseline or m["train_ips"]
        hours, gpu_hours = run_cost(m, args.gpu_tflops * 1e12)
        total += gpu_hours * per_arch
        print(f"{name:<11}{m['batch']:>6}{m['params'] / 1e6:>7.2f}M{m['fwd_flops'] / 1e9:>10.3f}"
              f"{m['train_ips']:>12.1f}{m['eval_ips']:>11.1f}{baseline / m['train_ips']:>8.2f}x"
              f"{m['train_flops'] * m['train_ips'] / 1e9:>8.1f}{hours:>8.2f}{gpu_hours:>10.3f}"
              f"{gpu_hours * per_arch:>11.1f}", flush=True)
    print(f"grid total: {total:.0f} GPU-hours at {args.gpu_tflops:g} TFLOP/s "
          "(time/img: a training image's time relative to the first architecture; "
          "GFLOP/s: the rate achieved here in training)")


if __name__ == "__main__":
    main()
