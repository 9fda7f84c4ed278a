"""Check a fresh run's metrics against the committed ones, within measured tolerance bands.

A run on another machine does not reproduce the committed numbers to the byte: CPU kernels that
sum in another order change training in the last bits, and training amplifies that
(docs/performance.md, "CPU kernels and cross-machine spread"). This compares every number of
every `metrics/*.json` with the committed value and allows each the band that
`metrics/tolerances.yaml` gives it:

    python -m lowdim.tools.compare_metrics          # metrics/ against HEAD's committed metrics/
    python -m lowdim.tools.compare_metrics --against results/quick/metrics other/metrics
    python -m lowdim.tools.compare_metrics --spread A B   # the measurement behind the bands

`--against` takes a folder or a git revision (default HEAD, whose `metrics/` is read with git).
Exit status 0 when every metric lies within its band, 1 with a list of those that do not (and
of metrics that one side lacks), 2 when a folder or the bands file cannot be read. Numbers are
compared as |fresh - committed| <= band, the band of the first pattern of the bands file that
matches `<file stem>.<key>` (keys dotted, list items as `[i]`); a number no pattern matches must
be equal, and so must text, booleans and nulls. A pattern whose band is null names metrics whose
spread was never measured: a difference there is listed as not checked and fails nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from lowdim.paths import find_root

METRICS = "metrics"
BANDS = Path(METRICS) / "tolerances.yaml"

# (glob over "<file stem>.<key>", largest absolute difference allowed; inf: not measured)
Band = tuple[str, float]


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Every leaf of nested mappings and lists, keyed by its dotted path under `prefix`."""
    if isinstance(value, Mapping):
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            leaves.update(flatten(item, f"{prefix}.{key}"))
        return leaves
    if isinstance(value, list):
        leaves = {}
        for i, item in enumerate(value):
            leaves.update(flatten(item, f"{prefix}[{i}]"))
        return leaves
    return {prefix: value}


def parse_metrics(texts: Mapping[str, str]) -> dict[str, Any]:
    """Every metric of the JSON files given as {file name: text}, keyed `<file stem>.<key>`."""
    metrics: dict[str, Any] = {}
    for name, text in sorted(texts.items()):
        metrics.update(flatten(json.loads(text), Path(name).stem))
    return metrics


def folder_texts(folder: Path) -> dict[str, str]:
    """{file name: text} of the JSON files of a metrics folder."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is no folder: give the metrics folder of a run "
                                "(a repository's metrics/, or results/<profile>/metrics)")
    return {path.name: path.read_text() for path in sorted(folder.glob("*.json"))}


def revision_texts(root: Path, revision: str, folder: str = METRICS) -> dict[str, str]:
    """{file name: text} of the JSON files of `folder` as committed at `revision` (git)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            raise FileNotFoundError(f"git {' '.join(args)} failed in {root}: "
                                    f"{done.stderr.strip()}; give --against a folder or a "
                                    "revision of this repository")
        return done.stdout

    names = [n for n in git("ls-tree", "--name-only", f"{revision}:{folder}").split()
             if n.endswith(".json")]
    return {name: git("show", f"{revision}:{folder}/{name}") for name in names}


def load_bands(text: str, source: str = "the bands file") -> list[Band]:
    """The (pattern, band) pairs of a bands file, in its order: a mapping `bands` of glob
    pattern to a number >= 0, or null (not measured: read as an infinite band)."""
    raw = yaml.safe_load(text) or {}
    bands = raw.get("bands") if isinstance(raw, Mapping) else None
    if not isinstance(bands, Mapping) or not bands:
        raise ValueError(f"{source} has no `bands` mapping: give bands: {{<file stem>.<key "
                         "pattern>: <largest absolute difference>, ...}")
    pairs = []
    for pattern, band in bands.items():
        if band is None:
            pairs.append((str(pattern), math.inf))
            continue
        if isinstance(band, bool) or not isinstance(band, int | float) or not band >= 0:
            raise ValueError(f"{source}: the band of {pattern!r} is {band!r}: give a number "
                             ">= 0 (the largest absolute difference allowed), or null (not "
                             "measured)")
        pairs.append((str(pattern), float(band)))
    return pairs


