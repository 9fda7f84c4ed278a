"""Result numbers quoted in README.md and docs/*.md that no committed file backs.

A result number typed into prose goes stale silently when the metrics change. This finds the
quoted ones that neither a committed metric nor the paper values file holds:

    python -m lowdim.tools.quoted_numbers     # exit status 1 and a list when one is not backed

The rules, deliberately simple (a heuristic: it cannot tell a result from a setting by meaning,
only by the words around it):

- Files: README.md and docs/*.md, but docs/results.md (generated: tests/test_results_page.py
  compares it whole with what `lowdim.tools.results` writes) and docs/performance.md (the record of
  what the benchmarks/ scripts printed in a dated session: timings, sizes, speed and cost ratios,
  and solver errors on generated matrices, none of them a result of the study).
- Skipped: fenced code blocks, inline code spans, and the blocks that `lowdim.tools.results`
  generates between `<!-- results:begin` and `<!-- results:end -->` (compared whole).
- Units: each table row, and each sentence of a paragraph or list item (a sentence ends at a
  full stop followed by a space and a capital letter, `(`, `*` or a backtick).
- A unit quotes results when it names a result quantity (`RESULT_WORDS`: χ or chi, explained,
  stress, ratio, tube width, accuracy, distance to, progress) or, for a table row, when its
  table's header row does.
- The numbers of such a unit: decimals (0.95) and percentages (76 %, 5.5–6.2 %). Not integers
  (counts, dimensions, epochs, seeds), not scientific notation (tolerances such as 3.1e-8), not a
  number followed by a unit of time, size or speed (s, ms, min, h, GiB, MiB, GB, MB, G/s) or by ×
  (speed-ups and cost factors).
- Backed: some committed metric (every numeric leaf of metrics/**/*.json, intervals.json's SEs
  and bounds included; or a decimal in a metric's key, the setting it is defined at, as the 0.5
  of `tube_width_median_at_0.5`) or some value of docs/paper_values.yaml (`values` and `quoted`)
  rounds to the number at the digits quoted (a percentage: two more). Any metric will do, so a
  number that matches an unrelated metric by chance passes; a stale number rarely does.

A number that trips it: if it is a result, generate it (docs/results.md, or a block of README.md
written by `python -m lowdim.tools.results --readme`) or point to the page; if the paper states
it, add it to docs/paper_values.yaml; if it is a setting, name the parameter instead of its
value, or quote it where no result word is.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lowdim.paths import find_root
from lowdim.tools.results import BEGIN, END, PAPER, flatten, read_paper

SKIPPED_PAGES = ("docs/results.md", "docs/performance.md")
RESULT_WORDS = re.compile(r"χ|\\chi|\bchi\b|explained|\bstress|\bratios?\b|tube width|accurac"
                          r"|distance to|progress", re.I)
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")
ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")
RULE_ROW = re.compile(r"^[\s|:-]+$")
SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z(*`])")
NUM = r"\d+(?:\.\d+)?"
KEY_NUMBER = re.compile(r"(?<![\d.])\d+\.\d+")  # a decimal in a metric's key: at_0.5, c=0.001
PERCENT = re.compile(rf"(?<![\w.])({NUM})(?:\s?[–-]\s?({NUM}))?\s?%")
DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\d.]*\d)(?![eE][-+−]?\d)"
                     r"(?!\s?(?:s|ms|min|h|GiB|MiB|GB|MB|G/s)\b)(?!\s?×)")


@dataclass(frozen=True)
class Quoted:
    """A number quoted in a text: its line, as written, its value (a percentage divided by 100),
    the decimals it is quoted to (a percentage's plus 2) and the unit it stands in."""

    line: int
    text: str
    value: float
    digits: int
    context: str


def quoted(value: str, is_percent: bool, line: int, context: str) -> Quoted:
    """One number as written (`value`: digits, a point, digits)."""
    places = len(value.partition(".")[2])
    if is_percent:
        return Quoted(line, f"{value} %", float(value) / 100, places + 2, context)
    return Quoted(line, value, float(value), places, context)


def sentences(lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(line, sentence) of a paragraph given as (line number, text) pairs."""
    if not lines:
        return
    text, starts, offset = "", [], 0
    for number, line in lines:
        starts.append((offset, number))
        text += line + " "
        offset = len(text)
    position = 0
    for sentence in SENTENCE_END.split(text.strip()):
        position = text.index(sentence, position)
        yield max(number for start, number in starts if start <= position), sentence
        position += len(sentence)


def units(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every table row and every sentence of a paragraph or list item, outside
    code blocks and generated blocks; code spans removed; a table row carries its header row's
    text after it when that header names a result quantity."""
    fenced = generated = False
    paragraph: list[tuple[int, str]] = []
    header: str | None = None

    def flush() -> Iterator[tuple[int, str]]:
        yield from sentences(paragraph)
        paragraph.clear()

    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            generated = True
        if generated or FENCE.match(line):
            yield from flush()
            if FENCE.match(line) and not generated:
                fenced = not fenced
            generated = generated and not stripped.startswith(END)
            continue
        if fenced:
            continue
        stripped = CODE_SPAN.sub("", stripped)
        if stripped.startswith("|"):
            yield from flush()
            cells = stripped.strip("|")
            if header is None:
                header = cells
            if not RULE_ROW.match(cells):
                yield number, cells + (f" | {header}" if RESULT_WORDS.search(header) else "")
            continue
        header = None
        if not stripped or stripped.startswith("#") or ITEM.match(line):
            yield from flush()
        if stripped and not stripped.startswith("#"):
            paragraph.append((number, stripped))
    yield from flush()


def quoted_results(text: str) -> list[Quoted]:
    """Every number a text quotes in a unit that names a result quantity."""
    found = []
    for line, unit in units(text):
        if not RESULT_WORDS.search(unit):
            continue
        for match in PERCENT.finditer(unit):
            found += [quoted(value, True, line, unit) for value in match.groups() if value]
        rest = PERCENT.sub(" ", unit)
        found += [quoted(match.group(1), False, line, unit) for match in DECIMAL.finditer(rest)]
    return found


def is_backed(number: Quoted, values: Iterable[float]) -> bool:
    """Whether a value rounds to the number at the digits it is quoted to."""
    tolerance = 0.5 * 10.0 ** -number.digits + 1e-12
    return any(abs(value - number.value) <= tolerance for value in values)


def committed_values(root: Path) -> list[float]:
    """Every numeric leaf of metrics/**/*.json, every number in their keys (the settings a metric
    is defined at: `tube_width_median_at_0.5`, `c=0.001`) and every number of
    docs/paper_values.yaml."""
    values = []
    for path in sorted((root / "metrics").rglob("*.json")):
        leaves = flatten(json.loads(path.read_text()))
        values += [float(v) for v in leaves.values()
                   if isinstance(v, int | float) and not isinstance(v, bool)]
        values += [float(v) for key in leaves for v in KEY_NUMBER.findall(key)]
    paper = read_paper(root / PAPER)
    values += [float(entry["value"]) for part in ("values", "quoted") for entry in paper[part]]
    return values


def scanned_pages(root: Path) -> list[Path]:
    """README.md and docs/*.md, but SKIPPED_PAGES."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [page for page in pages if page.relative_to(root).as_posix() not in SKIPPED_PAGES]


def unbacked(root: Path) -> list[str]:
    """'page:line: number' for every quoted result number no committed file backs."""
    values = committed_values(root)
    return [f"{page.relative_to(root).as_posix()}:{number.line}: {number.text} in "
            f"\"{number.context[:100]}\""
            for page in scanned_pages(root) for number in quoted_results(page.read_text())
            if not is_backed(number, values)]


def main() -> int:
    problems = unbacked(find_root())
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} quoted result numbers match no committed metric and no value of "
              f"{PAPER}: generate them (python -m lowdim.tools.results) or point to "
              "docs/results.md (the docstring of lowdim/tools/quoted_numbers.py says how)")
        return 1
    print("every result number quoted in README.md and docs/*.md is backed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
