"""The batch stream: endless over epochs, and a resumed stream yields exactly the batches the
uninterrupted one would have."""

from __future__ import annotations

from itertools import islice

import torch

from mmgen.train.stream import BatchStream, padded_plan


def plan(epoch: int) -> list[list[int]]:
    # a different order every epoch, a function of the epoch only
    order = torch.randperm(10, generator=torch.Generator().manual_seed(epoch)).tolist()
    return [order[i : i + 3] for i in range(0, 10, 3)]


def collate(samples: list[int]) -> list[int]:
    return list(samples)


def test_runs_over_epochs_in_plan_order() -> None:
    stream = BatchStream(list(range(10)), plan, collate, seed=0)
    batches = list(islice(stream, 9))
    assert batches[:4] == plan(0) and batches[4:8] == plan(1) and batches[8] == plan(2)[0]
    assert stream.state_dict() == {"epoch": 2, "position": 1}


def test_resume_continues_exactly() -> None:
    whole = list(islice(BatchStream(list(range(10)), plan, collate, seed=0), 11))
    first = BatchStream(list(range(10)), plan, collate, seed=0)
    head = list(islice(first, 6))
    second = BatchStream(list(range(10)), plan, collate, seed=0)
    second.load_state_dict(first.state_dict())
    assert head + list(islice(second, 5)) == whole


def test_the_stream_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    list(islice(BatchStream(list(range(10)), plan, collate, seed=0), 5))
    assert torch.equal(torch.rand(2), expected)


def test_padded_plan_shards_like_distributed_sampler_with_equal_batch_counts() -> None:
    ranks = [padded_plan(11, 2, rank=r, world=2, seed=0)(epoch=0) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    seen = [i for rank in ranks for batch in rank for i in batch]
    assert set(seen) == set(range(11)) and len(seen) == 12  # one sample repeated to even out
    assert padded_plan(11, 2, rank=0, world=2, seed=0)(1) != ranks[0]
