"""Fused Bhattacharyya kernels (CPU numba, CUDA Triton) against the float64 oracle and the
reference chunked method; method selection; the properties the block cache relies on."""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lowdim.config.distances import DistancesConfig
from lowdim.config.load import ConfigError, from_dict, load
from lowdim.geometry.distances import (
    BC_FLOOR,
    bhattacharyya,
    bhattacharyya_reference,
    distance_blocks,
    resolve_engine,
)

ATOL = 1e-6  # every method vs the float64 oracle, and fused vs reference
ROOT = Path(__file__).resolve().parents[1]

# One thread each: on a shared, oversubscribed CPU every parallel region can wait a scheduler
# time slice, and the many small blocks used here would dominate the test time.
pytestmark = pytest.mark.usefixtures("single_thread")




def hard_probabilities(rng: np.random.Generator, m: int, n: int, c: int) -> np.ndarray:
    """(m, n, c) float32: Dirichlet rows with exact zeros, one-hot and near-one-hot samples,
    float16-origin samples, and a repeated row; every row renormalized in float32."""
    p = rng.dirichlet(np.full(c, 0.3), size=(m, n))
    kind = rng.integers(0, 5, size=(m, n))
    hot = np.eye(c)[rng.integers(0, c, size=(m, n))]
    p = np.where((kind == 0)[..., None], hot, p)                               # exact zeros
    p = np.where((kind == 1)[..., None], hot * (1 - 1e-6) + 1e-6 / c, p)       # near one-hot
    p = np.where((kind == 2)[..., None], p.astype(np.float16).astype(np.float64), p)  # float16
    p[:, :3, 1:] = 0.0  # the first samples: all mass on class 0 for every row
    p[:, :3, 0] = 1.0
    p = p.astype(np.float32)
    p[-1] = p[0]                                                                # identical rows
    return p / p.sum(-1, keepdims=True)


def oracle(p, q=None, **kw):
    d = bhattacharyya_reference(p, q, **kw)
    if q is None:
        np.fill_diagonal(d, 0.0)
    return d


# ---- CPU kernel against the oracle and the reference -------------------------------------------


@pytest.mark.parametrize("sample_step", [1, 3])
@pytest.mark.parametrize("max_block_bytes", [256 * 2**20, 200_000])  # one block / many blocks
def test_fused_equals_oracle_and_reference(sample_step, max_block_bytes):
    rng = np.random.default_rng(sample_step)
    p = hard_probabilities(rng, 83, 131, 10)  # more rows than a tile, odd sample counts
    q = hard_probabilities(rng, 9, 131, 10)
    kw = dict(sample_step=sample_step, max_block_bytes=max_block_bytes)
    for fused, ref, truth in (
        (bhattacharyya(p, method="fused", **kw), bhattacharyya(p, method="reference", **kw),
         oracle(p, sample_step=sample_step)),
        (bhattacharyya(p, q, method="fused", **kw), bhattacharyya(p, q, method="reference", **kw),
         oracle(p, q, sample_step=sample_step)),
        (bhattacharyya(q, p, method="fused", **kw), bhattacharyya(q, p, method="reference", **kw),
         oracle(q, p, sample_step=sample_step)),
    ):
        np.testing.assert_allclose(fused, truth, rtol=0, atol=ATOL)
        np.testing.assert_allclose(fused, ref, rtol=0, atol=ATOL)
    assert bhattacharyya(p, method="fused", **kw)[0, -1] == pytest.approx(0.0, abs=1e-6)


def test_all_samples_at_the_floor_do_not_underflow():
    # BC = 0 on every sample: the running product would reach 1e-8 ** 1500 without rescaling.
    a = np.zeros((1, 1500, 4), dtype=np.float32)
    b = np.zeros((1, 1500, 4), dtype=np.float32)
    a[..., 0] = 1.0
    b[..., 1] = 1.0
    for floor in (BC_FLOOR, 1e-300, 0.5):
        d = bhattacharyya(a, b, method="fused", bc_floor=floor)
        assert d[0, 0] == pytest.approx(-math.log(floor), rel=1e-12)


def test_symmetric_path_equals_general_path_bitwise():
    p = hard_probabilities(np.random.default_rng(5), 70, 60, 7)
    sym = bhattacharyya(p, method="fused")
    general = bhattacharyya(p, p.copy(), method="fused")
    off = ~np.eye(len(p), dtype=bool)
    assert np.array_equal(sym[off], general[off])
    assert np.array_equal(sym, sym.T) and np.all(np.diag(sym) == 0.0)
    assert np.abs(np.diag(general)).max() < 1e-6
    # The block cache relies on this: a pair's value does not depend on the blocks around it.
    small = bhattacharyya(p, method="fused", max_block_bytes=60_000)
    assert np.array_equal(sym, small)


def test_memory_mapped_input(tmp_path):
    p = hard_probabilities(np.random.default_rng(6), 30, 40, 10)
    np.save(tmp_path / "p.npy", p)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r", allow_pickle=False)
    for method in ("fused", "reference"):
        assert np.array_equal(bhattacharyya(mapped, method=method, max_block_bytes=100_000),
                              bhattacharyya(p, method=method, max_block_bytes=100_000))


