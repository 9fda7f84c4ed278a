"""The bill before launch (lowdim.tools.plan) and its calibration (lowdim.tools.calibration)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lowdim.config.data import DataConfig
from lowdim.config.profile import load_profile
from lowdim.tools import plan
from lowdim.tools.calibration import (
    CalibrationError,
    calibrate,
    default_calibration,
    entry_key,
    lookup,
    merge_tables,
    read_table,
    write_table,
)
from lowdim.training.grid import expand_grid

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
TINY = ROOT / "profiles" / "tiny.yaml"


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_bill_of_every_profile_counts_its_runs(profile, capsys):
    config = load_profile(profile)
    runs = len(expand_grid(config.grid, config.models, config.train.lr_reference_batch_size))
    assert plan.main([str(profile)]) == 0
    out = capsys.readouterr().out
    assert f"runs: {runs:,} (grid of " in out
    for part in ("checkpoints:", "training, estimated from", "CPU-hours", "data/runs",
                 "data/distances", "with DVC's cache copy", "peak memory", "embedding",
                 "pair-sample terms", "CPU time at 0.52 G/s"):
        assert part in out, part


def test_command_line_and_default_params(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lowdim.tools.plan", str(TINY)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "runs: 16 (grid of 1 block)" in done.stdout
    assert "M = 230 points per space" in done.stdout  # 16 runs x 13 checkpoints + 2 + 20


def test_digits_split_without_the_data():
    from lowdim.data import load_source

    raw = load_source("digits", test_fraction=0.25, split_seed=2)
    assert plan.split_sizes(DataConfig()) == (len(raw.train_labels), len(raw.test_labels))
    assert plan.split_sizes(DataConfig(dataset="cifar10", root=None, train_size=1000)) == \
        (1000, 10_000)
    assert plan.eval_sizes(DataConfig(eval_train_size=600, eval_test_size=10**6), 1347, 450) == \
        {"train": 600, "test": 450}


def test_workload_of_the_tiny_profile():
    work = plan.workload(load_profile(TINY))
    assert len(work.specs) == 16 and set(work.checkpoints) == {13}
    assert work.samples == {"train": 120, "test": 90} and work.used == {"train": 60, "test": 45}
    assert work.points == 16 * 13 + 2 + 20 and work.units == 19
    assert work.configurations == 8  # 4 architectures x 2 optimizers, 2 seeds each


def test_disk_warning_when_the_disk_is_too_small(monkeypatch):
    monkeypatch.setattr(plan, "free_bytes", lambda path: 10_000)
    bill = plan.make_bill(TINY)
    assert any(w.startswith("disk: the products need") for w in bill.warnings)
    text = plan.render(bill)
    assert "WARNING: disk: the products need" in text and "10000 bytes" not in text
    assert "9.8 KiB available" in text


def test_memory_warning_when_the_ram_is_too_small(monkeypatch):
    monkeypatch.setattr(plan, "total_ram", lambda: 2**30)
    text = plan.render(plan.make_bill(TINY))
    assert "WARNING: memory: the distances stage needs about" in text
    assert "lower distances.max_block_mib" in text


def test_no_warning_when_everything_fits(monkeypatch):
    monkeypatch.setattr(plan, "free_bytes", lambda path: 2**50)
    monkeypatch.setattr(plan, "total_ram", lambda: 2**40)
    bill = plan.make_bill(TINY)
    assert bill.warnings == []
    assert "warnings: none" in plan.render(bill)


def test_links_recommended_only_while_dvc_copies(tmp_path):
    (tmp_path / ".dvc").mkdir()
    assert plan.dvc_cache_type(tmp_path) is None and plan.copies(None)
    (tmp_path / ".dvc" / "config").write_text("[core]\n    analytics = false\n"
                                              "[cache]\n    type = reflink,copy\n")
    assert plan.dvc_cache_type(tmp_path) == "reflink,copy" and plan.copies("reflink,copy")
    (tmp_path / ".dvc" / "config.local").write_text("['cache']\n    type = hardlink,symlink\n")
    assert plan.dvc_cache_type(tmp_path) == "hardlink,symlink"
    assert not plan.copies("hardlink,symlink")


def test_architecture_missing_from_the_calibration(tmp_path, capsys):
    table = read_table(default_calibration("cpu"))
    table["entries"] = [e for e in table["entries"] if e["arch"] == "fc"]
    path = tmp_path / "fc_only.json"
    path.write_text(json.dumps(table))
    assert plan.main([str(TINY), "--calibration", str(path)]) == 1
    err = capsys.readouterr().err
    assert "has no entry for architecture 'allcnn' (it calibrates fc)" in err
    assert "python -m lowdim.tools.plan --calibrate" in err and "--calibration FILE" in err


def test_missing_or_malformed_calibration(tmp_path):
    with pytest.raises(CalibrationError, match="no calibration table .*--calibrate"):
        read_table(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "lowdim-plan-calibration/1", "device": "cpu",
                               "entries": [{"arch": "fc"}]}))
    with pytest.raises(CalibrationError, match=r"entries\[0\]\.model_size = None"):
        read_table(bad)


def entry(**changes):
    base = {"arch": "fc", "model_size": {}, "input_shape": [3, 32, 32], "classes": 10,
            "batch_size": 200, "timed_batch": 200, "precision": "fp32", "threads": 1,
            "train_seconds_per_sample": 1e-3, "eval_seconds_per_sample": 1e-4,
            "eval_seconds_per_call": 1e-3, "setup_seconds": 0.01}
    return {**base, **changes}


def table(*entries, device="cpu"):
    return {"format": "lowdim-plan-calibration/1", "device": device, "entries": list(entries)}


def test_merge_replaces_the_same_target_and_keeps_the_others():
    old = table(entry(), entry(batch_size=500, timed_batch=500))
    new = table(entry(train_seconds_per_sample=2e-3), entry(arch="vit"))
    merged = merge_tables(old, new)
    assert len(merged["entries"]) == 3
    assert {entry_key(e): e["train_seconds_per_sample"] for e in merged["entries"]}[
        entry_key(entry())] == 2e-3
    with pytest.raises(CalibrationError, match="holds a cpu calibration, not cuda"):
        merge_tables(old, table(entry(), device="cuda"))


def test_lookup_prefers_sizes_then_the_nearest_batch():
    t = table(entry(batch_size=100, timed_batch=100, train_seconds_per_sample=1.0),
              entry(batch_size=1000, timed_batch=128, train_seconds_per_sample=2.0),
              entry(model_size={"widths": [8]}, batch_size=400, train_seconds_per_sample=3.0))
    rate = lookup(t, "fc", {}, (3, 32, 32), 10, 800, "fp32", 1)
    assert rate.train_seconds_per_sample == 2.0 and rate.batch == ("priced", 1000)
    rate = lookup(t, "fc", {}, (3, 32, 32), 10, 1000, "fp32", 1)
    assert rate.batch == ("timed", 128) and rate.notes == ()
    rate = lookup(t, "fc", {"widths": [8]}, (3, 32, 32), 10, 400, "fp16-mixed", 1)
    assert rate.train_seconds_per_sample == 3.0
    assert rate.notes == ("fc: fp16-mixed runs priced at the fp32 rate (a CPU trains fp32 only; "
                          "calibrate with --device cuda for theirs)",)
    rate = lookup(t, "fc", {"widths": [64]}, (1, 8, 8), 10, 100, "fp32", 1)
    assert rate.train_seconds_per_sample == 1.0
    assert any("calibrated with shape (3, 32, 32), the profile has (1, 8, 8)" in n
               for n in rate.notes)


@pytest.fixture(scope="module")
def tiny_calibration(tmp_path_factory):
    """Two tiny-profile networks calibrated here, briefly, as `--calibrate` does."""
    config = load_profile(TINY)
    work = plan.workload(config)
    specs = [s for s in work.specs if s.arch in ("allcnn", "wr-10-1-4")]
    table = calibrate(specs, work.input_shape, work.classes, "cpu", eval_batch_size=1000,
                      threads=1, seconds=1.0)
    path = write_table(table, tmp_path_factory.mktemp("calibration") / "cpu.json")
    return config, work, read_table(path)


def test_calibration_writes_a_valid_table(tiny_calibration):
    _, _, table = tiny_calibration
    assert table["device"] == "cpu" and table["format"] == "lowdim-plan-calibration/1"
    assert sorted(e["arch"] for e in table["entries"]) == ["allcnn", "wr-10-1-4"]
    for e in table["entries"]:
        assert e["input_shape"] == [1, 8, 8] and e["batch_size"] == 128 and e["threads"] == 1
        # measured times: positive and finite; how they compare is the machine's load, not the
        # table's validity (eval < train failed once beside a benchmark)
        assert 0 < e["train_seconds_per_sample"] < 0.1
        assert 0 < e["eval_seconds_per_sample"] < 0.1
        assert e["model_size"] in ({"channels": [8, 12]}, {})


def apparent_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.slow
def test_tiny_disk_agrees_with_the_pipeline(tiny_pipeline):
    """Every estimated product of the tiny profile within a factor of 2 of its real size."""
    repo = tiny_pipeline.repo
    bill = plan.make_bill(repo / "params.yaml", root=repo)
    for product in bill.products:
        real = apparent_size(repo / product.path)
        print(f"{product.path}: estimated {product.bytes:,} bytes, real {real:,}")
        assert product.bytes / 2 <= real <= product.bytes * 2, (product.path, product.bytes, real)
    seconds = sum(json.loads(m.read_text())["seconds"] for m in repo.glob("data/runs/*/meta.json"))
    print(f"training: estimated {sum(a.seconds for a in bill.times):.1f} s one run at a time, "
          f"meta.json records {seconds:.1f} s ({bill.workers} at a time, beside the tests)")
    dvc = sum(p.bytes for p in bill.products if p.dvc)
    real_cache = apparent_size(repo / ".dvc" / "cache")
    assert dvc <= real_cache <= 2 * dvc + apparent_size(repo / "data" / "studies") \
        + apparent_size(repo / "figures") + apparent_size(repo / "data" / "executed"), \
        (dvc, real_cache)


def test_calibrating_on_cuda_needs_a_gpu(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert plan.main(["--calibrate", str(TINY), "--device", "cuda"]) == 1
    assert "this machine has no CUDA device" in capsys.readouterr().err


def test_the_corner_study_is_billed_per_setup_phase_and_seed():
    # the authors' three setups x 3 iseeds x 10 seeds, each run in two phases; a subsample phase
    # trains on its subset only, so it costs less than the same network's phase 2
    config = load_profile(ROOT / "profiles" / "cifar10-authors.yaml")
    specs = plan.corner_specs(config, 50_000)
    assert len(specs) == 2 * 3 * 3 * 10
    images = {(spec.arch, spec.epochs, n) for spec, n in specs}
    assert images == {("allcnn", 200, 200), ("allcnn", 200, 50_000), ("fc", 200, 2_000),
                      ("fc", 200, 50_000), ("wr-10-4-8", 200, 50_000)}
    bill = plan.make_bill(ROOT / "profiles" / "cifar10-authors.yaml")
    corners, synthetic = bill.studies
    assert (corners.study, corners.runs) == ("corners", 90) and corners.seconds > 0
    assert (synthetic.runs, synthetic.seconds) == (3 * 2 * 2 * 2 * 50, None)
    assert "+ studies.corners        90 runs" in plan.render(bill)
    one = plan.make_bill(ROOT / "profiles" / "imagenet.yaml")  # one corner run: no plural
    assert "+ studies.corners         1 run " in plan.render(one)
