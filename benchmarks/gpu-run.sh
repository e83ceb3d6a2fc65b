#!/usr/bin/env bash
# The GPU half of the benchmarks in one command, for a borrowed GPU machine that has python3
# with CUDA torch but no package registry (see benchmarks/README.md, "GPU runs").
#
#   make gpu-kit                  # here: wheels into .whl/, magnetic tiles into .gpu-data/
#   bash benchmarks/gpu-run.sh    # there, from the repository root; results under $OUT
#
# Steps write their results as soon as each exists, each under its own timeout, so a run cut
# short still returns what it finished. Settings by environment: OUT (results folder),
# DEVICE (cuda; cpu to rehearse the script on a machine without a GPU), SECONDS_PER (seconds
# per speed measurement, 5), SPEED_LIMIT_S / ACC_LIMIT_S (timeouts of the two steps),
# ACC_MINUTES (training budget of each accuracy run, 2), PRESETS (default large),
# PYTHON (python3). With the defaults it ends within about 9 minutes, inside one 10-minute
# device call. The wheels are installed only when the service's packages are missing.
set -u
OUT=${OUT:-runs/gpu-out}
DEVICE=${DEVICE:-cuda}
SECONDS_PER=${SECONDS_PER:-5}
SPEED_LIMIT_S=${SPEED_LIMIT_S:-240}
ACC_LIMIT_S=${ACC_LIMIT_S:-200}
ACC_MINUTES=${ACC_MINUTES:-2}
DATA=${DATA:-.gpu-data/magnetic_tile}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

export PYTHONPATH=$PWD
if ! "$PYTHON" -c 'import fastapi, uvicorn, pydantic_settings, multipart' 2>/dev/null; then
    compgen -G ".whl/*.whl" >/dev/null || { echo "no wheels in .whl/: run make gpu-kit" >&2; exit 1; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/kensa-site .whl/*.whl || { echo "wheel install failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/kensa-site:$PWD
fi

. "$(dirname "${BASH_SOURCE[0]}")/gpu-machine.sh"

# 1. speed: raw forward, in-process pipeline, HTTP against a real kensa serve, 256 and 512
timeout "$SPEED_LIMIT_S" "$PYTHON" -m benchmarks --skip-accuracy --device "$DEVICE" \
    --sizes 256,512 --seconds "$SECONDS_PER" --work-dir /tmp/kensa-bench \
    --json "$OUT/speed-$DEVICE.json" >"$OUT/speed.log" 2>&1
echo "speed step: exit $?" | tee -a "$OUT/machine.txt"

# 2. accuracy: Kensa trained on the GPU for ACC_MINUTES on the magnetic tiles with each preset
# in PRESETS (default: the CPU default, then the larger one meant for GPUs), then evaluated
for preset in ${PRESETS:-default large}; do
    if [ ! -d "$DATA/train" ]; then
        echo "accuracy step: skipped, no $DATA/train (run make gpu-kit here first)" |
            tee -a "$OUT/machine.txt"
        break
    fi
    timeout "$ACC_LIMIT_S" "$PYTHON" -m service.cli train --data "$DATA" --preset "$preset" \
        --out "/tmp/kensa-acc-$preset" --device "$DEVICE" --max-minutes "$ACC_MINUTES" \
        --quiet >"$OUT/accuracy-$preset.log" 2>&1 &&
    timeout 120 "$PYTHON" -m service.cli eval --model "/tmp/kensa-acc-$preset" --data "$DATA" \
        --device "$DEVICE" --json "$OUT/accuracy-$preset-$DEVICE.json" \
        >>"$OUT/accuracy-$preset.log" 2>&1
    echo "accuracy step ($preset): exit $?" | tee -a "$OUT/machine.txt"
done
tail -n 60 "$OUT/speed.log"
tail -n 25 "$OUT"/accuracy-*.log 2>/dev/null
