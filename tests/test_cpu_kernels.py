"""Pinned CPU kernels (`train.cpu_kernels`, issue 24 item 4): the same bytes whatever kernels the
launching process's environment asks for, the setting recorded in each run, and the rules that
decide where pinned runs train. The speed cost: benchmarks/cpu_kernels.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lowdim.config.load import ConfigError, from_dict
from lowdim.config.train import TrainConfig
from lowdim.store.records import RunSpec
from lowdim.training import local
from lowdim.training.kernels import (
    PINNED_ENVIRONMENT,
    can_pin,
    check_cpu_kernels,
    cpu_flags,
    kernels_of,
    planned_kernels,
    this_cpu_can_pin,
    worker_environment,
)
from lowdim.training.local import launch_local, pins_in_workers
from lowdim.training.settings import effective_settings

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse sse2 sse4_1 sse4_2 avx fma avx2 bmi2
processor\t: 1
flags\t\t: fpu sse sse2
"""

# --------------------------------------------------------------------------- the rules


def test_a_process_is_pinned_only_with_every_pinned_value():
    assert kernels_of(PINNED_ENVIRONMENT) == "pinned"
    assert kernels_of({**PINNED_ENVIRONMENT, "OTHER": "1"}) == "pinned"
    for name in PINNED_ENVIRONMENT:
        assert kernels_of({k: v for k, v in PINNED_ENVIRONMENT.items() if k != name}) == "native"
        assert kernels_of({**PINNED_ENVIRONMENT, name: "default"}) == "native"
    assert kernels_of({}) == "native"


def test_only_x86_64_with_avx2_and_fma_can_take_the_pin():
    flags = cpu_flags(CPUINFO)
    assert {"avx2", "fma", "sse4_1"} <= flags and "fpu" in flags  # the first processor's line
    assert can_pin("x86_64", flags) and can_pin("AMD64", flags)
    assert not can_pin("aarch64", flags) and not can_pin("arm64", flags)
    assert not can_pin("x86_64", flags - {"avx2"}) and not can_pin("x86_64", flags - {"fma"})
    assert cpu_flags("processor : 0\n") == frozenset()


def test_the_worker_environment_pins_only_where_it_can():
    assert worker_environment("pinned", pinnable=True) == PINNED_ENVIRONMENT
    assert worker_environment("pinned", pinnable=False) == {}
    assert worker_environment("native", pinnable=True) == {}
    with pytest.raises(ValueError, match=r"cpu_kernels = 'avx2': use one of pinned, native"):
        check_cpu_kernels("avx2")


def test_planned_kernels_are_those_of_the_worker_environment():
    assert planned_kernels("cuda", PINNED_ENVIRONMENT, {}) is None
    asked_default = {"ATEN_CPU_CAPABILITY": "default"}
    assert planned_kernels("cpu", PINNED_ENVIRONMENT, asked_default) == "pinned"
    assert planned_kernels("cpu", {}, {}) == "native"
    assert planned_kernels("cpu", {}, PINNED_ENVIRONMENT) == "pinned"  # started pinned: it is
    assert not pins_in_workers(PINNED_ENVIRONMENT, PINNED_ENVIRONMENT)
    assert pins_in_workers(PINNED_ENVIRONMENT, {**PINNED_ENVIRONMENT, "MKL_CBWR": "AUTO"})
    assert not pins_in_workers({}, {})


def test_settings_record_the_kernels_of_cpu_runs_only():
    common = dict(threads=1, eval_batch_size=1000, padding=None, pack_size=None)
    assert effective_settings("cpu", **common, cpu_kernels="pinned")["cpu_kernels"] == "pinned"
    assert effective_settings("cuda", **common, cpu_kernels="pinned")["cpu_kernels"] is None


