"""Length-grouped padded batches: transformers' ``group_by_length`` order, and the padded
DataLoader that uses it."""

from __future__ import annotations

import pytest
import torch

from mmgen.data.grouping import LengthGroupedSampler, length_grouped_indices


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_order_is_transformers_get_length_grouped_indices() -> None:
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = torch.randint(1, 300, (1000,), generator=seeded(3)).tolist()
    for batch_size in (1, 4, 16):
        ours = length_grouped_indices(lengths, batch_size, generator=seeded(5))
        theirs = get_length_grouped_indices(lengths, batch_size, generator=seeded(5))
        assert ours == theirs


def test_the_sampler_follows_set_epoch_and_keeps_every_sample() -> None:
    sampler = LengthGroupedSampler(torch.arange(50) % 7, 4, seed=2)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and len(sampler) == 50
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(50))
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(LengthGroupedSampler([], 4)) == []


def test_padded_dataloader_groups_by_length() -> None:
    from mmgen.data.loading import padded_dataloader

    class Lengths:  # padded_dataloader reads lengths and the processor's pad id only
        lengths = torch.randint(1, 200, (64,), generator=seeded(0))

    loader = padded_dataloader(Lengths(), 8, pad_token_id=0, group_by_length=True)
    assert isinstance(loader.batch_sampler.order, LengthGroupedSampler) and len(loader) == 8
    with pytest.raises(ValueError, match="group_by_length"):
        padded_dataloader(Lengths(), 8, pad_token_id=0, group_by_length=True, drop_last=True)
