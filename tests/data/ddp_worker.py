"""A DDP rank for test_data_packing: kept free of heavy imports, since every spawned process
imports it."""

import torch

from mmgen.data.sampler import TokenBudgetSampler

LENGTHS = [(i * 37) % 300 + 1 for i in range(400)]


def sampler_batches(rank: int, world: int, store: str, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world
    )
    try:
        sampler = TokenBudgetSampler(LENGTHS, 512, seed=5)  # world size and rank from torch
        sampler.set_epoch(2)
        torch.save((sampler.num_replicas, sampler.rank, list(sampler)), f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()
