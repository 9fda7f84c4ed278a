"""Work of the pipeline's stages as tasks on a Ray cluster.

| module | holds |
|---|---|
| `ray_common` | what every Ray driver and task shares: connecting, the environment check |
| `distance_tiles` | the distances stage's missing blocks as Ray tasks |

The train stage's Ray backend is `lowdim.training.ray_backend` (it uses `ray_common`). Ray is
imported only inside functions, when a stage uses it. Nothing is imported here, so a stage's
code deps list only the modules it runs.
"""
