"""The results page and the README's results block are what `lowdim.tools.results` writes from the
committed metrics, and README.md and docs/*.md quote no result number that no committed file backs
(`lowdim.tools.quoted_numbers`)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lowdim.tools.quoted_numbers import (
    committed_values,
    is_backed,
    quoted_results,
    unbacked,
    units,
)
from lowdim.tools.results import (
    BEGIN,
    END,
    PAGE,
    PAPER,
    Profile,
    active_profile,
    fmt,
    numbers,
    parse_spec,
    read_block,
    read_paper,
    read_profile,
    readme_block,
    render_page,
    replace_block,
    side_by_side,
    study_specs,
    trend,
    uncertainty,
)
from lowdim.tools.stage_deps import dep_paths, load_stages

ROOT = Path(__file__).resolve().parents[1]
STAGE = load_stages(ROOT)["results"]


def stage_arguments() -> dict[str, list[str]]:
    """The results stage's options as dvc.yaml passes them, `${profile}` filled in as DVC does."""
    words = shlex.split(STAGE["cmd"].replace("${profile}", active_profile(ROOT)))
    found: dict[str, list[str]] = {}
    for option, value in zip(words, words[1:], strict=False):
        if option.startswith("--"):
            found.setdefault(option, []).append(value)
    return found


def stage_profiles() -> list[Profile]:
    """The profiles the stage renders: its --metrics, then the committed studies (--studies)."""
    arguments = stage_arguments()
    specs = list(arguments["--metrics"])
    for folder in arguments.get("--studies", []):
        specs += study_specs(ROOT, folder, [parse_spec(spec)[0] for spec in specs])
    return [read_profile(*parse_spec(spec), ROOT) for spec in specs]


# --- the committed page and block ---


def test_the_committed_page_is_what_the_stage_writes():
    arguments = stage_arguments()
    assert arguments["--out"] == [PAGE] and arguments["--paper"] == [PAPER]
    expected = render_page(stage_profiles(), read_paper(ROOT / PAPER), PAPER)
    assert (ROOT / PAGE).read_text() == expected, (
        f"{PAGE} differs from what the tool writes from the committed metrics: it is stale or was "
        "edited by hand; run `dvc repro results` (never edit it)")


def test_the_readme_block_is_what_the_tool_writes():
    block = readme_block(stage_profiles()[0], read_paper(ROOT / PAPER))
    assert read_block((ROOT / "README.md").read_text()) == block, (
        "README.md's results block is stale: run `python -m lowdim.tools.results --readme`")


def test_the_stage_reads_every_metrics_file_and_the_paper_values():
    deps = dep_paths(STAGE)
    for profile in stage_profiles():
        for stem in profile.files:
            path = f"{profile.directory}/{stem}.json"  # listed, or under a listed directory
            assert any(path == dep or path.startswith(f"{dep}/") for dep in deps), path
    assert PAPER in deps
    assert STAGE["outs"] == [{PAGE: {"cache": False}}]  # committed, so the page is in git
    assert "${profile}" in STAGE["cmd"]  # a profile switch renames the page's section


def test_the_page_sets_the_paper_beside_the_metric_with_its_uncertainty():
    page = (ROOT / PAGE).read_text()
    paper = read_paper(ROOT / PAPER)
    chi3 = json.loads((ROOT / "metrics" / "embedding.json").read_text())["train"][
        "explained_stress_3"]
    row = next(line for line in page.splitlines() if line.startswith("| train | 3 |"))
    assert fmt(chi3) in row and "0.76 †" in row
    interval = json.loads((ROOT / "metrics" / "intervals.json").read_text())[
        "embedding.train.explained_stress_3"]
    assert fmt(interval["jackknife_se"], 2) in row
    # every paper value appears on the page, with where docs/study.md states it
    for entry in paper["values"]:
        assert f"`{entry['metric']}` | {entry['value']} |" in page
        assert entry["where"].startswith("docs/study.md")
    assert "do not edit it by hand" in page


def test_every_paper_value_names_a_committed_metric_and_is_stated_in_the_study():
    study = (ROOT / "docs" / "study.md").read_text()
    committed = numbers(read_profile("quick", "metrics", ROOT))
    paper = read_paper(ROOT / PAPER)
    for entry in paper["values"]:
        assert entry["metric"] in committed, entry["metric"]
        assert entry["value"] in study, entry
        assert entry["verified"] == (entry["tag"] != "B"), entry  # B: a summary, unchecked


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_into_the_page_name_its_headings():
    page = (ROOT / PAGE).read_text()
    anchors = {slug(line.lstrip("#")) for line in page.splitlines() if line.startswith("#")}
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    texts = [page.read_text() for page in pages]
    links = {anchor for text in texts for anchor in re.findall(r"results\.md#([\w-]+)", text)}
    assert links and links <= anchors, links - anchors


# --- the tool's pieces ---


