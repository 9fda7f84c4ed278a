"""Shared fixtures: the repository root and small prepared data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_prepared():
    """Digits with small evaluation subsets: enough to train a few steps."""
    from lowdim.data import load_source, prepare

    return prepare(load_source("digits", test_fraction=0.25, split_seed=2), 60, 40, 0)
