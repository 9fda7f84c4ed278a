"""Candidate [smaller, larger] pairs for Figure 16: what each costs and whether the larger
network reaches each progress level no later than the smaller.

Trains every network of the pairs on the profile's grid (its optimizers, learning rates and
seeds) into a run store with the profile's `train` settings, as the train stage does, then
computes each checkpoint's progress lambda as the trajectories stage does (train space, the
profile's geodesic) and Figure 16's table of first epochs. A store given with --store keeps the
runs, so a second call only trains what is missing:

    python benchmarks/size_pair.py --pairs wr-10-1-8:wr-16-1-8,wr-10-2-8:wr-16-2-8 \
        --store /tmp/size-pair-runs

Seconds are `seconds` of each run's meta.json (training and evaluation; on the quick profile
two runs at a time).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
from _grid import prepared_data, profile_runs

from lowdim.analysis.analysis_set import build_analysis_set
from lowdim.analysis.size_pair import MILESTONES, larger_lead, progress_milestones
from lowdim.analysis.trajectories import checkpoint_progress
from lowdim.config.profile import load_profile
from lowdim.store.runs import read_meta
from lowdim.training.launch import launch


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """'a:b,c:d' -> [(a, b), (c, d)]."""
    pairs = [tuple(p.split(":")) for p in text.split(",")]
    bad = [p for p in pairs if len(p) != 2]
    if bad:
        raise SystemExit(f"--pairs: write each pair as smaller:larger, got {bad}")
    return pairs


def mean_seconds(store: Path, specs) -> pd.Series:
    """Mean `seconds` of one run, per architecture."""
    rows = [{"arch": s.arch, "seconds": read_meta(store, s.run_id)["seconds"]} for s in specs]
    return pd.DataFrame(rows).groupby("arch")["seconds"].mean()


def report(pair, milestones: pd.DataFrame, seconds: pd.Series) -> None:
    smaller, larger = pair
    lead = larger_lead(milestones, pair)
    print(f"\n{smaller} -> {larger}: {seconds[smaller]:.1f} s and {seconds[larger]:.1f} s per "
          f"run ({seconds[larger] / seconds[smaller]:.2f}x); the larger is no later in "
          f"{int((lead >= 0).sum())} and earlier in {int((lead > 0).sum())} of {len(lead)} "
          f"cells that every run reaches")
    mine = milestones[milestones["arch"].isin(pair)].assign(
        epoch=lambda t: t["mean_epoch"].map("{:.2f}".format).str.replace("nan", "-"),
        reached=lambda t: t["reached"].astype(str) + "/" + t["runs"].astype(str))
    table = mine.pivot(index=["level", "optimizer"], columns="arch", values=["epoch", "reached"])
    print(table.reindex(columns=[smaller, larger], level=1).to_string())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="profiles/quick.yaml")
    parser.add_argument("--pairs", default="wr-10-1-8:wr-16-1-8,wr-10-2-8:wr-16-2-8,"
                                           "wr-10-4-8:wr-16-4-8")
    parser.add_argument("--store", default=None, help="run store kept between calls")
    args = parser.parse_args()

    pairs = parse_pairs(args.pairs)
    cfg = load_profile(args.profile)
    archs = tuple(dict.fromkeys(a for pair in pairs for a in pair))
    specs = profile_runs(cfg, arch=archs)
    prepared = prepared_data(cfg)
    print(f"{cfg.profile}: {len(specs)} runs of {', '.join(archs)}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(args.store or scratch)
        launch(specs, prepared, store, cfg.train)  # the profile's workers, threads and device
        labels = {"train": prepared.train_labels[prepared.eval_train_index],
                  "test": prepared.test_labels[prepared.eval_test_index]}
        analysis = build_analysis_set(store, specs, labels, prepared.num_classes,
                                      cfg.predictions.geodesic_points)
        seconds = mean_seconds(store, specs)
    lam = checkpoint_progress(analysis.index, analysis.probs["train"])
    milestones = progress_milestones(analysis.index, lam, archs, MILESTONES)
    for pair in pairs:
        report(pair, milestones, seconds)


if __name__ == "__main__":
    main()