def _profile(label: str, files: dict) -> Profile:
    return Profile(label, f"metrics/{label}", files)


PAPER_VALUES = {"values": [{"metric": "embedding.train.explained_stress_3", "value": "0.76",
                            "what": "x", "where": "docs/study.md A5", "tag": "B",
                            "verified": False}], "quoted": []}
EMBEDDING = {"train": {"explained_stress_1": 0.5, "explained_stress_3": 0.9}}
INTERVALS = {"embedding.train.explained_stress_3": {"value": 0.9, "jackknife_se": 0.0123,
                                                     "lo": 0.91, "hi": 0.95, "level": 0.9,
                                                     "resamples": 30, "unit": "1"}}


def test_numbers_are_written_as_stored_or_to_given_digits():
    assert fmt(0.945603) == "0.945603" and fmt(0.945603, 4) == "0.9456"
    assert fmt(0.0018471, 4) == "0.001847" and fmt(2.498506, 4) == "2.499"
    assert fmt(7.45373e-05) == "0.0000745373" and fmt(None) == "–" and fmt(3) == "3"


def test_an_interval_that_misses_its_value_is_marked_beside():
    assert uncertainty("embedding.train.explained_stress_3", 0.9, INTERVALS) == [
        "0.012", "0.9100–0.9500 (beside)"]
    assert uncertainty("embedding.train.explained_stress_1", 0.5, INTERVALS) == ["–", "–"]


def test_the_page_renders_every_profile_and_any_other_metrics_file():
    quick = _profile("quick", {"embedding": EMBEDDING, "intervals": INTERVALS})
    other = _profile("fashion-mnist", {"embedding": EMBEDDING, "novel": {"a": {"b": 1.5}}})
    page = render_page([quick, other], PAPER_VALUES)
    assert "## Profile `quick` (`metrics/quick/`)" in page
    assert "## Profile `fashion-mnist` (`metrics/fashion-mnist/`)" in page
    assert "| train | 3 | 0.9 | 0.012 | 0.9100–0.9500 (beside) | 0.76 † |" in page
    assert "| train | 3 | 0.9 | – | – | 0.76 † |" in page  # no intervals.json there
    assert "### `novel.json`" in page and "| a.b | 1.5 |" in page
    assert "### Larger networks (Figure 16)" in page  # no metrics file holds it: said so


def test_profiles_side_by_side_with_intervals_where_each_has_them():
    quick = _profile("quick", {"embedding": EMBEDDING, "intervals": INTERVALS})
    other = _profile("fashion-mnist", {"embedding": EMBEDDING})
    by_metric = {entry["metric"]: entry for entry in PAPER_VALUES["values"]}
    rows = [line for line in side_by_side([quick, other], by_metric) if "χ₃" in line]
    assert rows == ["| train | explained stress χ₃ | 0.9000 [0.9100–0.9500, beside] | 0.9000 "
                    "| 0.76 † |"]
    assert "## The profiles side by side" in render_page([quick, other], PAPER_VALUES)
    assert "side by side" not in render_page([quick], PAPER_VALUES)  # one profile: no table


def test_committed_studies_are_found_by_their_folders(tmp_path: Path):
    for label in ("fashion-mnist", "quick", "zz"):
        (tmp_path / "results" / label / "metrics").mkdir(parents=True)
    (tmp_path / "results" / "notes").mkdir()  # no metrics/: not a study
    assert study_specs(tmp_path, "results", ["quick"]) == [
        "fashion-mnist=results/fashion-mnist/metrics", "zz=results/zz/metrics"]
    assert study_specs(tmp_path, "absent", []) == []


def test_the_readme_block_replaces_only_what_lies_between_the_markers():
    block = readme_block(_profile("quick", {"embedding": EMBEDDING, "intervals": INTERVALS}),
                         PAPER_VALUES)
    assert block.startswith(BEGIN) and block.endswith(END)
    assert "| explained stress χ₃ | 0.9000 | 0.012 | 0.9100–0.9500 (beside) | 0.76 † |" in block
    text = f"before\n\n{BEGIN} old -->\n| stale |\n{END}\n\nafter\n"
    assert replace_block(text, block) == f"before\n\n{block}\n\nafter\n"
    with pytest.raises(ValueError, match="exactly one block"):
        replace_block("no markers\n", block)


def test_bad_inputs_say_what_to_do(tmp_path: Path):
    with pytest.raises(ValueError, match="<profile>=<directory>"):
        parse_spec("metrics")
    with pytest.raises(FileNotFoundError, match="holds no metrics"):
        read_profile("quick", "empty", tmp_path)
    bad = tmp_path / "paper.yaml"
    bad.write_text(yaml.safe_dump({"values": [{**PAPER_VALUES["values"][0], "value": 0.76}]}))
    with pytest.raises(ValueError, match=r"must be a quoted decimal .* not 0\.76"):
        read_paper(bad)
    bad.write_text(yaml.safe_dump({"values": [{"metric": "a.b", "value": "1"}]}))
    with pytest.raises(ValueError, match="values\\[0\\] lacks"):
        read_paper(bad)


