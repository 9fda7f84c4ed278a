"""Atomic writes: a product is either the old one or the new one, never half of each."""

from __future__ import annotations

import json

import pytest

from lowdim.store.atomic import atomic_directory, atomic_file, write_json


def test_directory_is_replaced_whole(tmp_path):
    final = tmp_path / "product"
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("old")
        (tmp / "stale").write_text("x")
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    assert (final / "a").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["product"]  # no temporary or old copies


def test_failure_keeps_the_old_directory(tmp_path):
    final = tmp_path / "product"
    with atomic_directory(final) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("interrupted")
    assert (final / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["product"]


def test_file_and_json(tmp_path):
    write_json({"b": 1, "a": [1.5]}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1.5], "b": 1}
    with pytest.raises(KeyError), atomic_file(tmp_path / "m.json") as tmp:
        tmp.write_text("broken")
        raise KeyError
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1.5], "b": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
