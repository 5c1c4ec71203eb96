#!/bin/sh
# Install the Python side of the models plugin's real-data tests (plugins/models/test/metadata.test.ts)
# into a virtual environment: PyTorch (CPU build), safetensors, gguf, numpy and transformers. The test
# builds a tiny transformer and a small GGUF with them and compares what Python reads with what the
# TypeScript readers read. Called by that test, not by CI config.
# Idempotent and quick when it is there (a stamp file marks a finished install; it records the
# requirement line, so a change of it reinstalls). Prints the path of the venv's python on its last
# line. AIPLAT_PY_ML_VENV names another venv folder.
# torch==2.13.0: on this project's machines the CPU wheel lies on disk (pip's find-links), so pip takes
# it locally; elsewhere pip fetches it from the registry (use the CPU index to avoid the CUDA build:
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL as usual).
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${AIPLAT_PY_ML_VENV:-$ROOT/node_modules/.cache/aiplat-py-ml}"
STAMP="$VENV/.aiplat-provisioned"
PY="$VENV/bin/python"
REQS="torch==2.13.0 safetensors gguf numpy transformers"

ready() {
  [ -f "$STAMP" ] && [ -x "$PY" ] && [ "$(cat "$STAMP")" = "$REQS" ]
}

if ready; then
  echo "$PY"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "provision-python-ml: $PYTHON is missing; install Python 3 (with its venv module) to run the model-metadata tests" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
install_ml() {
  # Another test process may have finished it while this one waited for the lock.
  if ready; then return 0; fi
  echo "provision-python-ml: installing $REQS into $VENV" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2 || {
    echo "provision-python-ml: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
    return 1
  }
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet --disable-pip-version-check $REQS >&2 || {
    echo "provision-python-ml: 'pip install $REQS' failed (see above); the model-metadata tests need it" >&2
    return 1
  }
  "$PY" -c 'import torch, safetensors, gguf, numpy, transformers' >&2 || {
    echo "provision-python-ml: the packages installed but do not import (see above)" >&2
    return 1
  }
  printf '%s' "$REQS" > "$STAMP"
}

if command -v flock >/dev/null 2>&1; then
  # One install at a time, however many test processes ask.
  exec 9>"$VENV.lock"
  flock 9
fi
install_ml
echo "$PY"
