"""The train stage: the grid of runs, one training run, packed runs and the launch backends.

| module | holds |
|---|---|
| `grid` | the `grid` section expanded into run specifications |
| `run` | one training run: seed, optimizer, schedule, checkpoints, inline predictions |
| `packed` | several runs of one architecture trained in one step |
| `precision` | a run's precision: fp32, or fp16-mixed (autocast and a loss scale, CUDA only) |
| `ledger` | what is done and what failed: pending runs, the data fingerprint, failure files |
| `settings` | a run's effective training settings (part of being complete) and provenance |
| `local` | local runs, one at a time or in worker processes |
| `ray_backend` | runs as Ray tasks |
| `launch` | picks the backend |

Nothing is imported here, so a stage's code deps list only the modules it runs.
"""
