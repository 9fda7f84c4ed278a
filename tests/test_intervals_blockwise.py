"""The intervals stage at scale: its resamples are ``Submatrix`` views of the stored D
(lowdim.store.lazy), read into memory up to ``IN_MEMORY_BYTES`` and a block at a time beyond.
Formed whole, a resample holds the in-memory bytes (landmarks included); its products with the
iterative solvers run over the source's whole rows (``Submatrix.product``) and equal the
in-memory products to rounding, and exactly with every row of the source in order."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lowdim.analysis.intervals import explained_stresses, stress_of_resample
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.eigen import d_product
from lowdim.geometry.inpca import inpca
from lowdim.store import lazy
from lowdim.store.arrays import NpyFile
from lowdim.store.lazy import Submatrix, in_memory_if_small

DIMS = (1, 2, 3)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Distances of 60 points of 12 runs (5 points each) and the same matrix as an NpyFile."""
    rng = np.random.default_rng(4)
    d = bhattacharyya(rng.dirichlet(np.full(5, 0.5), size=(60, 20)).astype(np.float32))
    path = tmp_path_factory.mktemp("intervals") / "train.npy"
    np.save(path, d)
    return d, NpyFile(path), np.repeat(np.arange(12), 5)


def test_rows_of_a_submatrix_are_the_in_memory_rows(stored):
    d, file, _ = stored
    rows = np.array([3, 3, 7, 0, 59, 12, 12, 40])  # a bootstrap repeats points
    lazy = Submatrix(file, rows)
    picked = np.array([5, 0, 1, 7])
    assert np.array_equal(lazy[picked], d[np.ix_(rows, rows)][picked])
    # the generic LazyMatrix reads the rows one by one: the same values
    assert np.array_equal(super(Submatrix, lazy).take_rows(picked), lazy[picked])


def test_a_submatrix_is_read_whole_a_slab_of_rows_at_a_time(stored, monkeypatch):
    d, file, _ = stored
    rows = np.array([3, 3, 7, 0, 59, 12, 12, 40, 41, 42, 1])
    monkeypatch.setattr(lazy, "SLAB_BYTES", 3 * 8 * 60)  # three stored rows a slab: four slabs
    assert np.array_equal(np.asarray(Submatrix(file, rows)), d[np.ix_(rows, rows)])


def test_a_matrix_is_read_whole_only_below_the_limit(stored):
    d, file, _ = stored
    assert isinstance(in_memory_if_small(file), np.ndarray)
    assert in_memory_if_small(file, limit=8 * 60 * 60 - 1) is file


@pytest.mark.parametrize("solver", ["dense", "randomized"])
def test_a_resample_read_in_blocks_gives_the_in_memory_stresses(stored, monkeypatch, solver):
    d, file, point_run = stored
    runs = np.array([0, 0, 3, 5, 5, 5, 11, 2, 9, 9, 1, 4])
    options = {"n_components": 6, "solver": solver}
    rows = np.repeat(np.arange(60), np.bincount(runs, minlength=12)[point_run])
    expected = explained_stresses(d[np.ix_(rows, rows)], DIMS, **options)[0]
    assert stress_of_resample(file, point_run, runs, DIMS, **options) == expected
    monkeypatch.setattr(lazy, "IN_MEMORY_BYTES", 0)  # every matrix read a block at a time
    blockwise = stress_of_resample(file, point_run, runs, DIMS, **options)
    if solver == "dense":  # formed whole: the in-memory bytes
        assert blockwise == expected
    else:  # products summed over the source's columns (Submatrix.product): equal to rounding
        assert blockwise == pytest.approx(expected, rel=1e-12, abs=0)
    assert explained_stresses(file, DIMS, **options) == explained_stresses(d, DIMS, **options)


def test_landmarks_of_a_submatrix_are_those_of_the_in_memory_matrix(stored):
    d, file, _ = stored
    rows = np.arange(0, 60, 2)
    a = inpca(d[np.ix_(rows, rows)], 4, landmarks=10)
    b = inpca(Submatrix(file, rows), 4, landmarks=10)
    for field in dataclasses.fields(a):
        assert np.array_equal(np.asarray(getattr(a, field.name)),
                              np.asarray(getattr(b, field.name))), field.name



@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("block_bytes", [8 * 60, 5 * 8 * 60, 2**20])  # 1, 5 and all rows a slab
def test_a_submatrix_product_sums_over_the_source_rows(stored, tmp_path, symmetric, block_bytes):
    d, _, _ = stored
    rng = np.random.default_rng(5)
    source = d if symmetric else d + 0.01 * rng.random(d.shape)  # S = (D + D^T)/2 is not D
    np.save(tmp_path / "d.npy", source)
    rows = np.array([3, 3, 7, 0, 59, 12, 12, 12, 40, 41, 42, 1])  # repeats, out of order
    x = rng.standard_normal((len(rows), 3))
    want = d_product(source[np.ix_(rows, rows)], x, symmetric, block_bytes)
    for matrix in (source, NpyFile(tmp_path / "d.npy")):
        got = Submatrix(matrix, rows).product(x, symmetric, block_bytes)
        assert np.allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())
        # and what the solvers call: d_product hands a Submatrix its own product
        assert np.array_equal(d_product(Submatrix(matrix, rows), x, symmetric, block_bytes), got)
    # every row once and in order: the slabs and sums of d_product over the source, bit for bit
    x = rng.standard_normal((60, 3))
    assert np.array_equal(Submatrix(NpyFile(tmp_path / "d.npy")).product(x, symmetric, block_bytes),
                          d_product(source, x, symmetric, block_bytes))


def test_row_slabs_cover_the_distinct_rows_in_contiguous_reads():
    rows = np.array([0, 1, 2, 3, 4, 9, 10, 20])
    assert lazy.row_slabs(rows, 2) == [slice(0, 2), slice(2, 4), slice(4, 5), slice(9, 11),
                                       slice(20, 21)]
    assert lazy.row_slabs(np.arange(7), 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert lazy.row_slabs(np.array([], dtype=int), 3) == []


def test_tiles_of_a_submatrix_are_the_in_memory_tiles(stored, tmp_path):
    d, file, _ = stored
    rows = np.array([3, 3, 7, 0, 59, 12, 12, 40, 41, 42, 1])  # repeats, out of order
    whole = d[np.ix_(rows, rows)]
    for source in (d, np.load(file.path, mmap_mode="r"), file):
        lazy = Submatrix(source, rows)
        for r, c in [(slice(0, 4), slice(5, 11)), (slice(7, 10), slice(7, 10)),
                     (slice(2, 3), slice(0, 11))]:
            assert np.array_equal(lazy[r, c], whole[r, c]), (type(source).__name__, r, c)
