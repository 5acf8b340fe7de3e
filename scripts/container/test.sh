#!/usr/bin/env bash
# The container test: build the image from a copy of this checkout, then run both levels on the
# demo data inside it as users run it (offline, read-only, an arbitrary non-root UID, no home),
# and check the outputs as the end-to-end test does. Prints the figures docs/containers.md quotes and
# writes them to benchmarks/results/container_<date>.txt.
#
#   make container-test          (or: scripts/container/test.sh)
#
# Needs a Docker engine (scripts/container/dockerd.sh start where none runs) and the project's
# venv (make setup) for the demo data and the checks. The official base image is used when it can
# be pulled, else the local stand-in (scripts/container/local_base.sh, needs root and debootstrap).
# TRAIN_MINUTES (default 2) sets the group level's training time: this checks the container, not
# the model's quality. KEEP_IMAGE=1 keeps bibsnet-trainer:test afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
IMAGE=bibsnet-trainer:test
OFFICIAL_BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' "$ROOT/Dockerfile")
LOCAL_BASE=local/python:3.11-slim-bookworm
TRAIN_MINUTES=${TRAIN_MINUTES:-2}
NPROCS=${NPROCS:-2}
RUN_UID=${RUN_UID:-23456}
export DOCKER_BUILDKIT=0
say() { printf '[container-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
seconds() { local t0=$1; echo $(( $(date +%s) - t0 )); }

docker info >/dev/null 2>&1 || { echo "no Docker engine answers (start one: scripts/container/dockerd.sh start)" >&2; exit 69; }
[ -x "$PY" ] || { echo "$PY missing: run make setup first" >&2; exit 69; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bibsnet-container-test.XXXXXX")
cleanup() {
  docker rmi -f "$IMAGE-probe" >/dev/null 2>&1 || true
  [ "${KEEP_IMAGE:-0}" = 1 ] || docker rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# -- base image: the official one if it can be pulled, else the local stand-in
if timeout 120 docker pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then BASE=$OFFICIAL_BASE
else
  BASE=$LOCAL_BASE
  if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    say "$OFFICIAL_BASE cannot be pulled: building the local stand-in $BASE"
    "$ROOT/scripts/container/local_base.sh" "$BASE" >/dev/null
  fi
fi
say "base image: $BASE"

# -- the build context: what .dockerignore lets through, copied so the probe edit below never
#    touches the checkout
CONTEXT=$TMP/context
mkdir -p "$CONTEXT/requirements"
cp "$ROOT"/{Dockerfile,.dockerignore,pyproject.toml,README.md,run.py} "$CONTEXT/"
cp "$ROOT/requirements/runtime.lock" "$CONTEXT/requirements/"
cp -r "$ROOT/bibsnet_trainer" "$CONTEXT/"
find "$CONTEXT" -name __pycache__ -prune -exec rm -rf {} +

t0=$(date +%s)
docker build -q --no-cache --build-arg BASE_IMAGE="$BASE" -t "$IMAGE" "$CONTEXT" >/dev/null
BUILD_COLD=$(seconds "$t0"); say "cold build: ${BUILD_COLD} s"
echo "# container-test probe" >> "$CONTEXT/bibsnet_trainer/__init__.py"
t0=$(date +%s)
docker build -q --build-arg BASE_IMAGE="$BASE" -t "$IMAGE-probe" "$CONTEXT" >/dev/null
BUILD_CODE=$(seconds "$t0"); say "rebuild after a one-line code change: ${BUILD_CODE} s"
docker rmi -f "$IMAGE-probe" >/dev/null
SIZE_MB=$(( $(docker image inspect -f '{{.Size}}' "$IMAGE") / 1000000 ))
BASE_MB=$(( $(docker image inspect -f '{{.Size}}' "$BASE") / 1000000 ))
say "image: ${SIZE_MB} MB (base ${BASE_MB} MB)"

# -- run as users run it: no network, read-only root, any UID, no home; only /tmp, out and work writable
BIDS=$TMP/bids OUT=$TMP/out WORK=$TMP/work MODELS=$TMP/models OUT2=$TMP/out2
"$PY" "$ROOT/examples/build_demo_dataset.py" "$BIDS" >/dev/null
find "$BIDS" -type f -exec sha256sum {} + | sort > "$TMP/bids.before"
mkdir -p "$OUT" "$WORK" "$MODELS" "$OUT2"
chmod 0777 "$OUT" "$WORK" "$OUT2"
run() {
  docker run --rm --network none --read-only --tmpfs /tmp:rw,exec,size=4g -u "$RUN_UID:$RUN_UID" \
    --shm-size 2g -e HOME=/nonexistent -v "$BIDS:/data:ro" "$@"
}
VERSION=$(run "$IMAGE" --version)
say "--version: $VERSION"

t0=$(date +%s)
run -v "$OUT:/out" -v "$WORK:/work" "$IMAGE" /data /out group -w /work --preset cpu \
  --train-minutes "$TRAIN_MINUTES" --nprocs "$NPROCS" --synthetic-per-map 1 > "$TMP/group.log" 2>&1 \
  || { tail -30 "$TMP/group.log"; exit 1; }
GROUP_S=$(seconds "$t0"); say "group level: ${GROUP_S} s (training ${TRAIN_MINUTES} min)"
grep -m1 "device:" "$TMP/group.log" || true

t0=$(date +%s)
run -v "$OUT:/out" -v "$WORK:/work" "$IMAGE" /data /out participant -w /work --nprocs "$NPROCS" \
  > "$TMP/participant.log" 2>&1 || { tail -30 "$TMP/participant.log"; exit 1; }
PARTICIPANT_S=$(seconds "$t0"); say "participant level: ${PARTICIPANT_S} s"

# models mounted read-only from elsewhere (BIBSNET_MODELS_DIR), into a fresh output folder and no -w
cp -r "$OUT/models/." "$MODELS/"
t0=$(date +%s)
run -v "$OUT2:/out" -v "$MODELS:/models:ro" -e BIBSNET_MODELS_DIR=/models "$IMAGE" /data /out participant \
  --nprocs "$NPROCS" > "$TMP/participant2.log" 2>&1 || { tail -30 "$TMP/participant2.log"; exit 1; }
MOUNTED_S=$(seconds "$t0"); say "participant level, models mounted read-only: ${MOUNTED_S} s"

# -- checks: the package verifies inside the image, outputs lie on the input grid, the input is untouched
PACKAGE=$(cd "$OUT/models" && ls -d model_* | head -1)
run -v "$OUT:/out:ro" --entrypoint bibsnet-models "$IMAGE" verify "/out/models/$PACKAGE"
find "$BIDS" -type f -exec sha256sum {} + | sort > "$TMP/bids.after"
cmp -s "$TMP/bids.before" "$TMP/bids.after" || { echo "the input dataset changed" >&2; exit 1; }
"$PY" - "$BIDS" "$OUT" "$OUT2" <<'PY'
import sys
from pathlib import Path
import nibabel as nib
import numpy as np
bids, outs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
images = sorted(p for p in bids.glob("sub-*/anat/*_T1w.nii.gz"))
assert images, "no T1w in the demo dataset"
for out in outs:
    for image in images:
        sub = image.name.split("_")[0]
        found = {kind: sorted((out / sub / "anat").glob(f"{sub}*_{kind}.nii.gz")) for kind in ("dseg", "mask")}
        assert found["dseg"] and found["mask"], f"{out}/{sub}: no dseg or mask written"
        ref = nib.load(image)
        for path in found["dseg"] + found["mask"]:
            img = nib.load(path)
            assert img.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-4), f"{path}: not on the input grid"
            assert np.asarray(img.dataobj).any(), f"{path}: empty"
    for name in ("dataset_description.json", "index.html"):
        assert (out / name).is_file(), f"{out / name} missing"
    owners = {p.stat().st_uid for p in out.rglob("*")}
    print(f"{out.name}: outputs on the input grid for {len(images)} session(s); files owned by UID(s) {sorted(owners)}")
PY

RESULT=$ROOT/benchmarks/results/container_$(date +%Y%m%d).txt
{
  echo "container test, $(date -u +%Y-%m-%dT%H:%MZ), $(uname -m), $(nproc) cores, docker $(docker version -f '{{.Server.Version}}')"
  echo "base image: $BASE (${BASE_MB} MB)"
  echo "image: ${SIZE_MB} MB; app: $VERSION"
  echo "cold build (no cache, packages from PyPI): ${BUILD_COLD} s"
  echo "rebuild after a one-line code change: ${BUILD_CODE} s"
  echo "run flags: --network none --read-only --tmpfs /tmp -u $RUN_UID:$RUN_UID --shm-size 2g, no home"
  echo "group level on the demo data (cpu preset, ${TRAIN_MINUTES} min of training): ${GROUP_S} s"
  echo "participant level (1 session): ${PARTICIPANT_S} s; with models mounted read-only (BIBSNET_MODELS_DIR): ${MOUNTED_S} s"
  echo "checks: model package verifies in the image; dseg and mask on the input grid; input unchanged"
} | tee "$RESULT"
say "passed; figures in ${RESULT#$ROOT/}"
