"""lowdim.geometry.distances against its definition, at the edges `make mutants` found untested:
both CPU engines (reference and fused) over several blocks and sample chunks, the clip at both
ends, the block planner's budget, the row subsets of ``distance_blocks``, the bounds of every
check and the reference points (docs/performance.md, "Mutation testing").

The oracle ``definition`` is the module docstring's formula written out pair by pair in float64:
d_B(u, v) = -(1/N') sum_n log clip(sum_c sqrt(p_u^n(c) p_v^n(c)), bc_floor, 1) over the samples
n = 0, step, 2 step, ... ."""

from __future__ import annotations

import contextlib
import logging
import math
import re

import numpy as np
import pytest

from lowdim.geometry import distances as ds
from lowdim.geometry.distances import (
    BC_FLOOR,
    DistanceSettings,
    bhattacharyya,
    bhattacharyya_reference,
    check_probabilities,
    distance_blocks,
    distance_to_points,
    ignorance_point,
    plan_blocks,
    resolve_engine,
    truth_point,
)

METHODS = ("reference", "fused")
ATOL = 1e-6  # float32 roots and coefficients vs the float64 definition (module docstring)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def rng():
    return np.random.default_rng(23)


def probs(rng, m, n, c, alpha=0.5):
    """(m, n, c) float32 random probabilities, renormalized in float32."""
    x = rng.dirichlet(np.full(c, alpha), size=(m, n)).astype(np.float32)
    return x / x.sum(-1, keepdims=True)


def definition(p, q=None, step=1, floor=BC_FLOOR):
    """The intensive Bhattacharyya distance, pair by pair, in float64."""
    p = np.asarray(p, dtype=np.float64)[:, ::step]
    q = p if q is None else np.asarray(q, dtype=np.float64)[:, ::step]
    out = np.empty((len(p), len(q)))
    for i in range(len(p)):
        for j in range(len(q)):
            bc = np.sqrt(p[i] * q[j]).sum(axis=-1)
            out[i, j] = -np.mean(np.log(np.clip(bc, floor, 1.0)))
    return out


