"""varlen_metadata, pad_varlen, unpad_varlen and block_diagonal_causal_mask against plain torch."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmgen import ops

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]
LENGTHS = [[5, 0, 2, 7], [1], [0, 0], [], [3, 3, 3, 1, 9]]


# --- plain-torch references


def ref_cu_seqlens(lengths):
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    return torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).to(torch.int32)


def ref_metadata(lengths):
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    positions = [torch.arange(n, dtype=torch.int64) for n in lengths.tolist()]
    position_ids = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.int64)
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths), dtype=torch.int32), lengths)
    return ref_cu_seqlens(lengths), position_ids, seq_idx, max(lengths.tolist(), default=0)


def ref_pad(x, lengths, max_seqlen, value):
    out = torch.full((len(lengths), max_seqlen, *x.shape[1:]), value, dtype=x.dtype)
    for n, (start, length) in enumerate(
        zip(ref_cu_seqlens(lengths).tolist(), lengths, strict=False)
    ):
        out[n, :length] = x[start : start + length]
    return out


def ref_unpad(x, lengths):
    rows = [x[n, :length] for n, length in enumerate(lengths)]
    return torch.cat(rows) if rows else x.new_zeros((0, *x.shape[2:]))


def ref_mask(lengths, dtype):
    seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.as_tensor(lengths).long())
    pos = torch.arange(len(seq))
    visible = (seq[:, None] == seq[None, :]) & (pos[None, :] <= pos[:, None])
    hidden = torch.tensor(torch.finfo(dtype).min, dtype=dtype)
    return torch.where(visible, torch.tensor(0, dtype=dtype), hidden)[None, None]


# --- forward equals the references


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lengths", LENGTHS)
def test_metadata(lengths, device):
    got = ops.varlen_metadata(torch.tensor(lengths, dtype=torch.int64, device=device))
    want = ref_metadata(lengths)
    for g, w in zip(got[:3], want[:3], strict=True):
        assert g.dtype == w.dtype and g.device.type == device
        torch.testing.assert_close(g.cpu(), w, rtol=0, atol=0)
    assert isinstance(got.max_seqlen, int) and got.max_seqlen == want[3]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool]
)
@pytest.mark.parametrize("trailing", [(), (3,), (2, 3)])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_pad_unpad(lengths, trailing, dtype, device):
    total, longest = sum(lengths), max(lengths, default=0)
    x = (torch.randn(total, *trailing) * 10).to(dtype)
    cu = ref_cu_seqlens(lengths)
    value = 1 if dtype == torch.bool else -7
    for max_seqlen in (longest, longest + 2):
        padded = ops.pad_varlen(x.to(device), cu.to(device), max_seqlen, value)
        assert torch.equal(padded.cpu(), ref_pad(x, lengths, max_seqlen, value))
        back = ops.unpad_varlen(padded, torch.tensor(lengths, device=device))
        assert torch.equal(back.cpu(), ref_unpad(padded.cpu(), lengths))
        assert torch.equal(back.cpu(), x)  # exact inverses on the valid region


def test_non_contiguous_input():
    lengths = [2, 3]
    x = torch.randn(4, 5).t()  # (5, 4), not contiguous
    assert torch.equal(ops.pad_varlen(x, ref_cu_seqlens(lengths), 3), ref_pad(x, lengths, 3, 0))
    padded = torch.randn(3, 2, 4).transpose(0, 1)  # (2, 3, 4)
    assert torch.equal(ops.unpad_varlen(padded, lengths), ref_unpad(padded, lengths))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("lengths", LENGTHS)
def test_mask(lengths, dtype, device):
    mask = ops.block_diagonal_causal_mask(ref_cu_seqlens(lengths).to(device), dtype)
    assert mask.dtype == dtype and mask.device.type == device
    assert torch.equal(mask.cpu(), ref_mask(lengths, dtype))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 12), max_size=10), st.integers(0, 3), st.integers(1, 3))
def test_random_layouts(lengths, extra, width):
    meta = ops.varlen_metadata(lengths)
    want = ref_metadata(lengths)
    for g, w in zip(meta[:3], want[:3], strict=True):
        assert torch.equal(g, w)
    x = torch.randn(sum(lengths), width)
    padded = ops.pad_varlen(x, meta.cu_seqlens, meta.max_seqlen + extra, 0.5)
    assert torch.equal(padded, ref_pad(x, lengths, meta.max_seqlen + extra, 0.5))
    assert torch.equal(ops.unpad_varlen(padded, lengths), x)
    assert torch.equal(
        ops.block_diagonal_causal_mask(meta.cu_seqlens), ref_mask(lengths, torch.float32)
    )


# --- validate=False and host sizes (the CUDA sync-free path): same results, wrong sizes refused


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("lengths", LENGTHS)
def test_validate_false_and_given_sizes_match(lengths, device):
    total, longest = sum(lengths), max(lengths, default=0)
    lengths_t = torch.tensor(lengths, dtype=torch.int64, device=device)
    cu = ref_cu_seqlens(lengths).to(device)
    checked = ops.varlen_metadata(lengths_t)
    for validate in (True, False):
        meta = ops.varlen_metadata(lengths_t, total=total, max_seqlen=longest, validate=validate)
        for got, want in zip(meta[:3], checked[:3], strict=True):
            assert torch.equal(got, want) and got.device.type == device
        assert isinstance(meta.max_seqlen, int) and meta.max_seqlen == longest
        x = torch.randn(total, 3, device=device)
        padded = ops.pad_varlen(x, cu, longest + 1, -1.0, validate=validate)
        assert torch.equal(padded.cpu(), ref_pad(x.cpu(), lengths, longest + 1, -1.0))
        back = ops.unpad_varlen(padded, lengths_t, total=total, validate=validate)
        assert torch.equal(back, x)
        mask = ops.block_diagonal_causal_mask(cu, torch.bfloat16, total=total, validate=validate)
        assert torch.equal(mask.cpu(), ref_mask(lengths, torch.bfloat16))
        # validate=False alone (no size given) is the checked path on every device
        assert torch.equal(ops.unpad_varlen(padded, lengths_t, validate=validate), x)
        assert torch.equal(ops.block_diagonal_causal_mask(cu, validate=validate).cpu(),
                           ref_mask(lengths, torch.float32))  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
def test_validate_false_gradients(device):
    lengths = [3, 0, 5, 2]
    cu = ref_cu_seqlens(lengths).to(device)
    x = torch.randn(10, 4, device=device, requires_grad=True)
    grad_out = torch.randn(4, 6, 4, device=device)
    got = torch.autograd.grad(ops.pad_varlen(x, cu, 6, validate=False), x, grad_out)[0]
    want = torch.autograd.grad(ref_pad(x.cpu(), lengths, 6, 0.0), x, grad_out.cpu())[0]
    assert torch.equal(got.cpu(), want)
    padded = torch.randn(4, 6, 4, device=device, requires_grad=True)
    lengths_t = torch.tensor(lengths, device=device)
    out = ops.unpad_varlen(padded, lengths_t, total=10, validate=False)
    got = torch.autograd.grad(out, padded, torch.ones_like(out))[0]
    assert torch.equal(got.cpu(), ref_pad(torch.ones(10, 4), lengths, 6, 0.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: ops.unpad_varlen(torch.ones(2, 3), [1, 2], total=4, validate=v),
         r"unpad_varlen: total = 4 but the lengths add up to 3"),
        (lambda v: ops.block_diagonal_causal_mask([0, 2, 5], total=4, validate=v),
         r"block_diagonal_causal_mask: total = 4 but cu_seqlens ends at 5"),
        (lambda v: ops.varlen_metadata([2, 3], total=6, max_seqlen=3, validate=v),
         r"varlen_metadata: total = 6 but the lengths add up to 5"),
        (lambda v: ops.varlen_metadata([2, 3], total=5, max_seqlen=4, validate=v),
         r"varlen_metadata: max_seqlen = 4 but the longest length is 3"),
        (lambda v: ops.unpad_varlen(torch.ones(2, 3), [1, 2], total=-1, validate=v),
         r"unpad_varlen: total = -1 is negative"),
        (lambda v: ops.block_diagonal_causal_mask([0], total=2**31, validate=v),
         r"total = 2147483648 is more than 2\^31 - 1 tokens"),
        # the CPU checks the data whatever validate says: reading it costs no sync there
        (lambda v: ops.pad_varlen(torch.ones(3), [0, 2, 1, 3], 3, validate=v), "must not decrease"),
        (lambda v: ops.pad_varlen(torch.ones(4), [0, 1, 3], 3, validate=v), "x has 4 tokens"),
        (lambda v: ops.unpad_varlen(torch.ones(2, 3), [1, -1], total=0, validate=v),
         r"lengths\[1\] = -1 is negative"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("validate", [True, False])
def test_wrong_sizes_are_refused_on_the_cpu(call, message, validate):
    with pytest.raises(ValueError, match=message):
        call(validate)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ops.unpad_varlen(torch.ones(2, 3), [1, 2], total=torch.tensor(3)),
        lambda: ops.block_diagonal_causal_mask([0, 2], total=2.0),
        lambda: ops.varlen_metadata([2], total=2, max_seqlen=True),
        lambda: ops.pad_varlen(torch.ones(2), [0, 2], "2"),
    ],
)
def test_sizes_must_be_host_ints(call):
    with pytest.raises(TypeError, match="must be a host int"):
        call()


def test_given_sizes_shape_meta_outputs():
    """The fake kernels take a given size as the output size (no dynamic size needed)."""
    lengths = torch.empty(3, dtype=torch.int64, device="meta")
    cu = torch.empty(4, dtype=torch.int32, device="meta")
    padded = torch.empty(3, 5, 2, device="meta")
    meta = torch.ops.mmgen.varlen_metadata(lengths, total=7, max_seqlen=4, validate=False)
    assert meta[1].shape == meta[2].shape == (7,) and meta[3] == 4
    assert torch.ops.mmgen.unpad_varlen(padded, lengths, total=7).shape == (7, 2)
    mask = torch.ops.mmgen.block_diagonal_causal_mask(cu, total=7, validate=False)
    assert mask.shape == (1, 1, 7, 7)


@pytest.mark.cuda
@CUDA
def test_cuda_sync_free_calls():
    """The calls of the GPU check's no-sync step make no host sync; the checked ones do."""
    lengths = torch.tensor([5, 0, 9, 3], device="cuda")
    cu = ref_cu_seqlens([5, 0, 9, 3]).cuda()
    x = torch.randn(17, 8, device="cuda", requires_grad=True)
    calls = [
        lambda: ops.varlen_metadata(lengths, total=17, max_seqlen=9, validate=False),
        lambda: ops.pad_varlen(x, cu, 9, validate=False).sum().backward(),
        lambda: ops.block_diagonal_causal_mask(cu, total=17, validate=False),
    ]
    for call in calls:
        call()  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            ops.block_diagonal_causal_mask(cu)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- gradients


