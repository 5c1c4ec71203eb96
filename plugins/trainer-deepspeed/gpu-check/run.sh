#!/usr/bin/env bash
# The training GPU check (README.md beside it): real runs of the training worker on an NVIDIA GPU,
# every strategy, DeepSpeed ZeRO-2/3 (with CPU offload) included, SIGTERM and resume. For a machine
# with a GPU and PyTorch but no internet: DeepSpeed and the packages it needs that the machine
# lacks travel as wheels in .whl/ (see README.md), the DeepSpeed configs in .gpucheck/configs/.
#
#   OUT=<dir> bash plugins/trainer-deepspeed/gpu-check/run.sh
# Exit code: 0 when nothing failed, 1 when a check failed, 2 when it could not run.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="${OUT:-$(mktemp -d /tmp/aiplat-train-gpu.XXXXXX)}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
if ! "$PY" -c 'import deepspeed' > /dev/null 2>&1 && ls "$ROOT"/.whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/aiplat-site "$ROOT"/.whl/*.whl || exit 2
  export PYTHONPATH="/tmp/aiplat-site${PYTHONPATH:+:$PYTHONPATH}"
fi
CONFIGS="${CONFIGS:-$ROOT/.gpucheck/configs}"
[ -f "$CONFIGS/zero2.json" ] || { echo "FAIL no DeepSpeed configs in $CONFIGS: run configs.ts where node_modules exist and carry them" >&2; exit 2; }
export PYTHONUNBUFFERED=1
exec "$PY" "$HERE/gpu_check.py" --worker "$ROOT/plugins/training/runtime/worker" --configs "$CONFIGS" --out "$OUT" "$@"
