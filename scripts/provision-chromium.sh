#!/bin/sh
# Install Debian's Chromium for the web shell's browser tests (web-shell/test, playwright-core with
# executablePath /usr/bin/chromium; never `npx playwright install`). Idempotent and quick when it is
# there. AIPLAT_CHROMIUM names another executable (then nothing is installed). Needs root (or sudo)
# and apt to install.
set -eu

CHROMIUM="${AIPLAT_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ -n "${AIPLAT_CHROMIUM:-}" ]; then
  echo "provision-chromium: AIPLAT_CHROMIUM=$AIPLAT_CHROMIUM is not an executable" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "provision-chromium: $CHROMIUM is missing and there is no apt-get here; install Chromium by hand, or set AIPLAT_CHROMIUM to a Chromium executable" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "provision-chromium: $CHROMIUM is missing; run as root (or with sudo available) to install it: apt-get install -y chromium" >&2
    exit 1
  fi
fi

echo "provision-chromium: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
APT="$SUDO apt-get -o DPkg::Lock::Timeout=600"
# Refresh the package lists only when the package is not known yet.
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $APT update -qq
fi
$APT install -y -qq chromium

"$CHROMIUM" --version >/dev/null 2>&1 || {
  echo "provision-chromium: chromium was installed but $CHROMIUM --version fails" >&2
  exit 1
}
echo "provision-chromium: installed $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
