"""npz files written by the package (lowdim.store.arrays.save_npz): the same arrays give the same
bytes whenever they are written, so DVC sees no change where nothing changed; np.load reads them."""

from __future__ import annotations

import zipfile

import numpy as np

from lowdim.store.arrays import NPZ_DATE_TIME, save_npz
from lowdim.store.distance_matrices import save_centring
from lowdim.store.products import load_embedding, save_embeddings
from lowdim.store.records import Embedding


def _embedding(rng) -> Embedding:
    return Embedding(eigenvalues=rng.standard_normal(5), coords=rng.standard_normal((7, 3)),
                     explained_stress=np.linspace(0.5, 1.0, 5), frobenius_sq=2.5,
                     column_means=rng.random(7), grand_mean=0.3,
                     eigenvectors=rng.standard_normal((7, 3)))


def test_the_same_arrays_give_the_same_bytes_at_any_time(tmp_path, monkeypatch):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    save_npz(tmp_path / "one.npz", arrays)
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)  # np.savez would stamp this
    save_npz(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "two.npz") as zf:
        assert {i.date_time for i in zf.infolist()} == {NPZ_DATE_TIME}
    with np.load(tmp_path / "two.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["a", "b"]
        assert np.array_equal(z["a"], arrays["a"]) and z["b"].dtype == np.int64


def test_the_stages_npz_products_are_reproducible(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    emb = _embedding(rng)
    save_embeddings({"train": emb}, tmp_path / "first")
    save_centring({"row_sums": np.arange(3.0), "total": np.array(3.0)}, tmp_path / "c1.npz")
    monkeypatch.setattr("time.time", lambda: 2_000_000_000.0)
    save_embeddings({"train": emb}, tmp_path / "second")
    save_centring({"row_sums": np.arange(3.0), "total": np.array(3.0)}, tmp_path / "c2.npz")
    assert ((tmp_path / "first" / "train.npz").read_bytes()
            == (tmp_path / "second" / "train.npz").read_bytes())
    assert (tmp_path / "c1.npz").read_bytes() == (tmp_path / "c2.npz").read_bytes()
    back = load_embedding(tmp_path / "second", "train")
    assert np.array_equal(back.coords, emb.coords) and back.frobenius_sq == emb.frobenius_sq