def test_gradients_match_reference():
    lengths = [3, 0, 5, 2]
    x = torch.randn(10, 4, requires_grad=True)
    cu = ref_cu_seqlens(lengths)
    grad_out = torch.randn(4, 6, 4)
    ours = torch.autograd.grad(ops.pad_varlen(x, cu, 6), x, grad_out)[0]
    ref = torch.autograd.grad(ref_pad(x, lengths, 6, 0.0), x, grad_out)[0]
    torch.testing.assert_close(ours, ref)
    padded = torch.randn(4, 6, 4, requires_grad=True)
    grad_out = torch.randn(10, 4)
    ours = torch.autograd.grad(ops.unpad_varlen(padded, lengths), padded, grad_out)[0]
    ref = torch.autograd.grad(ref_unpad(padded, lengths), padded, grad_out)[0]
    torch.testing.assert_close(ours, ref)


def test_gradcheck_and_gradgradcheck():
    lengths = torch.tensor([2, 0, 3])
    cu = ref_cu_seqlens(lengths)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    padded = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    for fn, inp in (
        (lambda t: ops.pad_varlen(t, cu, 4, 1.0), x),
        (lambda t: ops.unpad_varlen(t, lengths), padded),
    ):
        assert torch.autograd.gradcheck(fn, (inp,))
        assert torch.autograd.gradgradcheck(fn, (inp,))


