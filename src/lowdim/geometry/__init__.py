"""The maths of prediction space; no IO beyond `lowdim.store`.

| module | holds |
|---|---|
| `distances`, `distance_blocks`, `kernels/` | Bhattacharyya distances: kernels, tiles, blocks |
| `euclidean` | the Euclidean comparison (docs/study.md D20) |
| `eigen`, `inpca` | eigensolvers, double centring, InPCA coordinates and explained stress |
| `geodesic` | geodesics on the sphere of square-root probabilities, progress |
| `centroids` | averages of predictions (arithmetic, geometric, Bhattacharyya, ...) |
| `tangent_basis` | tangent bases of trajectories |

Nothing is imported here, so a stage's code deps list only the modules it runs.
"""
