"""An endless, resumable stream of training batches over epochs.

Each epoch's batches are planned up front as lists of dataset indices for this rank (token-budget
packs from ``TokenBudgetSampler``, or fixed-size padded batches, random or length-grouped), then
collated by a DataLoader.
The position is ``(epoch, batches consumed)``; a resumed run plans the same epoch from the same
seed and skips what was consumed, so it sees exactly the batches the interrupted run would have.
The DataLoader gets its own seeded generator: creating its iterator must not draw from the global
RNG, or a resumed run's dropout would differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from mmgen.data.batch import PackedBatch
from mmgen.data.grouping import LengthGroupedSampler

Plan = Callable[[int], list[list[int]]]  # epoch -> this rank's batches of dataset indices


class BatchStream:
    """``next(stream)`` -> a collated batch; ``state_dict()`` is where the next one comes from."""

    def __init__(
        self, dataset: Any, plan: Plan, collate: Callable, *, seed: int, num_workers: int = 0
    ) -> None:
        self.dataset, self.plan, self.collate = dataset, plan, collate
        self.seed, self.num_workers = seed, num_workers
        self.epoch, self.position = 0, 0
        self._batches: Iterator[PackedBatch] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> PackedBatch:
        for _ in range(2):  # a finished epoch moves on to the next one once
            if self._batches is None:
                self._batches = self._open()
            batch = next(self._batches, None)
            if batch is not None:
                self.position += 1
                return batch
            self.epoch, self.position, self._batches = self.epoch + 1, 0, None
        raise RuntimeError("the training data yields no batches (is the dataset empty?)")

    def _open(self) -> Iterator[PackedBatch]:
        batches = self.plan(self.epoch)[self.position :]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=False,
        )
        return iter(loader)


def packed_plan(sampler: Any) -> Plan:
    """Plans from a ``TokenBudgetSampler`` (one batch = its packs for this rank)."""

    def plan(epoch: int) -> list[list[int]]:
        return [step[sampler.rank] for step in sampler.plan(epoch)]

    return plan


def padded_plan(
    size: int,
    batch_size: int,
    *,
    rank: int,
    world: int,
    seed: int,
    shuffle: bool = True,
    lengths: torch.Tensor | None = None,
) -> Plan:
    """``batch_size`` samples per batch, sharded over ranks as ``DistributedSampler`` does; with
    the samples' ``lengths``, length-grouped (``LengthGroupedSampler``, always shuffled)."""

    def plan(epoch: int) -> list[list[int]]:
        if lengths is None:
            sampler = DistributedSampler(
                range(size), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed
            )
        else:
            sampler = LengthGroupedSampler(
                lengths, batch_size, seed=seed, num_replicas=world, rank=rank
            )
        sampler.set_epoch(epoch)
        order = list(sampler)
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    return plan
