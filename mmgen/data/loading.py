"""DataLoaders wired for the two layouts: token-budget packs, and the padded baseline (random
or length-grouped batches). ``mmgen train`` reads its batches through these too.

loader = packed_dataloader(dataset, capacity=4096, max_items=8, overlong="truncate")
for epoch in range(epochs):
    loader.batch_sampler.set_epoch(epoch)   # (epoch, start_batch) resumes mid-epoch
    for batch in loader:
        loss = model(**batch).loss
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from mmgen.data.collator import PackedCollator, PaddedCollator
from mmgen.data.dataset import MultimodalDataset
from mmgen.data.sampler import Overlong, PaddedBatchSampler, TokenBudgetSampler


def packed_dataloader(
    dataset: MultimodalDataset,
    capacity: int,
    *,
    max_items: int | None = None,
    overlong: Overlong = "error",
    num_workers: int = 0,
    loader_options: dict[str, Any] | None = None,
    **sampler_options: Any,
) -> DataLoader:
    """A ``DataLoader`` of packed batches: ``TokenBudgetSampler`` + ``PackedCollator`` with the
    same budgets. ``sampler_options`` go to the sampler (``strategy``, ``packs_per_batch``,
    ``shuffle``, ``seed``, ``num_replicas``, ``rank``, ``drop_last``), ``loader_options`` to
    ``DataLoader``. Call ``loader.batch_sampler.set_epoch(epoch)`` every epoch."""
    sampler = TokenBudgetSampler(
        dataset, capacity, max_items=max_items, overlong=overlong, **sampler_options
    )
    cut = overlong == "truncate"
    collator = PackedCollator(
        max_length=capacity if cut else None, max_items=max_items if cut else None
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=num_workers,
        **(loader_options or {}),
    )


def padded_dataloader(
    dataset: MultimodalDataset,
    batch_size: int,
    *,
    pad_token_id: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    num_replicas: int | None = None,
    rank: int | None = None,
    drop_last: bool = False,
    pad_to_multiple_of: int | None = None,
    group_by_length: bool = False,
    **loader_kwargs: Any,
) -> DataLoader:
    """The padded baseline: ``batch_size`` samples per batch, padded to the longest, sharded
    over DDP ranks as ``DistributedSampler`` does (``PaddedBatchSampler``).
    ``group_by_length``: batches of similar lengths (transformers' ``group_by_length``; it
    shuffles by mega-batch and keeps every sample). Call ``loader.batch_sampler.set_epoch(epoch)``
    every epoch."""
    sampler = PaddedBatchSampler(
        dataset, batch_size, shuffle=shuffle, seed=seed, num_replicas=num_replicas, rank=rank,
        drop_last=drop_last, group_by_length=group_by_length,
    )  # fmt: skip
    pad = dataset.processor.pad_token_id if pad_token_id is None else pad_token_id
    collator = PaddedCollator(pad, pad_to_multiple_of=pad_to_multiple_of)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, **loader_kwargs)
