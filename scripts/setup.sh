#!/usr/bin/env bash
# Creates .venv (Python 3.11), installs the pinned CPU environment and builds mmgen._C.
# Safe to run again: satisfied installs are skipped; the extension is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and alone: the CPU build from local disk, so no later install pulls a CUDA one
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -r requirements.txt
# --no-build-isolation: compile against the torch above instead of downloading another
"${PIP[@]}" --no-build-isolation --no-deps -e .
