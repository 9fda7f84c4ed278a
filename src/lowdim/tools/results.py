"""The results page: every committed metric beside its uncertainty and the paper's value.

Numbers about results typed by hand into the README and docs go stale silently when the metrics
change. This tool writes them from the committed files instead:

    python -m lowdim.tools.results                 # docs/results.md (the `results` stage runs this)
    python -m lowdim.tools.results --metrics quick=metrics --metrics fmnist=metrics/fashion-mnist
    python -m lowdim.tools.results --readme        # README.md's block between the markers

- Inputs: one metrics directory per profile, given as `<label>=<directory>` (every `*.json` in
  it, as the stages write them; `intervals.json` gives each headline metric's jackknife SE and
  bootstrap interval), and the paper's values (`docs/paper_values.yaml`, taken from
  docs/study.md, each with its tag and whether it is verified). Without `--metrics`, the active
  profile's (`profile` in params.yaml) is `metrics/`.
- `docs/results.md`: for each profile and finding, each value, its SE and interval where
  `intervals.json` has them, and the paper's value beside it where docs/study.md gives one.
- README.md's block between `<!-- results:begin -->` and `<!-- results:end -->`: the headline
  rows of the first profile (`--readme`; not a stage, since people edit README.md).

Nothing is typed by hand: tests/test_results_page.py fails when the page or the README block
differs from what this tool writes from the committed files, and `lowdim.tools.quoted_numbers`
finds result numbers quoted in README.md and docs/*.md that no committed file backs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from lowdim.paths import find_root
from lowdim.store.atomic import atomic_file

PAGE = "docs/results.md"
PAPER = "docs/paper_values.yaml"
README = "README.md"
BEGIN = "<!-- results:begin"  # the marker lines of README.md's generated block
END = "<!-- results:end -->"
INTERVALS = "intervals"  # the metrics file of SEs and intervals (lowdim.analysis.intervals)
SPACE_ORDER = ("train", "test")
TAGS = ("B", "N", "C", "H", "T", "P", "I")  # docs/study.md's source tags
DASH = "–"
NUMBER = re.compile(r"\d+(\.\d+)?")  # a paper value as written: digits, a point, digits


@dataclass(frozen=True)
class Profile:
    """One profile's committed metrics: its label, the directory as given, and each file's
    parsed contents by stem (`embedding` for embedding.json)."""

    label: str
    directory: str
    files: Mapping[str, dict]


# --- reading ---


def parse_spec(spec: str) -> tuple[str, str]:
    """`label=directory` -> (label, directory)."""
    label, sep, directory = spec.partition("=")
    if not sep or not label or not directory:
        raise ValueError(f"--metrics {spec!r}: write it as <profile>=<directory>, "
                         "e.g. quick=metrics")
    return label, directory


def read_profile(label: str, directory: str, root: Path) -> Profile:
    """Every `*.json` of `root / directory`, by stem."""
    folder = root / directory
    files = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    if not files:
        raise FileNotFoundError(f"{folder} holds no metrics (*.json): run `dvc repro` or "
                                "`dvc pull`, or pass the profile's metrics directory")
    return Profile(label, directory, files)


def read_paper(path: Path) -> dict:
    """The paper values file: `values` (each with metric, value, what, where, tag, verified) and
    `quoted` (each with value, what, where), checked."""
    data = yaml.safe_load(path.read_text()) or {}
    for i, entry in enumerate(data.get("values", [])):
        missing = {"metric", "value", "what", "where", "tag", "verified"} - set(entry)
        if missing:
            raise ValueError(f"{path}: values[{i}] lacks {sorted(missing)}")
        if entry["tag"] not in TAGS or not isinstance(entry["verified"], bool):
            raise ValueError(f"{path}: values[{i}]: tag must be one of {TAGS} (docs/study.md's "
                             "tags) and verified true or false")
    for i, entry in enumerate(data.get("quoted", [])):
        if not {"value", "what", "where"} <= set(entry):
            raise ValueError(f"{path}: quoted[{i}] needs value, what and where")
    for part in ("values", "quoted"):
        for i, entry in enumerate(data.get(part, [])):
            if not (isinstance(entry["value"], str) and NUMBER.fullmatch(entry["value"])):
                raise ValueError(f"{path}: {part}[{i}].value must be a quoted decimal as "
                                 f"docs/study.md prints it, e.g. \"0.750\", not "
                                 f"{entry['value']!r}")
    return {"values": list(data.get("values", [])), "quoted": list(data.get("quoted", []))}


def active_profile(root: Path) -> str:
    """The `profile` name of the active params.yaml."""
    return str(yaml.safe_load((root / "params.yaml").read_text())["profile"])


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested mappings -> {dotted key: leaf}, in the mapping's order (keys may hold dots)."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def numbers(profile: Profile) -> dict[str, float]:
    """Every numeric leaf of a profile's metrics as {<stem>.<key path>: value} (intervals.json's
    fields included, under `intervals.<metric>.<field>`)."""
    return {key: float(value) for stem, tree in profile.files.items()
            for key, value in flatten(tree, f"{stem}.").items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


# --- formatting ---


def decimals(x: float, significant: int) -> int:
    """Decimals that show `x` to `significant` digits (at least 0)."""
    if x == 0 or not math.isfinite(x):
        return 0
    return max(0, significant - 1 - math.floor(math.log10(abs(x))))


def fmt(x: object, significant: int | None = None, places: int | None = None) -> str:
    """A number in fixed notation: as the metrics file stores it, or to `significant` digits,
    or to `places` decimals; None -> –."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if significant is None and places is None:
        stored = repr(x)
        return stored if "e" not in stored else f"{x:.{decimals(x, 6)}f}"
    return f"{x:.{decimals(x, significant) if places is None else places}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def percent(level: float) -> str:
    """0.9 -> '90 %'."""
    return f"{fmt(100 * level, 3).rstrip('0').rstrip('.')} %"


