#!/bin/sh
# Prepare the CPU serving runtime's virtual environment: torch==2.13.0 (the CPU build) plus the pinned
# runtime/requirements.txt (transformers with its `serving` extra: `transformers serve`).
# Idempotent and instant when done: a stamp file in the venv records the torch pin and the content of
# runtime/requirements.txt, so a change of either reinstalls. Two callers at once are safe (flock: the
# second waits, then finds the stamp). Prints the venv's python path on its last line.
# AIPLAT_SERVE_CPU_VENV names another venv folder (default node_modules/.cache/aiplat-serve-cpu-venv
# under the repository root); PYTHON another interpreter to build it from; TORCH_SPEC another torch
# requirement. The venv may be one other plugins use too (the repository's tests point it at the
# training worker's, which has the same torch and transformers): only what is missing is installed. On this project's machines the torch CPU wheel lies on disk (pip's find-links), so
# nothing is fetched from the network for it.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${AIPLAT_SERVE_CPU_VENV:-$ROOT/node_modules/.cache/aiplat-serve-cpu-venv}"
# Its own stamp name: the venv may be shared with other plugins' (each installs its own part).
STAMP="$VENV/.aiplat-serve-cpu"
PY="$VENV/bin/python"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
REQS_FILE="$HERE/runtime/requirements.txt"
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
  echo "serving-cpu: $PYTHON is missing; install Python 3 (with its venv module)" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
install() {
  # Another caller may have finished while this one waited for the lock.
  if ready; then return 0; fi
  echo "serving-cpu: installing $TORCH_SPEC and $REQS_FILE into $VENV" >&2
  if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV" >&2 || {
      echo "serving-cpu: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
      return 1
    }
  fi
  # torch first and on its own: the requirements must not pull another torch build.
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" >&2 || {
    echo "serving-cpu: 'pip install $TORCH_SPEC' failed (see above)" >&2
    return 1
  }
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" -r "$REQS_FILE" >&2 || {
    echo "serving-cpu: 'pip install -r $REQS_FILE' failed (see above)" >&2
    return 1
  }
  "$PY" -c 'import torch, transformers, fastapi, uvicorn; from transformers.cli.serve import Serve' >&2 || {
    echo "serving-cpu: the packages installed but do not import (see above)" >&2
    return 1
  }
  printf '%s' "$WANT" > "$STAMP"
}

if command -v flock >/dev/null 2>&1; then
  # One install at a time, however many callers ask.
  exec 9>"$VENV.serve-cpu.lock"
  flock 9
fi
install
echo "$PY"
