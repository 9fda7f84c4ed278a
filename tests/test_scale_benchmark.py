"""benchmarks/scale.py's count of the bytes of D a stage reads (its "passes over D")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from lowdim.geometry.eigen import d_product
from lowdim.store.arrays import NpyFile
from lowdim.store.lazy import Submatrix

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("scale_benchmark",
                                                  ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_read_of_d_counts_once_whatever_reads_it(tmp_path, monkeypatch):
    for name in ("read_rows", "rows_in_place", "__getitem__"):  # restored after the test
        monkeypatch.setattr(NpyFile, name, getattr(NpyFile, name))
    (tmp_path / "distances").mkdir()
    d = np.random.default_rng(0).random((30, 30))
    np.save(tmp_path / "distances" / "train.npy", d)
    np.save(tmp_path / "other.npy", d)
    counter = _benchmark().count_matrix_reads()
    stored, x = NpyFile(tmp_path / "distances" / "train.npy"), np.ones((30, 2))
    d_product(stored, x, block_bytes=8 * 30 * 7)  # five slabs read in place: one pass
    assert counter["bytes"] == d.nbytes
    Submatrix(stored, np.array([4, 4, 5, 20])).product(np.ones((4, 2)))  # three distinct rows
    assert counter["bytes"] == d.nbytes + 3 * 30 * 8
    d_product(NpyFile(tmp_path / "other.npy"), x)  # not a distances matrix: not counted
    assert counter["bytes"] == d.nbytes + 3 * 30 * 8
