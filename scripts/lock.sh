#!/usr/bin/env bash
# Regenerate the lock files (`make lock`): every package of the base install, of the extras and of
# the analysis tools pinned to one version, with the SHA-256 of every file the indexes offer for it.
#
#   requirements/dev.txt    everything `.[dev]` needs (base + serve + train + memory + tools); the
#                           bootstrap installs .venv from it, hash-checked
#   requirements/base.txt   the base install only, at the same versions as dev.txt (resolved with
#                           dev.txt as constraints); tests/test_base_install.py installs from it
#   requirements/tools.txt  Slither for .venv-tools, from requirements/tools.in
#
# Inputs: pyproject.toml (ranges), constraints.txt (deliberate pins: the torch build, the linters)
# and requirements/tools.in. Pins already in a lock file are kept; UPGRADE=1 moves every package to
# the newest release the inputs allow. Index locations come from pip's own configuration (on this
# project's machines a local index holds the CUDA torch build and its nvidia-* wheels) and stay out
# of the files, so that a lock names builds by hash, not machines by path. pip-tools runs from a
# throwaway environment, never from .venv. It takes a while: about 5 minutes when the pins stay,
# 20 when dev.txt is resolved from scratch (the torch and CUDA wheels are large).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PIP_TOOLS=pip-tools==7.6.2
log() { printf '[lock] %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "pip-tools into a throwaway environment"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$PIP_TOOLS"

upgrade=()
if [ "${UPGRADE:-0}" = 1 ]; then upgrade=(--upgrade); fi

compile() {
  local out=$1 sources=$2
  shift 2
  # --allow-unsafe: setuptools is locked too, for it builds this project (--all-build-deps).
  CUSTOM_COMPILE_COMMAND="make lock" "$work/venv/bin/pip-compile" --quiet --generate-hashes \
    --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
    "${upgrade[@]}" --output-file "$out" "$@"
  "$work/venv/bin/python" - "$out" "$sources" <<'PY'
"""Drop the project itself from the lock and say, on top, what the hashes cover."""
import re
import sys

path, sources = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
# `.[dev]` names its own extras (medical-model-registry[serve,train,memory]); pip-compile then
# lists the project as an unhashable `@ file:///<checkout>` line, which would make pip refuse the
# whole file in hash-checking mode. The project is installed from the checkout after the lock.
text = re.sub(
    r"# WARNING: pip install will require the following package to be hashed\.\n"
    r"# Consider using a hashable URL like .*\n"
    r"medical-model-registry @ \S+\n(    # via .*\n)*",
    "",
    text,
)
if "medical-model-registry @" in text:
    sys.exit(f"error: {path} still names the project as a requirement; update scripts/lock.sh")
header = f"""\
# LOCK FILE: do not edit. `make lock` (scripts/lock.sh) writes it from {sources};
# `UPGRADE=1 make lock` moves versions. Resolved for CPython 3.11 on Linux x86_64.
# Hash-checked: every package below, pinned to one version with the SHA-256 of each file the package
# indexes publish for it (torch's CUDA build and its nvidia-* wheels too, where listed: on this
# project's machines pip's own configuration adds the local index that serves them). Install with
#   pip install --require-hashes -r <this file>
# Not covered: pip itself (the venv's own), and this project, installed from the checkout afterwards
# with --no-deps --no-build-isolation (built by the setuptools locked here, where listed).
"""
open(path, "w", encoding="utf-8").write(header + text)
PY
}

log "requirements/dev.txt (.[dev]: base + serve + train + memory + test and lint tools)"
compile requirements/dev.txt "pyproject.toml ([dev]) and constraints.txt" \
  --extra dev --all-build-deps --constraint constraints.txt pyproject.toml
log "requirements/base.txt (the base install, at dev.txt's versions)"
compile requirements/base.txt "pyproject.toml, at the versions of dev.txt" \
  --all-build-deps --constraint requirements/dev.txt pyproject.toml
log "requirements/tools.txt (Slither for .venv-tools)"
compile requirements/tools.txt "requirements/tools.in" requirements/tools.in
log "done; commit the lock files with the change that moved them"
