#!/bin/sh
# Install moto (https://github.com/getmoto/moto) in server mode into a virtual environment, for the
# S3 storage backend's tests (core/test/storage-s3.services.test.ts). moto is a STAND-IN for real
# S3: an S3-compatible server the tests start themselves. Called by that test, not by CI config.
# Idempotent and quick when it is there (a stamp file marks a finished install). Prints the path of
# the moto_server executable on its last line. AIPLAT_MOTO_VENV names another venv folder.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${AIPLAT_MOTO_VENV:-$ROOT/node_modules/.cache/aiplat-moto-venv}"
STAMP="$VENV/.aiplat-provisioned"
SERVER="$VENV/bin/moto_server"

if [ -f "$STAMP" ] && [ -x "$SERVER" ]; then
  echo "$SERVER"
  exit 0
fi

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "provision-moto: $PYTHON is missing; install Python 3 (with its venv module) to run the S3 tests" >&2
  exit 1
fi

mkdir -p "$(dirname "$VENV")"
install_moto() {
  # Another test process may have finished it while this one waited for the lock.
  if [ -f "$STAMP" ] && [ -x "$SERVER" ]; then return 0; fi
  echo "provision-moto: installing moto[server] into $VENV" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2 || {
    echo "provision-moto: '$PYTHON -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
    return 1
  }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]' >&2 || {
    echo "provision-moto: 'pip install moto[server]' failed (see above); the S3 tests need it" >&2
    return 1
  }
  [ -x "$SERVER" ] || {
    echo "provision-moto: moto was installed but $SERVER is missing" >&2
    return 1
  }
  touch "$STAMP"
}

if command -v flock >/dev/null 2>&1; then
  # One install at a time, however many test processes ask.
  exec 9>"$VENV.lock"
  flock 9
fi
install_moto
echo "$SERVER"
