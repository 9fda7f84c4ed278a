"""The results page's synthetic and averaging sections (lowdim.tools.results) with several
synthetic students and with the averaged configuration recorded."""

from __future__ import annotations

from lowdim.tools.results import averaging_section, synthetic_section

ONE = {"c=0": {"default": {"explained_stress_1": 0.9, "explained_stress_2": 0.95},
               "corners": {"explained_stress_1": 0.4, "explained_stress_2": 0.6}},
       "c=0.5": {"default": {"explained_stress_1": 0.8, "explained_stress_2": 0.97},
                 "corners": {"explained_stress_1": 0.5, "explained_stress_2": 0.7}},
       "slope_against_c": {"default": {"explained_stress_1": -0.2},
                           "corners": {"explained_stress_1": 0.2}}}
DEEPER = {"c=0": {"default": {"explained_stress_1": 0.7}},
          "c=0.5": {"default": {"explained_stress_1": 0.75}},
          "slope_against_c": {"default": {"explained_stress_1": 0.1}}}


def test_one_student_keeps_its_table():
    lines = synthetic_section(ONE, {}, {}, "synthetic")
    assert "| c | students | χ1 | χ2 |" in lines
    assert "| 0 | corners | 0.4 | 0.6 |" in lines and "| 0.5 | default | 0.8 | 0.97 |" in lines
    assert "- default students: χ₁ falls with c (0.9, 0.8)" in lines
    assert "| students | χ1 |" in lines and "| default | -0.2 |" in lines
    assert not any("student architecture" in line for line in lines)


def test_several_students_each_have_their_rows():
    lines = synthetic_section({"students": {"fc-512": ONE, "fc-512-512": DEEPER}}, {}, {},
                              "synthetic")
    assert "| student | c | initialization | χ1 | χ2 |" in lines
    assert "| fc-512 | 0 | corners | 0.4 | 0.6 |" in lines
    assert "| fc-512-512 | 0.5 | default | 0.75 | – |" in lines  # χ2 not in this student's file
    assert "- fc-512 corners students: χ₁ rises with c (0.4, 0.5)" in lines
    assert "- fc-512-512 default students: χ₁ rises with c (0.7, 0.75)" in lines
    assert "| student | initialization | χ1 |" in lines
    assert "| fc-512-512 | default | 0.1 |" in lines
    assert any("(fc-512, fc-512-512) is embedded on its own" in line for line in lines)


AVERAGES = {"arithmetic": {"final_progress": 0.7, "final_accuracy": 0.75},
            "harmonic": {"final_progress": 0.78, "final_accuracy": 0.81}}


def test_the_averaged_configuration_is_named_and_is_no_space():
    data = {"averaged_runs": 10, "test": AVERAGES, "train": AVERAGES,
            "configuration": {"arch": "allcnn", "optimizer": "sgdn", "batch_size": "200"}}
    lines = averaging_section(data, {}, {}, "averaging")
    assert lines[2].startswith("Six averages of the 10 runs of one configuration (arch allcnn, "
                               "optimizer sgdn, batch_size 200) (`studies.averaging`), at equal "
                               "checkpoint index")
    assert not any(line.startswith("| configuration") or "- configuration" in line
                   for line in lines)
    assert "- test, by final accuracy: HM > AM" in lines
    older = averaging_section({k: v for k, v in data.items() if k != "configuration"}, {}, {},
                              "averaging")
    assert older[2].startswith("Six averages of the 10 runs of one configuration "
                               "(`studies.averaging`), at equal checkpoint index")
    assert older[3:] == lines[3:]
