"""Check a workspace against dvc.lock: every output's bytes must hash to what the lock records.

`dvc status` trusts the hashes DVC remembers for files it wrote itself, so a product that was
pulled corrupted, or damaged afterwards, can look up to date. This re-reads every byte:

    python -m lowdim.tools.verify            # exit status 1 and a list when anything differs
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from lowdim.paths import find_root


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes, as DVC 3 records it."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locked_outputs(lock: dict) -> Iterator[tuple[str, str]]:
    """(path, md5) of every output and metric recorded in a parsed dvc.lock."""
    for stage in lock.get("stages", {}).values():
        for out in stage.get("outs", []):
            yield out["path"], out["md5"]


def directory_manifest(root: Path, md5: str) -> list[dict]:
    """The per-file entries of a directory output, from the DVC cache's `.dir` object."""
    name = md5.removesuffix(".dir")
    path = root / ".dvc" / "cache" / "files" / "md5" / name[:2] / f"{name[2:]}.dir"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `dvc pull` or `dvc repro` first")
    return json.loads(path.read_text())


def mismatches(root: Path) -> list[str]:
    """One line per output whose workspace bytes differ from dvc.lock (or that is missing)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    problems = []
    for rel, md5 in locked_outputs(lock):
        path = root / rel
        if md5.endswith(".dir"):
            for entry in directory_manifest(root, md5):
                problems += _check_file(path / entry["relpath"], entry["md5"], root)
        else:
            problems += _check_file(path, md5, root)
    return problems


def _check_file(path: Path, md5: str, root: Path) -> list[str]:
    rel = path.relative_to(root)
    if not path.is_file():
        return [f"missing   {rel}"]
    actual = file_md5(path)
    return [] if actual == md5 else [f"corrupted {rel}: md5 {actual}, dvc.lock says {md5}"]


def main() -> int:
    """Print every mismatch; exit 0 when the workspace matches dvc.lock."""
    root = find_root()
    problems = mismatches(root)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} files differ from dvc.lock: `dvc checkout --force` restores "
              "them from the cache, `dvc pull --force` from the remote (with verify = true)")
        return 1
    print("every output matches dvc.lock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
