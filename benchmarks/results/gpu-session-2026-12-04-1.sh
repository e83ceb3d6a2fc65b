#!/usr/bin/env bash
# Kept as the record of a device call of 2026-12-04 (benchmarks/HISTORY.md). It ran from a
# repository root holding .gpu-stage/<branch> snapshots of the helper branches named in
# HISTORY, .whl/ (the service's wheels for python 3.12) and data/magnetic_tile.
# One device call for this session's GPU checks (issues 26, 32, 31, 29), results under $OUT as
# they arise. From the repository root on the device machine:
#   phase 1 (GPU, all 16 cores): issue 26's labeled-defects levers and issue 32's GANs, each
#     from its branch's snapshot in .gpu-stage/<name>, at once; plus a default-preset demo
#     bundle for the speed check.
#   phase 2 (CPU, pinned to two cores each, nothing else running): issue 31's torch/onnx
#     side-by-side bench on cores 0-1 and issue 29's page overhead on cores 2-3.
set -u
OUT=${OUT:-runs/gpu-session}
ROOT=$PWD
S=$ROOT/.gpu-stage
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ date -u +%FT%TZ; nvidia-smi -L; nproc; python3 -V; } >"$OUT/machine.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/kensa-site \
    .whl/*.whl >"$OUT/wheels.log" 2>&1; echo "wheels: $?" >>"$OUT/machine.txt"
python3 -c 'import torch, cv2, sklearn, safetensors, numpy; print("torch", torch.__version__, torch.cuda.get_device_name(0))' >>"$OUT/machine.txt" 2>&1
SITE=/tmp/kensa-site
DATA=$ROOT/data/magnetic_tile

# phase 1
( cd "$S/defects" && OUT=$OUT/defects DATA=$DATA LIMIT_S=${LAB_LIMIT_S:-265} \
    bash benchmarks/gpu-labeled.sh >"$OUT/defects.out" 2>&1 ) &
( cd "$S/gan" && OUT=$OUT/gan DATA=$DATA LIMIT_S=${GAN_LIMIT_S:-265} K=${GAN_K:-5} \
    bash benchmarks/gpu-gan.sh >"$OUT/gan.out" 2>&1 ) &
( cd "$S/onnx" && export PYTHONPATH=$SITE:$S/onnx OMP_NUM_THREADS=2 \
    && python3 -c "from models.synth_demo import make_demo_dataset as m; m('/tmp/speed-demo', seed=0)" \
    && timeout 200 python3 -m service.cli train --data /tmp/speed-demo --out /tmp/speed-bundle \
        --max-minutes 1 --device cuda --quiet \
    && timeout 120 python3 -m service.cli export --model /tmp/speed-bundle --format onnx
  echo "speed bundle: $?" ) >"$OUT/speed-bundle.log" 2>&1 &
wait
echo "phase 1 done $(date -u +%T)" >>"$OUT/machine.txt"

# phase 2
( cd "$S/onnx" && PYTHONPATH=$SITE:$S/onnx timeout ${SPEED_LIMIT_S:-200} taskset -c 0,1 \
    python3 -m benchmarks --skip-accuracy --model /tmp/speed-bundle --sizes 256,512 \
    --seconds 4 --device cpu --runtime torch,onnx --work-dir /tmp/speed-work \
    --json "$OUT/speed-2core.json" >"$OUT/speed-2core.log" 2>&1; echo "speed: $?" >>"$OUT/machine.txt" ) &
( cd "$ROOT" && PYTHONPATH=$SITE:$ROOT timeout ${PAGE_LIMIT_S:-200} taskset -c 2,3 \
    python3 -m benchmarks.page_overhead --model tests/fixtures/golden/bundle --size 256 \
    --seconds 10 --rounds 3 >"$OUT/page-2core.log" 2>&1; echo "page: $?" >>"$OUT/machine.txt" ) &
wait
echo "all done $(date -u +%T)" >>"$OUT/machine.txt"
cat "$OUT/machine.txt"
