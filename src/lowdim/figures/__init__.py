"""Drawing only: imports `lowdim.store`, `lowdim.config` and itself, nothing else.

| module | holds |
|---|---|
| `theme` | the theme, fixed palettes, `savefig` |
| `embedding_panels` | panels of embeddings |
| `trajectory_panels` | panels of trajectories |
| `study_panels` | panels of the special studies |
| `interactive` | interactive HTML pages |

Nothing is imported here, so a stage's code deps list only the modules it runs.
"""
