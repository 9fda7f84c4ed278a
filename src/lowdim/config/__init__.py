"""params.yaml to typed, frozen objects: one module per section, loaded by the stage that reads it.

| section | module | class |
|---|---|---|
| `data` | `data` | `DataConfig` (and `DATASET_SHAPES`) |
| `grid` | `grid` | `GridConfig` of `GridBlock`s (and `INIT_SCHEMES`, `PRECISIONS`) |
| `models` | `models` | `ModelsConfig` (sizes are built by `lowdim.models.check_sizes`) |
| `train` | `train` | `TrainConfig`, `RayConfig` |
| `predictions` | `predictions` | `PredictionsConfig` |
| `distances` | `distances` | `DistancesConfig` |
| `embedding` | `embedding` | `EmbeddingConfig` |
| `trajectories` | `trajectories` | `TrajectoriesConfig` |
| `intervals` | `intervals` | `IntervalsConfig` |
| `studies.corners` | `studies.corners` | `CornersConfig` |
| `studies.synthetic` | `studies.synthetic` | `SyntheticConfig` |
| `studies.averaging` | `studies.averaging` | `AveragingConfig` |
| `studies.tangents` | `studies.tangents` | `TangentsConfig` |
| `studies.joint` | `studies.joint` | `JointConfig` |
| `figures` | `figures` | `FiguresConfig` |

`load.py` reads the file and builds sections: ``load(params_file, overrides, DistancesConfig)``
validates every key of `distances` before the stage computes. A rule across two sections is a
`check_with(...)` in the module of the section that refers to the other; a stage that loads both
calls it. `profile.py` is the whole file (every section and every cross-section rule); no stage
imports it. ``python -m lowdim.tools.params params.yaml`` also builds the networks (config never
imports the models).

Nothing is imported here, so a stage's code deps list only the sections it reads.
"""