def uncertainty(key: str, value: object, intervals: Mapping[str, dict]) -> list[str]:
    """[SE, interval] cells of a metric (– where intervals.json has none); an interval that does
    not hold its value is marked "(beside)"."""
    entry = intervals.get(key)
    if entry is None or not isinstance(value, int | float):
        return [DASH, DASH]
    places = decimals(float(value), 4)
    span = f"{fmt(entry['lo'], places=places)}{DASH}{fmt(entry['hi'], places=places)}"
    if not entry["lo"] <= value <= entry["hi"]:
        span += " (beside)"
    return [fmt(entry["jackknife_se"], 2), span]


def paper_cell(key: str, paper: Mapping[str, dict]) -> str:
    """The paper's value of a metric, † when unverified; empty when the paper gives none."""
    entry = paper.get(key)
    if entry is None:
        return ""
    return entry["value"] + ("" if entry["verified"] else " †")


def stress_dims(tree: Mapping, prefix: str = "explained_stress_") -> list[int]:
    """The k of every `explained_stress_<k>` key, ascending."""
    return sorted(int(key.removeprefix(prefix)) for key in tree if key.startswith(prefix))


def spaces(tree: Mapping) -> list[str]:
    """The spaces of a per-space mapping: train and test first, then any other."""
    known = [s for s in SPACE_ORDER if s in tree]
    return known + sorted(s for s in tree if s not in known and isinstance(tree[s], Mapping))


# --- one section per metrics file ---


def embedding_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Explained stress of each space's InPCA, and its negative eigenvalues."""
    rows = []
    for space in spaces(data):
        for k in stress_dims(data[space]):
            key = f"{stem}.{space}.explained_stress_{k}"
            value = data[space][f"explained_stress_{k}"]
            rows.append([space, str(k), fmt(value), *uncertainty(key, value, intervals),
                         paper_cell(key, paper)])
    lines = ["### Explained stress of each space", "",
             f"χₖ of the InPCA of every checkpoint, per prediction space (`{stem}.json`; "
             "docs/study.md A4, A5, D7). The paper reports its CIFAR-10 train embedding.", "",
             *table(["space", "k", "χₖ", "SE", "interval", "paper"], rows)]
    return lines + negative_eigenvalues_lines(data, stem)


def negative_eigenvalues_lines(data: dict, stem: str) -> list[str]:
    """The negative eigenvalues of each space's InPCA (lowdim.analysis.spectrum), if recorded."""
    rows = []
    for space in spaces(data):
        values = data[space]
        if "negative_eigenvalues" not in values:
            continue
        tops = stress_dims(values, "negative_eigenvalues_top_")
        top = f"{values[f'negative_eigenvalues_top_{tops[-1]}']} of {tops[-1]}" if tops else DASH
        rows.append([space, fmt(values.get("computed_eigenvalues")),
                     fmt(values["negative_eigenvalues"]), top,
                     fmt(values.get("negative_stress_share"))])
    if not rows:
        return []
    return ["", "Negative eigenvalues (time-like axes; docs/study.md A4, D7, Figure S1 draws them "
            "red) among those the solver computed (every eigenvalue from the dense solver, the "
            "top ones by |λ| from an iterative one), among the top ones, and the share of the "
            f"stress to explain, ‖W‖²_F, that they carry (`{stem}.json`; "
            "`lowdim.analysis.spectrum`).", "",
            *table(["space", "computed", "negative", "negative in the top", "share of ‖W‖²_F"],
                   rows)]


TRAJECTORY_LABELS = {
    "between_within_arch_ratio": "between/within-architecture ratio of trajectory distances",
    "tube_width_median_at_0.5": "median tube width at progress 0.5 (nats)",
}


TO_GEODESIC = "to_geodesic_"  # prefix of the distance-to-the-geodesic keys
OUTLIERS = "outliers"  # trajectories.json's entry of outlier counts (not a space)