def test_distance_blocks_cover_the_requested_rows():
    p = hard_probabilities(np.random.default_rng(7), 40, 30, 5)
    engine = resolve_engine("fused")
    rows_i, rows_j = np.array([1, 2, 3, 10, 20]), np.array([0, 5, 6, 7, 39])
    got = np.full((40, 40), np.nan)
    for ri, rj, block in distance_blocks(p, rows_i, rows_j, engine=engine):
        got[np.ix_(ri, rj)] = block
    full = bhattacharyya(p, method="fused")
    assert np.array_equal(got[np.ix_(rows_i, rows_j)], full[np.ix_(rows_i, rows_j)])
    with pytest.raises(ValueError, match=r"rows_i must be sorted, unique row indices in \[0, 39\]"):
        next(distance_blocks(p, np.array([3, 1]), engine=engine))


# ---- method selection --------------------------------------------------------------------------


def test_auto_picks_the_device_kernel_and_falls_back_with_a_reason(caplog, monkeypatch):
    assert resolve_engine("auto", "cpu").name.startswith("fused-numba")
    assert resolve_engine("reference", "cpu").name == "reference"
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
        assert resolve_engine("auto", "meta").name == "reference"
    assert "there is no fused kernel for meta devices" in caplog.text
    if not torch.cuda.is_available():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
            assert resolve_engine("auto", "cuda").name == "reference"
        assert "CUDA is not available" in caplog.text or "triton is not installed" in caplog.text
    monkeypatch.setitem(sys.modules, "lowdim.geometry.kernels.numba_bc", None)  # as if no numba
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
        assert resolve_engine("auto", "cpu").name == "reference"
    assert "numba is not installed" in caplog.text


def test_method_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"method must be one of auto, reference, fused, got 'g"):
        bhattacharyya(np.full((1, 2, 2), 0.5), method="gpu")
    with pytest.raises(ValueError, match=r"method='fused' cannot run on meta: there is no fused "
                                         r"kernel for meta devices; use method='auto'"):
        resolve_engine("fused", "meta")
    with pytest.raises(ValueError, match=r"bc_floor=1e-320 is below 1e-300"):
        resolve_engine("fused", "cpu", bc_floor=1e-320)


def test_config_accepts_methods_and_rejects_others():
    settings = load(ROOT / "profiles" / "tiny.yaml", {}, DistancesConfig)
    assert settings.method == "auto" and settings.cache is True
    base = yaml_dict(ROOT / "profiles" / "tiny.yaml")
    base["distances"]["method"] = "fast"
    with pytest.raises(ConfigError, match=r"distances\.method = 'fast': must be one of auto, "
                                          r"reference, fused"):
        from_dict(base, DistancesConfig)


def yaml_dict(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


# ---- GPU kernel --------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_equals_oracle_and_is_symmetric():
    rng = np.random.default_rng(8)
    p = hard_probabilities(rng, 150, 203, 10)
    q = hard_probabilities(rng, 7, 203, 10)
    assert resolve_engine("auto", "cuda").name.startswith("fused-triton")
    for sample_step in (1, 2):
        kw = dict(sample_step=sample_step, method="fused", device="cuda")
        sym = bhattacharyya(p, **kw)
        np.testing.assert_allclose(sym, oracle(p, sample_step=sample_step), rtol=0, atol=ATOL)
        np.testing.assert_allclose(bhattacharyya(p, q, **kw),
                                   oracle(p, q, sample_step=sample_step), rtol=0, atol=ATOL)
        np.testing.assert_allclose(sym, bhattacharyya(p, sample_step=sample_step,
                                                      method="reference", device="cuda"),
                                   rtol=0, atol=ATOL)
        general = bhattacharyya(p, p.copy(), **kw)
        off = ~np.eye(len(p), dtype=bool)
        assert np.array_equal(sym[off], general[off])
        assert np.array_equal(sym, bhattacharyya(p, max_block_bytes=2_000_000, **kw))


_INTERPRETED = """
import numpy as np, torch
from lowdim.geometry.kernels import triton_bc as tb
from lowdim.geometry.distances import bhattacharyya_reference
from test_distance_kernels import hard_probabilities
p = hard_probabilities(np.random.default_rng(9), 70, 23, 3)  # 70 rows: two tiles of 64
cpu = torch.device("cpu")
for x, y, upper in ((p, p[:5].copy(), False), (p, p, True)):
    prod, expo = tb.new_state(len(x), len(y), cpu)
    for start, stop in ((0, 9), (9, 23)):  # two chunks: rescaling counts samples globally
        tb.accumulate(tb.roots(x[:, start:stop], cpu), tb.roots(y[:, start:stop], cpu), start,
                      1e-8, tb.rescale_group(1e-8), prod, expo, upper)
    d = -tb.finish(prod, expo) / 23
    keep = np.triu(np.ones(d.shape, dtype=bool)) if upper else np.ones(d.shape, dtype=bool)
    print(np.abs(d - bhattacharyya_reference(x, y))[keep].max())
"""


def test_triton_kernel_logic_in_the_interpreter():
    """The Triton kernel, run by Triton's CPU interpreter (no GPU needed), matches the oracle."""
    pytest.importorskip("triton")
    # A fresh process: TRITON_INTERPRET must be set before triton decorates its own library.
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = [float(line) for line in done.stdout.split()]
    assert len(errors) == 2 and max(errors) < ATOL, errors
