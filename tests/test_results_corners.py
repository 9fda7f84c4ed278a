"""The results page's corners section (lowdim.tools.results) for both shapes of corners.json: one
architecture (`corners`, `train`) and several (`by_arch`, from `studies.corners.setups`)."""

from __future__ import annotations

from lowdim.tools.results import corners_section

ONE = {"subsample-0": {"to_normal_at_0.5": None, "normal_spread_at_0.5": 0.002,
                       "ratio_at_0.5": None, "to_normal_at_1": 0.02, "normal_spread_at_1": 0.025,
                       "ratio_at_1": 0.8,
                       "final_train_error": 0.003}}


def _corner(to_normal: float, ratio: float) -> dict:
    return {"to_normal_at_0.5": 0.1, "normal_spread_at_0.5": 0.05, "ratio_at_0.5": 2.0,
            "to_normal_at_1": to_normal, "normal_spread_at_1": 0.02, "ratio_at_1": ratio,
            "final_train_error": 0.01}


def test_one_architecture_keeps_its_table():
    lines = corners_section({"corners": ONE, "train": {"explained_stress_1": 0.5}}, {}, {},
                            "corners")
    assert "| subsample-0 | – | 0.002 | – | 0.02 | 0.025 | 0.8 | 0.003 |" in lines
    assert "| train | 1 | 0.5 |" in lines
    assert ("- s = 1: the ratio spans 0.8 over the 1 corners that reach it; it is at most 1 "
            "(inside the normal runs' tube) for 1 of them") in lines
    assert not any("architecture" in line for line in lines)


def test_several_architectures_are_shown_per_architecture():
    data = {"by_arch": {
        "allcnn": {"corners": {"subsample-200-0": _corner(0.01, 0.5),
                               "subsample-200-1": _corner(0.03, 1.5)},
                   "train": {"explained_stress_1": 0.4, "explained_stress_3": 0.7}},
        "wr-10-4-8": {"corners": {"uniform-0": _corner(0.06, 3.0)},
                      "train": {"explained_stress_1": 0.6}}}}
    lines = corners_section(data, {}, {}, "corners")
    text = "\n".join(lines)
    assert lines[2].endswith("Each architecture's corner runs (`studies.corners.setups`) are "
                             "embedded and compared with its own normal runs.")
    assert ("| architecture | corner | to normal, s = 0.5 | normal spread | ratio | "
            "to normal, s = 1 | normal spread | ratio | final train error |") in lines
    assert "| allcnn | subsample-200-1 | 0.1 | 0.05 | 2.0 | 0.03 | 0.02 | 1.5 | 0.01 |" in lines
    assert "| wr-10-4-8 | uniform-0 | 0.1 | 0.05 | 2.0 | 0.06 | 0.02 | 3.0 | 0.01 |" in lines
    # the ratio summary per architecture: 1 of allcnn's 2 corners inside the tube, none of wrn's
    assert ("- allcnn, s = 1: the ratio spans 0.5–1.5 over the 2 corners that reach it; it is "
            "at most 1 (inside the normal runs' tube) for 1 of them") in lines
    assert "- wr-10-4-8, s = 1: the ratio spans 3.0 over the 1 corners" in text
    assert "| architecture | space | k | χₖ |" in lines
    assert ["| allcnn | train | 1 | 0.4 |", "| allcnn | train | 3 | 0.7 |",
            "| wr-10-4-8 | train | 1 | 0.6 |"] == [line for line in lines
                                                    if line.endswith(("0.4 |", "0.7 |", "0.6 |"))]
