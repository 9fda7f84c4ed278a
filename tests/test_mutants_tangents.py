"""lowdim.geometry.tangent_basis against its definitions, at the edges `make mutants` found
untested: several row blocks, float32 inputs (computed in float64), the bounds of every check
and the full text of every error (docs/performance.md, "Mutation testing")."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lowdim.geometry import tangent_basis as tb
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import project


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _definition_l1(d, x, s, k):
    """1 - sum_{i<j} |D_k - D| / sum_{i<j} D, every pair at once, in float64."""
    d, x, s = (np.asarray(a, dtype=np.float64) for a in (d, x, s))
    diff = x[:, None, :k] - x[None, :, :k]
    d_k = (diff * diff * s[:k]).sum(-1)
    upper = np.triu(np.ones(d.shape, dtype=bool), 1)
    return 1.0 - np.abs(d_k - d)[upper].sum() / d[upper].sum()


def _signed_case(rng, m, k=3):
    x = rng.normal(size=(m, k))
    s = np.array([1.0, -1.0, 0.0][:k])
    diff = x[:, None] - x[None]
    d = np.abs((diff * diff * np.array([1.0, -0.3, 0.5][:k])).sum(-1))
    return d, x, s


def test_explained_distance_over_several_row_blocks_matches_the_definition(rng):
    # M = 2100 rows come in blocks of 2**22 // M = 1997: the second block must be added, offset
    m = 2100
    d, x, s = _signed_case(rng, m)
    for k in (1, 3):
        assert tb.explained_distance_l1(d, x, s, k) == pytest.approx(
            _definition_l1(d, x, s, k), rel=1e-12)


def test_explained_distance_computes_float32_inputs_in_float64(rng):
    d, x, s = _signed_case(rng, 40)
    d32, x32 = d.astype(np.float32), x.astype(np.float32)
    exact = _definition_l1(d32.astype(np.float64), x32.astype(np.float64), s, 3)
    got = tb.explained_distance_l1(d32, x32, s.astype(np.float32), 3)
    assert got == pytest.approx(exact, rel=1e-13, abs=1e-15)


def test_a_null_axis_contributes_nothing(rng):
    # sign 0 on the third axis: its coordinates may be anything (a division by the sign is not)
    d, x, s = _signed_case(rng, 30)
    y = x.copy()
    y[:, 2] = rng.normal(size=30) * 1e3
    assert tb.explained_distance_l1(d, y, s, 3) == pytest.approx(
        tb.explained_distance_l1(d, x, s, 2), rel=1e-12)


def test_small_positive_distances_are_accepted():
    # every distance 1e-3: the sum over pairs is positive though far below 1
    x = np.array([[0.0], [np.sqrt(1e-3)]])
    d = np.array([[0.0, 1e-3], [1e-3, 0.0]])
    assert tb.explained_distance_l1(d, x, np.ones(1), 1) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("d", "x", "s", "k", "message"), [
    (np.float64(1.0), np.zeros((1, 1)), np.ones(1), 1,
     "d_true must be a square (M, M) matrix, got shape ()"),
    (np.zeros((2, 3)), np.zeros((2, 1)), np.ones(1), 1,
     "d_true must be a square (M, M) matrix, got shape (2, 3)"),
    (np.ones((2, 2)), np.zeros((3, 1)), np.ones(1), 1,
     "coords must have shape (2, K) to match d_true, got (3, 1)"),
    (np.ones((2, 2)), np.zeros((2, 2)), np.array([1.0, 2.0]), 1,
     "signs must be (2,) values in {-1, 0, +1}, got [1. 2.]"),
    (np.ones((2, 2)), np.zeros((2, 2)), np.ones(3), 1,
     "signs must be (2,) values in {-1, 0, +1}, got [1. 1. 1.]"),
    (np.ones((2, 2)), np.zeros((2, 2)), np.ones(2), 1.5,
     "k must be an integer in 1..2 (the axes given), got 1.5"),
    (np.ones((2, 2)), np.zeros((2, 2)), np.ones(2), True,
     "k must be an integer in 1..2 (the axes given), got True"),
    (np.array([[0.0, np.nan], [np.nan, 0.0]]), np.zeros((2, 1)), np.ones(1), 1,
     "d_true and coords must be finite"),
    (np.ones((2, 2)), np.array([[0.0], [np.inf]]), np.ones(1), 1,
     "d_true and coords must be finite"),
    (np.zeros((2, 2)), np.zeros((2, 1)), np.ones(1), 1,
     "d_true has no positive distance between distinct points"),
])
def test_explained_distance_refuses_bad_input_with_its_message(d, x, s, k, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        tb.explained_distance_l1(d, x, s, k)


def test_zero_signs_are_valid():
    x = np.array([[0.0, 5.0], [1.0, -5.0]])
    d = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert tb.explained_distance_l1(d, x, np.array([1.0, 0.0]), 2) == pytest.approx(1.0)


# --- kernel weights and averages -----------------------------------------------------------

def _definition_weights(lam, centre, width):
    w = np.exp(-((np.asarray(lam, dtype=np.float64) - centre) ** 2) / (2.0 * width**2))
    return w / w.sum()


def test_kernel_weights_are_the_normalized_gaussian_in_float64(rng):
    lam = rng.uniform(0, 1, 50).astype(np.float32)
    got = tb.kernel_weights(lam, 0.4, 0.07)
    np.testing.assert_allclose(got, _definition_weights(lam, 0.4, 0.07), rtol=1e-13, atol=0)


def test_kernel_weights_of_a_distant_centre_in_a_narrow_kernel_stay_finite():
    # the nearest checkpoint 4 widths away in a kernel of width 1e-3: still a proper average
    lam = np.array([0.004, 0.0045, 0.9])
    w = tb.kernel_weights(lam, 0.0, 1e-3)
    assert np.isfinite(w).all() and w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(w, _definition_weights(lam, 0.0, 1e-3), rtol=1e-10)


def test_one_checkpoint_takes_all_the_weight():
    np.testing.assert_array_equal(tb.kernel_weights(np.array([0.3]), 0.3), [1.0])


def test_a_checkpoint_exactly_five_widths_away_is_still_averaged():
    # 5 * 0.25 = 1.25 exactly: the bound is inclusive
    np.testing.assert_array_equal(tb.kernel_weights(np.array([1.25]), 0.0, 0.25), [1.0])


@pytest.mark.parametrize(("lam", "width", "message"), [
    (np.zeros(0), 0.05, "progress must be a non-empty finite 1-D array, got shape (0,)"),
    (np.zeros((2, 2)), 0.05, "progress must be a non-empty finite 1-D array, got shape (2, 2)"),
    (np.array([0.2, np.nan]), 0.05,
     "progress must be a non-empty finite 1-D array, got shape (2,)"),
    (np.array([0.2]), 0.0, "width must be > 0, got 0.0"),
    (np.array([0.9]), 0.05,
     "no checkpoint has progress within 5 widths (0.05) of the centre 0.2: the nearest is at "
     "0.9; choose a centre inside the range of progress or a wider kernel"),
])
def test_kernel_weights_refuse_bad_input_with_their_message(lam, width, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        tb.kernel_weights(lam, 0.2, width)


def test_kernel_average_over_several_model_blocks_matches_the_definition(rng):
    # 300 models (blocks of 256), 7 samples, 3 classes: N differs from M and C
    m = 300
    probs = rng.dirichlet(np.ones(3), size=(m, 7)).astype(np.float32)
    lam = np.linspace(0.0, 1.0, m)
    w = _definition_weights(lam, 0.6, 0.1)
    expected = np.einsum("m,mnc->nc", w, probs.astype(np.float64))
    got = tb.kernel_average(probs, lam, 0.6, 0.1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_kernel_average_blocks_are_bounded_in_bytes_too(rng, monkeypatch):
    # a budget of 5 models of (7, 3) float64: 60 blocks, where 256 models a block would be 2
    m = 300
    probs = rng.dirichlet(np.ones(3), size=(m, 7)).astype(np.float32)
    lam = np.linspace(0.0, 1.0, m)
    monkeypatch.setattr(tb, "_BLOCK_BYTES", 5 * 7 * 3 * 8)
    read = []

    class Spy(np.ndarray):
        blockwise = True  # passed through the input check as it is, read by slices

        def __getitem__(self, key):
            read.append(key)
            return np.asarray(self)[key]

    got = tb.kernel_average(probs.view(Spy), lam, 0.6, 0.1)
    assert read[-60:] == [slice(s, s + 5) for s in range(0, m, 5)]  # after the input check's
    expected = np.einsum("m,mnc->nc", _definition_weights(lam, 0.6, 0.1), probs.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_kernel_average_refuses_mismatched_inputs_with_its_message(rng):
    probs = rng.dirichlet(np.ones(3), size=(4, 5))
    with pytest.raises(ValueError, match=re.escape("progress has 3 values but probs has 4 models")):
        tb.kernel_average(probs, np.array([0.1, 0.2, 0.3]), 0.2)
    with pytest.raises(ValueError, match=r"^probs must be a 3-D array"):
        tb.kernel_average(probs[0], np.array([0.1]), 0.2)


# --- the basis, its embedding and projections ----------------------------------------------

def _four(rng, n=6, c=3, dtype=np.float64):
    return [rng.dirichlet(np.ones(c), size=n).astype(dtype) for _ in range(4)]


def test_tangent_basis_is_float64_in_the_authors_order(rng):
    pts = _four(rng, dtype=np.float32)
    basis = tb.tangent_basis(*pts)
    assert basis.dtype == np.float64
    for i, p in enumerate(pts):
        np.testing.assert_array_equal(basis[i], p.astype(np.float64))


def test_tangent_basis_names_the_bad_point(rng):
    pts = _four(rng)
    pts[3] = pts[3][None]
    with pytest.raises(ValueError, match=r"^end average must be a 2-D array of shape \(N, C\)"):
        tb.tangent_basis(*pts)


def test_tangent_embedding_uses_the_floor_and_refuses_a_bad_basis(rng):
    # two nearly disjoint pairs: the floor 0.5 caps their per-sample distances at -log 0.5
    rows = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0])
    pts = [np.tile(np.array([r]), (4, 1)) for r in rows]
    basis = tb.tangent_basis(*pts)
    floored = tb.tangent_embedding(basis, bc_floor=0.5)
    d = bhattacharyya(basis, bc_floor=0.5)
    assert d[0, 1] == pytest.approx(-np.log(0.5))
    np.testing.assert_allclose(project(d, floored), floored.coords, atol=1e-9)
    assert not np.allclose(tb.tangent_embedding(basis).eigenvalues, floored.eigenvalues)
    with pytest.raises(ValueError, match=re.escape("basis must hold 4 points (P0, P*, start, "
                                                   "end), got 3")):
        tb.tangent_embedding(basis[:3])
    with pytest.raises(ValueError, match=r"^basis must be a 3-D array"):
        tb.tangent_embedding(basis[0])
    with pytest.raises(ValueError, match="method"):
        tb.tangent_embedding(basis, method="no-such-method")


def test_projection_onto_the_basis_uses_every_setting(rng):
    pts = _four(rng, n=8, c=4)
    basis = tb.tangent_basis(*pts)
    emb = tb.tangent_embedding(basis, sample_step=2, bc_floor=0.3)
    models = rng.dirichlet(np.ones(4) * 0.2, size=(5, 8))
    got = tb.project_onto_basis(models, basis, emb, sample_step=2, bc_floor=0.3)
    expected = project(bhattacharyya(models, basis, sample_step=2, bc_floor=0.3), emb)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    # the basis points land on their own coordinates
    np.testing.assert_allclose(tb.project_onto_basis(basis, basis, emb, sample_step=2,
                                                     bc_floor=0.3), emb.coords, atol=1e-9)
    with pytest.raises(ValueError, match="method"):
        tb.project_onto_basis(models, basis, emb, method="no-such-method")
    other = tb.project_onto_basis(models, basis, emb, sample_step=1, bc_floor=0.3)
    assert not np.allclose(other, got)


def test_a_zero_direction_is_refused_with_its_message(rng):
    p0, p_star, start, end = _four(rng)
    with pytest.raises(ValueError, match="^" + re.escape(
            "a direction has zero length: the start average equals P0 or the end average "
            "equals P*") + "$"):
        tb.direction_cosine(p0, p_star, p0, end)


def test_the_default_kernel_width_is_the_authors_0_05(rng):
    lam = rng.uniform(0.1, 0.5, 30)
    np.testing.assert_allclose(tb.kernel_weights(lam, 0.3), _definition_weights(lam, 0.3, 0.05),
                               rtol=1e-12)
    probs = rng.dirichlet(np.ones(3), size=(30, 2))
    np.testing.assert_allclose(tb.kernel_average(probs, lam, 0.3),
                               tb.kernel_average(probs, lam, 0.3, 0.05), rtol=0, atol=0)
