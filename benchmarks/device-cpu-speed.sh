#!/usr/bin/env bash
# Issue 31 on the device machine's CPU (16 idle Intel cores): torch against the exported
# runtime with the single maps graph, the server pinned to two cores, the clients on others.
# Run from this branch's repository root with PYTHONPATH reaching onnxruntime etc. (the
# lead's site-packages); about 200 s, at most 240 (each step has its own timeout); all is
# written under $OUT/cpu-speed as it arises.
#   1. a default-architecture bundle: the demo washers, trained TRAIN_MIN minutes (the GPU
#      when there is one) on TRAIN_CPUS, then `kensa export` (defect, encode and maps graphs);
#   2. `kensa bench` torch,onnx at 256x256: the process and its HTTP clients on CLIENT_CPUS,
#      each runtime's server on SERVER_CPUS (--server-cpus), 1 and 8 clients; the in-process
#      rows (raw forward, pipeline) run on CLIENT_CPUS too;
#   3. beside it, on OPT_CPUS (idle after training): benchmarks.runtime_options, torch / the
#      maps graph ("onnx all") / the per-network graphs of older exports ("onnx per-network"),
#      then benchmarks.stage_profile (where inspect's time goes, per runtime, batch 1 and 8).
# Rehearsed on the loaded 2-core CPU (2026-12-04: the speed step finished in 327 s there,
# runtime_options and stage_profile hit their timeouts beside it) with TRAIN_MIN=0.1 SECS=0.5 TRAIN_CPUS=0,1
# SERVER_CPUS=0 CLIENT_CPUS=1 OPT_CPUS=1 SPEED_LIMIT_S=400.
set -u
OUT=${OUT:?set OUT}
PYTHON=${PYTHON:-python3}
TRAIN_MIN=${TRAIN_MIN:-0.5}
SECS=${SECS:-3}
TRAIN_CPUS=${TRAIN_CPUS:-4-15}
SERVER_CPUS=${SERVER_CPUS:-0,1}
CLIENT_CPUS=${CLIENT_CPUS:-2-7}
OPT_CPUS=${OPT_CPUS:-8,9}
D=$OUT/cpu-speed
W=${WORK:-/tmp/kensa-cpu-speed}
mkdir -p "$D" "$W"
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
{ date -u +%FT%TZ; nproc; lscpu | grep -i "model name"; git log -1 --oneline 2>/dev/null
  "$PYTHON" -c 'import torch, onnxruntime, sys; print("python", sys.version.split()[0],
"torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'; } >"$D/machine.txt" 2>&1

step() { echo "$1: $2 at $(date -u +%T)" >>"$D/machine.txt"; }
( "$PYTHON" -c "from models.synth_demo import make_demo_dataset as m
m('$W/demo', seed=0, n_train=80, n_test_good=12, n_per_defect=6)" \
  && timeout 110 taskset -c "$TRAIN_CPUS" "$PYTHON" -m service.cli train --data "$W/demo" \
      --out "$W/bundle" --max-minutes "$TRAIN_MIN" --quiet \
  && timeout 60 taskset -c "$TRAIN_CPUS" "$PYTHON" -m service.cli export --model "$W/bundle" \
      --format onnx ) >"$D/bundle.log" 2>&1
step bundle $?
[ -f "$W/bundle/onnx/maps.onnx" ] || { cat "$D/machine.txt"; tail -20 "$D/bundle.log"; exit 1; }

( timeout 90 taskset -c "$OPT_CPUS" "$PYTHON" -m benchmarks.runtime_options --model "$W/bundle" \
    --only "onnx all,onnx per-network" --seconds 2 --rounds 3 >"$D/runtime-options.log" 2>&1
  step runtime-options $?
  timeout 60 taskset -c "$OPT_CPUS" "$PYTHON" -m benchmarks.stage_profile --model "$W/bundle" --calls 10 \
    >"$D/stage-profile.log" 2>&1
  step stage-profile $? ) &
OPT=$!
timeout "${SPEED_LIMIT_S:-170}" taskset -c "$CLIENT_CPUS" "$PYTHON" -m benchmarks --skip-accuracy \
    --model "$W/bundle" --sizes 256 --seconds "$SECS" --device cpu --runtime torch,onnx \
    --concurrency 1,8 --http-batch 8 --server-cpus "$SERVER_CPUS" --work-dir "$W/bench" \
    --json "$D/speed.json" >"$D/speed.log" 2>&1
step speed $?
wait $OPT
cat "$D/machine.txt"; tail -30 "$D/speed.log"; tail -12 "$D/runtime-options.log"
cat "$D/stage-profile.log"