# --- the distance against its definition -----------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3])
def test_reference_oracle_is_the_definition(rng, step):
    p, q = probs(rng, 4, 11, 3), probs(rng, 3, 11, 3)
    np.testing.assert_allclose(bhattacharyya_reference(p, q, sample_step=step),
                               definition(p, q, step), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bhattacharyya_reference(p, sample_step=step, bc_floor=0.3),
                               definition(p, None, step, 0.3), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("step", [1, 3])
def test_several_blocks_and_chunks_match_the_definition(rng, method, step):
    """Row blocks of 3 and chunks of 4 samples: every block and chunk must be counted once, in
    its place, with the symmetric case mirrored and the rectangular case in both orders."""
    p, q = probs(rng, 8, 23, 4, alpha=0.3), probs(rng, 5, 23, 4, alpha=0.3)
    kw = dict(method=method, sample_step=step, block_rows=3, sample_chunk=4)
    want = definition(p, None, step)
    np.fill_diagonal(want, 0.0)
    got = bhattacharyya(p, **kw)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    assert np.array_equal(got, got.T) and np.all(np.diag(got) == 0.0)
    np.testing.assert_allclose(bhattacharyya(p, q, **kw), definition(p, q, step), atol=ATOL)
    np.testing.assert_allclose(bhattacharyya(q, p, **kw), definition(q, p, step), atol=ATOL)
    # automatic sizes under a small budget also split into several blocks
    small = bhattacharyya(p, q, method=method, sample_step=step, max_block_bytes=3000)
    np.testing.assert_allclose(small, definition(p, q, step), atol=ATOL)


@pytest.mark.parametrize("method", METHODS)
def test_a_row_summing_above_one_is_clipped_to_distance_zero(method):
    """The clip at 1 removes the excess of sum_c p above 1, so distances are >= 0 (module
    docstring): a row summing to 1 + 5e-4 (within SUM_TOL) is at distance 0 from itself."""
    p = np.full((2, 6, 4), 0.25, dtype=np.float32)
    p[:, :, 0] += 5e-4
    d = bhattacharyya(p, p.copy(), method=method)  # rectangular: the diagonal is computed
    assert np.all(d == 0.0) and not np.signbit(d).any()  # + 0.0: never -0.0
    assert np.all(bhattacharyya_reference(p, p.copy()) == 0.0)


@pytest.mark.parametrize("method", METHODS)
def test_disjoint_rows_sit_at_minus_log_floor_whatever_the_chunks(method):
    """BC = 0 on every sample: each contributes -log(bc_floor). With bc_floor = 1e-20 the fused
    kernel rescales every 15 samples, counted over the whole sample set: chunks of 20 samples
    must carry that count from chunk to chunk, or the running product leaves the normal range."""
    n = 120
    p = np.zeros((2, n, 4), dtype=np.float32)
    p[0, :, 0] = 1.0
    p[1, :, 1] = 1.0
    rel = 1e-12 if method == "fused" else 1e-6  # the reference clips and logs in float32
    for floor in (1e-20, BC_FLOOR):
        d = bhattacharyya(p, method=method, bc_floor=floor, sample_chunk=20)
        assert d[0, 1] == pytest.approx(-math.log(floor), rel=rel)
        d = bhattacharyya(p[:1], p[1:], method=method, bc_floor=floor, sample_chunk=20)
        assert d[0, 0] == pytest.approx(-math.log(floor), rel=rel)
    assert bhattacharyya_reference(p, bc_floor=1e-20)[0, 1] == pytest.approx(-math.log(1e-20))


@pytest.mark.parametrize("method", METHODS)
def test_exact_coefficients_give_the_distance_to_one_rounding(method):
    """p = (1, 0), q = (1/4, 3/4): BC = 1/2 exactly in float32 on every sample, so d = ln 2 up to
    one float32 log; the chunk sums are accumulated in float64 (module docstring), and 300
    chunks accumulated in float32 would be off by ~1e-6."""
    n = 600
    p = np.tile(np.array([1.0, 0.0], dtype=np.float32), (1, n, 1))
    q = np.tile(np.array([0.25, 0.75], dtype=np.float32), (1, n, 1))
    d = bhattacharyya(p, q, method=method, sample_chunk=2)
    assert d[0, 0] == pytest.approx(math.log(2.0), abs=1e-8)


def test_distance_to_points_passes_its_options(rng):
    p = probs(rng, 3, 12, 5)
    point = probs(rng, 1, 12, 5)[0]
    got = distance_to_points(p, point, sample_step=2, bc_floor=0.5, method="reference")
    np.testing.assert_allclose(got, definition(p, point[None], 2, 0.5)[:, 0], atol=ATOL)
    with pytest.raises(ValueError, match=r"point must have shape \(N, C\) = \(12, 5\) to match"):
        distance_to_points(p, point[:, :4] / point[:, :4].sum(-1, keepdims=True))


# --- the block planner -------------------------------------------------------------------------


def test_block_bytes_count_the_buffers_of_a_block():
    """The working sets the planner bounds, buffer by buffer (the functions' docstrings)."""
    for bi, bj, s, c in [(1, 1, 1, 1), (3, 5, 7, 2), (64, 16, 100, 10)]:
        rows = 4 * (bi + bj) * c          # float32 copies of the rows of p and q, per sample
        roots = 4 * (bi + bj) * c         # their float32 square roots
        cube = 4 * bi * bj                # float32 coefficients (samples, rows_i, rows_j)
        sums = (8 + 4 + 8) * bi * bj      # float64 accumulator, float32 chunk sum, its copy
        assert ds._block_bytes(bi, bj, s, c) == s * (rows + roots + cube) + sums
        packed = 4 * (bi + bj) * c        # packed float32 roots next to the float32 rows
        state = (8 + 8 + 3 * 8) * bi * bj  # product, exponent, three float64 when finishing
        assert ds._fused_block_bytes(bi, bj, s, c) == s * (rows + packed) + state


def test_explicit_sizes_are_used_as_given_within_the_problem():
    big = 2**30
    assert plan_blocks(10, 7, 50, 3, 4, 6, big) == (4, 4, 6)
    assert plan_blocks(10, 7, 50, 3, 8, 80, big) == (8, 7, 50)  # no larger than the problem
    assert plan_blocks(10, 7, 50, 3, 4.0, 6.0, big) == (4, 4, 6)  # integral floats are fine
    assert plan_blocks(10, 7, 50, 3, 1, 1, big) == (1, 1, 1)  # the smallest sizes
    # explicit rows: the sample chunk fills the target, even when only one sample fits
    one = ds._block_bytes(10, 10, 1, 3)
    assert plan_blocks(10, 10, 500, 3, 10, None, big, target_bytes=one) == (10, 10, 1)
    # an explicit block too big for the auto target falls back to the ceiling max_block_bytes
    assert plan_blocks(10, 10, 50, 3, 10, None, 2**20, target_bytes=100) == (10, 10, 50)
    ceiling = ds._block_bytes(10, 10, 7, 3) + 5
    got = plan_blocks(10, 10, 500, 3, 10, None, ceiling, target_bytes=100)
    assert got == (10, 10, 7) and all(isinstance(v, int) for v in got)


@pytest.mark.parametrize("block_bytes", [ds._block_bytes, ds._fused_block_bytes])
@pytest.mark.parametrize(("m1", "m2", "n", "c", "budget", "target"), [
    (5, 3, 40, 2, 2**30, None),          # everything in one block
    (5000, 300, 20_000, 10, 2**30, None),  # rows capped at 2048
    (300, 300, 5000, 10, 400_000, None),
    (300, 700, 5000, 10, 2**30, 1_000_000),  # auto sizes aim at target, not the ceiling
    (40, 40, 1000, 3, 60_000, 20_000),
    (10, 10, 1000, 10, 15_000, None),    # one row fits 64 samples, two do not
])
def test_auto_sizes_fill_the_target_and_fit_the_ceiling(block_bytes, m1, m2, n, c, budget,
                                                         target):
    bi, bj, s = plan_blocks(m1, m2, n, c, None, None, budget, target, block_bytes)
    aim = min(budget, target or budget)
    assert 1 <= bi <= m1 and 1 <= bj <= m2 and 1 <= s <= n
    assert bi == bj or bi == m1 or bj == m2  # one row count b, cut to each side
    assert bi <= 2048 and block_bytes(bi, bj, s, c) <= aim
    # the sample chunk is as long as the aim allows
    assert s == n or block_bytes(bi, bj, s + 1, c) > aim
    # rows: the largest block of 64-sample chunks that fits, to within the shrink step 1.25
    s_rows = min(n, 64)
    assert block_bytes(bi, bj, s_rows, c) <= aim
    if bi < min(max(m1, m2), 2048):
        up = int(bi * 1.25) + 1
        assert block_bytes(min(up, m1), min(up, m2), s_rows, c) > aim
    else:
        assert bi == min(m1, 2048)


def test_a_given_sample_chunk_also_sizes_the_rows():
    # with 200-sample chunks the rows shrink further than with the default 64
    bi64, _, _ = plan_blocks(400, 400, 1000, 10, None, None, 2**21)
    bi200, _, s = plan_blocks(400, 400, 1000, 10, None, 200, 2**21)
    assert s == 200 and bi200 < bi64
    assert ds._block_bytes(bi200, bi200, 200, 10) <= 2**21


def test_the_ceiling_and_the_target_are_inclusive():
    need = ds._block_bytes(4, 4, 6, 3)
    assert plan_blocks(10, 10, 50, 3, 4, 6, need) == (4, 4, 6)
    # auto rows: a whole problem that fills the target exactly stays one block
    exact = ds._block_bytes(5, 5, 64, 2)
    assert plan_blocks(5, 5, 64, 2, None, None, 2**30, target_bytes=exact) == (5, 5, 64)
    with pytest.raises(ValueError, match=rf"max_block_bytes={need - 1} is too small for blocks "
                                         rf"of 4x4 rows and 6 samples \({need} bytes\)"):
        plan_blocks(10, 10, 50, 3, 4, 6, need - 1)
    fixed = ds._block_bytes(1, 1, 0, 3)
    one = ds._block_bytes(1, 1, 1, 3)
    with pytest.raises(ValueError, match=rf"max_block_bytes={fixed + 1} is too small for blocks "
                                         rf"of 1x1 rows and 1 samples \({one} bytes\)"):
        plan_blocks(10, 10, 50, 3, None, None, fixed + 1)  # no room for one sample
    with pytest.raises(ValueError, match=r"max_block_bytes=1 is too small"):
        plan_blocks(10, 10, 50, 3, None, None, 1)


def test_the_planner_stops_when_not_even_one_row_fits():
    """Rows shrink by steps of 1.25 down to one; a budget below one row ends in the error,
    after a bounded number of size evaluations (no endless loop)."""
    calls = []

    def counted(bi, bj, s, c):
        calls.append(bi)
        if len(calls) > 200:
            raise RuntimeError("the planner does not stop")
        return ds._block_bytes(bi, bj, s, c)

    with pytest.raises(ValueError, match=r"too small for blocks of 1x1 rows"):
        plan_blocks(3000, 3000, 100, 10, None, None, 50, None, counted)
    assert calls[0] == 2048 and 1 in calls and len(calls) < 60


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_block_sizes_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match=rf"block_rows must be a positive integer or None, got "
                                         rf"{bad!r}"):
        plan_blocks(4, 4, 10, 2, bad, None, 2**20)
    with pytest.raises(ValueError, match=rf"sample_chunk must be a positive integer or None, "
                                         rf"got {bad!r}"):
        plan_blocks(4, 4, 10, 2, None, bad, 2**20)


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_the_ceiling_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=rf"max_block_bytes must be a positive integer, got "
                                         rf"{bad!r}"):
        plan_blocks(4, 4, 10, 2, None, None, bad)


