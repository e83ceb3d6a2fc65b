#!/usr/bin/env bash
# The labeled-defects protocol (python -m benchmarks.labeled_defects) on a borrowed GPU, in
# one call: magnetic tiles (DATA) and the demo washers made there, SEEDS x {no labels, K
# image-level labels per type, K boxes per type}, every training at once on the one GPU (one
# CPU thread each), each at the same budget of MINUTES. Results under OUT as they come: the
# JSON is rewritten as each run ends, so a run cut short still returns what finished.
#
#   bash benchmarks/gpu-labeled.sh                                   # there, from the code root
#   DEVICE=cpu PRESET=tiny MINUTES=0.1 DEMO_ARGS=small bash benchmarks/gpu-labeled.sh  # rehearsal
set -u
OUT=${OUT:-runs/gpu-labeled}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-default}
MINUTES=${MINUTES:-3.5}
SEEDS=${SEEDS:-0,1,2}
K=${K:-5}
DATA=${DATA:-data/magnetic_tile}
LIMIT_S=${LIMIT_S:-400}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
. "$(dirname "${BASH_SOURCE[0]}")/gpu-machine.sh"
if [ "${DEMO_ARGS:-}" = small ]; then
    demo="n_train=24, n_test_good=3, n_per_defect=3, size=64"
else
    demo=""
fi
"$PYTHON" -c "from models.synth_demo import make_demo_dataset as m; m('/tmp/kensa-demo', seed=0, $demo)" \
    >>"$OUT/machine.txt" 2>&1 || echo "demo data failed" | tee -a "$OUT/machine.txt"
jobs=$(( $(echo "$SEEDS" | tr ',' '\n' | wc -l) * 3 * 2 ))
timeout "$LIMIT_S" "$PYTHON" -m benchmarks.labeled_defects --data "$DATA" --data /tmp/kensa-demo \
    --k "$K" --seeds "$SEEDS" --variants image,boxes --preset "$PRESET" --max-minutes "$MINUTES" \
    --device "$DEVICE" --jobs "$jobs" --threads 1 --work-dir /tmp/kensa-labeled \
    --json "$OUT/labeled-defects.json" >"$OUT/labeled.log" 2>&1
echo "labeled-defects: exit $?" | tee -a "$OUT/machine.txt"
grep '^\[labeled\]' "$OUT/labeled.log"
