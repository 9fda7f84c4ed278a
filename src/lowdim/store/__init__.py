"""Every product's on-disk format: write and read, no maths, no torch; imports nothing else of
lowdim but `paths`.

| module | holds |
|---|---|
| `atomic` | atomic writes (temporary name, then rename) |
| `records` | the vocabulary of products: prediction spaces, run specifications, embeddings |
| `runs` | the run store: one directory per training run |
| `analysis_set` | the stacked predictions and their index table |
| `inputs` | reading a stage input: a missing or damaged file is named, with what to do |
| `arrays` | `.npy` files read by slices, disk-space checks |
| `block_cache` | the distance stage's cache of blocks per pair of runs |
| `distance_matrices` | the M x M distance matrices and their centring sums |
| `products` | reference points, embeddings, tables, product names |

Nothing is imported here, so a stage's code deps list only the modules it runs.
"""