# --- validation --------------------------------------------------------------------------------


def test_a_blockwise_array_is_checked_in_place(rng, tmp_path):
    """An NpyFile (rows read on demand) is checked block by block and returned as it is."""
    from lowdim.store.arrays import NpyFile

    p = probs(rng, 6, 4, 3)
    f = NpyFile.create(tmp_path / "p.npy", p.shape, np.float32)
    f.write_rows(0, p)
    assert check_probabilities(f, "p", 3) is f
    bad = p.copy()
    bad[5, 3] = [0.5, 0.5, 0.5]
    g = NpyFile.create(tmp_path / "bad.npy", p.shape, np.float32)
    g.write_rows(0, bad)
    with pytest.raises(ValueError, match=r"p: probability rows must sum to 1 within 0\.001"):
        check_probabilities(g, "p", 3)
    # anything else becomes an ndarray
    out = check_probabilities([[0.25, 0.75], [1.0, 0.0]], "point", 2)
    assert isinstance(out, np.ndarray) and out.shape == (2, 2)


@pytest.mark.parametrize("row", [0, 3, 9])
def test_every_piece_of_a_large_array_is_checked(rng, monkeypatch, row):
    """Validation streams over pieces of about _CHECK_ELEMS elements: with pieces of two rows
    here, a bad entry in the first, a middle or the last row is found."""
    monkeypatch.setattr(ds, "_CHECK_ELEMS", 2 * 4 * 3)
    p = probs(rng, 10, 4, 3)
    assert check_probabilities(p, "p", 3) is not None
    for value, message in [(np.nan, r"p contains NaN or infinite values"),
                           (np.inf, r"p contains NaN or infinite values"),
                           (-0.25, r"p has negative entries \(min -0\.25\)"),
                           (0.9, r"p: probability rows must sum to 1")]:
        bad = p.copy()
        bad[row, 2, 1] = value
        with pytest.raises(ValueError, match=message):
            check_probabilities(bad, "p", 3)


