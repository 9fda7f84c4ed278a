"""What every Ray driver and task of the pipeline shares: connecting to a cluster (or starting
a local instance), the check that a worker runs the driver's environment, the one-line form of
an error, and whether some node can ever run a task. Ray is imported inside the functions only.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lowdim

log = logging.getLogger(__name__)


def environment_versions() -> dict[str, str]:
    """What a worker must share with the driver: the versions of Python, torch and NumPy, and
    a digest of the lowdim source that computes the tasks."""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "lowdim": _source_digest()}


@functools.cache
def _source_digest() -> str:
    package = Path(lowdim.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def check_environment(versions: Mapping[str, str]) -> None:
    """In a task: raise RuntimeError unless this worker runs the driver's `versions`."""
    here = environment_versions()
    if here != dict(versions):
        raise RuntimeError(f"this worker runs {here} but the driver runs {dict(versions)}: "
                           "install the same environment and the same lowdim commit on every "
                           "node")


def connect(address: str | None, key: str = "train.ray.address") -> bool:
    """Connect to the cluster at `address` ("auto" or host:port), or start a local Ray instance
    when it is None; True when this call did either (so the caller shuts it down). `key` names
    the parameter that gave the address, for the message when no cluster answers."""
    import ray

    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
    except ConnectionError as err:
        raise ConnectionError(
            f"no Ray cluster at {key} = {address!r} ({err}). Start one (ray start --head), set "
            f"RAY_ADDRESS, or set {key}: null to start a local Ray instance for this stage"
        ) from None
    return True


def one_line(err: BaseException) -> str:
    """The exception's type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def node_fits(need: Mapping[str, float], nodes: Sequence[dict[str, Any]]) -> bool:
    """Whether some alive node offers every resource of `need` ({"CPU": 2, "GPU": 0.25})."""
    return any(n.get("Alive") and all(n["Resources"].get(k, 0.0) >= v
                                      for k, v in need.items() if v > 0) for n in nodes)