def trajectories_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """The between/within-architecture ratio and the tube width of each space, then the
    distance to the geodesic (Figure 9) and the outliers (Figure 8)."""
    rows = []
    for space in trajectory_spaces(data):
        for name, value in data[space].items():
            if name.startswith(TO_GEODESIC):
                continue
            key = f"{stem}.{space}.{name}"
            rows.append([space, TRAJECTORY_LABELS.get(name, name), fmt(value),
                         *uncertainty(key, value, intervals), paper_cell(key, paper)])
    return ["### Trajectories between and within architectures, and the tube width", "",
            "The mean distance between trajectories of different architectures over that between "
            "runs of one architecture (optimizers and seeds pooled; docs/study.md A8, A12), and "
            "the median distance of a seed to its configuration's mean trajectory at progress "
            f"0.5 (the tube width, A10) (`{stem}.json`). The paper states the first finding in "
            "words: architecture dominates the dendrogram and the feature importance.", "",
            *table(["space", "quantity", "value", "SE", "interval", "paper"], rows),
            *to_geodesic_lines(data, stem), *outlier_lines(data, stem)]


def trajectory_spaces(data: Mapping) -> list[str]:
    """The spaces of trajectories.json (its outlier counts are not one)."""
    return [space for space in spaces(data) if space != OUTLIERS]


def to_geodesic_lines(data: dict, stem: str) -> list[str]:
    """Median and maximum distance to the geodesic at a few progress levels, per space."""
    rows = []
    for space in trajectory_spaces(data):
        values = data[space]
        levels = sorted({key.rsplit("_at_", 1)[1] for key in values
                         if key.startswith(TO_GEODESIC) and "_at_" in key}, key=float)
        rows += [[space, level, fmt(values.get(f"{TO_GEODESIC}median_at_{level}")),
                  fmt(values.get(f"{TO_GEODESIC}max_at_{level}"))] for level in levels]
    if not rows:
        return []
    return ["", "### Distance to the geodesic at equal progress (Figure 9)", "",
            "The Bhattacharyya distance (nats) of each trained run, reindexed onto the common "
            "progress grid, to the ignorance → truth geodesic at the same progress (docs/study.md "
            f"A11, D10): median and maximum over runs at the grid point nearest each level "
            f"(`{stem}.json`).", "",
            *table(["space", "progress", "median", "max"], rows)]


def outlier_lines(data: dict, stem: str) -> list[str]:
    """The outlier checkpoints and the runs holding them, in all and per architecture."""
    counts = data.get(OUTLIERS)
    if not isinstance(counts, Mapping):
        return []
    rows = [[arch, fmt(values.get("checkpoints")), fmt(values.get("runs"))]
            for arch, values in counts.get("by_arch", {}).items()]
    return ["", "### Outliers (Figure 8)", "",
            "Run checkpoints whose train cross-entropy is at least `trajectories.outlier_loss` "
            "(docs/study.md A15, D9), and the runs that hold any (`"
            f"{stem}.json`, `{OUTLIERS}`): {fmt(counts.get('checkpoints'))} of "
            f"{fmt(counts.get('of_checkpoints'))} checkpoints, in {fmt(counts.get('runs'))} of "
            f"{fmt(counts.get('of_runs'))} runs.", "",
            *table(["architecture", "outlier checkpoints", "runs"], rows)]


LARGER = "larger"  # the larger stage's metrics file (lowdim.analysis.size_pair)


def no_larger_section() -> list[str]:
    """Figure 16's heading when the profile has no larger.json."""
    return ["### Larger networks (Figure 16)", "",
            f"No `{LARGER}.json` in this profile's metrics: the larger stage writes it "
            "(docs/study.md D15)."]


def larger_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Figure 16's finding: per level and optimizer, each network's mean first epoch and the
    larger network's lead, and the cells where it is no later and earlier."""
    head = ["### Larger networks (Figure 16)", ""]
    if not data.get("enabled", True):
        return head + ["Not computed: `trajectories.size_pair` is null."]
    smaller, larger = data["smaller"], data["larger"]
    rows = []
    for level, optimizers in sorted(data["by_level"].items(), key=lambda item: float(item[0])):
        for optimizer, cell in sorted(optimizers.items()):
            rows.append([level, optimizer,
                         *(part for role in ("smaller", "larger") for part in (
                             fmt(cell[role]["mean_epoch"]),
                             f"{cell[role]['reached']} of {cell[role]['runs']}")),
                         fmt(cell["lead"])])
    cells = data["cells"]
    return head + [
        "For each progress level and optimizer, the mean first epoch at which the runs of each "
        "network of `trajectories.size_pair` reach the level (over the runs that reach it), how "
        "many of how many runs reach it, and the larger network's lead: the smaller's mean "
        "first epoch minus the larger's, where every run of both reaches the level "
        f"(`{stem}.json`; docs/study.md D15). The paper states the finding in words: larger "
        "networks follow the same manifold, only faster.", "",
        *table(["level", "optimizer", f"{smaller}: mean first epoch", "reached",
                f"{larger}: mean first epoch", "reached", "lead (epochs)"], rows), "",
        f"- {larger} against {smaller}: no later in {cells['no_later']} and earlier in "
        f"{cells['earlier']} of the {cells['compared']} (level, optimizer) cells that every run "
        "of both reaches"]