def test_the_sum_tolerance_holds_on_both_sides():
    row = np.array([[[0.5, 0.5]]])
    for excess in (0.9e-3, -0.9e-3):
        check_probabilities(row + [[[excess, 0.0]]], "p", 3)  # within SUM_TOL = 1e-3
    for excess in (1.1e-3, -1.1e-3):
        with pytest.raises(ValueError, match=r"worst deviation 0\.0011\)"):
            check_probabilities(row + [[[excess, 0.0]]], "p", 3)
    # the tolerance applies to the exact (float64) sum: this float32 row sums to 1 - 1.000002e-3,
    # though its float32 sum rounds to 1 - 0.99999e-3
    row32 = np.array([[[0.20991658, 0.7890834]]], dtype=np.float32)
    assert abs(row32.sum(dtype=np.float64) - 1.0) > 1e-3 >= abs(row32.sum() - 1.0)
    with pytest.raises(ValueError, match=r"worst deviation 0\.001\)"):
        check_probabilities(row32, "p", 3)
    # zeros are probabilities: exact zeros (one-hot rows) pass
    check_probabilities(np.array([[[1.0, 0.0]]]), "p", 3)


def test_shape_and_type_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"x must be a 4-D array of shape 4, got shape \(2, 2\)"):
        check_probabilities(np.full((2, 2), 0.5), "x", 4)
    with pytest.raises(ValueError, match=r"p must be a 3-D array of shape \(M, N, C\), got shape "
                                         r"\(2, 2\)"):
        check_probabilities(np.full((2, 2), 0.5), "p", 3)
    with pytest.raises(ValueError, match=r"q must be a floating-point array of probabilities, "
                                         r"got int64"):
        check_probabilities(np.ones((1, 1, 1), dtype=np.int64), "q", 3)
    with pytest.raises(ValueError, match=r"p is empty \(shape \(0, 3, 2\)\)"):
        check_probabilities(np.zeros((0, 3, 2)), "p", 3)
    with pytest.raises(ValueError, match=r"p is empty \(shape \(2, 0, 2\)\)"):
        check_probabilities(np.zeros((2, 0, 2)), "p", 3)


def test_step_and_floor_bounds():
    for step in (1, 7, np.int64(2), np.int32(1)):
        ds.check_step_and_floor(step, 0.5)
    for step in (0, -1, 1.0, 2.5, True, False, "2", None):
        with pytest.raises(ValueError, match=rf"sample_step must be an integer >= 1, got "
                                             rf"{step!r}"):
            ds.check_step_and_floor(step, 0.5)
    for floor in (1e-300, BC_FLOOR, 0.999999):
        ds.check_step_and_floor(1, floor)
    for floor in (0.0, -1e-8, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"bc_floor must lie in the open interval \(0, 1\), "
                                             rf"got {floor}"):
            ds.check_step_and_floor(1, floor)


