"""The sloppy synthetic data study (docs/study.md B8, D17): fc students on Gaussian inputs whose
covariance eigenvalues decay at rate c, their checkpoints embedded with InPCA for each c.

The students train with the main training loop (`lowdim.training.run.train_run`: seeding,
optimizers,
per-iteration cosine schedule, checkpoint schedule B5, divergence check, inline eval-mode
predictions kept in float32, then renormalized here as in the predictions stage). The inputs are
float features (``lowdim.data.synthetic``), not uint8 images: `student_data` puts them in a
`DeviceData` as they are, which `train_run` feeds to the model unnormalized. The "train"
prediction space is the whole synthetic training set, the "test" space the test set.

Several student architectures (`studies.synthetic.students`) each train their own runs and are
embedded on their own, per c and group: the study asks how the explained stress of one kind of
network changes with c, and a joint embedding would mix that with the distance between the
architectures. Their products and rows carry the student's name (`student_group`), their metrics
sit under `students` -> name, each in the one-student layout.

Perturbed-initialization corners (B4 ``perturbed_normal``): N(0, 1) weights for every Linear
layer, drawn in module order from a generator seeded with the iseed, are added to the default
initialization (passed to `train_run` as its initial state). The authors' version also doubled
the biases (a quirk); here biases are kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from lowdim.analysis.analysis_set import reference_points, renormalize
from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.studies.synthetic import SyntheticConfig, student_group
from lowdim.config.train import TrainConfig
from lowdim.data.synthetic import make_synthetic
from lowdim.device import resolve_device
from lowdim.geometry.distances import bhattacharyya
from lowdim.geometry.inpca import stress_metrics
from lowdim.store.products import product_name
from lowdim.store.records import SPACES, RunSpec
from lowdim.studies.common import StudyResult, distance_options, embed
from lowdim.training.run import DeviceData, RunResult, init_model, train_run


def perturb_init(model: nn.Module, iseed: int) -> None:
    """Add N(0, 1) weights drawn from `iseed` to every Linear weight of `model`, in place."""
    generator = torch.Generator().manual_seed(iseed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.add_(torch.randn(module.weight.shape, generator=generator))


def student_data(inputs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                 num_classes: int, device: torch.device | str = "cpu") -> DeviceData:
    """Float inputs (n, 1, 1, d) and labels (n,) per space -> DeviceData on `device`: the
    "train" inputs are both the training data and the "train" evaluation space."""
    def t(a: np.ndarray, dtype: type) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)).to(device)

    channels = inputs["train"].shape[1]
    return DeviceData(
        train_images=t(inputs["train"], np.float32), train_labels=t(labels["train"], np.int64),
        eval_images={s: t(inputs[s], np.float32) for s in SPACES},
        eval_labels={s: t(labels[s], np.int64) for s in SPACES},
        mean=t(np.zeros(channels), np.float32), std=t(np.ones(channels), np.float32),
        num_classes=int(num_classes))


def student_spec(widths: Sequence[int], optimizer: str, lr: float, batch_size: int,
                 epochs: int, seed: int) -> RunSpec:
    """The RunSpec of one fc student (lr used as given: no batch-size scaling, no decay)."""
    return RunSpec(arch="fc", optimizer=optimizer, batch_size=batch_size, base_lr=lr, lr=lr,
                   weight_decay=0.0, augment="none", init="default", epochs=epochs, seed=seed,
                   model_size={"widths": tuple(widths)})


def perturbed_state(spec: RunSpec, data: DeviceData, iseed: int) -> dict[str, torch.Tensor]:
    """The student's seeded initial weights plus the iseed's N(0, 1) perturbation (built on the
    CPU, as `train_run` initialises, so any device gets the same weights)."""
    model = init_model(spec, tuple(data.train_images.shape[1:]), data.num_classes,
                       torch.device("cpu"))
    perturb_init(model, iseed)
    return model.state_dict()


def train_student(data: DeviceData, spec: RunSpec, *, iseed: int | None = None,
                  eval_batch_size: int = 1000) -> RunResult:
    """Train one student with `train_run`; `iseed` perturbs its initialization. A diverged
    student (non-finite loss) is an error naming the learning rate to lower."""
    initial = None if iseed is None else perturbed_state(spec, data, iseed)
    # float32 predictions: a perturbed student's confident probabilities lose their small
    # classes in float16, which moves its distances (and the corners' explained stress).
    result = train_run(spec, data, eval_batch_size=eval_batch_size, initial_state=initial,
                       probs_dtype=np.float32)
    if result.status != "ok":
        raise RuntimeError(f"student {spec.optimizer} seed {spec.seed} (iseed {iseed}) diverged "
                           f"at step {result.diverged_at_step}: lower "
                           f"studies.synthetic.lr.{spec.optimizer}")
    return result


def student_rows(run: RunResult, run_id: str, space: str, **columns: object) -> pd.DataFrame:
    """Index rows of one student's checkpoints in `space`, with extra constant `columns`."""
    t = len(run.steps)
    return pd.DataFrame({"kind": "run", "run_id": run_id, **columns,
                         "checkpoint": np.arange(t), "step": np.asarray(run.steps, np.int64),
                         f"{space}_loss": np.asarray(run.loss[space]),
                         f"{space}_error": np.asarray(run.error[space])})


