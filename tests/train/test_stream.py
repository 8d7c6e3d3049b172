"""The batch stream: endless over epochs, and a resumed stream yields exactly the batches the
uninterrupted one would have; the padded layout's batch sampler (random or length-grouped)."""

from __future__ import annotations

from itertools import islice

import torch
from torch.utils.data import DataLoader, Sampler

from mmgen.data.sampler import PaddedBatchSampler
from mmgen.train.stream import BatchStream


class EpochPlan(Sampler[list[int]]):
    """A different order every epoch, a function of the epoch only, resumable mid-epoch."""

    def __init__(self) -> None:
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch

    def plan(self, epoch: int) -> list[list[int]]:
        order = torch.randperm(10, generator=torch.Generator().manual_seed(epoch)).tolist()
        return [order[i : i + 3] for i in range(0, 10, 3)]

    def __iter__(self):
        return iter(self.plan(self.epoch)[self.start :])

    def __len__(self) -> int:
        return 4 - self.start


def stream() -> BatchStream:
    loader = DataLoader(
        list(range(10)), batch_sampler=EpochPlan(), collate_fn=list, generator=torch.Generator()
    )
    return BatchStream(loader, seed=0)


def test_runs_over_epochs_in_plan_order() -> None:
    batches = list(islice((s := stream()), 9))
    plan = EpochPlan().plan
    assert batches[:4] == plan(0) and batches[4:8] == plan(1) and batches[8] == plan(2)[0]
    assert s.state_dict() == {"epoch": 2, "position": 1}


def test_resume_continues_exactly() -> None:
    whole = list(islice(stream(), 11))
    first = stream()
    head = list(islice(first, 6))
    second = stream()
    second.load_state_dict(first.state_dict())
    assert head + list(islice(second, 5)) == whole


def test_the_stream_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    list(islice(stream(), 5))
    assert torch.equal(torch.rand(2), expected)


def padded(size_or_lengths, batch_size: int, *, rank: int = 0, world: int = 1, seed: int = 0,
           grouped: bool = False, epoch: int = 0) -> list[list[int]]:  # fmt: skip
    lengths = size_or_lengths if grouped else [1] * size_or_lengths
    sampler = PaddedBatchSampler(
        lengths, batch_size, seed=seed, num_replicas=world, rank=rank, group_by_length=grouped
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def test_padded_batches_shard_like_distributed_sampler_with_equal_batch_counts() -> None:
    ranks = [padded(11, 2, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    seen = [i for rank in ranks for batch in rank for i in batch]
    assert set(seen) == set(range(11)) and len(seen) == 12  # one sample repeated to even out
    assert padded(11, 2, rank=0, world=2, epoch=1) != ranks[0]
    resumed = PaddedBatchSampler([1] * 11, 2, num_replicas=2, rank=0)
    resumed.set_epoch(0, start_batch=1)
    assert list(resumed) == ranks[0][1:] and len(resumed) == 2


LENGTHS = torch.randint(4, 500, (203,), generator=torch.Generator().manual_seed(7))


def padding(batches: list[list[int]]) -> int:
    return sum(len(b) * int(LENGTHS[b].max()) - int(LENGTHS[b].sum()) for b in batches)


def test_length_grouped_batches_take_every_sample_once_per_epoch_deterministically() -> None:
    epoch0 = padded(LENGTHS, 8, grouped=True)
    for batches in (epoch0, padded(LENGTHS, 8, grouped=True, epoch=1)):
        assert sorted(i for batch in batches for i in batch) == list(range(203))
        assert [len(b) for b in batches] == [8] * 25 + [3]
    assert padded(LENGTHS, 8, grouped=True) == epoch0  # a function of (seed, epoch)
    assert padded(LENGTHS, 8, grouped=True, epoch=1) != epoch0
    assert padded(LENGTHS, 8, grouped=True, seed=1) != epoch0
    assert max(LENGTHS[epoch0[0]]) == LENGTHS.max()  # the longest sample comes first
    assert padding(epoch0) < padding(padded(203, 8)) / 3


def test_length_grouped_batches_shard_over_ranks_with_equal_batch_counts() -> None:
    ranks = [padded(LENGTHS, 8, grouped=True, rank=r, world=2) for r in range(2)]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]]
    seen = [i for rank in ranks for batch in rank for i in batch]
    assert set(seen) == set(range(203)) and len(seen) == 204  # one repeat evens out the ranks
