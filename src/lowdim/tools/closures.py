"""How entangled the package is, as DVC sees it: each stage's code closure and which stages an
edit reruns.

    python -m lowdim.tools.closures                     # this checkout
    python -m lowdim.tools.closures --root OTHER_CHECKOUT
    python -m lowdim.tools.closures src/lowdim/models src/lowdim/training/run.py ...

prints the median (and total) closure of the stages, in files and lines of `src/`, then for each
path given (default: every package folder and top-level module, and every config section) how
many stages list a dep covering it, i.e. how many an edit there reruns. The closure is
`lowdim.tools.stage_deps.code_closure` (what the stage's notebook can run); the reruns come from
the `deps` written in dvc.yaml, which is what DVC acts on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from lowdim.paths import find_root
from lowdim.tools.stage_deps import code_closure, covered, dep_paths, load_stages


def source_lines(path: Path) -> int:
    """Lines of one file."""
    return len(path.read_text().splitlines())


def closure_size(stage: Mapping, root: Path) -> tuple[int, int]:
    """(files, lines) of `src/` the stage's notebook can run."""
    files = [root / p for p in code_closure(stage, root) if p.startswith("src/")]
    return len(files), sum(source_lines(f) for f in files)


def rerun_by(path: str, stages: Mapping[str, Mapping]) -> list[str]:
    """The stages whose deps cover `path`, or lie inside it (an edit anywhere in a folder)."""
    return sorted(name for name, stage in stages.items()
                  if any(covered(path, [dep]) or covered(dep, [path])
                         for dep in dep_paths(stage)))


def default_paths(root: Path) -> list[str]:
    """Every package folder and top-level module of src/lowdim, and every config module."""
    package = root / "src" / "lowdim"
    paths = [p for p in sorted(package.iterdir())
             if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())]
    config = package / "config"
    if config.is_dir():
        paths += sorted(p for p in config.rglob("*.py") if p.name != "__init__.py")
    return [p.relative_to(root).as_posix() for p in paths]


def report(root: Path, paths: Iterable[str]) -> str:
    """The closure summary and the rerun table, as text."""
    stages = load_stages(root)
    sizes = {name: closure_size(stage, root) for name, stage in stages.items()}
    files = [f for f, _ in sizes.values()]
    lines = [n for _, n in sizes.values()]
    out = [f"{len(stages)} stages; src/: {len(list((root / 'src').rglob('*.py')))} files",
           f"median closure: {statistics.median(files):g} files / {statistics.median(lines):,g}"
           f" lines; total over stages: {sum(lines):,} lines",
           "", "stages rerun by an edit to:"]
    out += [f"  {len(rerun_by(path, stages)):3d}  {path}" for path in paths]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="repository-relative paths (default: all)")
    parser.add_argument("--root", type=Path, default=None, help="checkout to measure")
    parser.add_argument("--stages", action="store_true", help="print each stage's closure")
    args = parser.parse_args(argv)
    root = (args.root or find_root()).resolve()
    print(report(root, args.paths or default_paths(root)))
    if args.stages:
        for name, stage in load_stages(root).items():
            files, lines = closure_size(stage, root)
            print(f"  {name:28s} {files:3d} files {lines:6,d} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
