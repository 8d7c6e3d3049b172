#!/usr/bin/env bash
# The README's main command: set up, check the extension, and run the merge benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/mmgen doctor
.venv/bin/mmgen bench merge --small
