"""A plain-torch reference for ``packed_merge`` (the GPU check's, mmgen/gpucheck/reference.py)
and random test cases for it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmgen.gpucheck.reference import reference_merge

__all__ = ["PLACEHOLDERS", "Case", "make_case", "reference_merge"]

PLACEHOLDERS = {"negative": [-200, -1000, -1001], "past_vocab": [50, 77, 1 << 40]}


@dataclass
class Case:
    input_ids: torch.Tensor
    weight: torch.Tensor
    features: list[torch.Tensor]
    placeholder_ids: list[int]

    def args(self):
        return self.input_ids, self.weight, self.features, self.placeholder_ids


def make_case(
    shape=(96,),
    *,
    hidden=12,
    vocab=40,
    placeholder_ids=(-200,),
    dtype=torch.float32,
    fraction=0.3,
    seed=0,
    device="cpu",
) -> Case:
    """Random text ids with runs of placeholders (each run a random id) covering ~``fraction``."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, vocab, (int(torch.tensor(shape).prod()),), generator=gen)
    total = flat.numel()
    if placeholder_ids and total:
        t = 0
        while t < total:
            run = int(torch.randint(1, 9, (), generator=gen))
            if torch.rand((), generator=gen) < fraction:
                k = int(torch.randint(0, len(placeholder_ids), (), generator=gen))
                flat[t : t + run] = placeholder_ids[k]
            t += run
    ids = flat.reshape(shape)
    weight = torch.randn(vocab, hidden, generator=gen).to(dtype)
    features = [
        torch.randn(int((flat == pid).sum()), hidden, generator=gen).to(dtype)
        for pid in placeholder_ids
    ]
    return Case(
        ids.to(device), weight.to(device), [f.to(device) for f in features], list(placeholder_ids)
    )