def test_check_inputs_checks_both_arrays(rng):
    p = probs(rng, 2, 5, 3)
    assert ds.check_inputs(p, None, 1, BC_FLOOR)[1] is None
    got_p, got_q = ds.check_inputs(p, p[:1].copy(), 2, 0.5)
    assert np.array_equal(got_p, p) and np.array_equal(got_q, p[:1])
    with pytest.raises(ValueError, match=r"q has negative entries"):
        ds.check_inputs(p, -p, 1, BC_FLOOR)
    with pytest.raises(ValueError, match=r"q must be a 3-D array of shape \(M, N, C\)"):
        ds.check_inputs(p, p[0], 1, BC_FLOOR)
    with pytest.raises(ValueError, match=r"p has \(N, C\) = \(5, 3\), q has \(5, 2\)"):
        ds.check_inputs(p, p[..., :2] / p[..., :2].sum(-1, keepdims=True), 1, BC_FLOOR)
    with pytest.raises(ValueError, match=r"sample_step must be an integer >= 1"):
        ds.check_inputs(p, None, 0, BC_FLOOR)
    with pytest.raises(ValueError, match=r"bc_floor must lie in the open interval"):
        ds.check_inputs(p, p, 1, 2.0)


def test_settings_accept_numpy_sizes_and_refuse_booleans():
    assert DistanceSettings(max_block_bytes=np.int64(4096)).max_block_bytes == 4096
    assert DistanceSettings(max_block_bytes=1).max_block_bytes == 1
    for bad in (True, False, 0, -1, 2.0, "8"):
        with pytest.raises(ValueError, match=rf"max_block_bytes must be a positive integer, got "
                                             rf"{bad!r}"):
            DistanceSettings(max_block_bytes=bad)
    for method in ("auto", "reference", "fused"):
        assert DistanceSettings(method=method).method == method
    with pytest.raises(ValueError, match=r"sample_step must be an integer >= 1, got 0"):
        DistanceSettings(sample_step=0)
    with pytest.raises(ValueError, match=r"bc_floor must lie in the open interval"):
        DistanceSettings(bc_floor=0.0)


# --- row subsets: distance_blocks ---------------------------------------------------------------


def assemble(p, rows_i, rows_j=None, **kw):
    """The (len i, len j) matrix from distance_blocks, each entry written exactly once."""
    rows_j_ = rows_i if rows_j is None else rows_j
    pos_i = {int(r): k for k, r in enumerate(rows_i)}
    pos_j = {int(r): k for k, r in enumerate(rows_j_)}
    out = np.full((len(rows_i), len(rows_j_)), np.nan)
    for ri, rj, blk in distance_blocks(p, rows_i, rows_j, **kw):
        assert blk.shape == (len(ri), len(rj)) and blk.dtype == np.float64
        assert len(ri) and len(rj)  # blocks of the requested rows only, none empty
        ii = [pos_i[int(r)] for r in ri]
        jj = [pos_j[int(r)] for r in rj]
        assert np.isnan(out[np.ix_(ii, jj)]).all()  # no block twice
        out[np.ix_(ii, jj)] = blk
        if rows_j is None:  # symmetric: blocks on or above the diagonal, mirrored by the caller
            assert ri[0] <= rj[0]
            mirror = out[np.ix_(jj, ii)]
            assert np.isnan(mirror).all() or np.array_equal(mirror, blk.T)
            out[np.ix_(jj, ii)] = blk.T
    return out


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("step", [1, 2])
def test_distance_blocks_of_row_subsets_match_the_definition(rng, method, step):
    p = probs(rng, 12, 9, 3)
    engine = resolve_engine(method)
    kw = dict(engine=engine, sample_step=step, max_block_bytes=1500)  # blocks of a few rows
    cases = [(np.array([0, 1, 2, 3, 4, 5, 6]), None),          # contiguous, symmetric
             (np.array([1, 3, 4, 5, 8, 11]), None),             # scattered, symmetric
             (np.array([2, 3, 4]), np.array([0, 6, 7, 8, 9, 10, 11])),
             (np.array([0, 5, 9, 10]), np.array([1, 2, 4])),
             (np.array([4]), np.array([0, 1])),                 # one row
             (np.array([7]), None)]
    for rows_i, rows_j in cases:
        got = assemble(p, rows_i, rows_j, **kw)
        want = definition(p[rows_i], None if rows_j is None else p[rows_j], step)
        if rows_j is None:
            np.fill_diagonal(want, 0.0)
            assert np.all(np.diag(got) == 0.0) and np.array_equal(got, got.T)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_distance_blocks_validate_unless_told_not_to(rng):
    engine = resolve_engine("reference")
    p = probs(rng, 4, 5, 3)
    bad = p.copy()
    bad[0, 0] = [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"p: probability rows must sum to 1"):
        next(distance_blocks(bad, np.arange(4), engine=engine))
    with pytest.raises(ValueError, match=r"sample_step must be an integer >= 1"):
        next(distance_blocks(p, np.arange(4), engine=engine, sample_step=0))
    # check=False: the caller validated; rows 1..3 are valid and row 0 is not read
    got = assemble(bad, np.array([1, 2, 3]), engine=engine, check=False)
    want = definition(p[1:])
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(got, want, atol=ATOL)
    with pytest.raises(ValueError, match=r"rows_i must be sorted, unique row indices in \[0, 3\]"):
        next(distance_blocks(p, np.array([2, 1]), engine=engine))
    with pytest.raises(ValueError, match=r"rows_j must be sorted, unique row indices in \[0, 3\]"):
        next(distance_blocks(p, np.array([0]), np.array([2, 4]), engine=engine))
    with pytest.raises(ValueError, match=r"rows_j must be a 1-D array of integer row indices"):
        next(distance_blocks(p, np.array([0]), np.array([[2]]), engine=engine))
    # no rows on either side: no blocks
    assert list(distance_blocks(p, np.array([], dtype=np.int64), engine=engine)) == []
    assert list(distance_blocks(p, np.array([1]), np.array([]), engine=engine)) == []
    assert list(distance_blocks(p, np.array([]), np.array([1]), engine=engine)) == []