def band_of(key: str, bands: Sequence[Band]) -> float | None:
    """The band of the first pattern that matches `key`; None when none does."""
    return next((band for pattern, band in bands if fnmatchcase(key, pattern)), None)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Finding:
    """A metric outside its band, or present on one side only."""

    key: str
    committed: Any
    fresh: Any
    difference: float | None  # |fresh - committed| when both are numbers
    band: float | None
    reason: str

    def line(self) -> str:
        if self.difference is None:
            return f"{self.key}: {self.reason} (committed {self.committed!r}, fresh {self.fresh!r})"
        return (f"{self.key}: committed {self.committed!r}, fresh {self.fresh!r}, |difference| "
                f"{self.difference:.3g} > band {self.band:g}{self.reason}")


MISSING = object()


def compare(fresh: Mapping[str, Any], committed: Mapping[str, Any],
            bands: Sequence[Band]) -> list[Finding]:
    """Every metric of either side that is outside its band or missing from the other side."""
    findings = []
    for key in sorted(set(fresh) | set(committed)):
        new, old = fresh.get(key, MISSING), committed.get(key, MISSING)
        if new is MISSING or old is MISSING:
            side = "the fresh run" if new is MISSING else "the committed metrics"
            findings.append(Finding(key, None if old is MISSING else old,
                                    None if new is MISSING else new, None, None,
                                    f"missing from {side}"))
            continue
        band = band_of(key, bands)
        if is_number(new) and is_number(old):
            if math.isnan(new) and math.isnan(old):
                continue
            difference = abs(new - old)
            allowed = 0.0 if band is None else band
            if not difference <= allowed:
                note = " (no band matches: must be equal)" if band is None else ""
                findings.append(Finding(key, old, new, difference, allowed, note))
        elif new != old:
            findings.append(Finding(key, old, new, None, band, "differ (not numbers: must be "
                                                              "equal)"))
    return findings


def unchecked(fresh: Mapping[str, Any], committed: Mapping[str, Any],
              bands: Sequence[Band]) -> list[str]:
    """The metrics that differ but have no measured band (null in the bands file)."""
    return sorted(key for key in set(fresh) & set(committed)
                  if band_of(key, bands) == math.inf and fresh[key] != committed[key]
                  and not (is_number(fresh[key]) and is_number(committed[key])
                           and math.isnan(fresh[key]) and math.isnan(committed[key])))


def spread(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, float]]:
    """|a - b| of every metric that is a number on both sides, largest first."""
    pairs = [(key, abs(a[key] - b[key])) for key in set(a) & set(b)
             if is_number(a[key]) and is_number(b[key])]
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))


def _reference(against: str, root: Path) -> tuple[dict[str, str], str]:
    folder = Path(against)
    if folder.is_dir():
        return folder_texts(folder), str(folder)
    return revision_texts(root, against), f"{against}:{METRICS}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="?", help="the fresh run's metrics folder "
                        "(default: metrics/ of this repository)")
    parser.add_argument("--against", default="HEAD", help="the committed metrics: a folder, "
                        "or a git revision whose metrics/ is read (default HEAD)")
    parser.add_argument("--bands", help=f"the bands file (default: {BANDS} of this repository)")
    parser.add_argument("--spread", nargs=2, metavar=("A", "B"),
                        help="print |A - B| of every metric of two metrics folders, largest "
                        "first, and exit")
    args = parser.parse_args(argv)
    try:
        if args.spread:
            a, b = (parse_metrics(folder_texts(Path(p))) for p in args.spread)
            for key, difference in spread(a, b):
                print(f"{difference:.6g}\t{key}")
            return 0
        root = find_root()
        fresh = parse_metrics(folder_texts(Path(args.metrics) if args.metrics
                                           else root / METRICS))
        texts, where = _reference(args.against, root)
        committed = parse_metrics(texts)
        bands_path = Path(args.bands) if args.bands else root / BANDS
        bands = load_bands(bands_path.read_text(), str(bands_path))
    except (OSError, ValueError) as err:
        print(f"compare_metrics: {err}", file=sys.stderr)
        return 2
    findings = compare(fresh, committed, bands)
    for finding in findings:
        print(finding.line())
    loose = unchecked(fresh, committed, bands)
    if loose:
        print(f"not checked (no measured band): {len(loose)} metrics differ: "
              f"{', '.join(loose)}")
    print(f"{len(set(fresh) | set(committed))} metrics compared with {where} (bands: "
          f"{bands_path}): {len(findings)} outside their band or on one side only, "
          f"{len(loose)} differ without a measured band")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
