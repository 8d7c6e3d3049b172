#!/usr/bin/env bash
# CUDA build check: compile and link mmgen._C with its CUDA kernels, import it, and check that
# every op with a kernel in csrc/cuda/ is registered for the CUDA dispatch key. Needs nvcc, not a
# GPU. Run by scripts/test.sh when nvcc is present; takes a few minutes (sm_80 + sm_90 on 2 cores).
#
#   bash scripts/check_cuda_build.sh
#
# The main .venv holds a CPU-only torch, which lacks torch's CUDA headers, so the build runs in a
# separate venv with torch==2.14.1 (a CUDA 13.0 build, ~5.5 GB from this machine's local package
# files, about 1.5 min to install; reused on later runs). It builds from a copy of the sources in
# a temporary directory, so the CPU build in ./mmgen/_C*.so is never touched.
#
# Environment:
#   MMGEN_CUDA_VENV  the venv (default ~/.cache/mmgen/cuda-venv; created when missing)
#   CUDA_HOME        the toolkit (default /usr/local/cuda-13.0; torch would guess /usr/local and
#                    fail to link -lcudart)
#   MMGEN_CUDA_ARCH, MAX_JOBS  as in setup.py
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
VENV=${MMGEN_CUDA_VENV:-$HOME/.cache/mmgen/cuda-venv}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda-13.0}
TORCH_CUDA=2.14.1

if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
    echo "check_cuda_build: no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME)" >&2
    exit 1
fi
has_torch() {
    "$VENV/bin/python" -c "import sys, torch
sys.exit(not (torch.__version__.startswith('$TORCH_CUDA') and torch.version.cuda))" 2>/dev/null
}
if ! has_torch; then
    echo "check_cuda_build: installing torch==$TORCH_CUDA (CUDA build) into $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "torch==$TORCH_CUDA" numpy ninja setuptools wheel
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mmgen-cuda-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cp -r setup.py csrc mmgen "$WORK"/
mkdir -p "$WORK/templates" "$WORK/specs"  # package dirs setup.py names (contents not needed)
rm -f "$WORK"/mmgen/_C*.so
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +

# MMGEN_CUDA=0 must turn CUDA off even here, where it could be built: setup.py decides while it
# defines the extension, which writes the build-info header (seconds, nothing compiled)
(cd "$WORK" && PATH="$VENV/bin:$PATH" MMGEN_CUDA=0 "$VENV/bin/python" setup.py --name >/dev/null 2>&1)
grep -q '"cuda": false' "$WORK/build/generated/mmgen/build_info.h" || {
    echo "check_cuda_build: MMGEN_CUDA=0 did not give a CPU-only build" >&2; exit 1; }

echo "check_cuda_build: building in $WORK with CUDA_HOME=$CUDA_HOME"
(cd "$WORK" && PATH="$VENV/bin:$PATH" MMGEN_CUDA=1 "$VENV/bin/python" setup.py build_ext --inplace \
    >build.log 2>&1) || { tail -n 60 "$WORK/build.log" >&2; echo "check_cuda_build: build FAILED" >&2; exit 1; }
# warnings in our own sources (torch's headers have their own)
grep -E "csrc/[^ ]*(:|\()[0-9]+.*(warning|remark)" "$WORK/build.log" >&2 || true

(cd "$WORK" && "$VENV/bin/python" - <<'EOF'
import json
import re
from pathlib import Path

import torch

from mmgen.ops.extension import OPS, load

load()
info = json.loads(torch.ops.mmgen._build_info())
assert info["cuda"], f"the extension was built without CUDA: {info}"
# ops with a CUDA kernel: every m.impl("name", ...) in csrc/cuda/
implemented = {
    name for path in Path("csrc/cuda").glob("*.cu")
    for name in re.findall(r'm\.impl\(\s*"(\w+)"', path.read_text())
}
unlisted = sorted(implemented - set(OPS))
assert not unlisted, f"CUDA kernels for ops missing from mmgen.ops.extension.OPS: {unlisted}"
expected = [op for op in OPS if op in implemented]
missing = [
    op for op in expected
    if not torch._C._dispatch_has_kernel_for_dispatch_key(f"mmgen::{op}", "CUDA")
]
assert not missing, f"CUDA kernels not registered: {missing}"
print(f"check_cuda_build: torch {torch.__version__}, CUDA {info['cuda_version']}, "
      f"arch {info['cuda_arch']}; CUDA kernels registered: {', '.join(expected) or 'none'}")
EOF
)
echo "check_cuda_build: OK in $((SECONDS - start)) s"
