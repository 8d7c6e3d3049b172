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
