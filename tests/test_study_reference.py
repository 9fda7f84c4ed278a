"""Every section code the code, notebooks and README cite (A1, B3, D8, ...) resolves to a heading of
docs/study.md, the study reference that ships with the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(r"\b([ABD]\d{1,2})\b")
HEADING = re.compile(r"^#+\s+([A-F]\d{1,2})\.", re.MULTILINE)


def cited_codes(text: str) -> set[str]:
    """Section codes such as A9, B3 or D20 mentioned in a text."""
    return set(CODE.findall(text))


def heading_codes(markdown: str) -> set[str]:
    """Codes that open a heading (`### A9. Averaging`)."""
    return set(HEADING.findall(markdown))


def citing_files() -> list[Path]:
    return [*sorted((ROOT / "src").rglob("*.py")), *sorted((ROOT / "notebooks").rglob("*.ipynb")),
            ROOT / "README.md"]


def test_code_extraction():
    assert cited_codes("as in A9 and (B3, D20); not A100 or GPU H200 or XA1") == {"A9", "B3", "D20"}
    assert heading_codes("## A. Defs\n### A2. Distance\ntext A3.\n#### D14. Importance") == {
        "A2", "D14"}


def test_every_cited_code_is_a_heading_of_the_study_reference():
    headings = heading_codes((ROOT / "docs" / "study.md").read_text())
    unresolved = {}
    for path in citing_files():
        missing = cited_codes(path.read_text()) - headings
        if missing:
            unresolved[path.relative_to(ROOT).as_posix()] = sorted(missing)
    assert not unresolved, f"codes cited but not defined in docs/study.md: {unresolved}"


def test_nothing_points_at_a_reference_outside_the_repository():
    outside = "PAPER" + ".md"  # spelled in two parts so this file does not match itself
    offenders = [path.relative_to(ROOT).as_posix()
                 for path in [*citing_files(), *sorted((ROOT / "tests").rglob("*.py")),
                              ROOT / "dvc.yaml", ROOT / "params.yaml",
                              *sorted((ROOT / "profiles").glob("*.yaml"))]
                 if outside in path.read_text()]
    assert not offenders