def block_shapes(p, engine, **kw):
    return [(len(ri), len(rj)) for ri, rj, _ in distance_blocks(p, np.arange(len(p)),
                                                                engine=engine, **kw)]


def tiling(m, b):
    """The upper-triangle block shapes of an (m, m) matrix cut into blocks of b rows."""
    sizes = [min(b, m - i) for i in range(0, m, b)]
    return [(sizes[a], sizes[c]) for a in range(len(sizes)) for c in range(a, len(sizes))]


def test_blocks_follow_the_engine_memory_model_and_cpu_target():
    """On a CPU the reference method aims at 16 MiB blocks (``bhattacharyya``'s docstring), the
    fused one only at max_block_bytes; each engine plans with its own working-set model."""
    p = np.tile(np.array([0.5, 0.5], dtype=np.float32), (900, 1, 1))  # (900, 1, 2)
    b, _, _ = plan_blocks(900, 900, 1, 2, None, None, 256 * 2**20, ds._CPU_BLOCK_BYTES)
    assert b < 900
    assert block_shapes(p, ds.REFERENCE) == tiling(900, b)
    assert block_shapes(p, ds.FUSED_NUMBA) == [(900, 900)]
    q = probs(np.random.default_rng(1), 40, 200, 2)
    fused, _, _ = plan_blocks(40, 40, 200, 2, None, None, 100_000, None, ds._fused_block_bytes)
    ref, _, _ = plan_blocks(40, 40, 200, 2, None, None, 100_000, None, ds._block_bytes)
    assert fused != ref
    assert block_shapes(q, ds.FUSED_NUMBA, max_block_bytes=100_000) == tiling(40, fused)



def test_the_cpu_target_applies_on_a_cpu_only(rng):
    """An engine's ``cpu_target_bytes`` sizes its blocks on a CPU; on another device they aim at
    max_block_bytes (an engine that ignores the device stands in for a GPU's)."""
    engine = ds.Engine("cpu-targeted", ds._numba_sums, ds._block_bytes, 3000, True)
    p = probs(rng, 30, 8, 3)
    b, _, _ = plan_blocks(30, 30, 8, 3, None, None, 2**20, 3000)
    assert b < 30
    assert block_shapes(p, engine, max_block_bytes=2**20) == tiling(30, b)
    assert block_shapes(p, engine, max_block_bytes=2**20, device="meta") == [(30, 30)]


def test_an_engine_may_defer_its_blocks(rng):
    """An engine may return a callable that waits for its block (the GPU's): the next block is
    launched before the previous one is handed over, and every block still comes out once."""
    events = []

    def deferred(*args):
        k = sum(e[0] == "launch" for e in events)
        events.append(("launch", k))
        sums = ds._numba_sums(*args)

        def wait():
            events.append(("wait", k))
            return sums
        return wait

    engine = ds.Engine("deferred", deferred, ds._fused_block_bytes, None, True)
    p = probs(rng, 9, 7, 3)
    got = assemble(p, np.arange(9), engine=engine, max_block_bytes=2500)
    want = definition(p)
    np.fill_diagonal(want, 0.0)
    np.testing.assert_allclose(got, want, atol=ATOL)
    n = sum(e[0] == "launch" for e in events)
    assert n > 2
    # launch 0, launch 1, wait 0, launch 2, wait 1, ..., wait n-1
    assert events == ([("launch", 0)] + [e for k in range(1, n)
                                         for e in (("launch", k), ("wait", k - 1))]
                      + [("wait", n - 1)])


@pytest.mark.parametrize(("rows", "message"), [
    (np.array([[0, 1]]), r"rows_i must be a 1-D array of integer row indices"),
    (np.array([0.0, 1.0]), r"rows_i must be a 1-D array of integer row indices"),
    (np.array([2, 1]), r"rows_i must be sorted, unique row indices in \[0, 4\]"),
    (np.array([1, 1]), r"rows_i must be sorted, unique row indices in \[0, 4\]"),
    (np.array([-1, 2]), r"rows_i must be sorted, unique row indices in \[0, 4\]"),
    (np.array([3, 5]), r"rows_i must be sorted, unique row indices in \[0, 4\]"),
])
def test_row_indices_must_be_sorted_unique_and_in_range(rows, message):
    with pytest.raises(ValueError, match=message):
        ds._check_rows(rows, 5, "rows_i")


