#!/usr/bin/env bash
# Issue 32's two GANs (python -m benchmarks.gan) on a borrowed GPU, in one call: magnetic
# tiles (DATA) and the demo washers made there, SEEDS x {base, adversarial, learned at each K},
# every training at once on the one GPU (one CPU thread each), each at the same budget of
# MINUTES. Results under OUT as they come: the JSON is rewritten as each run ends, so a run cut
# short still returns what finished. 3 seeds x 2 sets x 5 variants = 30 trainings; then the
# pictures of docs/gans.md from the demo's first seed into $OUT/docs. About 230 s in all at
# MINUTES=2.5 (the driver is cut at LIMIT_S, the pictures at PICTURES_S).
#
#   bash benchmarks/gpu-gan.sh                                        # there, from the code root
#   DEVICE=cpu PRESET=tiny MINUTES=0.1 DEMO_ARGS=small DEMO=/tmp/gan-demo SEEDS=0 K=2,5 \
#       DATA=../shared/data/magnetic_tile PYTHON=.venv/bin/python bash benchmarks/gpu-gan.sh  # rehearsal
set -u
OUT=${OUT:-runs/gpu-gan}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-default}
MINUTES=${MINUTES:-2.5}
SEEDS=${SEEDS:-0,1,2}
K=${K:-2,5,10}
VARIANTS=${VARIANTS:-base,adversarial,learned}
DATA=${DATA:-data/magnetic_tile}
DEMO=${DEMO:-/tmp/kensa-demo}
LIMIT_S=${LIMIT_S:-240}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
. "$(dirname "${BASH_SOURCE[0]}")/gpu-machine.sh"
if [ "${DEMO_ARGS:-}" = small ]; then
    demo="n_train=24, n_test_good=3, n_per_defect=12, size=64"
else
    demo=""
fi
"$PYTHON" -c "from models.synth_demo import make_demo_dataset as m; m('$DEMO', seed=0, $demo)" \
    >>"$OUT/machine.txt" 2>&1 || echo "demo data failed" | tee -a "$OUT/machine.txt"
n_seeds=$(echo "$SEEDS" | tr ',' '\n' | wc -l)
n_k=$(echo "$K" | tr ',' '\n' | wc -l)
per=$(echo "$VARIANTS" | tr ',' '\n' | grep -vc '^learned$')
case ",$VARIANTS," in *,learned,*) per=$((per + n_k));; esac
jobs=$(( n_seeds * per * 2 ))
timeout "$LIMIT_S" "$PYTHON" -m benchmarks.gan --data "$DATA" --data "$DEMO" \
    --variants "$VARIANTS" --k "$K" --seeds "$SEEDS" --preset "$PRESET" \
    --max-minutes "$MINUTES" --device "$DEVICE" --jobs "$jobs" --threads 1 \
    --work-dir /tmp/kensa-gan --json "$OUT/gan.json" >"$OUT/gan.log" 2>&1
echo "gan: exit $?" | tee -a "$OUT/machine.txt"
grep '^\[gan\]' "$OUT/gan.log"
# the pictures of docs/gans.md, from the demo's seed-0 bundles (a scratch image none of them
# trained on)
runs=/tmp/kensa-gan/$(basename "$DEMO")/seed$(echo "$SEEDS" | cut -d, -f1)
image=$(ls "$runs/data/test/scratch/" 2>/dev/null | head -1)
learned=learned-k$(echo "$K" | tr ',' '\n' | sort -n | tail -1)
mkdir -p "$OUT/docs"
timeout "${PICTURES_S:-20}" "$PYTHON" -m benchmarks.gan_pictures --runs "$runs" \
    --image "$runs/data/test/scratch/$image" --data "$DEMO" --type scratch --learned "$learned" \
    --out "$OUT/docs" >>"$OUT/gan.log" 2>&1
echo "pictures: exit $?" | tee -a "$OUT/machine.txt"
