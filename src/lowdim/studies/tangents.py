"""Tangent bases (docs/study.md A14, D18): a four-point basis near the start and the end of
training, and how much of the true distances its three axes keep.

Two "average models" are Gaussian-kernel averages (width `studies.tangents.width`, in progress)
of every run checkpoint with train loss below `studies.tangents.outlier_loss`, around the two
progress centres `studies.tangents.centres`. With ignorance P0 and truth P* they make the basis
(P0, P*, start, end) of `lowdim.geometry.tangent_basis`; every run checkpoint is projected onto its
InPCA out of
sample. The explained distance (L1, A5) on the first k axes is compared with the true InPCA (the
`embedding` solver) of the kept checkpoints' stored distances. Distances to the basis use the
`distances` settings, so they match the stored matrix.

`studies.tangents.subset` adds a second basis built the same way over some of the runs only (the
authors' table: AllCNN runs without augmentation, batch 200, wd 0, lr other than 0.001, centres
0.3 and 0.7); the basis over every run is kept, as the paper shows both.

**Scale.** The probabilities are read by blocks of rows (`common.Rows`: the kernel averages and
the projections onto the basis) and the kept checkpoints' distances by slabs of the stored D
(`common.Submatrix`: the true InPCA with an iterative solver, and the explained distances, one
pass over the K x K block per k and method). Memory: one block, plus O(K) per axis. The true
InPCA of the K kept checkpoints with the dense solver (``auto`` at K <= 2,000) forms the K x K
matrix: ``8 K^2`` bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lowdim.analysis.trajectories import reference_rows
from lowdim.config.distances import DistancesConfig
from lowdim.config.embedding import EmbeddingConfig
from lowdim.config.studies.tangents import TangentsConfig, TangentSubset
from lowdim.geometry.tangent_basis import (
    direction_cosine,
    explained_distance_l1,
    kernel_average,
    project_onto_basis,
    tangent_basis,
    tangent_embedding,
)
from lowdim.store.lazy import Submatrix
from lowdim.store.records import SPACES
from lowdim.studies.common import (
    Rows,
    StudyResult,
    check_spaces,
    distance_options,
    embed,
    selection_mask,
)


def tangent_rows(index: pd.DataFrame, loss_cut: float, runs: np.ndarray | None = None,
                 what: str = "run checkpoints") -> np.ndarray:
    """Rows of the run checkpoints with train loss < `loss_cut` (A14: the authors keep < 4),
    among the rows `runs` marks (a boolean mask over `index`; None: every run)."""
    keep = (index["kind"] == "run") & (index["train_loss"] < loss_cut)
    if runs is not None:
        keep &= runs
    rows = index.loc[keep, "row"].to_numpy()
    if rows.size < 2:
        raise ValueError(f"only {rows.size} {what} have train loss < {loss_cut:g}: raise "
                         "studies.tangents.outlier_loss or train longer")
    return rows


def explained_distance_curve(d: np.ndarray, coords: np.ndarray, signs: np.ndarray,
                             dims: int) -> np.ndarray:
    """(M, M) D, (M, K) coordinates, (K,) signs -> (min(dims, K),) explained distance at k = 1..

    `explained_distance_l1` for each number of leading axes.
    """
    kmax = min(int(dims), np.shape(coords)[1])
    return np.array([explained_distance_l1(d, coords, signs, k) for k in range(1, kmax + 1)])


def explained_table(space: str, method: str, d: np.ndarray, coords: np.ndarray,
                    signs: np.ndarray, dims: int) -> pd.DataFrame:
    """The explained-distance curve of one embedding: space, method, k, explained, sign."""
    curve = explained_distance_curve(d, coords, signs, dims)
    return pd.DataFrame({"space": space, "method": method, "k": np.arange(1, len(curve) + 1),
                         "explained": curve, "sign": signs[: len(curve)]})


def explained_metrics(explained: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{space: {<true_inpca|tangent_basis>_explained_<k>: value}} from the explained table."""
    out: dict[str, dict[str, float]] = {}
    for (space, method), rows in explained.groupby(["space", "method"]):
        key = "true_inpca" if method == "true InPCA" else "tangent_basis"
        out.setdefault(space, {}).update({
            f"{key}_explained_{k}": round(float(v), 6)
            for k, v in zip(rows["k"], rows["explained"], strict=True)})
    return out


def subset_mask(index: pd.DataFrame, subset: TangentSubset) -> np.ndarray:
    """(M,) bool: the run rows (every checkpoint) of the runs `subset` keeps
    (`common.selection_mask`)."""
    return selection_mask(index, subset, "studies.tangents.subset")


