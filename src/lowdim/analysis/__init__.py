"""The predictions and trajectories stages, and placing a new model on the manifold.

| module | holds |
|---|---|
| `analysis_set` | builds, plans and writes the analysis set (the predictions stage) |
| `trajectories` | progress, reindexing and averages along trajectories |
| `trajectory_analyses` | tube width, distance to the geodesic, clustering, importance |
| `placement` | where a new model's predictions land in a stored embedding |

Nothing is imported here, so a stage's code deps list only the modules it runs.
"""