AVERAGES = {"arithmetic": "AM", "geometric": "GM", "harmonic": "HM", "square_root": "√AM",
            "bhattacharyya": "Bhattacharyya", "jeffreys": "Jeffreys"}


def order(values: Mapping[str, float]) -> str:
    """Names by value, highest first: 'HM > GM > AM'."""
    return " > ".join(AVERAGES.get(name, name)
                      for name, _ in sorted(values.items(), key=lambda item: -item[1]))


def averaging_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Final progress and accuracy of each average."""
    rows, lines = [], []
    configuration = data.get("configuration")
    for space in spaces({key: value for key, value in data.items() if key != "configuration"}):
        methods = dict(sorted(data[space].items(),
                              key=lambda item: list(AVERAGES).index(item[0])
                              if item[0] in AVERAGES else len(AVERAGES)))
        for method, values in methods.items():
            key = f"{stem}.{space}.{method}"
            rows.append([space, AVERAGES.get(method, method), fmt(values["final_progress"]),
                         fmt(values["final_accuracy"]),
                         paper_cell(f"{key}.final_progress", paper),
                         paper_cell(f"{key}.final_accuracy", paper)])
        lines.append(f"- {space}, by final accuracy: "
                     f"{order({m: v['final_accuracy'] for m, v in methods.items()})}")
        theirs = {m: float(paper[f"{stem}.{space}.{m}.final_accuracy"]["value"]) for m in methods
                  if f"{stem}.{space}.{m}.final_accuracy" in paper}
        if len(theirs) == len(methods):
            lines.append(f"- {space}, the paper's: {order(theirs)}")
    runs = data.get("averaged_runs")
    named = (" (" + ", ".join(f"{axis} {value}" for axis, value in configuration.items()) + ")"
             if isinstance(configuration, Mapping) else "")
    return ["### Averaging methods", "",
            f"Six averages of the {runs} runs of one configuration{named} (`studies.averaging`), "
            "at equal checkpoint index: the final progress and accuracy (mean probability of the "
            f"true class) of each (`{stem}.json`; docs/study.md A9, D19; the paper: 30 runs on "
            "CIFAR-10).", "",
            *table(["space", "average", "final progress", "final accuracy", "paper progress",
                    "paper accuracy"], rows), "", *lines]


CORNER_COLUMNS = ("to_normal_at_0.5", "normal_spread_at_0.5", "ratio_at_0.5", "to_normal_at_1",
                  "normal_spread_at_1", "ratio_at_1", "final_train_error")


def span(values: Sequence[float]) -> str:
    """'lo–hi' of the values (one value: itself)."""
    lo, hi = min(values), max(values)
    return fmt(lo) if lo == hi else f"{fmt(lo)}{DASH}{fmt(hi)}"


def corners_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """The corner runs' distance to the normal runs, and the joint embedding's stress: one
    architecture's tree (`corners`, `train`), or one per architecture under `by_arch`."""
    by_arch = data.get("by_arch")
    trees = list(by_arch.items()) if isinstance(by_arch, Mapping) else [(None, data)]
    lead = [] if by_arch is None else ["architecture"]
    rows, lines, stress = [], [], []
    for arch, tree in trees:
        cells = [] if arch is None else [arch]
        corners = tree.get("corners", {})
        rows += [[*cells, name, *(fmt(values.get(column)) for column in CORNER_COLUMNS)]
                 for name, values in corners.items()]
        for s in ("0.5", "1"):
            ratios = [v[f"ratio_at_{s}"] for v in corners.values()
                      if v.get(f"ratio_at_{s}") is not None]
            if ratios:
                inside = sum(r <= 1 for r in ratios)
                lines.append(f"- {'' if arch is None else f'{arch}, '}s = {s}: the ratio spans "
                             f"{span(ratios)} over the {len(ratios)} corners that reach it; it "
                             f"is at most 1 (inside the normal runs' tube) for {inside} of them")
        stress += [[*cells, space, str(k), fmt(tree[space][f"explained_stress_{k}"])]
                   for space in spaces(tree) if space != "corners"
                   for k in stress_dims(tree[space])]
    several = ("" if by_arch is None else
               " Each architecture's corner runs (`studies.corners.setups`) are embedded and "
               "compared with its own normal runs.")
    return ["### Initialization corners", "",
            "Each corner's phase-2 runs: median distance to the normal runs at equal training "
            "accuracy s, the normal runs' own median spread at s, and their ratio (about 1 or "
            "below: the corner runs join the normal runs' tube; well above: they stay apart); "
            f"the final train error (`{stem}.json`; docs/study.md B7, D16). – : not reached."
            f"{several}", "",
            *table([*lead, "corner", "to normal, s = 0.5", "normal spread", "ratio",
                    "to normal, s = 1", "normal spread", "ratio", "final train error"], rows),
            "", *lines, "",
            "Explained stress of the joint corner embedding:", "",
            *table([*lead, "space", "k", "χₖ"], stress)]


