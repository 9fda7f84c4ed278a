#!/usr/bin/env bash
# The GPU checks in one run, sized for a 10-minute lease of one CUDA machine (docs/gpu.md):
#
# 1. the tests that need CUDA (the Triton distance kernel against the float64 oracle, the
#    device products of the InPCA solvers, augmentation on the GPU), which skip on a CPU;
# 2. the distance benchmark on CUDA (Triton against the reference method, largest difference);
# 3. benchmarks/scale.py --device cuda at M = 2,000 and 10,000 (predictions, distances with the
#    Triton kernel, the embedding with D's products on the device, trajectories).
#
#   bash benchmarks/device_check.sh [OUT]   # logs in OUT (default $OUT, else /tmp/lowdim-device)
#
# Needs an environment with lowdim's requirements and a CUDA build of torch (PYTHON, default
# python3); src/ is put first on the path. Each step has its own time limit (the sum is 9.5
# min); the script goes on after a failed step and exits 1 if any failed, 3 without a GPU.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
out=${1:-${OUT:-/tmp/lowdim-device}}
mkdir -p "$out"
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
py=${PYTHON:-python3}
if ! "$py" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"; then
    echo "no CUDA device visible to torch: nothing to check here"
    exit 3
fi
failed=0
step() {  # step NAME SECONDS COMMAND...: run it within SECONDS, log to OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "   exit $rc after $((SECONDS - start)) s; the log's end:"
    tail -n 20 "$out/$name.log" | sed 's/^/   /'
    [ "$rc" -eq 0 ] || failed=1
}
step nvidia-smi 20 nvidia-smi
step cuda-tests 150 "$py" -m pytest -q -p no:cacheprovider tests/test_distance_kernels.py \
    tests/test_mutants_eigen.py tests/test_mutants_inpca_geodesic.py tests/test_data.py \
    -k "cuda or triton or device"
step distances 120 "$py" benchmarks/distances.py --device cuda --m 4000 --n 2000
step scale 280 "$py" benchmarks/scale.py --device cuda --sizes 2000 10000 \
    --stages predictions distances embedding trajectories --workdir "$out/scale-work"
rm -rf "$out/scale-work"
exit "$failed"
