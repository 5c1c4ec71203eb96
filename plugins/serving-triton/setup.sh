#!/bin/sh
# Prepare the Triton runtime's virtual environment: torch==2.13.0, nvidia-pytriton (which carries a
# real tritonserver binary, the python backend and its stub) and transformers, pinned in
# runtime/requirements.txt. The tests run it; so may an operator before the first deployment.
# Idempotent and instant when done: a stamp file in the venv records the torch pin and the content of
# requirements.txt, so a change of either reinstalls. Two callers at once are safe (flock: the second
# waits, then finds the stamp). Prints the venv's python path on its last line.
# AIPLAT_SERVE_TRITON_VENV names another venv folder (default
# node_modules/.cache/aiplat-serve-triton-venv under the repository root); PYTHON another interpreter
# to build it from (3.8-3.12; pytriton's wheel is manylinux_2_35: glibc 2.35 or newer); TORCH_SPEC
# another torch requirement.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${AIPLAT_SERVE_TRITON_VENV:-$ROOT/node_modules/.cache/aiplat-serve-triton-venv}"
STAMP="$VENV/.aiplat-provisioned"
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
  echo "serving-triton: $PYTHON is missing; install Python 3 (with its venv module)" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
install() {
  # Another caller may have finished while this one waited for the lock.
  if ready; then return 0; fi
  echo "serving-triton: installing $TORCH_SPEC and $REQS_FILE into $VENV" >&2
  if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV" >&2 || {
      echo "serving-triton: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
      return 1
    }
  fi
  # torch first and on its own: the requirements must not pull another torch build.
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" >&2 || {
    echo "serving-triton: 'pip install $TORCH_SPEC' failed (see above)" >&2
    return 1
  }
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC" -r "$REQS_FILE" >&2 || {
    echo "serving-triton: 'pip install -r $REQS_FILE' failed (see above)" >&2
    return 1
  }
  "$PY" -c 'import numpy, torch, transformers, pytriton' >&2 || {
    echo "serving-triton: the packages installed but do not import (see above)" >&2
    return 1
  }
  TS="$("$PY" -c 'import os, pytriton; print(os.path.join(os.path.dirname(pytriton.__file__), "tritonserver", "bin", "tritonserver"))')"
  [ -x "$TS" ] || {
    echo "serving-triton: nvidia-pytriton installed but $TS is missing" >&2
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
