#!/bin/sh
# Install a Compose implementation that can validate docker-compose.yml (`config -q` needs no
# Docker daemon). Idempotent: does nothing when `docker compose` (v2 plugin) or `docker-compose`
# already works. Uses Debian's `docker-compose` package (Compose 1.29, which reads the Compose
# Specification that docker-compose.yml is written in). Needs root (or sudo) and apt.
set -eu

if docker compose version >/dev/null 2>&1; then
  echo "provision-compose: 'docker compose' is already available: $(docker compose version 2>/dev/null | head -n 1)"
  exit 0
fi
if docker-compose version >/dev/null 2>&1; then
  echo "provision-compose: 'docker-compose' is already available: $(docker-compose version 2>/dev/null | head -n 1)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "provision-compose: no apt-get here; install Docker Compose by hand (https://docs.docker.com/compose/install/)" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "provision-compose: must run as root (or with sudo available) to install docker-compose" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT="$SUDO apt-get -o DPkg::Lock::Timeout=600"
# Refresh the package lists only when the package is not known yet.
if ! apt-cache policy docker-compose 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $APT update -qq
fi
# --no-install-recommends: validating the file needs no Docker engine, so skip docker.io.
$APT install -y -qq --no-install-recommends docker-compose

docker-compose version >/dev/null 2>&1 || {
  echo "provision-compose: docker-compose was installed but does not run" >&2
  exit 1
}
echo "provision-compose: installed $(docker-compose version 2>/dev/null | head -n 1)"
