"""``packed_merge`` on CUDA: the same bits as the CPU kernels, and no host sync without validate.

Skipped where no GPU is visible (the CUDA build itself is checked by scripts/check_cuda_build.sh).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from merge_reference import make_case

from mmgen.ops import packed_merge

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible"),
]


def on(case, device):
    ids, weight, features, pids = case.args()
    return ids.to(device), weight.to(device), [f.to(device) for f in features], pids


def merge_and_grads(ids, weight, features, pids, grad_out, **kwargs):
    weight = weight.detach().requires_grad_()
    features = [f.detach().requires_grad_() for f in features]
    out = packed_merge(ids, weight, features, pids, **kwargs)
    grads = torch.autograd.grad(out, [weight, *features], grad_out)
    return [t.cpu() for t in (out, *grads)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(300,), (6, 50)])
@pytest.mark.parametrize("hidden", [12, 7, 64])  # 7: rows too narrow for vector copies
def test_cuda_equals_cpu_bit_for_bit(dtype, shape, hidden):
    case = make_case(shape, hidden=hidden, vocab=9, placeholder_ids=[-1, 4, 99], dtype=dtype)
    grad_out = torch.randn(*shape, hidden).to(dtype)
    cpu = merge_and_grads(*on(case, "cpu"), grad_out)
    for validate in (True, False):
        gpu = merge_and_grads(*on(case, "cuda"), grad_out.cuda(), validate=validate)
        for a, b in zip(cpu, gpu, strict=True):
            assert torch.equal(a, b)  # same summation order: the weight grad matches too


def test_cuda_forward_without_validate_does_not_sync():
    ids, weight, features, pids = on(make_case((4, 64), placeholder_ids=[-1, -2]), "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = packed_merge(ids, weight, features, pids, validate=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(
        out.cpu(), packed_merge(*on(make_case((4, 64), placeholder_ids=[-1, -2]), "cpu"))
    )


def test_cuda_errors_with_validate():
    case = make_case((4, 10), placeholder_ids=[-200], fraction=0.5, seed=1)
    ids, weight, features, pids = on(case, "cuda")
    n = len(features[0])
    with pytest.raises(ValueError, match=f"-200 occurs at {n} positions .* has {n - 1} rows"):
        packed_merge(ids, weight, [features[0][:-1]], pids)
    ids[1, 2] = 40
    with pytest.raises(IndexError, match=r"holds 40 at position \(1, 2\)"):
        packed_merge(ids, weight, features, pids)


def test_cuda_count_mismatch_without_validate_trips_a_device_assert():
    # one feature row too many: no placeholder position reads it, so only the count check sees it.
    # A device-side assert ends the process's CUDA context: run it in a process of its own.
    code = textwrap.dedent("""
        import torch
        from merge_reference import make_case
        from mmgen.ops import packed_merge
        case = make_case((4, 10), placeholder_ids=[-200], fraction=0.5, seed=1)
        rows = torch.cat([case.features[0], case.features[0][:1]]).cuda()
        packed_merge(case.input_ids.cuda(), case.weight.cuda(), [rows], [-200], validate=False)
        torch.cuda.synchronize()
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "device-side assert" in result.stderr or "count differs" in result.stderr, result.stderr


def test_cuda_opcheck():
    ids, weight, features, pids = on(make_case((5, 20), placeholder_ids=[-1, 60]), "cuda")
    args = (ids, weight.requires_grad_(), [features[0].requires_grad_(), features[1]], pids)
    torch.library.opcheck(torch.ops.mmgen.packed_merge.default, args)
