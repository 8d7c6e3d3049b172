"""The weight gradient of ``packed_merge`` split in chunks of the id-sorted positions: frequent
ids (spanning many chunks), rare ids (one row each), empty inputs, and runs ending on and around
chunk boundaries, bit for bit against a plain-torch model of the kernels' summation order and
within rounding of a float64 reference."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mmgen.gpucheck.reference import (
    CHUNK_ROWS,
    MERGE_CASES,
    chunked_table_grad,
    merge_case,
    merge_grads,
    reference_merge,
)
from mmgen.ops import packed_merge

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def wide_reference(case, grad_out):
    """The reference's table gradient summed in float64, rounded once to the case's dtype."""
    wide = replace(case, weight=case.weight.double(), features=[f.double() for f in case.features])
    return merge_grads(reference_merge, wide, grad_out.double())[1].to(case.weight.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MERGE_CASES)
def test_cases_match_reference(name, dtype):
    case = merge_case(name, dtype=dtype)
    grad_out = torch.randn(*case.input_ids.shape, case.weight.shape[1]).to(dtype)
    out, table, feats = merge_grads(packed_merge, case, grad_out)
    ref_out, _, ref_feats = merge_grads(reference_merge, case, grad_out)
    assert torch.equal(out, ref_out)
    for got, want in zip(feats, ref_feats, strict=True):
        assert torch.equal(got, want)
    assert torch.equal(table, chunked_table_grad(case.input_ids, grad_out, len(case.weight),
                                                 case.placeholder_ids))  # fmt: skip
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(table, wide_reference(case, grad_out), rtol=tolerance,
                               atol=tolerance)  # fmt: skip


def test_frequent_id_spans_many_chunks():
    case = merge_case("frequent")
    uses = int((case.input_ids == 7).sum())
    assert uses > 20 * CHUNK_ROWS  # the case does what it says


def test_rare_ids_are_each_used_once():
    case = merge_case("rare")
    text = case.input_ids[case.input_ids >= 0]
    assert text.unique().numel() == text.numel() > 2 * CHUNK_ROWS


@pytest.mark.parametrize("run", [1, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1, 3 * CHUNK_ROWS])
@pytest.mark.parametrize("offset", [0, 1, CHUNK_ROWS - 1])
def test_runs_around_chunk_boundaries(run, offset):
    # `offset` rows of id 0 sort first, so id 1's run starts `offset` rows into a chunk; id 2
    # follows it in the same or the next chunk
    ids = torch.tensor([0] * offset + [1] * run + [2] * 5 + [-1] * 3)
    ids = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(run + offset))]
    weight = torch.randn(3, 33)
    features = [torch.randn(3, 33)]
    grad_out = torch.randn(len(ids), 33)
    leaf = weight.clone().requires_grad_()
    (table,) = torch.autograd.grad(packed_merge(ids, leaf, features, [-1]), leaf, grad_out)
    assert torch.equal(table, chunked_table_grad(ids, grad_out, 3, [-1]))
    expected = torch.zeros(3, 33, dtype=torch.float64).index_add_(
        0, ids[ids >= 0], grad_out[ids >= 0].double()
    )
    torch.testing.assert_close(table, expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(0,), (0, 4), (5, 0)])
def test_empty_inputs(shape):
    ids = torch.empty(shape, dtype=torch.int64)
    weight = torch.randn(6, 8, requires_grad=True)
    feature = torch.randn(0, 8, requires_grad=True)
    out = packed_merge(ids, weight, [feature], [-3])
    assert out.shape == (*shape, 8)
    table, feat = torch.autograd.grad(out, [weight, feature], torch.randn(*shape, 8))
    assert torch.equal(table, torch.zeros(6, 8)) and feat.shape == (0, 8)
    assert torch.equal(chunked_table_grad(ids, torch.zeros(*shape, 8), 6, [-3]), table)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_frequent_id_same_bits_on_any_thread_count(dtype):
    case = merge_case("frequent", dtype=dtype, hidden=512)  # wide rows: work for both threads
    grad_out = torch.randn(case.input_ids.numel(), 512).to(dtype)
    threads = torch.get_num_threads()
    tables = []
    try:
        for n in (1, 2, 1, 2):
            torch.set_num_threads(n)
            tables.append(merge_grads(packed_merge, case, grad_out)[1])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(tables[0], again) for again in tables[1:])


def test_unknown_case_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown merge case 'often'; choose from"):
        merge_case("often")
