#!/usr/bin/env bash
# The GPU check (see README.md): on a machine with NVIDIA GPUs, Node and this work tree with
# scripts/gpu-check/dist/ built elsewhere (node scripts/gpu-check/build.mjs) and carried along.
#
#   (a) saves nvidia-smi's raw outputs (-q -x, --query-gpu CSV, -L, ...) into $OUT/fixtures/
#   (b) runs the SDK's parsers on them, prints the inventory, queries live and cross-checks
#   (c) runs one job through the core's local executor on one reserved card and checks that CUDA
#       inside sees exactly that card (and where nvidia-smi sees its process)
#
# Usage: OUT=<dir> bash scripts/gpu-check/run.sh     ($OUT defaults to a new temp folder)
# Dry run without a GPU: PATH="$PWD/core/simulated/nvidia-smi/bin:$PATH" \
#   AIPLAT_FAKE_NVIDIA_SMI_CAPTURE=datakit/gtx-8card.xml bash scripts/gpu-check/run.sh
# Exit code: 0 when nothing failed, 1 when a check failed, 2 when it could not run at all.
set -u

HERE="$(cd "$(dirname "$0")" && pwd)"
DIST="$HERE/dist"
OUT="${OUT:-$(mktemp -d /tmp/aiplat-gpu-check.XXXXXX)}"
FIXTURES="$OUT/fixtures"
mkdir -p "$FIXTURES"
: > "$FIXTURES/commands.tsv"

if [ ! -f "$DIST/check.mjs" ]; then
  echo "FAIL $DIST/check.mjs is missing: run 'node scripts/gpu-check/build.mjs' where node_modules exist and carry scripts/gpu-check/dist" >&2
  exit 2
fi
if ! command -v node > /dev/null; then
  echo "FAIL node is not on the PATH" >&2
  exit 2
fi
if ! command -v nvidia-smi > /dev/null; then
  echo "FAIL nvidia-smi is not on the PATH" >&2
  exit 2
fi

# A wedged driver makes nvidia-smi hang: give each run 60 s where coreutils' timeout exists.
LIMIT=""
command -v timeout > /dev/null && LIMIT="timeout 60"

# capture <file> <nvidia-smi arguments...>: stdout to $FIXTURES/<file>, stderr beside it when not empty.
capture() {
  local file="$1"
  shift
  echo "\$ nvidia-smi $*"
  $LIMIT nvidia-smi "$@" > "$FIXTURES/$file" 2> "$FIXTURES/$file.stderr"
  local rc=$?
  [ -s "$FIXTURES/$file.stderr" ] || rm -f "$FIXTURES/$file.stderr"
  printf '%s\t%s\t%s\n' "$file" "$rc" "nvidia-smi $*" >> "$FIXTURES/commands.tsv"
  echo "  -> $file ($(wc -c < "$FIXTURES/$file") bytes, exit $rc)"
}

echo "== (a) raw outputs into $FIXTURES"
CHECK_FIELDS=index,uuid,name,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw
FALLBACK_FIELDS="$(node "$DIST/check.mjs" fields | sed -n 1p)"
APP_FIELDS="$(node "$DIST/check.mjs" fields | sed -n 2p)"
capture nvidia-smi-q-x.xml -q -x
capture query-gpu.noheader-nounits.csv "--query-gpu=$CHECK_FIELDS" --format=csv,noheader,nounits
capture list-gpus.txt -L
# What queryNvidiaSmi's fallback asks, exactly, and the processes it reads.
capture query-gpu.fallback.csv "--query-gpu=$FALLBACK_FIELDS" --format=csv,nounits
capture query-compute-apps.csv "--query-compute-apps=$APP_FIELDS" --format=csv,nounits
capture help-query-gpu.txt --help-query-gpu
capture table.txt
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "uname: $(uname -srm)"
  echo "node: $(node --version)"
  echo "python3: $(python3 --version 2>&1 || echo none)"
  echo "nvidia-smi: $(command -v nvidia-smi)"
  echo "in a container: $([ -f /.dockerenv ] || grep -qE 'docker|kubepods|containerd' /proc/1/cgroup 2> /dev/null && echo probably || echo 'not that we can tell')"
  echo "dry run (fake nvidia-smi): ${AIPLAT_FAKE_NVIDIA_SMI_CAPTURE:-no}"
} > "$FIXTURES/environment.txt"
cat "$FIXTURES/environment.txt"

echo
echo "== (b) the SDK's parsers on them, and live"
node "$DIST/check.mjs" inventory --fixtures "$FIXTURES" --out "$OUT" 2>&1 | tee "$OUT/inventory.txt"
INVENTORY=${PIPESTATUS[0]}

echo
echo "== (c) one job through the local executor on one reserved card"
node "$DIST/check.mjs" job --out "$OUT" 2>&1 | tee "$OUT/job.txt"
JOB=${PIPESTATUS[0]}

echo
echo "== results in $OUT (fixtures/, inventory.json, job.json, *.txt)"
if [ "$INVENTORY" -ne 0 ] || [ "$JOB" -ne 0 ]; then
  echo "FAILED (inventory exit $INVENTORY, job exit $JOB): see the FAIL lines above"
  exit 1
fi
echo "OK"
