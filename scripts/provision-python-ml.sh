#!/bin/sh
# The Python side of the models plugin's real-data tests (plugins/models/test/metadata.test.ts): the
# training worker's environment (plugins/training/runtime/worker/setup.sh: PyTorch CPU build, transformers,
# safetensors, ...) plus gguf and numpy. One venv for both, so a fresh machine installs PyTorch once.
# The test builds a tiny transformer and a small GGUF with it and compares what Python reads with
# what the TypeScript readers read. Called by that test, not by CI config.
# Idempotent and quick when it is there (a stamp file records the extra requirement line). Prints the
# path of the venv's python on its last line. AIPLAT_TRAIN_VENV names another venv folder.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$(sh "$ROOT/plugins/training/runtime/worker/setup.sh" | tail -n 1)"
VENV="$(cd "$(dirname "$PY")/.." && pwd)"
STAMP="$VENV/.aiplat-ml-extras"
EXTRAS="gguf numpy"

ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$EXTRAS" ]
}

install_extras() {
  # Another test process may have finished it while this one waited for the lock.
  if ready; then return 0; fi
  echo "provision-python-ml: installing $EXTRAS into $VENV" >&2
  # shellcheck disable=SC2086
  "$PY" -m pip install --quiet --disable-pip-version-check $EXTRAS >&2 || {
    echo "provision-python-ml: 'pip install $EXTRAS' failed (see above); the model-metadata tests need it" >&2
    return 1
  }
  "$PY" -c 'import torch, safetensors, gguf, numpy, transformers' >&2 || {
    echo "provision-python-ml: the packages installed but do not import (see above)" >&2
    return 1
  }
  printf '%s' "$EXTRAS" > "$STAMP"
}

if ! ready; then
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV.extras.lock"
    flock 9
  fi
  install_extras
fi
echo "$PY"