def analysis_set(runs: Sequence[tuple[pd.DataFrame, np.ndarray]], labels: np.ndarray,
                 num_classes: int, geodesic_points: int, space: str = "train"
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Student checkpoints (rows, (T, N, C)) plus ignorance, truth and the geodesic of `labels`
    (N,): the index (column `row`) and (M, N, C) float32 probabilities."""
    ref_rows, ref_probs = reference_points({space: labels}, num_classes, geodesic_points)
    index = pd.concat([*(rows for rows, _ in runs), ref_rows], ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    probs = np.concatenate([*(p for _, p in runs), ref_probs[space]]).astype(np.float32)
    return index, probs


def stress_table(stress: Mapping[tuple[float, str], np.ndarray], top: int) -> pd.DataFrame:
    """Long table c, group, k, explained_stress from {(c, group): (K,) chi_k}, k <= top."""
    return pd.DataFrame([{"c": c, "group": group, "k": k + 1, "explained_stress": float(v)}
                         for (c, group), chi in stress.items() for k, v in enumerate(chi[:top])])


SLOPE_DIMS = (1, 2, 3)  # the chi_k that Figure S4 draws against c


def stress_slopes(stress: pd.DataFrame, ks: Sequence[int] = SLOPE_DIMS
                  ) -> dict[str, dict[str, float | None]]:
    """Long table (c, group, k, explained_stress; ``stress_table``) -> {group:
    {"explained_stress_<k>": the least-squares slope of chi_k against c}} for each k of `ks` the
    table holds: sum (c - mean c)(chi - mean chi) / sum (c - mean c)^2 over the group's c values
    (positive: chi_k rises with sloppier inputs, B8's claim). Fewer than two distinct c: None."""
    missing = [c for c in ("c", "group", "k", "explained_stress") if c not in stress.columns]
    if missing:
        raise ValueError(f"stress lacks the column(s) {missing}: pass the study's stress table "
                         "(stress_table)")
    out: dict[str, dict[str, float | None]] = {}
    for group, rows in stress.groupby("group", sort=True):
        slopes: dict[str, float | None] = {}
        for k in ks:
            at = rows[rows["k"] == k]
            if at.empty:
                continue
            if at["c"].duplicated().any():
                raise ValueError(f"group {group!r} has more than one chi_{k} for a c value")
            c = at["c"].to_numpy(dtype=np.float64)
            chi = at["explained_stress"].to_numpy(dtype=np.float64)
            spread = np.sum((c - c.mean()) ** 2)
            slopes[f"explained_stress_{k}"] = (
                round(float(np.sum((c - c.mean()) * (chi - chi.mean())) / spread), 6)
                if spread > 0 else None)
        out[str(group)] = slopes
    return out


def stress_overview(stress: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """chi_k for k <= `top` from the study's stress table: a row per (student,) group and c, a
    column per k."""
    rows = [column for column in ("student", "group", "c") if column in stress.columns]
    return stress[stress["k"] <= top].pivot_table(index=rows, columns="k",
                                                  values="explained_stress")


def slope_overview(metrics: Mapping) -> pd.DataFrame:
    """The least-squares slopes of chi_k against c (`slope_against_c` of the study's metrics):
    a row per chi_k, a column per group, or per (student, group) with several students."""
    if "students" in metrics:
        table = pd.DataFrame({(student, group): slopes
                              for student, tree in metrics["students"].items()
                              for group, slopes in tree["slope_against_c"].items()})
    else:
        table = pd.DataFrame(metrics["slope_against_c"])
    return table.rename_axis("chi_k")


def groups(study: SyntheticConfig) -> list[str]:
    """The student groups: `default`, and `corners` when ncorners > 0."""
    return ["default"] + (["corners"] if study.ncorners else [])


def train_group(data: DeviceData, study: SyntheticConfig, c: float, group: str, *,
                student: tuple[str | None, Sequence[int]] | None = None,
                eval_batch_size: int = 1000
                ) -> tuple[list[tuple[pd.DataFrame, np.ndarray]], list[dict]]:
    """Every optimizer x seed of one (c, group) and student architecture ((name, hidden widths);
    None: the study's first): (rows, (T, N, C) float32 train-space probabilities) per run, and
    one log entry each (final train and test error). A named student's rows and entries say
    which (column `student`)."""
    name, widths = student if student is not None else study.student_architectures()[0]
    named = {} if name is None else {"student": name}
    parts, log = [], []
    todo = list(itertools.product(study.optimizers, enumerate(study.seeds)))
    label = f"students c={c:g} {group}" + ("" if name is None else f" {name}")
    for optimizer, (i, seed) in tqdm(todo, desc=label, unit="run"):
        iseed = i % study.ncorners if group == "corners" else None
        spec = student_spec(widths, optimizer, study.lr[optimizer], study.batch_size,
                            study.epochs, seed)
        run = train_student(data, spec, iseed=iseed, eval_batch_size=eval_batch_size)
        run_id = f"{product_name(c, student_group(name, group))}_{optimizer}_s{seed}"
        rows = student_rows(run, run_id, "train", c=c, **named, group=group,
                            optimizer=optimizer, seed=seed, iseed=-1 if iseed is None else iseed)
        parts.append((rows, renormalize(run.stacked("train"))))
        log.append({"c": c, **named, "group": group, "optimizer": optimizer, "seed": seed,
                    "final train error": run.error["train"][-1],
                    "final test error": run.error["test"][-1]})
    return parts, log


def run_synthetic(study: SyntheticConfig, train: TrainConfig, distance_settings: DistancesConfig,
                  embedding_settings: EmbeddingConfig, *,
                  distance_device: str | None = None) -> StudyResult:
    """The synthetic study: for each c, generate the data, train every student architecture's
    runs of every group (on `train.device`), embed each (student, group)'s checkpoints with the
    references.

    Products: `<c>_<group>_index` and `_embedding` per c and group (`<c>_<student>_<group>_...`
    with several students), `stress` (chi_k, k <= 50; column `student` with several), `runs`
    (final errors); metrics: explained stress per c and group (`c=<c>`), and per group the
    least-squares slope of chi_1..chi_3 against c (`slope_against_c`, ``stress_slopes``); with
    several students, that tree per student under `students`; summary: mean final errors per
    (student,) c, group and optimizer.
    """
    device = resolve_device(train.device)
    students = study.student_architectures()
    products, log = {}, []
    stress: dict[str | None, dict] = {name: {} for name, _ in students}
    metrics: dict[str | None, dict] = {name: {} for name, _ in students}
    for c in study.c:
        made = make_synthetic(c, d=study.d, n_train=study.n_train, n_test=study.n_test,
                              teacher=study.teacher, teacher_widths=study.teacher_widths,
                              num_classes=study.num_classes, seed=study.data_seed)
        labels = {"train": made.train_labels, "test": made.test_labels}
        data = student_data({"train": made.train_inputs, "test": made.test_inputs}, labels,
                            study.num_classes, device)
        for student in students:
            name = student[0]
            for group in groups(study):
                parts, entries = train_group(data, study, c, group, student=student,
                                             eval_batch_size=train.eval_batch_size)
                log += entries
                index, probs = analysis_set(parts, labels["train"], study.num_classes,
                                            study.geodesic_points)
                emb = embed(bhattacharyya(probs, **distance_options(distance_settings,
                                                                    distance_device).kwargs()),
                            embedding_settings)
                stem = product_name(c, student_group(name, group))
                products[f"{stem}_index"], products[f"{stem}_embedding"] = index, emb
                stress[name][(c, group)] = emb.explained_stress
                metrics[name].setdefault(f"c={c:g}", {})[group] = stress_metrics(
                    emb, embedding_settings.stress_dims)
    tables = {name: stress_table(stress[name], top=50) for name, _ in students}
    for name, table in tables.items():
        metrics[name]["slope_against_c"] = stress_slopes(table)
    products["runs"] = pd.DataFrame(log)
    keys = ["c", "group", "optimizer"]
    if students[0][0] is None:  # the one unnamed student: the one-student layout
        products["stress"], result_metrics = tables[None], metrics[None]
    else:
        products["stress"] = pd.concat([table.assign(student=name)[["student", *table.columns]]
                                        for name, table in tables.items()], ignore_index=True)
        result_metrics, keys = {"students": metrics}, ["student", *keys]
    summary = products["runs"].groupby(keys)[
        ["final train error", "final test error"]].mean()
    return StudyResult(products=products, metrics=result_metrics, summary=summary)
