"""``packed_merge`` against its plain-torch reference: values, gradients, opcheck, compile."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from merge_reference import PLACEHOLDERS, Case, make_case, reference_merge

from mmgen.ops import packed_merge

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
LAYOUTS = {"packed": (96,), "padded": (4, 24)}


def grads_of(fn, case, grad_out, *, weight_grad=True, feature_grads=None):
    """(out, grad of weight, grads of features) of fn on leaf copies of the case's tensors."""
    weight = case.weight.detach().clone().requires_grad_(weight_grad)
    wants = feature_grads if feature_grads is not None else [True] * len(case.features)
    features = [
        f.detach().clone().requires_grad_(w) for f, w in zip(case.features, wants, strict=True)
    ]
    out = fn(case.input_ids, weight, features, case.placeholder_ids)
    leaves = [t for t in (weight, *features) if t.requires_grad]
    got = iter(torch.autograd.grad(out, leaves, grad_out) if leaves else ())
    table = next(got) if weight_grad else None
    return out, table, [next(got) if w else None for w in wants]


def wide_reference_grads(case, grad_out):
    """The reference's gradients computed in float64, then rounded to the case's dtype (the op
    sums in fp32 and rounds once, while torch may sum a bf16 gradient in bf16)."""
    dtype = case.weight.dtype
    wide = Case(case.input_ids, case.weight.double(), [f.double() for f in case.features],
                case.placeholder_ids)  # fmt: skip
    out, table, feats = grads_of(reference_merge, wide, grad_out.double())
    return out.to(dtype), table.to(dtype), [f.to(dtype) for f in feats]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_forward_bit_exact(dtype, layout, k):
    case = make_case(LAYOUTS[layout], placeholder_ids=PLACEHOLDERS["negative"][:k], dtype=dtype)
    out = packed_merge(*case.args())
    assert out.shape == (*case.input_ids.shape, case.weight.shape[1])
    assert out.dtype == dtype
    assert torch.equal(out, reference_merge(*case.args()))


@pytest.mark.parametrize("kind", ["negative", "past_vocab"])
def test_placeholder_ids_outside_vocab(kind):
    case = make_case(placeholder_ids=PLACEHOLDERS[kind], fraction=0.5, seed=3)
    assert all(len(f) > 0 for f in case.features)
    assert torch.equal(packed_merge(*case.args()), reference_merge(*case.args()))


def test_placeholder_inside_vocab_is_never_looked_up():
    case = make_case(placeholder_ids=[7, 3], fraction=0.5, seed=4)
    case.weight[[3, 7]] = float("nan")  # any read of these table rows would show up
    out = packed_merge(*case.args())
    assert not out.isnan().any()
    assert torch.equal(out, reference_merge(*case.args()))


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5)])
def test_empty_input(shape):
    case = make_case(shape, placeholder_ids=[-1, -2])
    out, table, feats = grads_of(packed_merge, case, torch.randn(*shape, 12))
    assert out.shape == (*shape, 12)
    assert torch.equal(table, torch.zeros_like(case.weight))
    assert [tuple(f.shape) for f in feats] == [(0, 12), (0, 12)]


def test_zero_hidden_size():
    case = make_case((3, 8), hidden=0, placeholder_ids=[-1], fraction=0.5, seed=2)
    assert len(case.features[0]) > 0
    out, table, feats = grads_of(packed_merge, case, torch.zeros(3, 8, 0))
    assert out.shape == (3, 8, 0) and table.shape == (40, 0)
    assert feats[0].shape == case.features[0].shape


def test_all_placeholder_and_no_placeholder():
    everything = make_case((2, 10), placeholder_ids=[-9], fraction=1.0)
    ids = torch.full((2, 10), -9)
    everything.input_ids, everything.features = ids, [torch.randn(20, 12)]
    assert torch.equal(packed_merge(*everything.args()), everything.features[0].view(2, 10, 12))
    nothing = make_case((2, 10), placeholder_ids=[-9, -8], fraction=0.0)
    assert [len(f) for f in nothing.features] == [0, 0]
    out = packed_merge(*nothing.args())
    assert torch.equal(out, nothing.weight[nothing.input_ids])


def test_non_contiguous_inputs():
    case = make_case((24, 4), placeholder_ids=[-1, -2], seed=5)
    ids = case.input_ids.t()  # (4, 24) view with strides (1, 4)
    big = torch.randn(40, 30)
    weight = big[:, 5:17]  # rows 30 apart
    features = [torch.randn(12, int((ids == p).sum())).t() for p in case.placeholder_ids]
    assert not (ids.is_contiguous() or weight.is_contiguous() or features[0].is_contiguous())
    out = packed_merge(ids, weight, features, case.placeholder_ids)
    assert torch.equal(out, reference_merge(ids, weight, features, case.placeholder_ids))
    transposed = torch.randn(12, 40).t()  # column-major table: rows are not contiguous
    out = packed_merge(ids, transposed, features, case.placeholder_ids)
    assert torch.equal(out, reference_merge(ids, transposed, features, case.placeholder_ids))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradients_match_reference(dtype, layout):
    case = make_case(LAYOUTS[layout], placeholder_ids=[-1, -2], vocab=10, dtype=dtype, seed=6)
    grad_out = torch.randn(*case.input_ids.shape, 12).to(dtype)
    _, table, feats = grads_of(packed_merge, case, grad_out)
    _, ref_table, ref_feats = wide_reference_grads(case, grad_out)
    torch.testing.assert_close(table, ref_table)
    for got, ref in zip(feats, ref_feats, strict=True):
        assert torch.equal(got, ref)  # a gather: exact


