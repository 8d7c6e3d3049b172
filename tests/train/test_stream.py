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


def grouped_plan(epoch: int, *, seed: int = 0, rank: int = 0, world: int = 1):
    lengths = torch.randint(4, 500, (203,), generator=torch.Generator().manual_seed(7))
    plan = padded_plan(203, 8, rank=rank, world=world, seed=seed, lengths=lengths)
    return lengths, plan(epoch)


def padding(lengths: torch.Tensor, batches: list[list[int]]) -> int:
    return sum(len(b) * int(lengths[b].max()) - int(lengths[b].sum()) for b in batches)


def test_length_grouped_plan_takes_every_sample_once_per_epoch_deterministically() -> None:
    lengths, epoch0 = grouped_plan(0)
    for batches in (epoch0, grouped_plan(1)[1]):
        assert sorted(i for batch in batches for i in batch) == list(range(203))
        assert [len(b) for b in batches] == [8] * 25 + [3]
    assert grouped_plan(0)[1] == epoch0  # a function of (seed, epoch)
    assert grouped_plan(1)[1] != epoch0 and grouped_plan(0, seed=1)[1] != epoch0
    assert max(lengths[epoch0[0]]) == lengths.max()  # the longest sample comes first
    random = padded_plan(203, 8, rank=0, world=1, seed=0)(0)
    assert padding(lengths, epoch0) < padding(lengths, random) / 3


def test_length_grouped_plan_shards_over_ranks_with_equal_batch_counts() -> None:
    ranks = [grouped_plan(0, rank=r, world=2)[1] for r in range(2)]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]]
    seen = [i for rank in ranks for batch in rank for i in batch]
    assert set(seen) == set(range(203)) and len(seen) == 204  # one repeat evens out the ranks