def joint_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Explained stress of the joint and Euclidean embeddings beside each space's."""
    head = ["### Joint and Euclidean embeddings", ""]
    if not data.get("enabled", True):
        return head + ["Not computed: `studies.joint.enabled` is false."]
    stress = data["explained_stress"]
    names = list(stress)
    dims = sorted({k for name in names for k in stress_dims(stress[name])})
    rows = [[str(k), *(fmt(stress[name].get(f"explained_stress_{k}")) for name in names)]
            for k in dims]
    samples = ", ".join(f"{space} {n}" for space, n in data.get("samples", {}).items())
    return head + [
        "Explained stress χₖ of the joint train+test embedding (one point per model on the union "
        "of both evaluation subsets; docs/study.md D8) and of the embeddings built from the mean "
        "per-sample Euclidean distance instead of the Bhattacharyya one (D20), beside each "
        f"space's (`{stem}.json`; samples used: {samples}).", "",
        *table(["k", *(name.replace("_", " ") for name in names)], rows)]


SUBSET = "subset_"  # tangents.json's prefix of the second basis (studies.tangents.subset)


def tangent_rows(values: Mapping, space: str, prefix: str, paper_key: str | None,
                 paper: Mapping) -> tuple[list[list[str]], list[str]]:
    """One basis's table rows (k, basis, true InPCA, the paper's two) and its cosine row; the
    paper's cells only where `paper_key` (the metric stem the paper's values are filed under)."""
    def cell(name: str) -> str:
        return "" if paper_key is None else paper_cell(f"{paper_key}.{space}.{name}", paper)

    basis_of, true_of = f"{prefix}tangent_basis_explained_", f"{prefix}true_inpca_explained_"
    dims = sorted({*stress_dims(values, basis_of), *stress_dims(values, true_of)})
    rows = [[space, str(k), fmt(values.get(f"{basis_of}{k}")), fmt(values.get(f"{true_of}{k}")),
             cell(f"tangent_basis_explained_{k}"), cell(f"true_inpca_explained_{k}")]
            for k in dims]
    cosine = [space, fmt(values.get(f"{prefix}direction_cosine")), cell("direction_cosine"),
              fmt(values.get(f"{prefix}basis_time_like_axes"))]
    return rows, cosine


def tangents_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Explained distance on the tangent basis against the true InPCA: over every run, and over
    the runs of `studies.tangents.subset` when the profile has one. The paper's values (the
    authors' AllCNN subset) stand beside the subset when there is one, else beside every run."""
    has_subset = "subset_checkpoints" in data
    bases = [("", None if has_subset else stem)] + ([(SUBSET, stem)] if has_subset else [])
    lines = ["### Tangent bases", "",
             "Explained distance (L1, docs/study.md A5) of the kept checkpoints on the first k "
             "axes of the four-point tangent basis and of their true InPCA (A14, D18), and the "
             f"cosine between the initial and final directions (`{stem}.json`). The paper's: the "
             "AllCNN subset of CIFAR-10, kernel centres 0.3 and 0.7"
             + (", beside this profile's subset (`studies.tangents.subset`)." if has_subset
                else "; here every run, at `studies.tangents.centres`.")]
    for prefix, paper_key in bases:
        rows, extra = [], []
        for space in spaces(data):
            found, cosine = tangent_rows(data[space], space, prefix, paper_key, paper)
            rows += found
            extra.append(cosine)
        runs = (f"the subset: {data.get('subset_runs')} runs, "
                f"{data.get('subset_checkpoints')} checkpoints" if prefix
                else f"every run: {data.get('checkpoints')} checkpoints")
        lines += ["", f"Basis over {runs}.", "",
                  *table(["space", "k", "tangent basis", "true InPCA", "paper basis",
                          "paper true InPCA"], rows), "",
                  *table(["space", "direction cosine", "paper", "time-like axes of the basis"],
                         extra)]
    return lines


def trend(values: Sequence[float]) -> str:
    """'rises', 'falls' or 'is not monotone' (strictly)."""
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    if steps and all(step > 0 for step in steps):
        return "rises"
    if steps and all(step < 0 for step in steps):
        return "falls"
    return "is not monotone"


SLOPES = "slope_against_c"  # synthetic.json's least-squares slopes (lowdim.studies.synthetic)
STUDENTS = "students"  # synthetic.json with several students: one such tree per student


