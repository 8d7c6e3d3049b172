"""The CUDA path the GPU check runs (scripts/gpu_check.sh, step cuda-tests): ``packed_merge`` on
CUDA against the CPU op and plain torch on frequent, rare and empty inputs, opcheck on CUDA, and
packed attention on CUDA equal to each sample alone. Skipped where no GPU is visible; the varlen
ops' CUDA cases are in test_varlen_ops.py, the merge's bit-for-bit cases in test_merge_cuda.py.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
import transformers

from mmgen import ops
from mmgen.constants import IGNORE_INDEX
from mmgen.data.batch import mask_first_labels
from mmgen.gpucheck.reference import (
    MERGE_CASES,
    chunked_table_grad,
    merge_case,
    merge_grads,
    reference_merge,
)
from mmgen.model.attention import VARLEN_SDPA, packed_attention_kwargs, register

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible"),
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MERGE_CASES)
@pytest.mark.parametrize("validate", [True, False])
def test_merge_on_cuda_equals_cpu_and_reference(name, dtype, validate):
    case = merge_case(name, dtype=dtype)
    grad_out = torch.randn(*case.input_ids.shape, case.weight.shape[1]).to(dtype)
    cpu = merge_grads(ops.packed_merge, case, grad_out)
    gpu_case = case.to("cuda")
    gpu = merge_grads(
        lambda *args: ops.packed_merge(*args, validate=validate), gpu_case, grad_out.cuda()
    )
    ref = merge_grads(reference_merge, gpu_case, grad_out.cuda())
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[0], ref[0])
    assert torch.equal(gpu[1].cpu(), cpu[1])  # the same summation order on both
    expected = chunked_table_grad(case.input_ids, grad_out, len(case.weight), case.placeholder_ids)
    assert torch.equal(gpu[1].cpu(), expected)
    for got, want, plain in zip(gpu[2], cpu[2], ref[2], strict=True):
        assert torch.equal(got.cpu(), want) and torch.equal(got, plain)


@pytest.mark.parametrize("name", ["frequent", "mixed"])
def test_opcheck_on_cuda(name):
    case = merge_case(name, hidden=6).to("cuda")
    weight = case.weight.requires_grad_()
    features = [f.requires_grad_() for f in case.features]
    args = (case.input_ids, weight, features, case.placeholder_ids)
    op = torch.ops.mmgen.packed_merge.default
    torch.library.opcheck(op, args)
    torch.library.opcheck(op, args, {"validate": False})
    grad = torch.randn(*case.input_ids.shape, 6, device="cuda")
    rows = [len(f) for f in features]
    flags = [True] * len(rows)
    back = (grad, case.input_ids, len(weight), rows, case.placeholder_ids, True, flags)
    torch.library.opcheck(torch.ops.mmgen.packed_merge_backward.default, back)


# --- packed attention on CUDA: a packed row gives each sample's own logits and loss

LENGTHS = [7, 12, 1, 9, 4]
IMPLEMENTATIONS = [
    "sdpa",
    VARLEN_SDPA,
    pytest.param(
        "flash_attention_2",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("flash_attn") is None, reason="flash-attn not importable"
        ),
    ),
]


def tiny_llama(impl):
    register()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    dtype = torch.bfloat16 if impl == "flash_attention_2" else torch.float32  # flash: half only
    model = transformers.LlamaForCausalLM(config).to("cuda", dtype)
    model.set_attn_implementation(impl)
    return model.eval()


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_packed_attention_on_cuda_equals_alone(impl):
    model = tiny_llama(impl)
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 96, (n,), generator=gen).cuda() for n in LENGTHS]
    labels = [s.clone() for s in ids]
    for label in labels:
        label[: len(label) // 3] = IGNORE_INDEX
    meta = ops.varlen_metadata([len(s) for s in ids])
    kwargs = packed_attention_kwargs(
        meta.cu_seqlens.cuda(), meta.max_seqlen, impl, dtype=model.dtype
    )
    with torch.no_grad():
        packed = model(
            input_ids=torch.cat(ids)[None],
            position_ids=meta.position_ids.cuda()[None],
            labels=mask_first_labels(torch.cat(labels)[None], meta.cu_seqlens.cuda()),
            **kwargs,
        )
        alone = torch.cat([model(input_ids=s[None]).logits[0] for s in ids])
    tolerance = 2e-2 if model.dtype == torch.bfloat16 else 1e-4
    assert (packed.logits[0] - alone).abs().max().item() <= tolerance
    assert torch.isfinite(packed.loss)
