"""setup.py's MMGEN_CUDA switch, seen from the main (CPU-only torch) environment: forcing CUDA on
fails at once with the reason. (MMGEN_CUDA=0 in a CUDA environment: scripts/check_cuda_build.sh.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from mmgen.ops.buildinfo import REPO_ROOT


def setup_py(**env: str) -> subprocess.CompletedProcess:
    # the switch is read while setup.py builds its Extension, before anything is compiled or written
    return subprocess.run(
        [sys.executable, "setup.py", "--name"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(torch.version.cuda is not None, reason="needs a CPU-only torch")
def test_cuda_forced_on_without_a_toolchain_fails_clearly():
    result = setup_py(MMGEN_CUDA="1")
    assert result.returncode != 0
    reason = f"torch {torch.__version__} is a CPU-only build"
    assert f"MMGEN_CUDA=1 but the CUDA kernels cannot be built: {reason}" in result.stderr


def test_unknown_switch_value_is_refused():
    result = setup_py(MMGEN_CUDA="yes")
    assert result.returncode != 0
    assert "MMGEN_CUDA must be 0 or 1, got 'yes'" in result.stderr