def synthetic_dims(tree: Mapping) -> tuple[list[str], list[int], list[int]]:
    """One student's synthetic tree (`c=<c>` -> group -> chi_k, and `slope_against_c`): its c
    keys in order, the k of its chi_k and of its slopes."""
    cs = sorted((name for name in tree if name.startswith("c=")),
                key=lambda name: float(name.removeprefix("c=")))
    dims = {k for c in cs for group in tree[c] for k in stress_dims(tree[c][group])}
    slope_dims = {k for values in tree.get(SLOPES, {}).values() for k in stress_dims(values)}
    return cs, sorted(dims), sorted(slope_dims)


def synthetic_rows(tree: Mapping, dims: Sequence[int], slope_dims: Sequence[int],
                   lead: Sequence[str] = ()) -> tuple[list[list[str]], list[str], list[list[str]]]:
    """One student's chi table rows, trend lines and slope rows at the given k, each led by the
    cells (and words) of `lead`."""
    cs = synthetic_dims(tree)[0]
    groups = sorted({group for c in cs for group in tree[c]})
    rows = [[*lead, c.removeprefix("c="), group,
             *(fmt(tree[c][group].get(f"explained_stress_{k}")) for k in dims)]
            for group in groups for c in cs if group in tree[c]]
    lines = []
    for group in groups:
        chi = [tree[c][group]["explained_stress_1"] for c in cs if group in tree[c]]
        lines.append(f"- {' '.join([*lead, group])} students: χ₁ {trend(chi)} with c ("
                     + ", ".join(fmt(x) for x in chi) + ")")
    slopes = tree.get(SLOPES, {})
    slope_rows = [[*lead, group,
                   *(fmt(slopes[group].get(f"explained_stress_{k}")) for k in slope_dims)]
                  for group in sorted(slopes)]
    return rows, lines, slope_rows


def synthetic_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Explained stress of the students' InPCA for each input decay rate c, and the slope of
    chi_k against c: one student's tree, or one per student under `students`."""
    students = data.get(STUDENTS)
    trees = list(students.items()) if isinstance(students, Mapping) else [(None, data)]
    dims = sorted({k for _, tree in trees for k in synthetic_dims(tree)[1]})
    slope_dims = sorted({k for _, tree in trees for k in synthetic_dims(tree)[2]})
    rows, lines, slope_rows = [], [], []
    for name, tree in trees:
        parts = synthetic_rows(tree, dims, slope_dims, () if name is None else (name,))
        rows, lines, slope_rows = rows + parts[0], lines + parts[1], slope_rows + parts[2]
    lead = [] if students is None else ["student"]
    groups = "students" if students is None else "initialization"
    slope_lines = ["", f"Least-squares slope of χₖ against c over the c values above, per group "
                   f"(`{SLOPES}`; positive: χₖ rises with c):", "",
                   *table([*lead, groups, *(f"χ{k}" for k in slope_dims)], slope_rows)
                   ] if slope_rows else []
    several = ("" if students is None else
               f" Each student architecture ({', '.join(students)}) is embedded on its own.")
    return ["### Sloppy synthetic data", "",
            "Explained stress χₖ of the students' InPCA for each input decay rate c (larger c: "
            f"sloppier inputs), default and perturbed-initialization (`corners`) students "
            f"(`{stem}.json`; docs/study.md B8, D17). The claim under test (B8, an inference) is "
            f"that χ rises with c.{several}", "",
            *table([*lead, "c", groups, *(f"χ{k}" for k in dims)], rows), "", *lines,
            *slope_lines]


def other_section(data: dict, intervals: Mapping, paper: Mapping, stem: str) -> list[str]:
    """Any other metrics file: every leaf."""
    rows = [[key, fmt(value), *uncertainty(f"{stem}.{key}", value, intervals),
             paper_cell(f"{stem}.{key}", paper)] for key, value in flatten(data).items()]
    return [f"### `{stem}.json`", "",
            *table(["metric", "value", "SE", "interval", "paper"], rows)]


SECTIONS = {"embedding": embedding_section, "trajectories": trajectories_section,
            LARGER: larger_section, "averaging": averaging_section,
            "corners": corners_section, "joint": joint_section, "tangents": tangents_section,
            "synthetic": synthetic_section}


# --- the page and the README block ---


def interval_entries(profile: Profile) -> dict[str, dict]:
    """intervals.json of a profile, or nothing."""
    return profile.files.get(INTERVALS, {})


