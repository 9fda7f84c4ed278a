"""Reading a stage's inputs: a missing or damaged file stops the stage with a message that names
the file and what to do (run `dvc repro`, or delete the damaged file first)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")


# What a damaged file raises when read (pyarrow's errors derive from ValueError and OSError).
_DAMAGED = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError)


def read_input(path: str | Path, read: Callable[[Path], T], stage: str | None = None) -> T:
    """read(path), for a stage input: a missing or damaged file is an error that names it and
    says what to do (FileNotFoundError, ValueError). `stage`: the stage that writes it."""
    path = Path(path)
    who = f"the {stage} stage" if stage else "its stage"
    if not path.exists():
        where = "" if path.parent.is_dir() else f" (nor does {path.parent})"
        raise FileNotFoundError(
            f"{path} does not exist{where}: run `dvc repro` to make it ({who} writes it), or "
            "point the notebook's input parameter at the directory that holds it")
    try:
        return read(path)
    except _DAMAGED as err:
        raise ValueError(
            f"{path} is damaged ({type(err).__name__}: {err}): delete it and run `dvc repro` "
            f"to write it again ({who} writes it)") from err


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an npz, read (a damaged member fails here, not later)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
