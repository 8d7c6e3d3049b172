"""The steps of the GPU check, in order, each with the shell command it runs and its time limit.

Kinds: ``setup`` (install torch, build the CUDA extension) and ``check`` (a correctness check)
stop the run when they fail; ``figures`` (speed and accuracy) are recorded either way.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

KINDS = ("setup", "check", "figures")
# The whole run must end inside ten minutes: a step gets at most the time left of this budget.
DEADLINE_S = 600
# torch's CUDA build when the environment has none (pip's configured index picks the wheel)
TORCH_REQUIREMENT = "torch"


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    limit_s: int
    what: str
    command: str  # run by bash in the repository root

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"step {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.limit_s <= 0:
            raise ValueError(f"step {self.name}: limit_s must be positive, got {self.limit_s}")


def steps(python: str, out: Path, *, install: bool = True) -> list[Step]:
    """The plan. ``python`` is the interpreter the checks run under (a venv's, created and filled
    by the ``torch`` step when ``install``); ``out`` holds the logs, the summary and the demo."""
    py = shlex.quote(python)
    venv = shlex.quote(str(Path(python).parent.parent))
    demo = shlex.quote(str(out / "demo"))
    pytest = f"{py} -m pytest -q -p no:cacheprovider -rs"
    check = f"{py} -m mmgen.gpucheck.checks"
    cuda_torch = "'import sys, torch; sys.exit(torch.version.cuda is None)'"
    has_cuda_torch = f"{py} -c {cuda_torch}"
    no_cuda_torch = shlex.quote(f"gpu_check: {python} has no CUDA build of torch")
    need_cuda_torch = f"{{ {has_cuda_torch} || {{ echo {no_cuda_torch}; exit 1; }}; }}"
    setup = (
        "the CUDA build of torch present (the system python's, seen through the venv), else one "
        "from pip's configured index; then the pinned requirements without their CPU torch pin"
    )
    pip = f"{py} -m pip install --quiet --disable-pip-version-check"
    requirements = shlex.quote(str(out / "requirements.txt"))
    install_cmd = (
        f"{{ [ -x {py} ] || {{ python3 -c {cuda_torch} 2>/dev/null "
        f"&& python3 -m venv --system-site-packages {venv} || python3 -m venv {venv}; }}; }} && "
        f"{{ {has_cuda_torch} 2>/dev/null || {pip} {TORCH_REQUIREMENT}; }} && "
        f"{need_cuda_torch} && mkdir -p {shlex.quote(str(out))} && "
        f"grep -v '^torch==' requirements.txt > {requirements} && "
        f"{pip} setuptools wheel -r {requirements}"
    )
    plan = []
    if install:
        plan.append(Step("torch", "setup", 240, setup, install_cmd))
    else:
        plan.append(Step("torch", "setup", 30, "the given interpreter has a CUDA build of torch",
                         need_cuda_torch))  # fmt: skip
    plan += [
        Step(
            "build",
            "setup",
            300,
            "mmgen._C with its CUDA kernels, for this GPU's compute capability only",
            "export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} && "
            "export MMGEN_CUDA_ARCH=${MMGEN_CUDA_ARCH:-$(nvidia-smi "
            "--query-gpu=compute_cap --format=csv,noheader | head -n 1)} && "
            f"MMGEN_CUDA=1 {py} -m pip install --quiet --disable-pip-version-check "
            "--no-build-isolation --no-deps -e .",
        ),
        Step(
            "device",
            "check",
            60,
            "a CUDA GPU is visible and mmgen._C has CUDA kernels",
            f"{check} device",
        ),
        Step(
            "cuda-tests",
            "check",
            240,
            "merge fwd/bwd on CUDA against the CPU op and plain torch (fp32, bf16, fp16; empty, "
            "frequent and rare ids), opcheck on CUDA, the varlen ops, packed attention "
            "(flash_attention_2 when importable, sdpa, mmgen_varlen_sdpa) equal to each sample "
            "alone",
            f"{pytest} -m cuda tests/test_cuda_ops.py tests/test_merge_cuda.py "
            "tests/test_varlen_ops.py",
        ),
        Step(
            "no-sync",
            "check",
            60,
            "the training step's merge and varlen calls (merge fwd+bwd, pad/unpad fwd+bwd, "
            "varlen_metadata, the sdpa mask; validate=False, host sizes) under "
            "torch.cuda.set_sync_debug_mode('error')",
            f"{check} sync",
        ),
        Step(
            "ddp-nccl",
            "check",
            90,
            "a packed training step through DDP over nccl (one process) equals it without DDP",
            f"{check} ddp",
        ),
        Step(
            "bench-merge",
            "figures",
            180,
            "mmgen bench merge on CUDA at the README sizes (T=16384, H=2048, V=32000; fp32, "
            "bf16): GB/s against the device's peak, beside HF's masked_scatter merge",
            f"{py} -m mmgen bench merge --device cuda",
        ),
        Step(
            "demo-cpu",
            "figures",
            240,
            "the demo (CI size) trained on the CPU: held-out accuracy and tokens/s",
            f"{check} demo --device cpu --out {demo}",
        ),
        Step(
            "demo-gpu",
            "figures",
            180,
            "the same demo on the GPU with bf16 autocast: held-out accuracy and tokens/s",
            f"{check} demo --device cuda --out {demo}",
        ),
    ]
    return plan


def describe(plan: list[Step]) -> str:
    """The dry run's listing: every step, its kind, its time limit and what it checks."""
    width = max(len(step.name) for step in plan)
    count = f"{len(plan)} step{'' if len(plan) == 1 else 's'}"
    lines = [f"gpu check: {count}, at most {DEADLINE_S} s in all"]
    for i, step in enumerate(plan, 1):
        lines.append(
            f"{i:2}. {step.name:<{width}}  {step.kind:<7}  limit {step.limit_s:>3} s  {step.what}"
        )
        lines.append(f"    $ {step.command}")
    return "\n".join(lines)
