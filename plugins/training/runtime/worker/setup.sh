#!/bin/sh
# Prepare the training worker's virtual environment (plugins/training/runtime/worker): torch==2.13.0 plus the
# pinned requirements.txt. `npm run setup:python` runs it; so do the worker's tests.
# Idempotent and instant when done: a stamp file in the venv records the torch pin and the content of
# requirements.txt, so a change of either reinstalls. Two callers at once are safe (flock: the second
# waits, then finds the stamp). Prints the venv's python path on its last line.
# AIPLAT_TRAIN_VENV names another venv folder (default node_modules/.cache/aiplat-train-venv under the
# repository root); PYTHON another interpreter to build it from; TORCH_SPEC another torch requirement
# (e.g. a CUDA build's index is chosen with PIP_INDEX_URL / PIP_EXTRA_INDEX_URL as usual).
# On this project's machines the torch CPU wheel lies on disk (pip's find-links), so nothing is fetched
# from the network for it.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
VENV="${AIPLAT_TRAIN_VENV:-$ROOT/node_modules/.cache/aiplat-train-venv}"
STAMP="$VENV/.aiplat-provisioned"
PY="$VENV/bin/python"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
REQS_FILE="$HERE/requirements.txt"
WANT="$TORCH_SPEC
$(cat "$REQS_FILE")"

ready() {
  [ -f "$STAMP" ] && [ -x "$PY" ] && [ "$(cat "$STAMP")" = "$WANT" ]
}

if ready; then
  echo "$PY"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "setup-python: $PYTHON is missing; install Python 3 (with its venv module)" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
install() {
  # Another caller may have finished while this one waited for the lock.
  if ready; then return 0; fi
  echo "setup-python: installing $TORCH_SPEC and $REQS_FILE into $VENV" >&2
  if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV" >&2 || {
      echo "setup-python: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
      return 1
    }
  fi
  # torch first and on its own: the requirements must not pull another torch build.
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" >&2 || {
    echo "setup-python: 'pip install $TORCH_SPEC' failed (see above)" >&2
    return 1
  }
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" -r "$REQS_FILE" >&2 || {
    echo "setup-python: 'pip install -r $REQS_FILE' failed (see above)" >&2
    return 1
  }
  "$PY" -c 'import torch, transformers, accelerate, peft, safetensors' >&2 || {
    echo "setup-python: the packages installed but do not import (see above)" >&2
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
