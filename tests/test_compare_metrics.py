"""The check of a fresh run's metrics against the committed ones (lowdim.tools.compare_metrics):
bands by pattern, first match wins, exact where no band applies, one-sided metrics reported,
exit status 1 with a list; and the committed bands file covers the committed metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from lowdim.tools.compare_metrics import (
    BANDS,
    band_of,
    compare,
    flatten,
    load_bands,
    main,
    parse_metrics,
    revision_texts,
    spread,
    unchecked,
)

ROOT = Path(__file__).resolve().parents[1]
BANDS_TEXT = """
bands:
  "embedding.train.explained_stress_1": 0.05
  "embedding.*": 0.01
  "averaging.averaged_runs": 0
  "larger.*": null
"""


def test_flatten_dots_mappings_and_indexes_lists():
    assert flatten({"a": {"b": 1, "c": [2, {"d": None}]}, "e": "x"}, "f") == {
        "f.a.b": 1, "f.a.c[0]": 2, "f.a.c[1].d": None, "f.e": "x"}
    assert parse_metrics({"embedding.json": '{"train": {"x": 0.5}}', "t.json": "{\"y\": NaN}"})[
        "embedding.train.x"] == 0.5


def test_the_first_matching_pattern_gives_the_band():
    bands = load_bands(BANDS_TEXT)
    assert band_of("embedding.train.explained_stress_1", bands) == 0.05
    assert band_of("embedding.train.explained_stress_2", bands) == 0.01
    assert band_of("averaging.averaged_runs", bands) == 0.0
    assert band_of("joint.enabled", bands) is None
    assert band_of("larger.cells.compared", bands) == math.inf  # null: not measured


@pytest.mark.parametrize("text, message", [
    ("{}", "no `bands` mapping"),
    ("bands: {}", "no `bands` mapping"),
    ("bands: {'x.*': -1}", r"the band of 'x\.\*' is -1: give a number >= 0"),
    ("bands: {'x.*': true}", "give a number >= 0"),
    ("bands: {'x.*': wide}", r"give a number >= 0 .*, or null \(not measured\)"),
])
def test_a_bad_bands_file_says_what_to_give(text, message):
    with pytest.raises(ValueError, match=message):
        load_bands(text)


def test_numbers_within_their_band_pass_and_others_are_listed():
    bands = load_bands(BANDS_TEXT)
    committed = {"embedding.train.explained_stress_1": 0.889, "embedding.test.x": 0.5,
                  "averaging.averaged_runs": 3, "joint.enabled": True, "other.y": 0.25,
                  "other.nan": math.nan, "other.gone": 1.0}
    fresh = {"embedding.train.explained_stress_1": 0.921,  # 0.032 <= 0.05
             "embedding.test.x": 0.52,                     # 0.02 > 0.01
             "averaging.averaged_runs": 3, "joint.enabled": False,
             "other.y": 0.25,                              # no band: equal, passes
             "other.nan": math.nan, "other.new": 2.0}
    found = {f.key: f for f in compare(fresh, committed, bands)}
    assert sorted(found) == ["embedding.test.x", "joint.enabled", "other.gone", "other.new"]
    assert found["embedding.test.x"].difference == pytest.approx(0.02)
    assert found["embedding.test.x"].band == 0.01
    assert "missing from the fresh run" in found["other.gone"].line()
    assert "missing from the committed metrics" in found["other.new"].line()
    assert "must be equal" in found["joint.enabled"].line()
    assert compare({"other.y": 0.2500001}, {"other.y": 0.25}, bands)[0].reason.startswith(
        " (no band matches")


def test_metrics_without_a_measured_band_are_listed_not_failed(tmp_path, capsys):
    bands = load_bands(BANDS_TEXT)
    committed = {"larger.lead": 2.0, "larger.same": 1.0, "larger.nan": math.nan}
    fresh = {"larger.lead": 5.0, "larger.same": 1.0, "larger.nan": math.nan}
    assert compare(fresh, committed, bands) == []
    assert unchecked(fresh, committed, bands) == ["larger.lead"]
    path = tmp_path / "tolerances.yaml"
    path.write_text(BANDS_TEXT)
    _write(tmp_path / "old", "larger.json", {"lead": 2.0})
    _write(tmp_path / "new", "larger.json", {"lead": 5.0})
    assert main([str(tmp_path / "new"), "--against", str(tmp_path / "old"), "--bands",
                 str(path)]) == 0
    assert "not checked (no measured band): 1 metrics differ: larger.lead" in (
        capsys.readouterr().out)


def test_spread_lists_differences_largest_first():
    a = {"x": 1.0, "y": 0.5, "z": "text", "w": 3}
    b = {"x": 1.25, "y": 0.5, "z": "other", "w": 1, "v": 9.0}
    assert spread(a, b) == [("w", 2), ("x", 0.25), ("y", 0.0)]


def _write(folder: Path, name: str, content: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(content))


def test_main_exits_1_with_a_list_and_0_within_the_bands(tmp_path, capsys):
    bands = tmp_path / "tolerances.yaml"
    bands.write_text(BANDS_TEXT)
    _write(tmp_path / "committed", "embedding.json", {"train": {"explained_stress_1": 0.889}})
    _write(tmp_path / "near", "embedding.json", {"train": {"explained_stress_1": 0.92}})
    _write(tmp_path / "far", "embedding.json", {"train": {"explained_stress_1": 0.95}})
    common = ["--against", str(tmp_path / "committed"), "--bands", str(bands)]
    assert main([str(tmp_path / "near"), *common]) == 0
    assert main([str(tmp_path / "far"), *common]) == 1
    out = capsys.readouterr().out
    assert "embedding.train.explained_stress_1: committed 0.889, fresh 0.95" in out
    assert "1 metrics compared" in out and "1 outside their band" in out
    assert main([str(tmp_path / "absent"), *common]) == 2
    assert "is no folder" in capsys.readouterr().err


def test_the_committed_bands_cover_the_committed_metrics():
    # HEAD's metrics against themselves are within any band; every committed number has a
    # pattern (a measured band, or null: not measured), and every pattern names some committed
    # metric (none is stale).
    committed = parse_metrics(revision_texts(ROOT, "HEAD"))
    bands = load_bands((ROOT / BANDS).read_text(), str(BANDS))
    assert compare(committed, committed, bands) == []
    numbers = [k for k, v in committed.items() if isinstance(v, int | float)
               and not isinstance(v, bool)]
    unbanded = [k for k in numbers if band_of(k, bands) is None]
    assert numbers and unbanded == [], (
        f"metrics without a band in {BANDS}: {unbanded[:10]}; measure their spread "
        "(docs/performance.md, CPU kernels and cross-machine spread) or give them null")
    stale = [p for p, _ in bands if not any(fnmatchcase(k, p) for k in committed)]
    assert stale == []


def test_the_module_runs_as_a_command(tmp_path):
    _write(tmp_path / "a", "m.json", {"x": 1.0})
    _write(tmp_path / "b", "m.json", {"x": 1.5})
    done = subprocess.run([sys.executable, "-m", "lowdim.tools.compare_metrics", "--spread",
                           str(tmp_path / "a"), str(tmp_path / "b")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout == "0.5\tm.x\n", done.stderr
