#!/bin/sh
# Add DeepSpeed to the training worker's virtual environment (plugins/training/runtime/worker/setup.sh makes
# it first). DeepSpeed ships as a source package; it is built here without its compiled ops
# (DS_BUILD_OPS=0): the worker uses torch's AdamW and ZeRO's collectives, which need none, and on a
# CUDA node DeepSpeed compiles an op it needs on first use (just-in-time, with ninja).
# Idempotent and quick when done (a stamp records the requirement); two callers at once are safe
# (flock). Prints the venv's python on its last line. AIPLAT_TRAIN_VENV names another venv.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="$(sh "$ROOT/plugins/training/runtime/worker/setup.sh" | tail -n 1)"
VENV="$(cd "$(dirname "$PY")/.." && pwd)"
STAMP="$VENV/.aiplat-deepspeed"
WANT="$(grep -v "^#" "$HERE/requirements.txt" | xargs)"

ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]
}

install_deepspeed() {
  if ready; then return 0; fi
  echo "trainer-deepspeed: installing $WANT into $VENV" >&2
  # --no-build-isolation: DeepSpeed's build imports torch, which must be the venv's own.
  # shellcheck disable=SC2086
  DS_BUILD_OPS=0 "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation $WANT >&2 || {
    echo "trainer-deepspeed: 'pip install $WANT' failed (see above)" >&2
    return 1
  }
  "$PY" -c 'import deepspeed' >&2 || {
    echo "trainer-deepspeed: deepspeed installed but does not import (see above)" >&2
    return 1
  }
  printf '%s' "$WANT" > "$STAMP"
}

if ready; then
  echo "$PY"
  exit 0
fi
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV.deepspeed.lock"
  flock 9
fi
install_deepspeed
echo "$PY"
