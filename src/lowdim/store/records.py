"""The two prediction spaces of every run, kept free of torch so that analysis and figure code can
import them without loading it (lowdim.training.run re-exports them)."""

from __future__ import annotations

SPACES = ("train", "test")