def test_frozen_weight_and_partly_frozen_features():
    case = make_case((3, 20), placeholder_ids=[-1, -2, -3], seed=7)
    grad_out = torch.randn(3, 20, 12)
    wants = [True, False, True]
    _, table, feats = grads_of(packed_merge, case, grad_out, weight_grad=False, feature_grads=wants)
    ref_feats = grads_of(reference_merge, case, grad_out, weight_grad=False, feature_grads=wants)[2]
    assert table is None and feats[1] is None
    assert torch.equal(feats[0], ref_feats[0]) and torch.equal(feats[2], ref_feats[2])


def test_expanded_grad_and_text_only_gradient():
    case = make_case(placeholder_ids=[5], vocab=8, seed=8)  # id 5 is a placeholder in the vocab
    weight = case.weight.clone().requires_grad_()
    packed_merge(case.input_ids, weight, case.features, [5]).sum().backward()  # stride-0 grad
    text = case.input_ids[case.input_ids != 5]
    expected = torch.bincount(text, minlength=8).float()[:, None].expand(8, 12)
    assert torch.equal(weight.grad, expected)  # row 5 gets nothing: it is never looked up


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_grad_is_deterministic(dtype):
    # few ids, many repeats: any change of summation order would change the bits. Rows of 512
    # values make the backward's work (split in ~1 MiB chunks) spread over both threads; with
    # narrow rows it all lands in one chunk and threads could not make a difference.
    case = make_case((4096,), hidden=512, vocab=3, placeholder_ids=[-1], dtype=dtype, seed=9)
    grad_out = torch.randn(4096, 512).to(dtype)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 1, 2):
            torch.set_num_threads(n)
            runs.append(grads_of(packed_merge, case, grad_out)[1])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(runs[0], again) for again in runs[1:])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck(layout):
    case = make_case(LAYOUTS[layout], placeholder_ids=[-1, 60], hidden=6, seed=10)
    weight = case.weight.requires_grad_()
    features = [case.features[0].requires_grad_(), case.features[1]]
    args = (case.input_ids, weight, features, case.placeholder_ids)
    torch.library.opcheck(torch.ops.mmgen.packed_merge.default, args)
    torch.library.opcheck(torch.ops.mmgen.packed_merge.default, args, {"validate": False})
    grad = torch.randn(*case.input_ids.shape, 6)
    rows = [len(f) for f in features]
    back = (grad, case.input_ids, 40, rows, case.placeholder_ids, True, [True, False])
    torch.library.opcheck(torch.ops.mmgen.packed_merge_backward.default, back)


def test_meta_tensors():
    case = make_case((3, 7), placeholder_ids=[-1], hidden=5)
    meta = [t.to("meta") for t in (case.input_ids, case.weight, case.features[0])]
    out = packed_merge(meta[0], meta[1], [meta[2]], [-1])
    assert out.device.type == "meta" and out.shape == (3, 7, 5)


@pytest.mark.parametrize(
    "backend",
    ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)],  # ~10 s cold
)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    case = make_case((2, 30), placeholder_ids=[-1, -2], seed=11)

    def embed(ids, weight, features):
        return packed_merge(ids, weight, features, [-1, -2]) * 2.0

    compiled = torch.compile(embed, fullgraph=True, backend=backend)
    grad_out = torch.randn(2, 30, 12)
    got = grads_of(lambda i, w, f, _p: compiled(i, w, f), case, grad_out)
    want = grads_of(lambda i, w, f, _p: embed(i, w, f), case, grad_out)
    for a, b in zip((got[0], got[1], *got[2]), (want[0], want[1], *want[2]), strict=True):
        assert torch.equal(a, b)


@st.composite
def cases(draw):
    dims = draw(st.sampled_from([1, 2]))
    shape = tuple(draw(st.integers(0, 12)) for _ in range(dims)) if dims == 2 else None
    shape = shape or (draw(st.integers(0, 80)),)
    k = draw(st.integers(0, 3))
    ids = draw(st.lists(st.integers(-3000, 3000), min_size=k, max_size=k, unique=True))
    return make_case(
        shape,
        hidden=draw(st.integers(1, 9)),
        vocab=draw(st.integers(1, 30)),
        placeholder_ids=ids,
        dtype=draw(st.sampled_from([torch.float32, torch.bfloat16])),
        fraction=draw(st.floats(0.0, 1.0)),
        seed=draw(st.integers(0, 2**16)),
    )


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_property_matches_reference(case):
    grad_out = torch.randn(*case.input_ids.shape, case.weight.shape[1]).to(case.weight.dtype)
    out, table, feats = grads_of(packed_merge, case, grad_out)
    assert torch.equal(out, reference_merge(*case.args()))
    _, ref_table, ref_feats = wide_reference_grads(case, grad_out)
    torch.testing.assert_close(table, ref_table)
    for got, want in zip(feats, ref_feats, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("frozen", ["none", "weight", "features"])
def test_second_order_gradients(frozen):
    # the backward's own autograd (its adjoint is the forward) makes double backward exact
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([3, -5, 1, -5, 0, 7, -9, 3])
    weight = torch.randn(8, 4, dtype=torch.float64, generator=gen)
    a = torch.randn(2, 4, dtype=torch.float64, generator=gen)
    b = torch.randn(1, 4, dtype=torch.float64, generator=gen)
    inputs = {"none": (weight, a, b), "weight": (a, b), "features": (weight,)}[frozen]
    inputs = tuple(t.requires_grad_() for t in inputs)

    def merge(*args):
        w, x, y = {"none": args, "weight": (weight, *args), "features": (*args, a, b)}[frozen]
        return packed_merge(ids, w, [x, y], [-5, -9])

    assert torch.autograd.gradgradcheck(merge, inputs)
