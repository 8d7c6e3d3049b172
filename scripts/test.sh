#!/usr/bin/env bash
# The README's test command: set up, lint, run the whole test suite, and (when nvcc is
# present) check that the CUDA kernels compile and link. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check mmgen tests setup.py
.venv/bin/ruff format --check mmgen tests setup.py
.venv/bin/python -m pytest -q "$@"
if [ -x "${CUDA_HOME:-/usr/local/cuda-13.0}/bin/nvcc" ] || command -v nvcc >/dev/null; then
    bash scripts/check_cuda_build.sh
fi
