"""The results page's tangents section (lowdim.tools.results): the basis over every run, and the
subset basis of `studies.tangents.subset`, which the paper's values (the authors' AllCNN subset)
stand beside when it exists."""

from __future__ import annotations

from lowdim.tools.results import tangents_section

PAPER = {f"tangents.train.{name}": {"value": value, "verified": True} for name, value in
         [("tangent_basis_explained_1", "0.784"), ("true_inpca_explained_1", "0.817"),
          ("direction_cosine", "0.130")]}


def _basis(prefix: str, basis: float, true: float, cosine: float) -> dict:
    return {f"{prefix}tangent_basis_explained_1": basis, f"{prefix}true_inpca_explained_1": true,
            f"{prefix}direction_cosine": cosine, f"{prefix}basis_time_like_axes": 1}


def test_without_a_subset_the_paper_stands_beside_every_run():
    lines = tangents_section({"train": _basis("", 0.6, 0.7, 0.4), "checkpoints": 120}, {},
                             PAPER, "tangents")
    assert "| train | 1 | 0.6 | 0.7 | 0.784 | 0.817 |" in lines
    assert "| train | 0.4 | 0.130 | 1 |" in lines
    assert "Basis over every run: 120 checkpoints." in lines
    assert not any(line.startswith("Basis over the subset") for line in lines)


def test_with_a_subset_the_paper_moves_beside_the_subset():
    data = {"train": {**_basis("", 0.6, 0.7, 0.4), **_basis("subset_", 0.75, 0.8, 0.15)},
            "checkpoints": 120, "subset_checkpoints": 40, "subset_runs": 2}
    lines = tangents_section(data, {}, PAPER, "tangents")
    every = lines.index("Basis over every run: 120 checkpoints.")
    subset = lines.index("Basis over the subset: 2 runs, 40 checkpoints.")
    assert every < subset
    assert lines[every:subset].count("| train | 1 | 0.6 | 0.7 |  |  |") == 1  # no paper cells
    assert "| train | 0.4 |  | 1 |" in lines[every:subset]
    assert "| train | 1 | 0.75 | 0.8 | 0.784 | 0.817 |" in lines[subset:]
    assert "| train | 0.15 | 0.130 | 1 |" in lines[subset:]