def profile_section(profile: Profile, paper: Mapping[str, dict]) -> list[str]:
    """One profile's part of the page: a section per finding, in the study's order."""
    intervals = interval_entries(profile)
    levels = sorted({entry["level"] for entry in intervals.values()})
    resamples = sorted({entry["resamples"] for entry in intervals.values()})
    lines = [f"## Profile `{profile.label}` (`{profile.directory}/`)", ""]
    if intervals:
        lines += [f"SE: jackknife over seeds. Interval: {' and '.join(map(percent, levels))} "
                  f"percentile bootstrap over {', '.join(map(str, resamples))} resamples "
                  f"(`{INTERVALS}.json`).", ""]
    stems = [stem for stem in ("embedding", "trajectories") if stem in profile.files]
    stems += [LARGER] + [stem for stem in ("averaging", "corners", "joint", "tangents",
                                           "synthetic") if stem in profile.files]
    stems += sorted(set(profile.files) - set(stems) - {INTERVALS})
    for stem in stems:
        if stem == LARGER and LARGER not in profile.files:
            lines += no_larger_section() + [""]
            continue
        render = SECTIONS.get(stem, other_section)
        lines += render(profile.files[stem], intervals, paper, stem) + [""]
    return lines


def paper_table(values: Sequence[dict], paper_file: str) -> list[str]:
    """The paper's values with their sources."""
    rows = [[f"`{v['metric']}`", v["value"], v["what"], v["where"], v["tag"],
             "yes" if v["verified"] else "no †"] for v in values]
    return ["## The paper's values", "",
            f"From `{paper_file}`, which takes them from docs/study.md, tags as there: B, a "
            "secondary summary of the paper, not checked against its body (unverified, †); N, "
            "printed in a committed notebook of the authors (their data); C, the authors' code.",
            "", *table(["metric", "value", "what", "where", "tag", "verified"], rows)]


def render_page(profiles: Sequence[Profile], paper: Mapping[str, list],
                paper_file: str = PAPER) -> str:
    """docs/results.md for the given profiles."""
    by_metric = {entry["metric"]: entry for entry in paper["values"]}
    dirs = ", ".join(f"`{p.directory}/`" for p in profiles)
    lines = [
        "# Results",
        "",
        "<!-- Generated by `python -m lowdim.tools.results` (the `results` stage of dvc.yaml). "
        "Do not edit: change the tool or docs/paper_values.yaml and run `dvc repro results`. -->",
        "",
        f"Every metric the pipeline committed ({dirs}), with its uncertainty where "
        "`intervals.json` has one and the paper's value beside it where docs/study.md gives one. "
        "This page is generated by the `results` stage (`python -m lowdim.tools.results`) from "
        f"those files and `{paper_file}`: do not edit it by hand (tests/test_results_page.py "
        "fails when it differs from what the tool writes). The paper ran CIFAR-10 at full size, "
        "a profile a smaller grid: compare the pattern, not the digits.",
        "",
        "On a few seeds a resample holds fewer distinct runs than the data, so an interval can "
        "lie beside its value (marked \"beside\"): read the SE and the interval as the spread "
        "between seeds, not as confidence intervals (`lowdim.analysis.intervals`). † marks a "
        "paper value that is not verified.",
        "",
    ]
    if len(profiles) > 1:
        lines += side_by_side(profiles, by_metric)
    for profile in profiles:
        lines += profile_section(profile, by_metric)
    lines += paper_table(paper["values"], paper_file)
    return "\n".join(lines) + "\n"


HEADLINE = (("embedding", "explained_stress_1", "explained stress χ₁"),
            ("embedding", "explained_stress_3", "explained stress χ₃"),
            ("embedding", "explained_stress_10", "explained stress χ₁₀"),
            ("embedding", "explained_stress_50", "explained stress χ₅₀"),
            ("trajectories", "between_within_arch_ratio",
             "trajectory distance, between / within architectures"),
            ("trajectories", "tube_width_median_at_0.5",
             "median tube width at progress 0.5 (nats)"))


SIDE_BY_SIDE = (*HEADLINE,
                ("averaging", "arithmetic.final_accuracy",
                 "averaging: final accuracy of the arithmetic mean"),
                ("averaging", "geometric.final_accuracy",
                 "averaging: final accuracy of the geometric mean"))


def nested(tree: Mapping, dotted: str) -> object:
    """tree[a][b] for "a.b"; None when any level is missing."""
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def side_by_side_cell(profile: Profile, stem: str, space: str, name: str,
                      intervals: Mapping[str, dict]) -> str:
    """One profile's value of a headline metric with its interval, or – when it has none."""
    data = profile.files.get(stem, {}).get(space, {})
    value = data.get(name) if name in data else nested(data, name)  # names may hold dots
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DASH
    _, span = uncertainty(f"{stem}.{space}.{name}", value, intervals)
    if span == DASH:
        return fmt(value, 4)
    return f"{fmt(value, 4)} [{span.replace(' (beside)', ', beside')}]"


