#!/usr/bin/env bash
# The vllm GPU check (README.md beside it): serves the serving suites' tiny chat model with the vllm
# runtime's own launch spec on one NVIDIA GPU (tensor-parallel 1) and checks /health,
# /v1/chat/completions (plain and streamed), /v1/models and /metrics.
#
#   OUT=<dir> bash plugins/serving-vllm/gpu-check/run.sh
# Needs: python with a CUDA vllm wheel (PYTHON=...), and the launch spec written beforehand by
# spec.ts into .gpucheck/vllm/ (where node_modules exist). Exit 0: all passed, 1: a check failed, 2: could not run.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="${OUT:-$(mktemp -d /tmp/aiplat-vllm-gpu.XXXXXX)}"
PY="${PYTHON:-python3}"
SPEC="${SPEC:-$ROOT/.gpucheck/vllm/launch.json}"
mkdir -p "$OUT"
"$PY" -c 'import vllm, torch; assert torch.cuda.is_available()' > /dev/null 2>&1 || { echo "FAIL $PY has no vllm or no CUDA GPU" >&2; exit 2; }
[ -f "$SPEC" ] || { echo "FAIL no launch spec at $SPEC: run spec.ts where node_modules exist and carry .gpucheck/" >&2; exit 2; }
export PYTHONUNBUFFERED=1
exec "$PY" "$HERE/gpu_check.py" --spec "$SPEC" --root "$ROOT" --python "$PY" --out "$OUT" "$@"