def test_row_indices_at_the_edges_are_accepted():
    np.testing.assert_array_equal(ds._check_rows(np.array([0, 4]), 5, "rows_j"), [0, 4])
    got = ds._check_rows(np.array([1, 2], dtype=np.int32), 5, "rows_j")
    assert got.dtype == np.int64
    assert ds._check_rows(np.array([]), 5, "rows_j").size == 0  # an empty float array: no rows
    assert ds._check_rows([3], 5, "rows_j").tolist() == [3]
    with pytest.raises(ValueError, match=r"rows_j must be sorted, unique row indices in \[0, 4\]"):
        ds._check_rows(np.array([0, 2, 2, 3]), 5, "rows_j")


def test_contiguous_rows_are_read_as_a_slice():
    """A block of contiguous rows is read as one slice (one span of a memory-mapped file);
    scattered rows as the index array itself."""
    rows = np.array([2, 3, 4, 5, 9, 10, 12])
    assert ds._sub_rows(None, slice(3, 7)) == slice(3, 7)
    assert ds._sub_rows(rows, slice(0, 4)) == slice(2, 6)
    assert ds._sub_rows(rows, slice(4, 6)) == slice(9, 11)
    assert ds._sub_rows(rows, slice(6, 7)) == slice(12, 13)
    for positions in (slice(3, 5), slice(4, 7), slice(0, 7)):
        got = ds._sub_rows(rows, positions)
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, rows[positions])
    # a slice of the right length with a gap inside is not contiguous
    np.testing.assert_array_equal(ds._sub_rows(np.array([1, 2, 4, 4]), slice(0, 4)),
                                  [1, 2, 4, 4])
    assert len(ds._sub_rows(rows, slice(7, 7))) == 0
    assert ds._count(slice(3, 7)) == 4 and ds._count(np.array([1, 5])) == 2


def test_rows_are_taken_as_c_ordered_float32(rng):
    """The kernels read (rows, S, C) float32 rows in C order, whatever the input's layout."""
    p = np.asfortranarray(probs(rng, 5, 6, 3).astype(np.float64))
    got = ds._take(p, np.array([0, 3]), slice(1, 6, 2))
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, p[[0, 3], 1:6:2].astype(np.float32))
    assert ds._take(p, slice(1, 4), slice(None)).flags.c_contiguous


# --- engines -----------------------------------------------------------------------------------


def test_each_method_selects_its_engine_on_the_cpu(caplog):
    assert resolve_engine("reference") is ds.REFERENCE
    assert resolve_engine("reference", "meta") is ds.REFERENCE  # no kernel is looked for
    assert resolve_engine("auto") is ds.FUSED_NUMBA
    assert resolve_engine("fused", "cpu") is ds.FUSED_NUMBA
    # the smallest floor the CPU kernel supports is included; below it, auto falls back
    from lowdim.geometry.kernels import numba_bc

    assert resolve_engine("fused", "cpu", bc_floor=numba_bc.MIN_FLOOR) is ds.FUSED_NUMBA
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
        assert resolve_engine("auto", "cpu", bc_floor=1e-310) is ds.REFERENCE
    assert "bc_floor=1e-310 is below 1e-300, the smallest floor the fused kernel" in caplog.text
    with pytest.raises(ValueError, match=r"method must be one of auto, reference, fused, got "
                                         r"'numba'"):
        resolve_engine("numba")


def test_a_floor_below_the_kernel_range_falls_back_to_the_reference(rng):
    """auto with bc_floor below the fused kernel's range: the reference method (its float32
    clip cannot hold such a floor, so the rows here have no zero coefficient)."""
    p, q = probs(rng, 3, 5, 3), probs(rng, 2, 5, 3)
    got = bhattacharyya(p, q, bc_floor=1e-310)
    np.testing.assert_allclose(got, definition(p, q, floor=1e-310), atol=ATOL)


def test_a_missing_numba_is_reported(monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "lowdim.geometry.kernels.numba_bc", None)
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
        assert resolve_engine("auto", "cpu") is ds.REFERENCE
    assert caplog.records[-1].getMessage() == ("Bhattacharyya distances use the reference "
                                               "method: numba is not installed (pip install numba)")
    with pytest.raises(ValueError, match=r"method='fused' cannot run on cpu: numba is not "
                                         r"installed \(pip install numba\); use method='auto'"):
        resolve_engine("fused", "cpu")