def basis_analysis(index: pd.DataFrame, probs: Mapping[str, np.ndarray],
                   distances: Mapping[str, np.ndarray], progress: pd.DataFrame,
                   run_rows: np.ndarray, kept: np.ndarray, centres: tuple[float, ...],
                   width: float, dims: int, embedding_settings: EmbeddingConfig,
                   options: Mapping) -> tuple[dict, pd.DataFrame, dict[str, dict]]:
    """One tangent basis: kernel averages of the `kept` rows at `centres`, the basis InPCA, every
    row of `run_rows` projected onto it, and the explained distances of the kept rows against
    their true InPCA. Returns products (per space `<space>_coords`, `<space>_basis`), the
    explained table and per space metrics (direction cosine, time-like axes, explained)."""
    on_kept = np.isin(run_rows, kept)
    p0_row, p1_row = reference_rows(index)
    products, tables, metrics = {}, [], {}
    for space in SPACES:
        lam = progress.loc[kept, f"{space}_progress"].to_numpy()
        models = Rows(probs[space], kept)  # read block by block
        start, end = (kernel_average(models, lam, c, width) for c in centres)
        p0, p1 = np.asarray(probs[space][p0_row]), np.asarray(probs[space][p1_row])
        basis = tangent_basis(p0, p1, start, end)
        basis_emb = tangent_embedding(basis, **options)
        coords = project_onto_basis(Rows(probs[space], run_rows), basis, basis_emb, **options)
        d_kept = Submatrix(distances[space], kept)
        true = embed(d_kept, embedding_settings, dims)
        tables.append(explained_table(space, "true InPCA", d_kept, true.coords, true.signs,
                                      dims))
        tables.append(explained_table(space, "tangent basis", d_kept, coords[on_kept],
                                      basis_emb.signs, dims))
        products.update({f"{space}_coords": coords, f"{space}_basis": basis_emb})
        metrics[space] = {"direction_cosine": round(direction_cosine(p0, p1, start, end), 6),
                          "basis_time_like_axes": int((basis_emb.signs < 0).sum())}
    explained = pd.concat(tables, ignore_index=True)
    for space, values in explained_metrics(explained).items():
        metrics[space].update(values)
    return products, explained, metrics


def run_tangents(study: TangentsConfig, distance_settings: DistancesConfig,
                 embedding_settings: EmbeddingConfig, index: pd.DataFrame,
                 probs: Mapping[str, np.ndarray], distances: Mapping[str, np.ndarray],
                 progress: pd.DataFrame, *, distance_device: str | None = None) -> StudyResult:
    """The tangents study on the analysis set (`index`, per space (M, N, C) `probs`), the
    distances stage's (M, M) matrices and the trajectories stage's progress table (indexed by
    row, columns `<space>_progress`).

    Products: `rows`, `kept` (run rows; train loss below the cut), per space `<space>_coords`
    (M_runs, 3) and `<space>_basis` (the basis InPCA), `explained`; metrics: per space the
    direction cosine, the basis' time-like axes and the explained distances, and `checkpoints`;
    summary: the explained distances, true InPCA against the basis, per space and k.

    With `study.subset`, a second basis over the runs it keeps, at its own centres: the same
    products prefixed `subset_`, per space the same metrics prefixed `subset_`, and
    `subset_checkpoints` and `subset_runs`; the summary gains its two columns.
    """
    check_spaces("probs", probs, SPACES)
    check_spaces("distances", distances, SPACES)
    options = distance_options(distance_settings, distance_device).kwargs()
    subset = None if study.subset is None else subset_mask(index, study.subset)
    kept = tangent_rows(index, study.outlier_loss)
    run_rows = index.index[index["kind"] == "run"].to_numpy()
    products, explained, metrics = basis_analysis(
        index, probs, distances, progress, run_rows, kept, study.centres, study.width,
        study.dims, embedding_settings, options)
    products = {"rows": run_rows, "kept": np.isin(run_rows, kept), **products,
                "explained": explained}
    metrics["checkpoints"] = int(len(kept))
    summary = explained.pivot(index=["space", "k"], columns="method", values="explained")
    if subset is not None:
        sub_kept = tangent_rows(index, study.outlier_loss, subset,
                                "run checkpoints of studies.tangents.subset")
        sub_rows = index.index[subset].to_numpy()
        sub_products, sub_explained, sub_metrics = basis_analysis(
            index, probs, distances, progress, sub_rows, sub_kept, study.subset.centres,
            study.width, study.dims, embedding_settings, options)
        products.update({"subset_rows": sub_rows, "subset_kept": np.isin(sub_rows, sub_kept),
                         **{f"subset_{k}": v for k, v in sub_products.items()},
                         "subset_explained": sub_explained})
        for space, values in sub_metrics.items():
            metrics[space].update({f"subset_{k}": v for k, v in values.items()})
        metrics["subset_checkpoints"] = int(len(sub_kept))
        metrics["subset_runs"] = int(index.loc[subset, "run_id"].nunique())
        sub_summary = sub_explained.pivot(index=["space", "k"], columns="method",
                                          values="explained")
        summary = summary.join(sub_summary.add_prefix("subset: "), how="outer")
    return StudyResult(products=products, metrics=metrics, summary=summary.round(4))
