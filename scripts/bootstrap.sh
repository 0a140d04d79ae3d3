#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages (headless Chromium for the page tests),
# the pinned npm tools (solc-js, anvil), and the Python virtual environments from the lock files.
# Each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
TOOLS_VENV=${TOOLS_VENV:-.venv-tools}
PYTHON=${PYTHON:-python3}
log() { printf '[bootstrap] %s\n' "$*" >&2; }

# 1. Debian packages: the browser for the web-page tests.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium and chromium-driver (Debian)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null
  else
    log "chromium/chromedriver missing and cannot apt-get here: browser tests will be skipped"
  fi
fi

# 2. npm tools, exactly as locked.
if ! cmp -s package-lock.json node_modules/.bootstrap-lock 2>/dev/null; then
  log "npm ci (solc-js, anvil)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.bootstrap-lock
fi

# 3. Python environment, from the lock (`make lock` writes it): every package at one version, its
#    files hash-checked; then this project, editable, built with the locked setuptools. The stamp
#    holds a digest of everything that decides the contents, the lock first.
want=$(cat requirements/dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
have=$(cat "$VENV/.bootstrap-stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
  log "installing requirements/dev.txt (hash-checked, torch's CUDA build included) into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r requirements/dev.txt
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    --no-build-isolation -e .
  echo "$want" > "$VENV/.bootstrap-stamp"
fi
# 4. Analysis tools (Slither) in their own environment: their pins conflict with the product's.
want=$(sha256sum requirements/tools.txt | cut -d' ' -f1)
have=$(cat "$TOOLS_VENV/.bootstrap-stamp" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  [ -x "$TOOLS_VENV/bin/python" ] || { log "creating $TOOLS_VENV"; "$PYTHON" -m venv "$TOOLS_VENV"; }
  log "installing requirements/tools.txt (hash-checked) into $TOOLS_VENV"
  "$TOOLS_VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r requirements/tools.txt
  echo "$want" > "$TOOLS_VENV/.bootstrap-stamp"
fi
log "ready"