# --- opcheck: schema, fake kernels (dynamic sizes), autograd registration


def test_opcheck():
    lengths = torch.tensor([3, 0, 4])
    cu = ref_cu_seqlens(lengths)
    x = torch.randn(7, 2, requires_grad=True)
    padded = torch.randn(3, 5, 2, requires_grad=True)
    cases = [
        (torch.ops.mmgen.varlen_metadata.default, (lengths,)),
        (torch.ops.mmgen.pad_varlen.default, (x, cu, 5, 0.0)),
        (torch.ops.mmgen.unpad_varlen.default, (padded, lengths)),
        (torch.ops.mmgen.block_diagonal_causal_mask.default, (cu, torch.bfloat16)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)
    # the host sizes and validate=False (keyword-only)
    keyword_cases = [
        (torch.ops.mmgen.varlen_metadata.default, (lengths,),
         {"total": 7, "max_seqlen": 4, "validate": False}),
        (torch.ops.mmgen.pad_varlen.default, (x, cu, 5, 0.0), {"validate": False}),
        (torch.ops.mmgen.unpad_varlen.default, (padded, lengths), {"total": 7, "validate": False}),
        (torch.ops.mmgen.block_diagonal_causal_mask.default, (cu, torch.bfloat16),
         {"total": 7, "validate": False}),
    ]  # fmt: skip
    for op, args, kwargs in keyword_cases:
        torch.library.opcheck(op, args, kwargs)


def test_compiles_with_fullgraph():
    """The fake kernels' dynamic sizes (T, max_seqlen) trace: no graph break, same results."""

    def pipeline(x, lengths):
        meta = ops.varlen_metadata(lengths)
        padded = ops.pad_varlen(x, meta.cu_seqlens, meta.max_seqlen)
        mask = ops.block_diagonal_causal_mask(meta.cu_seqlens)
        return ops.unpad_varlen(padded * 2, lengths), meta.position_ids, mask

    x = torch.randn(10, 3, requires_grad=True)
    lengths = torch.tensor([3, 6, 0, 1])
    compiled = torch.compile(pipeline, backend="aot_eager", fullgraph=True)(x, lengths)
    for got, want in zip(compiled, pipeline(x, lengths), strict=True):
        assert torch.equal(got, want)
    (grad,) = torch.autograd.grad(compiled[0].sum(), x)
    assert torch.equal(grad, torch.full_like(x, 2.0))


# --- bad input raises a clear Python error


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ops.varlen_metadata([2, -1]), ValueError, r"lengths\[1\] = -1 is negative"),
        (lambda: ops.varlen_metadata([[1]]), ValueError, "must be 1-D"),
        (lambda: ops.varlen_metadata([1.0]), TypeError, "must hold integers"),
        (lambda: ops.varlen_metadata([2**31]), ValueError, "more than 2\\^31 - 1 tokens"),
        (
            lambda: ops.pad_varlen(torch.ones(3), [1, 3], 3),
            ValueError,
            "cu_seqlens\\[0\\] must be 0",
        ),
        (lambda: ops.pad_varlen(torch.ones(3), [0, 2, 1, 3], 3), ValueError, "must not decrease"),
        (lambda: ops.pad_varlen(torch.ones(4), [0, 1, 3], 3), ValueError, "x has 4 tokens"),
        (
            lambda: ops.pad_varlen(torch.ones(3), [0, 1, 3], 1),
            ValueError,
            "max_seqlen = 1 is shorter",
        ),
        (lambda: ops.pad_varlen(torch.tensor(1.0), [0], 1), ValueError, "token dimension"),
        (lambda: ops.unpad_varlen(torch.ones(2, 3), [1, 2, 3]), ValueError, "x holds 2 sequences"),
        (lambda: ops.unpad_varlen(torch.ones(2, 3), [1, 4]), ValueError, "does not fit"),
        (lambda: ops.unpad_varlen(torch.ones(2), [1, 1]), ValueError, "must be \\(N, max_seqlen"),
        (lambda: ops.block_diagonal_causal_mask([0, 2], torch.int64), TypeError, "floating"),
        (lambda: ops.block_diagonal_causal_mask(torch.tensor([0.0, 2.0])), TypeError, "integers"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "cu_seqlens", [[0, 2**32 + 2, 2**32 + 5], [0, -(2**32) + 2, 5], [0, 2**31, 2**31 + 1]]
)
def test_int64_cu_seqlens_are_range_checked_not_wrapped(cu_seqlens):
    # narrowed to int32 without a check, [0, 2**32 + 2, 2**32 + 5] acted as [0, 2, 5]
    wide = torch.tensor(cu_seqlens, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"pad_varlen: cu_seqlens: -?[0-9]+ does not fit"):
        ops.pad_varlen(torch.ones(5, 2), wide, 3)
    with pytest.raises(
        ValueError, match=r"block_diagonal_causal_mask: cu_seqlens: .* does not fit torch\.int32"
    ):
        ops.block_diagonal_causal_mask(wide)
    with pytest.raises(ValueError, match="does not fit"):
        ops.pad_varlen(torch.ones(5, 2), cu_seqlens, 3)  # a list becomes int64 first
    fits = torch.tensor([0, 2, 5], dtype=torch.int64)
    assert ops.pad_varlen(torch.ones(5, 2), fits, 3).shape == (2, 3, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [  # found by the fuzz suite: torch's multi-line RuntimeErrors before
        (lambda: ops.varlen_metadata(torch.ones(2, dtype=torch.long, device="meta")), "meta"),
        (lambda: ops.unpad_varlen(torch.ones(2, 3, device="meta"), [1, 2]), "unpad_varlen: x"),
        (lambda: ops.block_diagonal_causal_mask(torch.zeros(1, device="meta")), "meta tensor"),
        (lambda: ops.plan_packs(torch.ones(2, device="meta"), 4), "plan_packs: lengths"),
        (lambda: ops.pad_varlen(torch.ones(0), [], 0), "cu_seqlens must be 1-D"),
        (lambda: ops.pad_varlen(torch.ones(0, device="meta"), [0], -1), "max_seqlen = -1"),
        (lambda: ops.pad_varlen(torch.ones(2, dtype=torch.uint8), [0, 2], 2, -1.0), "value -1"),
        (lambda: ops.pad_varlen(torch.ones(2, dtype=torch.long), [0, 2], 2, 0.5), "value 0.5"),
    ],
)
def test_more_bad_input_is_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pad_varlen_on_meta_tensors_gives_the_shape():
    out = ops.pad_varlen(torch.ones(5, 2, device="meta"), torch.tensor([0, 2, 5]), 3)
    assert out.shape == (2, 3, 2) and out.device.type == "meta"


@pytest.mark.parametrize("call", [
    lambda: ops.varlen_metadata([1, 2**63 - 1]),
    lambda: ops.unpad_varlen(torch.ones(2, 3), [1, 2**40]),
])  # fmt: skip
def test_a_length_past_int32_does_not_wrap_the_total(call):
    # found by the fuzz suite: [1, 2**63 - 1] summed to a negative total in the kernel
    with pytest.raises(ValueError, match=r"lengths\[1\] = [0-9]+ is more than 2\^31 - 1 tokens"):
        call()


def test_the_kernel_itself_refuses_a_total_past_int32():
    # below the Python guard: the C++ sum is checked before each addition, so [1, 2**63 - 1]
    # cannot wrap its int64 running total into a negative number that passes
    lengths = torch.tensor([1, 2**63 - 1])
    with pytest.raises(ValueError, match=r"add up to more than 2\^31 - 1 tokens at lengths\[1\]"):
        torch.ops.mmgen.varlen_metadata(lengths)
