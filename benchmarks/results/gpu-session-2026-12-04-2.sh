#!/usr/bin/env bash
# Kept as the record of a device call of 2026-12-04 (benchmarks/HISTORY.md). It ran from a
# repository root holding .gpu-stage/<branch> snapshots of the helper branches named in
# HISTORY, .whl/ (the service's wheels for python 3.12) and data/magnetic_tile.
# Second call: phase 2 of run.sh alone (its first try lacked the opentelemetry-api wheel that
# fastapi 0.165 imports): a default-preset demo bundle trained 1 minute on the GPU and
# exported, then on two pinned cores each, side by side, issue 31's torch/onnx bench and
# issue 29's page overhead.
set -u
OUT=${OUT:-runs/gpu-session2}
ROOT=$PWD
S=$ROOT/.gpu-stage
SITE=/tmp/kensa-site
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ date -u +%FT%TZ; nvidia-smi -L; nproc; lscpu | grep -i "model name"; } >"$OUT/machine.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE \
    .whl/*.whl >"$OUT/wheels.log" 2>&1; echo "wheels: $?" >>"$OUT/machine.txt"
( cd "$ROOT" && PYTHONPATH=$SITE:$ROOT timeout ${PAGE_LIMIT_S:-230} taskset -c 2,3 \
    python3 -m benchmarks.page_overhead --model tests/fixtures/golden/bundle --size 256 \
    --seconds 10 --rounds 3 >"$OUT/page-2core.log" 2>&1; echo "page: $?" >>"$OUT/machine.txt" ) &
( cd "$S/onnx" && export PYTHONPATH=$SITE:$S/onnx \
    && python3 -c "from models.synth_demo import make_demo_dataset as m; m('/tmp/speed-demo', seed=0)" \
    && timeout 150 taskset -c 4-15 python3 -m service.cli train --data /tmp/speed-demo \
        --out /tmp/speed-bundle --max-minutes 0.5 --device cuda --quiet \
    && timeout 100 taskset -c 4-15 python3 -m service.cli export --model /tmp/speed-bundle --format onnx
  echo "speed bundle: $?" ) >"$OUT/speed-bundle.log" 2>&1
( cd "$S/onnx" && PYTHONPATH=$SITE:$S/onnx timeout ${SPEED_LIMIT_S:-240} taskset -c 0,1 \
    python3 -m benchmarks --skip-accuracy --model /tmp/speed-bundle --sizes 256 \
    --seconds 4 --device cpu --runtime torch,onnx --work-dir /tmp/speed-work \
    --json "$OUT/speed-2core.json" >"$OUT/speed-2core.log" 2>&1; echo "speed: $?" >>"$OUT/machine.txt" )
wait
echo "all done $(date -u +%T)" >>"$OUT/machine.txt"
cat "$OUT/machine.txt"; tail -40 "$OUT/speed-2core.log"; tail -12 "$OUT/page-2core.log"