def test_the_cuda_kernel_is_selected_by_the_same_rules(monkeypatch, caplog):
    """The choice on a CUDA device, with the device check stubbed: the Triton engine when it can
    run, else the reference with the reason (auto) or a ValueError (fused)."""
    from lowdim.geometry.kernels import triton_bc

    monkeypatch.setattr(triton_bc, "unavailable_reason", lambda dev: None)
    assert resolve_engine("fused", "cuda") is ds.FUSED_TRITON
    assert resolve_engine("auto", "cuda", bc_floor=triton_bc.MIN_FLOOR) is ds.FUSED_TRITON
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
        assert resolve_engine("auto", "cuda", bc_floor=1e-40) is ds.REFERENCE
    assert caplog.records[-1].getMessage() == (
        "Bhattacharyya distances use the reference method: bc_floor=1e-40 is below 1.18e-38, "
        "the smallest floor the fused kernel supports")
    monkeypatch.setattr(triton_bc, "unavailable_reason", lambda dev: f"no GPU for {dev}")
    with pytest.raises(ValueError, match=r"method='fused' cannot run on cuda: no GPU for cuda; "
                                         r"use method='auto' or 'reference'"):
        resolve_engine("fused", "cuda")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lowdim.geometry.distances"):
        assert resolve_engine("auto", "cuda") is ds.REFERENCE
    assert caplog.records[-1].getMessage() == ("Bhattacharyya distances use the reference "
                                               "method: no GPU for cuda")


def test_the_cpu_needs_no_torch_device():
    """The CPU is a torch-free stand-in (the numba path never imports torch); others are torch
    devices."""
    import torch

    cpu = ds._device("cpu")
    assert cpu.type == "cpu" and str(cpu) == "cpu" and not isinstance(cpu, torch.device)
    assert ds._device(torch.device("cpu")).type == "cpu"
    meta = ds._device("meta")
    assert isinstance(meta, torch.device) and meta.type == "meta"


def test_torch_engines_run_without_autograd_and_leave_grad_mode_alone(rng):
    import torch

    assert isinstance(ds._no_grad(ds.FUSED_NUMBA), contextlib.nullcontext)
    with ds._no_grad(ds.REFERENCE):
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    p = probs(rng, 5, 4, 3)
    for _ in distance_blocks(p, np.arange(5), engine=ds.REFERENCE, max_block_bytes=600):
        assert torch.is_grad_enabled()  # the caller's code between blocks keeps its mode



def test_the_progress_bar_shows_only_when_asked(rng, capsys):
    p = probs(rng, 6, 3, 2)
    bar = r"(^|\r)Bhattacharyya blocks: 100%\|"
    bhattacharyya(p, block_rows=2)
    list(distance_blocks(p, np.arange(6), engine=ds.REFERENCE, max_block_bytes=600))
    assert capsys.readouterr().err == ""
    bhattacharyya(p, block_rows=2, progress=True)
    assert re.search(bar, capsys.readouterr().err)
    list(distance_blocks(p, np.arange(6), engine=ds.REFERENCE, max_block_bytes=600,
                         progress=True))
    assert re.search(bar, capsys.readouterr().err)


# --- reference points --------------------------------------------------------------------------


def test_ignorance_point_is_uniform_at_the_smallest_sizes():
    np.testing.assert_array_equal(ignorance_point(1, 2), [[0.5, 0.5]])
    x = ignorance_point(3, 7)
    assert x.dtype == np.float32 and x.shape == (3, 7) and np.all(x == np.float32(1 / 7))
    for n, c in ((0, 3), (-1, 3), (2, 1), (2, 0)):
        with pytest.raises(ValueError, match=rf"need num_samples >= 1 and num_classes >= 2, got "
                                             rf"{n} and {c}"):
            ignorance_point(n, c)


def test_truth_point_is_one_hot_and_checks_its_labels():
    t = truth_point(np.array([1, 0, 1]), 2)
    np.testing.assert_array_equal(t, [[0, 1], [1, 0], [0, 1]])
    assert t.dtype == np.float32
    np.testing.assert_array_equal(truth_point([0, 2], 3), [[1, 0, 0], [0, 0, 1]])  # a list
    np.testing.assert_array_equal(truth_point(np.array([2]), 3), [[0, 0, 1]])  # one sample
    for labels, message in [
        (np.array([[0, 1]]), r"labels must be a non-empty 1-D array, got shape \(1, 2\)"),
        (np.array([], dtype=int), r"labels must be a non-empty 1-D array, got shape \(0,\)"),
        (np.array([0.0, 1.0]), r"labels must be integers, got dtype float64"),
        (np.array([-1, 0]), r"labels must lie in \[0, 2\], got range \[-1, 0\]"),
        (np.array([0, 3]), r"labels must lie in \[0, 2\], got range \[0, 3\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            truth_point(labels, 3)
    with pytest.raises(ValueError, match=r"num_classes must be >= 2, got 1"):
        truth_point(np.array([0]), 1)