def side_by_side(profiles: Sequence[Profile], paper: Mapping[str, dict]) -> list[str]:
    """The headline metrics of every profile in one table, the paper's value beside them."""
    intervals = [interval_entries(profile) for profile in profiles]
    rows = []
    for space in SPACE_ORDER:
        for stem, name, label in SIDE_BY_SIDE:
            cells = [side_by_side_cell(p, stem, space, name, ivals)
                     for p, ivals in zip(profiles, intervals, strict=True)]
            if any(cell != DASH for cell in cells):
                rows.append([space, label, *cells, paper_cell(f"{stem}.{space}.{name}", paper)])
    return ["## The profiles side by side", "",
            "The headline metrics of each profile, with the bootstrap interval of "
            "`intervals.json` in square brackets where it has one (each profile's section "
            "below gives the SE and every other metric). The paper's column is its CIFAR-10 "
            "value.", "",
            *table(["space", "metric", *(f"`{p.label}`" for p in profiles), "paper"], rows), ""]


def readme_block(profile: Profile, paper: Mapping[str, list], space: str = "train") -> str:
    """README.md's generated block (markers included): the headline metrics of one space."""
    by_metric = {entry["metric"]: entry for entry in paper["values"]}
    intervals = interval_entries(profile)
    levels = sorted({entry["level"] for entry in intervals.values()})
    rows = []
    for stem, name, label in HEADLINE:
        value = profile.files.get(stem, {}).get(space, {}).get(name)
        if value is not None:
            key = f"{stem}.{space}.{name}"
            rows.append([label, fmt(value, 4), *uncertainty(key, value, intervals),
                         paper_cell(key, by_metric)])
    interval = f"{' and '.join(map(percent, levels))} interval" if levels else "interval"
    lines = [f"{BEGIN} (python -m lowdim.tools.results --readme; do not edit) -->",
             *table([f"{space} space, profile `{profile.label}`", "value", "SE (seeds)",
                     interval, "paper (CIFAR-10)"], rows),
             END]
    return "\n".join(lines)


BLOCK = re.compile(rf"^{re.escape(BEGIN)}.*?^{re.escape(END)}$", re.S | re.M)


def read_block(text: str) -> str:
    """The generated block of a text (README.md), markers included."""
    found = BLOCK.findall(text)
    if len(found) != 1:
        raise ValueError(f"README.md needs exactly one block from a line starting {BEGIN!r} to "
                         f"a line {END!r}, found {len(found)}")
    return found[0]


def replace_block(text: str, block: str) -> str:
    """`text` with its generated block (from the BEGIN marker to the END marker) replaced."""
    read_block(text)
    return BLOCK.sub(lambda _: block, text)


def default_profiles(root: Path, specs: Sequence[str] = ()) -> list[Profile]:
    """The profiles of `specs` (`label=directory`), or the active profile's `metrics/`."""
    pairs = [parse_spec(spec) for spec in specs] or [(active_profile(root), "metrics")]
    return [read_profile(label, directory.rstrip("/"), root) for label, directory in pairs]


def study_specs(root: Path, studies: str, taken: Sequence[str]) -> list[str]:
    """`label=<studies>/<label>/metrics` for every committed study (lowdim.tools.study) whose
    label is not among `taken`, in name order; none when the directory does not exist."""
    folder = root / studies
    if not folder.is_dir():
        return []
    return [f"{path.parent.name}={studies.rstrip('/')}/{path.parent.name}/metrics"
            for path in sorted(folder.glob("*/metrics"))
            if path.is_dir() and path.parent.name not in taken]


def write_text(path: Path, text: str) -> None:
    """Write atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowdim.tools.results",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", action="append", default=[], metavar="PROFILE=DIR",
                        help="a profile's metrics directory (repeat for several); default: the "
                             "active profile's metrics/")
    parser.add_argument("--studies", metavar="DIR",
                        help="also every committed study under DIR (results/<label>/metrics, "
                             "written by lowdim.tools.study), after the --metrics profiles")
    parser.add_argument("--paper", default=PAPER, help=f"the paper values file ({PAPER})")
    parser.add_argument("--out", default=PAGE, help=f"the page to write ({PAGE})")
    parser.add_argument("--readme", nargs="?", const=README, metavar="FILE",
                        help="rewrite the generated block of README.md (or FILE) instead")
    args = parser.parse_args(argv)
    root = find_root()
    specs = list(args.metrics)
    if args.studies:
        taken = [parse_spec(spec)[0] for spec in specs] or [active_profile(root)]
        specs = (specs or [f"{active_profile(root)}=metrics"]) + study_specs(root, args.studies,
                                                                           taken)
    profiles = default_profiles(root, specs)
    paper = read_paper(root / args.paper)
    if args.readme:
        path = root / args.readme
        write_text(path, replace_block(path.read_text(), readme_block(profiles[0], paper)))
        print(f"rewrote the results block of {args.readme} from {profiles[0].directory}/")
    else:
        write_text(root / args.out, render_page(profiles, paper, args.paper))
        print(f"wrote {args.out} from " + ", ".join(f"{p.directory}/" for p in profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
