"""Stored precision of the predictions (docs/study.md, "Stored precision"): the run store keeps
float32 probabilities, so a confidently wrong sample keeps its exact distance where float16
storage saturates it at the clamp; runs of the old float16 format are read as they are and
retrained; the benchmark's storages and float64 oracle (benchmarks/storage_precision.py)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import ROOT

from lowdim.analysis.analysis_set import build_analysis_set
from lowdim.geometry.distances import bhattacharyya_reference, distance_to_points, truth_point
from lowdim.store.records import SPACES, RunSpec
from lowdim.store.runs import (
    LEGACY_PREDICTIONS,
    META,
    PREDICTIONS,
    is_complete,
    load_predictions,
    read_meta,
    stored_predictions,
    write_run,
)
from lowdim.training.run import RunResult

C, N, FLOOR = 10, 8, 1e-8
P_TRUE = 1e-12                     # a confidently wrong sample's probability of its label
EXACT = -0.5 * np.log(P_TRUE)      # its d_B to the truth: -log sqrt(p) = 13.8155...
SATURATED = -np.log(FLOOR)         # a stored 0 clamped at bc_floor: 18.4207...


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "storage_precision", ROOT / "benchmarks" / "storage_precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _confidently_wrong(dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) probabilities that give label 0 probability P_TRUE (class 1 takes the rest), and
    the labels (all 0)."""
    p = np.full((N, C), 1e-9)
    p[:, 0] = P_TRUE
    p[:, 1] = 1.0 - p[:, 2:].sum(axis=1) - P_TRUE
    return p.astype(dtype), np.zeros(N, dtype=np.int64)


def _to_truth(p: np.ndarray, labels: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float32)
    p = p / p.sum(axis=-1, keepdims=True)
    return float(distance_to_points(p[None], truth_point(labels, C), bc_floor=FLOOR,
                                    method="reference")[0])


def _result(seed: int, probs: np.ndarray) -> RunResult:
    spec = RunSpec(arch="fc", optimizer="sgdn", batch_size=8, base_lr=0.1, lr=0.1,
                   weight_decay=0.0, augment="none", init="default", epochs=1, seed=seed,
                   model_size={"widths": [8]})
    result = RunResult(spec=spec, iters_per_epoch=1)
    result.steps, result.epochs = [0, 1], [0.0, 1.0]
    for space in SPACES:
        result.probs[space] = [np.full_like(probs, 1.0 / C), probs]
        result.loss[space], result.error[space] = [np.log(C), EXACT * 2], [0.9, 1.0]
    return result


def test_float16_storage_saturates_a_confidently_wrong_sample():
    # The closed form of each storage, from the same float32 log-probabilities.
    p, labels = _confidently_wrong()
    stored = _benchmark().stored_probabilities
    log_p = np.log(p)
    assert _to_truth(stored(log_p, "float32"), labels) == pytest.approx(EXACT, abs=1e-5)
    # float16 rounds 1e-12 to 0: the clamp's 18.42 instead of 13.82
    assert _to_truth(stored(log_p, "f16 probs"), labels) == pytest.approx(SATURATED, abs=1e-5)
    # float16 log-probabilities keep it, to the float16 rounding of ln 1e-12 (ulp 2^-6)
    assert _to_truth(stored(log_p, "f16 log-probs"), labels) == pytest.approx(EXACT, abs=4e-3)


def test_the_store_keeps_float32_probabilities(tmp_path):
    p, labels = _confidently_wrong()
    result = _result(1, p)
    write_run(tmp_path, result, "data")
    meta = read_meta(tmp_path, result.spec.run_id)
    assert meta["predictions"] == PREDICTIONS == stored_predictions(meta)
    assert is_complete(tmp_path, result.spec, "data")
    for space in SPACES:
        stored = load_predictions(tmp_path, result.spec.run_id, space)
        assert stored.dtype == np.float32
        assert stored.tobytes() == result.stacked(space).tobytes()
    analysis = build_analysis_set(tmp_path, [result.spec], {s: labels for s in SPACES}, C, 2)
    assert _to_truth(analysis.probs["train"][1], labels) == pytest.approx(EXACT, abs=1e-5)


def test_write_run_refuses_float16_predictions(tmp_path):
    p, _ = _confidently_wrong(np.float16)
    with pytest.raises(ValueError, match="holds float32 probabilities"):
        write_run(tmp_path, _result(1, p), "data")
    assert list(tmp_path.iterdir()) == []


def test_an_old_float16_run_is_read_as_it_is_and_retrained(tmp_path):
    p, labels = _confidently_wrong()
    result = _result(2, p)
    run = write_run(tmp_path, result, "data")
    # what the store held before: float16 probabilities, no "predictions" entry
    for space in SPACES:
        np.save(run / f"{space}.npy", result.stacked(space).astype(np.float16))
    meta = json.loads((run / META).read_text())
    del meta["predictions"]
    (run / META).write_text(json.dumps(meta))
    assert stored_predictions(meta) == LEGACY_PREDICTIONS
    assert not is_complete(tmp_path, result.spec, "data")  # the train stage retrains it
    analysis = build_analysis_set(tmp_path, [result.spec], {s: labels for s in SPACES}, C, 2)
    assert _to_truth(analysis.probs["train"][1], labels) == pytest.approx(SATURATED, abs=1e-5)
    meta["predictions"] = "bfloat16 logits"
    (run / META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'bfloat16 logits' predictions.*retrain it"):
        build_analysis_set(tmp_path, [result.spec], {s: labels for s in SPACES}, C, 2)


@pytest.mark.parametrize("sample_step", [1, 2])
def test_the_benchmark_oracle_is_the_float64_reference(sample_step):
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(C, 0.3), size=(6, 9)).astype(np.float32)
    p[0, :, 0] = 0.0  # exact zeros: clipped at the floor
    p /= p.sum(-1, keepdims=True)
    q = p[[1, 4]]
    oracle = _benchmark().float64_distances
    for got, ref in ((oracle(p, None, sample_step, FLOOR, chunk_bytes=8 * 36 * 2),
                      bhattacharyya_reference(p, sample_step=sample_step, bc_floor=FLOOR)),
                     (oracle(p, q, sample_step, FLOOR),
                      bhattacharyya_reference(p, q, sample_step=sample_step, bc_floor=FLOOR))):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)
