#!/bin/sh
# A Docker engine for the docker executor's tests and bench (plugins/executor-docker): installs
# Debian's docker.io and busybox-static when missing, starts dockerd when `docker version` gets no
# answer (nohup, pid file in /tmp), and imports the image `local/busybox:1` from busybox-static when
# the engine lacks it (no registry is reachable here, so images are made locally). Idempotent, and
# quick when all is there. Needs root (or sudo) to install and start anything.
#
# AIPLAT_DOCKER_HOST_SOCKET: the engine's socket (default /var/run/docker.sock).
set -eu

SOCKET="${AIPLAT_DOCKER_HOST_SOCKET:-/var/run/docker.sock}"
IMAGE="local/busybox:1"
LOG=/tmp/aiplat-dockerd.log
PIDFILE=/tmp/aiplat-dockerd.pid
export DOCKER_HOST="unix://$SOCKET"

say() { echo "provision-docker: $*"; }
fail() { echo "provision-docker: $*" >&2; exit 1; }

engine_answers() { docker version >/dev/null 2>&1; }
image_present() { docker image inspect "$IMAGE" >/dev/null 2>&1; }

# Quick path: the engine answers and has the image.
if command -v docker >/dev/null 2>&1 && engine_answers && image_present; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    fail "the Docker engine at $SOCKET does not answer (or lacks $IMAGE); run this as root (or with sudo) to set it up"
  fi
fi

# 1. Packages: the engine (dockerd, containerd, runc) and a static busybox for the image.
missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v docker >/dev/null 2>&1 || missing="$missing docker.io"
[ -x /bin/busybox ] || missing="$missing busybox-static"
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 || fail "missing:$missing, and there is no apt-get here: install Docker Engine by hand (https://docs.docker.com/engine/install/)"
  export DEBIAN_FRONTEND=noninteractive
  APT="$SUDO apt-get -o DPkg::Lock::Timeout=600"
  # Refresh the package lists only when a package is not known yet.
  if ! apt-cache policy docker.io 2>/dev/null | grep -q 'Candidate: [0-9]' || ! apt-cache policy busybox-static 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $APT update -qq
  fi
  # shellcheck disable=SC2086
  set -- $(echo "$missing" | tr ' ' '\n' | sort -u)
  say "installing $*"
  $APT install -y -qq "$@" >/dev/null
fi

# 2. The engine: start dockerd by hand (no systemd here) when it does not answer.
if ! engine_answers; then
  if [ -f "$PIDFILE" ] && [ "$(cat "/proc/$(cat "$PIDFILE")/comm" 2>/dev/null)" = dockerd ]; then
    say "dockerd (pid $(cat "$PIDFILE")) runs but does not answer yet; waiting"
  else
    say "starting dockerd (log: $LOG)"
    # setsid + nohup: the engine outlives this script and the test run that started it.
    $SUDO sh -c "nohup setsid dockerd -H unix://$SOCKET >>$LOG 2>&1 & echo \$! >$PIDFILE"
  fi
  i=0
  until engine_answers; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then
      tail -n 20 "$LOG" >&2 || true
      fail "dockerd did not answer on $SOCKET within 60 s (log above, $LOG)"
    fi
    sleep 0.2
  done
  say "dockerd answers on $SOCKET"
fi

# 3. The image, made from busybox-static (no registry to pull from).
if ! image_present; then
  [ -x /bin/busybox ] || fail "/bin/busybox is missing: apt-get install busybox-static"
  R=$(mktemp -d)
  trap 'rm -rf "$R"' EXIT
  mkdir -p "$R/bin" "$R/tmp" "$R/etc" "$R/www"
  chmod 1777 "$R/tmp"
  cp /bin/busybox "$R/bin/"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$R/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
  tar -C "$R" -c . | docker import -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
  say "imported $IMAGE from busybox-static"
fi
