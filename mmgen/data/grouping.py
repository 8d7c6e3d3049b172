"""Length-grouped padded batches: the padded baseline users actually run (transformers'
``group_by_length``, its ``LengthGroupedSampler``).

Per epoch: shuffle (seed + epoch), cut the order into mega-batches of ``mega_batch_mult``
global batches, sort each mega-batch by length (longest first), and move the longest sample of
the epoch to the front (an out-of-memory shows in the first step). Consecutive samples then have
similar lengths, so a batch of them wastes little padding, while the mega-batches keep the
epoch's order random. Over DDP ranks the order is padded by repeats to a multiple of the world
size and dealt like ``DistributedSampler`` (rank ``r`` takes every ``world``-th sample), so each
rank's batches come from the same sorted runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def length_grouped_indices(
    lengths: Sequence[int] | torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    mega_batch_mult: int | None = None,
) -> list[int]:
    """All of ``range(len(lengths))`` once, in transformers' ``get_length_grouped_indices``
    order. ``mega_batch_mult`` defaults as there: ``min(n // (4 * batch_size), 50)``, at least 1."""
    lengths = torch.as_tensor(lengths).tolist()
    n = len(lengths)
    if n == 0:
        return []
    if mega_batch_mult is None:
        mega_batch_mult = max(1, min(n // (4 * batch_size), 50))
    size = mega_batch_mult * batch_size
    order = torch.randperm(n, generator=generator).tolist()
    megas = [sorted(order[i : i + size], key=lambda k: -lengths[k]) for i in range(0, n, size)]
    longest = max(range(len(megas)), key=lambda m: lengths[megas[m][0]])
    megas[0][0], megas[longest][0] = megas[longest][0], megas[0][0]
    return [k for mega in megas for k in mega]


class LengthGroupedSampler(Sampler[int]):
    """This rank's sample indices in length-grouped order; batch them ``batch_size`` at a time
    (``DataLoader(batch_size=...)``). Call ``set_epoch(epoch)`` every epoch."""

    def __init__(
        self,
        lengths: Sequence[int] | torch.Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.seed = batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        # sorted runs of about one global batch (the batch of every rank together)
        order = length_grouped_indices(
            self.lengths, self.batch_size * self.num_replicas, generator=generator
        )
        if order:  # repeats fill the last step, as DistributedSampler does
            missing = len(self) * self.num_replicas - len(order)
            order += (order * (1 + missing // len(order)))[:missing]
        return iter(order[self.rank :: self.num_replicas])
