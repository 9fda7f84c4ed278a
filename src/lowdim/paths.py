"""Repository-anchored paths: the one place that turns a relative path into an absolute one.

Stage paths themselves are written only in dvc.yaml and passed to notebooks as parameters;
this module anchors them at the repository root so that a notebook runs the same from
`notebooks/`, from the root, or from papermill's working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("dvc.yaml", "pyproject.toml")


def find_root(start: str | Path | None = None) -> Path:
    """The nearest ancestor of `start` (default: the working directory) holding dvc.yaml."""
    env = os.environ.get("LOWDIM_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if all((candidate / marker).exists() for marker in _MARKERS):
            return candidate
    raise FileNotFoundError(
        f"no lowdim repository (a folder with {' and '.join(_MARKERS)}) above {here}: "
        "run from inside the repository or set LOWDIM_ROOT"
    )


def resolve(path: str | Path, root: str | Path | None = None) -> Path:
    """An absolute path: `path` itself if absolute, else relative to the repository root."""
    path = Path(path)
    if path.is_absolute():
        return path
    return (Path(root) if root is not None else find_root()) / path
