#!/usr/bin/env bash
# Prepared for a device call on 2026-12-04 (third session) and NOT run: no device was lent when
# it was tried; kept for a session that is. Run it from main's repository root holding .whl/ (`make gpu-kit`: the service's wheels for
# python 3.12), .gpu-data/magnetic_tile and .gpu-stage/before (`git archive 9618562`, main
# before this session's page changes); run with carry [".whl", ".gpu-data", ".gpu-stage"].
# Everything at once, each on its own cores:
#   cores 0-3   issue 29: page_overhead, server on 0,1, load generator and ten pages on 2,3,
#               this tree against .gpu-stage/before (--compare-root), rounds alternated;
#   cores 4-9   issue 31: benchmarks/device-cpu-speed.sh (bundle trained on the GPU with
#               cores 6,7, exported; kensa bench torch,onnx, servers on 4,5, clients on 6,7;
#               runtime_options and stage_profile on 8,9);
#   cores 10-15 + the GPU  issue 26: the labeled-defects protocol with the image-score
#               pooling paired on the same weights (gpu-labeled.sh, k 5, 3 seeds, both sets).
set -u
OUT=${OUT:-runs/gpu-session3}
ROOT=$PWD
SITE=/tmp/kensa-site
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ date -u +%FT%TZ; nvidia-smi -L; nproc; lscpu | grep -i "model name\|thread(s) per core";
  lscpu -e=CPU,CORE | tr '\n' ' '; echo; python3 -V; } >"$OUT/machine.txt" 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $SITE \
    .whl/*.whl >"$OUT/wheels.log" 2>&1; echo "wheels: $?" >>"$OUT/machine.txt"
export PYTHONPATH=$SITE:$ROOT
python3 -c 'import torch, cv2, sklearn, safetensors, onnxruntime, httptools, uvloop, fastapi, sqlalchemy
print("torch", torch.__version__, torch.cuda.get_device_name(0), "ort", onnxruntime.__version__)' \
    >>"$OUT/machine.txt" 2>&1

( OUT=$OUT/pooling DATA=$ROOT/.gpu-data/magnetic_tile DEMO=1 VARIANTS=latent@5 MINUTES=2.5 \
    LIMIT_S=${POOL_LIMIT_S:-300} taskset -c 10-15 bash benchmarks/gpu-labeled.sh \
    >"$OUT/pooling.out" 2>&1; echo "pooling: $? $(date -u +%T)" >>"$OUT/machine.txt" ) &
( OUT=$OUT TRAIN_CPUS=6,7 SERVER_CPUS=4,5 CLIENT_CPUS=6,7 OPT_CPUS=8,9 SPEED_LIMIT_S=200 \
    bash benchmarks/device-cpu-speed.sh >"$OUT/cpu-speed.out" 2>&1
  echo "cpu-speed: $? $(date -u +%T)" >>"$OUT/machine.txt" ) &
( timeout ${PAGE_LIMIT_S:-300} python3 -m benchmarks.page_overhead \
    --model tests/fixtures/golden/bundle --size 256 --seconds 8 --rounds 3 \
    --server-cpus 0,1 --client-cpus 2,3 --compare-root "$ROOT/.gpu-stage/before" \
    >"$OUT/page-pinned.log" 2>&1; echo "page: $? $(date -u +%T)" >>"$OUT/machine.txt" ) &
wait
echo "all done $(date -u +%T)" >>"$OUT/machine.txt"
tar -czf "$OUT/all.tgz" -C "$OUT" --exclude all.tgz . 2>/dev/null
cat "$OUT/machine.txt"; tail -25 "$OUT/page-pinned.log"; tail -30 "$OUT/cpu-speed/speed.log"
tail -12 "$OUT/cpu-speed/runtime-options.log"; tail -5 "$OUT/pooling.out"