def test_trend_is_strictly_monotone_or_not():
    assert trend([0.1, 0.2, 0.3]) == "rises" and trend([0.3, 0.2, 0.1]) == "falls"
    assert trend([0.1, 0.3, 0.2]) == "is not monotone" and trend([0.1]) == "is not monotone"


# --- the scanner of quoted result numbers ---


def test_readme_and_docs_quote_no_unbacked_result_number():
    problems = unbacked(ROOT)
    assert not problems, (
        "result numbers that no committed metric and no paper value backs (generate them with "
        "`python -m lowdim.tools.results`, point to docs/results.md, or add a paper value to "
        f"{PAPER}):\n" + "\n".join(problems))


def test_the_scanner_catches_a_planted_number_and_accepts_a_backed_one():
    values = committed_values(ROOT)
    chi3 = json.loads((ROOT / "metrics" / "embedding.json").read_text())["train"][
        "explained_stress_3"]
    backed = f"The explained stress χ₃ is {chi3:.3f} on the train space."
    planted = "The explained stress χ₃ is 0.1234 on the train space."
    readme = (ROOT / "README.md").read_text()
    found = quoted_results(readme + "\n" + backed + "\n")
    assert all(is_backed(number, values) for number in found)
    (number,) = [n for n in quoted_results(readme + "\n" + planted + "\n") if n.text == "0.1234"]
    assert not is_backed(number, values)
    assert number.line == len(readme.splitlines()) + 2  # after the blank line it adds


def test_the_scanner_reads_a_repository(tmp_path: Path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "embedding.json").write_text(json.dumps(
        {"train": {"explained_stress_3": 0.945603, "tube_width_median_at_0.5": 0.0018}}))
    (tmp_path / "docs").mkdir()
    (tmp_path / PAPER).write_text(yaml.safe_dump(PAPER_VALUES))
    (tmp_path / "README.md").write_text(
        "χ₃ = 0.9456 and 0.95 (backed); the paper's 76 % (backed).\n\n"
        "The tube width at progress 0.5 is small.\n")
    (tmp_path / "docs" / "studies.md").write_text("The ratio is 3.14 here.\n")
    (tmp_path / "docs" / "results.md").write_text("The ratio is 2.72 (generated: skipped).\n")
    (tmp_path / "docs" / "performance.md").write_text("The ratio is 2.72 (skipped).\n")
    assert unbacked(tmp_path) == ['docs/studies.md:1: 3.14 in "The ratio is 3.14 here."']


@pytest.mark.parametrize("text, quoted", [
    ("The explained stress χ₁ = 0.89, χ₃ 0.95.", ["0.89", "0.95"]),
    ("The ratio is 2.50 (SE 0.33; 2.21–2.75).", ["2.50", "0.33", "2.21", "2.75"]),
    ("Final train error 5.5–6.2 % at an accuracy of 90 %.", ["5.5 %", "6.2 %", "90 %"]),
    ("Lr 0.1 and momentum 0.9 of the runs.", []),  # no result word
    ("The progress stage took 3.5 s and 1.2 GiB, 4.7× the rest.", []),  # timings, sizes
    ("Its accuracy stays within 3.1e-8 of the oracle.", []),  # scientific notation
    ("The accuracy of 54 runs over 16 epochs.", []),  # integers
    ("Progress `0.25` is a code span.", []),
    ("A first sentence with 0.5 in it. The χ₁ is in the second.", []),
    ("```\nχ₁ = 0.89\n```", []),  # a code block
    (f"{BEGIN} -->\n| χ₁ | 0.89 |\n{END}", []),  # a generated block
    ("| level | sgd |\n|---|---|\n| 0.25 | 3.35 |", []),  # a table naming no result
    ("| progress | sgd |\n|---|---|\n| 0.25 | 3.35 |", ["0.25", "3.35"]),  # its header does
    ("- item one with 0.5.\n- The tube width item, 0.0018.", ["0.0018"]),
])
def test_the_scanner_rules(text: str, quoted: list[str]):
    assert [number.text for number in quoted_results(text)] == quoted


def test_backed_means_rounding_to_the_digits_quoted():
    (two,) = quoted_results("χ₃ 0.95.")
    (four,) = quoted_results("χ₃ 0.9457.")
    (pct,) = quoted_results("χ₃ 95 %.")
    assert is_backed(two, [0.945603]) and is_backed(pct, [0.945603])
    assert not is_backed(four, [0.945603]) and is_backed(four, [0.94566])


def test_units_are_sentences_and_table_rows_with_their_lines():
    text = "First line of a\nparagraph. Second sentence\nhere.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert list(units(text)) == [(1, "First line of a paragraph."), (2, "Second sentence here."),
                                 (5, " a | b "), (7, " 1 | 2 ")]
