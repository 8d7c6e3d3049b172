"""A plain-torch reference for ``packed_merge`` and random test cases for it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PLACEHOLDERS = {"negative": [-200, -1000, -1001], "past_vocab": [50, 77, 1 << 40]}


def reference_merge(input_ids, weight, features, placeholder_ids):
    """The op's definition in a few lines of differentiable torch (index_put, not in place)."""
    flat = input_ids.reshape(-1)
    out = weight.new_zeros((flat.numel(), weight.shape[1]))
    is_text = torch.ones_like(flat, dtype=torch.bool)
    for pid, rows in zip(placeholder_ids, features, strict=True):
        here = flat == pid
        out = out.index_put((here.nonzero().squeeze(1),), rows)
        is_text &= ~here
    text = is_text.nonzero().squeeze(1)
    out = out.index_put((text,), weight[flat[text]])
    return out.reshape(*input_ids.shape, weight.shape[1])


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
