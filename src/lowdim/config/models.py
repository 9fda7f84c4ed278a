"""The `models` section: size keywords per architecture name.

Whether a size builds is known only by building the network, which needs torch: that check is
`lowdim.models.check_sizes`, run by the train stage (and by `lowdim.config.profile`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelsConfig(Mapping[str, dict[str, Any]]):
    """Architecture name -> size keywords of the registry (absent: the paper's sizes, B2); a
    read-only mapping, as the section is written."""

    SECTION = "models"
    ITEMS = "sizes"  # the section is this field's mapping: its keys are architecture names

    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __getitem__(self, arch: str) -> dict[str, Any]:
        return self.sizes[arch]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)