def test_the_setting_is_pinned_unless_asked_and_checked():
    assert TrainConfig().cpu_kernels == "pinned"
    assert from_dict({"train": {"cpu_kernels": "native"}}, TrainConfig).cpu_kernels == "native"
    with pytest.raises(ConfigError, match="cpu_kernels"):
        from_dict({"train": {"cpu_kernels": "avx512"}}, TrainConfig)


def test_pinned_refuses_packs_in_the_launching_process(tiny_prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(local, "this_cpu_can_pin", lambda: True)
    for name in PINNED_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=r"packs runs .* set train\.cpu_kernels: native"):
        launch_local([_spec("fc", 1)], tiny_prepared, tmp_path, torch.device("cpu"),
                     progress=False, pack_size=2, cpu_kernels="pinned")
    assert not any(tmp_path.iterdir())  # refused before anything trained


# --------------------------------------------------------------------------- the bytes

SIZES = {"fc": {"widths": (32, 16)}, "allcnn": {"channels": (4, 6)}}
# Each variable alone changes these runs' native bytes on an AVX2 machine (measured with these
# two runs, one variable at a time: ATen's default kernels both, MKL's COMPATIBLE branch the fc
# run, oneDNN's SSE4.1 limit the allcnn run; pinned, each gave the bytes of the plain
# environment), so a pin that missed one of them would show.
NOT_AVX2 = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
            "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _spec(arch: str, seed: int) -> RunSpec:
    return RunSpec(arch=arch, optimizer="adam", batch_size=128, base_lr=1e-3, lr=1e-3,
                   weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                   model_size=SIZES[arch])


def train_both_ways(store: str | Path) -> None:
    """Train the runs twice, into STORE/native and STORE/pinned, from this process."""
    from lowdim.data import load_source, prepare

    prepared = prepare(load_source("digits", test_fraction=0.25, split_seed=2), 60, 40, 0)
    for kernels in ("native", "pinned"):
        launch_local([_spec("fc", 1), _spec("allcnn", 2)], prepared, Path(store) / kernels,
                     torch.device("cpu"), progress=False, workers=1, threads=1,
                     cpu_kernels=kernels)


def _stored(store: Path) -> dict[str, dict[str, tuple]]:
    """Each way's runs: predictions' bytes, losses, and the kernels their settings record."""
    ways = {}
    for way in ("native", "pinned"):
        ways[way] = {}
        for run in sorted((store / way).iterdir()):
            meta = json.loads((run / "meta.json").read_text())
            ways[way][run.name] = ((run / "train.npy").read_bytes(),
                                   (run / "test.npy").read_bytes(), meta["loss"],
                                   meta["settings"]["cpu_kernels"])
    return ways


def _train_in_a_process_under(environment: dict[str, str], store: Path) -> None:
    """`train_both_ways` in a process of its own whose environment holds `environment`: the
    variables the libraries read must be there before torch runs anything."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENVIRONMENT}
    env.update(environment, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), env.get("PYTHONPATH", "")]))
    code = f"from test_cpu_kernels import train_both_ways; train_both_ways({str(store)!r})"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.skipif(not this_cpu_can_pin(), reason="needs an x86-64 CPU with AVX2 and FMA")
def test_pinned_runs_have_the_same_bytes_whatever_the_environment_asks(tmp_path):
    train_both_ways(tmp_path / "here")  # this process: the environment the tests run in
    _train_in_a_process_under(NOT_AVX2, tmp_path / "other")
    here, other = _stored(tmp_path / "here"), _stored(tmp_path / "other")
    assert sorted(here["native"]) == sorted(other["pinned"]) == [_spec("allcnn", 2).run_id,
                                                                _spec("fc", 1).run_id]
    for run in here["native"]:
        # The environment changes the native bytes (the test can fail) ...
        assert here["native"][run][:3] != other["native"][run][:3], run
        # ... and not the pinned ones.
        assert here["pinned"][run][:3] == other["pinned"][run][:3], run
        assert here["pinned"][run][3] == other["pinned"][run][3] == "pinned"
        assert other["native"][run][3] == "native"
