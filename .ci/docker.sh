#!/usr/bin/env bash
# A Docker engine for the docker-backend tests (tests marked `docker`); run by
# `.ci/setup.sh --tests` as `bash .ci/docker.sh PYTHON`.
#
# - installs Debian's docker.io when dockerd is missing;
# - starts `dockerd --iptables=false --ip6tables=false --bridge=none` in the background
#   when no engine answers (log and pidfile in $AGENTRL_DOCKERD_DIR, default
#   /tmp/agentrl-dockerd) and waits until it answers (at most 30 s);
# - builds the sandbox image from the host's python3 (`docker import`, a few seconds; no
#   registry is needed or reachable): `python -m agentrl.sandbox.docker_image`.
#
# It never fails the setup: when the engine cannot run here (no root, no privileges for
# containers), it says why and the docker tests then skip with that reason.
#
# Stopping: the README's test command is `bash .ci/setup.sh --tests && .venv/bin/python -m
# pytest`, two processes, so setup cannot stop the engine itself. It leaves the marker
# $AGENTRL_DOCKERD_DIR/started-by-setup, and the whole-suite pytest session that follows
# (pytest without path arguments) stops that dockerd when it finishes (pytest_sessionfinish
# in the root conftest.py). Partial runs (`pytest tests/sandbox`) leave it running; an
# engine this script did not start is never stopped.
set -uo pipefail
PY=${1:?usage: docker.sh PYTHON}
STATE=${AGENTRL_DOCKERD_DIR:-/tmp/agentrl-dockerd}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
answers() { command -v docker >/dev/null 2>&1 && timeout 5 docker version >/dev/null 2>&1; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing docker.io (Debian package) for the docker-backend tests"
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq docker.io >/dev/null; }; then
        say "could not install docker.io: the docker-backend tests will skip"
        exit 0
    fi
fi

if answers; then
    say "Docker engine: already running"
else
    if [ "$(id -u)" -ne 0 ]; then
        say "dockerd needs root (this is uid $(id -u)): the docker-backend tests will skip"
        exit 0
    fi
    mkdir -p "$STATE"
    rm -f "$STATE/dockerd.pid" "$STATE/started-by-setup"
    say "starting dockerd (log: $STATE/dockerd.log)"
    setsid dockerd --iptables=false --ip6tables=false --bridge=none \
        --pidfile "$STATE/dockerd.pid" </dev/null >"$STATE/dockerd.log" 2>&1 &
    DOCKERD=$!
    echo "$DOCKERD" >"$STATE/started-by-setup"
    for _ in $(seq 60); do
        answers && break
        kill -0 "$DOCKERD" 2>/dev/null || break
        sleep 0.5
    done
    if ! answers; then
        say "dockerd did not start; the docker-backend tests will skip. Last lines of its log:"
        tail -n 5 "$STATE/dockerd.log" | sed 's/^/    /'
        kill "$DOCKERD" 2>/dev/null
        rm -f "$STATE/started-by-setup"
        exit 0
    fi
    say "Docker engine: started (pid $DOCKERD; stopped at the end of the next whole-suite test run)"
fi

if ! "$PY" -m agentrl.sandbox.docker_image; then
    say "could not build the docker sandbox image: the docker-backend tests will skip"
fi
exit 0
