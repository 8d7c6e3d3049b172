"""``TokenBudgetSampler``: batches of packs, each pack a token budget filled by ``plan_packs``.

Per epoch: shuffle the samples (seed + epoch), plan packs (best-fit decreasing by default) under
``capacity`` tokens and ``max_items`` modality items, then deal the packs to the ranks. Packs are
sorted by token count and dealt in groups of ``num_replicas * packs_per_batch``, so the ranks of
one step get packs of about the same size (no rank waits on a fuller one) and each rank's total
over the epoch is balanced; the order of the steps is then shuffled. Everything is a function of
``(seed, epoch)``: every rank computes the same plan and takes its own share.

A dataset that draws its own epochs (``mmgen.data.mixture.Mixture``) provides
``epoch_indices(seed, epoch)``: the epoch's dataset indices, repeats allowed. Both samplers then
plan over those instead of every index once; a repeated index is a separate entry.

Each rank yields the same number of batches, as DDP needs: when the packs do not divide evenly,
the last step is filled with repeats of the largest packs, or dropped with ``drop_last=True``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from mmgen.data.skips import SkipLog
from mmgen.errors import ConfigError, DataError

Overlong = Literal["error", "drop", "truncate"]


class TokenBudgetSampler(Sampler[list[int]]):
    """A batch sampler (``DataLoader(dataset, batch_sampler=...)``) of token-budget packs.

    Args:
        dataset: a ``MultimodalDataset`` (anything with ``lengths`` and, for ``max_items``,
            ``items``; ``"truncate"`` also needs ``truncated_size``), a ``Mixture``
            (``epoch_indices``), or a sequence of lengths.
        capacity: most tokens per pack.
        max_items: most modality items per pack, bounding the encoders' batch.
        strategy: ``plan_packs`` strategy: ``"bfd"``, ``"ffd"`` or ``"sequential"``.
        overlong: a sample over a budget is an ``"error"``, is ``"drop"``ped (counted in
            ``self.dropped``), or is cut to the budgets at a modality-instance boundary
            (``"truncate"``; pair with ``PackedCollator(max_length=capacity, max_items=...)``,
            which ``packed_dataloader`` does; samples that cannot be cut are dropped).
        packs_per_batch: packs laid end to end in one batch (T <= packs_per_batch * capacity).
        shuffle: shuffle samples and steps each epoch (``set_epoch``); otherwise steps follow
            dataset order.
        seed: the shuffling seed, the same on every rank.
        num_replicas, rank: the DDP world size and this rank (default: from torch.distributed
            when initialised, else 1 and 0).
        drop_last: drop the last, incomplete step instead of repeating packs to fill it.
    """

    def __init__(
        self,
        dataset: Any,
        capacity: int,
        *,
        max_items: int | None = None,
        strategy: Literal["bfd", "ffd", "sequential"] = "bfd",
        overlong: Overlong = "error",
        packs_per_batch: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if capacity < 1 or packs_per_batch < 1 or (max_items is not None and max_items < 1):
            raise ConfigError("capacity, packs_per_batch and max_items must be >= 1")
        if overlong not in ("error", "drop", "truncate"):
            raise ConfigError(f"overlong must be 'error', 'drop' or 'truncate', got {overlong!r}")
        num_replicas, rank = resolve_world(num_replicas, rank)
        self.capacity, self.max_items, self.strategy = capacity, max_items, strategy
        self.packs_per_batch, self.shuffle, self.seed = packs_per_batch, shuffle, seed
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.dropped = SkipLog()
        self.truncated = 0
        self._draw = epoch_draw(dataset)
        self._fit(dataset, overlong)
        self.epoch, self._start = 0, 0
        self._plans: dict[int, list[list[list[int]]]] = {}

    # -- epochs --------------------------------------------------------------------------------

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's plan; ``start_batch`` skips that many batches (for resuming)."""
        self.epoch, self._start = epoch, start_batch

    def __iter__(self) -> Iterator[list[int]]:
        for step in self.plan(self.epoch)[self._start :]:
            yield step[self.rank]

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (packs can vary slightly by epoch)."""
        return max(0, len(self.plan(self.epoch)) - self._start)

    def plan(self, epoch: int) -> list[list[list[int]]]:
        """The epoch's steps: ``plan[step][rank]`` is that rank's batch of dataset indices."""
        if epoch not in self._plans:
            self._plans = {epoch: self._make_plan(epoch)}  # keep one: epochs go forward
        return self._plans[epoch]

    def stats(self, epoch: int | None = None) -> dict[str, Any]:
        """Packing figures for an epoch: packs, tokens, efficiency (tokens / (packs x capacity)),
        tokens per rank, dropped and truncated samples."""
        plan = self.plan(self.epoch if epoch is None else epoch)
        per_rank = [
            int(self._planned[[i for step in plan for i in step[r]]].sum())
            for r in range(self.num_replicas)
        ]
        packs = len(plan) * self.num_replicas * self.packs_per_batch
        tokens = sum(per_rank)
        return {
            "steps": len(plan),
            "packs": packs,
            "tokens": tokens,
            "efficiency": tokens / (packs * self.capacity) if packs else 0.0,
            "rank_tokens": per_rank,
            "dropped": self.dropped.count,
            "truncated": self.truncated,
        }

    # -- planning ------------------------------------------------------------------------------

    def _fit(self, dataset: Any, overlong: Overlong) -> None:
        """Apply the overlong policy once: the indices, lengths and items that get planned."""
        # copies: truncation below must not change the dataset's own lengths
        lengths = torch.as_tensor(getattr(dataset, "lengths", dataset), dtype=torch.long).clone()
        items = getattr(dataset, "items", None)
        if self.max_items is not None and items is None:
            raise ConfigError("max_items needs a dataset with per-sample `items`")
        items = torch.zeros_like(lengths) if items is None else torch.as_tensor(items).clone()
        ids: Sequence[str] | None = getattr(dataset, "ids", None)
        over = lengths > self.capacity
        if self.max_items is not None:
            over |= items > self.max_items
        keep = torch.ones_like(over)
        for index in over.nonzero().flatten().tolist():
            name = repr(ids[index]) if ids is not None else f"#{index}"
            what = (f"sample {name} ({int(lengths[index])} tokens, {int(items[index])} items)"
                    f" exceeds capacity={self.capacity}, max_items={self.max_items}")  # fmt: skip
            if overlong == "error":
                raise DataError(f"{what}; pass overlong='drop' or 'truncate', or raise the budget")
            if overlong == "truncate":
                if not hasattr(dataset, "truncated_size"):
                    raise ConfigError("overlong='truncate' needs a MultimodalDataset")
                size = dataset.truncated_size(index, self.capacity, self.max_items)
                if size[0] > 0:
                    lengths[index], items[index] = size
                    self.truncated += 1
                    continue
                what += " and cannot be cut at a modality-instance boundary"
            self.dropped.add("over-long", what)
            keep[index] = False
        self.indices = keep.nonzero().flatten()
        self.lengths, self.items = lengths[self.indices], items[self.indices]
        # by dataset index: the tokens (truncated ones cut) and items a sample takes in a pack
        self._planned, self._planned_items, self._keep = lengths, items, keep

    @property
    def planned_lengths(self) -> torch.Tensor:
        """Tokens each dataset index takes in a pack (an over-long one cut by ``"truncate"``)."""
        return self._planned

    def _epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The epoch's dataset indices (repeats allowed) and their planned lengths and items."""
        if self._draw is None:
            return self.indices, self.lengths, self.items
        drawn = torch.as_tensor(self._draw(self.seed, epoch), dtype=torch.long)
        drawn = drawn[self._keep[drawn]]  # the over-long ones the policy dropped stay out
        return drawn, self._planned[drawn], self._planned_items[drawn]

    def _make_plan(self, epoch: int) -> list[list[list[int]]]:
        from mmgen import ops  # loads the compiled extension only when a plan is needed

        generator = torch.Generator().manual_seed(self.seed + epoch)
        indices, lengths, items = self._epoch(epoch)
        n = len(indices)
        if n == 0:
            return []
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        pack_of = ops.plan_packs(
            lengths[order],
            self.capacity,
            strategy=self.strategy,
            items=items[order] if self.max_items is not None else None,
            max_items=self.max_items,
        )
        # numpy for the regrouping: its stable argsort is several times faster than torch's
        pack_of, order_np = pack_of.numpy(), order.numpy()
        count = int(pack_of.max()) + 1
        tokens = np.bincount(pack_of, weights=lengths.numpy()[order_np], minlength=count)
        grouped = indices.numpy()[order_np][np.argsort(pack_of, kind="stable")]
        ends = np.cumsum(np.bincount(pack_of, minlength=count))
        packs = np.split(grouped, ends[:-1])  # pack p: its dataset indices, in shuffled order
        # largest first, ties by pack number: deterministic on every rank
        by_size = np.argsort(-tokens, kind="stable").tolist()
        per_step = self.num_replicas * self.packs_per_batch
        if count % per_step:
            if self.drop_last:
                by_size = by_size[: count - count % per_step]
            else:  # repeat the largest packs (the fullest) to fill the last step
                missing = per_step - count % per_step
                by_size += [by_size[i % count] for i in range(missing)]
        steps = [self._deal(by_size[s : s + per_step], s // per_step)
                 for s in range(0, len(by_size), per_step)]  # fmt: skip
        if self.shuffle:
            steps = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
        else:  # dataset order: by the first pack each step holds
            steps.sort(key=lambda step: min(p for rank in step for p in rank))
        return [[np.concatenate([packs[p] for p in rank]).tolist() for rank in step]
                for step in steps]  # fmt: skip

    def _deal(self, group: list[int], step: int) -> list[list[int]]:
        """Deal one step's packs (largest first) to the ranks: a snake order balances the
        ranks' sums within the step; rotating by ``step`` spreads the largest over the ranks."""
        ranks: list[list[int]] = [[] for _ in range(self.num_replicas)]
        for j, pack in enumerate(group):
            lap, pos = divmod(j, self.num_replicas)
            rank = pos if lap % 2 == 0 else self.num_replicas - 1 - pos
            ranks[(rank + step) % self.num_replicas].append(pack)
        return ranks


class PaddedBatchSampler(Sampler[list[int]]):
    """A batch sampler of ``batch_size`` samples for padded batches (``padded_dataloader``),
    sharded over ranks in ``DistributedSampler``'s order, or length-grouped (transformers'
    ``group_by_length``, ``mmgen.data.grouping``). Resumable like ``TokenBudgetSampler``:
    ``set_epoch(epoch, start_batch)``; ``plan(epoch)`` is this rank's batches of the epoch.
    Over a ``Mixture`` the order runs over the epoch's draw (the same size every epoch).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        group_by_length: bool = False,
    ) -> None:
        from torch.utils.data import DistributedSampler

        from mmgen.data.grouping import LengthGroupedSampler

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        num_replicas, rank = resolve_world(num_replicas, rank)
        lengths = dataset if isinstance(dataset, (Sequence, torch.Tensor)) else dataset.lengths
        self._draw, self.seed = epoch_draw(dataset), seed
        if self._draw is not None:  # positions in the epoch's draw, mapped in _make_plan
            self._lengths = torch.as_tensor(lengths)
            lengths = self._lengths[self._draw(seed, 0)]
        if group_by_length:
            if drop_last or not shuffle:
                raise ConfigError("group_by_length always shuffles and keeps every sample")
            self.order: Any = LengthGroupedSampler(
                lengths, batch_size, seed=seed, num_replicas=num_replicas, rank=rank
            )
        else:
            self.order = DistributedSampler(
                range(len(lengths)), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                seed=seed, drop_last=drop_last,
            )  # fmt: skip
        self.batch_size = batch_size
        self.epoch, self._start = 0, 0
        self._plans: dict[int, list[list[int]]] = {}

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; ``start_batch`` skips that many batches (for resuming)."""
        self.epoch, self._start = epoch, start_batch

    def plan(self, epoch: int) -> list[list[int]]:
        if epoch not in self._plans:
            self._plans = {epoch: self._make_plan(epoch)}  # keep one: epochs go forward
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> list[list[int]]:
        self.order.set_epoch(epoch)
        if self._draw is None:
            order = list(self.order)
        else:
            drawn = torch.as_tensor(self._draw(self.seed, epoch), dtype=torch.long)
            if hasattr(self.order, "lengths"):  # length-grouped: the lengths of this draw
                self.order.lengths = self._lengths[drawn]
            order = drawn[list(self.order)].tolist()
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.plan(self.epoch)[self._start :]

    def __len__(self) -> int:
        return max(0, -(-len(self.order) // self.batch_size) - self._start)


def epoch_draw(dataset: Any) -> Any:
    """The dataset's ``epoch_indices(seed, epoch)`` when it draws its own epochs, else None."""
    return getattr(dataset, "epoch_indices", None)


def resolve_world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(world size, rank)``: the given ones, else torch.distributed's, else ``(1, 0)``."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if num_replicas is None:
        num_replicas = torch.distributed.get_world_size() if distributed else 1
    if rank is None:
        rank = torch.distributed.get_rank() if distributed else 0
    if not 0 <= rank < num_replicas:
        raise ConfigError(f"rank {rank} is outside 0..{num_replicas - 1}")
    return num_replicas, rank
