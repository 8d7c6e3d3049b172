"""Every bad input to ``packed_merge`` raises the documented type, saying what was expected and
what was seen -- through the Python wrapper and straight through ``torch.ops.mmgen``."""

from __future__ import annotations

import pytest
import torch
from merge_reference import make_case

from mmgen.ops import packed_merge

RAW = torch.ops.mmgen.packed_merge


@pytest.fixture
def case():
    return make_case((4, 10), placeholder_ids=[-200, -300], fraction=0.5, seed=1)


@pytest.mark.parametrize("call", [packed_merge, RAW], ids=["wrapper", "raw"])
def test_count_mismatch_names_id_and_both_counts(case, call):
    n = len(case.features[1])
    features = [case.features[0], case.features[1][:-1]]
    message = f"placeholder id -300 occurs at {n} positions .* features\\[1\\] has {n - 1} rows"
    with pytest.raises(ValueError, match=message):
        call(case.input_ids, case.weight, features, case.placeholder_ids)


@pytest.mark.parametrize("bad", [-7, 40, 1 << 50])
@pytest.mark.parametrize("call", [packed_merge, RAW], ids=["wrapper", "raw"])
def test_text_id_outside_vocab_names_id_and_position(case, call, bad):
    case.input_ids[2, 3] = bad
    with pytest.raises(IndexError, match=f"holds {bad} at position \\(2, 3\\).*\\[0, 40\\)"):
        call(*case.args())
    flat = case.input_ids.reshape(-1)
    with pytest.raises(IndexError, match=f"holds {bad} at position 23,"):
        call(flat, case.weight, case.features, case.placeholder_ids)


@pytest.mark.parametrize("call", [packed_merge, RAW], ids=["wrapper", "raw"])
def test_metadata_errors(case, call):
    ids, weight, feats, pids = case.args()
    bad = [  # (args, error, what was expected ... what was seen); shapes print as (..) or [..]
        (
            (ids.float(), weight, feats, pids),
            TypeError,
            r"input_ids must be int64.*(float32|Float)",
        ),
        ((ids.int(), weight, feats, pids), TypeError, r"input_ids must be int64.*(int32|Int)"),
        ((ids[None], weight, feats, pids), ValueError, r"must be 1-D .* or 2-D .*got 3-D"),
        ((ids, weight[0], feats, pids), ValueError, r"weight must be 2-D \(V, H\), got shape .12"),
        (
            (ids, weight.long(), feats, pids),
            TypeError,
            r"fp32, fp16 or bf16, got (torch.int64|Long)",
        ),
        (  # float8 would pass a pure copy forward, but the backward cannot sum it
            (ids, weight.to(torch.float8_e4m3fn), [f.to(torch.float8_e4m3fn) for f in feats], pids),
            TypeError,
            r"fp32, fp16 or bf16, got (torch.float8_e4m3fn|Float8_e4m3fn)",
        ),
        (
            (ids, weight, [feats[0], feats[1][:, :5]], pids),
            ValueError,
            r"features\[1\] has hidden size 5 but weight has 12",
        ),
        (
            (ids, weight, [feats[0], feats[1][0]], pids),
            ValueError,
            r"features\[1\] must be 2-D \(N, H\), got .\d+",
        ),
        (
            (ids, weight, [feats[0].half(), feats[1]], pids),
            TypeError,
            r"features\[0\] is (torch.float16|Half) but weight is (torch.float32|Float)",
        ),
        ((ids, weight, feats, [-200, -200]), ValueError, r"distinct, got -200 twice"),
        (
            (ids, weight, feats[:1], pids),
            ValueError,
            r"got 1 feature tensors for 2 placeholder ids",
        ),
        (
            (ids, weight, [feats[0].to("meta"), feats[1]], pids),
            ValueError,
            r"features\[0\] is on meta but weight is on cpu",
        ),
        (
            (ids.to("meta"), weight, feats, pids),
            ValueError,
            r"input_ids is on meta but weight .*cpu",
        ),
    ]
    for args, error, pattern in bad:
        with pytest.raises(error, match=pattern):
            call(*args)


def test_wrapper_only_errors(case):
    ids, weight, feats, pids = case.args()
    with pytest.raises(TypeError, match=r"placeholder_ids\[1\] must be an int, got 1.5"):
        packed_merge(ids, weight, feats, [-200, 1.5])
    with pytest.raises(TypeError, match=r"placeholder_ids\[0\] must be an int, got True"):
        packed_merge(ids, weight, feats, [True, -300])
    with pytest.raises(ValueError, match="list of tensors, one per placeholder id"):
        packed_merge(ids, weight, feats[0], pids)
    with pytest.raises(TypeError, match=r"input_ids must be a torch\.Tensor"):
        packed_merge(ids.tolist(), weight, feats, pids)


def test_too_many_placeholder_ids():
    pids = list(range(-1, -34, -1))
    case = make_case((50,), placeholder_ids=pids, fraction=0.0)
    with pytest.raises(ValueError, match="at most 32 placeholder ids, got 33"):
        packed_merge(*case.args())


def test_backward_op_checks_grad_shape(case):
    grad = torch.randn(4, 9, 12)
    rows = [len(f) for f in case.features]
    with pytest.raises(ValueError, match=r"grad_out has shape \[4, 9, 12\].*\[4, 10\]"):
        torch.ops.mmgen.packed_merge_backward(
            grad, case.input_ids, 40, rows, case.placeholder_ids, True, [True, True]
        )
