"""Plain-torch references the GPU check compares the CUDA ops with, and the cases it feeds them.

The table-gradient reference reproduces the kernels' summation order exactly (``kChunkRows``
chunks of the id-sorted positions, partials added in chunk order, csrc/include/mmgen/merge.h),
so a kernel can be checked bit for bit, not only to a tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

CHUNK_ROWS = 64  # kChunkRows in csrc/include/mmgen/merge.h


def reference_merge(input_ids, weight, features, placeholder_ids) -> torch.Tensor:
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


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the kernels sum in (at::opmath_type): fp64 for fp64, fp32 for every other dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def chunked_table_grad(
    input_ids: torch.Tensor,
    grad_out: torch.Tensor,
    vocab: int,
    placeholder_ids: Sequence[int],
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """The weight gradient in the kernels' exact order: text positions stably sorted by id, cut
    into chunks of ``chunk_rows`` at fixed indices of that order; each id's rows summed per chunk
    in position order (from the first row), the chunk sums then added in chunk order."""
    ids = input_ids.reshape(-1).cpu()
    grad = grad_out.reshape(ids.numel(), grad_out.shape[-1]).cpu()
    acc_dtype = accumulate_dtype(grad.dtype)
    table = torch.zeros(vocab, grad.shape[1], dtype=grad.dtype)
    text = ~torch.isin(ids, torch.tensor(list(placeholder_ids), dtype=ids.dtype))
    positions = text.nonzero().squeeze(1)
    keys, order = ids[positions].sort(stable=True)
    positions = positions[order]
    i = 0
    while i < len(keys):
        v = int(keys[i])
        j = i
        while j < len(keys) and int(keys[j]) == v:
            j += 1
        total = piece = None
        for s in range(i, j):  # s: the index in the sorted order, so chunks start at multiples
            if piece is not None and s % chunk_rows == 0:
                total = piece if total is None else total + piece
                piece = None
            row = grad[positions[s]].to(acc_dtype)
            piece = row.clone() if piece is None else piece + row
        total = piece if total is None else total + piece
        table[v] = total.to(grad.dtype)
        i = j
    return table


@dataclass
class MergeCase:
    name: str
    input_ids: torch.Tensor
    weight: torch.Tensor
    features: list[torch.Tensor]
    placeholder_ids: list[int]

    def args(self):
        return self.input_ids, self.weight, self.features, self.placeholder_ids

    def to(self, device) -> MergeCase:
        return MergeCase(
            self.name, self.input_ids.to(device), self.weight.to(device),
            [f.to(device) for f in self.features], self.placeholder_ids,
        )  # fmt: skip


def merge_case(
    name: str, *, dtype: torch.dtype = torch.float32, hidden: int = 24, seed: int = 0
) -> MergeCase:
    """Inputs that stress the kernels' work split.

    frequent: one token id at ~70% of 3000 positions (its rows span many chunks) beside a
        placeholder; rare: 3000 distinct ids out of 50000, each used once (a row per piece);
    empty: no positions at all; mixed: a few ids in runs, two placeholders, padded (B, S).
    """
    gen = torch.Generator().manual_seed(seed)
    placeholders = [-200]
    if name == "frequent":
        vocab, ids = 50, torch.randint(0, 50, (3000,), generator=gen)
        ids[torch.rand(3000, generator=gen) < 0.7] = 7
        ids[100:400] = -200
    elif name == "rare":
        vocab = 50000
        ids = torch.randperm(vocab, generator=gen)[:3000]
        ids[1000:1200] = -200
    elif name == "empty":
        vocab, ids = 20, torch.empty(0, dtype=torch.int64)
    elif name == "mixed":
        vocab, placeholders = 9, [-1, 4]
        ids = torch.randint(0, vocab, (6, 70), generator=gen)
        ids[:, 10:30] = -1
        ids[2:4, 40:50] = 4
    else:
        raise ValueError(f"unknown merge case {name!r}; choose from {MERGE_CASES}")
    weight = torch.randn(vocab, hidden, generator=gen).to(dtype)
    features = [
        torch.randn(int((ids == p).sum()), hidden, generator=gen).to(dtype) for p in placeholders
    ]
    return MergeCase(name, ids, weight, features, placeholders)


MERGE_CASES = ("frequent", "rare", "empty", "mixed")


def merge_grads(fn, case: MergeCase, grad_out: torch.Tensor):
    """(out, grad of the table, grads of the features) of ``fn`` on leaf copies of the case."""
    weight = case.weight.detach().clone().requires_grad_()
    features = [f.detach().clone().requires_grad_() for f in case.features]
    out = fn(case.input_ids, weight, features, case.placeholder_ids)
    table, *feats = torch.autograd.grad(out, [weight, *features], grad_out, allow_unused=True)
    table = torch.zeros_like(weight) if table is None else table
    feats = [torch.zeros_like(f) if g is None else g for f, g in zip(features, feats, strict=True)]
    return out.detach(), table, feats


def reference_varlen_metadata(lengths: Sequence[int]):
    """cu_seqlens (int32), position_ids and seq_idx (int64) and max_seqlen of packed lengths."""
    lengths = torch.as_tensor(list(lengths), dtype=torch.int64)
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)]).to(torch.int32)
    position_ids = torch.cat([torch.arange(n) for n in lengths.tolist()] or [torch.zeros(0)])
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    return cu, position_ids.to(torch.int64), seq_idx, int(lengths.max()) if len(lengths) else 0
