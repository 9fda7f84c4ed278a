"""lowdim.store.arrays.NpyFile: what its reads return, and how much of the file they map."""

from __future__ import annotations

import numpy as np
import pytest

from lowdim.geometry.eigen import d_product
from lowdim.store import arrays
from lowdim.store.arrays import NpyFile


@pytest.fixture
def stored(tmp_path):
    x = np.random.default_rng(0).random((7, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return x, NpyFile(tmp_path / "x.npy")


def _spans(file, monkeypatch) -> list[int]:
    """Record the rows of each memory map `file` makes."""
    spans, mapper = [], file._map

    def recorded(start, stop, mode):
        spans.append(stop - start)
        return mapper(start, stop, mode)

    monkeypatch.setattr(file, "_map", recorded)
    return spans


@pytest.mark.parametrize("key", [(slice(1, 6), slice(1, 4)), (slice(0, 7), 2),
                                 (slice(2, 5), [0, 3]), (slice(None), slice(1, 3), slice(0, 2)),
                                 (slice(3, 3), slice(0, 2))])
def test_part_of_each_row_is_read_through_maps_of_a_few_rows(stored, monkeypatch, key):
    x, file = stored
    monkeypatch.setattr(arrays, "_READ_SPAN_BYTES", 2 * file.row_bytes)  # two rows a map
    spans = _spans(file, monkeypatch)
    got = file[key]
    assert got.dtype == x.dtype and np.array_equal(got, x[key])
    assert spans and max(spans) <= 2 or x[key].shape[0] == 0


def test_keys_that_numpy_reorders_are_read_as_numpy_reads_them(tmp_path, monkeypatch):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    np.save(tmp_path / "x.npy", x)
    file = NpyFile(tmp_path / "x.npy")
    monkeypatch.setattr(arrays, "_READ_SPAN_BYTES", 1)
    key = (slice(0, 2), [0, 2], slice(None), [1, 4])  # advanced keys apart: their axis first
    assert np.array_equal(file[key], x[key]) and file[key].shape == (2, 2, 4)


@pytest.mark.parametrize("key", [[6, 0, 3, 3, 5, 1], (np.array([1, 2, 6]), slice(1, 4)),
                                 (np.array([6, 2, 2, 0]), np.array([4, 0])),
                                 (np.array([5, 1]), 2)])
def test_rows_anywhere_are_read_through_maps_of_a_few_rows(stored, monkeypatch, key):
    x, file = stored
    monkeypatch.setattr(arrays, "_READ_SPAN_BYTES", 2 * file.row_bytes)
    spans = _spans(file, monkeypatch)
    got = file[key]
    rows, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
    want = x[np.ix_(rows, rest[0])] if rest and not isinstance(rest[0], (slice, int)) else x[key]
    assert got.dtype == x.dtype and np.array_equal(got, want)
    assert max(spans) <= 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_product_reads_each_slab_of_d_in_place(tmp_path, monkeypatch, dtype):
    rng = np.random.default_rng(1)
    d = rng.random((40, 40)).astype(dtype)
    np.save(tmp_path / "d.npy", d)
    file = NpyFile(tmp_path / "d.npy")
    slab = arrays.row_slab(file, slice(5, 17))
    assert slab.dtype == np.float64 and np.array_equal(slab, d[5:17])
    assert isinstance(slab.base, np.memmap) == (dtype == np.float64)  # float64: the file pages
    monkeypatch.setattr(NpyFile, "read_rows", lambda *a: pytest.fail("a slab was copied"))
    x = rng.standard_normal((40, 3))
    for symmetric in (True, False):
        assert np.array_equal(d_product(file, x, symmetric, block_bytes=8 * 40 * 7),
                              d_product(d.astype(np.float64), x, symmetric,
                                        block_bytes=8 * 40 * 7))
