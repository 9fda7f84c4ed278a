#!/usr/bin/env bash
# Time the distances and embedding stage notebooks of one checkout on this repository's
# predictions (data/predictions of a repro), so two code versions compare on the same input.
#
#   git worktree add /tmp/before <rev>
#   bash benchmarks/stages.sh /tmp/before /tmp/t_before
#   CACHE=1 bash benchmarks/stages.sh . /tmp/t_after    # CACHE=1: a fresh block cache (new code)
#
# Each checkout runs with its own params.yaml and src/; .venv and the predictions are this
# repository's. Prints the wall time of each notebook, kernel start-up included.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$1" && pwd)
mkdir -p "$2" && out=$(cd "$2" && pwd)
export PYTHONPATH="$repo/src" PATH="$here/.venv/bin:$PATH"
cd "$repo"
cache=()
[ -n "${CACHE:-}" ] && cache=(-p cache_dir "$out/cache")

start=$(date +%s.%N)
papermill --no-progress-bar --cwd "$repo" -p params_file "$repo/params.yaml" \
  notebooks/40_distances.ipynb "$out/40.ipynb" \
  -p predictions_dir "$here/data/predictions" -p distances_dir "$out/distances" "${cache[@]}" \
  > "$out/40.log" 2>&1
middle=$(date +%s.%N)
papermill --no-progress-bar --cwd "$repo" -p params_file "$repo/params.yaml" \
  notebooks/50_embedding.ipynb "$out/50.ipynb" -p distances_dir "$out/distances" \
  -p embedding_dir "$out/embedding" -p metrics_file "$out/metrics.json" > "$out/50.log" 2>&1
end=$(date +%s.%N)
python -c "print(f'{\"$repo\"}: distances {$middle - $start:.1f} s, embedding {$end - $middle:.1f} s')"
