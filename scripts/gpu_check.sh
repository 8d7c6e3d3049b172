#!/usr/bin/env bash
# The GPU check: on a machine with one NVIDIA GPU and the CUDA toolkit, from a clean checkout,
# install a CUDA build of torch (or use the one present), build mmgen._C with its CUDA kernels,
# then run every check and figure, each step under its own time limit, the whole inside ten
# minutes. Writes a markdown summary to $OUT when set, else build/gpu-check/summary.md, and
# exits non-zero at the first failed correctness check.
#
#   bash scripts/gpu_check.sh --dry-run          # every step and its time limit (no GPU needed)
#   bash scripts/gpu_check.sh                    # everything, into ./.venv-gpu
#   bash scripts/gpu_check.sh --keep-going       # run every step even after a failed check
#   bash scripts/gpu_check.sh --python /path/to/python   # an env with CUDA torch: no installs
#   bash scripts/gpu_check.sh --only cuda-tests --only no-sync   # some steps (names: --dry-run)
#
# The steps are listed in mmgen/gpucheck/plan.py; the runner (mmgen/gpucheck/runner.py) needs
# only the standard library, so it starts before torch is installed.
#
# Environment:
#   OUT              where the summary, the step logs and the demo project go
#   CUDA_HOME        the toolkit (default /usr/local/cuda; /usr/local/cuda-13.0 when only that)
#   MMGEN_CUDA_ARCH  compute capabilities to build (default: the GPU's own, from nvidia-smi)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${CUDA_HOME:-}" ] && [ ! -x /usr/local/cuda/bin/nvcc ] && [ -x /usr/local/cuda-13.0/bin/nvcc ]; then
    export CUDA_HOME=/usr/local/cuda-13.0
fi
exec "${PYTHON:-python3}" -m mmgen.gpucheck "$@"
