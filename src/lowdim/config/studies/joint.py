"""The `studies.joint` section: joint train+test embedding (D8), Euclidean comparison (D20)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JointConfig:
    """Joint train+test embedding (D8) and the Euclidean comparison (D20)."""

    SECTION = "studies.joint"

    enabled: bool = True
