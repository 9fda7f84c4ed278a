"""How close the bill's training-time estimate (lowdim.tools.plan) comes to training itself.

Calibrates two networks of a profile here (as `python -m lowdim.tools.plan --calibrate` does),
then trains one run of each with `train_run` in this process, one thread, right after, and prints
the estimated and measured seconds and their ratio (measured / estimated; the faster of two
trainings, since other jobs may share the cores):

    .venv/bin/python benchmarks/plan_accuracy.py                 # tiny: allcnn, wr-10-1-4
    .venv/bin/python benchmarks/plan_accuracy.py --profile profiles/quick.yaml --arch fc vit
"""

from __future__ import annotations

import argparse
import time

import torch

from lowdim.config.profile import load_profile
from lowdim.data import load_source, prepare
from lowdim.tools import plan
from lowdim.tools.calibration import calibrate, lookup
from lowdim.training.run import DeviceData, train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="profiles/tiny.yaml")
    ap.add_argument("--arch", nargs="+", default=["allcnn", "wr-10-1-4"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    config = load_profile(args.profile)
    work = plan.workload(config)
    chosen = {}
    for spec, t in zip(work.specs, work.checkpoints, strict=True):
        if spec.arch in args.arch:
            chosen.setdefault(spec.arch, (spec, t))
    table = calibrate([s for s, _ in chosen.values()], work.input_shape, work.classes, "cpu",
                      eval_batch_size=config.train.eval_batch_size, threads=1, seconds=1.0)
    d = config.data
    prepared = prepare(load_source(d.dataset, root=d.root, download=d.download,
                                   test_fraction=d.test_fraction, split_seed=d.split_seed),
                       d.eval_train_size, d.eval_test_size, d.eval_seed)
    data = DeviceData.from_prepared(prepared, torch.device("cpu"))
    train_run(next(iter(chosen.values()))[0], data)  # one-off start-up costs
    print(f"{'arch':<12} {'estimated s':>12} {'measured s':>11} {'ratio':>6}")
    for arch, (spec, t) in chosen.items():
        rate = lookup(table, arch, spec.model_size, work.input_shape, work.classes,
                      spec.batch_size, spec.precision, 1)
        estimated = plan.run_seconds(rate, spec, work.n_train, t, work.samples)
        took = []
        for _ in range(2):
            start = time.perf_counter()
            train_run(spec, data, eval_batch_size=config.train.eval_batch_size)
            took.append(time.perf_counter() - start)
        print(f"{arch:<12} {estimated:12.2f} {min(took):11.2f} {min(took) / estimated:6.2f}")


if __name__ == "__main__":
    main()
