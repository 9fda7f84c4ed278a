"""The paper's special studies, one module per study, each run by one notebook (70-84).

| module | study | notebook | products |
|---|---|---|---|
| `corners` | initialization corners (docs/study.md B7, D16) | 70_corners | data/studies/corners |
| `synthetic` | sloppy synthetic data (B8, D17) | 75_synthetic | data/studies/synthetic |
| `averaging` | averaging methods (A9, D19) | 80_averaging | data/studies/averaging |
| `tangents` | tangent bases (A14, D18) | 82_tangents | data/studies/tangents |
| `joint` | joint train+test embedding (D8), Euclidean (D20) | 84_joint_embedding | .../joint |

Each module exposes ``run_<study>(study, <other sections it reads>, ...)``: the config sections
it reads (`lowdim.config.studies.<study>` first), arrays and tables in, a `common.StudyResult` out
(the products to save, the metrics to write, a summary table to show); the notebook does the IO.
Their settings are the `studies.<study>` sections of params.yaml. `common` holds what they share:
the configured distance and InPCA settings (`distances.*`, `embedding.*`), honoured by every study.

Nothing is imported here, so importing one study does not import the others (or torch).
"""
